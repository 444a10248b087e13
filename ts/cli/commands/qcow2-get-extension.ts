/** `sparsekit qcow2 get-extension FILE TYPE`: a header extension's data as hex. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT } from '../command'
import { extensionType } from './common'

export default command({
  name: 'qcow2 get-extension',
  summary: 'print the data of a qcow2 header extension as hex',
  positionals: [{ name: 'FILE' }, { name: 'TYPE' }],
  options: [
    { ...JSON_OUTPUT, description: 'print the data as a JSON string of hex, or null' },
    // Taken before the table existed (the parser was set-extension's); they do nothing here.
    { flag: 'remove', type: 'boolean', hidden: true, description: 'ignored' },
    { flag: 'force', type: 'boolean', hidden: true, description: 'ignored' },
  ],
  notes: [
    "TYPE is a number such as 0x76617465, or 'hidden' (XCP-ng's hidden flag). Exit status 1 when the " +
      'image has no extension of that type (with --json: null, exit 0).',
  ],
  async run(ctx, v, [path, rawType]) {
    const d = await sk.qcow2.getExtension(path, extensionType(rawType), { signal: ctx.signal })
    if (v.json) await ctx.json(d === null ? null : d.toString('hex'))
    else if (d === null) return 1
    else await ctx.out(d.toString('hex') + '\n')
    return 0
  },
})
