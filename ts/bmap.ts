import { writeFile } from 'node:fs/promises'
import native = require('./native')
import {
  checkBoolean,
  checkOneOf,
  checkOptions,
  checkPath,
  PathLike,
  LONG_KEYS,
  HTTP_KEYS,
  MEDIA_KEYS,
  checkBmapChoice,
} from './validate'
import { mediaArgs, MediaOptions, trimResult, TrimResult } from './media'
import { LongOptions, run } from './run'
import { httpArgs, httpUrl, HttpSourceOptions } from './http'
import {
  customizationArgs,
  customize,
  CUSTOMIZE_KEYS,
  Customization,
  CustomizeResult,
} from './customize'

import { BMAP_CHECKSUMS } from './choices'
export { BMAP_CHECKSUMS }
/** A range checksum type; `'none'` writes no range checksums (`bmaptool create --no-checksum`). */
export type BmapChecksum = (typeof BMAP_CHECKSUMS)[number]

/** Options of {@link create}. */
export interface BmapCreateOptions extends LongOptions {
  /** Checksum of each range; default `'sha256'` (as bmaptool), `'sha1'` for old readers, `'none'`. */
  checksum?: BmapChecksum
  /** Also write the bmap to this file. */
  output?: PathLike
  /**
   * Map only what the image's partition tables and file systems use (see `layout()`):
   * mapped = used ∩ allocated, so an image without holes gets a bmap that skips its free
   * space. Default `false` (the file's allocated extents, as bmaptool).
   */
  filesystems?: boolean
}

/**
 * Create the bmap of an image (a sparse file or a block device): its mapped blocks, found
 * from the file's extents, and a checksum per range hashed in parallel (phases `'map'`,
 * `'hash'`). The result is bmap format 2.0 XML that `bmaptool copy` accepts.
 * @returns the XML
 */
export async function create(image: PathLike, options?: BmapCreateOptions): Promise<string> {
  const file = checkPath('image', image)
  const o = checkOptions('options', options, [
    'checksum',
    'output',
    'filesystems',
    ...LONG_KEYS,
  ]) as BmapCreateOptions
  const checksum = checkOneOf('options.checksum', o.checksum, BMAP_CHECKSUMS)
  const output = o.output === undefined ? undefined : checkPath('options.output', o.output)
  const filesystems = checkBoolean('options.filesystems', o.filesystems)
  const r = await run(o, (cancel, onProgress) =>
    native.bmapCreate(file, { checksum, filesystems }, cancel, onProgress),
  )
  if (output !== undefined) await writeFile(output, r.xml)
  return r.xml
}

/** Options of {@link copy}; `seek`, `sha256` and `onlyChanged` as for `flash` ({@link MediaOptions}). */
export interface BmapCopyOptions extends LongOptions, MediaOptions {
  /**
   * First-boot customisation ({@link customize}): once the image is written (and read back),
   * these files go into the destination's FAT boot partition.
   */
  customize?: Customization & { partition?: number }
  /**
   * The bmap file. Default: `IMAGE.bmap` beside the image, also with the image's extensions
   * taken off (`img.raw.xz` -> `img.raw.xz.bmap`, `img.raw.bmap`, `img.bmap`), as bmaptool
   * looks. `false`: no bmap (`bmaptool copy --nobmap`): a plain image's own holes are
   * skipped; a compressed one is written whole, all-zero blocks left as holes in a file.
   */
  bmap?: PathLike | false
  /** Check each range's checksum from the bmap while copying; default `true`. */
  verify?: boolean
  /**
   * After writing and `fsync`, re-read every written range from the destination with its
   * cached pages dropped, and compare (phase `'verify'`); default `false`.
   */
  readBack?: boolean
  /**
   * Create a destination that does not exist as a regular file; default `false`: a missing
   * destination rejects with `ENOENT` before anything is written. Never under `/dev`.
   */
  createFiles?: boolean
}

/** The result of {@link copy}. */
export interface BmapCopyResult {
  /** Bytes written to the destination. */
  bytesWritten: number
  /** The image's size (the decompressed size without a bmap). */
  imageSize: number
  /** The bmap file used, if any. */
  bmap?: string
  /** `'gzip'`, `'xz'`, `'bzip2'` or `'zstd'` for a compressed image. */
  compression?: 'gzip' | 'xz' | 'bzip2' | 'zstd'
  /** Ranges whose checksum was verified while copying. */
  rangesVerified: number
  /** Ranges read back from the destination and found equal (with `readBack`). */
  rangesReadBack: number
  /** Bytes not written because the destination already held them (`onlyChanged`). */
  bytesSkipped: number
  /** Writes tried again after a transient error (EIO, EBUSY, EAGAIN). */
  retries: number
  /** The image's SHA-256, when `sha256` was given and matched. */
  sha256?: string
  /** With `trim` and no bmap: `{ usedBytes, freeBytes }` of the image; `null` otherwise (see `flash`). */
  trim: TrimResult | null
  /** With `customize`: what was written into the boot partition. */
  customized?: CustomizeResult
}

/**
 * Flash an image to a file or block device, writing only the blocks its bmap lists.
 * gzip, xz, bzip2 and zstd images are decompressed as a stream in process. A block
 * device is opened exclusively (`EBUSY` when mounted) and checked to be large enough
 * before anything is written (`ERR_SPARSEKIT_DEST_TOO_SMALL`); a file is truncated to the
 * image size so it stays sparse. A range whose data does not match the bmap rejects with
 * `ERR_SPARSEKIT_CHECKSUM_MISMATCH` and its byte `range`. Phases: `'write'` (plain image)
 * or `'decompress'` (compressed), `'sync'`, and `'verify'` with `readBack`. An http(s)
 * URL is streamed, resumed with range requests (see `remoteBmapCopy` in flash).
 */
export async function copy(
  image: PathLike,
  dst: PathLike,
  options?: BmapCopyOptions & HttpSourceOptions,
): Promise<BmapCopyResult> {
  const url = httpUrl(image)
  const from = url === undefined ? checkPath('image', image) : undefined
  const to = checkPath('dst', dst)
  const o = checkOptions('options', options, [
    'bmap',
    'verify',
    'readBack',
    'createFiles',
    'customize',
    ...LONG_KEYS,
    ...HTTP_KEYS,
    ...MEDIA_KEYS,
  ]) as BmapCopyOptions & HttpSourceOptions
  const custom =
    o.customize === undefined
      ? undefined
      : (checkOptions(
          'options.customize',
          o.customize,
          CUSTOMIZE_KEYS,
        ) as unknown as BmapCopyOptions['customize'])
  if (custom) customizationArgs('options.customize', custom.files, custom.append)
  const { bmap, noBmap } = checkBmapChoice('options.bmap', o.bmap)
  const opts = {
    bmap,
    noBmap,
    verify: checkBoolean('options.verify', o.verify),
    readBack: checkBoolean('options.readBack', o.readBack),
    createFiles: checkBoolean('options.createFiles', o.createFiles),
    ...mediaArgs(o),
  }
  const http = url === undefined ? undefined : { ...opts, ...httpArgs(o) }
  const r = await run(o, (cancel, onProgress) =>
    url === undefined || http === undefined
      ? native.bmapCopy(from as string | Buffer, to, opts, cancel, onProgress)
      : native.remoteBmapCopy(url, to, http, cancel, onProgress),
  )
  const out: BmapCopyResult = {
    bytesWritten: r.bytesWritten,
    imageSize: r.imageSize,
    rangesVerified: r.rangesVerified,
    rangesReadBack: r.rangesReadBack,
    bytesSkipped: r.bytesSkipped,
    retries: r.retries,
    trim: trimResult(r.trim),
  }
  if (r.sha256 != null) out.sha256 = r.sha256
  if (r.bmap != null) out.bmap = r.bmap
  if (r.compression != null) out.compression = r.compression as BmapCopyResult['compression']
  // First-boot files once the image is written (and read back): see customize().
  if (custom) out.customized = await customize(to, { ...custom, signal: o.signal })
  return out
}
