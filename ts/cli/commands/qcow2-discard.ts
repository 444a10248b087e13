/** `sparsekit qcow2 discard FILE`: every guest cluster unallocated. @internal */
import * as qcow2 from '../../qcow2'
import { handler } from '../command'
import type * as specs from '../specs'

export default handler<typeof specs.qcow2Discard>(async (ctx, v, [path]) => {
  await qcow2.discardAll(path, { force: v.force, signal: ctx.signal })
  return 0
})
