/** `sparsekit digest FILE`: a file's hash, holes hashed as zeros without being read. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT } from '../command'

export default command({
  name: 'digest',
  summary: 'hash a file or a window of it; holes are hashed as zeros without being read',
  positionals: [{ name: 'FILE' }],
  options: [
    {
      flag: 'algorithm',
      short: 'a',
      type: 'choice',
      value: 'ALG',
      choices: sk.ALGORITHMS,
      default: 'sha256',
      description: 'the hash',
    },
    { flag: 'start', type: 'bytes', value: 'N', description: 'hash from byte N' },
    {
      flag: 'length',
      type: 'bytes',
      value: 'N',
      description: 'hash N bytes (default: to the end of FILE)',
    },
    JSON_OUTPUT,
  ],
  async run(ctx, v, [path]) {
    const hex = await sk.digest(path, {
      algorithm: v.algorithm,
      start: v.start,
      length: v.length,
      signal: ctx.signal,
      onProgress: ctx.progress(),
    })
    if (v.json) await ctx.json({ path, algorithm: v.algorithm, digest: hex })
    else await ctx.out(`${hex}  ${path}\n`)
    return 0
  },
})
