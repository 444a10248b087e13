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
import { randomBytes } from 'node:crypto'
import { pipeline } from 'node:stream/promises'
import type { Readable, Writable } from 'node:stream'
import native = require('./native')
import {
  checkBoolean,
  checkBytes,
  checkOptions,
  checkPath,
  invalidArgType,
  PathLike,
  LONG_KEYS,
} from './validate'
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
  /** The journal of `resume`; default `dst + '.sksync-resume'` (no default when `dst` is a pipe). */
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

/** What a job is given as one of its streams: a pipe descriptor, or a named pipe's path. */
type StreamEnd = number | string

/** One fresh channel between Node and a job: the end the job gets, and our socket. */
interface Channel {
  /** For the job, which opens or duplicates it while the native call runs. */
  give: StreamEnd
  /** Our end, once the job has opened its own (at once for an anonymous pipe). */
  socket: Promise<net.Socket>
  /** Drop what is ours but the socket: called once the native call returned or threw. */
  release(): void
}

/**
 * An anonymous pipe (`native.syncPipe`); the job gets the `jobEnd` end and duplicates it,
 * ours is wrapped in a `net.Socket`. Our copy of the job's end is closed once the native
 * call returned, so the pipe ends when the job does.
 */
function anonymousPipe(jobEnd: 'read' | 'write'): Channel {
  const [r, w] = native.syncPipe()
  const [give, keep] = jobEnd === 'write' ? [w, r] : [r, w]
  const socket = new net.Socket({
    fd: keep,
    readable: jobEnd === 'write',
    writable: jobEnd === 'read',
  })
  return { give, socket: Promise.resolve(socket), release: () => fs.closeSync(give) }
}

/**
 * A Windows named pipe, `\\.\pipe\sparsekit-PID-RANDOM`, that a `net.Server` listens
 * on for the one connection the job makes (it opens the path while the native call runs).
 * Windows needs this: node.exe links its C runtime statically, so the descriptors of
 * `native.syncPipe` (the addon's ucrtbase.dll) mean nothing to Node, nor Node's to the
 * addon. The name carries 64 random bits and the server stops listening after the first
 * connection. Half-open, so neither side's end closes the other; the callers destroy it.
 */
async function namedPipe(): Promise<Channel> {
  const path = `\\\\.\\pipe\\sparsekit-${process.pid}-${randomBytes(8).toString('hex')}`
  const server = net.createServer({ allowHalfOpen: true })
  const socket = new Promise<net.Socket>((resolve, reject) => {
    server.once('connection', (sock) => {
      server.close()
      resolve(sock)
    })
    server.once('error', reject)
  })
  socket.catch(() => {})
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => {
      server.removeListener('error', reject)
      resolve()
    })
  })
  return { give: path, socket, release: () => {} }
}

/**
 * Start a job on a fresh channel (`jobEnd` `'write'`: the job writes into it) and wait for
 * our end. A job that fails before it opened its end (a bad path, say) rejects with its
 * own error instead of leaving us waiting for a connection.
 */
async function jobOnChannel<T>(
  jobEnd: 'read' | 'write',
  start: (end: StreamEnd) => Promise<T>,
): Promise<[Promise<T>, net.Socket]> {
  // No await before `start` for an anonymous pipe: the native call must duplicate its end
  // before `release` closes ours, and a caller's own `start` (retrieve's) may nest this.
  const ch = process.platform === 'win32' ? await namedPipe() : anonymousPipe(jobEnd)
  let job: Promise<T>
  try {
    job = start(ch.give)
  } catch (err) {
    ch.socket.then(
      (s) => s.destroy(),
      () => {},
    )
    throw err
  } finally {
    ch.release()
  }
  job.catch(() => {})
  const sock = await Promise.race([ch.socket, job.then(() => ch.socket)]).catch(async (err) => {
    ch.socket.then(
      (s) => s.destroy(),
      () => {},
    )
    throw err
  })
  return [job, sock]
}

/**
 * Run a job that writes into a fresh channel, and copy the channel into `out`. A job that
 * fails (but was not aborted) may have written part of its stream first (`retrieve` on a
 * cut hash stream sends the blocks it got, as blockcopy does): that part reaches `out`,
 * which then ends as a dead process's stdout would, before the job's error is thrown.
 */
async function fromJob<T>(out: Writable, start: (end: StreamEnd) => Promise<T>): Promise<T> {
  const [job, sock] = await jobOnChannel('write', start)
  const piped = pipeline(sock, out)
  piped.catch(() => {})
  let jobError: unknown
  job.catch((err) => (jobError = err))
  try {
    const result = await Promise.race([job, piped.then(() => job)])
    await piped
    return result
  } catch (err) {
    if (err === jobError && (err as { code?: string }).code !== 'ERR_SPARSEKIT_ABORTED')
      await piped.catch(() => {})
    throw err
  } finally {
    sock.destroy()
  }
}

/**
 * Run a job that reads from a fresh channel, and copy `input` into it. A job may finish
 * before `input` ends (`save` stops reading at `done`): the rest of `input` is left unread.
 */
async function intoJob<T>(input: Readable, start: (end: StreamEnd) => Promise<T>): Promise<T> {
  const [job, sock] = await jobOnChannel('read', start)
  let inputError: unknown
  const onInputError = (err: unknown) => {
    inputError = err
    sock.destroy()
  }
  // EPIPE once the job stopped reading: the job's own result says what happened.
  sock.on('error', () => {})
  // A named pipe has no half-close: once all of `input` is written (and, Windows' flush,
  // read by the job), closing our end is the job's end of stream.
  if (process.platform === 'win32') sock.once('finish', () => sock.destroy())
  input.on('error', onInputError)
  input.pipe(sock)
  try {
    return await job
  } catch (err) {
    // A cut hash or block stream because the input failed: report the input's error.
    if (inputError !== undefined && (err as { code?: string }).code === 'ERR_SPARSEKIT_PROTOCOL')
      throw inputError
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
 * `dst` may also name a pipe (`/dev/stdin` on a pipe, a FIFO, `/dev/fd/N`), as blockcopy
 * allows: it is read once, in order, no `rest` record is sent, the progress total is
 * unknown until the end, and `resume` needs `journal` named.
 */
export async function checksum(
  dst: PathLike,
  out: Writable,
  options?: SyncChecksumOptions,
): Promise<void> {
  const file = checkPath('dst', dst)
  const stream = checkWritable('out', out)
  const o = checkOptions('options', options, [
    'start',
    'end',
    'blake3',
    'holes',
    'resume',
    'journal',
    ...LONG_KEYS,
  ]) as SyncChecksumOptions
  const start = checkBytes('options.start', o.start)
  const end = checkBytes('options.end', o.end)
  const blake3 = checkBoolean('options.blake3', o.blake3)
  const holes = checkBoolean('options.holes', o.holes)
  const resume = checkBoolean('options.resume', o.resume)
  if (o.journal !== undefined && typeof o.journal !== 'string')
    throw invalidArgType('options.journal', 'a string', o.journal)
  // The default journal (beside dst) is the native side's: a pipe has none.
  const journal = resume ? o.journal : undefined
  await fromJob(stream, (output) =>
    run(o, (cancel, onProgress) =>
      native.syncChecksum(
        file,
        output,
        { start, end, blake3, holes, resume, journal },
        cancel,
        onProgress,
      ),
    ),
  )
}

/**
 * The source side: read the hash stream from `hashes`, compare `src`'s blocks with it and
 * write the block stream (the differing blocks, then `done`) to `out` (ended when
 * complete). A hash stream without `done` rejects with `ERR_SPARSEKIT_PROTOCOL` after the
 * blocks its records call for reached `out` (as blockcopy sends them; `out` is ended
 * without `done`). Progress phase `'send'`.
 */
export async function retrieve(
  src: PathLike,
  hashes: Readable,
  out: Writable,
  options?: SyncRetrieveOptions,
): Promise<void> {
  const file = checkPath('src', src)
  const input = checkReadable('hashes', hashes)
  const stream = checkWritable('out', out)
  const o = checkOptions('options', options, [
    'lzma',
    'blake3',
    'holes',
    'zstd',
    'truncate',
    'resume',
    ...LONG_KEYS,
  ]) as SyncRetrieveOptions
  const lzma = checkBoolean('options.lzma', o.lzma)
  const blake3 = checkBoolean('options.blake3', o.blake3)
  const holes = checkBoolean('options.holes', o.holes)
  const zstd = checkBoolean('options.zstd', o.zstd)
  const truncate = checkBoolean('options.truncate', o.truncate)
  const resume = checkBoolean('options.resume', o.resume)
  await intoJob(input, (hashStream) =>
    fromJob(stream, (blockStream) =>
      run(o, (cancel, onProgress) =>
        native.syncRetrieve(
          file,
          hashStream,
          blockStream,
          { lzma, blake3, holes, zstd, truncate, resume },
          cancel,
          onProgress,
        ),
      ),
    ),
  )
}

/**
 * The destination side, last step: read the block stream from `blocks` and write each block
 * into `dst`, which must exist (it is never truncated: a longer destination keeps its
 * tail). Rejects with `ERR_SPARSEKIT_PROTOCOL` if the stream ends without `done`; blocks
 * received whole before that are written. A drive passes `flash`'s checks first and is
 * opened exclusively: mounted or held, `ERR_SPARSEKIT_DRIVE_BUSY`; the system drive,
 * `ERR_SPARSEKIT_SYSTEM_DRIVE`. Progress phase `'write'`.
 */
export async function save(
  dst: PathLike,
  blocks: Readable,
  options?: SyncSaveOptions,
): Promise<SyncSaveResult> {
  const file = checkPath('dst', dst)
  const input = checkReadable('blocks', blocks)
  const o = checkOptions('options', options, [
    'blake3',
    'holes',
    'zstd',
    'truncate',
    'resume',
    'journal',
    ...LONG_KEYS,
  ]) as SyncSaveOptions
  const blake3 = checkBoolean('options.blake3', o.blake3)
  const holes = checkBoolean('options.holes', o.holes)
  const zstd = checkBoolean('options.zstd', o.zstd)
  const truncate = checkBoolean('options.truncate', o.truncate)
  const journal = journalOf('options', file, o)
  const r = await intoJob(input, (blockStream) =>
    run(o, (cancel, onProgress) =>
      native.syncSave(
        file,
        blockStream,
        { blake3, holes, zstd, truncate, journal },
        cancel,
        onProgress,
      ),
    ),
  )
  return { blocksWritten: r.blocks, bytesWritten: r.bytes }
}

/**
 * Make `dst` equal to `src` (on `src`'s length; a longer `dst` keeps its tail) by running
 * checksum | retrieve | save in one process: exactly the streams the three commands would
 * exchange. `dst` is checked and opened as in {@link save}. Progress phase `'send'`.
 */
export async function files(
  src: PathLike,
  dst: PathLike,
  options?: SyncRetrieveOptions,
): Promise<SyncFilesResult> {
  const s = checkPath('src', src)
  const d = checkPath('dst', dst)
  const o = checkOptions('options', options, [
    'lzma',
    'blake3',
    'holes',
    'zstd',
    'truncate',
    'resume',
    ...LONG_KEYS,
  ]) as SyncRetrieveOptions
  const lzma = checkBoolean('options.lzma', o.lzma)
  const blake3 = checkBoolean('options.blake3', o.blake3)
  const holes = checkBoolean('options.holes', o.holes)
  const zstd = checkBoolean('options.zstd', o.zstd)
  const truncate = checkBoolean('options.truncate', o.truncate)
  const resume = checkBoolean('options.resume', o.resume)
  const r = await run(o, (cancel, onProgress) =>
    native.syncFiles(s, d, { lzma, blake3, holes, zstd, truncate, resume }, cancel, onProgress),
  )
  return { bytesSent: r.streamBytes, blocksChanged: r.blocks, bytesChanged: r.bytes }
}

/** The journal path of a `resume` option: `journal`, or next to the destination. */
function journalOf(
  name: string,
  dst: string | Buffer,
  o: { resume?: boolean; journal?: unknown },
): string | undefined {
  const resume = checkBoolean(`${name}.resume`, o.resume)
  if (o.journal !== undefined && typeof o.journal !== 'string')
    throw invalidArgType(`${name}.journal`, 'a string', o.journal)
  if (!resume) return undefined
  return o.journal ?? `${dst.toString()}.sksync-resume`
}

/**
 * The CLI's entry points: the same jobs on file descriptors it already has (stdin, stdout).
 * @internal
 */
export const fd = {
  checksum(dst: string | null, outFd: number, options: SyncChecksumOptions & { inputFd?: number }) {
    const { start, end, inputFd, blake3, holes, resume, journal } = options
    return run(options, (cancel, onProgress) =>
      native.syncChecksum(
        dst,
        outFd,
        { start, end, inputFd, blake3, holes, resume, journal },
        cancel,
        onProgress,
      ),
    )
  },
  retrieve(src: string, inFd: number, outFd: number, options: SyncRetrieveOptions) {
    const { lzma, blake3, holes, zstd, truncate, resume } = options
    return run(options, (cancel, onProgress) =>
      native.syncRetrieve(
        src,
        inFd,
        outFd,
        { lzma, blake3, holes, zstd, truncate, resume },
        cancel,
        onProgress,
      ),
    )
  },
  save(dst: string, inFd: number, options: SyncSaveOptions) {
    const { blake3, holes, zstd, truncate, journal } = options
    return run(options, (cancel, onProgress) =>
      native.syncSave(dst, inFd, { blake3, holes, zstd, truncate, journal }, cancel, onProgress),
    )
  },
}
