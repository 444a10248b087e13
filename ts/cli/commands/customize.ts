/** `sparsekit customize IMAGE|DEVICE`: first-boot files into the FAT boot partition. @internal */
import { customize } from '../../customize'
import { handler, UsageError } from '../command'
import type * as specs from '../specs'
import { customization } from './common'

export default handler<typeof specs.customize>(async (ctx, v, [path]) => {
  const c = customization(v)
  if (!c) throw new UsageError('nothing to do: give --file, --append or --delete')
  const r = await customize(path, { ...c, signal: ctx.signal })
  if (v.json) {
    await ctx.json(r)
    return 0
  }
  const lines = [`${path}: FAT partition at ${r.partition.start} (${r.partition.length} bytes)\n`]
  for (const f of r.written) lines.push(`  wrote ${f}\n`)
  for (const f of r.deleted) lines.push(`  deleted ${f}\n`)
  for (const f of r.appended) lines.push(`  appended to ${f}\n`)
  for (const f of r.already) lines.push(`  ${f} already holds its text\n`)
  await ctx.out(lines.join(''))
  return 0
})
