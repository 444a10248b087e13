/** `sparsekit layout IMAGE|DEVICE`: partitions, file systems and what is used. @internal */
import { layout } from '../../layout'
import { handler } from '../command'
import type * as specs from '../specs'
import { human } from '../output'

export default handler<typeof specs.layout>(async (ctx, v, [path]) => {
  const l = await layout(path, { signal: ctx.signal, onProgress: ctx.progress() })
  if (v.json) {
    await ctx.json(l)
    return 0
  }
  const pct = (n: number, of: number) => (of ? ((n / of) * 100).toFixed(1) : '0.0')
  const lines = [
    `${path}: ${human(l.size)}, table ${l.table}${l.hybridMbr ? ' (hybrid MBR)' : ''}, sector ${l.sectorSize}\n`,
  ]
  for (const w of l.warnings) lines.push(`  warning: ${w}\n`)
  for (const p of l.partitions) {
    const what = [p.filesystem ?? 'unknown', p.label && `"${p.label}"`, p.uuid]
      .filter(Boolean)
      .join(' ')
    const type = p.type ? ` ${p.typeName ?? p.type}${p.name ? ` "${p.name}"` : ''}` : ''
    lines.push(
      `  ${String(p.number).padStart(2)}  start ${p.start}  ${human(p.length)}${type}  ${what}  ` +
        `used ${human(p.usedBytes)} (${pct(p.usedBytes, p.length)}%)  ${p.state}${p.reason ? `: ${p.reason}` : ''}\n`,
    )
  }
  lines.push(
    `used ${human(l.usedBytes)} of ${human(l.size)} (${pct(l.usedBytes, l.size)}%) in ${l.used.length} range${l.used.length === 1 ? '' : 's'}\n`,
  )
  await ctx.out(lines.join(''))
  return 0
})
