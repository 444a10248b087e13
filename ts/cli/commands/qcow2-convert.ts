/** `sparsekit qcow2 convert SRC DST`: a qcow2 image (a path or an http(s) URL) to a raw one. @internal */
import * as qcow2 from '../../qcow2'
import { handler } from '../command'
import type * as specs from '../specs'
import { human } from '../output'
import { httpOptions } from './common'

export default handler<typeof specs.qcow2Convert>(async (ctx, v, [src, dst]) => {
  const http = httpOptions(v, src)
  const onProgress = ctx.progress()
  ctx.leaves(`${dst} may be partly written`)
  const r = await qcow2.convert(src, dst, {
    ...http,
    backing: v.backing,
    zeroHoles: v['zero-holes'],
    signal: ctx.signal,
    onProgress,
  })
  ctx.leaves(undefined)
  if (v.json) await ctx.json(r)
  else await ctx.out(`wrote ${human(r.bytesWritten)} of data; ${dst} is ${human(r.size)}\n`)
  return 0
})
