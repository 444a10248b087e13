/** `sparsekit qcow2 map FILE`: `qemu-img map`, as a table or qemu's JSON byte for byte. @internal */
import * as qcow2 from '../../qcow2'
import { handler } from '../command'
import type * as specs from '../specs'

export default handler<typeof specs.qcow2Map>(async (ctx, v, [path]) => {
  const m = await qcow2.map(path, { backing: v.backing, signal: ctx.signal })
  if (v.json) {
    await ctx.out(qcow2.mapToJson(m))
    return 0
  }
  const w = Math.max(6, ...m.map((e: qcow2.Qcow2MapEntry) => String(e.start + e.length).length))
  const lines = [
    `${'start'.padStart(w)}  ${'length'.padStart(w)}  depth  ${'kind'.padEnd(10)}  offset\n`,
  ]
  for (const e of m) {
    const kind = e.compressed
      ? 'compressed'
      : e.data
        ? 'data'
        : e.zero
          ? e.present
            ? 'zero'
            : 'hole'
          : 'backing'
    lines.push(
      `${String(e.start).padStart(w)}  ${String(e.length).padStart(w)}  ${String(e.depth).padStart(5)}  ${kind.padEnd(10)}  ${e.offset ?? ''}\n`,
    )
    if (lines.length >= 4096) await ctx.out(lines.splice(0).join(''))
  }
  await ctx.out(lines.join(''))
  return 0
})
