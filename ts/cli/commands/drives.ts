/** `sparsekit drives`: a table of whole block devices; system drives only with --all. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT } from '../command'
import { human } from '../output'

export default command({
  name: 'drives',
  summary: 'list drives (whole block devices), their mounts, and which hold the system',
  positionals: [],
  options: [
    {
      flag: 'all',
      type: 'boolean',
      description: 'list system drives too (marked SYSTEM, with the reasons)',
    },
    JSON_OUTPUT,
  ],
  async run(ctx, v) {
    const list = (await sk.drives.list()).filter((d) => v.all || !d.isSystem)
    if (v.json) {
      await ctx.json(list)
      return 0
    }
    for (const d of list) {
      const what = [d.vendor, d.model].filter(Boolean).join(' ') || (d.backingFile ?? '')
      const mounted = d.mountpoints.length > 0 || d.partitions.some((p) => p.mountpoints.length > 0)
      const flags = [
        d.removable && 'removable',
        d.readOnly && 'read-only',
        d.mountpoints.length > 0 && `mounted at ${d.mountpoints.join(', ')}`,
        mounted && 'in use: flash refuses it without --unmount',
        d.isSystem && `SYSTEM: ${d.systemReasons.join(', ')}`,
      ]
        .filter(Boolean)
        .join(', ')
      await ctx.out(
        `${d.path}  ${human(d.size)}  ${d.bus}  ${what}${flags ? `  [${flags}]` : ''}\n`,
      )
      for (const p of d.partitions) {
        await ctx.out(
          `  ${p.path}  ${human(p.size)}${p.mountpoints.length ? `  mounted at ${p.mountpoints.join(', ')}` : ''}\n`,
        )
      }
    }
    return 0
  },
})
