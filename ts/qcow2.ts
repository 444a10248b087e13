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

import { BACKING_POLICIES, EXTENSION_HIDDEN } from './choices'
export { BACKING_POLICIES, EXTENSION_HIDDEN }
/** A backing policy. */
export type BackingPolicy = (typeof BACKING_POLICIES)[number]

/** Options of calls that read through the backing chain. */
export interface Qcow2Options {
  /**
   * `follow` (default): open the backing chain (format from the image, never probed; names
   * resolved against the image's folder; `json:`/`nbd:` names refused; at most 30 deep).
   * `none`: unallocated clusters read as zeros.
   */
  backing?: BackingPolicy
}

/** One persistent bitmap, as `qemu-img info` lists it. */
export interface Qcow2Bitmap {
  /** `in-use`, `auto`. */
  flags: string[]
  name: string
  /** Bytes per bit. */
  granularity: number
}

/** One internal snapshot, as `qemu-img info` lists it. */
export interface Qcow2Snapshot {
  id: string
  name: string
  'date-sec': number
  'date-nsec': number
  'vm-clock-sec': number
  'vm-clock-nsec': number
  'vm-state-size': number
  icount?: number
}

/** `format-specific.data` of a qcow2 image, as `qemu-img info` names it. */
export interface Qcow2SpecificData {
  compat: '0.10' | '1.1'
  'compression-type': 'zlib' | 'zstd'
  'lazy-refcounts'?: boolean
  bitmaps?: Qcow2Bitmap[]
  'refcount-bits': number
  'data-file'?: string
  'data-file-raw'?: boolean
  corrupt?: boolean
  'extended-l2'?: boolean
  /** Only `format` (qemu also lists the LUKS header's parameters, which sparsekit does not parse). */
  encrypt?: { format: string }
}

/** qemu's `file` (or `host_device`) child node, as `qemu-img info` prints it under `children`. */
export interface Qcow2FileChild {
  name: 'file'
  info: {
    children: []
    /** The file's size (or the block device's). */
    'virtual-size': number
    filename: string
    format: 'file' | 'host_device'
    'actual-size': number
    'format-specific': { type: 'file'; data: Record<string, never> }
    'dirty-flag': false
  }
}

/**
 * `qemu-img info --output=json` of one image: the same keys in the same order as qemu-img
 * 10 prints them (`JSON.stringify` gives qemu's key order; {@link toQemuJson} its text).
 */
export interface Qcow2Info {
  children: Qcow2FileChild[]
  'backing-filename-format'?: string
  snapshots?: Qcow2Snapshot[]
  'virtual-size': number
  filename: string
  'cluster-size'?: number
  format: 'qcow2' | 'raw'
  /** Bytes allocated on disk (`st_blocks` x 512); 0 for block devices, as qemu says. */
  'actual-size': number
  'format-specific'?: { type: 'qcow2'; data: Qcow2SpecificData }
  'full-backing-filename'?: string
  encrypted?: boolean
  'backing-filename'?: string
  'dirty-flag': boolean
  /**
   * The images below this one, top first (as `qemu-img info --backing-chain` lists them after
   * it). Not enumerable, so `JSON.stringify(info)` stays exactly qemu's shape.
   */
  backingChain?: Qcow2Info[]
}

/** qemu's QDict bucket of a key (`tdb_hash(key) % 512`, qobject/qdict.c). */
function qdictBucket(key: string): number {
  const b = Buffer.from(key, 'utf8')
  let v = Math.imul(0x238f13af, b.length) >>> 0
  for (let i = 0; i < b.length; i++) v = (v + ((b[i] << ((i * 5) % 24)) >>> 0)) >>> 0
  return ((Math.imul(1103515243, v) + 12345) >>> 0) % 512
}

/**
 * Reorder an object's keys (deeply) as qemu prints a QDict: by hash bucket, and inside a
 * bucket the key added last first. Objects must be built in qemu's QAPI field order.
 */
export function qemuOrder<T>(value: T): T {
  if (Array.isArray(value)) return value.map(qemuOrder) as T
  if (value === null || typeof value !== 'object' || Buffer.isBuffer(value)) return value
  const keys = Object.keys(value as object).map((k, i) => ({ k, i, b: qdictBucket(k) }))
  keys.sort((x, y) => x.b - y.b || y.i - x.i)
  const out: Record<string, unknown> = {}
  for (const { k } of keys) out[k] = qemuOrder((value as Record<string, unknown>)[k])
  return out as T
}

function qemuString(s: string): string {
  let r = '"'
  for (const ch of s) {
    const cp = ch.codePointAt(0) as number
    if (ch === '"') r += '\\"'
    else if (ch === '\\') r += '\\\\'
    else if (ch === '\b') r += '\\b'
    else if (ch === '\f') r += '\\f'
    else if (ch === '\n') r += '\\n'
    else if (ch === '\r') r += '\\r'
    else if (ch === '\t') r += '\\t'
    else if (cp > 0xffff) {
      const c = cp - 0x10000
      r += `\\u${(0xd800 + (c >> 10)).toString(16).toUpperCase()}\\u${(0xdc00 + (c & 0x3ff)).toString(16).toUpperCase()}`
    } else if (cp < 0x20 || cp >= 0x7f) r += `\\u${cp.toString(16).toUpperCase().padStart(4, '0')}`
    else r += ch
  }
  return r + '"'
}

/**
 * A value printed as qemu prints JSON (`qemu-img ... --output=json`): 4-space indents, an
 * empty list or dict still opened and closed on two lines, non-ASCII as `\uXXXX`, keys in
 * the object's order (use {@link qemuOrder} first). No trailing newline.
 */
export function toQemuJson(value: unknown, level = 0): string {
  const pad = (n: number) => ' '.repeat(4 * n)
  if (Array.isArray(value)) {
    return (
      '[' +
      value.map((v) => '\n' + pad(level + 1) + toQemuJson(v, level + 1)).join(',') +
      '\n' +
      pad(level) +
      ']'
    )
  }
  if (value !== null && typeof value === 'object') {
    const e = Object.entries(value).filter(([, v]) => v !== undefined)
    return (
      '{' +
      e
        .map(([k, v]) => '\n' + pad(level + 1) + qemuString(k) + ': ' + toQemuJson(v, level + 1))
        .join(',') +
      '\n' +
      pad(level) +
      '}'
    )
  }
  if (typeof value === 'string') return qemuString(value)
  return String(value)
}

/** One entry of `qemu-img map --output=json`. */
export interface Qcow2MapEntry {
  /** Guest offset. */
  start: number
  length: number
  /** Layer the status comes from: 0 the image, 1 its backing file, ... */
  depth: number
  /** Allocated in that layer (data or zero flag). */
  present: boolean
  /** Reads as zeros. */
  zero: boolean
  /** Holds data. */
  data: boolean
  /** Compressed clusters. */
  compressed: boolean
  /** Host offset in that layer's file (or data file), when there is one. */
  offset?: number
}

/**
 * `qemu-img check --output=json`: the same keys in the same order; counts that are 0 are
 * left out, as qemu leaves them out (`check-errors`, `filename` and `format` are always there).
 */
export interface Qcow2Check {
  'image-end-offset'?: number
  'compressed-clusters'?: number
  'total-clusters'?: number
  /** Clusters referenced more than their refcount says, and broken structures. */
  corruptions?: number
  'check-errors': number
  /** Clusters whose refcount is higher than their references. */
  leaks?: number
  'allocated-clusters'?: number
  filename: string
  format: 'qcow2'
  'fragmented-clusters'?: number
}

/** Which guest clusters an image allocates itself. */
export interface Qcow2Allocation {
  clusterSize: number
  /** Guest clusters (virtual size / cluster size, rounded up). */
  clusters: number
  /** Clusters with a host cluster (data, compressed, or zero with a preallocated offset). */
  allocatedClusters: number
  /** One bit per guest cluster, least significant bit first in each byte. */
  bitmap: Buffer
}

/** Options of {@link convert}. */
export interface Qcow2ConvertOptions extends Qcow2Options, LongOptions {
  /** Write zeros where the guest reads zeros (for a block device that is not already zeroed). */
  zeroHoles?: boolean
}

/** The result of {@link convert}. */
export interface Qcow2ConvertResult {
  /** Data bytes written (zero blocks inside data are skipped, as `qemu-img convert -S 4k`). */
  bytesWritten: number
  /** The raw image's size: the virtual size. */
  size: number
}

function backingOf(o: Record<string, unknown>): BackingPolicy | undefined {
  return checkOneOf('options.backing', o.backing, BACKING_POLICIES)
}

function toQemuInfo(i: native.NativeQcow2Info): Qcow2Info {
  // Built in qemu's QAPI field order (BlockNodeInfo, then BlockGraphInfo), then put in
  // qemu's printing order by qemuOrder.
  const file = {
    children: [],
    // qemu's file node counts whole 512-byte sectors.
    'virtual-size': Math.ceil(i.fileSize / 512) * 512,
    filename: i.filename,
    format: i.blockDevice ? 'host_device' : 'file',
    'actual-size': i.actualSize ?? 0,
    'format-specific': { type: 'file', data: {} },
    'dirty-flag': false,
  }
  // A raw image is as large as its file node (whole sectors).
  const vsize = i.format === 'raw' ? Math.ceil(i.virtualSize / 512) * 512 : i.virtualSize
  const out: Record<string, unknown> = {
    filename: i.filename,
    format: i.format,
    'dirty-flag': i.dirtyFlag,
    'actual-size': i.actualSize ?? 0,
    'virtual-size': vsize,
  }
  if (i.clusterSize !== undefined && i.clusterSize !== null) out['cluster-size'] = i.clusterSize
  if (i.encrypted) out.encrypted = true
  if (i.backingFilename) out['backing-filename'] = i.backingFilename
  if (i.fullBackingFilename) out['full-backing-filename'] = i.fullBackingFilename
  if (i.backingFilenameFormat) out['backing-filename-format'] = i.backingFilenameFormat
  if (i.snapshots.length) {
    out.snapshots = i.snapshots.map((s) => {
      const r: Record<string, unknown> = {
        id: s.id,
        name: s.name,
        'vm-state-size': s.vmStateSize,
        'date-sec': s.dateSec,
        'date-nsec': s.dateNsec,
        'vm-clock-sec': Math.floor(s.vmClockNsec / 1e9),
        'vm-clock-nsec': s.vmClockNsec % 1e9,
      }
      if (s.icount !== undefined && s.icount !== null) r.icount = s.icount
      return r
    })
  }
  if (i.compat) {
    // ImageInfoSpecificQCow2's field order.
    const d: Record<string, unknown> = { compat: i.compat }
    if (i.dataFile) d['data-file'] = i.dataFile
    if (i.dataFileRaw !== undefined && i.dataFileRaw !== null) d['data-file-raw'] = i.dataFileRaw
    if (i.extendedL2 !== undefined && i.extendedL2 !== null) d['extended-l2'] = i.extendedL2
    if (i.lazyRefcounts !== undefined && i.lazyRefcounts !== null)
      d['lazy-refcounts'] = i.lazyRefcounts
    if (i.corrupt !== undefined && i.corrupt !== null) d.corrupt = i.corrupt
    d['refcount-bits'] = i.refcountBits
    if (i.encryptFormat) d.encrypt = { format: i.encryptFormat }
    if (i.bitmaps)
      d.bitmaps = i.bitmaps.map((b) => ({
        name: b.name,
        granularity: b.granularity,
        flags: b.flags,
      }))
    d['compression-type'] = i.compressionType
    out['format-specific'] = { type: 'qcow2', data: d }
  }
  out.children = [{ name: 'file', info: file }]
  return qemuOrder(out) as unknown as Qcow2Info
}

/** `qemu-img info --output=json` of a qcow2 image, with `backingChain` (images below it) when followed. */
export async function info(
  path: PathLike,
  options?: Qcow2Options & { signal?: AbortSignal },
): Promise<Qcow2Info> {
  const file = checkPath('path', path)
  const o = checkOptions('options', options, ['backing', 'signal'])
  const backing = backingOf(o)
  const chain = await run({ signal: o.signal as AbortSignal | undefined }, (cancel) =>
    native.qcow2Info(file, { backing }, cancel),
  )
  const [top, ...below] = chain.map(toQemuInfo)
  if (below.length)
    Object.defineProperty(top, 'backingChain', {
      value: below,
      enumerable: false,
      writable: true,
      configurable: true,
    })
  return top
}

/** The guest disk's status, entries exactly as `qemu-img map --output=json` prints them (phase `'map'`). */
export async function map(
  path: PathLike,
  options?: Qcow2Options & LongOptions,
): Promise<Qcow2MapEntry[]> {
  const file = checkPath('path', path)
  const o = checkOptions('options', options, ['backing', ...LONG_KEYS])
  const backing = backingOf(o)
  const t = await run(o as LongOptions, (cancel, onProgress) =>
    native.qcow2Map(file, { backing }, cancel, onProgress),
  )
  const entries: Qcow2MapEntry[] = new Array(t.length / 5)
  for (let i = 0, j = 0; i < t.length; i += 5, j++) {
    const f = t[i + 3]
    const e: Qcow2MapEntry = {
      start: t[i],
      length: t[i + 1],
      depth: t[i + 2],
      present: !!(f & 1),
      zero: !!(f & 2),
      data: !!(f & 4),
      compressed: !!(f & 8),
    }
    if (t[i + 4] >= 0) e.offset = t[i + 4]
    entries[j] = e
  }
  return entries
}

/** A byte count or offset of a map entry: a non-negative safe integer. */
function checkMapNumber(name: string, value: unknown): number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value)
  if (!Number.isSafeInteger(value) || value < 0)
    throw invalidArgValue(name, value, 'must be a non-negative integer')
  return value
}

/**
 * Map entries printed byte for byte as `qemu-img map --output=json` prints them. Each entry
 * must have the shape {@link map} returns (`TypeError` with `code` `ERR_INVALID_ARG_TYPE`
 * or `ERR_INVALID_ARG_VALUE` otherwise, naming the entry and field).
 */
export function mapToJson(entries: Qcow2MapEntry[]): string {
  if (!Array.isArray(entries)) throw invalidArgType('entries', 'an instance of Array', entries)
  const lines: string[] = []
  // An index loop, not map(): holes of a sparse array are refused, not skipped.
  for (let i = 0; i < entries.length; i++) {
    const name = `entries[${i}]`
    const e: unknown = entries[i]
    if (typeof e !== 'object' || e === null || Array.isArray(e))
      throw invalidArgType(name, 'of type object', e)
    const r = e as Record<string, unknown>
    const n = (k: string) => checkMapNumber(`${name}.${k}`, r[k])
    const b = (k: string) => {
      if (typeof r[k] !== 'boolean') throw invalidArgType(`${name}.${k}`, 'of type boolean', r[k])
      return r[k] as boolean
    }
    const [start, length, depth] = [n('start'), n('length'), n('depth')]
    const [present, zero, data, compressed] = [b('present'), b('zero'), b('data'), b('compressed')]
    const offset = r.offset === undefined ? undefined : n('offset')
    lines.push(
      `{ "start": ${start}, "length": ${length}, "depth": ${depth}, "present": ${present}, "zero": ${zero}, "data": ${data}, "compressed": ${compressed}` +
        (offset !== undefined ? `, "offset": ${offset}` : '') +
        '}',
    )
  }
  return `[${lines.join(',\n')}]\n`
}

/** Which clusters the image itself allocates (backing files are not opened). */
export async function allocation(
  path: PathLike,
  options?: { signal?: AbortSignal },
): Promise<Qcow2Allocation> {
  const file = checkPath('path', path)
  const o = checkOptions('options', options, ['signal'])
  return run({ signal: o.signal as AbortSignal | undefined }, (cancel) =>
    native.qcow2Allocation(file, cancel),
  ) as Promise<Qcow2Allocation>
}

/** Read-only consistency check (refcounts against references), in `qemu-img check --output=json`'s shape (phase `'verify'`). */
export async function check(path: PathLike, options?: LongOptions): Promise<Qcow2Check> {
  const file = checkPath('path', path)
  const o = checkOptions('options', options, LONG_KEYS) as LongOptions
  const r = await run(o, (cancel, onProgress) => native.qcow2Check(file, cancel, onProgress))
  // ImageCheck's QAPI field order; counts of 0 are left out as qemu-img leaves them out.
  const out: Record<string, unknown> = {
    filename: typeof file === 'string' ? file : file.toString('utf8'),
    format: 'qcow2',
    'check-errors': r.checkErrors,
  }
  if (r.imageEndOffset) out['image-end-offset'] = r.imageEndOffset
  if (r.corruptions) out.corruptions = r.corruptions
  if (r.leaks) out.leaks = r.leaks
  if (r.totalClusters) out['total-clusters'] = r.totalClusters
  if (r.allocatedClusters) out['allocated-clusters'] = r.allocatedClusters
  if (r.fragmentedClusters) out['fragmented-clusters'] = r.fragmentedClusters
  if (r.compressedClusters) out['compressed-clusters'] = r.compressedClusters
  return qemuOrder(out) as unknown as Qcow2Check
}

/** @deprecated {@link check} now returns qemu-img's shape; this returns it unchanged. */
export function checkToQemu(r: Qcow2Check): Qcow2Check {
  return r
}

/**
 * Convert to a sparse raw image: a regular file is created (or replaced) with holes where
 * the guest reads zeros; a block device gets the data (and zeros only with `zeroHoles`).
 * A file is written as a temporary file beside it and renamed into place when complete, so
 * a failed or aborted convert leaves an existing file as it was (and no temporary file).
 * Phases `'map'`, then `'write'` (then `'sync'` when a file is replaced or for a block
 * device). An http(s) URL is read with range requests (see `remoteQcow2Convert` in flash).
 */
export async function convert(
  src: PathLike,
  dst: PathLike,
  options?: Qcow2ConvertOptions & HttpSourceOptions,
): Promise<Qcow2ConvertResult> {
  const url = httpUrl(src)
  if (url !== undefined) return remoteQcow2Convert(url, dst, options)
  const from = checkPath('src', src)
  const to = checkPath('dst', dst)
  const o = checkOptions('options', options, ['backing', 'zeroHoles', ...LONG_KEYS])
  const opts = { backing: backingOf(o), zeroHoles: checkBoolean('options.zeroHoles', o.zeroHoles) }
  const r = await run(o as LongOptions, (cancel, onProgress) =>
    native.qcow2Convert(from, to, opts, cancel, onProgress),
  )
  return { bytesWritten: r.bytesWritten, size: r.size }
}

/** Options of {@link createReadStream}. */
export interface Qcow2ReadStreamOptions extends Qcow2Options {
  /** First guest byte; default 0. */
  start?: number
  /** Last guest byte, inclusive (as `fs.createReadStream`); default the end of the disk. */
  end?: number
  /** Bytes per chunk; default 1 MiB. */
  highWaterMark?: number
}

/** A Readable of guest bytes (through the backing chain), read only as fast as it is consumed. */
export function createReadStream(path: PathLike, options?: Qcow2ReadStreamOptions): Readable {
  const file = checkPath('path', path)
  const o = checkOptions('options', options, ['backing', 'start', 'end', 'highWaterMark'])
  const backing = backingOf(o)
  const start = checkBytes('options.start', o.start) ?? 0
  const last = checkBytes('options.end', o.end)
  const chunk = checkBytes('options.highWaterMark', o.highWaterMark) ?? 1 << 20
  let reader: native.Qcow2Reader | undefined
  let pos = start
  let end = 0
  return new Readable({
    highWaterMark: chunk,
    read() {
      const step = async () => {
        if (!reader) {
          reader = await run({}, (cancel) => native.qcow2OpenReader(file, { backing }, cancel))
          end = Math.min(reader.size, last === undefined ? reader.size : last + 1)
        }
        if (pos >= end) return null
        const n = Math.min(chunk, end - pos)
        const r = reader
        const b = await run({}, (cancel) => r.read(pos, n, cancel))
        pos += n
        return b
      }
      step().then(
        (b) => this.push(b),
        (e) => this.destroy(e),
      )
    },
  })
}

// ---- Editing (crash-safe, under qemu's image locks) ----

/** Options of every edit. */
export interface Qcow2EditOptions {
  /**
   * Edit even when another process (a running qemu) holds the image. DANGEROUS: a VM
   * writing the image at the same time corrupts it. Without it such an image is refused
   * with `ERR_SPARSEKIT_LOCKED`.
   */
  force?: boolean
  signal?: AbortSignal
}

function editOpts(
  options: unknown,
  extra: readonly string[] = [],
): { force: boolean | undefined; signal: AbortSignal | undefined; o: Record<string, unknown> } {
  const o = checkOptions('options', options, ['force', 'signal', ...extra])
  return {
    force: checkBoolean('options.force', o.force),
    signal: o.signal as AbortSignal | undefined,
    o,
  }
}

function checkType(type: unknown): number {
  if (typeof type !== 'number') throw invalidArgType('type', 'of type number', type)
  checkBytes('type', type)
  if (type < 1 || type > 0xffffffff) {
    const e = new RangeError(
      `The value of "type" is out of range. It must be >= 1 and <= 4294967295. Received ${type}`,
    ) as RangeError & { code: string }
    e.code = 'ERR_OUT_OF_RANGE'
    throw e
  }
  return type
}

/**
 * Add or replace (`data`) or remove (`null`) header extension `type` (e.g.
 * {@link EXTENSION_HIDDEN}); other extensions are kept byte for byte and the backing file
 * name moves after them. Types the format manages (backing format, feature names,
 * bitmaps, encryption, data file) are refused with `ERR_SPARSEKIT_QCOW2_REFUSED`.
 */
export async function setExtension(
  path: PathLike,
  type: number,
  data: Buffer | Uint8Array | null,
  options?: Qcow2EditOptions,
): Promise<void> {
  const file = checkPath('path', path)
  const t = checkType(type)
  if (data !== null && !(data instanceof Uint8Array))
    throw invalidArgType('data', 'an instance of Buffer or Uint8Array, or null', data)
  const { force, signal } = editOpts(options)
  await run({ signal }, () =>
    native.qcow2SetExtension(file, t, data === null ? undefined : Buffer.from(data), { force }),
  )
}

/** The data of header extension `type`, or `null` when the image has none. */
export async function getExtension(
  path: PathLike,
  type: number,
  options?: { signal?: AbortSignal },
): Promise<Buffer | null> {
  const file = checkPath('path', path)
  const t = checkType(type)
  const o = checkOptions('options', options, ['signal'])
  return run({ signal: o.signal as AbortSignal | undefined }, () =>
    native.qcow2GetExtension(file, t),
  )
}

/** `qemu-img rebase -u`: point the image at `name` (format `format`), or at nothing (`null`); data untouched. */
export async function setBacking(
  path: PathLike,
  name: string | null,
  format?: string,
  options?: Qcow2EditOptions,
): Promise<void> {
  const file = checkPath('path', path)
  if (name !== null) {
    checkString('name', name)
    checkString('format', format)
  }
  const { force, signal } = editOpts(options)
  await run({ signal }, () =>
    native.qcow2SetBacking(file, name ?? undefined, name === null ? undefined : format, { force }),
  )
}

/** Grow (or shrink, when nothing is allocated past the new end) the virtual disk; a multiple of 512. */
export async function resize(
  path: PathLike,
  size: number,
  options?: Qcow2EditOptions,
): Promise<void> {
  const file = checkPath('path', path)
  const n = checkBytes('size', size) as number
  if (size === undefined) throw invalidArgType('size', 'of type number', size)
  const { force, signal } = editOpts(options)
  await run({ signal }, () => native.qcow2Resize(file, n, { force }))
}

/** Unallocate every guest cluster and give the space back (XCP-ng's killData); phase `'write'`. */
export async function discardAll(
  path: PathLike,
  options?: Qcow2EditOptions & LongOptions,
): Promise<void> {
  const file = checkPath('path', path)
  const { force, o } = editOpts(options, ['onProgress'])
  await run(o as LongOptions, (cancel, onProgress) =>
    native.qcow2DiscardAll(file, { force }, cancel, onProgress),
  )
}

/** Options of {@link create}, named as `qemu-img create -o` names them. */
export interface Qcow2CreateOptions extends Qcow2EditOptions {
  /** Virtual size in bytes (a multiple of 512). */
  size: number
  /** 512 to 2 MiB, a power of two; default 64 KiB. */
  clusterSize?: number
  /** Backing file name, stored as given (relative names are relative to the image's folder). */
  backing?: string
  /** Required with `backing`: `qcow2`, `raw`, ... */
  backingFormat?: string
  /** `1.1` (default) or `0.10`. */
  compat?: '0.10' | '1.1'
  extendedL2?: boolean
  lazyRefcounts?: boolean
  /**
   * `off` (default) or `metadata` (every L2 table and data cluster allocated, data left as
   * holes; regular files, no extended L2, up to one refcount block of clusters: 2 GiB
   * with 64 KiB clusters).
   */
  preallocation?: 'off' | 'metadata'
}

/** A new qcow2 image, laid out byte for byte as `qemu-img create -f qcow2` lays it out (a file there is replaced). */
export async function create(path: PathLike, options: Qcow2CreateOptions): Promise<void> {
  const file = checkPath('path', path)
  const o = checkOptions('options', options, [
    'size',
    'clusterSize',
    'backing',
    'backingFormat',
    'compat',
    'extendedL2',
    'lazyRefcounts',
    'preallocation',
    'force',
    'signal',
  ])
  const size = checkBytes('options.size', o.size)
  if (size === undefined) throw invalidArgType('options.size', 'of type number', o.size)
  if (o.backing !== undefined) checkString('options.backing', o.backing)
  if (o.backingFormat !== undefined) checkString('options.backingFormat', o.backingFormat)
  const opts = {
    size,
    clusterSize: checkBytes('options.clusterSize', o.clusterSize),
    backing: o.backing as string | undefined,
    backingFormat: o.backingFormat as string | undefined,
    compat: checkOneOf('options.compat', o.compat, ['0.10', '1.1'] as const),
    extendedL2: checkBoolean('options.extendedL2', o.extendedL2),
    lazyRefcounts: checkBoolean('options.lazyRefcounts', o.lazyRefcounts),
    preallocation: checkOneOf('options.preallocation', o.preallocation, [
      'off',
      'metadata',
    ] as const),
    force: checkBoolean('options.force', o.force),
  }
  await run({ signal: o.signal as AbortSignal | undefined }, () => native.qcow2Create(file, opts))
}

/** A new overlay at `overlay` backed by `base` (qcow2 or raw; its size and format). */
export async function snapshot(
  base: PathLike,
  overlay: PathLike,
  options?: Qcow2EditOptions,
): Promise<void> {
  const b = checkPath('base', base)
  const ov = checkPath('overlay', overlay)
  const { force, signal } = editOpts(options)
  await run({ signal }, () => native.qcow2Snapshot(b, ov, { force }))
}

/**
 * `qemu-img commit`: copy the overlay's own clusters into its backing image (qcow2 or raw,
 * both locked), then empty the overlay. Abortable (phase `'write'`): until the overlay is
 * emptied it still reads as before, so an abort leaves both images valid.
 */
export async function commit(
  path: PathLike,
  options?: Qcow2EditOptions & LongOptions,
): Promise<{ bytes: number }> {
  const file = checkPath('path', path)
  const { force, o } = editOpts(options, ['onProgress'])
  const r = await run(o as LongOptions, (cancel, onProgress) =>
    native.qcow2Commit(file, { force }, cancel, onProgress),
  )
  return { bytes: r.bytes }
}

/** Fix leaked clusters (refcounts above their references) only; resolves with how many. Refuses images with corruptions. */
export async function repair(
  path: PathLike,
  options?: Qcow2EditOptions & LongOptions & { leaks?: true },
): Promise<{ leaksFixed: number }> {
  const file = checkPath('path', path)
  const { force, o } = editOpts(options, ['onProgress', 'leaks'])
  if (o.leaks !== undefined && o.leaks !== true)
    throw invalidArgType('options.leaks', 'true', o.leaks)
  const n = await run(o as LongOptions, (cancel, onProgress) =>
    native.qcow2Repair(file, { force }, cancel, onProgress),
  )
  return { leaksFixed: n }
}

/**
 * `qcow2.convert` of an http(s) URL (called by it): the image is read with range requests
 * (only its metadata and allocated clusters are fetched; `ERR_SPARSEKIT_HTTP_NO_RANGES`
 * from a server without them); an image with a backing file or an external data file is
 * refused (`ERR_SPARSEKIT_UNSUPPORTED`). Phases `'map'`, then `'write'`.
 */
async function remoteQcow2Convert(
  url: string,
  dst: PathLike,
  options?: Qcow2ConvertOptions & HttpSourceOptions,
): Promise<Qcow2ConvertResult> {
  const to = checkPath('dst', dst)
  const o = checkOptions('options', options, [
    'backing',
    'zeroHoles',
    ...LONG_KEYS,
    ...HTTP_KEYS,
  ]) as Qcow2ConvertOptions & HttpSourceOptions
  const opts = { zeroHoles: checkBoolean('options.zeroHoles', o.zeroHoles), ...httpArgs(o) }
  const r = await run(o, (cancel, onProgress) =>
    native.remoteQcow2Convert(url, to, opts, cancel, onProgress),
  )
  return { bytesWritten: r.bytesWritten, size: r.size }
}

// ---- Writing (issue 22): import, streamed export, measure, compare ----
export {
  importImage,
  exportStream,
  measure,
  compare,
  COMPRESSIONS,
  SOURCE_FORMATS,
} from './qcow2-write'
export type {
  Compression,
  SourceFormat,
  Qcow2SourceOptions,
  Qcow2ImportOptions,
  Qcow2ImportResult,
  Qcow2ExportReadable,
  Qcow2MeasureOptions,
  Qcow2Measure,
  Qcow2CompareOptions,
  Qcow2CompareResult,
} from './qcow2-write'
