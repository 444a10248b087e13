#!/usr/bin/env node
/**
 * The `sparsekit` command line. Exit 0 on success, 1 on failure (one clear line on stderr),
 * 2 on a usage error. Progress bars go to stderr only when stderr is a TTY.
 * @internal
 */
import { parseArgs, ParseArgsConfig } from 'node:util'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import * as sk from './index'
import { fd as syncFd } from './sync'
import { isatty } from 'node:tty'
import type { Progress } from './run'
import { progressLine } from './cli-progress'

class UsageError extends Error {}

const USAGE = `sparsekit ${sk.version}: allocation-aware disk-image I/O

Usage:
  sparsekit map FILE [--start N] [--length N] [--method auto|fiemap|seek|none] [--json]
  sparsekit copy SRC DST [--skip N] [--seek N] [--length N] [--method M] [--notrunc] [--zero-holes]
                 [--fsync] [--atomic] [--json]
  sparsekit digest FILE [--algorithm sha256|sha3-512|blake3|sha1] [--start N] [--length N] [--json]
  sparsekit bmap create IMAGE [-o OUT] [--checksum sha256|sha1|none] [--no-checksum]
  sparsekit bmap copy IMAGE DST [--bmap F | --nobmap] [--no-verify] [--read-back] [--create] [--json]
                  [--ca PEM] [--retries N]
                                          (bmaptool-compatible; gz/xz/bz2/zst images; IMAGE.bmap
                                          is found beside the image; IMAGE may be an http(s) URL:
                                          URL.bmap, streamed, resumed with range requests)
  sparsekit checksum DST [--start N] [--end N] [--progress] | sparsekit retrieve SRC [--lzma] [--progress]
    | sparsekit save DST [--progress]      (blockcopy-compatible delta sync over any pipe; DST of
                                           checksum may be '-' or a pipe such as /dev/stdin or a FIFO;
                                           --blake3 / --holes / --zstd / --truncate / --resume [--journal F]
                                           on all three: sparsekit-only extensions, BLAKE3 hashing / holes
                                           neither read nor sent / zstd blocks / save truncates DST to the
                                           source size / a cut session continues where it stopped)
  sparsekit qcow2 info|map|check FILE [--backing follow|none] [--json] [--backing-chain]
  sparsekit qcow2 convert SRC DST [--backing follow|none] [--zero-holes] [--json]
                  [--ca PEM] [--retries N]
                                          (SRC may be an http(s) URL, read with range requests)
  sparsekit qcow2 create FILE --size N [--cluster-size N] [--backing F --backing-format FMT]
                   [--compat 0.10|1.1] [--extended-l2] [--lazy-refcounts] [--preallocation off|metadata]
  sparsekit qcow2 resize FILE SIZE | rebase FILE (--backing F --backing-format FMT | --none)
    | set-extension FILE TYPE (HEX | --remove) | get-extension FILE TYPE | discard FILE
    | commit FILE | repair FILE | snapshot BASE OVERLAY
                                          (crash-safe edits under qemu's image locks; TYPE is a
                                          number such as 0x76617465 or 'hidden'; --force edits an
                                          image a running qemu holds: dangerous)
  sparsekit drives [--all] [--json]        (whole block devices; system drives marked, listed
                                          only with --all)
  sparsekit flash SOURCE DST... [--bmap F | --nobmap] [--no-verify] [--no-read-back] [--unmount]
                  [--force] [--create] [--zip-entry NAME] [--ca PEM] [--retries N] [--json]
                                          (one image to several drives at once; SOURCE a path or
                                          an http(s) URL, plain/gz/xz/bz2/zst or zip; a failed
                                          drive is reported and the others finish: exit 1; a
                                          missing DST is refused unless --create makes it a
                                          file, never under /dev)
  sparsekit --help | --version

URLs: proxies from https_proxy / http_proxy / all_proxy / no_proxy (as curl); a private CA
through SSL_CERT_FILE (or --ca for flash).

Byte counts take dd's suffixes: K, M, G, T, P, E (and KiB, MiB, ...) are powers of 1024,
KB, MB, GB, ... powers of 1000, b 512, w 2, c 1: --skip 1M is 1048576, --skip 1MB 1000000.
A FILE of '-' is not
special; put '--' before file names that start with '-'. Ctrl-C stops with exit status 130.

Options:
  -h, --help      show this help
  -V, --version   print the version
  --json          print data as JSON (where output is data)
`

type Values = Record<string, string | boolean | undefined>

function parse(
  args: string[],
  options: ParseArgsConfig['options'],
  positionals: number,
  json = true,
): { values: Values; pos: string[] } {
  let parsed
  try {
    const all = json ? { ...options, json: { type: 'boolean' as const } } : options
    parsed = parseArgs({ args, options: all, allowPositionals: true, strict: true })
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(`expected ${positionals} argument${positionals === 1 ? '' : 's'}, got ${parsed.positionals.length}`)
  }
  return { values: parsed.values as Values, pos: parsed.positionals }
}

/**
 * A byte count with dd's suffixes, exactly as GNU dd reads them: `c` 1, `w` 2, `b` 512;
 * `K`/`k`, `M`, `G`, `T`, `P`, `E` powers of 1024 (also `KiB`, `MiB`, ...); `kB`, `KB`, `MB`,
 * `GB`, `TB`, `PB`, `EB` powers of 1000. So `1M` is 1048576 and `1MB` 1000000.
 */
function bytes(name: string, v: string | boolean | undefined): number | undefined {
  if (v === undefined) return undefined
  const m = /^(\d+)(c|w|b|[kKMGTPE]|[kKMGTPE]iB|[kKMGTPE]B)?$/.exec(String(v))
  if (!m) {
    throw new UsageError(
      `--${name}: expected a byte count such as 4096, 16M (MiB) or 16MB (10^6 bytes, as dd), got '${v}'`,
    )
  }
  const s = m[2] || ''
  const power = 'KMGTPE'.indexOf(s[0]?.toUpperCase() ?? '') + 1
  const mult =
    s === '' ? 1 : s === 'c' ? 1 : s === 'w' ? 2 : s === 'b' ? 512 : s.endsWith('iB') || s.length === 1 ? 1024 ** power : 1000 ** power
  const n = Number(m[1]) * mult
  if (!Number.isSafeInteger(n)) throw new UsageError(`--${name}: ${v} is too large`)
  return n
}

function oneOf<T extends string>(name: string, v: string | boolean | undefined, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined
  if (!allowed.includes(v as T)) throw new UsageError(`--${name}: expected one of ${allowed.join(', ')}, got '${v}'`)
  return v as T
}

function human(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]} (${n} bytes)`
}

/** Write to stdout, waiting when the pipe is full: output of any size in bounded memory. */
/**
 * A name read from an image (backing file, data file, snapshot, bitmap), printable: control
 * characters (a NUL byte, an escape sequence, a line break) shown as `\xNN` escapes so they
 * cannot garble or forge the terminal's output. `--json` output keeps the exact string.
 */
function printable(name: string): string {
  // eslint-disable-next-line no-control-regex
  return name.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
}

async function out(text: string): Promise<void> {
  if (!process.stdout.write(text)) await once(process.stdout, 'drain')
}

/** The human `map` output, streamed: one line per extent, then what is data and what is hole. */
async function printMap(path: string, opts: sk.MapOptions, json: boolean): Promise<void> {
  let header: sk.MapHeader | undefined
  let count = 0
  let data = 0
  let prealloc = 0
  let w = 0
  const start = opts.start ?? 0
  let lines: string[] = []
  const flush = async () => {
    if (lines.length) await out(lines.join(''))
    lines = []
  }
  for await (const e of sk.mapExtents(path, { ...opts, onHeader: (h) => (header = h) })) {
    if (count === 0) {
      const h = header as sk.MapHeader
      if (json) {
        lines.push(`{"size":${h.size},"blockSize":${h.blockSize},"method":${JSON.stringify(h.method)},"extents":[`)
      } else {
        lines.push(`${path}: ${human(Number(h.size))}, block size ${h.blockSize}, method ${h.method}\n`)
        w = String(Number(h.size)).length
        lines.push(`${'offset'.padStart(w)}  ${'end'.padStart(w)}  ${'length'.padStart(w)}  flags\n`)
      }
    }
    if (json) lines.push((count ? ',' : '') + JSON.stringify(e))
    else {
      const flags = [e.unwritten && 'unwritten', e.shared && 'shared'].filter(Boolean).join(',')
      lines.push(`${String(e.offset).padStart(w)}  ${String(e.offset + e.length).padStart(w)}  ${String(e.length).padStart(w)}  ${flags}\n`)
    }
    count++
    if (e.unwritten) prealloc += e.length
    else data += e.length
    if (lines.length >= 4096) await flush()
  }
  const h = header as sk.MapHeader // mapExtents gives the header even when there are no extents
  if (count === 0) {
    if (json) lines.push(`{"size":${h.size},"blockSize":${h.blockSize},"method":${JSON.stringify(h.method)},"extents":[`)
    else lines.push(`${path}: ${human(Number(h.size))}, block size ${h.blockSize}, method ${h.method}\n`)
  }
  const size = Number(h.size)
  const end = Math.min(size, opts.length === undefined ? size : start + opts.length)
  const window = Math.max(0, end - start)
  if (json) lines.push(']}\n')
  else {
    const pct = window ? ((data / window) * 100).toFixed(1) : '0.0'
    lines.push(
      `${count} extent${count === 1 ? '' : 's'}; data ${human(data)} (${pct}%), ` +
        `holes ${human(window - data - prealloc)}` + (prealloc ? `, preallocated ${human(prealloc)}` : '') + '\n',
    )
  }
  await flush()
}

/** The TTY progress bar: redrawn at most 10 times a second; `clear()` before any message. */
interface Bar {
  onProgress: (p: Progress) => void
  clear: () => void
}

/** A one-line progress bar on stderr, or nothing when stderr is not a TTY. */
function progressBar(): Bar | undefined {
  if (!process.stderr.isTTY) return undefined
  let last = 0
  let drawn = false
  let phaseStart = Date.now()
  let phase = ''
  const clear = () => {
    if (drawn) process.stderr.write('\r\x1b[K')
    drawn = false
  }
  return {
    clear,
    onProgress: (p) => {
      const now = Date.now()
      if (p.phase !== phase) {
        phase = p.phase
        phaseStart = now
      }
      const final = p.bytesTotal !== undefined && p.bytesDone >= p.bytesTotal
      if (!final && now - last < 100) return
      last = now
      process.stderr.write(`\r\x1b[K${progressLine(p, (now - phaseStart) / 1000)}`)
      drawn = true
      if (final) {
        process.stderr.write('\n')
        drawn = false
      }
    },
  }
}

/** The bar of the running command, cleared before an error or interrupt message. */
let bar: Bar | undefined
/** What an interrupted command leaves behind, for the interrupt message. */
let leftBehind: string | undefined

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv
  if (cmd === undefined) {
    process.stderr.write(USAGE)
    return 2
  }
  if (cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(USAGE)
    return 0
  }
  if (cmd === '-V' || cmd === '--version') {
    process.stdout.write(`${sk.version}\n`)
    return 0
  }
  // --help counts only before `--`: after it, `--help` is a file name.
  const dashdash = rest.indexOf('--')
  const opts = dashdash < 0 ? rest : rest.slice(0, dashdash)
  if (opts.includes('--help') || opts.includes('-h')) {
    process.stdout.write(USAGE)
    return 0
  }
  const ac = new AbortController()
  process.once('SIGINT', () => ac.abort())
  switch (cmd) {
    case 'digest': {
      const { values, pos } = parse(rest, { algorithm: { type: 'string', short: 'a' }, start: { type: 'string' }, length: { type: 'string' } }, 1)
      const algorithm = (values.algorithm as sk.Algorithm | undefined) ?? 'sha256'
      if (!sk.ALGORITHMS.includes(algorithm)) throw new UsageError(`--algorithm: expected one of ${sk.ALGORITHMS.join(', ')}, got '${algorithm}'`)
      bar = progressBar()
      const hex = await sk.digest(pos[0], {
        algorithm,
        start: bytes('start', values.start),
        length: bytes('length', values.length),
        signal: ac.signal,
        onProgress: bar?.onProgress,
      })
      if (values.json) await out(JSON.stringify({ path: pos[0], algorithm, digest: hex }) + '\n')
      else await out(`${hex}  ${pos[0]}\n`)
      return 0
    }
    case 'map': {
      const { values, pos } = parse(rest, { start: { type: 'string' }, length: { type: 'string' }, method: { type: 'string' } }, 1)
      const method = oneOf('method', values.method, sk.MAP_METHODS)
      await printMap(pos[0], { start: bytes('start', values.start), length: bytes('length', values.length), method, signal: ac.signal }, Boolean(values.json))
      return 0
    }
    case 'copy': {
      const { values, pos } = parse(
        rest,
        { skip: { type: 'string' }, seek: { type: 'string' }, length: { type: 'string' }, method: { type: 'string' },
          notrunc: { type: 'boolean' }, 'zero-holes': { type: 'boolean' }, fsync: { type: 'boolean' }, atomic: { type: 'boolean' } },
        2,
      )
      bar = progressBar()
      leftBehind = values.atomic ? `${pos[1]} is unchanged` : `${pos[1]} may be partly written`
      const r = await sk.copy(pos[0], pos[1], {
        skip: bytes('skip', values.skip),
        seek: bytes('seek', values.seek),
        length: bytes('length', values.length),
        method: oneOf('method', values.method, sk.COPY_METHODS),
        truncate: !values.notrunc,
        zeroHoles: Boolean(values['zero-holes']),
        fsync: Boolean(values.fsync),
        atomic: Boolean(values.atomic),
        signal: ac.signal,
        onProgress: bar?.onProgress,
      })
      leftBehind = undefined
      if (values.json) await out(JSON.stringify(r) + '\n')
      else await out(`copied ${human(r.bytesCopied)} of data by ${r.method}; ${pos[1]} is ${human(r.size)}\n`)
      return 0
    }
    case 'bmap':
      return bmapCommand(rest, ac.signal)
    case 'checksum':
    case 'retrieve':
    case 'save':
      return blockcopy(cmd, rest, ac.signal)
    case 'qcow2':
      return qcow2Command(rest, ac.signal)
    case 'drives':
      return drivesCommand(rest)
    case 'flash':
      return flashCommand(rest, ac.signal)
    default:
      throw new UsageError(`unknown command '${cmd}'`)
  }
}

/** The options of the commands that read http(s) URLs. */
const httpOpts = { ca: { type: 'string' }, retries: { type: 'string' } } as const

/** `--ca PEM` (read here) and `--retries N`, which only an http(s) `source` uses. */
function httpOptions(values: Values, source: string): { ca?: Buffer; retries?: number } {
  const o: { ca?: Buffer; retries?: number } = {}
  if (values.ca === undefined && values.retries === undefined) return o
  if (!/^https?:\/\//i.test(source)) throw new UsageError(`--ca and --retries apply to http(s) URLs, not '${source}'`)
  if (values.retries !== undefined) {
    const n = Number(values.retries)
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`--retries: expected a count, got '${values.retries}'`)
    o.retries = n
  }
  if (values.ca !== undefined) {
    try {
      o.ca = readFileSync(values.ca as string)
    } catch (e) {
      throw new UsageError(`--ca: cannot read '${values.ca}': ${(e as Error).message}`)
    }
  }
  return o
}

/** `sparsekit bmap create|copy`, with bmaptool's flag names where it has them. */
async function bmapCommand(rest: string[], signal: AbortSignal): Promise<number> {
  const [sub, ...args] = rest
  if (sub === 'create') {
    const { values, pos } = parse(
      args,
      { output: { type: 'string', short: 'o' }, checksum: { type: 'string' }, 'no-checksum': { type: 'boolean' } },
      1,
      false, // a bmap is XML: --json would be a promise not kept
    )
    const checksum = values['no-checksum'] ? 'none' : oneOf('checksum', values.checksum, sk.BMAP_CHECKSUMS)
    bar = progressBar()
    const output = values.output as string | undefined
    const xml = await sk.bmap.create(pos[0], { checksum, output, signal, onProgress: bar?.onProgress })
    if (output === undefined) await out(xml)
    return 0
  }
  if (sub === 'copy') {
    const { values, pos } = parse(
      args,
      { bmap: { type: 'string' }, nobmap: { type: 'boolean' }, 'no-verify': { type: 'boolean' }, 'read-back': { type: 'boolean' }, create: { type: 'boolean' }, ...httpOpts },
      2,
    )
    if (values.bmap !== undefined && values.nobmap) throw new UsageError('--bmap and --nobmap exclude each other')
    const http = httpOptions(values, pos[0])
    bar = progressBar()
    leftBehind = `${pos[1]} may be partly written`
    const r = await sk.bmap.copy(pos[0], pos[1], {
      ...http,
      bmap: values.nobmap ? false : (values.bmap as string | undefined),
      verify: !values['no-verify'],
      readBack: Boolean(values['read-back']),
      createFiles: Boolean(values.create),
      signal,
      onProgress: bar?.onProgress,
    })
    leftBehind = undefined
    if (values.json) await out(JSON.stringify(r) + '\n')
    else {
      await out(
        `wrote ${human(r.bytesWritten)} of a ${human(r.imageSize)} image to ${pos[1]}` +
          (r.compression ? ` (${r.compression})` : '') +
          (r.bmap ? ` with ${r.bmap}` : ' without a bmap') +
          `; ${r.rangesVerified} ranges verified` +
          (r.rangesReadBack ? `, ${r.rangesReadBack} read back` : '') +
          '\n',
      )
    }
    return 0
  }
  throw new UsageError(sub === undefined ? "bmap: expected 'create' or 'copy'" : `bmap: unknown command '${sub}'`)
}

/**
 * `checksum`, `retrieve`, `save` as blockcopy runs them: binary streams on stdin/stdout
 * (refused on a terminal), nothing on stderr on success, and on failure one line
 * `ERROR (<command>): <reason>` with exit status 1.
 */
async function blockcopy(cmd: 'checksum' | 'retrieve' | 'save', rest: string[], signal: AbortSignal): Promise<number> {
  // Extensions: the same flags on all three sides (--zstd and --truncate change nothing in
  // checksum's stream; it takes them so that one set of flags fits every side).
  const options: ParseArgsConfig['options'] = {
    progress: { type: 'boolean' }, blake3: { type: 'boolean' }, holes: { type: 'boolean' },
    zstd: { type: 'boolean' }, truncate: { type: 'boolean' }, resume: { type: 'boolean' },
  }
  if (cmd === 'checksum') Object.assign(options, { start: { type: 'string' }, end: { type: 'string' } })
  if (cmd === 'retrieve') Object.assign(options, { lzma: { type: 'boolean' } })
  if (cmd !== 'retrieve') Object.assign(options, { journal: { type: 'string' } })
  const { values, pos } = parse(rest, options, 1)
  const start = bytes('start', values.start)
  const end = bytes('end', values.end)
  const file = pos[0]
  const blake3 = Boolean(values.blake3)
  const holes = Boolean(values.holes)
  const zstd = Boolean(values.zstd)
  const truncate = Boolean(values.truncate)
  const resume = Boolean(values.resume)
  // --resume: save's journal, next to the destination unless --journal names it.
  const journal = resume ? (values.journal as string | undefined) ?? (file === '-' ? undefined : `${file}.sksync-resume`) : undefined
  let onProgress: ((p: Progress) => void) | undefined
  if (values.progress) {
    // blockcopy's --progress: lines on stderr, even when it is no terminal.
    let last = -1
    onProgress = (p) => {
      const pct = p.bytesTotal ? Math.floor((p.bytesDone / p.bytesTotal) * 20) * 5 : -1
      if (pct === last && p.bytesDone !== p.bytesTotal) return
      last = pct
      const gb = (n: number) => (n / 2 ** 30).toFixed(2)
      process.stderr.write(`${cmd} ${p.phase}: ${gb(p.bytesDone)} GB` + (p.bytesTotal !== undefined ? ` / ${gb(p.bytesTotal)} GB (${pct}%)` : '') + '\n')
    }
  }
  try {
    if (cmd !== 'save' && isatty(1)) {
      throw new Error(`standard output is a terminal - will not write binary data to it`)
    }
    if (cmd !== 'checksum' && file === '-') throw new Error('the file must be an actual file or device, not `-`')
    if (values.journal !== undefined && !resume) throw new Error('--journal needs --resume')
    if (resume && cmd !== 'retrieve' && journal === undefined) throw new Error('--resume with `-` needs --journal FILE')
    if (cmd === 'checksum') {
      const fromStdin = file === '-'
      // FILE may be a pipe (/dev/stdin, a FIFO): the native side sees it; a pipe gets no default journal.
      await syncFd.checksum(fromStdin ? null : file, 1, { start, end, inputFd: fromStdin ? 0 : undefined, blake3, holes, resume, journal: values.journal as string | undefined, signal, onProgress })
    } else if (cmd === 'retrieve') {
      await syncFd.retrieve(file, 0, 1, { lzma: Boolean(values.lzma), blake3, holes, zstd, truncate, resume, signal, onProgress })
    } else {
      await syncFd.save(file, 0, { blake3, holes, zstd, truncate, journal, signal, onProgress })
    }
    return 0
  } catch (err) {
    const e = err as Error & { code?: string }
    if (e.code === 'ERR_SPARSEKIT_ABORTED') throw err
    process.stderr.write(`ERROR (${cmd}): ${e.message}\n`)
    return 1
  }
}

/**
 * `sparsekit qcow2 info|map|check|convert`: `--json` prints qemu-img's JSON shape (`map`
 * byte for byte); the default is a readable table. `check` exits as `qemu-img check`: 0
 * clean, 2 corruptions, 3 leaks only.
 */
/** Positionals of `qcow2 set-extension`: FILE TYPE HEX, or FILE TYPE with --remove. */
function values3(args: string[]): number {
  return args.includes('--remove') ? 2 : 3
}

async function qcow2Command(rest: string[], signal: AbortSignal): Promise<number> {
  const [sub, ...args] = rest
  const backingOpt = { backing: { type: 'string' as const } }
  switch (sub) {
    case 'info': {
      const { values, pos } = parse(args, { ...backingOpt, 'backing-chain': { type: 'boolean' } }, 1)
      const backing = oneOf('backing', values.backing, sk.qcow2.BACKING_POLICIES)
      const i = await sk.qcow2.info(pos[0], { backing, signal })
      if (values.json) {
        // qemu-img info --output=json [--backing-chain], text and key order included.
        const v = values['backing-chain'] ? [i, ...(i.backingChain ?? [])] : i
        await out(sk.qcow2.toQemuJson(v) + '\n')
        return 0
      }
      const lines: string[] = []
      for (const x of [i, ...(i.backingChain ?? [])]) {
        if (lines.length) lines.push('')
        lines.push(`image: ${printable(x.filename)}`, `file format: ${x.format}`, `virtual size: ${human(x['virtual-size'])}`)
        if (x['actual-size'] !== undefined) lines.push(`disk size: ${human(x['actual-size'])}`)
        if (x['cluster-size'] !== undefined) lines.push(`cluster_size: ${x['cluster-size']}`)
        if (x['backing-filename']) lines.push(`backing file: ${printable(x['backing-filename'])}`)
        if (x['backing-filename-format']) lines.push(`backing file format: ${printable(x['backing-filename-format'])}`)
        for (const s of x.snapshots ?? []) lines.push(`snapshot: ${printable(s.id)} ${printable(s.name)} (vm state ${s['vm-state-size']} bytes)`)
        const d = x['format-specific']?.data
        if (d) {
          lines.push(`compat: ${d.compat}`, `compression type: ${d['compression-type']}`, `refcount bits: ${d['refcount-bits']}`)
          if (d['lazy-refcounts'] !== undefined) lines.push(`lazy refcounts: ${d['lazy-refcounts']}`)
          if (d['extended-l2']) lines.push('extended l2: true')
          if (d['data-file']) lines.push(`data file: ${printable(d['data-file'])}` + (d['data-file-raw'] ? ' (raw)' : ''))
          for (const b of d.bitmaps ?? []) lines.push(`bitmap: ${printable(b.name)} granularity ${b.granularity} [${b.flags.join(', ')}]`)
          if (d.encrypt) lines.push(`encrypted: ${d.encrypt.format}`)
          if (d.corrupt) lines.push('corrupt: true')
        }
        if (x['dirty-flag']) lines.push('dirty: true')
      }
      await out(lines.join('\n') + '\n')
      return 0
    }
    case 'map': {
      const { values, pos } = parse(args, backingOpt, 1)
      const backing = oneOf('backing', values.backing, sk.qcow2.BACKING_POLICIES)
      const m = await sk.qcow2.map(pos[0], { backing, signal })
      if (values.json) {
        await out(sk.qcow2.mapToJson(m))
        return 0
      }
      const w = Math.max(6, ...m.map((e: sk.qcow2.Qcow2MapEntry) => String(e.start + e.length).length))
      const lines = [`${'start'.padStart(w)}  ${'length'.padStart(w)}  depth  ${'kind'.padEnd(10)}  offset\n`]
      for (const e of m) {
        const kind = e.compressed ? 'compressed' : e.data ? 'data' : e.zero ? (e.present ? 'zero' : 'hole') : 'backing'
        lines.push(`${String(e.start).padStart(w)}  ${String(e.length).padStart(w)}  ${String(e.depth).padStart(5)}  ${kind.padEnd(10)}  ${e.offset ?? ''}\n`)
        if (lines.length >= 4096) await out(lines.splice(0).join(''))
      }
      await out(lines.join(''))
      return 0
    }
    case 'check': {
      const { values, pos } = parse(args, {}, 1)
      bar = progressBar()
      const r = await sk.qcow2.check(pos[0], { signal, onProgress: bar?.onProgress })
      if (values.json) await out(sk.qcow2.toQemuJson(r) + '\n')
      else {
        const total = r['total-clusters'] ?? 0
        const pct = (n: number | undefined) => (total ? (((n ?? 0) / total) * 100).toFixed(2) : '0.00')
        if (!r.corruptions && !r.leaks) await out('No errors were found on the image.\n')
        if (r.corruptions) await out(`${r.corruptions} errors were found on the image.\n`)
        if (r.leaks) await out(`${r.leaks} leaked clusters were found on the image.\n`)
        await out(
          `${r['allocated-clusters'] ?? 0}/${total} = ${pct(r['allocated-clusters'])}% allocated, ${pct(r['fragmented-clusters'])}% fragmented, ${pct(r['compressed-clusters'])}% compressed clusters\nImage end offset: ${r['image-end-offset'] ?? 0}\n`,
        )
      }
      return r.corruptions ? 2 : r.leaks ? 3 : 0
    }
    case 'convert': {
      const { values, pos } = parse(args, { ...backingOpt, 'zero-holes': { type: 'boolean' }, ...httpOpts }, 2)
      const backing = oneOf('backing', values.backing, sk.qcow2.BACKING_POLICIES)
      const http = httpOptions(values, pos[0])
      bar = progressBar()
      leftBehind = `${pos[1]} may be partly written`
      const r = await sk.qcow2.convert(pos[0], pos[1], { ...http, backing, zeroHoles: Boolean(values['zero-holes']), signal, onProgress: bar?.onProgress })
      leftBehind = undefined
      if (values.json) await out(JSON.stringify(r) + '\n')
      else await out(`wrote ${human(r.bytesWritten)} of data; ${pos[1]} is ${human(r.size)}\n`)
      return 0
    }
    case 'create': {
      const { values, pos } = parse(
        args,
        {
          size: { type: 'string' },
          'cluster-size': { type: 'string' },
          backing: { type: 'string' },
          'backing-format': { type: 'string' },
          compat: { type: 'string' },
          'extended-l2': { type: 'boolean' },
          'lazy-refcounts': { type: 'boolean' },
          preallocation: { type: 'string' },
          force: { type: 'boolean' },
        },
        1,
      )
      const size = bytes('size', values.size)
      if (size === undefined) throw new UsageError('qcow2 create: --size is required')
      await sk.qcow2.create(pos[0], {
        size,
        clusterSize: bytes('cluster-size', values['cluster-size']),
        backing: values.backing as string | undefined,
        backingFormat: values['backing-format'] as string | undefined,
        compat: oneOf('compat', values.compat, ['0.10', '1.1'] as const),
        extendedL2: Boolean(values['extended-l2']),
        lazyRefcounts: Boolean(values['lazy-refcounts']),
        preallocation: oneOf('preallocation', values.preallocation, ['off', 'metadata'] as const),
        force: Boolean(values.force),
        signal,
      })
      return 0
    }
    case 'resize': {
      const { values, pos } = parse(args, { force: { type: 'boolean' } }, 2)
      await sk.qcow2.resize(pos[0], bytes('size', pos[1]) as number, { force: Boolean(values.force), signal })
      return 0
    }
    case 'rebase': {
      const { values, pos } = parse(args, { backing: { type: 'string' }, 'backing-format': { type: 'string' }, none: { type: 'boolean' }, force: { type: 'boolean' } }, 1)
      if (Boolean(values.none) === (values.backing !== undefined)) throw new UsageError('qcow2 rebase: give --backing F --backing-format FMT, or --none')
      if (values.backing !== undefined && values['backing-format'] === undefined) throw new UsageError('qcow2 rebase: --backing needs --backing-format')
      await sk.qcow2.setBacking(pos[0], values.none ? null : (values.backing as string), values['backing-format'] as string | undefined, { force: Boolean(values.force), signal })
      return 0
    }
    case 'set-extension':
    case 'get-extension': {
      const get = sub === 'get-extension'
      const { values, pos } = parse(args, { remove: { type: 'boolean' }, force: { type: 'boolean' } }, get ? 2 : values3(args))
      const type = pos[1] === 'hidden' ? sk.qcow2.EXTENSION_HIDDEN : Number(pos[1])
      if (!Number.isInteger(type) || type < 1 || type > 0xffffffff) throw new UsageError(`qcow2 ${sub}: TYPE must be a number such as 0x76617465 or 'hidden', got '${pos[1]}'`)
      if (get) {
        const d = await sk.qcow2.getExtension(pos[0], type, { signal })
        if (values.json) await out(JSON.stringify(d === null ? null : d.toString('hex')) + '\n')
        else if (d === null) return 1
        else await out(d.toString('hex') + '\n')
        return 0
      }
      if (values.remove === (pos[2] !== undefined)) throw new UsageError('qcow2 set-extension: give the data as hex, or --remove')
      if (pos[2] !== undefined && !/^([0-9a-fA-F]{2})*$/.test(pos[2])) throw new UsageError(`qcow2 set-extension: data must be hex bytes, got '${pos[2]}'`)
      await sk.qcow2.setExtension(pos[0], type, values.remove ? null : Buffer.from(pos[2], 'hex'), { force: Boolean(values.force), signal })
      return 0
    }
    case 'discard': {
      const { values, pos } = parse(args, { force: { type: 'boolean' } }, 1)
      await sk.qcow2.discardAll(pos[0], { force: Boolean(values.force), signal })
      return 0
    }
    case 'commit': {
      const { values, pos } = parse(args, { force: { type: 'boolean' } }, 1)
      bar = progressBar()
      const r = await sk.qcow2.commit(pos[0], { force: Boolean(values.force), signal, onProgress: bar?.onProgress })
      if (values.json) await out(JSON.stringify(r) + '\n')
      else await out(`Image committed (${human(r.bytes)}).\n`)
      return 0
    }
    case 'repair': {
      const { values, pos } = parse(args, { force: { type: 'boolean' } }, 1)
      bar = progressBar()
      const r = await sk.qcow2.repair(pos[0], { force: Boolean(values.force), signal, onProgress: bar?.onProgress })
      if (values.json) await out(JSON.stringify(r) + '\n')
      else await out(`${r.leaksFixed} leaked clusters were fixed.\n`)
      return 0
    }
    case 'snapshot': {
      const { values, pos } = parse(args, { force: { type: 'boolean' } }, 2)
      await sk.qcow2.snapshot(pos[0], pos[1], { force: Boolean(values.force), signal })
      return 0
    }
    default:
      throw new UsageError(
        sub === undefined
          ? 'qcow2: expected info, map, check, convert, create, resize, rebase, set-extension, get-extension, discard, commit, repair or snapshot'
          : `unknown qcow2 command '${sub}'`,
      )
  }
}

/** `sparsekit drives`: a table of whole block devices; system drives only with --all. */
async function drivesCommand(rest: string[]): Promise<number> {
  const { values } = parse(rest, { all: { type: 'boolean' } }, 0)
  const list = (await sk.drives.list()).filter((d) => values.all || !d.isSystem)
  if (values.json) {
    await out(JSON.stringify(list) + '\n')
    return 0
  }
  for (const d of list) {
    const what = [d.vendor, d.model].filter(Boolean).join(' ') || (d.backingFile ?? '')
    const mounted = d.mountpoints.length > 0 || d.partitions.some((p) => p.mountpoints.length > 0)
    const flags = [
      d.removable && 'removable',
      d.readOnly && 'read-only',
      d.mountpoints.length > 0 && `mounted at ${d.mountpoints.join(', ')}`,
      mounted && 'in use: flash refuses it without --unmount',
      d.isSystem && `SYSTEM: ${d.systemReasons.join(', ')}`,
    ]
      .filter(Boolean)
      .join(', ')
    await out(`${d.path}  ${human(d.size)}  ${d.bus}  ${what}${flags ? `  [${flags}]` : ''}\n`)
    for (const p of d.partitions) {
      await out(`  ${p.path}  ${human(p.size)}${p.mountpoints.length ? `  mounted at ${p.mountpoints.join(', ')}` : ''}\n`)
    }
  }
  return 0
}

/** `sparsekit flash SOURCE DST...`: one image to several drives; exit 1 when any failed. */
async function flashCommand(rest: string[], signal: AbortSignal): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({
      args: rest,
      options: {
        json: { type: 'boolean' },
        bmap: { type: 'string' },
        nobmap: { type: 'boolean' },
        'no-verify': { type: 'boolean' },
        'no-read-back': { type: 'boolean' },
        unmount: { type: 'boolean' },
        force: { type: 'boolean' },
        create: { type: 'boolean' },
        'zip-entry': { type: 'string' },
        ...httpOpts,
      },
      allowPositionals: true,
      strict: true,
    })
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
  const values = parsed.values as Values
  const [src, ...dsts] = parsed.positionals
  if (src === undefined || dsts.length === 0) throw new UsageError('flash: expected SOURCE and at least one DST')
  if (values.bmap !== undefined && values.nobmap) throw new UsageError('--bmap and --nobmap exclude each other')
  const http = httpOptions(values, src)
  bar = progressBar()
  leftBehind = `${dsts.join(', ')} may be partly written`
  const r = await sk.flash(src, dsts, {
    bmap: values.nobmap ? false : (values.bmap as string | undefined),
    verify: !values['no-verify'],
    readBack: !values['no-read-back'],
    unmount: Boolean(values.unmount),
    force: Boolean(values.force),
    createFiles: Boolean(values.create),
    zipEntry: values['zip-entry'] as string | undefined,
    ...http,
    signal,
    onProgress: bar?.onProgress,
  })
  leftBehind = undefined
  const failed = r.destinations.filter((d) => !d.ok)
  if (values.json) {
    const plain = r.destinations.map((d) => ({ ...d, error: d.error && { code: d.error.code, message: d.error.message } }))
    await out(JSON.stringify({ ...r, destinations: plain }) + '\n')
  } else {
    for (const d of r.destinations) {
      if (d.ok) await out(`${d.path}: wrote ${human(d.bytesWritten)}${d.verified ? ', read back and verified' : ''}\n`)
    }
    for (const d of failed) {
      const e = d.error
      const coded = e && !e.message.startsWith(e.code) ? ` (${e.code})` : ''
      process.stderr.write(`sparsekit: ${d.path}: ${e?.message}${coded}\n`)
    }
  }
  return failed.length ? 1 : 0
}

// stdout closed early (`sparsekit map big | head -c1`): stop quietly, as other tools do;
// any other stdout failure (`> /dev/full`: ENOSPC) is one line, exit 1.
process.stdout.on('error', (err: Error & { code?: string }) => {
  if (err.code === 'EPIPE') process.exit(0)
  bar?.clear()
  process.stderr.write(`sparsekit: cannot write to standard output: ${err.message}\n`)
  process.exit(1)
})

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: Error & { code?: string }) => {
    bar?.clear()
    if (err instanceof UsageError) {
      process.stderr.write(`sparsekit: ${err.message}\nTry 'sparsekit --help'.\n`)
      process.exitCode = 2
    } else if (err.code === 'ERR_SPARSEKIT_ABORTED') {
      process.stderr.write(`sparsekit: interrupted${leftBehind ? `; ${leftBehind}` : ''}\n`)
      process.exitCode = 130
    } else if (err.code === 'EPIPE') {
      process.exitCode = 0
    } else {
      process.stderr.write(`sparsekit: ${err.message}${err.code && !err.message.startsWith(err.code) ? ` (${err.code})` : ''}\n`)
      process.exitCode = 1
    }
  },
)
