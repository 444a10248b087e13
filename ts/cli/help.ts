/**
 * Help generated from the command table: `sparsekit --help` lists every command,
 * `sparsekit CMD --help` prints the command's usage and each option with its description,
 * `sparsekit qcow2 --help` a group's commands. Lines fit 100 columns. @internal
 */
import { positionalUsage } from './args'
import type { Command, OptionSpec } from './command'

/** Help lines are wrapped to this width. */
export const WIDTH = 100

/** Words of `text` in lines of at most `width - indent` characters, each indented. */
export function wrap(text: string, indent: number, width = WIDTH): string[] {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && indent + line.length + 1 + word.length > width) {
      lines.push(line)
      line = word
    } else line = line ? `${line} ${word}` : word
  }
  if (line) lines.push(line)
  return lines.map((l) => ' '.repeat(indent) + l)
}

/** Rows of two columns: the left padded, the right wrapped beside it (or below when wide). */
function table(rows: [string, string][], maxLeft = 28): string[] {
  const left = Math.min(maxLeft, Math.max(...rows.map(([l]) => l.length)))
  const indent = 2 + left + 2
  const out: string[] = []
  for (const [l, r] of rows) {
    const body = wrap(r, indent)
    if (l.length > left) out.push(`  ${l}`, ...body)
    else out.push(`  ${l.padEnd(left)}  ${(body[0] ?? '').trimStart()}`.trimEnd(), ...body.slice(1))
  }
  return out
}

/** `-o, --output FILE` or `    --skip N`. */
function optionName(o: OptionSpec): string {
  const long = `--${o.flag}${o.type === 'boolean' ? '' : ` ${o.value ?? 'VALUE'}`}`
  return o.short ? `-${o.short}, ${long}` : `    ${long}`
}

/** An option's help text: its description, the choices of a `choice`, its default. */
function optionText(o: OptionSpec): string {
  let text = o.description
  if (o.choices)
    text += `: ${o.choices.slice(0, -1).join(', ')} or ${o.choices[o.choices.length - 1]}`
  if (o.default !== undefined) text += ` (default ${o.default})`
  if (o.repeat) text += ` (repeatable)`
  return text
}

/** The paragraph every command with a byte-count option gets. */
const BYTES_NOTE =
  "Byte counts (N) take dd's suffixes: K, M, G, T, P, E (and KiB, MiB, ...) are powers of 1024; " +
  'KB, MB, GB, ... powers of 1000; b 512, w 2, c 1. So 1M is 1048576 and 1MB 1000000.'

/** The paragraph every command that reads http(s) URLs gets. */
const URL_NOTE =
  'URLs: proxies from https_proxy / http_proxy / all_proxy / no_proxy (as curl); a private CA ' +
  'through SSL_CERT_FILE or --ca.'

/** The usage lines of a command: `sparsekit copy [OPTIONS] SRC DST`. */
export function usageLines(cmd: Command): string[] {
  const shown = cmd.options.some((o) => !o.hidden) ? ' [OPTIONS]' : ''
  const tails = cmd.usage ?? [positionalUsage(cmd)]
  return tails.map((t) => `sparsekit ${cmd.name}${shown}${t ? ` ${t}` : ''}`)
}

/** `sparsekit CMD --help`: usage, summary, options with descriptions, notes. */
export function commandHelp(cmd: Command): string {
  const lines: string[] = []
  const usage = usageLines(cmd)
  lines.push(`Usage: ${usage[0]}`, ...usage.slice(1).map((u) => `       ${u}`), '')
  lines.push(...wrap(cmd.summary.charAt(0).toUpperCase() + cmd.summary.slice(1) + '.', 0), '')
  const rows: [string, string][] = cmd.options
    .filter((o) => !o.hidden)
    .map((o) => [optionName(o), optionText(o)])
  rows.push(['-h, --help', 'show this help'])
  lines.push('Options:', ...table(rows))
  const notes = [...(cmd.notes ?? [])]
  if (cmd.options.some((o) => o.type === 'bytes') || cmd.usage?.some((u) => /\bSIZE\b/.test(u)))
    notes.push(BYTES_NOTE)
  if (cmd.options.some((o) => o.flag === 'ca')) notes.push(URL_NOTE)
  for (const n of notes) lines.push('', ...wrap(n, 0))
  return lines.join('\n') + '\n'
}

/** The commands of a list as rows: name and summary. */
function commandRows(commands: readonly Command[], strip = ''): [string, string][] {
  return commands.map((c) => [c.name.slice(strip.length), c.summary])
}

/** `sparsekit qcow2 --help`: the group's commands. */
export function groupHelp(group: string, commands: readonly Command[]): string {
  return (
    [
      `Usage: sparsekit ${group} COMMAND [OPTIONS] ARGS...`,
      '',
      'Commands:',
      ...table(commandRows(commands, `${group} `)),
      '',
      `Run 'sparsekit ${group} COMMAND --help' for a command's options.`,
    ].join('\n') + '\n'
  )
}

/** `sparsekit --help`: every command of the table with its summary, and what all share. */
export function globalHelp(table_: readonly Command[], version: string): string {
  return (
    [
      `sparsekit ${version}: allocation-aware disk-image I/O`,
      '',
      'Usage: sparsekit COMMAND [OPTIONS] ARGS...',
      '       sparsekit COMMAND --help',
      '       sparsekit --help | --version',
      '',
      'Commands:',
      ...table(commandRows(table_)),
      '',
      "Run 'sparsekit COMMAND --help' for a command's usage and options.",
      '',
      ...wrap(
        "A FILE of '-' is not special; put '--' before file names that start with '-'. Exit status: " +
          '0 success, 1 failure (one line on stderr), 2 usage error, 130 interrupted (Ctrl-C). ' +
          'Progress bars go to stderr when it is a terminal.',
        0,
      ),
      '',
      ...wrap(BYTES_NOTE, 0),
      '',
      ...wrap(URL_NOTE, 0),
      '',
      'Options:',
      ...table([
        ['-h, --help', 'show this help'],
        ['-V, --version', 'print the version'],
      ]),
    ].join('\n') + '\n'
  )
}
