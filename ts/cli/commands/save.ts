/** `sparsekit save DST`: blockcopy's last side, the block stream on stdin written into DST. @internal */
import { fd as syncFd } from '../../sync'
import { handler } from '../command'
import type * as specs from '../specs'
import { progressLines, side } from './blockcopy'

export default handler<typeof specs.save>(async (ctx, v, [file]) => {
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
})
