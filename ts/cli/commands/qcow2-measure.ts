/** `sparsekit qcow2 measure SRC`: `qemu-img measure -O qcow2`. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT } from '../command'
import { HTTP_OPTIONS, httpOptions } from './common'

export default command({
  name: 'qcow2 measure',
  summary: 'bytes a qcow2 image of SRC needs (qemu-img measure -O qcow2)',
  positionals: [{ name: 'SRC' }],
  options: [
    {
      flag: 'cluster-size',
      type: 'bytes',
      value: 'N',
      default: '64K',
      description: '512 to 2M, a power of two',
    },
    {
      flag: 'compat',
      type: 'choice',
      value: 'VERSION',
      choices: ['0.10', '1.1'],
      default: '1.1',
      description: 'the qcow2 version',
    },
    { flag: 'extended-l2', type: 'boolean', description: 'extended L2 entries' },
    { flag: 'backing', type: 'boolean', description: 'the image will have a backing file' },
    {
      flag: 'format',
      short: 'f',
      type: 'choice',
      value: 'FMT',
      choices: sk.qcow2.SOURCE_FORMATS,
      description: "SRC's format (default: recognised)",
    },
    ...HTTP_OPTIONS,
    { ...JSON_OUTPUT, description: "print qemu-img measure's JSON (--output=json)" },
  ],
  async run(ctx, v, [src]) {
    const m = await sk.qcow2.measure(src, {
      ...httpOptions(v, src),
      clusterSize: v['cluster-size'],
      compat: v.compat,
      extendedL2: v['extended-l2'],
      backing: v.backing,
      format: v.format,
      signal: ctx.signal,
      onProgress: ctx.progress(),
    })
    if (v.json) await ctx.out(sk.qcow2.toQemuJson(m) + '\n')
    else {
      await ctx.out(`required size: ${m.required}\nfully allocated size: ${m['fully-allocated']}\n`)
      if (m.bitmaps !== undefined) await ctx.out(`bitmaps size: ${m.bitmaps}\n`)
    }
    return 0
  },
})
