/** `sparsekit qcow2 create FILE --size N`: a new image, as `qemu-img create -f qcow2`. @internal */
import * as sk from '../../index'
import { command, JSON_IGNORED, UsageError } from '../command'
import { QCOW2_FORCE } from './common'

export default command({
  name: 'qcow2 create',
  summary: 'create a qcow2 image, byte for byte as qemu-img create -f qcow2 does',
  usage: ['--size N FILE'],
  positionals: [{ name: 'FILE' }],
  options: [
    {
      flag: 'size',
      type: 'bytes',
      value: 'N',
      description: 'the virtual size, a multiple of 512 (required)',
    },
    {
      flag: 'cluster-size',
      type: 'bytes',
      value: 'N',
      default: '64K',
      description: '512 to 2M, a power of two',
    },
    {
      flag: 'backing',
      type: 'string',
      value: 'FILE',
      description: 'the backing file, stored as given (relative to the image)',
    },
    {
      flag: 'backing-format',
      type: 'string',
      value: 'FMT',
      description: "the backing file's format (qcow2, raw, ...): needed with --backing",
    },
    {
      flag: 'compat',
      type: 'choice',
      value: 'VERSION',
      choices: ['0.10', '1.1'],
      default: '1.1',
      description: 'the qcow2 version',
    },
    { flag: 'extended-l2', type: 'boolean', description: 'subclusters: extended L2 entries' },
    { flag: 'lazy-refcounts', type: 'boolean', description: 'lazy refcounts (compat 1.1)' },
    {
      flag: 'preallocation',
      type: 'choice',
      value: 'MODE',
      choices: ['off', 'metadata'],
      default: 'off',
      description: 'metadata: allocate every L2 table and data cluster, data left as holes',
    },
    QCOW2_FORCE,
    JSON_IGNORED,
  ],
  notes: ['A file already at FILE is replaced.'],
  async run(ctx, v, [path]) {
    if (v.size === undefined) throw new UsageError('--size is required')
    await sk.qcow2.create(path, {
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
  },
})
