/** `sparsekit qcow2 check FILE`: `qemu-img check`, its output and its exit status. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT } from '../command'

export default command({
  name: 'qcow2 check',
  summary: 'check a qcow2 image for corruptions and leaked clusters (qemu-img check)',
  positionals: [{ name: 'FILE' }],
  options: [{ ...JSON_OUTPUT, description: "print qemu-img check's JSON (--output=json)" }],
  notes: [
    'Exit status as qemu-img check: 0 no errors, 2 corruptions found, 3 leaked clusters only.',
  ],
  async run(ctx, v, [path]) {
    const r = await sk.qcow2.check(path, { signal: ctx.signal, onProgress: ctx.progress() })
    if (v.json) await ctx.out(sk.qcow2.toQemuJson(r) + '\n')
    else {
      const total = r['total-clusters'] ?? 0
      const pct = (n: number | undefined) =>
        total ? (((n ?? 0) / total) * 100).toFixed(2) : '0.00'
      if (!r.corruptions && !r.leaks) await ctx.out('No errors were found on the image.\n')
      if (r.corruptions) await ctx.out(`${r.corruptions} errors were found on the image.\n`)
      if (r.leaks) await ctx.out(`${r.leaks} leaked clusters were found on the image.\n`)
      await ctx.out(
        `${r['allocated-clusters'] ?? 0}/${total} = ${pct(r['allocated-clusters'])}% allocated, ${pct(r['fragmented-clusters'])}% fragmented, ${pct(r['compressed-clusters'])}% compressed clusters\nImage end offset: ${r['image-end-offset'] ?? 0}\n`,
      )
    }
    return r.corruptions ? 2 : r.leaks ? 3 : 0
  },
})
