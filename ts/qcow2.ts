import { Readable } from 'node:stream'
import native = require('./native')
import { checkBoolean, checkBytes, checkOneOf, checkOptions, checkPath, PathLike } from './validate'
import { LongOptions, run } from './run'

/** How backing files are handled: `follow` (default) opens the chain, `none` reads only the image. */
export const BACKING_POLICIES = ['follow', 'none'] as const
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
  encrypt?: { format: string }
}

/** `qemu-img info --output=json` of one image; fields named as qemu names them. */
export interface Qcow2Info {
  'virtual-size': number
  filename: string
  'cluster-size'?: number
  format: 'qcow2' | 'raw'
  /** Bytes allocated on disk; absent for block devices. */
  'actual-size'?: number
  encrypted?: boolean
  'dirty-flag': boolean
  'backing-filename'?: string
  'full-backing-filename'?: string
  'backing-filename-format'?: string
  snapshots?: Qcow2Snapshot[]
  'format-specific'?: { type: 'qcow2'; data: Qcow2SpecificData }
  /** The images below this one, top first (as `qemu-img info --backing-chain` lists them after it). */
  backingChain?: Qcow2Info[]
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

/** `qemu-img check` counts. */
export interface Qcow2Check {
  /** Clusters referenced more than their refcount says, and broken structures. */
  corruptions: number
  /** Clusters whose refcount is higher than their references. */
  leaks: number
  checkErrors: number
  imageEndOffset: number
  totalClusters: number
  allocatedClusters: number
  fragmentedClusters: number
  compressedClusters: number
  filename: string
  format: 'qcow2'
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
  const out: Qcow2Info = { 'virtual-size': i.virtualSize, filename: i.filename, format: i.format as Qcow2Info['format'], 'dirty-flag': i.dirtyFlag }
  if (i.clusterSize !== undefined && i.clusterSize !== null) out['cluster-size'] = i.clusterSize
  if (i.actualSize !== undefined && i.actualSize !== null) out['actual-size'] = i.actualSize
  if (i.encrypted) out.encrypted = true
  if (i.backingFilename) out['backing-filename'] = i.backingFilename
  if (i.fullBackingFilename) out['full-backing-filename'] = i.fullBackingFilename
  if (i.backingFilenameFormat) out['backing-filename-format'] = i.backingFilenameFormat
  if (i.snapshots.length) {
    out.snapshots = i.snapshots.map((s) => {
      const r: Qcow2Snapshot = {
        id: s.id,
        name: s.name,
        'date-sec': s.dateSec,
        'date-nsec': s.dateNsec,
        'vm-clock-sec': Math.floor(s.vmClockNsec / 1e9),
        'vm-clock-nsec': s.vmClockNsec % 1e9,
        'vm-state-size': s.vmStateSize,
      }
      if (s.icount !== undefined && s.icount !== null) r.icount = s.icount
      return r
    })
  }
  if (i.compat) {
    const d: Qcow2SpecificData = {
      compat: i.compat as Qcow2SpecificData['compat'],
      'compression-type': i.compressionType as Qcow2SpecificData['compression-type'],
      'refcount-bits': i.refcountBits as number,
    }
    if (i.lazyRefcounts !== undefined && i.lazyRefcounts !== null) d['lazy-refcounts'] = i.lazyRefcounts
    if (i.bitmaps) d.bitmaps = i.bitmaps.map((b) => ({ flags: b.flags, name: b.name, granularity: b.granularity }))
    if (i.dataFile) d['data-file'] = i.dataFile
    if (i.dataFileRaw !== undefined && i.dataFileRaw !== null) d['data-file-raw'] = i.dataFileRaw
    if (i.corrupt !== undefined && i.corrupt !== null) d.corrupt = i.corrupt
    if (i.extendedL2 !== undefined && i.extendedL2 !== null) d['extended-l2'] = i.extendedL2
    if (i.encryptFormat) d.encrypt = { format: i.encryptFormat }
    out['format-specific'] = { type: 'qcow2', data: d }
  }
  return out
}

/** `qemu-img info --output=json` of a qcow2 image, with `backingChain` (images below it) when followed. */
export async function info(path: PathLike, options?: Qcow2Options & { signal?: AbortSignal }): Promise<Qcow2Info> {
  const file = checkPath('path', path)
  const o = checkOptions('options', options)
  const backing = backingOf(o)
  const chain = await run({ signal: o.signal as AbortSignal | undefined }, (cancel) => native.qcow2Info(file, { backing }, cancel))
  const [top, ...below] = chain.map(toQemuInfo)
  if (below.length) top.backingChain = below
  return top
}

/** The guest disk's status, entries exactly as `qemu-img map --output=json` prints them (phase `'map'`). */
export async function map(path: PathLike, options?: Qcow2Options & LongOptions): Promise<Qcow2MapEntry[]> {
  const file = checkPath('path', path)
  const o = checkOptions('options', options)
  const backing = backingOf(o)
  const t = await run(o as LongOptions, (cancel, onProgress) => native.qcow2Map(file, { backing }, cancel, onProgress))
  const entries: Qcow2MapEntry[] = new Array(t.length / 5)
  for (let i = 0, j = 0; i < t.length; i += 5, j++) {
    const f = t[i + 3]
    const e: Qcow2MapEntry = { start: t[i], length: t[i + 1], depth: t[i + 2], present: !!(f & 1), zero: !!(f & 2), data: !!(f & 4), compressed: !!(f & 8) }
    if (t[i + 4] >= 0) e.offset = t[i + 4]
    entries[j] = e
  }
  return entries
}

/** Map entries printed byte for byte as `qemu-img map --output=json` prints them. */
export function mapToJson(entries: Qcow2MapEntry[]): string {
  const lines = entries.map(
    (e) =>
      `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}, "compressed": ${e.compressed}` +
      (e.offset !== undefined ? `, "offset": ${e.offset}` : '') +
      '}',
  )
  return `[${lines.join(',\n')}]\n`
}

/** Which clusters the image itself allocates (backing files are not opened). */
export async function allocation(path: PathLike, options?: { signal?: AbortSignal }): Promise<Qcow2Allocation> {
  const file = checkPath('path', path)
  const o = checkOptions('options', options)
  return run({ signal: o.signal as AbortSignal | undefined }, (cancel) => native.qcow2Allocation(file, cancel)) as Promise<Qcow2Allocation>
}

/** Read-only consistency check (refcounts against references), counted as `qemu-img check` counts (phase `'verify'`). */
export async function check(path: PathLike, options?: LongOptions): Promise<Qcow2Check> {
  const file = checkPath('path', path)
  const o = checkOptions('options', options) as LongOptions
  const r = await run(o, (cancel, onProgress) => native.qcow2Check(file, cancel, onProgress))
  return { ...r, filename: typeof file === 'string' ? file : file.toString('utf8'), format: 'qcow2' }
}

/** A check result in `qemu-img check --output=json`'s shape (fields that are 0 left out, as qemu does). */
export function checkToQemu(r: Qcow2Check): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  if (r.imageEndOffset) out['image-end-offset'] = r.imageEndOffset
  if (r.totalClusters) out['total-clusters'] = r.totalClusters
  out['check-errors'] = r.checkErrors
  if (r.corruptions) out.corruptions = r.corruptions
  if (r.leaks) out.leaks = r.leaks
  if (r.allocatedClusters) out['allocated-clusters'] = r.allocatedClusters
  if (r.fragmentedClusters) out['fragmented-clusters'] = r.fragmentedClusters
  if (r.compressedClusters) out['compressed-clusters'] = r.compressedClusters
  out.filename = r.filename
  out.format = r.format
  return out
}

/**
 * Convert to a sparse raw image: a regular file is created (or replaced) with holes where
 * the guest reads zeros; a block device gets the data (and zeros only with `zeroHoles`).
 * Phases `'map'`, then `'write'`.
 */
export async function convert(src: PathLike, dst: PathLike, options?: Qcow2ConvertOptions): Promise<Qcow2ConvertResult> {
  const from = checkPath('src', src)
  const to = checkPath('dst', dst)
  const o = checkOptions('options', options)
  const opts = { backing: backingOf(o), zeroHoles: checkBoolean('options.zeroHoles', o.zeroHoles) }
  const r = await run(o as LongOptions, (cancel, onProgress) => native.qcow2Convert(from, to, opts, cancel, onProgress))
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
  const o = checkOptions('options', options)
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
