/** `sparsekit copy SRC DST`: a copy by extents, with dd's skip / seek / length. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT } from '../command'
import { human } from '../output'

export default command({
  name: 'copy',
  summary: 'copy a file by its extents (holes stay holes), as dd with skip and seek',
  positionals: [{ name: 'SRC' }, { name: 'DST' }],
  options: [
    {
      flag: 'skip',
      type: 'bytes',
      value: 'N',
      description: 'start reading SRC at byte N (dd skip=)',
    },
    {
      flag: 'seek',
      type: 'bytes',
      value: 'N',
      description: 'start writing DST at byte N (dd seek=)',
    },
    {
      flag: 'length',
      type: 'bytes',
      value: 'N',
      description: 'copy N bytes (default: to the end of SRC)',
    },
    {
      flag: 'method',
      type: 'choice',
      value: 'METHOD',
      choices: sk.COPY_METHODS,
      default: 'auto',
      description: 'how to copy the data',
    },
    {
      flag: 'notrunc',
      type: 'boolean',
      description: 'do not truncate DST after the copied range (dd conv=notrunc)',
    },
    {
      flag: 'zero-holes',
      type: 'boolean',
      description: 'write zeros where SRC has holes instead of leaving holes',
    },
    { flag: 'fsync', type: 'boolean', description: 'flush DST to the disk before exiting' },
    {
      flag: 'atomic',
      type: 'boolean',
      description: 'write a temporary file and rename it over DST when done',
    },
    JSON_OUTPUT,
  ],
  async run(ctx, v, [src, dst]) {
    const onProgress = ctx.progress()
    ctx.leaves(v.atomic ? `${dst} is unchanged` : `${dst} may be partly written`)
    const r = await sk.copy(src, dst, {
      skip: v.skip,
      seek: v.seek,
      length: v.length,
      method: v.method,
      truncate: !v.notrunc,
      zeroHoles: v['zero-holes'],
      fsync: v.fsync,
      atomic: v.atomic,
      signal: ctx.signal,
      onProgress,
    })
    ctx.leaves(undefined)
    if (v.json) await ctx.json(r)
    else
      await ctx.out(
        `copied ${human(r.bytesCopied)} of data by ${r.method}; ${dst} is ${human(r.size)}\n`,
      )
    return 0
  },
})
