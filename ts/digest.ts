import native = require('./native')
import { checkBytes, checkOneOf, checkOptions, checkPath, PathLike, LONG_KEYS } from './validate'
import { LongOptions, run } from './run'

import { ALGORITHMS } from './choices'
export { ALGORITHMS }
/** A hash algorithm name. */
export type Algorithm = (typeof ALGORITHMS)[number]

/** Options of {@link digest}. */
export interface DigestOptions extends LongOptions {
  /** Hash algorithm; default `'sha256'`. */
  algorithm?: Algorithm
  /** First byte to hash; default 0. */
  start?: number
  /** Bytes to hash; default to the end of the file. A window past the end rejects with `ERR_SPARSEKIT_OUT_OF_RANGE`. */
  length?: number
}

/**
 * Hash a file, or the window `[start, start + length)` of it, off the main thread. Holes are
 * hashed as zeros without being read (phase `'map'`, then `'hash'`). Pipes, FIFOs and files
 * whose size means nothing (`/proc/cpuinfo`) are read to their end.
 * @returns the digest as lowercase hex
 */
export async function digest(path: PathLike, options?: DigestOptions): Promise<string> {
  const file = checkPath('path', path)
  const o = checkOptions('options', options, [
    'algorithm',
    'start',
    'length',
    ...LONG_KEYS,
  ]) as DigestOptions
  const algorithm = checkOneOf('options.algorithm', o.algorithm, ALGORITHMS) ?? 'sha256'
  const start = checkBytes('options.start', o.start)
  const length = checkBytes('options.length', o.length)
  const result = await run(o, (cancel, onProgress) =>
    native.digest(file, { algorithm, start, length }, cancel, onProgress),
  )
  return result.digest
}
