/** `sparsekit flash SOURCE DST...`: one image to several drives; exit 1 when any failed. @internal */
import { flash } from '../../flash'
import { handler, UsageError } from '../command'
import type * as specs from '../specs'
import { human } from '../output'
import { httpOptions, customization } from './common'

export default handler<typeof specs.flash>(async (ctx, v, [src, ...dsts]) => {
  if (v.bmap !== undefined && v.nobmap)
    throw new UsageError('--bmap and --nobmap exclude each other')
  if (v['zero-unmapped'] && v.discard)
    throw new UsageError('--zero-unmapped and --discard exclude each other')
  const http = httpOptions(v, src)
  const onProgress = ctx.progress()
  ctx.leaves(`${dsts.join(', ')} may be partly written`)
  const r = await flash(src, dsts, {
    bmap: v.nobmap ? false : v.bmap,
    verify: !v['no-verify'],
    readBack: !v['no-read-back'],
    unmount: v.unmount,
    force: v.force,
    createFiles: v.create,
    zipEntry: v['zip-entry'],
    customize: customization(v),
    checkCapacity: v['check-capacity'],
    eject: v.eject,
    ...http,
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
  const failed = r.destinations.filter((d) => !d.ok)
  if (v.json) {
    const plain = r.destinations.map((d) => ({
      ...d,
      error: d.error && { code: d.error.code, message: ctx.words(d.error.message) },
    }))
    await ctx.json({ ...r, destinations: plain })
  } else {
    for (const d of r.destinations) {
      if (d.ok) {
        const skipped = d.bytesSkipped ? ` (${human(d.bytesSkipped)} already there)` : ''
        const retried = d.retries ? `, ${d.retries} writes retried` : ''
        const ejected = d.ejected
          ? ', ejected'
          : d.ejectError
            ? ` (not ejected: ${ctx.words(d.ejectError.message)})`
            : ''
        const trimmed = r.trim ? ` (trimmed: ${human(r.trim.freeBytes)} free left as it was)` : ''
        await ctx.out(
          `${d.path}: wrote ${human(d.bytesWritten)}${trimmed}${skipped}${retried}${d.verified ? ', read back and verified' : ''}${ejected}\n`,
        )
      }
    }
    for (const d of failed) if (d.error) ctx.error(d.error, `${d.path}: `)
  }
  return failed.length ? 1 : 0
})
