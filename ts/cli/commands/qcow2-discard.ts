/** `sparsekit qcow2 discard FILE`: every guest cluster unallocated. @internal */
import * as sk from '../../index'
import { command, JSON_IGNORED } from '../command'
import { QCOW2_EDIT_NOTE, QCOW2_FORCE } from './common'

export default command({
  name: 'qcow2 discard',
  summary: "unallocate every guest cluster and give the space back (XCP-ng's killData)",
  positionals: [{ name: 'FILE' }],
  options: [QCOW2_FORCE, JSON_IGNORED],
  notes: [QCOW2_EDIT_NOTE],
  async run(ctx, v, [path]) {
    await sk.qcow2.discardAll(path, { force: v.force, signal: ctx.signal })
    return 0
  },
})
