/** `sparsekit qcow2 get-extension FILE TYPE`: a header extension's data as hex. @internal */
import * as qcow2 from '../../qcow2'
import { handler } from '../command'
import type * as specs from '../specs'
import { extensionType } from './common'

export default handler<typeof specs.qcow2GetExtension>(async (ctx, v, [path, rawType]) => {
  const d = await qcow2.getExtension(path, extensionType(rawType), { signal: ctx.signal })
  if (v.json) await ctx.json(d === null ? null : d.toString('hex'))
  else if (d === null) return 1
  else await ctx.out(d.toString('hex') + '\n')
  return 0
})
