/** `sparsekit qcow2 snapshot BASE OVERLAY`: a new overlay backed by BASE. @internal */
import * as sk from '../../index'
import { command, JSON_IGNORED } from '../command'
import { QCOW2_EDIT_NOTE, QCOW2_FORCE } from './common'

export default command({
  name: 'qcow2 snapshot',
  summary: 'create OVERLAY, a qcow2 image backed by BASE (qcow2 or raw)',
  positionals: [{ name: 'BASE' }, { name: 'OVERLAY' }],
  options: [QCOW2_FORCE, JSON_IGNORED],
  notes: [QCOW2_EDIT_NOTE],
  async run(ctx, v, [base, overlay]) {
    await sk.qcow2.snapshot(base, overlay, { force: v.force, signal: ctx.signal })
    return 0
  },
})
