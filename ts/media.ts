/** The removable-media options flash, `bmap.copy` and verify share. @internal */
import { checkBoolean, checkBytes, checkSha256, invalidArgValue } from './validate'

/** The removable-media options of `flash`, `bmap.copy` and `verify`. */
export interface MediaOptions {
  /**
   * Byte offset in the destination where the image's first byte goes (into a partition);
   * default 0. The destination must hold `seek + imageSize` bytes; a regular file is then
   * neither truncated nor shortened, so the bytes before and after the image stay as they
   * were. A stale GPT backup is zeroed only when `seek` is 0.
   */
  seek?: number
  /**
   * The decompressed image's expected SHA-256 (64 hex digits), computed while it streams
   * (every byte, also those a bmap skips). On a mismatch the operation rejects with
   * `ERR_SPARSEKIT_CHECKSUM_MISMATCH` naming both digests, and no destination's first MiB
   * is written (it keeps its old partition table: nothing half-written boots).
   */
  sha256?: string
  /**
   * Read each block of the destination first and write only the 4 KiB blocks that differ
   * (less wear on SD cards and USB sticks; re-flashing a card with an image that differs
   * by a few MiB writes a few MiB). The result's `bytesSkipped` says how much was not
   * written. A regular file is not truncated first. Not for `verify`.
   */
  onlyChanged?: boolean
  /**
   * Zero the destination's bytes in the image's unmapped ranges (those the bmap, or a plain
   * image's holes, leave out), so no stale data of an earlier image survives there:
   * `BLKZEROOUT` on a block device, `FALLOC_FL_ZERO_RANGE` in a file, else zeros written.
   */
  zeroUnmapped?: boolean
  /**
   * Discard the unmapped ranges instead (`fallocate(PUNCH_HOLE)`: a zeroing discard on a
   * block device, holes in a file); a device or file system that cannot discard fails that
   * destination with `ERR_SPARSEKIT_UNSUPPORTED` (use `zeroUnmapped`). Not with `zeroUnmapped`.
   */
  discard?: boolean
  /**
   * Without a bmap, read and write only the blocks the image's partition tables and file
   * systems use (as {@link layout} finds them: free means provably free; the gap before the
   * first partition, the tables, unknown, encrypted or dirty file systems are used), rounded
   * outward to 4 KiB blocks; the read-back covers only those. The destination's bytes in
   * free blocks are left as they were (on a block device; a regular file written from its
   * start is truncated first, so they read as zeros): that is what makes it fast. The
   * result's `trim` says `{ usedBytes, freeBytes }`. The image must be read at offsets: a
   * plain file, an http(s) URL whose server takes range requests, or a zip entry that is
   * stored (not deflated). A compressed image (gzip, xz, bzip2, zstd, a deflated zip entry)
   * or a server without range requests rejects with `ERR_SPARSEKIT_TRIM_UNSUPPORTED` before
   * anything is written: its free blocks are only known from metadata spread through the
   * whole image; flash it with its bmap instead (`sparsekit backup` writes one;
   * `bmap.create(img, { filesystems: true })` makes one of a decompressed image). With a
   * bmap found or given, the bmap is followed and `trim` is `null`. For `verify`: compare only
   * the used blocks (what a trimmed flash wrote).
   */
  trim?: boolean
  /**
   * Times a write of a destination (with `onlyChanged`, also a read) failing with a
   * transient error (`EIO`, `EBUSY`, `EAGAIN`: a card reader's hiccup) is tried again
   * before that destination fails; default 5, at most 100, 0 for none. Counted in the
   * result's `retries`; a persistent failure's error names the byte range and the attempts.
   */
  writeRetries?: number
  /**
   * Milliseconds before the first such retry, doubled for each further one (each at most
   * 5 s); default 100, at most 60000.
   */
  writeRetryDelay?: number
}

/** What `trim` found (the `trim` of a flash or `bmap.copy` result). */
export interface TrimResult {
  /** Bytes of the image its layout found used, rounded outward to 4 KiB: the only bytes read, written and read back. */
  usedBytes: number
  /** Bytes of the image that are provably free (`imageSize - usedBytes`): neither read nor written. */
  freeBytes: number
}

/** A native trim report as the API's result field. */
export function trimResult(
  t: { usedBytes: number; freeBytes: number } | null | undefined,
): TrimResult | null {
  return t == null ? null : { usedBytes: t.usedBytes, freeBytes: t.freeBytes }
}

/** The media options, checked, for the native layer. */
export function mediaArgs(o: MediaOptions) {
  return {
    seek: checkBytes('options.seek', o.seek),
    sha256: checkSha256('options.sha256', o.sha256),
    onlyChanged: checkBoolean('options.onlyChanged', o.onlyChanged),
    unmapped: unmapped(o),
    trim: checkBoolean('options.trim', o.trim),
    writeRetries: atMost('options.writeRetries', o.writeRetries, 100),
    writeRetryDelay: atMost('options.writeRetryDelay', o.writeRetryDelay, 60000),
  }
}

/** A non-negative integer option of at most `max`. */
function atMost(name: string, v: unknown, max: number): number | undefined {
  const n = checkBytes(name, v)
  if (n !== undefined && n > max) throw invalidArgValue(name, n, `must be at most ${max}`)
  return n
}

function unmapped(o: MediaOptions): 'zero' | 'discard' | undefined {
  const zero = checkBoolean('options.zeroUnmapped', o.zeroUnmapped)
  const discard = checkBoolean('options.discard', o.discard)
  if (zero && discard)
    throw invalidArgValue('options.discard', discard, 'cannot be set with options.zeroUnmapped')
  return zero ? 'zero' : discard ? 'discard' : undefined
}
