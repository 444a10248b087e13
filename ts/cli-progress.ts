// The CLI's progress line, apart from the terminal so that tests can read it.
import type { Progress } from './run'

/** Phases that move bytes, for which a rate and an ETA mean something. */
const MOVING = new Set(['write', 'copy', 'decompress', 'verify', 'hash', 'receive', 'send', 'read'])

const mib = (n: number) => (n / 1048576).toFixed(1)

function clock(secs: number): string {
  const s = Math.round(secs)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const pad = (n: number) => String(n).padStart(2, '0')
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`
}

/**
 * One progress line: `write [#####.....]  42% 430.0/1024.0 MiB, 85.3 MiB/s, ETA 0:07`.
 * A rate only for phases that move bytes and once a quarter second has passed (a map of
 * 4 GiB in 1 ms is no 4 TiB/s); an ETA where the total is known; `map` says what it
 * covered and `sync` what it flushes.
 */
export function progressLine(p: Progress, elapsedSecs: number): string {
  const moving = MOVING.has(p.phase) && elapsedSecs >= 0.25
  const rate = moving ? p.bytesDone / elapsedSecs : undefined
  const parts: string[] = []
  if (p.bytesTotal === undefined) {
    parts.push(`${p.phase} ${mib(p.bytesDone)} MiB`)
  } else {
    const pct = p.bytesTotal > 0 ? Math.floor((p.bytesDone / p.bytesTotal) * 100) : 100
    const width = 30
    const fill = Math.round((pct / 100) * width)
    const what = p.phase === 'map' ? ' mapped' : p.phase === 'sync' ? ' flushed' : ''
    parts.push(
      `${p.phase} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${String(pct).padStart(3)}% ` +
        `${mib(p.bytesDone)}/${mib(p.bytesTotal)} MiB${what}`,
    )
  }
  if (rate !== undefined) parts.push(`${mib(rate)} MiB/s`)
  if (rate && p.bytesTotal !== undefined && p.bytesDone < p.bytesTotal) {
    parts.push(`ETA ${clock((p.bytesTotal - p.bytesDone) / rate)}`)
  }
  return parts.join(', ')
}
