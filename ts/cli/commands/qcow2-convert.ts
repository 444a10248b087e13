/** `sparsekit qcow2 convert SRC DST`: a qcow2 image (a path or an http(s) URL) to a raw one. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT } from '../command'
import { human } from '../output'
import { BACKING_POLICY, HTTP_OPTIONS, httpOptions } from './common'

export default command({
  name: 'qcow2 convert',
  summary: 'write a qcow2 image out as a raw image or onto a drive; holes stay holes',
  positionals: [{ name: 'SRC' }, { name: 'DST' }],
  options: [
    BACKING_POLICY,
    {
      flag: 'zero-holes',
      type: 'boolean',
      description: 'write zeros where the guest reads zeros instead of leaving holes',
    },
    ...HTTP_OPTIONS,
    JSON_OUTPUT,
  ],
  notes: ['SRC may be an http(s) URL, read with range requests.'],
  async run(ctx, v, [src, dst]) {
    const http = httpOptions(v, src)
    const onProgress = ctx.progress()
    ctx.leaves(`${dst} may be partly written`)
    const r = await sk.qcow2.convert(src, dst, {
      ...http,
      backing: v.backing,
      zeroHoles: v['zero-holes'],
      signal: ctx.signal,
      onProgress,
    })
    ctx.leaves(undefined)
    if (v.json) await ctx.json(r)
    else await ctx.out(`wrote ${human(r.bytesWritten)} of data; ${dst} is ${human(r.size)}\n`)
    return 0
  },
})
