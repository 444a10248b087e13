/** `sparsekit customize IMAGE|DEVICE`: first-boot files into the FAT boot partition. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT, UsageError } from '../command'
import { CUSTOMIZE_OPTIONS, customization } from './common'

export default command({
  name: 'customize',
  summary: 'write first-boot files into the FAT boot partition of an image or drive',
  positionals: [{ name: 'IMAGE|DEVICE' }],
  options: [...CUSTOMIZE_OPTIONS, JSON_OUTPUT],
  notes: [
    'Files are written whole (directories created), checked to fit before anything is written, ' +
      'and read back. --append adds its text once: a second run leaves the file as it is. ' +
      'Nothing is mounted; a drive must not be mounted either.',
  ],
  async run(ctx, v, [path]) {
    const c = customization(v)
    if (!c) throw new UsageError('nothing to do: give --file, --append or --delete')
    const r = await sk.customize(path, { ...c, signal: ctx.signal })
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
  },
})
