/** `sparsekit qcow2 rebase FILE`: `qemu-img rebase -u`, a new backing file name. @internal */
import * as sk from '../../index'
import { command, JSON_IGNORED, UsageError } from '../command'
import { QCOW2_EDIT_NOTE, QCOW2_FORCE } from './common'

export default command({
  name: 'qcow2 rebase',
  summary: 'point a qcow2 image at another backing file, or none (qemu-img rebase -u)',
  usage: ['FILE --backing F --backing-format FMT', 'FILE --none'],
  positionals: [{ name: 'FILE' }],
  options: [
    {
      flag: 'backing',
      type: 'string',
      value: 'F',
      description: 'the new backing file name, stored as given',
    },
    {
      flag: 'backing-format',
      type: 'string',
      value: 'FMT',
      description: 'its format (qcow2, raw, ...): needed with --backing',
    },
    {
      flag: 'none',
      type: 'boolean',
      description: 'remove the backing file: the image stands alone',
    },
    QCOW2_FORCE,
    JSON_IGNORED,
  ],
  notes: [QCOW2_EDIT_NOTE],
  async run(ctx, v, [path]) {
    if (v.none === (v.backing !== undefined))
      throw new UsageError('give --backing F --backing-format FMT, or --none')
    if (v.backing !== undefined && v['backing-format'] === undefined)
      throw new UsageError('--backing needs --backing-format')
    await sk.qcow2.setBacking(path, v.none ? null : (v.backing as string), v['backing-format'], {
      force: v.force,
      signal: ctx.signal,
    })
    return 0
  },
})
