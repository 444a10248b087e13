/** `sparsekit qcow2 export SRC`: the uncompressed qcow2 image of SRC on stdout. @internal */
import { pipeline } from 'node:stream/promises'
import * as sk from '../../index'
import { command, UsageError } from '../command'
import { httpOptions } from './common'
import { backingOf, WRITE_OPTIONS } from './qcow2-import'

export default command({
  name: 'qcow2 export',
  summary: 'the uncompressed qcow2 image of SRC to stdout, its length known up front',
  positionals: [{ name: 'SRC' }],
  options: [
    ...WRITE_OPTIONS,
    {
      flag: 'length',
      type: 'boolean',
      description: 'print the length in bytes the image will have, and nothing else',
    },
  ],
  notes: [
    'The bytes equal those of `sparsekit qcow2 import SRC DST` with the same options. SRC is mapped and scanned first, then read again as the image is written.',
  ],
  async run(ctx, v, [src]) {
    if (!v.length && process.stdout.isTTY)
      throw new UsageError('refusing to write a binary image to a terminal: redirect stdout')
    const s = await sk.qcow2.exportStream(src, {
      ...httpOptions(v, src),
      clusterSize: v['cluster-size'],
      compat: v.compat,
      extendedL2: v['extended-l2'],
      backing: backingOf(v),
      format: v.format,
      trim: v.trim,
      signal: ctx.signal,
      onProgress: ctx.progress(),
    })
    if (v.length) {
      s.destroy()
      await ctx.out(`${s.length}\n`)
      return 0
    }
    await pipeline(s, process.stdout, { signal: ctx.signal, end: false })
    return 0
  },
})
