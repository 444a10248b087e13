/**
 * The output layer: text and JSON on stdout in bounded memory, the TTY progress bar on
 * stderr, error lines worded with the CLI's flags, and the exit status of a failure. Its
 * state (the bar to clear, what an interrupt leaves behind) lives in one `Output` per run,
 * handed to the command as its context. @internal
 */
import { once } from 'node:events'
import { progressLine } from '../cli-progress'
import type { Progress } from '../run'
import { UsageError } from './command'
import type { Command, Context } from './command'

/** `1.5 MiB (1572864 bytes)`, or `512 B` under a KiB. */
export function human(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]} (${n} bytes)`
}

/**
 * A name read from an image (backing file, data file, snapshot, bitmap), printable: control
 * characters (a NUL byte, an escape sequence, a line break) shown as `\xNN` escapes so they
 * cannot garble or forge the terminal's output. `--json` output keeps the exact string.
 */
export function printable(name: string): string {
  // eslint-disable-next-line no-control-regex
  return name.replace(
    /[\x00-\x1f\x7f-\x9f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  )
}

/** A failure's line: the message, then the code when the message does not start with it. */
function describe(err: Error & { code?: string }, message: string): string {
  return `${message}${err.code && !message.startsWith(err.code) ? ` (${err.code})` : ''}`
}

/** The TTY progress bar: redrawn at most 10 times a second; `clear()` before any message. */
interface Bar {
  onProgress: (p: Progress) => void
  clear: () => void
}

/** A one-line progress bar on `stream`. */
function progressBar(stream: NodeJS.WriteStream): Bar {
  let last = 0
  let drawn = false
  let phaseStart = Date.now()
  let phase = ''
  const clear = () => {
    if (drawn) stream.write('\r\x1b[K')
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
      stream.write(`\r\x1b[K${progressLine(p, (now - phaseStart) / 1000)}`)
      drawn = true
      if (final) {
        stream.write('\n')
        drawn = false
      }
    },
  }
}

/** Escapes a string for use in a regular expression. */
const literal = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** The context of one command run: its output and the state a failure or interrupt needs. */
export class Output implements Context {
  /** The bar of the running command, cleared before an error or interrupt message. */
  private bar: Bar | undefined
  /** What an interrupted command leaves behind, for the interrupt message. */
  private leftBehind: string | undefined

  constructor(
    /** The command running; undefined before one is found (`sparsekit frobnicate`). */
    private readonly command: Command | undefined,
    readonly signal: AbortSignal,
    private readonly stdout: NodeJS.WriteStream = process.stdout,
    private readonly stderr: NodeJS.WriteStream = process.stderr,
  ) {}

  async out(text: string): Promise<void> {
    if (!this.stdout.write(text)) await once(this.stdout, 'drain')
  }

  json(value: unknown): Promise<void> {
    return this.out(JSON.stringify(value) + '\n')
  }

  log(text: string): void {
    this.stderr.write(text)
  }

  error(err: Error & { code?: string }, prefix = ''): void {
    this.bar?.clear()
    this.stderr.write(`sparsekit: ${prefix}${describe(err, this.words(err.message))}\n`)
  }

  progress(): ((p: Progress) => void) | undefined {
    if (!this.stderr.isTTY) return undefined
    this.bar = progressBar(this.stderr)
    return this.bar.onProgress
  }

  leaves(what: string | undefined): void {
    this.leftBehind = what
  }

  /**
   * Core messages name API options (`unmount it first (unmount: true) or pass force`); the
   * CLI's user needs the flag: `(--unmount)`, `pass --force`. Read from the command's
   * options that declare `api`; a message that already names the flag is left alone
   * (`createFiles: true; CLI --create`).
   */
  words(message: string): string {
    let m = message
    for (const o of this.command?.options ?? []) {
      if (o.api === undefined || m.includes(`--${o.flag}`)) continue
      const api = literal(o.api)
      m = m
        .replace(new RegExp(`\\b${api}: true\\b`, 'g'), `--${o.flag}`)
        .replace(new RegExp(`\\bpass ${api}\\b`, 'g'), `pass --${o.flag}`)
    }
    return m
  }

  /** Prints why the run failed and gives its exit status: 2 usage, 130 interrupted, else 1. */
  fail(err: Error & { code?: string }): number {
    this.bar?.clear()
    if (err instanceof UsageError) {
      const name = (err as UsageError).command ?? this.command?.name
      const who = name === undefined ? 'sparsekit' : `sparsekit ${name}`
      this.stderr.write(`${who}: ${err.message}\nTry '${who} --help'.\n`)
      return 2
    }
    if (err.code === 'ERR_SPARSEKIT_ABORTED') {
      this.stderr.write(`sparsekit: interrupted${this.leftBehind ? `; ${this.leftBehind}` : ''}\n`)
      return 130
    }
    // stdout closed early (`sparsekit map big | head -c1`): stop quietly, as other tools do.
    if (err.code === 'EPIPE') return 0
    this.error(err)
    return 1
  }

  /**
   * A failed write to stdout: quiet for EPIPE (exit 0), one line for anything else
   * (`> /dev/full`: ENOSPC, exit 1).
   */
  stdoutFailed(err: Error & { code?: string }): number {
    if (err.code === 'EPIPE') return 0
    this.bar?.clear()
    this.stderr.write(`sparsekit: cannot write to standard output: ${err.message}\n`)
    return 1
  }
}
