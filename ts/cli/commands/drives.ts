/** `sparsekit drives`: a table of whole block devices; system drives only with --all. @internal */
import * as drives from '../../drives'
import { handler } from '../command'
import type * as specs from '../specs'
import { human } from '../output'

export default handler<typeof specs.drives>(async (ctx, v) => {
  const list = (await drives.list()).filter((d) => v.all || !d.isSystem)
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
    await ctx.out(`${d.path}  ${human(d.size)}  ${d.bus}  ${what}${flags ? `  [${flags}]` : ''}\n`)
    for (const p of d.partitions) {
      await ctx.out(
        `  ${p.path}  ${human(p.size)}${p.mountpoints.length ? `  mounted at ${p.mountpoints.join(', ')}` : ''}\n`,
      )
    }
  }
  return 0
})
