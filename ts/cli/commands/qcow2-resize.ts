/** `sparsekit qcow2 resize FILE SIZE`: a new virtual size. @internal */
import * as qcow2 from '../../qcow2'
import { handler } from '../command'
import type * as specs from '../specs'
import { bytes } from '../args'

export default handler<typeof specs.qcow2Resize>(async (ctx, v, [path, size]) => {
  await qcow2.resize(path, bytes('SIZE', size), { force: v.force, signal: ctx.signal })
  return 0
})
