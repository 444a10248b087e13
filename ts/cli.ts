#!/usr/bin/env node
/**
 * The `sparsekit` command line: finds the command in the table (ts/cli/commands), parses its
 * arguments (ts/cli/args.ts), runs it with an output context (ts/cli/output.ts). Exit 0 on
 * success, 1 on failure (one clear line on stderr), 2 on a usage error, 130 on Ctrl-C.
 * Progress bars go to stderr only when stderr is a TTY.
 * @internal
 */
import { version } from './index'
import { findCommand, parseCommandLine, wantsHelp } from './cli/args'
import { COMMANDS } from './cli/commands/index'
import { commandHelp, globalHelp, groupHelp } from './cli/help'
import { Output } from './cli/output'

async function main(argv: string[]): Promise<number> {
  // The context of this run; the command's own once it is found.
  let ctx = new Output(undefined, new AbortController().signal)
  process.stdout.on('error', (err: Error & { code?: string }) =>
    process.exit(ctx.stdoutFailed(err)),
  )
  const [first, ...rest] = argv
  if (first === undefined) {
    process.stderr.write(globalHelp(COMMANDS, version))
    return 2
  }
  if (first === '-h' || first === '--help' || (first === 'help' && rest.length === 0)) {
    process.stdout.write(globalHelp(COMMANDS, version))
    return 0
  }
  if (first === '-V' || first === '--version') {
    process.stdout.write(`${version}\n`)
    return 0
  }
  // `sparsekit help copy` is `sparsekit copy --help`.
  const words = first === 'help' ? [...rest, '--help'] : argv
  let found
  try {
    found = findCommand(COMMANDS, words)
  } catch (e) {
    return ctx.fail(e as Error)
  }
  if (found.kind === 'group') {
    process.stdout.write(groupHelp(found.group, found.commands))
    return 0
  }
  const { command, args } = found
  if (wantsHelp(args)) {
    process.stdout.write(commandHelp(command))
    return 0
  }
  const ac = new AbortController()
  process.once('SIGINT', () => ac.abort())
  ctx = new Output(command, ac.signal)
  try {
    const { values, positionals } = parseCommandLine(command, args)
    return await command.run(ctx, values, positionals)
  } catch (e) {
    return ctx.fail(e as Error)
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: Error) => {
    process.stderr.write(`sparsekit: ${err.stack ?? err}\n`)
    process.exitCode = 1
  },
)
