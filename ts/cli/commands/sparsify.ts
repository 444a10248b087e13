/** `sparsekit sparsify IMAGE`: punch the provably free ranges of an image. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT } from '../command'
import { human } from '../output'

export default command({
  name: 'sparsify',
  summary: "punch the free blocks of an image's file systems out of the file",
  positionals: [{ name: 'IMAGE' }],
  options: [
    {
      flag: 'discard',
      type: 'boolean',
      description: 'allow a block device: discard its free ranges',
      api: 'discard',
    },
    JSON_OUTPUT,
  ],
  async run(ctx, v, [path]) {
    const r = await sk.sparsify(path, {
      discard: v.discard,
      signal: ctx.signal,
      onProgress: ctx.progress(),
    })
    if (v.json) {
      await ctx.json(r)
      return 0
    }
    const alloc =
      r.allocatedBefore !== undefined && r.allocatedAfter !== undefined
        ? `; allocated ${human(r.allocatedBefore)} -> ${human(r.allocatedAfter)}`
        : ''
    await ctx.out(
      `${path}: freed ${human(r.freedBytes)}, used ${human(r.usedBytes)} of ${human(r.size)}${alloc}\n`,
    )
    return 0
  },
})
