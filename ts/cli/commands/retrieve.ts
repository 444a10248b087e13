/** `sparsekit retrieve SRC`: blockcopy's second side, hashes in, changed blocks of SRC out. @internal */
import { fd as syncFd } from '../../sync'
import { command } from '../command'
import { BLOCKCOPY_NOTE, progressLines, side, SIDE_OPTIONS } from './blockcopy'

export default command({
  name: 'retrieve',
  summary: 'blockcopy, side 2: hashes on stdin, the blocks of SRC that differ to stdout',
  positionals: [{ name: 'SRC' }],
  options: [
    {
      flag: 'lzma',
      type: 'boolean',
      description: 'send compressible blocks xz-compressed (as blockcopy --lzma)',
    },
    ...SIDE_OPTIONS,
  ],
  notes: [BLOCKCOPY_NOTE],
  async run(ctx, v, [file]) {
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
  },
})
