/** `sparsekit qcow2 measure SRC`: `qemu-img measure -O qcow2`. @internal */
import * as qcow2 from '../../qcow2'
import { handler } from '../command'
import type * as specs from '../specs'
import { httpOptions } from './common'

export default handler<typeof specs.qcow2Measure>(async (ctx, v, [src]) => {
  const m = await qcow2.measure(src, {
    ...httpOptions(v, src),
    clusterSize: v['cluster-size'],
    compat: v.compat,
    extendedL2: v['extended-l2'],
    backing: v.backing,
    format: v.format,
    signal: ctx.signal,
    onProgress: ctx.progress(),
  })
  if (v.json) await ctx.out(qcow2.toQemuJson(m) + '\n')
  else {
    await ctx.out(`required size: ${m.required}\nfully allocated size: ${m['fully-allocated']}\n`)
    if (m.bitmaps !== undefined) await ctx.out(`bitmaps size: ${m.bitmaps}\n`)
  }
  return 0
})
