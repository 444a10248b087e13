/** `sparsekit qcow2 import SRC DST`: any image, drive or URL into a new qcow2 image. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT, UsageError } from '../command'
import { human } from '../output'
import { HTTP_OPTIONS, httpOptions } from './common'

/** Options shared by `qcow2 import` and `qcow2 export`. */
export const WRITE_OPTIONS = [
  {
    flag: 'cluster-size',
    type: 'bytes',
    value: 'N',
    default: '64K',
    description: '512 to 2M, a power of two',
  },
  {
    flag: 'compat',
    type: 'choice',
    value: 'VERSION',
    choices: ['0.10', '1.1'],
    default: '1.1',
    description: 'the qcow2 version',
  },
  {
    flag: 'extended-l2',
    type: 'boolean',
    description: 'subclusters: extended L2 entries (clusters of 16K or more)',
  },
  {
    flag: 'backing',
    type: 'string',
    value: 'FILE',
    description:
      'write an overlay on FILE holding only the clusters that differ from it (stored as given, relative to the image)',
  },
  {
    flag: 'backing-format',
    type: 'choice',
    value: 'FMT',
    choices: ['qcow2', 'raw'],
    description: "the backing file's format: needed with --backing",
  },
  {
    flag: 'trim',
    type: 'boolean',
    description:
      "leave out the clusters lying entirely in free space of SRC's file systems (MBR/GPT, ext2-4, FAT, exFAT, NTFS, XFS, btrfs, swap): they read as zeros",
  },
  {
    flag: 'format',
    short: 'f',
    type: 'choice',
    value: 'FMT',
    choices: sk.qcow2.SOURCE_FORMATS,
    description: "SRC's format (default: a qcow2 image is recognised by its magic)",
  },
  ...HTTP_OPTIONS,
] as const

/** The backing option of the API from `--backing` and `--backing-format`. */
export function backingOf(v: { backing?: string; 'backing-format'?: 'qcow2' | 'raw' }) {
  if ((v.backing === undefined) !== (v['backing-format'] === undefined))
    throw new UsageError('--backing and --backing-format go together')
  return v.backing === undefined
    ? undefined
    : { file: v.backing, format: v['backing-format'] as 'qcow2' | 'raw' }
}

export default command({
  name: 'qcow2 import',
  summary: 'any image, drive or URL into a new qcow2 image (qemu-img convert -O qcow2)',
  positionals: [{ name: 'SRC' }, { name: 'DST' }],
  options: [
    {
      flag: 'compress',
      short: 'c',
      type: 'choice',
      value: 'TYPE',
      choices: sk.qcow2.COMPRESSIONS,
      description: 'compress clusters with zlib (as qemu-img convert -c) or zstd, on every core',
    },
    ...WRITE_OPTIONS,
    {
      flag: 'threads',
      type: 'count',
      value: 'N',
      description: 'threads compressing (default: one per core); the output does not depend on it',
    },
    JSON_OUTPUT,
  ],
  notes: [
    'Holes and all-zero clusters stay unallocated. The output is byte-identical from run to run and whatever the number of threads.',
    'DST is written beside its name and renamed into place when complete: an error or Ctrl-C leaves no image.',
    'SRC may be an http(s) URL, read with range requests.',
    'With --trim, only provably free space is left out (a file system it cannot read is kept whole); a cluster partly in use is stored whole.',
  ],
  async run(ctx, v, [src, dst]) {
    const http = httpOptions(v, src)
    const r = await sk.qcow2.importImage(src, dst, {
      ...http,
      compress: v.compress ?? false,
      clusterSize: v['cluster-size'],
      compat: v.compat,
      extendedL2: v['extended-l2'],
      backing: backingOf(v),
      format: v.format,
      trim: v.trim,
      threads: v.threads,
      signal: ctx.signal,
      onProgress: ctx.progress(),
    })
    if (v.json) await ctx.json(r)
    else {
      const stored = r.dataClusters + r.compressedClusters
      await ctx.out(
        `${dst}: ${human(r.fileSize)} for a ${human(r.size)} disk (${stored} clusters stored, ${r.compressedClusters} compressed)\n`,
      )
    }
    return 0
  },
})
