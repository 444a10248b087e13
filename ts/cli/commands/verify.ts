/** `sparsekit verify IMAGE DST`: read a drive back and compare it with an image. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT, UsageError } from '../command'
import { human } from '../output'
import { HTTP_OPTIONS, httpOptions, TRIM_OPTION } from './common'

export default command({
  name: 'verify',
  summary: 'read a drive or file back and compare it with an image, writing nothing',
  positionals: [{ name: 'IMAGE' }, { name: 'DST' }],
  options: [
    {
      flag: 'bmap',
      type: 'string',
      value: 'FILE',
      description: 'compare the ranges of this bmap (default: IMAGE.bmap beside a local image)',
    },
    { flag: 'nobmap', type: 'boolean', description: 'ignore any bmap beside IMAGE' },
    { flag: 'seek', type: 'bytes', value: 'N', description: 'the image starts at byte N of DST' },
    { flag: 'sha256', type: 'string', value: 'HEX', description: "also check the image's SHA-256" },
    {
      flag: 'zip-entry',
      type: 'string',
      value: 'NAME',
      description: 'the entry of a zip IMAGE (default: its largest file)',
    },
    TRIM_OPTION,
    ...HTTP_OPTIONS,
    JSON_OUTPUT,
  ],
  notes: [
    "What a flash writes is compared: the bmap's mapped ranges, or a plain image's data. Exit 1 " +
      'naming the first differing byte range when DST does not hold the image. After a flash ' +
      '--trim, give --trim here too: only the used blocks are compared.',
  ],
  async run(ctx, v, [image, dst]) {
    if (v.bmap !== undefined && v.nobmap)
      throw new UsageError('--bmap and --nobmap exclude each other')
    const http = httpOptions(v, image)
    const onProgress = ctx.progress()
    const r = await sk.verify(image, dst, {
      bmap: v.nobmap ? false : v.bmap,
      seek: v.seek,
      sha256: v.sha256,
      zipEntry: v['zip-entry'],
      trim: v.trim,
      ...http,
      signal: ctx.signal,
      onProgress,
    })
    if (v.json) await ctx.json(r)
    else await ctx.out(`${dst} holds ${image}: ${human(r.bytesCompared)} compared\n`)
    return 0
  },
})
