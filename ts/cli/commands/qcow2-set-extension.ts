/** `sparsekit qcow2 set-extension FILE TYPE (HEX | --remove)`: a header extension. @internal */
import * as qcow2 from '../../qcow2'
import { handler, UsageError } from '../command'
import type * as specs from '../specs'
import { extensionType } from './common'

export default handler<typeof specs.qcow2SetExtension>(async (ctx, v, [path, rawType, hex]) => {
  const type = extensionType(rawType)
  if (v.remove === (hex !== undefined)) throw new UsageError('give the data as hex, or --remove')
  if (hex !== undefined && !/^([0-9a-fA-F]{2})*$/.test(hex))
    throw new UsageError(`data must be hex bytes, got '${hex}'`)
  await qcow2.setExtension(path, type, v.remove ? null : Buffer.from(hex as string, 'hex'), {
    force: v.force,
    signal: ctx.signal,
  })
  return 0
})
