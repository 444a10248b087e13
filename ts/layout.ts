import native = require('./native')
import {
  abortError,
  checkBoolean,
  checkFunction,
  checkOptions,
  checkPath,
  checkSignal,
  PathLike,
  LONG_KEYS,
  HTTP_KEYS,
} from './validate'
import { LongOptions, run } from './run'
import { httpArgs, httpUrl, HttpSourceOptions } from './http'

/** Options of {@link layout}; the http(s) ones apply when `path` is a URL. */
export interface LayoutOptions extends LongOptions, HttpSourceOptions {}

/** Whether a partition's free space could be read. */
export type LayoutState = 'clean' | 'dirty' | 'unknown'

/** A byte range of the device. */
export interface LayoutRange {
  /** First byte. */
  offset: number
  /** Length in bytes. */
  length: number
}

/** One partition of a {@link Layout} (without a table: the whole device, number 0). */
export interface LayoutPartition {
  /** The number Linux gives it (`sda3` is 3; logical MBR partitions start at 5); 0 without a table. */
  number: number
  /** First byte on the device. */
  start: number
  /** Length in bytes. */
  length: number
  /** The partition type: a GPT type GUID (`0fc63daf-...`) or an MBR type (`0x83`); `''` without a table. */
  type: string
  /** What the type usually means (`Linux filesystem`, `EFI System`), when known. */
  typeName?: string
  /** The GPT partition name. */
  name?: string
  /** The GPT partition's unique GUID. */
  partuuid?: string
  /**
   * The file system (blkid's names): `ext2`, `ext3`, `ext4`, `vfat`, `exfat`, `ntfs`, `xfs`,
   * `btrfs`, `swap`, `crypto_LUKS`, `LVM2_member`; `null` when none is recognised.
   */
  filesystem: string | null
  /** The file system's label. */
  label?: string
  /** The file system's UUID or volume serial, as blkid prints it. */
  uuid?: string
  /** Bytes of this partition that are used. */
  usedBytes: number
  /**
   * `clean`: a file system sparsekit fully understands, cleanly unmounted, whose metadata
   * passed every check; its free blocks are free. `dirty` (needs journal recovery, dirty
   * flag, errors) and `unknown` (no or an unread file system, a failed check): all used.
   */
  state: LayoutState
  /** Why the partition is all used, when it is not `clean`. */
  reason?: string
}

/** The result of {@link layout}. */
export interface Layout {
  /** The device size in bytes. */
  size: number
  /** The partition table. */
  table: 'gpt' | 'mbr' | 'none'
  /** The logical sector size the table uses (512 or 4096). */
  sectorSize: number
  /** Whether the GPT comes with a hybrid MBR. */
  hybridMbr: boolean
  /** The partitions in the order of their start (the extended MBR container is not listed). */
  partitions: LayoutPartition[]
  /**
   * Used byte ranges: merged, sorted, device offsets. Everything else is provably free;
   * table areas, gaps between partitions and unknown or dirty partitions are used.
   */
  used: LayoutRange[]
  /** Bytes used in all. */
  usedBytes: number
  /** What did not stop the read but is worth knowing (a missing backup GPT header). */
  warnings: string[]
}

/**
 * The partition table, partitions, file systems and used ranges of an image file, a
 * block device or an http(s) URL (read with range requests, only the metadata fetched),
 * from each file system's own allocation metadata, without mounting. Free means provably
 * free. Phase `'map'` reports the device bytes covered. Rejects with
 * `ERR_SPARSEKIT_LAYOUT_CORRUPT` when the partition table itself is broken (an EBR loop,
 * overlapping partitions, a partition past the end of a truncated image).
 */
export async function layout(path: PathLike | URL, options?: LayoutOptions): Promise<Layout> {
  const url = httpUrl(path)
  const file = url ?? checkPath('path', path)
  const o = checkOptions('options', options, [...LONG_KEYS, ...HTTP_KEYS]) as LayoutOptions
  const http = url === undefined ? undefined : { url, ...httpArgs(o) }
  const l = await run(o, (cancel, onProgress) => native.layout(file, http, cancel, onProgress))
  return layoutOf(l)
}

function rangesOf(t: Float64Array): LayoutRange[] {
  const used: LayoutRange[] = new Array(t.length / 2)
  for (let i = 0, j = 0; i < t.length; i += 2, j++) used[j] = { offset: t[i], length: t[i + 1] }
  return used
}

function layoutOf(l: native.NativeLayout): Layout {
  const used = rangesOf(l.used)
  const partitions: LayoutPartition[] = l.partitions.map((p) => {
    const q: LayoutPartition = {
      number: p.number,
      start: p.start,
      length: p.length,
      type: p.type,
      filesystem: p.filesystem ?? null,
      usedBytes: p.usedBytes,
      state: p.state as LayoutState,
    }
    if (p.typeName != null) q.typeName = p.typeName
    if (p.name != null) q.name = p.name
    if (p.partuuid != null) q.partuuid = p.partuuid
    if (p.label != null) q.label = p.label
    if (p.uuid != null) q.uuid = p.uuid
    if (p.reason != null) q.reason = p.reason
    return q
  })
  return {
    size: l.size,
    table: l.table as Layout['table'],
    sectorSize: l.sectorSize,
    hybridMbr: l.hybridMbr,
    partitions,
    used,
    usedBytes: l.usedBytes,
    warnings: l.warnings,
  }
}

/** Options of {@link layoutRanges}. */
export interface LayoutRangesOptions {
  /** Cancels the walk; the iteration throws `code: 'ERR_SPARSEKIT_ABORTED'`. */
  signal?: AbortSignal
  /** Called once the walk ends, with the {@link Layout} (its `used` empty: they were yielded). */
  onLayout?: (l: Layout) => void
}

/**
 * The used ranges of {@link layout} one at a time, for file systems with millions of
 * runs: a native producer hands them over in batches of 16 384 through a queue of two, so
 * memory stays bounded whatever the count; leaving the loop early stops it. The sequence is
 * the same as `layout().used`. Partitions and the rest come last, through `onLayout`.
 */
export async function* layoutRanges(
  path: PathLike,
  options?: LayoutRangesOptions,
): AsyncGenerator<LayoutRange, void, undefined> {
  const file = checkPath('path', path)
  const o = checkOptions('options', options, ['signal', 'onLayout']) as LayoutRangesOptions
  const signal = checkSignal('options.signal', o.signal)
  const onLayout = checkFunction('options.onLayout', o.onLayout) as LayoutRangesOptions['onLayout']
  if (signal?.aborted) throw abortError(signal)
  const cancel = new native.CancelToken()
  const stream = native.layoutStream(file, cancel)
  const onAbort = () => stream.close()
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    for (;;) {
      let c: native.NativeLayoutChunk
      try {
        c = await stream.next()
      } catch (err) {
        if (signal?.aborted) throw abortError(signal)
        throw err
      }
      for (const r of rangesOf(c.table)) yield r
      if (c.layout) {
        onLayout?.(layoutOf(c.layout))
        return
      }
    }
  } finally {
    signal?.removeEventListener('abort', onAbort)
    stream.close()
  }
}

/** Options of {@link sparsify}. */
export interface SparsifyOptions extends LongOptions {
  /**
   * Allow a block device: its free ranges are discarded and then read as zeros. Without it
   * a block device rejects with `ERR_SPARSEKIT_LAYOUT_REFUSED`.
   */
  discard?: boolean
}

/** The result of {@link sparsify}. */
export interface SparsifyResult {
  /** The image or device size. */
  size: number
  /** Bytes {@link layout} calls used (left alone). */
  usedBytes: number
  /** Bytes of free ranges punched out (or discarded). */
  freedBytes: number
  /** Bytes the image file had allocated before (regular files). */
  allocatedBefore?: number
  /** Bytes the image file has allocated now (regular files). */
  allocatedAfter?: number
}

/**
 * Punch every range {@link layout} calls free out of an image file, so it reads as zeros
 * and takes no space (`virt-sparsify --in-place` without a VM); on a block device only
 * with `discard: true`. Refused before anything is written: an image attached to a loop
 * device or mounted, or a device in use (`ERR_SPARSEKIT_LAYOUT_BUSY`), a dirty file
 * system (`ERR_SPARSEKIT_LAYOUT_DIRTY`). Phases `'map'`, then `'write'` over the free bytes.
 */
export async function sparsify(path: PathLike, options?: SparsifyOptions): Promise<SparsifyResult> {
  const file = checkPath('path', path)
  const o = checkOptions('options', options, ['discard', ...LONG_KEYS]) as SparsifyOptions
  const discard = checkBoolean('options.discard', o.discard)
  const r = await run(o, (cancel, onProgress) =>
    native.sparsify(file, { discard }, cancel, onProgress),
  )
  const out: SparsifyResult = { size: r.size, usedBytes: r.usedBytes, freedBytes: r.freedBytes }
  if (r.allocatedBefore != null) out.allocatedBefore = r.allocatedBefore
  if (r.allocatedAfter != null) out.allocatedAfter = r.allocatedAfter
  return out
}
