/** `sparsekit probe DEV`: a drive's real capacity (counterfeit cards). @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT } from '../command'
import { human } from '../output'

export default command({
  name: 'probe',
  summary: 'check that a drive holds what it claims (counterfeit cards); bytes kept',
  positionals: [{ name: 'DEV' }],
  options: [
    {
      flag: 'unmount',
      type: 'boolean',
      api: 'unmount',
      description: "unmount the drive's mounted file systems first",
    },
    {
      flag: 'force',
      type: 'boolean',
      api: 'force',
      description: 'probe a system drive or a busy one: dangerous',
    },
    JSON_OUTPUT,
  ],
  notes: ['Exit 1 when the drive holds less than it claims.'],
  async run(ctx, v, [dev]) {
    const r = await sk.drives.probe(dev, { unmount: v.unmount, force: v.force, signal: ctx.signal })
    if (v.json) await ctx.json(r)
    else if (r.counterfeit)
      await ctx.out(
        `${dev}: COUNTERFEIT: claims ${human(r.size)}, holds data only up to ${human(r.realSize)}\n`,
      )
    else await ctx.out(`${dev}: holds its ${human(r.size)} (${r.points} offsets probed)\n`)
    return r.counterfeit ? 1 : 0
  },
})
