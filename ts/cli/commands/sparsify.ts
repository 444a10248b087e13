/** `sparsekit sparsify IMAGE`: punch the provably free ranges of an image. @internal */
import { sparsify } from '../../layout'
import { handler } from '../command'
import type * as specs from '../specs'
import { human } from '../output'

export default handler<typeof specs.sparsify>(async (ctx, v, [path]) => {
  const r = await sparsify(path, {
    discard: v.discard,
    signal: ctx.signal,
    onProgress: ctx.progress(),
  })
  if (v.json) {
    await ctx.json(r)
    return 0
  }
  const alloc =
    r.allocatedBefore !== undefined && r.allocatedAfter !== undefined
      ? `; allocated ${human(r.allocatedBefore)} -> ${human(r.allocatedAfter)}`
      : ''
  await ctx.out(
    `${path}: freed ${human(r.freedBytes)}, used ${human(r.usedBytes)} of ${human(r.size)}${alloc}\n`,
  )
  return 0
})
