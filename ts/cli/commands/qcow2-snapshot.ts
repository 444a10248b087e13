/** `sparsekit qcow2 snapshot BASE OVERLAY`: a new overlay backed by BASE. @internal */
import * as qcow2 from '../../qcow2'
import { handler } from '../command'
import type * as specs from '../specs'

export default handler<typeof specs.qcow2Snapshot>(async (ctx, v, [base, overlay]) => {
  await qcow2.snapshot(base, overlay, { force: v.force, signal: ctx.signal })
  return 0
})
