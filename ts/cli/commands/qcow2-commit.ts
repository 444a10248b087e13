/** `sparsekit qcow2 commit FILE`: `qemu-img commit`, an overlay into its backing image. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT } from '../command'
import { human } from '../output'
import { QCOW2_EDIT_NOTE, QCOW2_FORCE } from './common'

export default command({
  name: 'qcow2 commit',
  summary: "write an overlay's data into its backing image, empty it (qemu-img commit)",
  positionals: [{ name: 'FILE' }],
  options: [QCOW2_FORCE, JSON_OUTPUT],
  notes: [
    'An interrupted commit leaves both images valid: the overlay reads as before until it is emptied.',
    QCOW2_EDIT_NOTE,
  ],
  async run(ctx, v, [path]) {
    const r = await sk.qcow2.commit(path, {
      force: v.force,
      signal: ctx.signal,
      onProgress: ctx.progress(),
    })
    if (v.json) await ctx.json(r)
    else await ctx.out(`Image committed (${human(r.bytes)}).\n`)
    return 0
  },
})
