/** `sparsekit qcow2 export SRC`: the uncompressed qcow2 image of SRC on stdout. @internal */
import { pipeline } from 'node:stream/promises'
import * as qcow2 from '../../qcow2'
import { handler, UsageError } from '../command'
import type * as specs from '../specs'
import { httpOptions } from './common'
import { backingOf } from './qcow2-import'

export default handler<typeof specs.qcow2Export>(async (ctx, v, [src]) => {
  if (!v.length && process.stdout.isTTY)
    throw new UsageError('refusing to write a binary image to a terminal: redirect stdout')
  const s = await qcow2.exportStream(src, {
    ...httpOptions(v, src),
    clusterSize: v['cluster-size'],
    compat: v.compat,
    extendedL2: v['extended-l2'],
    backing: backingOf(v),
    format: v.format,
    trim: v.trim,
    signal: ctx.signal,
    onProgress: ctx.progress(),
  })
  if (v.length) {
    s.destroy()
    await ctx.out(`${s.length}\n`)
    return 0
  }
  await pipeline(s, process.stdout, { signal: ctx.signal, end: false })
  return 0
})
