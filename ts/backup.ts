import native = require('./native')
import { checkBoolean, checkOptions, checkPath, PathLike, LONG_KEYS } from './validate'
import { LongOptions, run } from './run'

/** Options of {@link backup}. */
export interface BackupOptions extends LongOptions {
  /** Write `OUTPUT.bmap` beside the image (bmap 2.0, SHA-256 per range); default true. */
  bmap?: boolean
  /**
   * End the image at the end of the last partition, so it fits a smaller card (GPT: the
   * backup header and entries rewritten there, both CRCs fixed); default true.
   */
  shrink?: boolean
  /** Read the image back past the page cache and compare per range; default true. */
  verify?: boolean
  /**
   * Unmount a source drive's mounted file systems first. Without it a mounted drive is
   * refused (`ERR_SPARSEKIT_DRIVE_BUSY`): its file systems would change while being read.
   */
  unmount?: boolean
  /** Read a mounted or system drive as it is (an inconsistent image is likely). */
  force?: boolean
}

/** The result of {@link backup}. */
export interface BackupResult {
  /** The source's size in bytes. */
  sourceSize: number
  /** The image's size (smaller when shrunk). */
  imageSize: number
  /** Bytes read and written: the used ranges only. */
  bytesCopied: number
  /** The source's partition table. */
  table: 'gpt' | 'mbr' | 'none'
  /** SHA-256 of the whole image (free ranges as zeros), hex. */
  sha256: string
  /** The bmap written beside the image. */
  bmap?: string
  /** Bytes cut off the end (after the last partition). */
  cutBytes: number
  /** Read back and found equal. */
  verified: boolean
}

/**
 * Back up a drive or an image into a sparse image holding only what its file systems use
 * ({@link layout}: free blocks are never read), written beside `output` and renamed into
 * place (abort, a read error or ENOSPC leave no output). An `output` ending in `.qcow2` is a
 * zlib-compressed qcow2 image (no bmap); one ending in `.zst`, `.xz` or `.gz` is the raw image
 * compressed (zstd and xz on every core), its bmap beside it. Phases `map`, `copy` (`write` for qcow2), `sync`,
 * `verify`. Restore it with {@link flash} or `bmap copy`, which write only the mapped
 * ranges. A drive should not be mounted: a mounted ext4 reads as needing recovery and is
 * then copied whole.
 */
export async function backup(
  source: PathLike,
  output: PathLike,
  options?: BackupOptions,
): Promise<BackupResult> {
  const src = checkPath('source', source)
  const out = checkPath('output', output)
  const o = checkOptions('options', options, [
    'bmap',
    'shrink',
    'verify',
    'unmount',
    'force',
    ...LONG_KEYS,
  ]) as BackupOptions
  const opts = {
    bmap: checkBoolean('options.bmap', o.bmap),
    shrink: checkBoolean('options.shrink', o.shrink),
    verify: checkBoolean('options.verify', o.verify),
    unmount: checkBoolean('options.unmount', o.unmount),
    force: checkBoolean('options.force', o.force),
  }
  const r = await run(o, (cancel, onProgress) => native.backup(src, out, opts, cancel, onProgress))
  const res: BackupResult = {
    sourceSize: r.sourceSize,
    imageSize: r.imageSize,
    bytesCopied: r.bytesCopied,
    table: r.table as BackupResult['table'],
    sha256: r.sha256,
    cutBytes: r.cutBytes,
    verified: r.verified,
  }
  if (r.bmap != null) res.bmap = r.bmap
  return res
}
