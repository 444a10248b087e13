/** `sparsekit checksum DST`: blockcopy's first side, the destination's block hashes to stdout. @internal */
import { fd as syncFd } from '../../sync'
import { handler } from '../command'
import type * as specs from '../specs'
import { progressLines, side } from './blockcopy'

export default handler<typeof specs.checksum>(async (ctx, v, [file]) => {
  const onProgress = progressLines(ctx, 'checksum', v.progress)
  return side(ctx, 'checksum', true, async () => {
    if (v.journal !== undefined && !v.resume) throw new Error('--journal needs --resume')
    const fromStdin = file === '-'
    // The default journal is beside DST; a pipe has none.
    if (v.resume && fromStdin && v.journal === undefined)
      throw new Error('--resume with `-` needs --journal FILE')
    // FILE may be a pipe (/dev/stdin, a FIFO): the native side sees it; a pipe gets no default journal.
    await syncFd.checksum(fromStdin ? null : file, 1, {
      start: v.start,
      end: v.end,
      inputFd: fromStdin ? 0 : undefined,
      blake3: v.blake3,
      holes: v.holes,
      resume: v.resume,
      journal: v.journal,
      signal: ctx.signal,
      onProgress,
    })
  })
})
