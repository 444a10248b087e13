/** `sparsekit map FILE`: a file's extents, streamed, then what is data and what is hole. @internal */
import { mapExtents } from '../../extents'
import type { MapHeader, MapOptions } from '../../extents'
import { handler } from '../command'
import type * as specs from '../specs'
import type { Context } from '../command'
import { human } from '../output'

export default handler<typeof specs.map>(async (ctx, v, [path]) => {
  await printMap(
    ctx,
    path,
    { start: v.start, length: v.length, method: v.method, signal: ctx.signal },
    v.json,
  )
  return 0
})

/** The `map` output, streamed: one line per extent, then what is data and what is hole. */
async function printMap(
  ctx: Context,
  path: string,
  opts: MapOptions,
  json: boolean,
): Promise<void> {
  let header: MapHeader | undefined
  let count = 0
  let data = 0
  let prealloc = 0
  let w = 0
  const start = opts.start ?? 0
  // The output in chunks of about 64 KiB: one string appended to (no array of a line per
  // extent to join), written when full.
  let chunk = ''
  const flush = async () => {
    if (chunk) await ctx.out(chunk)
    chunk = ''
  }
  const head = (h: MapHeader) =>
    json
      ? `{"size":${h.size},"blockSize":${h.blockSize},"method":${JSON.stringify(h.method)},"extents":[`
      : `${path}: ${human(Number(h.size))}, block size ${h.blockSize}, method ${h.method}\n`
  for await (const e of mapExtents(path, { ...opts, onHeader: (h) => (header = h) })) {
    if (count === 0) {
      const h = header as MapHeader
      chunk += head(h)
      if (!json) {
        w = String(Number(h.size)).length
        chunk += `${'offset'.padStart(w)}  ${'end'.padStart(w)}  ${'length'.padStart(w)}  flags\n`
      }
    }
    // JSON.stringify(e), written out: an extent is offset and length, then the flags set.
    if (json)
      chunk += `${count ? ',' : ''}{"offset":${e.offset},"length":${e.length}${e.unwritten ? ',"unwritten":true' : ''}${e.shared ? ',"shared":true' : ''}}`
    else {
      const flags = e.unwritten
        ? e.shared
          ? 'unwritten,shared'
          : 'unwritten'
        : e.shared
          ? 'shared'
          : ''
      chunk += `${String(e.offset).padStart(w)}  ${String(e.offset + e.length).padStart(w)}  ${String(e.length).padStart(w)}  ${flags}\n`
    }
    count++
    if (e.unwritten) prealloc += e.length
    else data += e.length
    if (chunk.length >= 1 << 16) await flush()
  }
  const h = header as MapHeader // mapExtents gives the header even when there are no extents
  if (count === 0) chunk += head(h)
  const size = Number(h.size)
  const end = Math.min(size, opts.length === undefined ? size : start + opts.length)
  const window = Math.max(0, end - start)
  if (json) chunk += ']}\n'
  else {
    const pct = window ? ((data / window) * 100).toFixed(1) : '0.0'
    chunk +=
      `${count} extent${count === 1 ? '' : 's'}; data ${human(data)} (${pct}%), ` +
      `holes ${human(window - data - prealloc)}` +
      (prealloc ? `, preallocated ${human(prealloc)}` : '') +
      '\n'
  }
  await flush()
}
