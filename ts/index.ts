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
export { map, mapExtents, mapTable, MAP_METHODS } from './extents'
export type { MapOptions, MapMethod, Extent, ExtentMap, ExtentTable, MapHeader } from './extents'
export { copy, COPY_METHODS } from './copy'
export type { CopyOptions, CopyMethod, CopyResult } from './copy'
export * as qcow2 from './qcow2'
export type { Progress, LongOptions } from './run'
import {
  checksum as syncChecksum,
  retrieve as syncRetrieve,
  save as syncSave,
  files as syncFiles,
} from './sync'
/** Block-level delta sync, byte-compatible with blockcopy: `checksum | retrieve | save` over any streams, or `files` for a local pair. */
export const sync = {
  checksum: syncChecksum,
  retrieve: syncRetrieve,
  save: syncSave,
  files: syncFiles,
}
export type {
  SyncChecksumOptions,
  SyncRetrieveOptions,
  SyncSaveOptions,
  SyncSaveResult,
  SyncFilesResult,
} from './sync'
import { create as bmapCreate, copy as bmapCopy } from './bmap'
/** bmaptool block maps: `create` one for an image, `copy` (flash) an image with one, verified. */
export const bmap = { create: bmapCreate, copy: bmapCopy }
export { BMAP_CHECKSUMS } from './bmap'
export type { BmapChecksum, BmapCreateOptions, BmapCopyOptions, BmapCopyResult } from './bmap'
import { list as drivesList, watch as drivesWatch, probe as drivesProbe } from './drives'
/** Drives: `list()` whole block devices (with `isSystem`), `watch()` for drives added and removed, `probe()` a drive's real capacity. */
export const drives = { list: drivesList, watch: drivesWatch, probe: drivesProbe }
export { flash, verify } from './flash'
export { layout, layoutRanges, sparsify } from './layout'
export { customize } from './customize'
export { backup } from './backup'
export type { BackupOptions, BackupResult } from './backup'
export type {
  CustomizeOptions,
  CustomizeResult,
  CustomizeContent,
  Customization,
  FirstBoot,
} from './customize'
import { cloudInit, firstRun, hashPassword } from './customize'
/** Helpers that make the files of first-boot customisation (see {@link customize}). */
export const firstBoot = { cloudInit, firstRun, hashPassword }
export type {
  Layout,
  LayoutOptions,
  LayoutPartition,
  LayoutRange,
  LayoutRangesOptions,
  LayoutState,
  SparsifyOptions,
  SparsifyResult,
} from './layout'
export { DriveWatcher } from './drives'
export type {
  Drive,
  Partition,
  Bus,
  WatchOptions,
  DriveWatcherEvents,
  ProbeOptions,
  ProbeResult,
} from './drives'
export type {
  FlashOptions,
  FlashResult,
  FlashProgress,
  DestinationProgress,
  DestinationResult,
  VerifyOptions,
  VerifyResult,
} from './flash'
export type { MediaOptions, TrimResult } from './media'
export type { HttpSourceOptions } from './http'
export type { SparsekitError } from './validate'
export type { PathLike } from './validate'

/** The package version. */
export const version: string = require('../package.json').version
