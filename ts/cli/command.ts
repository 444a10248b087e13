/**
 * The command table's types: what a command declares (name, summary, positionals, options
 * with their descriptions) and what it receives when it runs (typed values, a context).
 * Parsing (args.ts), help (help.ts) and error wording (output.ts) are all read from these
 * declarations, so none of them can drift from another. @internal
 */
import type { Progress } from '../run'

/**
 * How an option's value is read: `boolean` takes none; `string` any text; `bytes` a byte
 * count with dd's suffixes (`16M`, `16MB`); `count` a whole number ≥ 0; `choice` one of
 * `choices`.
 */
export type OptionType = 'boolean' | 'string' | 'bytes' | 'count' | 'choice'

/** One option of a command, as parsed and as `--help` shows it. */
export interface OptionSpec {
  /** The long name without dashes: `'skip'` for `--skip`. */
  readonly flag: string
  /** A one-letter alias without the dash: `'o'` for `-o`. */
  readonly short?: string
  readonly type: OptionType
  /** The value's name in help: `--skip N`. Required for every type but `boolean`. */
  readonly value?: string
  /** The accepted values of a `choice`, listed by `--help`. */
  readonly choices?: readonly string[]
  /** One line for `--help`: what the option does. */
  readonly description: string
  /** Applied when the option is absent (read as if given) and shown by `--help`. */
  readonly default?: string
  /**
   * Accepted and ignored, left out of `--help`: flags that every command took before the
   * table existed (`--json` on a command that prints no data), kept so no script breaks.
   */
  readonly hidden?: boolean
  /** May be given more than once (a `string` option): the values come as an array. */
  readonly repeat?: boolean
  /**
   * The API option this flag sets, when a core error message names it (`unmount`,
   * `force`): the CLI prints `--unmount` instead (see `Output.words`).
   */
  readonly api?: string
}

/** A positional argument: its name in usage lines and error messages. */
export interface Positional {
  readonly name: string
  /** May be left out (only trailing positionals). */
  readonly optional?: boolean
  /** Takes one or more values (the last positional only). */
  readonly variadic?: boolean
}

/** The value an option gives `run`: booleans always present, others when given or defaulted. */
type Given<O extends OptionSpec> = O['type'] extends 'bytes' | 'count'
  ? number
  : O extends { readonly choices: readonly (infer C)[] }
    ? C
    : string
type ValueOf<O extends OptionSpec> = O['type'] extends 'boolean'
  ? boolean
  : O extends { readonly repeat: true }
    ? string[] | undefined
    : O extends { readonly default: string }
      ? Given<O>
      : Given<O> | undefined

/** The parsed values of a command's options, keyed by flag (`values['zero-holes']`). */
export type ValuesOf<Opts extends readonly OptionSpec[]> = {
  [O in Opts[number] as O['flag']]: ValueOf<O>
}

/** Parsed values when the option list is not known statically. */
export type Values = Record<string, string | number | boolean | string[] | undefined>

/**
 * What a running command uses to talk to the user: the output layer implements it
 * (output.ts), holding the state that outlives one call (the progress bar, what an
 * interrupt leaves behind).
 */
export interface Context {
  /** Aborted on Ctrl-C: pass it to every long operation. */
  readonly signal: AbortSignal
  /** Writes text to stdout, waiting while the pipe is full (bounded memory). */
  out(text: string): Promise<void>
  /** Writes one value as one line of JSON on stdout. */
  json(value: unknown): Promise<void>
  /** Writes raw text on stderr (blockcopy's messages and progress lines). */
  log(text: string): void
  /** Writes `sparsekit: <error>` on stderr, worded with CLI flags, after clearing the bar. */
  error(err: Error & { code?: string }, prefix?: string): void
  /** Starts the TTY progress bar; the callback for `onProgress`, undefined off a TTY. */
  progress(): ((p: Progress) => void) | undefined
  /** What an interrupt leaves behind (`X may be partly written`); undefined once done. */
  leaves(what: string | undefined): void
  /** A core error's message with API option names replaced by this command's flags. */
  words(message: string): string
}

/**
 * A command as the table declares it (ts/cli/specs.ts): everything `--help` and parsing
 * read, and nothing that runs. Its `run` lives in `ts/cli/commands/NAME.ts`, loaded only when
 * the command runs (see {@link lazy}).
 */
export interface Spec<Opts extends readonly OptionSpec[]> {
  /** `'copy'`, or group and subcommand: `'qcow2 info'`. */
  readonly name: string
  /** One line for the command list of `sparsekit --help`. */
  readonly summary: string
  /**
   * Usage lines after `sparsekit NAME ` when the positionals alone do not say it
   * (`FILE (--backing F --backing-format FMT | --none)`); else generated.
   */
  readonly usage?: readonly string[]
  readonly positionals: readonly Positional[]
  readonly options: Opts
  /** Paragraphs printed after the options by `--help`. */
  readonly notes?: readonly string[]
}

/** What a command does, typed by its spec's options; resolves to the exit status. A `UsageError` exits 2. */
export type Run<S> =
  S extends Spec<infer Opts>
    ? (ctx: Context, values: ValuesOf<Opts>, positionals: string[]) => Promise<number>
    : never

/** A table entry: a command with its option types erased, and `run` loading its module. */
export interface Command extends Spec<readonly OptionSpec[]> {
  run(ctx: Context, values: Values, positionals: string[]): Promise<number>
}

/** Declares a command's spec; `options` keep their literal types for {@link Run}. */
export function spec<const Opts extends readonly OptionSpec[]>(s: Spec<Opts>): Spec<Opts> {
  return s
}

/** Declares what the command of spec `S` does (the default export of `ts/cli/commands/NAME.ts`). */
export function handler<S>(run: Run<S>): Run<S> {
  return run
}

/**
 * A table entry: `s` with a `run` that loads the command's module on its first call, so that
 * `sparsekit --help` or `sparsekit copy` never loads the modules (and the API modules they
 * import) of the other commands.
 */
export function lazy<Opts extends readonly OptionSpec[]>(
  s: Spec<Opts>,
  load: () => Promise<{ default: Run<Spec<Opts>> }>,
): Command {
  return {
    ...s,
    run: async (ctx, values, positionals) =>
      (await load()).default(ctx, values as ValuesOf<Opts>, positionals),
  }
}

/**
 * A mistake in the command line: exit 2, `sparsekit CMD: <message>`, then
 * `Try 'sparsekit CMD --help'.` (`command` is the group, e.g. `qcow2`, when no subcommand
 * was found; undefined for the top level).
 */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message)
  }
}

/** `--json`: print data as JSON. */
export const JSON_OUTPUT = {
  flag: 'json',
  type: 'boolean',
  description: 'print the result as JSON',
} as const

/** `--json` on a command that prints no data: accepted, as before the table, and ignored. */
export const JSON_IGNORED = { ...JSON_OUTPUT, hidden: true } as const
