/** `sparsekit qcow2 rebase FILE`: `qemu-img rebase -u`, a new backing file name. @internal */
import * as qcow2 from '../../qcow2'
import { handler, UsageError } from '../command'
import type * as specs from '../specs'

export default handler<typeof specs.qcow2Rebase>(async (ctx, v, [path]) => {
  if (v.none === (v.backing !== undefined))
    throw new UsageError('give --backing F --backing-format FMT, or --none')
  if (v.backing !== undefined && v['backing-format'] === undefined)
    throw new UsageError('--backing needs --backing-format')
  await qcow2.setBacking(path, v.none ? null : (v.backing as string), v['backing-format'], {
    force: v.force,
    signal: ctx.signal,
  })
  return 0
})
