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
  sparsekit digest FILE [--algorithm sha256|sha3-512|blake3|sha1] [--start N] [--length N]
  sparsekit --help | --version

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
