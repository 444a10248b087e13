/**
 * The accepted values of the API's enumerated options, in a module that imports nothing:
 * the CLI's command table lists them in `--help` and checks them while parsing, without
 * loading the API modules or the native addon. Each is re-exported by the module of the
 * function that takes it (`COPY_METHODS` from copy, ...), which is where users find it.
 * @internal
 */

/** Copy methods; `auto` tries reflink, copy_file_range, sendfile, then read/write. */
export const COPY_METHODS = ['auto', 'reflink', 'copy_file_range', 'sendfile', 'readwrite'] as const

/** Hash algorithms `digest()` offers. */
export const ALGORITHMS = ['sha256', 'sha3-512', 'blake3', 'sha1'] as const

/** Mapping methods; `auto` tries FIEMAP, then SEEK_DATA/SEEK_HOLE, then `none`. */
export const MAP_METHODS = ['auto', 'fiemap', 'seek', 'none'] as const

/** Range checksums `bmap.create()` can write. */
export const BMAP_CHECKSUMS = ['sha256', 'sha1', 'none'] as const

/** How backing files are handled: `follow` (default) opens the chain, `none` reads only the image. */
export const BACKING_POLICIES = ['follow', 'none'] as const

/** XCP-ng's "hidden" header extension type (`'vate'`, one byte of data). */
export const EXTENSION_HIDDEN = 0x76617465

/** Compression of `importImage`. */
export const COMPRESSIONS = ['zlib', 'zstd'] as const

/** Formats of a source: `raw` data or a `qcow2` image (read through its backing chain). */
export const SOURCE_FORMATS = ['raw', 'qcow2'] as const
