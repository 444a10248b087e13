/** `sparsekit digest FILE`: a file's hash, holes hashed as zeros without being read. @internal */
import { digest } from '../../digest'
import { handler } from '../command'
import type * as specs from '../specs'

export default handler<typeof specs.digest>(async (ctx, v, [path]) => {
  const hex = await digest(path, {
    algorithm: v.algorithm,
    start: v.start,
    length: v.length,
    signal: ctx.signal,
    onProgress: ctx.progress(),
  })
  if (v.json) await ctx.json({ path, algorithm: v.algorithm, digest: hex })
  else await ctx.out(`${hex}  ${path}\n`)
  return 0
})
