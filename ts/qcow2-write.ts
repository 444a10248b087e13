/**
 * Writing qcow2 images: `importImage` (any raw file, drive, http(s) URL or qcow2 into a new
 * qcow2 file, compressed on every core, reproducible), `exportStream` (the uncompressed
 * image as a Readable with its length known up front), `measure` and `compare` (as
 * `qemu-img measure` and `qemu-img compare`). Re-exported by `./qcow2`.
 */
import { Readable } from 'node:stream'
import native = require('./native')
import {
  checkBoolean,
  checkBytes,
  checkOneOf,
  checkOptions,
  checkPath,
  checkString,
  invalidArgType,
  invalidArgValue,
  PathLike,
  LONG_KEYS,
  HTTP_KEYS,
} from './validate'
import { LongOptions, run } from './run'
import { httpArgs, httpUrl, HttpSourceOptions } from './http'

import { COMPRESSIONS, SOURCE_FORMATS } from './choices'
export { COMPRESSIONS, SOURCE_FORMATS }
/** A compression type. */
export type Compression = (typeof COMPRESSIONS)[number]
/** A source format. */
export type SourceFormat = (typeof SOURCE_FORMATS)[number]

/** Where an import reads from: options of the source. */
export interface Qcow2SourceOptions extends HttpSourceOptions {
  /**
   * `raw` or `qcow2`; default: a qcow2 image is recognised by its magic (a raw disk whose
   * first bytes are a qcow2 header would be read as qcow2: pass `raw` for untrusted raw data).
   */
  format?: SourceFormat
}

/** Options of {@link importImage} and {@link exportStream}, named after `qemu-img convert -o`. */
export interface Qcow2ImportOptions extends Qcow2SourceOptions, LongOptions {
  /** Compress every cluster that shrinks: `'zlib'` (as `qemu-img convert -c`) or `'zstd'`; default `false`. */
  compress?: Compression | false
  /** A power of two from 512 to 2 MiB; default 65536. */
  clusterSize?: number
  /** `'1.1'` (version 3, default) or `'0.10'` (version 2: no zero clusters, no zstd). */
  compat?: '0.10' | '1.1'
  /** Extended L2 entries (compat 1.1, clusters of 16 KiB or more). */
  extendedL2?: boolean
  /**
   * Write an overlay on this backing file: clusters whose data equals the backing image's
   * stay unallocated, so the image holds only what differs. `file` is stored as given and,
   * when relative, opened relative to the destination's folder (`exportStream`: the
   * current folder); `format` is required.
   */
  backing?: { file: string; format: 'qcow2' | 'raw' }
  /** Threads compressing; default one per core. The bytes written do not depend on it. */
  threads?: number
  /**
   * Leave out the clusters lying entirely in free space of the guest's file systems, as
   * {@link layout} finds it (MBR or GPT; ext2/3/4, FAT, exFAT, NTFS, XFS, btrfs, swap):
   * they read as zeros (in an overlay: as the backing file). Only provably free space is
   * left out: a file system it cannot read, or one not clean, is kept whole; a cluster
   * partly in use is stored whole. Default `false`.
   */
  trim?: boolean
}

/** The result of {@link importImage}. */
export interface Qcow2ImportResult {
  /** The virtual size: the source's size rounded up to 512 bytes. */
  size: number
  /** Bytes of the image file. */
  fileSize: number
  /** Guest clusters stored uncompressed. */
  dataClusters: number
  /** Guest clusters stored compressed. */
  compressedClusters: number
  /** Guest clusters stored as zero clusters (where the backing file has data). */
  zeroClusters: number
}

const IMPORT_KEYS = [
  'compress',
  'clusterSize',
  'compat',
  'extendedL2',
  'backing',
  'threads',
  'trim',
  'format',
  ...LONG_KEYS,
  ...HTTP_KEYS,
] as const

/** A source argument: an http(s) URL (string or `URL`) or a path. */
function sourceArg(name: string, v: unknown): string | Buffer {
  return httpUrl(v) ?? checkPath(name, v)
}

function sourceOpts(o: Record<string, unknown>, name = 'options') {
  return {
    format: checkOneOf(`${name}.format`, o.format, SOURCE_FORMATS),
    ...httpArgs(o as HttpSourceOptions),
  }
}

function importArgs(o: Record<string, unknown>): native.NativeQcow2ImportOptions {
  let compress: string | undefined
  if (o.compress === false || o.compress === undefined) compress = undefined
  else if (typeof o.compress === 'string')
    compress = checkOneOf('options.compress', o.compress, COMPRESSIONS)
  else throw invalidArgType('options.compress', "'zlib', 'zstd' or false", o.compress)
  const clusterSize = checkBytes('options.clusterSize', o.clusterSize)
  if (
    clusterSize !== undefined &&
    (clusterSize < 512 || clusterSize > 2 << 20 || (clusterSize & (clusterSize - 1)) !== 0)
  ) {
    throw invalidArgValue(
      'options.clusterSize',
      clusterSize,
      'must be a power of two from 512 to 2097152',
    )
  }
  const compat = checkOneOf('options.compat', o.compat, ['0.10', '1.1'] as const)
  let backingFile: string | undefined
  let backingFormat: string | undefined
  if (o.backing !== undefined) {
    const b = checkOptions('options.backing', o.backing, ['file', 'format'])
    checkString('options.backing.file', b.file)
    if (b.file === '')
      throw invalidArgValue('options.backing.file', b.file, 'must be a non-empty file name')
    backingFile = b.file
    if (b.format === undefined)
      throw invalidArgType('options.backing.format', "'qcow2' or 'raw'", b.format)
    backingFormat = checkOneOf('options.backing.format', b.format, ['qcow2', 'raw'] as const)
  }
  const threads = checkBytes('options.threads', o.threads)
  if (threads !== undefined && threads > 1024)
    throw invalidArgValue('options.threads', threads, 'must be at most 1024')
  return {
    compress,
    clusterSize,
    compat,
    extendedL2: checkBoolean('options.extendedL2', o.extendedL2),
    backingFile,
    backingFormat,
    threads,
    trim: checkBoolean('options.trim', o.trim),
    source: sourceOpts(o),
  }
}

/**
 * Write the guest disk of `source` (a raw file, a block device, an http(s) URL read with
 * range requests, or a qcow2 image flattened through its backing chain) to a new qcow2
 * image at `dst`, as `qemu-img convert -O qcow2 [-c]` does: holes and all-zero clusters
 * stay unallocated; compression runs on every core and the file is byte-identical
 * whatever the number of threads. The file is written beside `dst` and renamed over it
 * when complete, so an error or an abort leaves no image (and an older file at `dst`
 * untouched). The source is read once: phase `'write'` (source bytes that may hold data),
 * then `'sync'` when a file is replaced; with `trim`, phase `'map'` first (its partition
 * table and file systems read, as {@link layout} reads them).
 */
export async function importImage(
  source: PathLike | URL,
  dst: PathLike,
  options?: Qcow2ImportOptions,
): Promise<Qcow2ImportResult> {
  const src = sourceArg('source', source)
  const to = checkPath('dst', dst)
  const o = checkOptions('options', options, IMPORT_KEYS)
  const args = importArgs(o)
  const r = await run(o as LongOptions, (cancel, onProgress) =>
    native.qcow2Import(src, to, args, cancel, onProgress),
  )
  return {
    size: r.size,
    fileSize: r.fileSize,
    dataClusters: r.dataClusters,
    compressedClusters: r.compressedClusters,
    zeroClusters: r.zeroClusters,
  }
}

/** A Readable of an image, with its length in bytes known before the first byte. */
export type Qcow2ExportReadable = Readable & { readonly length: number }

/**
 * The uncompressed qcow2 image of `source` as a Readable producing it in file order
 * (header, L1 table, refcount table and blocks, L2 tables, data), for sending over HTTP:
 * the source is mapped and scanned first (phase `'map'`), so the Promise resolves with
 * `length`, the exact byte count, before the first byte. The bytes equal those
 * `importImage` writes with the same options. `compress` is refused
 * (`ERR_SPARSEKIT_QCOW2_REFUSED`): a compressed image's length is not known up front.
 */
export async function exportStream(
  source: PathLike | URL,
  options?: Qcow2ImportOptions,
): Promise<Qcow2ExportReadable> {
  const src = sourceArg('source', source)
  const o = checkOptions('options', options, IMPORT_KEYS)
  const args = importArgs(o)
  const signal = o.signal as AbortSignal | undefined
  const s = await run(o as LongOptions, (cancel, onProgress) =>
    native.qcow2ExportStream(src, args, cancel, onProgress),
  )
  const r = new Readable({
    highWaterMark: 4 << 20,
    read() {
      run({ signal }, (cancel) => s.next(cancel)).then(
        (b) => this.push(b),
        (e) => this.destroy(e),
      )
    },
  })
  Object.defineProperty(r, 'length', { value: s.length, enumerable: true })
  return r as Qcow2ExportReadable
}

/** Options of {@link measure}: the target image's, as `qemu-img measure -O qcow2 -o`. */
export interface Qcow2MeasureOptions extends Qcow2SourceOptions, LongOptions {
  clusterSize?: number
  compat?: '0.10' | '1.1'
  extendedL2?: boolean
  /** The image will have a backing file (qemu then counts every cluster as required). */
  backing?: boolean
}

/** `qemu-img measure --output=json -O qcow2`, same keys, same numbers. */
export interface Qcow2Measure {
  /** Bytes the source's persistent bitmaps need (a qcow2 source, a compat 1.1 target). */
  bitmaps?: number
  required: number
  'fully-allocated': number
}

/** What a qcow2 image of `source` needs, as `qemu-img measure --output=json -O qcow2` says. */
export async function measure(
  source: PathLike | URL,
  options?: Qcow2MeasureOptions,
): Promise<Qcow2Measure> {
  const src = sourceArg('source', source)
  const o = checkOptions('options', options, [
    'clusterSize',
    'compat',
    'extendedL2',
    'backing',
    'format',
    ...LONG_KEYS,
    ...HTTP_KEYS,
  ])
  const args = {
    clusterSize: checkBytes('options.clusterSize', o.clusterSize),
    compat: checkOneOf('options.compat', o.compat, ['0.10', '1.1'] as const),
    extendedL2: checkBoolean('options.extendedL2', o.extendedL2),
    backing: checkBoolean('options.backing', o.backing),
    source: sourceOpts(o),
  }
  const m = await run(o as LongOptions, (cancel, onProgress) =>
    native.qcow2Measure(src, args, cancel, onProgress),
  )
  const out: Qcow2Measure = { required: m.required, 'fully-allocated': m.fullyAllocated }
  if (m.bitmaps !== undefined && m.bitmaps !== null) return { bitmaps: m.bitmaps, ...out }
  return out
}

/** Options of {@link compare}. */
export interface Qcow2CompareOptions extends LongOptions, HttpSourceOptions {
  /** `qemu-img compare -s`: images of different sizes, or allocated differently, differ. */
  strict?: boolean
  /** Format of `a` (default: recognised by the magic). */
  formatA?: SourceFormat
  /** Format of `b`. */
  formatB?: SourceFormat
}

/** The result of {@link compare}. */
export interface Qcow2CompareResult {
  /** Whether the guest disks read the same (`qemu-img compare` exit status 0). */
  identical: boolean
  /** `identical`, `content`, `size` (strict: sizes differ) or `status` (strict: allocation differs). */
  result: 'identical' | 'content' | 'size' | 'status'
  /** The first differing offset, as `qemu-img compare` reports it. */
  offset?: number
  /** The sizes differ. */
  sizeMismatch: boolean
  /** What `qemu-img compare` prints. */
  message: string
}

/** Compare two guest disks (raw files, drives, URLs, qcow2 images) as `qemu-img compare [-s]` (phase `'verify'`). */
export async function compare(
  a: PathLike | URL,
  b: PathLike | URL,
  options?: Qcow2CompareOptions,
): Promise<Qcow2CompareResult> {
  const x = sourceArg('a', a)
  const y = sourceArg('b', b)
  const o = checkOptions('options', options, [
    'strict',
    'formatA',
    'formatB',
    ...LONG_KEYS,
    ...HTTP_KEYS,
  ])
  const http = httpArgs(o as HttpSourceOptions)
  const args = {
    strict: checkBoolean('options.strict', o.strict),
    sourceA: { format: checkOneOf('options.formatA', o.formatA, SOURCE_FORMATS), ...http },
    sourceB: { format: checkOneOf('options.formatB', o.formatB, SOURCE_FORMATS), ...http },
  }
  const r = await run(o as LongOptions, (cancel, onProgress) =>
    native.qcow2Compare(x, y, args, cancel, onProgress),
  )
  const out: Qcow2CompareResult = {
    identical: r.result === 'identical',
    result: r.result as Qcow2CompareResult['result'],
    sizeMismatch: r.sizeMismatch,
    message: r.message,
  }
  if (r.offset !== undefined && r.offset !== null) out.offset = r.offset
  return out
}
