/** `sparsekit qcow2 set-extension FILE TYPE (HEX | --remove)`: a header extension. @internal */
import * as sk from '../../index'
import { command, JSON_IGNORED, UsageError } from '../command'
import { extensionType, QCOW2_EDIT_NOTE, QCOW2_FORCE } from './common'

export default command({
  name: 'qcow2 set-extension',
  summary: 'add, replace or remove a header extension of a qcow2 image',
  usage: ['FILE TYPE HEX', 'FILE TYPE --remove'],
  positionals: [{ name: 'FILE' }, { name: 'TYPE' }, { name: 'HEX', optional: true }],
  options: [
    { flag: 'remove', type: 'boolean', description: 'remove extension TYPE instead of setting it' },
    QCOW2_FORCE,
    JSON_IGNORED,
  ],
  notes: [
    "TYPE is a number such as 0x76617465, or 'hidden' (XCP-ng's hidden flag); HEX the data as hex bytes.",
    QCOW2_EDIT_NOTE,
  ],
  async run(ctx, v, [path, rawType, hex]) {
    const type = extensionType(rawType)
    if (v.remove === (hex !== undefined)) throw new UsageError('give the data as hex, or --remove')
    if (hex !== undefined && !/^([0-9a-fA-F]{2})*$/.test(hex))
      throw new UsageError(`data must be hex bytes, got '${hex}'`)
    await sk.qcow2.setExtension(path, type, v.remove ? null : Buffer.from(hex as string, 'hex'), {
      force: v.force,
      signal: ctx.signal,
    })
    return 0
  },
})
