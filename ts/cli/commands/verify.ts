/** `sparsekit verify IMAGE DST`: read a drive back and compare it with an image. @internal */
import { verify } from '../../flash'
import { handler, UsageError } from '../command'
import type * as specs from '../specs'
import { human } from '../output'
import { httpOptions } from './common'

export default handler<typeof specs.verify>(async (ctx, v, [image, dst]) => {
  if (v.bmap !== undefined && v.nobmap)
    throw new UsageError('--bmap and --nobmap exclude each other')
  const http = httpOptions(v, image)
  const onProgress = ctx.progress()
  const r = await verify(image, dst, {
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
})
