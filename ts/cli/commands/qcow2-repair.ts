/** `sparsekit qcow2 repair FILE`: `qemu-img check -r leaks`. @internal */
import * as qcow2 from '../../qcow2'
import { handler } from '../command'
import type * as specs from '../specs'

export default handler<typeof specs.qcow2Repair>(async (ctx, v, [path]) => {
  const r = await qcow2.repair(path, {
    force: v.force,
    signal: ctx.signal,
    onProgress: ctx.progress(),
  })
  if (v.json) await ctx.json(r)
  else await ctx.out(`${r.leaksFixed} leaked clusters were fixed.\n`)
  return 0
})
