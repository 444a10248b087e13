/** `sparsekit retrieve SRC`: blockcopy's second side, hashes in, changed blocks of SRC out. @internal */
import { fd as syncFd } from '../../sync'
import { handler } from '../command'
import type * as specs from '../specs'
import { progressLines, side } from './blockcopy'

export default handler<typeof specs.retrieve>(async (ctx, v, [file]) => {
  const onProgress = progressLines(ctx, 'retrieve', v.progress)
  return side(ctx, 'retrieve', true, async () => {
    if (file === '-') throw new Error('the file must be an actual file or device, not `-`')
    await syncFd.retrieve(file, 0, 1, {
      lzma: v.lzma,
      blake3: v.blake3,
      holes: v.holes,
      zstd: v.zstd,
      truncate: v.truncate,
      resume: v.resume,
      signal: ctx.signal,
      onProgress,
    })
  })
})
