/** `sparsekit qcow2 compare A B`: `qemu-img compare`, its messages and exit codes. @internal */
import * as sk from '../../index'
import { command } from '../command'

export default command({
  name: 'qcow2 compare',
  summary: 'whether two disks (raw, drive, URL, qcow2) read the same (qemu-img compare)',
  positionals: [{ name: 'A' }, { name: 'B' }],
  options: [
    {
      flag: 'strict',
      short: 's',
      type: 'boolean',
      description: 'images of different sizes, or allocated differently, differ',
    },
    {
      flag: 'format-a',
      type: 'choice',
      value: 'FMT',
      choices: sk.qcow2.SOURCE_FORMATS,
      description: "A's format (default: recognised)",
    },
    {
      flag: 'format-b',
      type: 'choice',
      value: 'FMT',
      choices: sk.qcow2.SOURCE_FORMATS,
      description: "B's format (default: recognised)",
    },
  ],
  notes: [
    'Exit status as qemu-img compare: 0 identical, 1 different (the first differing offset printed), 2 error.',
  ],
  async run(ctx, v, [a, b]) {
    let r: sk.qcow2.Qcow2CompareResult
    try {
      r = await sk.qcow2.compare(a, b, {
        strict: v.strict,
        formatA: v['format-a'],
        formatB: v['format-b'],
        signal: ctx.signal,
        onProgress: ctx.progress(),
      })
    } catch (e) {
      // qemu-img compare's status for an error: 2 (1 means "different").
      ctx.error(e as Error)
      return 2
    }
    await ctx.out(r.message + '\n')
    return r.identical ? 0 : 1
  },
})
