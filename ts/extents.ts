import native = require('./native')
import { checkBytes, checkOneOf, checkOptions, checkPath, PathLike, LONG_KEYS } from './validate'
import { LongOptions, run } from './run'

import { MAP_METHODS } from './choices'
export { MAP_METHODS }
/** A mapping method. */
export type MapMethod = (typeof MAP_METHODS)[number]

/** Options of {@link map}. */
export interface MapOptions extends LongOptions {
  /** First byte of the window; default 0. Past the end of the file: `ERR_SPARSEKIT_OUT_OF_RANGE`. */
  start?: number
  /** Window length; default to the end of the file (clipped there, and at `Number.MAX_SAFE_INTEGER`). */
  length?: number
  /** How to find the data; a forced method that does not work rejects with `ERR_SPARSEKIT_UNSUPPORTED`. */
  method?: MapMethod
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
  /**
   * File (or block device) size in bytes: a number, or a `bigint` when it is above
   * `Number.MAX_SAFE_INTEGER` (xfs, btrfs and tmpfs allow files up to 2^63 - 1; the
   * extents of such a file are reported up to `Number.MAX_SAFE_INTEGER`).
   */
  size: number | bigint
  /** Filesystem block size in bytes. */
  blockSize: number
  /** The method that produced the map. */
  method: 'fiemap' | 'seek' | 'none'
  /** Data ranges: sorted, merged, inside the window. */
  extents: Extent[]
}

/**
 * The result of {@link mapTable}: an {@link ExtentMap} whose extents are three parallel
 * typed arrays instead of objects, for maps of hundreds of thousands of extents (no
 * object per extent: less time and memory than {@link map}).
 */
export interface ExtentTable extends Omit<ExtentMap, 'extents'> {
  /** How many extents. */
  count: number
  /** Each extent's first byte. */
  offsets: Float64Array
  /** Each extent's length in bytes. */
  lengths: Float64Array
  /** Each extent's flags: bit 0 (1) unwritten, bit 1 (2) shared. */
  flags: Uint8Array
}

function extentsOf(t: Float64Array): Extent[] {
  const extents: Extent[] = new Array(t.length / 3)
  for (let i = 0, j = 0; i < t.length; i += 3, j++) {
    const flags = t[i + 2]
    const e: Extent = { offset: t[i], length: t[i + 1] }
    if (flags & 1) e.unwritten = true
    if (flags & 2) e.shared = true
    extents[j] = e
  }
  return extents
}

interface Checked {
  file: string | Buffer
  start: number | undefined
  length: number | undefined
  method: MapMethod | undefined
  o: MapOptions
}

function checkMap(path: unknown, options: unknown, extra: readonly string[] = []): Checked {
  const file = checkPath('path', path)
  const o = checkOptions('options', options, [
    'start',
    'length',
    'method',
    ...LONG_KEYS,
    ...extra,
  ]) as MapOptions
  return {
    file,
    o,
    start: checkBytes('options.start', o.start),
    length: checkBytes('options.length', o.length),
    method: checkOneOf('options.method', o.method, MAP_METHODS),
  }
}

/** Where a file's (or block device's) data is. Phase `'map'` reports the window bytes covered. */
export async function map(path: PathLike, options?: MapOptions): Promise<ExtentMap> {
  const { file, o, start, length, method } = checkMap(path, options)
  const m = await run(o, (cancel, onProgress) =>
    native.map(file, { start, length, method }, cancel, onProgress),
  )
  return {
    size: m.size,
    blockSize: m.blockSize,
    method: m.method as ExtentMap['method'],
    extents: extentsOf(m.table),
  }
}

/** {@link map}'s extents as typed arrays (see {@link ExtentTable}); the same options and errors. */
export async function mapTable(path: PathLike, options?: MapOptions): Promise<ExtentTable> {
  const { file, o, start, length, method } = checkMap(path, options)
  const m = await run(o, (cancel, onProgress) =>
    native.map(file, { start, length, method }, cancel, onProgress),
  )
  const t: Float64Array = m.table
  const count = t.length / 3
  const offsets = new Float64Array(count)
  const lengths = new Float64Array(count)
  const flags = new Uint8Array(count)
  for (let i = 0, j = 0; j < count; i += 3, j++) {
    offsets[j] = t[i]
    lengths[j] = t[i + 1]
    flags[j] = t[i + 2]
  }
  return {
    size: m.size,
    blockSize: m.blockSize,
    method: m.method as ExtentMap['method'],
    count,
    offsets,
    lengths,
    flags,
  }
}

/** What {@link mapExtents} yields first: everything of an {@link ExtentMap} but the extents. */
export type MapHeader = Omit<ExtentMap, 'extents'>

/**
 * The extents of a file one at a time, for files with millions of extents: memory stays
 * bounded whatever the count. The file is mapped window by window (windows adapt to the
 * extent density), extents that cross a window boundary are merged, so the sequence is
 * the same as {@link map}'s. `onHeader` gets size, block size and method first.
 */
export async function* mapExtents(
  path: PathLike,
  options?: MapOptions & { onHeader?: (h: MapHeader) => void },
): AsyncGenerator<Extent, void, undefined> {
  const { file, o, start, length, method } = checkMap(path, options, ['onHeader'])
  const onHeader = (options as { onHeader?: (h: MapHeader) => void } | undefined)?.onHeader
  let pos = start ?? 0
  let window = 1 << 30
  let end: number | undefined
  let pending: Extent | undefined
  let first = true
  for (;;) {
    const want =
      end === undefined
        ? length === undefined
          ? window
          : Math.min(window, length)
        : Math.min(window, end - pos)
    const m = await run({ signal: o.signal }, (cancel) =>
      native.map(file, { start: pos, length: want, method }, cancel),
    )
    if (first) {
      first = false
      const size = typeof m.size === 'bigint' ? Number.MAX_SAFE_INTEGER : m.size
      end = Math.min(size, length === undefined ? size : (start ?? 0) + length)
      onHeader?.({ size: m.size, blockSize: m.blockSize, method: m.method as ExtentMap['method'] })
    }
    const batch = extentsOf(m.table)
    for (const e of batch) {
      if (
        pending &&
        pending.offset + pending.length === e.offset &&
        !pending.unwritten === !e.unwritten &&
        !pending.shared === !e.shared
      ) {
        pending.length += e.length
        continue
      }
      if (pending) yield pending
      pending = e
    }
    pos += want
    if (end === undefined || pos >= end || want === 0) break
    // Aim for 2 048 to 16 384 extents per native call: few calls, little memory.
    if (batch.length > 16384 && window > 1 << 20) window /= 2
    else if (batch.length < 2048 && window < 2 ** 46) window *= 2
  }
  if (pending) yield pending
}
