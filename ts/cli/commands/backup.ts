/** `sparsekit backup SOURCE OUTPUT`: an image of the used blocks only, with a bmap. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT } from '../command'
import { human } from '../output'

export default command({
  name: 'backup',
  summary: 'back up a drive or image: only used blocks, shrunk, with a bmap, verified',
  positionals: [{ name: 'SOURCE' }, { name: 'OUTPUT' }],
  options: [
    { flag: 'no-bmap', type: 'boolean', description: 'do not write OUTPUT.bmap' },
    {
      flag: 'no-shrink',
      type: 'boolean',
      description: 'keep the source size (do not end the image after the last partition)',
    },
    { flag: 'no-verify', type: 'boolean', description: 'do not read the image back and compare' },
    {
      flag: 'unmount',
      type: 'boolean',
      api: 'unmount',
      description: "unmount the source drive's mounted file systems first",
    },
    {
      flag: 'force',
      type: 'boolean',
      api: 'force',
      description: 'read a mounted or system drive as it is (likely inconsistent)',
    },
    JSON_OUTPUT,
  ],
  notes: [
    'Free blocks of understood file systems are never read; everything else is copied. Restore with flash or bmap copy.',
  ],
  async run(ctx, v, [src, out]) {
    const r = await sk.backup(src, out, {
      bmap: !v['no-bmap'],
      shrink: !v['no-shrink'],
      verify: !v['no-verify'],
      unmount: v.unmount,
      force: v.force,
      signal: ctx.signal,
      onProgress: ctx.progress(),
    })
    if (v.json) {
      await ctx.json(r)
      return 0
    }
    await ctx.out(
      `${out}: ${human(r.imageSize)} image (${r.table}) of a ${human(r.sourceSize)} source; ${human(r.bytesCopied)} copied` +
        `${r.cutBytes ? `, ${human(r.cutBytes)} cut after the last partition` : ''}${r.verified ? ', read back and verified' : ''}\n` +
        `sha256 ${r.sha256}${r.bmap ? `\nbmap ${r.bmap}` : ''}\n`,
    )
    return 0
  },
})
