/** `sparsekit backup SOURCE OUTPUT`: an image of the used blocks only, with a bmap. @internal */
import { backup } from '../../backup'
import { handler } from '../command'
import type * as specs from '../specs'
import { human } from '../output'

export default handler<typeof specs.backup>(async (ctx, v, [src, out]) => {
  const r = await backup(src, out, {
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
})
