#!/usr/bin/env node
/**
 * The `sparsekit` command line. Exit 0 on success, 1 on failure (one clear line on stderr),
 * 2 on a usage error. Progress bars go to stderr only when stderr is a TTY.
 * @internal
 */
import { parseArgs, ParseArgsConfig } from 'node:util'
import * as sk from './index'
import type { Progress } from './run'

class UsageError extends Error {}

const USAGE = `sparsekit ${sk.version}: allocation-aware disk-image I/O

Usage:
  sparsekit map FILE [--start N] [--length N] [--method auto|fiemap|seek|none] [--json]
  sparsekit copy SRC DST [--skip N] [--seek N] [--length N] [--method M] [--notrunc] [--zero-holes] [--json]
  sparsekit digest FILE [--algorithm sha256|sha3-512|blake3|sha1] [--start N] [--length N] [--json]
  sparsekit --help | --version

Byte counts accept K, M, G, T suffixes (powers of 1024): --skip 1M.

Options:
  -h, --help      show this help
  -V, --version   print the version
  --json          print data as JSON (where output is data)
`

type Values = Record<string, string | boolean | undefined>

function parse(args: string[], options: ParseArgsConfig['options'], positionals: number): { values: Values; pos: string[] } {
  let parsed
  try {
    parsed = parseArgs({ args, options: { ...options, json: { type: 'boolean' } }, allowPositionals: true, strict: true })
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
  if (parsed.positionals.length !== positionals) {
    throw new UsageError(`expected ${positionals} argument${positionals === 1 ? '' : 's'}, got ${parsed.positionals.length}`)
  }
  return { values: parsed.values as Values, pos: parsed.positionals }
}

function bytes(name: string, v: string | boolean | undefined): number | undefined {
  if (v === undefined) return undefined
  const m = /^(\d+)([KMGT]i?B?|[kmgt])?$/.exec(String(v))
  if (!m) throw new UsageError(`--${name}: expected a byte count such as 4096 or 16M, got '${v}'`)
  const unit = (m[2] || '').toUpperCase()[0]
  const mult = unit ? 1024 ** (' KMGT'.indexOf(unit)) : 1
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

/** The human `map` output: one line per extent, then what is data and what is hole. */
function formatMap(path: string, m: sk.ExtentMap, start: number, length?: number): string {
  const end = Math.min(m.size, length === undefined ? m.size : start + length)
  const window = Math.max(0, end - start)
  const lines = [`${path}: ${human(m.size)}, block size ${m.blockSize}, method ${m.method}`]
  if (m.extents.length) {
    const w = String(end).length
    lines.push(`${'offset'.padStart(w)}  ${'end'.padStart(w)}  ${'length'.padStart(w)}  flags`)
    for (const e of m.extents) {
      const flags = [e.unwritten && 'unwritten', e.shared && 'shared'].filter(Boolean).join(',')
      lines.push(`${String(e.offset).padStart(w)}  ${String(e.offset + e.length).padStart(w)}  ${String(e.length).padStart(w)}  ${flags}`)
    }
  }
  const data = m.extents.filter((e) => !e.unwritten).reduce((a, e) => a + e.length, 0)
  const prealloc = m.extents.filter((e) => e.unwritten).reduce((a, e) => a + e.length, 0)
  const pct = window ? ((data / window) * 100).toFixed(1) : '0.0'
  lines.push(
    `${m.extents.length} extent${m.extents.length === 1 ? '' : 's'}; data ${human(data)} (${pct}%), ` +
      `holes ${human(window - data - prealloc)}` + (prealloc ? `, preallocated ${human(prealloc)}` : ''),
  )
  return lines.join('\n') + '\n'
}

/** A one-line progress bar on stderr, redrawn at most 10 times a second; TTY only. */
function progressBar(): ((p: Progress) => void) | undefined {
  if (!process.stderr.isTTY) return undefined
  let last = 0
  return (p) => {
    const now = Date.now()
    const final = p.bytesDone >= p.bytesTotal
    if (!final && now - last < 100) return
    last = now
    const pct = p.bytesTotal ? Math.floor((p.bytesDone / p.bytesTotal) * 100) : 100
    const width = 30
    const fill = Math.round((pct / 100) * width)
    const mib = (n: number) => (n / 1048576).toFixed(1)
    process.stderr.write(
      `\r${p.phase} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${String(pct).padStart(3)}% ${mib(p.bytesDone)}/${mib(p.bytesTotal)} MiB`,
    )
    if (final) process.stderr.write('\n')
  }
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv
  if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(USAGE)
    return cmd === undefined ? 2 : 0
  }
  if (cmd === '-V' || cmd === '--version') {
    process.stdout.write(`${sk.version}\n`)
    return 0
  }
  if (rest.includes('--help') || rest.includes('-h')) {
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
      const hex = await sk.digest(pos[0], {
        algorithm,
        start: bytes('start', values.start),
        length: bytes('length', values.length),
        signal: ac.signal,
        onProgress: progressBar(),
      })
      if (values.json) process.stdout.write(JSON.stringify({ path: pos[0], algorithm, digest: hex }) + '\n')
      else process.stdout.write(`${hex}  ${pos[0]}\n`)
      return 0
    }
    case 'map': {
      const { values, pos } = parse(rest, { start: { type: 'string' }, length: { type: 'string' }, method: { type: 'string' } }, 1)
      const method = oneOf('method', values.method, sk.MAP_METHODS)
      const m = await sk.map(pos[0], { start: bytes('start', values.start), length: bytes('length', values.length), method, signal: ac.signal })
      if (values.json) {
        process.stdout.write(JSON.stringify(m) + '\n')
        return 0
      }
      process.stdout.write(formatMap(pos[0], m, bytes('start', values.start) ?? 0, bytes('length', values.length)))
      return 0
    }
    case 'copy': {
      const { values, pos } = parse(
        rest,
        { skip: { type: 'string' }, seek: { type: 'string' }, length: { type: 'string' }, method: { type: 'string' },
          notrunc: { type: 'boolean' }, 'zero-holes': { type: 'boolean' } },
        2,
      )
      const r = await sk.copy(pos[0], pos[1], {
        skip: bytes('skip', values.skip),
        seek: bytes('seek', values.seek),
        length: bytes('length', values.length),
        method: oneOf('method', values.method, sk.COPY_METHODS),
        truncate: !values.notrunc,
        zeroHoles: Boolean(values['zero-holes']),
        signal: ac.signal,
        onProgress: progressBar(),
      })
      if (values.json) process.stdout.write(JSON.stringify(r) + '\n')
      else process.stdout.write(`copied ${human(r.bytesCopied)} of data by ${r.method}; ${pos[1]} is ${human(r.size)}\n`)
      return 0
    }
    default:
      throw new UsageError(`unknown command '${cmd}'`)
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: Error & { code?: string }) => {
    if (err instanceof UsageError) {
      process.stderr.write(`sparsekit: ${err.message}\nTry 'sparsekit --help'.\n`)
      process.exitCode = 2
    } else {
      process.stderr.write(`sparsekit: ${err.message}${err.code && !err.message.startsWith(err.code) ? ` (${err.code})` : ''}\n`)
      process.exitCode = 1
    }
  },
)
