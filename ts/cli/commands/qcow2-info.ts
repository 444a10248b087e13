/** `sparsekit qcow2 info FILE`: `qemu-img info`, as a table or qemu's JSON. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT } from '../command'
import { human, printable } from '../output'
import { BACKING_POLICY } from './common'

export default command({
  name: 'qcow2 info',
  summary: "show a qcow2 image's size, backing file, snapshots, bitmaps (qemu-img info)",
  positionals: [{ name: 'FILE' }],
  options: [
    BACKING_POLICY,
    {
      flag: 'backing-chain',
      type: 'boolean',
      description: 'with --json, print every image of the backing chain (as qemu-img)',
    },
    {
      ...JSON_OUTPUT,
      description: "print qemu-img info's JSON (--output=json), key order included",
    },
  ],
  async run(ctx, v, [path]) {
    const i = await sk.qcow2.info(path, { backing: v.backing, signal: ctx.signal })
    if (v.json) {
      // qemu-img info --output=json [--backing-chain], text and key order included.
      const all = v['backing-chain'] ? [i, ...(i.backingChain ?? [])] : i
      await ctx.out(sk.qcow2.toQemuJson(all) + '\n')
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
          lines.push(
            `data file: ${printable(d['data-file'])}` + (d['data-file-raw'] ? ' (raw)' : ''),
          )
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
  },
})
