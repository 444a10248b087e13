import native = require('./native')
import { checkBytes, checkOneOf, checkOptions, checkPath, checkBoolean } from './errors'
import { LongOptions, run } from './run'

/** Mapping methods; `auto` tries FIEMAP, then SEEK_DATA/SEEK_HOLE, then `none`. */
export const MAP_METHODS = ['auto', 'fiemap', 'seek', 'none'] as const
/** A mapping method. */
export type MapMethod = (typeof MAP_METHODS)[number]

/** Options of {@link map}. */
export interface MapOptions {
  /** First byte of the window; default 0. Past the end of the file: `ERR_SPARSEKIT_OUT_OF_RANGE`. */
  start?: number
  /** Window length; default to the end of the file (clipped there). */
  length?: number
  /** How to find the data; a forced method that does not work rejects with `ERR_SPARSEKIT_UNSUPPORTED`. */
  method?: MapMethod
  /** Cancels the mapping. */
  signal?: AbortSignal
}

/** A range of data bytes. */
export interface Extent {
  /** First byte. */
  offset: number
  /** Length in bytes. */
  length: number
  /** Preallocated and never written: reads as zeros (FIEMAP only). */
  unwritten?: boolean
  /** Shares its blocks with another file, e.g. after a reflink copy (FIEMAP only). */
  shared?: boolean
}

/** The result of {@link map}. */
export interface ExtentMap {
  /** File (or block device) size in bytes. */
  size: number
  /** Filesystem block size in bytes. */
  blockSize: number
  /** The method that produced the map. */
  method: 'fiemap' | 'seek' | 'none'
  /** Data ranges: sorted, merged, inside the window. */
  extents: Extent[]
}

/** Where a file's (or block device's) data is. */
export async function map(path: string, options?: MapOptions): Promise<ExtentMap> {
  const file = checkPath('path', path)
  const o = checkOptions('options', options) as MapOptions
  const start = checkBytes('options.start', o.start)
  const length = checkBytes('options.length', o.length)
  const method = checkOneOf('options.method', o.method, MAP_METHODS)
  const m = await run('map', { signal: o.signal }, (cancel) => native.map(file, { start, length, method }, cancel))
  const t = m.table
  const extents: Extent[] = new Array(t.length / 3)
  for (let i = 0, j = 0; i < t.length; i += 3, j++) {
    const flags = t[i + 2]
    const e: Extent = { offset: t[i], length: t[i + 1] }
    if (flags & 1) e.unwritten = true
    if (flags & 2) e.shared = true
    extents[j] = e
  }
  return { size: m.size, blockSize: m.blockSize, method: m.method as ExtentMap['method'], extents }
}

/** Copy methods; `auto` tries reflink, copy_file_range, sendfile, then read/write. */
export const COPY_METHODS = ['auto', 'reflink', 'copy_file_range', 'sendfile', 'readwrite'] as const
/** A copy method. */
export type CopyMethod = (typeof COPY_METHODS)[number]

/** Options of {@link copy}; offsets in bytes, as dd's `skip`, `seek` and `count`. */
export interface CopyOptions extends LongOptions {
  /** Source bytes to skip; default 0. */
  skip?: number
  /** Destination offset to write at; bytes before it are kept. Default 0. */
  seek?: number
  /** Bytes to copy; default to the end of the source (a length past it copies what is there). */
  length?: number
  /** How to move data; a forced method the kernel refuses rejects with `ERR_SPARSEKIT_UNSUPPORTED`. */
  method?: CopyMethod
  /**
   * `true` (default): a regular destination ends at `seek + copied`, like `dd`.
   * `false`: it is never shortened, like `dd conv=notrunc`. Block devices are never truncated.
   */
  truncate?: boolean
  /** Write zeros over the source's holes instead of leaving holes (or skipping them on a device). */
  zeroHoles?: boolean
}

/** The result of {@link copy}. */
export interface CopyResult {
  /** Data bytes moved (or shared, for a reflink); holes are not counted. */
  bytesCopied: number
  /** Destination size afterwards. */
  size: number
  /** The most capable method that moved data. */
  method: CopyMethod
  /** Zero bytes written: with `zeroHoles`, or where a hole could not be punched. */
  bytesZeroed: number
}

/** Copy a file (or into a block device) moving only its data; holes stay holes. */
export async function copy(src: string, dst: string, options?: CopyOptions): Promise<CopyResult> {
  const from = checkPath('src', src)
  const to = checkPath('dst', dst)
  const o = checkOptions('options', options) as CopyOptions
  const opts = {
    skip: checkBytes('options.skip', o.skip),
    seek: checkBytes('options.seek', o.seek),
    length: checkBytes('options.length', o.length),
    method: checkOneOf('options.method', o.method, COPY_METHODS),
    truncate: checkBoolean('options.truncate', o.truncate),
    zeroHoles: checkBoolean('options.zeroHoles', o.zeroHoles),
  }
  const r = await run('copy', o, (cancel, onProgress) => native.copy(from, to, opts, cancel, onProgress), (r) => r.bytesTotal)
  return { bytesCopied: r.bytesCopied, size: r.size, method: r.method as CopyMethod, bytesZeroed: r.bytesZeroed }
}
