/** `sparsekit bmap create IMAGE`: bmaptool's block map of an image. @internal */
import * as bmap from '../../bmap'
import { handler } from '../command'
import type * as specs from '../specs'

export default handler<typeof specs.bmapCreate>(async (ctx, v, [image]) => {
  const checksum = v['no-checksum'] ? 'none' : v.checksum
  const xml = await bmap.create(image, {
    checksum,
    output: v.output,
    filesystems: v.fs,
    signal: ctx.signal,
    onProgress: ctx.progress(),
  })
  if (v.output === undefined) await ctx.out(xml)
  return 0
})
