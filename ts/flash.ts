/** The imaging engine: one image to many drives, verified. */
import native = require('./native')
import {
  customizationArgs,
  customize,
  CUSTOMIZE_KEYS,
  Customization,
  CustomizeResult,
} from './customize'
import {
  callbackError,
  checkBoolean,
  checkBytes,
  checkFunction,
  checkOptions,
  checkPath,
  checkSha256,
  checkString,
  invalidArgType,
  invalidArgValue,
  PathLike,
  SparsekitError,
  LONG_KEYS,
  HTTP_KEYS,
  MEDIA_KEYS,
  checkBmapChoice,
} from './validate'
import { LongOptions, Progress, run } from './run'
import { httpArgs } from './http'
import { mediaArgs, MediaOptions, trimResult, TrimResult } from './media'

/** One destination's progress, as {@link FlashProgress} lists them. */
export interface DestinationProgress {
  /** The destination. */
  path: string
  /** `'pending'`, `'writing'`, `'syncing'`, `'verifying'`, `'done'` or `'failed'`. */
  state: 'pending' | 'writing' | 'syncing' | 'verifying' | 'done' | 'failed'
  /** Bytes written. */
  bytesWritten: number
  /** Bytes read back and found equal. */
  bytesVerified: number
  /** Bytes this destination will be written, once known. */
  bytesTotal: number | undefined
  /** Bytes per second in its current state (writing or verifying), averaged since it began. */
  speed: number
  /** Seconds left in its current state, when the total is known and it is moving. */
  eta: number | undefined
}

/** Progress of {@link flash}: the phase of the slowest live destination, and each destination. */
export interface FlashProgress extends Progress {
  /** Every destination, in the order given. */
  destinations: DestinationProgress[]
}

/** Options of {@link flash}. */
export interface FlashOptions extends Omit<LongOptions, 'onProgress'>, MediaOptions {
  /**
   * The bmap file. Default: `IMAGE.bmap` beside a local image (also with its extensions
   * taken off, as bmaptool looks), `URL.bmap` for a URL. `false`: no bmap (the image's own
   * holes are skipped for a plain local file; a stream is written whole).
   */
  bmap?: PathLike | false
  /** Check each bmap range's checksum while the source streams; default `true`. */
  verify?: boolean
  /** After `fsync`, read every destination back past the page cache and compare; default `true`. */
  readBack?: boolean
  /** Unmount the destinations' mounted partitions first (otherwise `ERR_SPARSEKIT_DRIVE_BUSY`). */
  unmount?: boolean
  /**
   * Write even to a system drive or a busy one (no exclusive open). Never set this without
   * asking the user.
   */
  force?: boolean
  /**
   * Create a destination that does not exist as a regular file; default `false`. Without it
   * a missing destination rejects with `ENOENT` before anything is written (a card pulled
   * after {@link drives.list} must not become a file). Paths under `/dev` are never created.
   */
  createFiles?: boolean
  /** For a zip source: the entry to write (default: the largest file). */
  zipEntry?: string
  /**
   * Before writing a block device, probe its real capacity (as `drives.probe`): a
   * counterfeit drive holding less than the image needs fails with
   * `ERR_SPARSEKIT_COUNTERFEIT` before anything is written.
   */
  checkCapacity?: boolean
  /**
   * After a destination succeeded, flush and eject it (Linux: the drive's `device/delete`
   * in sysfs, as for USB sticks and card readers; Windows: `IOCTL_STORAGE_EJECT_MEDIA`;
   * macOS: `DKIOCEJECT`); reported per destination as `ejected` or `ejectError`
   * (`ERR_SPARSEKIT_UNSUPPORTED` for a loop device, a partition, an SD card in a built-in
   * slot). A failed eject does not fail the destination.
   */
  eject?: boolean
  /** Extra trusted CA certificates (PEM) for https sources, added to the system's store. */
  ca?: string | Buffer
  /** Resume attempts in a row without data after a dropped connection; default 5. */
  retries?: number
  /** Milliseconds before the first retry, doubled for each further one (at most 5 s); default 500. */
  retryDelay?: number
  /** Connect and per-read time-out in ms; default 30000. */
  timeout?: number
  /** Called with progress of the slowest destination and of each one. See {@link LongOptions.onProgress}. */
  onProgress?: (p: FlashProgress) => void
  /**
   * Called once for each destination that fails, as soon as it does (the others go on):
   * its path and the same `Error` its {@link DestinationResult.error} holds at the end.
   * A throw cancels the flash, as with `onProgress`.
   */
  onFail?: (destination: string, error: SparsekitError) => void
  /**
   * First-boot customisation ({@link customize}): after each destination is written and
   * read back, these files go into its FAT boot partition (written, synced, read back by
   * content). A failure (no FAT partition, `ENOSPC`) fails that destination alone.
   */
  customize?: FlashCustomize
}

/** One destination's outcome. */
/** The `customize` option of {@link flash}: first-boot files for the image's FAT boot partition. */
export interface FlashCustomize extends Customization {
  /** The FAT partition's number; default: the first FAT partition. */
  partition?: number
}

export interface DestinationResult {
  /** The destination. */
  path: string
  /** Succeeded (written, synced, and read back when `readBack`). */
  ok: boolean
  /** Bytes written to it. */
  bytesWritten: number
  /** Read back and found equal to the image. */
  verified: boolean
  /** Bytes not written because the destination already held them (`onlyChanged`). */
  bytesSkipped: number
  /** Writes tried again after a transient error (EIO, EBUSY, EAGAIN), at most 5 per write with a doubling wait. */
  retries: number
  /** Ejected after it succeeded (`eject`). */
  ejected: boolean
  /** Why it could not be ejected (`eject`); the destination is still `ok`. */
  ejectError?: SparsekitError
  /** With `customize`: what was written into its boot partition. */
  customized?: CustomizeResult
  /** Why it failed: an `Error` with `code` (`ERR_SPARSEKIT_SYSTEM_DRIVE`, `ERR_SPARSEKIT_DRIVE_BUSY`, `ERR_SPARSEKIT_DEST_TOO_SMALL`, `EIO`, ...). */
  error?: SparsekitError
}

/** The result of {@link flash}. */
export interface FlashResult {
  /** Per destination, in the order given. */
  destinations: DestinationResult[]
  /** The (decompressed) image size. */
  imageSize: number
  /** The source's compression. */
  compression?: 'gzip' | 'xz' | 'bzip2' | 'zstd' | 'zip'
  /** Where the bmap came from, when one was used. */
  bmap?: string
  /** The zip entry written. */
  zipEntry?: string
  /** Bytes read from the source (compressed bytes for a compressed one). */
  sourceBytes: number
  /** The decompressed image's SHA-256 (lowercase hex), when `sha256` was given and matched. */
  sha256?: string
  /**
   * With `trim` and no bmap: the image's used bytes (the only ones read, written and read
   * back) and its provably free ones; `null` without `trim` or when a bmap was followed
   * (then `bmap` names it).
   */
  trim: TrimResult | null
}

function failure(f: native.NativeFailure): SparsekitError {
  const e = Object.assign(new Error(f.message), { code: f.code }) as SparsekitError
  if (f.errno != null) e.errno = f.errno
  if (f.syscall != null) e.syscall = f.syscall
  if (f.path != null) e.path = f.path
  if (f.offset != null) e.offset = f.offset
  if (f.range != null) e.range = { start: f.range[0], length: f.range[1] }
  return e
}

function sourceArg(source: unknown): string {
  if (source instanceof URL) {
    if (source.protocol === 'http:' || source.protocol === 'https:') return source.href
    const p = checkPath('source', source)
    return typeof p === 'string' ? p : p.toString('utf8')
  }
  if (Buffer.isBuffer(source)) return checkPath('source', source).toString('utf8')
  checkString('source', source)
  return source
}

/**
 * Flash one image to several destinations at once. The source (a path or an http(s)
 * URL; plain, gzip, xz, bzip2, zstd, or a zip archive) is read and decompressed once;
 * every destination is written from the same buffers, the slowest pacing the rest in
 * bounded memory. Each destination is checked first (a system drive:
 * `ERR_SPARSEKIT_SYSTEM_DRIVE`; mounted: `ERR_SPARSEKIT_DRIVE_BUSY`, unless `unmount`
 * or `force`; too small: `ERR_SPARSEKIT_DEST_TOO_SMALL`); one that fails is dropped with
 * its own `error` while the others finish and are read back. The Promise rejects only
 * when the source fails (`ERR_SPARSEKIT_HTTP`, `ERR_SPARSEKIT_HTTP_INTERRUPTED` naming the
 * `offset`, `ERR_SPARSEKIT_ZIP`, `ERR_SPARSEKIT_DECOMPRESS`, a bmap checksum mismatch) or
 * is aborted. Downloads resume after a dropped connection with range requests. Phases:
 * `'write'` (bytes written by the slowest destination; for a compressed image of unknown
 * size, `'decompress'` instead: compressed bytes read against the compressed size),
 * `'sync'` (bytes flushed), `'verify'`. A destination that fails is passed to `onFail`
 * as soon as it does.
 */
export async function flash(
  source: PathLike,
  destinations: PathLike[],
  options?: FlashOptions,
): Promise<FlashResult> {
  const src = sourceArg(source)
  if (!Array.isArray(destinations))
    throw invalidArgType('destinations', 'an instance of Array', destinations)
  if (destinations.length === 0)
    throw invalidArgValue('destinations', destinations, 'must hold at least one destination')
  const dsts = destinations.map((d, i) => checkPath(`destinations[${i}]`, d))
  const o = checkOptions('options', options, [
    'bmap',
    'verify',
    'readBack',
    'unmount',
    'force',
    'createFiles',
    'zipEntry',
    'onFail',
    'checkCapacity',
    'eject',
    'customize',
    ...LONG_KEYS,
    ...HTTP_KEYS,
    ...MEDIA_KEYS,
  ]) as FlashOptions
  const custom =
    o.customize === undefined
      ? undefined
      : (checkOptions(
          'options.customize',
          o.customize,
          CUSTOMIZE_KEYS,
        ) as unknown as FlashCustomize)
  if (custom) customizationArgs('options.customize', custom.files, custom.append)
  const { bmap, noBmap } = checkBmapChoice('options.bmap', o.bmap)
  if (o.zipEntry !== undefined) checkString('options.zipEntry', o.zipEntry)
  const opts = {
    bmap,
    noBmap,
    verify: checkBoolean('options.verify', o.verify),
    readBack: checkBoolean('options.readBack', o.readBack),
    force: checkBoolean('options.force', o.force),
    unmount: checkBoolean('options.unmount', o.unmount),
    createFiles: checkBoolean('options.createFiles', o.createFiles),
    zipEntry: o.zipEntry,
    ...httpArgs(o),
    ...mediaArgs(o),
    checkCapacity: checkBoolean('options.checkCapacity', o.checkCapacity),
    eject: checkBoolean('options.eject', o.eject),
  }
  const user = checkFunction('options.onProgress', o.onProgress) as FlashOptions['onProgress']
  const onFail = checkFunction('options.onFail', o.onFail) as FlashOptions['onFail']
  const status = new native.FlashStatusHandle(dsts.length)
  const paths = dsts.map((d) => (typeof d === 'string' ? d : d.toString('utf8')))
  const since = paths.map(() => ({ state: '', t: Date.now(), bytes: 0 }))
  // Each failure is delivered once, when the progress ticks first see it (and at the end
  // for any still undelivered).
  const told = paths.map(() => false)
  const tell = () => {
    if (!onFail) return
    paths.forEach((path, i) => {
      if (told[i]) return
      const f = status.failure(i)
      if (f == null) return
      told[i] = true
      onFail(path, failure(f))
    })
  }
  const onProgress =
    user || onFail
      ? (p: Progress) => {
          tell()
          if (!user) return
          const now = Date.now()
          const total = status.total < 0 ? undefined : status.total
          const destinations = status.snapshot().map((d, i): DestinationProgress => {
            const s = since[i]
            const moving = d.state === 'verifying' ? d.verified : d.written
            if (d.state !== s.state) {
              s.state = d.state
              s.t = now
              s.bytes = moving
            }
            const secs = (now - s.t) / 1000
            const speed = secs > 0 ? (moving - s.bytes) / secs : 0
            const left = total === undefined ? undefined : total - moving
            const eta =
              left !== undefined && speed > 0 && (d.state === 'writing' || d.state === 'verifying')
                ? left / speed
                : undefined
            return {
              path: paths[i],
              state: d.state as DestinationProgress['state'],
              bytesWritten: d.written,
              bytesVerified: d.verified,
              bytesTotal: total,
              speed,
              eta,
            }
          })
          user({ ...p, destinations })
        }
      : undefined
  const r = await run({ signal: o.signal, onProgress }, (cancel, cb) =>
    native.flashMulti(src, dsts, opts, status, cancel, cb),
  )
  try {
    tell()
  } catch (value) {
    throw callbackError(value)
  }
  const out: FlashResult = {
    destinations: r.destinations.map((d) => {
      const x: DestinationResult = {
        path: d.path,
        ok: d.error == null,
        bytesWritten: d.bytesWritten,
        verified: d.verified,
        bytesSkipped: d.bytesSkipped,
        retries: d.retries,
        ejected: d.ejected,
      }
      if (d.ejectError != null) x.ejectError = failure(d.ejectError)
      if (d.error != null) x.error = failure(d.error)
      return x
    }),
    imageSize: r.imageSize,
    sourceBytes: r.sourceBytes,
    trim: trimResult(r.trim),
  }
  // First-boot files, into each destination that was written and read back, once the
  // image is there: written, synced and read back by content. A failure fails that
  // destination alone.
  if (custom) {
    for (const d of out.destinations) {
      if (!d.ok) continue
      try {
        d.customized = await customize(d.path, { ...custom, signal: o.signal })
      } catch (e) {
        if ((e as SparsekitError).code === 'ERR_SPARSEKIT_ABORTED') throw e
        d.ok = false
        d.error = e as SparsekitError
        try {
          onFail?.(d.path, d.error)
        } catch (value) {
          throw callbackError(value)
        }
      }
    }
  }
  if (r.compression != null) out.compression = r.compression as FlashResult['compression']
  if (r.bmap != null) out.bmap = r.bmap
  if (r.zipEntry != null) out.zipEntry = r.zipEntry
  if (r.sha256 != null) out.sha256 = r.sha256
  return out
}

/** Options of {@link verify}. */
export interface VerifyOptions extends LongOptions, Pick<MediaOptions, 'seek' | 'sha256' | 'trim'> {
  /** The bmap file, as for {@link flash}; `false`: none. */
  bmap?: PathLike | false
  /** Check each bmap range's checksum while the source streams; default `true`. */
  verify?: boolean
  /** For a zip source: the entry (default: the largest file). */
  zipEntry?: string
  /** Extra trusted CA certificates (PEM) for https sources. */
  ca?: string | Buffer
  /** Resume attempts in a row without data after a dropped connection; default 5. */
  retries?: number
  /** Milliseconds before the first retry, doubled for each further one; default 500. */
  retryDelay?: number
  /** Connect and per-read time-out in ms; default 30000. */
  timeout?: number
}

/** The result of {@link verify}: the destination holds the image. */
export interface VerifyResult {
  /** Bytes compared: what a flash writes (the bmap's mapped ranges; without one a plain image's data, a stream whole). */
  bytesCompared: number
  /** The (decompressed) image size. */
  imageSize: number
  /** Where the bmap came from, when one was used. */
  bmap?: string
  /** The image's SHA-256, when `sha256` was given and matched. */
  sha256?: string
  /** With `trim` and no bmap: `{ usedBytes, freeBytes }`; only the used bytes were compared. `null` otherwise. */
  trim: TrimResult | null
}

/**
 * Read a destination back and compare it with an image (any source {@link flash} takes,
 * at `seek`), writing nothing. What a flash writes is compared: the bmap's mapped ranges,
 * or without one a plain image's data extents, a stream whole. Resolves when they are
 * equal; rejects with `ERR_SPARSEKIT_CHECKSUM_MISMATCH` and `range` (`{ start, length }`,
 * destination bytes) naming the first run of differing 4 KiB blocks. With `trim`, only the
 * blocks the image's file systems use are compared (what a trimmed flash wrote). Phase: `'verify'`.
 */
export async function verify(
  image: PathLike,
  destination: PathLike,
  options?: VerifyOptions,
): Promise<VerifyResult> {
  const src = sourceArg(image)
  const dst = checkPath('destination', destination)
  const o = checkOptions('options', options, [
    'bmap',
    'verify',
    'zipEntry',
    'seek',
    'sha256',
    'trim',
    ...LONG_KEYS,
    ...HTTP_KEYS,
  ]) as VerifyOptions
  const { bmap, noBmap } = checkBmapChoice('options.bmap', o.bmap)
  if (o.zipEntry !== undefined) checkString('options.zipEntry', o.zipEntry)
  const opts = {
    bmap,
    noBmap,
    verify: checkBoolean('options.verify', o.verify),
    zipEntry: o.zipEntry,
    seek: checkBytes('options.seek', o.seek),
    sha256: checkSha256('options.sha256', o.sha256),
    trim: checkBoolean('options.trim', o.trim),
    ...httpArgs(o),
  }
  const r = await run(o, (cancel, cb) => native.verifyImage(src, dst, opts, cancel, cb))
  const out: VerifyResult = {
    bytesCompared: r.bytesCompared,
    imageSize: r.imageSize,
    trim: trimResult(r.trim),
  }
  if (r.bmap != null) out.bmap = r.bmap
  if (r.sha256 != null) out.sha256 = r.sha256
  return out
}
