/**
 * Block-level delta sync, byte-compatible with blockcopy: `checksum` on the destination,
 * `retrieve` on the source, `save` on the destination, joined by any byte streams (an ssh
 * pipe, a socket, a child process's stdio, or these functions' own Node streams).
 *
 * The native side reads and writes pipes: each call makes one, gives one end to the Rust
 * job and wraps the other in a `net.Socket` joined to your stream, so backpressure is the
 * kernel's pipe buffer plus Node's stream buffers, and the event loop never blocks.
 */
import * as fs from 'node:fs'
import * as net from 'node:net'
import { pipeline } from 'node:stream/promises'
import type { Readable, Writable } from 'node:stream'
import native = require('./native')
import { checkBoolean, checkBytes, checkOptions, checkPath, invalidArgType, PathLike } from './validate'
import { LongOptions, run } from './run'

/** Options of {@link checksum}. */
export interface SyncChecksumOptions extends LongOptions {
  /** First destination byte hashed (blockcopy's `--start`); default 0. */
  start?: number
  /** Hash up to this byte (`--end`); the destination must be at least this long. No `rest` record is sent. */
  end?: number
  /** sparsekit extension: compare blocks by BLAKE3; `retrieve` and `save` must opt in too (never for a blockcopy peer). */
  blake3?: boolean
  /** sparsekit extension: holes are neither read nor hashed; every side must opt in (never for a blockcopy peer). */
  holes?: boolean
  /**
   * sparsekit extension: a resumable session; `retrieve` and `save` must opt in too. Hashing starts where the
   * journal of a cut `save` says it stopped (from the start when there is none).
   */
  resume?: boolean
  /** The journal of `resume`; default `dst + '.sksync-resume'`. */
  journal?: string
}

/** Options of {@link save}. */
export interface SyncSaveOptions extends LongOptions {
  /** sparsekit extension: the block stream comes from a `retrieve` with `blake3` too. */
  blake3?: boolean
  /** sparsekit extension: the block stream comes from a `retrieve` with `holes` too; zero blocks become holes. */
  holes?: boolean
  /** sparsekit extension: the block stream comes from a `retrieve` with `zstd` too. */
  zstd?: boolean
  /** sparsekit extension: the block stream comes from a `retrieve` with `truncate` too; `dst` ends up the source's size. */
  truncate?: boolean
  /** sparsekit extension: a resumable session (every side opts in); progress is recorded in the journal, removed when complete. */
  resume?: boolean
  /** The journal of `resume`; default `dst + '.sksync-resume'`. */
  journal?: string
}

/** Options of {@link retrieve}. */
export interface SyncRetrieveOptions extends LongOptions {
  /** Send compressible blocks xz-compressed (`dlzm` records, blockcopy's `--lzma`); default false. */
  lzma?: boolean
  /** sparsekit extension: compare blocks by BLAKE3; `checksum` and `save` must opt in too (never for a blockcopy peer). */
  blake3?: boolean
  /** sparsekit extension: source holes are not read, zero blocks travel as tiny records; every side must opt in. */
  holes?: boolean
  /** sparsekit extension: send blocks zstd-compressed where smaller; `save` must opt in too. Not with `lzma`. */
  zstd?: boolean
  /** sparsekit extension: `save` (opted in too) makes the destination exactly the source's size. */
  truncate?: boolean
  /** sparsekit extension (not for {@link files}): a resumable session; `checksum` and `save` must opt in too. */
  resume?: boolean
}

/** What {@link save} wrote. */
export interface SyncSaveResult {
  /** Blocks written to the destination. */
  blocksWritten: number
  /** Bytes written to the destination. */
  bytesWritten: number
}

/** What {@link files} did. */
export interface SyncFilesResult {
  /** Bytes of the block stream: what a network would carry from source to destination. */
  bytesSent: number
  /** Blocks that differed and were written. */
  blocksChanged: number
  /** Bytes written to the destination. */
  bytesChanged: number
}

function checkWritable(name: string, v: unknown): Writable {
  const w = v as Writable | null
  if (!w || typeof w !== 'object' || typeof w.write !== 'function' || typeof w.on !== 'function') {
    throw invalidArgType(name, 'a writable stream', v)
  }
  return w
}

function checkReadable(name: string, v: unknown): Readable {
  const r = v as Readable | null
  if (!r || typeof r !== 'object' || typeof r.pipe !== 'function' || typeof r.on !== 'function') {
    throw invalidArgType(name, 'a readable stream', v)
  }
  return r
}

/**
 * Start a job on one end of a fresh pipe (`write`: the job writes into it) and close our
 * copy of that end (the job duplicates it at once). Returns the job and the other end.
 */
function jobOnPipe<T>(end: 'read' | 'write', start: (fd: number) => Promise<T>): [Promise<T>, number] {
  const [r, w] = native.syncPipe()
  const [give, keep] = end === 'write' ? [w, r] : [r, w]
  try {
    return [start(give), keep]
  } catch (err) {
    fs.closeSync(keep)
    throw err
  } finally {
    fs.closeSync(give)
  }
}

/**
 * Run a job that writes into a fresh pipe, and copy the pipe into `out`. The job gets the
 * write end (it duplicates it at once; ours is closed right away, so the pipe ends when the
 * job does).
 */
async function fromJob<T>(out: Writable, start: (writeFd: number) => Promise<T>): Promise<T> {
  const [job, r] = jobOnPipe('write', start)
  const sock = new net.Socket({ fd: r, readable: true, writable: false })
  const [result] = await Promise.all([job, pipeline(sock, out)])
  return result
}

/**
 * Run a job that reads from a fresh pipe, and copy `input` into the pipe. A job may finish
 * before `input` ends (`save` stops reading at `done`): the rest of `input` is left unread.
 */
async function intoJob<T>(input: Readable, start: (readFd: number) => Promise<T>): Promise<T> {
  const [job, w] = jobOnPipe('read', start)
  const sock = new net.Socket({ fd: w, readable: false, writable: true })
  let inputError: unknown
  const onInputError = (err: unknown) => {
    inputError = err
    sock.destroy()
  }
  // EPIPE once the job stopped reading: the job's own result says what happened.
  sock.on('error', () => {})
  input.on('error', onInputError)
  input.pipe(sock)
  try {
    return await job
  } catch (err) {
    // A cut hash or block stream because the input failed: report the input's error.
    if (inputError !== undefined && (err as { code?: string }).code === 'ERR_SPARSEKIT_PROTOCOL') throw inputError
    throw err
  } finally {
    input.unpipe(sock)
    input.removeListener('error', onInputError)
    sock.destroy()
  }
}

/**
 * The destination side, first step: hash `dst`'s 128 KiB blocks (SHA3-512, on every core)
 * and write the hash stream to `out` (ended when complete). Progress phase `'hash'`.
 */
export async function checksum(dst: PathLike, out: Writable, options?: SyncChecksumOptions): Promise<void> {
  const file = checkPath('dst', dst)
  const stream = checkWritable('out', out)
  const o = checkOptions('options', options) as SyncChecksumOptions
  const start = checkBytes('options.start', o.start)
  const end = checkBytes('options.end', o.end)
  const blake3 = checkBoolean('options.blake3', o.blake3)
  const holes = checkBoolean('options.holes', o.holes)
  const journal = journalOf('options', file, o)
  await fromJob(stream, (fd) =>
    run(o, (cancel, onProgress) => native.syncChecksum(file, fd, { start, end, blake3, holes, journal }, cancel, onProgress)),
  )
}

/**
 * The source side: read the hash stream from `hashes`, compare `src`'s blocks with it and
 * write the block stream (the differing blocks, then `done`) to `out` (ended when
 * complete). Progress phase `'send'`.
 */
export async function retrieve(src: PathLike, hashes: Readable, out: Writable, options?: SyncRetrieveOptions): Promise<void> {
  const file = checkPath('src', src)
  const input = checkReadable('hashes', hashes)
  const stream = checkWritable('out', out)
  const o = checkOptions('options', options) as SyncRetrieveOptions
  const lzma = checkBoolean('options.lzma', o.lzma)
  const blake3 = checkBoolean('options.blake3', o.blake3)
  const holes = checkBoolean('options.holes', o.holes)
  const zstd = checkBoolean('options.zstd', o.zstd)
  const truncate = checkBoolean('options.truncate', o.truncate)
  const resume = checkBoolean('options.resume', o.resume)
  await intoJob(input, (inFd) =>
    fromJob(stream, (outFd) =>
      run(o, (cancel, onProgress) =>
        native.syncRetrieve(file, inFd, outFd, { lzma, blake3, holes, zstd, truncate, resume }, cancel, onProgress),
      ),
    ),
  )
}

/**
 * The destination side, last step: read the block stream from `blocks` and write each block
 * into `dst`, which must exist (it is never truncated: a longer destination keeps its
 * tail). Rejects with `ERR_SPARSEKIT_PROTOCOL` if the stream ends without `done`; blocks
 * received whole before that are written. Progress phase `'write'`.
 */
export async function save(dst: PathLike, blocks: Readable, options?: SyncSaveOptions): Promise<SyncSaveResult> {
  const file = checkPath('dst', dst)
  const input = checkReadable('blocks', blocks)
  const o = checkOptions('options', options) as SyncSaveOptions
  const blake3 = checkBoolean('options.blake3', o.blake3)
  const holes = checkBoolean('options.holes', o.holes)
  const zstd = checkBoolean('options.zstd', o.zstd)
  const truncate = checkBoolean('options.truncate', o.truncate)
  const journal = journalOf('options', file, o)
  const r = await intoJob(input, (fd) =>
    run(o, (cancel, onProgress) => native.syncSave(file, fd, { blake3, holes, zstd, truncate, journal }, cancel, onProgress)),
  )
  return { blocksWritten: r.blocks, bytesWritten: r.bytes }
}

/**
 * Make `dst` equal to `src` (on `src`'s length; a longer `dst` keeps its tail) by running
 * checksum | retrieve | save in one process: exactly the streams the three commands would
 * exchange. Progress phase `'send'`.
 */
export async function files(src: PathLike, dst: PathLike, options?: SyncRetrieveOptions): Promise<SyncFilesResult> {
  const s = checkPath('src', src)
  const d = checkPath('dst', dst)
  const o = checkOptions('options', options) as SyncRetrieveOptions
  const lzma = checkBoolean('options.lzma', o.lzma)
  const blake3 = checkBoolean('options.blake3', o.blake3)
  const holes = checkBoolean('options.holes', o.holes)
  const zstd = checkBoolean('options.zstd', o.zstd)
  const truncate = checkBoolean('options.truncate', o.truncate)
  const resume = checkBoolean('options.resume', o.resume)
  const r = await run(o, (cancel, onProgress) => native.syncFiles(s, d, { lzma, blake3, holes, zstd, truncate, resume }, cancel, onProgress))
  return { bytesSent: r.streamBytes, blocksChanged: r.blocks, bytesChanged: r.bytes }
}

/** The journal path of a `resume` option: `journal`, or next to the destination. */
function journalOf(name: string, dst: string | Buffer, o: { resume?: boolean; journal?: unknown }): string | undefined {
  const resume = checkBoolean(`${name}.resume`, o.resume)
  if (o.journal !== undefined && typeof o.journal !== 'string') throw invalidArgType(`${name}.journal`, 'a string', o.journal)
  if (!resume) return undefined
  return o.journal ?? `${dst.toString()}.sksync-resume`
}

/**
 * The CLI's entry points: the same jobs on file descriptors it already has (stdin, stdout).
 * @internal
 */
export const fd = {
  checksum(dst: string | null, outFd: number, options: SyncChecksumOptions & { inputFd?: number }) {
    const { start, end, inputFd, blake3, holes, journal } = options
    return run(options, (cancel, onProgress) =>
      native.syncChecksum(dst, outFd, { start, end, inputFd, blake3, holes, journal }, cancel, onProgress),
    )
  },
  retrieve(src: string, inFd: number, outFd: number, options: SyncRetrieveOptions) {
    const { lzma, blake3, holes, zstd, truncate, resume } = options
    return run(options, (cancel, onProgress) =>
      native.syncRetrieve(src, inFd, outFd, { lzma, blake3, holes, zstd, truncate, resume }, cancel, onProgress),
    )
  },
  save(dst: string, inFd: number, options: SyncSaveOptions) {
    const { blake3, holes, zstd, truncate, journal } = options
    return run(options, (cancel, onProgress) => native.syncSave(dst, inFd, { blake3, holes, zstd, truncate, journal }, cancel, onProgress))
  },
}
