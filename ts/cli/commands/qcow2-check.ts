/** `sparsekit qcow2 check FILE`: `qemu-img check`, its output and its exit status. @internal */
import * as qcow2 from '../../qcow2'
import { handler } from '../command'
import type * as specs from '../specs'

export default handler<typeof specs.qcow2Check>(async (ctx, v, [path]) => {
  const r = await qcow2.check(path, { signal: ctx.signal, onProgress: ctx.progress() })
  if (v.json) await ctx.out(qcow2.toQemuJson(r) + '\n')
  else {
    const total = r['total-clusters'] ?? 0
    const pct = (n: number | undefined) => (total ? (((n ?? 0) / total) * 100).toFixed(2) : '0.00')
    if (!r.corruptions && !r.leaks) await ctx.out('No errors were found on the image.\n')
    if (r.corruptions) await ctx.out(`${r.corruptions} errors were found on the image.\n`)
    if (r.leaks) await ctx.out(`${r.leaks} leaked clusters were found on the image.\n`)
    await ctx.out(
      `${r['allocated-clusters'] ?? 0}/${total} = ${pct(r['allocated-clusters'])}% allocated, ${pct(r['fragmented-clusters'])}% fragmented, ${pct(r['compressed-clusters'])}% compressed clusters\nImage end offset: ${r['image-end-offset'] ?? 0}\n`,
    )
  }
  return r.corruptions ? 2 : r.leaks ? 3 : 0
})
