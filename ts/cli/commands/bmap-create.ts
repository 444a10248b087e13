/** `sparsekit bmap create IMAGE`: bmaptool's block map of an image. @internal */
import * as sk from '../../index'
import { command } from '../command'

export default command({
  name: 'bmap create',
  summary: "write an image's bmap: its mapped ranges and their checksums (bmaptool)",
  positionals: [{ name: 'IMAGE' }],
  // No --json: a bmap is XML, and --json would be a promise not kept.
  options: [
    {
      flag: 'output',
      short: 'o',
      type: 'string',
      value: 'FILE',
      description: 'write the bmap to FILE instead of stdout',
    },
    {
      flag: 'checksum',
      type: 'choice',
      value: 'TYPE',
      choices: sk.BMAP_CHECKSUMS,
      default: 'sha256',
      description: 'checksum of each range',
    },
    {
      flag: 'no-checksum',
      type: 'boolean',
      description: 'write no checksums (as --checksum none)',
    },
    {
      flag: 'fs',
      type: 'boolean',
      description: "map only what the image's file systems use",
      api: 'filesystems',
    },
  ],
  async run(ctx, v, [image]) {
    const checksum = v['no-checksum'] ? 'none' : v.checksum
    const xml = await sk.bmap.create(image, {
      checksum,
      output: v.output,
      filesystems: v.fs,
      signal: ctx.signal,
      onProgress: ctx.progress(),
    })
    if (v.output === undefined) await ctx.out(xml)
    return 0
  },
})
