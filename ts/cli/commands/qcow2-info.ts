/** `sparsekit qcow2 info FILE`: `qemu-img info`, as a table or qemu's JSON. @internal */
import * as qcow2 from '../../qcow2'
import { handler } from '../command'
import type * as specs from '../specs'
import { human, printable } from '../output'

export default handler<typeof specs.qcow2Info>(async (ctx, v, [path]) => {
  const i = await qcow2.info(path, { backing: v.backing, signal: ctx.signal })
  if (v.json) {
    // qemu-img info --output=json [--backing-chain], text and key order included.
    const all = v['backing-chain'] ? [i, ...(i.backingChain ?? [])] : i
    await ctx.out(qcow2.toQemuJson(all) + '\n')
    return 0
  }
  const lines: string[] = []
  for (const x of [i, ...(i.backingChain ?? [])]) {
    if (lines.length) lines.push('')
    lines.push(
      `image: ${printable(x.filename)}`,
      `file format: ${x.format}`,
      `virtual size: ${human(x['virtual-size'])}`,
    )
    if (x['actual-size'] !== undefined) lines.push(`disk size: ${human(x['actual-size'])}`)
    if (x['cluster-size'] !== undefined) lines.push(`cluster_size: ${x['cluster-size']}`)
    if (x['backing-filename']) lines.push(`backing file: ${printable(x['backing-filename'])}`)
    if (x['backing-filename-format'])
      lines.push(`backing file format: ${printable(x['backing-filename-format'])}`)
    for (const s of x.snapshots ?? [])
      lines.push(
        `snapshot: ${printable(s.id)} ${printable(s.name)} (vm state ${s['vm-state-size']} bytes)`,
      )
    const d = x['format-specific']?.data
    if (d) {
      lines.push(
        `compat: ${d.compat}`,
        `compression type: ${d['compression-type']}`,
        `refcount bits: ${d['refcount-bits']}`,
      )
      if (d['lazy-refcounts'] !== undefined) lines.push(`lazy refcounts: ${d['lazy-refcounts']}`)
      if (d['extended-l2']) lines.push('extended l2: true')
      if (d['data-file'])
        lines.push(`data file: ${printable(d['data-file'])}` + (d['data-file-raw'] ? ' (raw)' : ''))
      for (const b of d.bitmaps ?? [])
        lines.push(
          `bitmap: ${printable(b.name)} granularity ${b.granularity} [${b.flags.join(', ')}]`,
        )
      if (d.encrypt) lines.push(`encrypted: ${d.encrypt.format}`)
      if (d.corrupt) lines.push('corrupt: true')
    }
    if (x['dirty-flag']) lines.push('dirty: true')
  }
  await ctx.out(lines.join('\n') + '\n')
  return 0
})
