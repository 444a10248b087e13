/** `sparsekit bmap copy IMAGE DST`: `bmaptool copy`, with bmaptool's flag names. @internal */
import * as bmap from '../../bmap'
import { handler, UsageError } from '../command'
import type * as specs from '../specs'
import { human } from '../output'
import { customization, httpOptions } from './common'

export default handler<typeof specs.bmapCopy>(async (ctx, v, [image, dst]) => {
  if (v.bmap !== undefined && v.nobmap)
    throw new UsageError('--bmap and --nobmap exclude each other')
  if (v['zero-unmapped'] && v.discard)
    throw new UsageError('--zero-unmapped and --discard exclude each other')
  const http = httpOptions(v, image)
  const onProgress = ctx.progress()
  ctx.leaves(`${dst} may be partly written`)
  const r = await bmap.copy(image, dst, {
    ...http,
    bmap: v.nobmap ? false : v.bmap,
    verify: !v['no-verify'],
    readBack: v['read-back'],
    createFiles: v.create,
    customize: customization(v),
    seek: v.seek,
    sha256: v.sha256,
    onlyChanged: v['only-changed'],
    zeroUnmapped: v['zero-unmapped'],
    discard: v.discard,
    trim: v.trim,
    writeRetries: v['write-retries'],
    writeRetryDelay: v['write-retry-delay'],
    signal: ctx.signal,
    onProgress,
  })
  ctx.leaves(undefined)
  if (v.json) await ctx.json(r)
  else {
    await ctx.out(
      `wrote ${human(r.bytesWritten)} of a ${human(r.imageSize)} image to ${dst}` +
        (r.compression ? ` (${r.compression})` : '') +
        (r.bmap
          ? ` with ${r.bmap}`
          : r.trim
            ? ` trimmed (${human(r.trim.freeBytes)} free left as it was)`
            : ' without a bmap') +
        (r.bytesSkipped ? ` (${human(r.bytesSkipped)} already there)` : '') +
        `; ${r.rangesVerified} ranges verified` +
        (r.rangesReadBack ? `, ${r.rangesReadBack} read back` : '') +
        '\n',
    )
  }
  return 0
})
