/** `sparsekit copy SRC DST`: a copy by extents, with dd's skip / seek / length. @internal */
import { copy } from '../../copy'
import { handler } from '../command'
import type * as specs from '../specs'
import { human } from '../output'

export default handler<typeof specs.copy>(async (ctx, v, [src, dst]) => {
  const onProgress = ctx.progress()
  ctx.leaves(v.atomic ? `${dst} is unchanged` : `${dst} may be partly written`)
  const r = await copy(src, dst, {
    skip: v.skip,
    seek: v.seek,
    length: v.length,
    method: v.method,
    truncate: !v.notrunc,
    zeroHoles: v['zero-holes'],
    fsync: v.fsync,
    atomic: v.atomic,
    signal: ctx.signal,
    onProgress,
  })
  ctx.leaves(undefined)
  if (v.json) await ctx.json(r)
  else
    await ctx.out(
      `copied ${human(r.bytesCopied)} of data by ${r.method}; ${dst} is ${human(r.size)}\n`,
    )
  return 0
})
