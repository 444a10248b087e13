/**
 * sparsekit: allocation-aware disk-image I/O for Node.js.
 *
 * Every long operation returns a Promise, runs in Rust off the main thread, accepts
 * `signal` (AbortSignal) and `onProgress`, and rejects with an `Error` carrying `code`
 * (`ENOENT`, `EISDIR`, ... for OS errors; `ERR_SPARSEKIT_*` for sparsekit's own).
 * @packageDocumentation
 */
export { digest, ALGORITHMS } from './digest'
export type { Algorithm, DigestOptions } from './digest'
export { map, copy, MAP_METHODS, COPY_METHODS } from './extents'
export type { MapOptions, MapMethod, Extent, ExtentMap, CopyOptions, CopyMethod, CopyResult } from './extents'
export type { Progress, LongOptions } from './run'

/** The package version. */
export const version: string = require('../package.json').version
