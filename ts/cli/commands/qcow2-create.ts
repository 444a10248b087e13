/** `sparsekit qcow2 create FILE --size N`: a new image, as `qemu-img create -f qcow2`. @internal */
import * as qcow2 from '../../qcow2'
import { handler, UsageError } from '../command'
import type * as specs from '../specs'

export default handler<typeof specs.qcow2Create>(async (ctx, v, [path]) => {
  if (v.size === undefined) throw new UsageError('--size is required')
  await qcow2.create(path, {
    size: v.size,
    clusterSize: v['cluster-size'],
    backing: v.backing,
    backingFormat: v['backing-format'],
    compat: v.compat,
    extendedL2: v['extended-l2'],
    lazyRefcounts: v['lazy-refcounts'],
    preallocation: v.preallocation,
    force: v.force,
    signal: ctx.signal,
  })
  return 0
})
