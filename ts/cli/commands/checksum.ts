/** `sparsekit checksum DST`: blockcopy's first side, the destination's block hashes to stdout. @internal */
import { fd as syncFd } from '../../sync'
import { command } from '../command'
import { BLOCKCOPY_NOTE, JOURNAL, progressLines, side, SIDE_OPTIONS } from './blockcopy'

export default command({
  name: 'checksum',
  summary: 'blockcopy, side 1: hash the blocks of DST to stdout',
  positionals: [{ name: 'DST' }],
  options: [
    { flag: 'start', type: 'bytes', value: 'N', description: 'hash from byte N of DST' },
    { flag: 'end', type: 'bytes', value: 'N', description: 'hash up to byte N of DST' },
    ...SIDE_OPTIONS,
    JOURNAL,
  ],
  notes: [
    "DST may be '-' (stdin) or a pipe such as /dev/stdin or a FIFO: it is read once, in order.",
    BLOCKCOPY_NOTE,
  ],
  async run(ctx, v, [file]) {
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
  },
})
