/** `sparsekit qcow2 repair FILE`: `qemu-img check -r leaks`. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT } from '../command'
import { QCOW2_EDIT_NOTE, QCOW2_FORCE } from './common'

export default command({
  name: 'qcow2 repair',
  summary: 'fix the leaked clusters of a qcow2 image (qemu-img check -r leaks)',
  positionals: [{ name: 'FILE' }],
  options: [QCOW2_FORCE, JSON_OUTPUT],
  notes: ['Only leaks are fixed: an image with corruptions is refused.', QCOW2_EDIT_NOTE],
  async run(ctx, v, [path]) {
    const r = await sk.qcow2.repair(path, {
      force: v.force,
      signal: ctx.signal,
      onProgress: ctx.progress(),
    })
    if (v.json) await ctx.json(r)
    else await ctx.out(`${r.leaksFixed} leaked clusters were fixed.\n`)
    return 0
  },
})
