/** `sparsekit qcow2 compare A B`: `qemu-img compare`, its messages and exit codes. @internal */
import * as qcow2 from '../../qcow2'
import { handler } from '../command'
import type * as specs from '../specs'

export default handler<typeof specs.qcow2Compare>(async (ctx, v, [a, b]) => {
  let r: qcow2.Qcow2CompareResult
  try {
    r = await qcow2.compare(a, b, {
      strict: v.strict,
      formatA: v['format-a'],
      formatB: v['format-b'],
      signal: ctx.signal,
      onProgress: ctx.progress(),
    })
  } catch (e) {
    // qemu-img compare's status for an error: 2 (1 means "different").
    ctx.error(e as Error)
    return 2
  }
  await ctx.out(r.message + '\n')
  return r.identical ? 0 : 1
})
