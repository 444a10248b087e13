// The progress contract (ts/run.ts LongOptions.onProgress): per phase, bytesDone never
// decreases and exactly one call is at 100% (bytesDone === bytesTotal), the phase's last.

/** An onProgress that records every call; `calls` in order. */
export function collect(extra) {
  const calls = []
  return {
    calls,
    onProgress: (p) => {
      calls.push({ phase: p.phase, bytesDone: p.bytesDone, bytesTotal: p.bytesTotal })
      extra?.(p)
    },
  }
}

/** Calls grouped by phase, in first-seen order. */
export function byPhase(calls) {
  const m = new Map()
  for (const c of calls) {
    if (!m.has(c.phase)) m.set(c.phase, [])
    m.get(c.phase).push(c)
  }
  return m
}

/** Assert the contract on `calls`; `label` names the operation in messages. */
export function assertContract(t, calls, label) {
  t.true(calls.length > 0, `${label}: no progress at all`)
  for (const [phase, of] of byPhase(calls)) {
    const where = `${label} phase ${phase}: ${JSON.stringify(of.slice(-6))}`
    for (let i = 1; i < of.length; i++) t.true(of[i].bytesDone >= of[i - 1].bytesDone, `decreases: ${where}`)
    const full = of.filter((c) => c.bytesTotal !== undefined && c.bytesDone === c.bytesTotal)
    t.is(full.length, 1, `exactly once at 100%: ${where}`)
    t.is(of.at(-1), full[0], `100% is the last call: ${where}`)
    for (const c of of) t.true(c.bytesTotal === undefined || c.bytesDone <= c.bytesTotal, `past its total: ${where}`)
  }
}
