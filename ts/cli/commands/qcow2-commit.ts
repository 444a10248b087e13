/** `sparsekit qcow2 commit FILE`: `qemu-img commit`, an overlay into its backing image. @internal */
import * as qcow2 from '../../qcow2'
import { handler } from '../command'
import type * as specs from '../specs'
import { human } from '../output'

export default handler<typeof specs.qcow2Commit>(async (ctx, v, [path]) => {
  const r = await qcow2.commit(path, {
    force: v.force,
    signal: ctx.signal,
    onProgress: ctx.progress(),
  })
  if (v.json) await ctx.json(r)
  else await ctx.out(`Image committed (${human(r.bytes)}).\n`)
  return 0
})
