/**
 * The command table's declarations: every command's name, summary, positionals, options and
 * notes, which parsing (args.ts) and help (help.ts) read, and nothing that runs. What each
 * command does is in `ts/cli/commands/NAME.ts`, loaded only when that command runs (the
 * table, ts/cli/commands/index.ts, pairs the two). One file, and importing neither the API
 * nor the addon, because every start of `sparsekit` reads it: each module Node loads costs
 * start-up time. @internal
 */
import {
  ALGORITHMS,
  BACKING_POLICIES,
  BMAP_CHECKSUMS,
  COMPRESSIONS,
  COPY_METHODS,
  MAP_METHODS,
  SOURCE_FORMATS,
} from '../choices'
import { JSON_IGNORED, JSON_OUTPUT, spec } from './command'

/** `--ca PEM` and `--retries N`, for the commands that read http(s) URLs. */
export const HTTP_OPTIONS = [
  {
    flag: 'ca',
    type: 'string',
    value: 'PEM',
    description: 'trust this CA certificate file for an https source',
  },
  {
    flag: 'retries',
    type: 'count',
    value: 'N',
    description:
      'retry an http(s) source this many times after a cut connection (resumed by range requests)',
  },
] as const

/** `--seek`, `--sha256`, `--only-changed`, `--write-retries`...: the removable-media options of flash and bmap copy. */
export const MEDIA_OPTIONS = [
  {
    flag: 'seek',
    type: 'bytes',
    value: 'N',
    description: 'write the image at byte N of each destination (into a partition)',
  },
  {
    flag: 'sha256',
    type: 'string',
    value: 'HEX',
    description:
      "the image's expected SHA-256: on a mismatch the destination's first MiB is never written",
  },
  {
    flag: 'only-changed',
    type: 'boolean',
    description: 'read each block first and write only the blocks that differ',
  },
  {
    flag: 'zero-unmapped',
    type: 'boolean',
    description: "zero the ranges the image's bmap leaves out, so no stale data survives",
  },
  {
    flag: 'discard',
    type: 'boolean',
    description: 'discard those ranges instead (an error where the device cannot discard)',
  },
  {
    flag: 'write-retries',
    type: 'count',
    value: 'N',
    description:
      'retry a write failing with EIO/EBUSY/EAGAIN this many times before the drive fails (default 5)',
  },
  {
    flag: 'write-retry-delay',
    type: 'count',
    value: 'MS',
    description: 'wait this long before the first such retry, doubled each time (default 100)',
  },
] as const

/** `--trim` of flash and bmap copy: without a bmap, only the blocks the file systems use. */
export const TRIM_OPTION = {
  flag: 'trim',
  type: 'boolean',
  api: 'trim',
  description:
    "without a bmap, read and write only the blocks the image's file systems use (faster)",
} as const

/** `--force` of the qcow2 edits: write although another process holds the image's lock. */
export const QCOW2_FORCE = {
  flag: 'force',
  type: 'boolean',
  api: 'force',
  description: 'edit the image although another process (a running qemu) holds its lock: dangerous',
} as const

/** `--backing follow|none` of the qcow2 readers. */
export const BACKING_POLICY = {
  flag: 'backing',
  type: 'choice',
  value: 'POLICY',
  choices: BACKING_POLICIES,
  default: 'follow',
  description: 'read through the backing chain, or treat unallocated clusters as holes',
} as const

/** The paragraph of the qcow2 edits. */
export const QCOW2_EDIT_NOTE =
  "Crash-safe: the edit takes qemu's image locks (as qemu-img does) and refuses an image a running " +
  'qemu holds, unless --force.'

/** The first-boot options of `customize` and `flash`: files into the FAT boot partition. */
export const CUSTOMIZE_OPTIONS = [
  {
    flag: 'file',
    type: 'string',
    value: 'PATH=LOCALFILE',
    repeat: true,
    description: 'write LOCALFILE as PATH in the FAT boot partition',
  },
  {
    flag: 'append',
    type: 'string',
    value: 'PATH=TEXT',
    repeat: true,
    description: 'append TEXT once to PATH (e.g. cmdline.txt) in the boot partition',
  },
  {
    flag: 'delete',
    type: 'string',
    value: 'PATH',
    repeat: true,
    description: 'delete PATH from the boot partition',
  },
  {
    flag: 'partition',
    type: 'count',
    value: 'N',
    description: 'the FAT partition to customise (default: the first FAT partition)',
  },
] as const

/**
 * The flags every side takes, so that one set fits all three (`--zstd` and `--truncate`
 * change nothing in checksum's stream). Every side of a session must give the same ones.
 */
export const SIDE_OPTIONS = [
  {
    flag: 'progress',
    type: 'boolean',
    description: 'print progress lines on stderr, even when it is no terminal (as blockcopy)',
  },
  { flag: 'blake3', type: 'boolean', description: 'extension: compare blocks by BLAKE3 hashes' },
  {
    flag: 'holes',
    type: 'boolean',
    description: 'extension: holes are neither read nor sent; zero blocks become holes',
  },
  {
    flag: 'zstd',
    type: 'boolean',
    description: 'extension: send blocks zstd-compressed where smaller (not with --lzma)',
  },
  {
    flag: 'truncate',
    type: 'boolean',
    description: "extension: save makes DST exactly the source's size",
  },
  {
    flag: 'resume',
    type: 'boolean',
    description: 'extension: a cut session continues where it stopped (journal kept by save)',
  },
  JSON_IGNORED,
] as const

/** `--journal FILE` of checksum and save. */
export const JOURNAL = {
  flag: 'journal',
  type: 'string',
  value: 'FILE',
  description: 'the journal of --resume (default: DST.sksync-resume beside DST)',
} as const

/** The paragraph of all three commands' help. */
export const BLOCKCOPY_NOTE =
  'blockcopy-compatible delta sync over any pipe: sparsekit checksum DST | (ssh host sparsekit ' +
  'retrieve SRC) | sparsekit save DST. Extensions are sparsekit-only (never with a blockcopy ' +
  'peer): give every side the same ones (checksum ignores --zstd and --truncate).'

/** Options shared by `qcow2 import` and `qcow2 export`. */
export const WRITE_OPTIONS = [
  {
    flag: 'cluster-size',
    type: 'bytes',
    value: 'N',
    default: '64K',
    description: '512 to 2M, a power of two',
  },
  {
    flag: 'compat',
    type: 'choice',
    value: 'VERSION',
    choices: ['0.10', '1.1'],
    default: '1.1',
    description: 'the qcow2 version',
  },
  {
    flag: 'extended-l2',
    type: 'boolean',
    description: 'subclusters: extended L2 entries (clusters of 16K or more)',
  },
  {
    flag: 'backing',
    type: 'string',
    value: 'FILE',
    description:
      'write an overlay on FILE holding only the clusters that differ from it (stored as given, relative to the image)',
  },
  {
    flag: 'backing-format',
    type: 'choice',
    value: 'FMT',
    choices: ['qcow2', 'raw'],
    description: "the backing file's format: needed with --backing",
  },
  {
    flag: 'trim',
    type: 'boolean',
    description:
      "leave out the clusters lying entirely in free space of SRC's file systems (MBR/GPT, ext2-4, FAT, exFAT, NTFS, XFS, btrfs, swap): they read as zeros",
  },
  {
    flag: 'format',
    short: 'f',
    type: 'choice',
    value: 'FMT',
    choices: SOURCE_FORMATS,
    description: "SRC's format (default: a qcow2 image is recognised by its magic)",
  },
  ...HTTP_OPTIONS,
] as const

/** `sparsekit map FILE`: a file's extents, streamed, then what is data and what is hole. @internal */
export const map = spec({
  name: 'map',
  summary: "list a file's extents: where its data is and where its holes are",
  positionals: [{ name: 'FILE' }],
  options: [
    { flag: 'start', type: 'bytes', value: 'N', description: 'map from byte N' },
    {
      flag: 'length',
      type: 'bytes',
      value: 'N',
      description: 'map N bytes (default: to the end of FILE)',
    },
    {
      flag: 'method',
      type: 'choice',
      value: 'METHOD',
      choices: MAP_METHODS,
      default: 'auto',
      description: 'how to find the extents (none: report every byte as data)',
    },
    JSON_OUTPUT,
  ],
})

/** `sparsekit copy SRC DST`: a copy by extents, with dd's skip / seek / length. @internal */
export const copy = spec({
  name: 'copy',
  summary: 'copy a file by its extents (holes stay holes), as dd with skip and seek',
  positionals: [{ name: 'SRC' }, { name: 'DST' }],
  options: [
    {
      flag: 'skip',
      type: 'bytes',
      value: 'N',
      description: 'start reading SRC at byte N (dd skip=)',
    },
    {
      flag: 'seek',
      type: 'bytes',
      value: 'N',
      description: 'start writing DST at byte N (dd seek=)',
    },
    {
      flag: 'length',
      type: 'bytes',
      value: 'N',
      description: 'copy N bytes (default: to the end of SRC)',
    },
    {
      flag: 'method',
      type: 'choice',
      value: 'METHOD',
      choices: COPY_METHODS,
      default: 'auto',
      description: 'how to copy the data',
    },
    {
      flag: 'notrunc',
      type: 'boolean',
      description: 'do not truncate DST after the copied range (dd conv=notrunc)',
    },
    {
      flag: 'zero-holes',
      type: 'boolean',
      description: 'write zeros where SRC has holes instead of leaving holes',
    },
    { flag: 'fsync', type: 'boolean', description: 'flush DST to the disk before exiting' },
    {
      flag: 'atomic',
      type: 'boolean',
      description: 'write a temporary file and rename it over DST when done',
    },
    JSON_OUTPUT,
  ],
})

/** `sparsekit digest FILE`: a file's hash, holes hashed as zeros without being read. @internal */
export const digest = spec({
  name: 'digest',
  summary: 'hash a file or a window of it; holes are hashed as zeros without being read',
  positionals: [{ name: 'FILE' }],
  options: [
    {
      flag: 'algorithm',
      short: 'a',
      type: 'choice',
      value: 'ALG',
      choices: ALGORITHMS,
      default: 'sha256',
      description: 'the hash',
    },
    { flag: 'start', type: 'bytes', value: 'N', description: 'hash from byte N' },
    {
      flag: 'length',
      type: 'bytes',
      value: 'N',
      description: 'hash N bytes (default: to the end of FILE)',
    },
    JSON_OUTPUT,
  ],
})

/** `sparsekit bmap create IMAGE`: bmaptool's block map of an image. @internal */
export const bmapCreate = spec({
  name: 'bmap create',
  summary: "write an image's bmap: its mapped ranges and their checksums (bmaptool)",
  positionals: [{ name: 'IMAGE' }],
  // No --json: a bmap is XML, and --json would be a promise not kept.
  options: [
    {
      flag: 'output',
      short: 'o',
      type: 'string',
      value: 'FILE',
      description: 'write the bmap to FILE instead of stdout',
    },
    {
      flag: 'checksum',
      type: 'choice',
      value: 'TYPE',
      choices: BMAP_CHECKSUMS,
      default: 'sha256',
      description: 'checksum of each range',
    },
    {
      flag: 'no-checksum',
      type: 'boolean',
      description: 'write no checksums (as --checksum none)',
    },
    {
      flag: 'fs',
      type: 'boolean',
      description: "map only what the image's file systems use",
      api: 'filesystems',
    },
  ],
})

/** `sparsekit bmap copy IMAGE DST`: `bmaptool copy`, with bmaptool's flag names. @internal */
export const bmapCopy = spec({
  name: 'bmap copy',
  summary: 'write an image to a drive or file by its bmap, checked (bmaptool copy)',
  positionals: [{ name: 'IMAGE' }, { name: 'DST' }],
  options: [
    {
      flag: 'bmap',
      type: 'string',
      value: 'FILE',
      description: 'the bmap (default: IMAGE.bmap beside the image, as bmaptool looks)',
    },
    {
      flag: 'nobmap',
      type: 'boolean',
      description: "write without a bmap: a plain image's holes are skipped",
    },
    {
      flag: 'no-verify',
      type: 'boolean',
      description: "do not check the ranges' checksums from the bmap",
    },
    {
      flag: 'read-back',
      type: 'boolean',
      description: 'after writing, read every written range back from DST and compare',
    },
    {
      flag: 'create',
      type: 'boolean',
      api: 'createFiles',
      description: 'create DST as a regular file if it does not exist',
    },
    ...MEDIA_OPTIONS,
    TRIM_OPTION,
    ...HTTP_OPTIONS,
    ...CUSTOMIZE_OPTIONS,
    JSON_OUTPUT,
  ],
  notes: [
    'IMAGE may be plain or gz/xz/bz2/zst compressed, and an http(s) URL: read as a stream, its ' +
      'bmap fetched from URL.bmap, a cut connection resumed with range requests.',
    '--trim (no bmap): only the used blocks of the partitions and file systems are read, written ' +
      'and read back; free blocks of the destination are left as they were. The image must be ' +
      'read at offsets (plain file, http(s) with ranges, stored zip entry): a compressed one is ' +
      'refused (ERR_SPARSEKIT_TRIM_UNSUPPORTED); use its bmap (sparsekit backup writes one).',
  ],
})

/** `sparsekit checksum DST`: blockcopy's first side, the destination's block hashes to stdout. @internal */
export const checksum = spec({
  name: 'checksum',
  summary: 'blockcopy, side 1: hash the blocks of DST to stdout',
  positionals: [{ name: 'DST' }],
  options: [
    { flag: 'start', type: 'bytes', value: 'N', description: 'hash from byte N of DST' },
    { flag: 'end', type: 'bytes', value: 'N', description: 'hash up to byte N of DST' },
    ...SIDE_OPTIONS,
    JOURNAL,
  ],
  notes: [
    "DST may be '-' (stdin) or a pipe such as /dev/stdin or a FIFO: it is read once, in order.",
    BLOCKCOPY_NOTE,
  ],
})

/** `sparsekit retrieve SRC`: blockcopy's second side, hashes in, changed blocks of SRC out. @internal */
export const retrieve = spec({
  name: 'retrieve',
  summary: 'blockcopy, side 2: hashes on stdin, the blocks of SRC that differ to stdout',
  positionals: [{ name: 'SRC' }],
  options: [
    {
      flag: 'lzma',
      type: 'boolean',
      description: 'send compressible blocks xz-compressed (as blockcopy --lzma)',
    },
    ...SIDE_OPTIONS,
  ],
  notes: [BLOCKCOPY_NOTE],
})

/** `sparsekit save DST`: blockcopy's last side, the block stream on stdin written into DST. @internal */
export const save = spec({
  name: 'save',
  summary: 'blockcopy, side 3: write the blocks read on stdin into DST',
  positionals: [{ name: 'DST' }],
  options: [...SIDE_OPTIONS, JOURNAL],
  notes: [BLOCKCOPY_NOTE],
})

/** `sparsekit qcow2 info FILE`: `qemu-img info`, as a table or qemu's JSON. @internal */
export const qcow2Info = spec({
  name: 'qcow2 info',
  summary: "show a qcow2 image's size, backing file, snapshots, bitmaps (qemu-img info)",
  positionals: [{ name: 'FILE' }],
  options: [
    BACKING_POLICY,
    {
      flag: 'backing-chain',
      type: 'boolean',
      description: 'with --json, print every image of the backing chain (as qemu-img)',
    },
    {
      ...JSON_OUTPUT,
      description: "print qemu-img info's JSON (--output=json), key order included",
    },
  ],
})

/** `sparsekit qcow2 map FILE`: `qemu-img map`, as a table or qemu's JSON byte for byte. @internal */
export const qcow2Map = spec({
  name: 'qcow2 map',
  summary: "list where a qcow2 image's guest data lies (qemu-img map)",
  positionals: [{ name: 'FILE' }],
  options: [
    BACKING_POLICY,
    { ...JSON_OUTPUT, description: "print qemu-img map's JSON (--output=json), byte for byte" },
  ],
})

/** `sparsekit qcow2 check FILE`: `qemu-img check`, its output and its exit status. @internal */
export const qcow2Check = spec({
  name: 'qcow2 check',
  summary: 'check a qcow2 image for corruptions and leaked clusters (qemu-img check)',
  positionals: [{ name: 'FILE' }],
  options: [{ ...JSON_OUTPUT, description: "print qemu-img check's JSON (--output=json)" }],
  notes: [
    'Exit status as qemu-img check: 0 no errors, 2 corruptions found, 3 leaked clusters only.',
  ],
})

/** `sparsekit qcow2 convert SRC DST`: a qcow2 image (a path or an http(s) URL) to a raw one. @internal */
export const qcow2Convert = spec({
  name: 'qcow2 convert',
  summary: 'write a qcow2 image out as a raw image or onto a drive; holes stay holes',
  positionals: [{ name: 'SRC' }, { name: 'DST' }],
  options: [
    BACKING_POLICY,
    {
      flag: 'zero-holes',
      type: 'boolean',
      description: 'write zeros where the guest reads zeros instead of leaving holes',
    },
    ...HTTP_OPTIONS,
    JSON_OUTPUT,
  ],
  notes: ['SRC may be an http(s) URL, read with range requests.'],
})

/** `sparsekit qcow2 create FILE --size N`: a new image, as `qemu-img create -f qcow2`. @internal */
export const qcow2Create = spec({
  name: 'qcow2 create',
  summary: 'create a qcow2 image, byte for byte as qemu-img create -f qcow2 does',
  usage: ['--size N FILE'],
  positionals: [{ name: 'FILE' }],
  options: [
    {
      flag: 'size',
      type: 'bytes',
      value: 'N',
      description: 'the virtual size, a multiple of 512 (required)',
    },
    {
      flag: 'cluster-size',
      type: 'bytes',
      value: 'N',
      default: '64K',
      description: '512 to 2M, a power of two',
    },
    {
      flag: 'backing',
      type: 'string',
      value: 'FILE',
      description: 'the backing file, stored as given (relative to the image)',
    },
    {
      flag: 'backing-format',
      type: 'string',
      value: 'FMT',
      description: "the backing file's format (qcow2, raw, ...): needed with --backing",
    },
    {
      flag: 'compat',
      type: 'choice',
      value: 'VERSION',
      choices: ['0.10', '1.1'],
      default: '1.1',
      description: 'the qcow2 version',
    },
    { flag: 'extended-l2', type: 'boolean', description: 'subclusters: extended L2 entries' },
    { flag: 'lazy-refcounts', type: 'boolean', description: 'lazy refcounts (compat 1.1)' },
    {
      flag: 'preallocation',
      type: 'choice',
      value: 'MODE',
      choices: ['off', 'metadata'],
      default: 'off',
      description: 'metadata: allocate every L2 table and data cluster, data left as holes',
    },
    QCOW2_FORCE,
    JSON_IGNORED,
  ],
  notes: ['A file already at FILE is replaced.'],
})

/** `sparsekit qcow2 resize FILE SIZE`: a new virtual size. @internal */
export const qcow2Resize = spec({
  name: 'qcow2 resize',
  summary: "grow a qcow2 image's virtual disk, or shrink it where nothing is allocated",
  positionals: [{ name: 'FILE' }, { name: 'SIZE' }],
  options: [QCOW2_FORCE, JSON_IGNORED],
  notes: [
    "SIZE is a byte count (a multiple of 512) with dd's suffixes: 10G, 512M.",
    QCOW2_EDIT_NOTE,
  ],
})

/** `sparsekit qcow2 rebase FILE`: `qemu-img rebase -u`, a new backing file name. @internal */
export const qcow2Rebase = spec({
  name: 'qcow2 rebase',
  summary: 'point a qcow2 image at another backing file, or none (qemu-img rebase -u)',
  usage: ['FILE --backing F --backing-format FMT', 'FILE --none'],
  positionals: [{ name: 'FILE' }],
  options: [
    {
      flag: 'backing',
      type: 'string',
      value: 'F',
      description: 'the new backing file name, stored as given',
    },
    {
      flag: 'backing-format',
      type: 'string',
      value: 'FMT',
      description: 'its format (qcow2, raw, ...): needed with --backing',
    },
    {
      flag: 'none',
      type: 'boolean',
      description: 'remove the backing file: the image stands alone',
    },
    QCOW2_FORCE,
    JSON_IGNORED,
  ],
  notes: [QCOW2_EDIT_NOTE],
})

/** `sparsekit qcow2 set-extension FILE TYPE (HEX | --remove)`: a header extension. @internal */
export const qcow2SetExtension = spec({
  name: 'qcow2 set-extension',
  summary: 'add, replace or remove a header extension of a qcow2 image',
  usage: ['FILE TYPE HEX', 'FILE TYPE --remove'],
  positionals: [{ name: 'FILE' }, { name: 'TYPE' }, { name: 'HEX', optional: true }],
  options: [
    { flag: 'remove', type: 'boolean', description: 'remove extension TYPE instead of setting it' },
    QCOW2_FORCE,
    JSON_IGNORED,
  ],
  notes: [
    "TYPE is a number such as 0x76617465, or 'hidden' (XCP-ng's hidden flag); HEX the data as hex bytes.",
    QCOW2_EDIT_NOTE,
  ],
})

/** `sparsekit qcow2 get-extension FILE TYPE`: a header extension's data as hex. @internal */
export const qcow2GetExtension = spec({
  name: 'qcow2 get-extension',
  summary: 'print the data of a qcow2 header extension as hex',
  positionals: [{ name: 'FILE' }, { name: 'TYPE' }],
  options: [
    { ...JSON_OUTPUT, description: 'print the data as a JSON string of hex, or null' },
    // Taken before the table existed (the parser was set-extension's); they do nothing here.
    { flag: 'remove', type: 'boolean', hidden: true, description: 'ignored' },
    { flag: 'force', type: 'boolean', hidden: true, description: 'ignored' },
  ],
  notes: [
    "TYPE is a number such as 0x76617465, or 'hidden' (XCP-ng's hidden flag). Exit status 1 when the " +
      'image has no extension of that type (with --json: null, exit 0).',
  ],
})

/** `sparsekit qcow2 discard FILE`: every guest cluster unallocated. @internal */
export const qcow2Discard = spec({
  name: 'qcow2 discard',
  summary: "unallocate every guest cluster and give the space back (XCP-ng's killData)",
  positionals: [{ name: 'FILE' }],
  options: [QCOW2_FORCE, JSON_IGNORED],
  notes: [QCOW2_EDIT_NOTE],
})

/** `sparsekit qcow2 commit FILE`: `qemu-img commit`, an overlay into its backing image. @internal */
export const qcow2Commit = spec({
  name: 'qcow2 commit',
  summary: "write an overlay's data into its backing image, empty it (qemu-img commit)",
  positionals: [{ name: 'FILE' }],
  options: [QCOW2_FORCE, JSON_OUTPUT],
  notes: [
    'An interrupted commit leaves both images valid: the overlay reads as before until it is emptied.',
    QCOW2_EDIT_NOTE,
  ],
})

/** `sparsekit qcow2 repair FILE`: `qemu-img check -r leaks`. @internal */
export const qcow2Repair = spec({
  name: 'qcow2 repair',
  summary: 'fix the leaked clusters of a qcow2 image (qemu-img check -r leaks)',
  positionals: [{ name: 'FILE' }],
  options: [QCOW2_FORCE, JSON_OUTPUT],
  notes: ['Only leaks are fixed: an image with corruptions is refused.', QCOW2_EDIT_NOTE],
})

/** `sparsekit qcow2 snapshot BASE OVERLAY`: a new overlay backed by BASE. @internal */
export const qcow2Snapshot = spec({
  name: 'qcow2 snapshot',
  summary: 'create OVERLAY, a qcow2 image backed by BASE (qcow2 or raw)',
  positionals: [{ name: 'BASE' }, { name: 'OVERLAY' }],
  options: [QCOW2_FORCE, JSON_IGNORED],
  notes: [QCOW2_EDIT_NOTE],
})

/** `sparsekit qcow2 import SRC DST`: any image, drive or URL into a new qcow2 image. @internal */
export const qcow2Import = spec({
  name: 'qcow2 import',
  summary: 'any image, drive or URL into a new qcow2 image (qemu-img convert -O qcow2)',
  positionals: [{ name: 'SRC' }, { name: 'DST' }],
  options: [
    {
      flag: 'compress',
      short: 'c',
      type: 'choice',
      value: 'TYPE',
      choices: COMPRESSIONS,
      description: 'compress clusters with zlib (as qemu-img convert -c) or zstd, on every core',
    },
    ...WRITE_OPTIONS,
    {
      flag: 'threads',
      type: 'count',
      value: 'N',
      description: 'threads compressing (default: one per core); the output does not depend on it',
    },
    JSON_OUTPUT,
  ],
  notes: [
    'Holes and all-zero clusters stay unallocated. The output is byte-identical from run to run and whatever the number of threads.',
    'DST is written beside its name and renamed into place when complete: an error or Ctrl-C leaves no image.',
    'SRC may be an http(s) URL, read with range requests.',
    'With --trim, only provably free space is left out (a file system it cannot read is kept whole); a cluster partly in use is stored whole.',
  ],
})

/** `sparsekit qcow2 export SRC`: the uncompressed qcow2 image of SRC on stdout. @internal */
export const qcow2Export = spec({
  name: 'qcow2 export',
  summary: 'the uncompressed qcow2 image of SRC to stdout, its length known up front',
  positionals: [{ name: 'SRC' }],
  options: [
    ...WRITE_OPTIONS,
    {
      flag: 'length',
      type: 'boolean',
      description: 'print the length in bytes the image will have, and nothing else',
    },
  ],
  notes: [
    'The bytes equal those of `sparsekit qcow2 import SRC DST` with the same options. SRC is mapped and scanned first, then read again as the image is written.',
  ],
})

/** `sparsekit qcow2 measure SRC`: `qemu-img measure -O qcow2`. @internal */
export const qcow2Measure = spec({
  name: 'qcow2 measure',
  summary: 'bytes a qcow2 image of SRC needs (qemu-img measure -O qcow2)',
  positionals: [{ name: 'SRC' }],
  options: [
    {
      flag: 'cluster-size',
      type: 'bytes',
      value: 'N',
      default: '64K',
      description: '512 to 2M, a power of two',
    },
    {
      flag: 'compat',
      type: 'choice',
      value: 'VERSION',
      choices: ['0.10', '1.1'],
      default: '1.1',
      description: 'the qcow2 version',
    },
    { flag: 'extended-l2', type: 'boolean', description: 'extended L2 entries' },
    { flag: 'backing', type: 'boolean', description: 'the image will have a backing file' },
    {
      flag: 'format',
      short: 'f',
      type: 'choice',
      value: 'FMT',
      choices: SOURCE_FORMATS,
      description: "SRC's format (default: recognised)",
    },
    ...HTTP_OPTIONS,
    { ...JSON_OUTPUT, description: "print qemu-img measure's JSON (--output=json)" },
  ],
})

/** `sparsekit qcow2 compare A B`: `qemu-img compare`, its messages and exit codes. @internal */
export const qcow2Compare = spec({
  name: 'qcow2 compare',
  summary: 'whether two disks (raw, drive, URL, qcow2) read the same (qemu-img compare)',
  positionals: [{ name: 'A' }, { name: 'B' }],
  options: [
    {
      flag: 'strict',
      short: 's',
      type: 'boolean',
      description: 'images of different sizes, or allocated differently, differ',
    },
    {
      flag: 'format-a',
      type: 'choice',
      value: 'FMT',
      choices: SOURCE_FORMATS,
      description: "A's format (default: recognised)",
    },
    {
      flag: 'format-b',
      type: 'choice',
      value: 'FMT',
      choices: SOURCE_FORMATS,
      description: "B's format (default: recognised)",
    },
  ],
  notes: [
    'Exit status as qemu-img compare: 0 identical, 1 different (the first differing offset printed), 2 error.',
  ],
})

/** `sparsekit drives`: a table of whole block devices; system drives only with --all. @internal */
export const drives = spec({
  name: 'drives',
  summary: 'list drives (whole block devices), their mounts, and which hold the system',
  positionals: [],
  options: [
    {
      flag: 'all',
      type: 'boolean',
      description: 'list system drives too (marked SYSTEM, with the reasons)',
    },
    JSON_OUTPUT,
  ],
})

/** `sparsekit flash SOURCE DST...`: one image to several drives; exit 1 when any failed. @internal */
export const flash = spec({
  name: 'flash',
  summary: 'write one image to several drives at once, then read each back and verify it',
  positionals: [{ name: 'SOURCE' }, { name: 'DST', variadic: true }],
  options: [
    {
      flag: 'bmap',
      type: 'string',
      value: 'FILE',
      description:
        'write by this bmap (default: SOURCE.bmap beside a local image, URL.bmap for a URL)',
    },
    { flag: 'nobmap', type: 'boolean', description: 'ignore any bmap beside SOURCE' },
    {
      flag: 'no-verify',
      type: 'boolean',
      description: "do not check the ranges' checksums from the bmap",
    },
    {
      flag: 'no-read-back',
      type: 'boolean',
      description: 'do not read each drive back and compare it after writing',
    },
    {
      flag: 'unmount',
      type: 'boolean',
      api: 'unmount',
      description: "unmount a drive's mounted file systems before writing it",
    },
    {
      flag: 'force',
      type: 'boolean',
      api: 'force',
      description: 'write to a system drive or a busy one (no exclusive open): dangerous',
    },
    {
      flag: 'create',
      type: 'boolean',
      api: 'createFiles',
      description: 'create a DST that does not exist as a regular file (never under /dev)',
    },
    {
      flag: 'zip-entry',
      type: 'string',
      value: 'NAME',
      description: 'the entry of a zip SOURCE to write (default: its largest file)',
    },
    {
      flag: 'check-capacity',
      type: 'boolean',
      api: 'checkCapacity',
      description:
        'probe each drive first: refuse a counterfeit one that holds less than the image',
    },
    {
      flag: 'eject',
      type: 'boolean',
      api: 'eject',
      description: 'eject each drive that was written and verified',
    },
    ...MEDIA_OPTIONS,
    TRIM_OPTION,
    ...HTTP_OPTIONS,
    ...CUSTOMIZE_OPTIONS,
    JSON_OUTPUT,
  ],
  notes: [
    'SOURCE is a path or an http(s) URL: a plain image, gz/xz/bz2/zst compressed, or a zip. A drive ' +
      'that fails is reported (exit 1) and the others finish. A missing DST is refused unless ' +
      '--create makes it a file.',
    '--trim (no bmap): only the used blocks of the partitions and file systems are read, written ' +
      'and read back; free blocks of the destination are left as they were. The image must be ' +
      'read at offsets (plain file, http(s) with ranges, stored zip entry): a compressed one is ' +
      'refused (ERR_SPARSEKIT_TRIM_UNSUPPORTED); use its bmap (sparsekit backup writes one).',
  ],
})

/** `sparsekit customize IMAGE|DEVICE`: first-boot files into the FAT boot partition. @internal */
export const customize = spec({
  name: 'customize',
  summary: 'write first-boot files into the FAT boot partition of an image or drive',
  positionals: [{ name: 'IMAGE|DEVICE' }],
  options: [...CUSTOMIZE_OPTIONS, JSON_OUTPUT],
  notes: [
    'Files are written whole (directories created), checked to fit before anything is written, ' +
      'and read back. --append adds its text once: a second run leaves the file as it is. ' +
      'Nothing is mounted; a drive must not be mounted either.',
  ],
})

/** `sparsekit backup SOURCE OUTPUT`: an image of the used blocks only, with a bmap. @internal */
export const backup = spec({
  name: 'backup',
  summary: 'back up a drive or image: only used blocks, shrunk, with a bmap, verified',
  positionals: [{ name: 'SOURCE' }, { name: 'OUTPUT' }],
  options: [
    { flag: 'no-bmap', type: 'boolean', description: 'do not write OUTPUT.bmap' },
    {
      flag: 'no-shrink',
      type: 'boolean',
      description: 'keep the source size (do not end the image after the last partition)',
    },
    { flag: 'no-verify', type: 'boolean', description: 'do not read the image back and compare' },
    {
      flag: 'unmount',
      type: 'boolean',
      api: 'unmount',
      description: "unmount the source drive's mounted file systems first",
    },
    {
      flag: 'force',
      type: 'boolean',
      api: 'force',
      description: 'read a mounted or system drive as it is (likely inconsistent)',
    },
    JSON_OUTPUT,
  ],
  notes: [
    'Free blocks of understood file systems are never read; everything else is copied. Restore with flash or bmap copy.',
  ],
})

/** `sparsekit layout IMAGE|DEVICE`: partitions, file systems and what is used. @internal */
export const layout = spec({
  name: 'layout',
  summary: 'show the partitions, file systems and used bytes of an image or device',
  positionals: [{ name: 'IMAGE|DEVICE' }],
  options: [JSON_OUTPUT],
})

/** `sparsekit sparsify IMAGE`: punch the provably free ranges of an image. @internal */
export const sparsify = spec({
  name: 'sparsify',
  summary: "punch the free blocks of an image's file systems out of the file",
  positionals: [{ name: 'IMAGE' }],
  options: [
    {
      flag: 'discard',
      type: 'boolean',
      description: 'allow a block device: discard its free ranges',
      api: 'discard',
    },
    JSON_OUTPUT,
  ],
})

/** `sparsekit verify IMAGE DST`: read a drive back and compare it with an image. @internal */
export const verify = spec({
  name: 'verify',
  summary: 'read a drive or file back and compare it with an image, writing nothing',
  positionals: [{ name: 'IMAGE' }, { name: 'DST' }],
  options: [
    {
      flag: 'bmap',
      type: 'string',
      value: 'FILE',
      description: 'compare the ranges of this bmap (default: IMAGE.bmap beside a local image)',
    },
    { flag: 'nobmap', type: 'boolean', description: 'ignore any bmap beside IMAGE' },
    { flag: 'seek', type: 'bytes', value: 'N', description: 'the image starts at byte N of DST' },
    { flag: 'sha256', type: 'string', value: 'HEX', description: "also check the image's SHA-256" },
    {
      flag: 'zip-entry',
      type: 'string',
      value: 'NAME',
      description: 'the entry of a zip IMAGE (default: its largest file)',
    },
    TRIM_OPTION,
    ...HTTP_OPTIONS,
    JSON_OUTPUT,
  ],
  notes: [
    "What a flash writes is compared: the bmap's mapped ranges, or a plain image's data. Exit 1 " +
      'naming the first differing byte range when DST does not hold the image. After a flash ' +
      '--trim, give --trim here too: only the used blocks are compared.',
  ],
})

/** `sparsekit probe DEV`: a drive's real capacity (counterfeit cards). @internal */
export const probe = spec({
  name: 'probe',
  summary: 'check that a drive holds what it claims (counterfeit cards); bytes kept',
  positionals: [{ name: 'DEV' }],
  options: [
    {
      flag: 'unmount',
      type: 'boolean',
      api: 'unmount',
      description: "unmount the drive's mounted file systems first",
    },
    {
      flag: 'force',
      type: 'boolean',
      api: 'force',
      description: 'probe a system drive or a busy one: dangerous',
    },
    JSON_OUTPUT,
  ],
  notes: ['Exit 1 when the drive holds less than it claims.'],
})
