/**
 * What `checksum`, `retrieve` and `save` share: blockcopy's command-line contract (binary
 * streams on stdin/stdout, refused on a terminal; nothing on stderr on success; on failure
 * one line `ERROR (<command>): <reason>`, exit 1), run by all three sides (their
 * flags are declared in ts/cli/specs.ts). @internal
 */
import { isatty } from 'node:tty'
import type { Progress } from '../../run'
import type { Context } from '../command'

/** blockcopy's `--progress`: lines on stderr every 5%, even when it is no terminal. */
export function progressLines(
  ctx: Context,
  cmd: string,
  on: boolean,
): ((p: Progress) => void) | undefined {
  if (!on) return undefined
  let last = -1
  return (p) => {
    const pct = p.bytesTotal ? Math.floor((p.bytesDone / p.bytesTotal) * 20) * 5 : -1
    if (pct === last && p.bytesDone !== p.bytesTotal) return
    last = pct
    const gb = (n: number) => (n / 2 ** 30).toFixed(2)
    ctx.log(
      `${cmd} ${p.phase}: ${gb(p.bytesDone)} GB` +
        (p.bytesTotal !== undefined ? ` / ${gb(p.bytesTotal)} GB (${pct}%)` : '') +
        '\n',
    )
  }
}

/**
 * Runs one side as blockcopy does: binary output refused on a terminal, a failure printed
 * as `ERROR (<cmd>): <reason>` with exit 1. An interrupt goes on to the usual message.
 */
export async function side(
  ctx: Context,
  cmd: string,
  binaryOut: boolean,
  body: () => Promise<void>,
): Promise<number> {
  try {
    if (binaryOut && isatty(1))
      throw new Error(`standard output is a terminal - will not write binary data to it`)
    await body()
    return 0
  } catch (err) {
    const e = err as Error & { code?: string }
    if (e.code === 'ERR_SPARSEKIT_ABORTED') throw err
    ctx.log(`ERROR (${cmd}): ${ctx.words(e.message)}\n`)
    return 1
  }
}
