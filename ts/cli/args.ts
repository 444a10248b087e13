/**
 * The argument layer: node:util's parseArgs driven by a command's option table, with errors
 * in plain words naming the command and the flag (`sparsekit copy: --skip needs a value`)
 * instead of parseArgs' own text, and values converted by type (byte counts, counts,
 * choices) before the command runs. @internal
 */
import { parseArgs } from 'node:util'
import { UsageError } from './command'
import type { Command, OptionSpec, Values } from './command'

/**
 * A byte count with dd's suffixes, exactly as GNU dd reads them: `c` 1, `w` 2, `b` 512;
 * `K`/`k`, `M`, `G`, `T`, `P`, `E` powers of 1024 (also `KiB`, `MiB`, ...); `kB`, `KB`, `MB`,
 * `GB`, `TB`, `PB`, `EB` powers of 1000. So `1M` is 1048576 and `1MB` 1000000. `label` names
 * the value in the error (`--skip`, `SIZE`).
 */
export function bytes(label: string, v: string): number {
  const m = /^(\d+)(c|w|b|[kKMGTPE]|[kKMGTPE]iB|[kKMGTPE]B)?$/.exec(v)
  if (!m) {
    throw new UsageError(
      `${label}: expected a byte count such as 4096, 16M (MiB) or 16MB (10^6 bytes, as dd), got '${v}'`,
    )
  }
  const s = m[2] || ''
  const power = 'KMGTPE'.indexOf(s[0]?.toUpperCase() ?? '') + 1
  const mult =
    s === ''
      ? 1
      : s === 'c'
        ? 1
        : s === 'w'
          ? 2
          : s === 'b'
            ? 512
            : s.endsWith('iB') || s.length === 1
              ? 1024 ** power
              : 1000 ** power
  const n = Number(m[1]) * mult
  if (!Number.isSafeInteger(n)) throw new UsageError(`${label}: ${v} is too large`)
  return n
}

/** An option's value read by its type; `label` is the flag as typed. */
function convert(o: OptionSpec, label: string, v: string): string | number {
  switch (o.type) {
    case 'bytes':
      return bytes(label, v)
    case 'count': {
      const n = /^\d+$/.test(v) ? Number(v) : NaN
      if (!Number.isSafeInteger(n)) throw new UsageError(`${label}: expected a count, got '${v}'`)
      return n
    }
    case 'choice':
      if (!o.choices?.includes(v))
        throw new UsageError(`${label}: expected one of ${o.choices?.join(', ')}, got '${v}'`)
      return v
    default:
      return v
  }
}

/** The arguments before `--`: after it, `--help` is a file name. */
function beforeDashDash(args: string[]): string[] {
  const i = args.indexOf('--')
  return i < 0 ? args : args.slice(0, i)
}

/** True when `--help` or `-h` comes before `--`, wherever else it stands. */
export function wantsHelp(args: string[]): boolean {
  const opts = beforeDashDash(args)
  return opts.includes('--help') || opts.includes('-h')
}

/** The usage of the positionals: `SRC DST`, `FILE TYPE [HEX]`, `SOURCE DST...`. */
export function positionalUsage(cmd: Command): string {
  return cmd.positionals
    .map((p) => {
      const name = p.variadic ? `${p.name}...` : p.name
      return p.optional ? `[${name}]` : name
    })
    .join(' ')
}

/**
 * Parses `args` against `cmd`'s table: every option known, with a value exactly when its
 * type takes one; booleans false when absent, other options their default or undefined;
 * the positionals counted. Throws a `UsageError` worded for a person.
 */
export function parseCommandLine(
  cmd: Command,
  args: string[],
): { values: Values; positionals: string[] } {
  const byName = new Map(cmd.options.map((o) => [o.flag, o]))
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {}
  for (const o of cmd.options) {
    options[o.flag] = {
      type: o.type === 'boolean' ? 'boolean' : 'string',
      ...(o.short ? { short: o.short } : {}),
    }
  }
  // Not strict: an unknown flag or a missing value comes back as a token that is worded
  // here, instead of parseArgs' own message ("Option '--skip <value>' argument missing").
  const { tokens, positionals } = parseArgs({
    args,
    options,
    allowPositionals: true,
    strict: false,
    tokens: true,
  })
  const values: Values = {}
  for (const t of tokens) {
    if (t.kind !== 'option') continue
    const o = byName.get(t.name)
    // A short flag is named as typed: `-x`, `-o`.
    const label = t.rawName
    if (o === undefined) throw new UsageError(`unknown option ${label}`)
    if (o.type === 'boolean') {
      if (t.value !== undefined)
        throw new UsageError(`${label} takes no value, got '${label}=${t.value}'`)
      values[o.flag] = true
      continue
    }
    // parseArgs (strict) refuses `--skip --seek 5` as ambiguous: a value taken from the next
    // argument may not look like an option; `--skip=-5` says it is meant.
    if (
      t.value === undefined ||
      (!t.inlineValue && t.value.length > 1 && t.value.startsWith('-'))
    ) {
      // `--skip --seek`: the value was forgotten; `--skip -5`: say how to give it.
      const flagNext =
        t.value === undefined ||
        cmd.options.some((x) => t.value === `--${x.flag}` || t.value === `-${x.short}`)
      const more = flagNext ? '' : ` (for a value that starts with '-', write ${label}=${t.value})`
      throw new UsageError(`${label} needs a value${more}`)
    }
    if (o.repeat) {
      const list = (values[o.flag] as string[] | undefined) ?? []
      list.push(t.value)
      values[o.flag] = list
      continue
    }
    values[o.flag] = convert(o, label, t.value)
  }
  for (const o of cmd.options) {
    if (values[o.flag] !== undefined) continue
    values[o.flag] =
      o.type === 'boolean'
        ? false
        : o.default === undefined
          ? undefined
          : convert(o, `--${o.flag}`, o.default)
  }
  checkPositionals(cmd, positionals)
  return { values, positionals }
}

/** Too few or too many positionals, named: `missing DST`, `unexpected argument 'x'`. */
function checkPositionals(cmd: Command, got: string[]): void {
  const required = cmd.positionals.filter((p) => !p.optional)
  const variadic = cmd.positionals.some((p) => p.variadic)
  if (got.length < required.length) {
    const missing = required
      .slice(got.length)
      .map((p) => (p.variadic ? `at least one ${p.name}` : p.name))
    const list =
      missing.length > 1
        ? `${missing.slice(0, -1).join(', ')} and ${missing[missing.length - 1]}`
        : missing[0]
    throw new UsageError(`missing ${list} (usage: sparsekit ${cmd.name} ${positionalUsage(cmd)})`)
  }
  if (!variadic && got.length > cmd.positionals.length) {
    const extra = got[cmd.positionals.length]
    const expected = cmd.positionals.length
      ? `expected ${positionalUsage(cmd)}`
      : 'it takes no arguments'
    throw new UsageError(`unexpected argument '${extra}' (${expected})`)
  }
}

/** The result of looking `argv` up in the table. */
export type Found =
  | { kind: 'command'; command: Command; args: string[] }
  | { kind: 'group'; group: string; commands: Command[] }

/**
 * Finds the command `argv` names: `copy ...`, or a group and its subcommand `qcow2 info ...`;
 * a group alone with `--help` is `group`. Throws a `UsageError` for an unknown name.
 */
export function findCommand(table: readonly Command[], argv: string[]): Found {
  const [first, ...rest] = argv
  const direct = table.find((c) => c.name === first)
  if (direct) return { kind: 'command', command: direct, args: rest }
  const members = table.filter((c) => c.name.startsWith(`${first} `))
  if (members.length === 0) throw new UsageError(`unknown command '${first}'`)
  const [sub, ...args] = rest
  const names = members.map((c) => c.name.slice(first.length + 1))
  if (sub === undefined || sub.startsWith('-')) {
    if (sub !== undefined && wantsHelp(rest))
      return { kind: 'group', group: first, commands: members }
    throw new UsageError(`expected a command: ${names.join(', ')}`, first)
  }
  const command = members.find((c) => c.name === `${first} ${sub}`)
  if (!command)
    throw new UsageError(`unknown command '${sub}' (expected ${names.join(', ')})`, first)
  return { kind: 'command', command, args }
}
