/**
 * What `checksum`, `retrieve` and `save` share: blockcopy's command-line contract (binary
 * streams on stdin/stdout, refused on a terminal; nothing on stderr on success; on failure
 * one line `ERROR (<command>): <reason>`, exit 1) and the flags of all three sides. @internal
 */
import { isatty } from 'node:tty'
import type { Progress } from '../../run'
import { JSON_IGNORED } from '../command'
import type { Context } from '../command'

/**
 * The flags every side takes, so that one set fits all three (`--zstd` and `--truncate`
 * change nothing in checksum's stream). Every side of a session must give the same ones.
 */
export const SIDE_OPTIONS = [
  {
    flag: 'progress',
    type: 'boolean',
    description: 'print progress lines on stderr, even when it is no terminal (as blockcopy)',
  },
  { flag: 'blake3', type: 'boolean', description: 'extension: compare blocks by BLAKE3 hashes' },
  {
    flag: 'holes',
    type: 'boolean',
    description: 'extension: holes are neither read nor sent; zero blocks become holes',
  },
  {
    flag: 'zstd',
    type: 'boolean',
    description: 'extension: send blocks zstd-compressed where smaller (not with --lzma)',
  },
  {
    flag: 'truncate',
    type: 'boolean',
    description: "extension: save makes DST exactly the source's size",
  },
  {
    flag: 'resume',
    type: 'boolean',
    description: 'extension: a cut session continues where it stopped (journal kept by save)',
  },
  JSON_IGNORED,
] as const

/** `--journal FILE` of checksum and save. */
export const JOURNAL = {
  flag: 'journal',
  type: 'string',
  value: 'FILE',
  description: 'the journal of --resume (default: DST.sksync-resume beside DST)',
} as const

/** The paragraph of all three commands' help. */
export const BLOCKCOPY_NOTE =
  'blockcopy-compatible delta sync over any pipe: sparsekit checksum DST | (ssh host sparsekit ' +
  'retrieve SRC) | sparsekit save DST. Extensions are sparsekit-only (never with a blockcopy ' +
  'peer): give every side the same ones (checksum ignores --zstd and --truncate).'

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
