#!/usr/bin/env node
/**
 * The `sparsekit` command line: finds the command in the table (ts/cli/commands), parses its
 * arguments (ts/cli/args.ts), runs it with an output context (ts/cli/output.ts). Exit 0 on
 * success, 1 on failure (one clear line on stderr), 2 on a usage error, 130 on Ctrl-C.
 * Progress bars go to stderr only when stderr is a TTY.
 *
 * Start-up is part of every command's time (a 4 GiB sparse copy takes about as long as
 * Node's own start), so this file loads modules only as a run needs them: `--version`
 * reads package.json alone, help reads the table, and a command loads its own module and
 * the API modules it calls (the native addon only when one of them does), never the others.
 * @internal
 */
import type * as Args from './cli/args'
import type * as Help from './cli/help'
import type * as OutputModule from './cli/output'
import type * as Table from './cli/commands/index'

/**
 * Node >= 22.1 can keep the compiled code of the modules loaded below in a cache on disk
 * (`module.enableCompileCache`), so later starts skip compiling them; Node 20 has no such
 * cache and this does nothing. Called without a directory, Node decides where: the
 * directory in `NODE_COMPILE_CACHE` when set, else `node-compile-cache` in the OS temporary
 * directory, one per user and Node version, checked against each file's contents (a changed
 * file is compiled again). `NODE_DISABLE_COMPILE_CACHE=1` turns it off. A failure (a
 * read-only temporary directory) only costs the cache.
 */
function enableCompileCache(): void {
  try {
    const mod = require('node:module') as { enableCompileCache?: () => unknown }
    mod.enableCompileCache?.()
  } catch {
    // no cache: start as usual
  }
}

async function main(argv: string[]): Promise<number> {
  // The context of this run, made when first needed; the command's own once it is found.
  let ctx: OutputModule.Output | undefined
  const context = () => {
    if (ctx) return ctx
    const { Output } = require('./cli/output') as typeof OutputModule
    return (ctx = new Output(undefined, new AbortController().signal))
  }
  process.stdout.on('error', (err: Error & { code?: string }) =>
    process.exit(context().stdoutFailed(err)),
  )
  const version = () => (require('../package.json') as { version: string }).version
  const [first, ...rest] = argv
  if (first === '-V' || first === '--version') {
    process.stdout.write(`${version()}\n`)
    return 0
  }
  const { findCommand, parseCommandLine, wantsHelp } = require('./cli/args') as typeof Args
  const { COMMANDS } = require('./cli/commands/index') as typeof Table
  const help = () => require('./cli/help') as typeof Help
  if (first === undefined) {
    process.stderr.write(help().globalHelp(COMMANDS, version()))
    return 2
  }
  if (first === '-h' || first === '--help' || (first === 'help' && rest.length === 0)) {
    process.stdout.write(help().globalHelp(COMMANDS, version()))
    return 0
  }
  // `sparsekit help copy` is `sparsekit copy --help`.
  const words = first === 'help' ? [...rest, '--help'] : argv
  let found
  try {
    found = findCommand(COMMANDS, words)
  } catch (e) {
    return context().fail(e as Error)
  }
  if (found.kind === 'group') {
    process.stdout.write(help().groupHelp(found.group, found.commands))
    return 0
  }
  const { command, args } = found
  if (wantsHelp(args)) {
    process.stdout.write(help().commandHelp(command))
    return 0
  }
  const ac = new AbortController()
  process.once('SIGINT', () => ac.abort())
  const { Output } = require('./cli/output') as typeof OutputModule
  const run = (ctx = new Output(command, ac.signal))
  try {
    const { values, positionals } = parseCommandLine(command, args)
    return await command.run(run, values, positionals)
  } catch (e) {
    return run.fail(e as Error)
  }
}

enableCompileCache()
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: Error) => {
    process.stderr.write(`sparsekit: ${err.stack ?? err}\n`)
    process.exitCode = 1
  },
)
