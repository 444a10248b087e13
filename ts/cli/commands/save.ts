/** `sparsekit save DST`: blockcopy's last side, the block stream on stdin written into DST. @internal */
import { fd as syncFd } from '../../sync'
import { command } from '../command'
import { BLOCKCOPY_NOTE, JOURNAL, progressLines, side, SIDE_OPTIONS } from './blockcopy'

export default command({
  name: 'save',
  summary: 'blockcopy, side 3: write the blocks read on stdin into DST',
  positionals: [{ name: 'DST' }],
  options: [...SIDE_OPTIONS, JOURNAL],
  notes: [BLOCKCOPY_NOTE],
  async run(ctx, v, [file]) {
    const onProgress = progressLines(ctx, 'save', v.progress)
    return side(ctx, 'save', false, async () => {
      if (file === '-') throw new Error('the file must be an actual file or device, not `-`')
      if (v.journal !== undefined && !v.resume) throw new Error('--journal needs --resume')
      // --resume: save's journal, next to the destination unless --journal names it.
      const journal = v.resume ? (v.journal ?? `${file}.sksync-resume`) : undefined
      await syncFd.save(file, 0, {
        blake3: v.blake3,
        holes: v.holes,
        zstd: v.zstd,
        truncate: v.truncate,
        journal,
        signal: ctx.signal,
        onProgress,
      })
    })
  },
})
