import native = require('./native')
import {
  checkBoolean,
  checkBytes,
  checkOneOf,
  checkOptions,
  checkPath,
  PathLike,
  LONG_KEYS,
} from './validate'
import { LongOptions, run } from './run'

import { COPY_METHODS } from './choices'
export { COPY_METHODS }
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
  /** `fsync` a regular-file destination at the end (phase `'sync'`); block devices always are. */
  fsync?: boolean
  /**
   * Regular files: write a temporary file beside the destination and rename it into place
   * only on success (permissions kept), so a failed or aborted copy leaves the old file intact.
   */
  atomic?: boolean
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

/**
 * Copy a file (or into a block device) moving only its data; holes stay holes. Phases:
 * `'map'`, `'copy'`, and `'sync'` for block devices or with `fsync`. Every check (sizes,
 * offsets up to `Number.MAX_SAFE_INTEGER`, same file through links and loop devices) is
 * made before the first byte is written.
 */
export async function copy(
  src: PathLike,
  dst: PathLike,
  options?: CopyOptions,
): Promise<CopyResult> {
  const from = checkPath('src', src)
  const to = checkPath('dst', dst)
  const o = checkOptions('options', options, [
    'skip',
    'seek',
    'length',
    'method',
    'truncate',
    'zeroHoles',
    'fsync',
    'atomic',
    ...LONG_KEYS,
  ]) as CopyOptions
  const opts = {
    skip: checkBytes('options.skip', o.skip),
    seek: checkBytes('options.seek', o.seek),
    length: checkBytes('options.length', o.length),
    method: checkOneOf('options.method', o.method, COPY_METHODS),
    truncate: checkBoolean('options.truncate', o.truncate),
    zeroHoles: checkBoolean('options.zeroHoles', o.zeroHoles),
    fsync: checkBoolean('options.fsync', o.fsync),
    atomic: checkBoolean('options.atomic', o.atomic),
  }
  const r = await run(o, (cancel, onProgress) => native.copy(from, to, opts, cancel, onProgress))
  return {
    bytesCopied: r.bytesCopied,
    size: r.size,
    method: r.method as CopyMethod,
    bytesZeroed: r.bytesZeroed,
  }
}
