/** `sparsekit qcow2 import SRC DST`: any image, drive or URL into a new qcow2 image. @internal */
import * as qcow2 from '../../qcow2'
import { handler, UsageError } from '../command'
import type * as specs from '../specs'
import { human } from '../output'
import { httpOptions } from './common'

/** The backing option of the API from `--backing` and `--backing-format`. */
export function backingOf(v: { backing?: string; 'backing-format'?: 'qcow2' | 'raw' }) {
  if ((v.backing === undefined) !== (v['backing-format'] === undefined))
    throw new UsageError('--backing and --backing-format go together')
  return v.backing === undefined
    ? undefined
    : { file: v.backing, format: v['backing-format'] as 'qcow2' | 'raw' }
}

export default handler<typeof specs.qcow2Import>(async (ctx, v, [src, dst]) => {
  const http = httpOptions(v, src)
  const r = await qcow2.importImage(src, dst, {
    ...http,
    compress: v.compress ?? false,
    clusterSize: v['cluster-size'],
    compat: v.compat,
    extendedL2: v['extended-l2'],
    backing: backingOf(v),
    format: v.format,
    trim: v.trim,
    threads: v.threads,
    signal: ctx.signal,
    onProgress: ctx.progress(),
  })
  if (v.json) await ctx.json(r)
  else {
    const stored = r.dataClusters + r.compressedClusters
    await ctx.out(
      `${dst}: ${human(r.fileSize)} for a ${human(r.size)} disk (${stored} clusters stored, ${r.compressedClusters} compressed)\n`,
    )
  }
  return 0
})
