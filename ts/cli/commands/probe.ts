/** `sparsekit probe DEV`: a drive's real capacity (counterfeit cards). @internal */
import * as drives from '../../drives'
import { handler } from '../command'
import type * as specs from '../specs'
import { human } from '../output'

export default handler<typeof specs.probe>(async (ctx, v, [dev]) => {
  const r = await drives.probe(dev, { unmount: v.unmount, force: v.force, signal: ctx.signal })
  if (v.json) await ctx.json(r)
  else if (r.counterfeit)
    await ctx.out(
      `${dev}: COUNTERFEIT: claims ${human(r.size)}, holds data only up to ${human(r.realSize)}\n`,
    )
  else await ctx.out(`${dev}: holds its ${human(r.size)} (${r.points} offsets probed)\n`)
  return r.counterfeit ? 1 : 0
})
