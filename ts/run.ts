/**
 * Running a native job: AbortSignal -> CancelToken, phased progress (throttled natively,
 * the final call of each phase always delivered before the Promise settles), a throwing
 * callback turned into a coded rejection, and one error shape. @internal
 */
import native = require('./native')
import { abortError, callbackError, checkFunction, checkSignal } from './validate'

/** Progress of a long operation. */
export interface Progress {
  /** What is being done now: `'map'`, `'hash'`, `'copy'`, `'write'`, `'verify'`, `'sync'`, ... */
  phase: string
  /** Bytes processed so far in this phase; never decreases within a phase. */
  bytesDone: number
  /** Bytes this phase will process; `undefined` while unknown (a pipe or a procfs file). */
  bytesTotal: number | undefined
}

/** Options every long operation accepts. */
export interface LongOptions {
  /** Cancels the operation; the Promise rejects with `code: 'ERR_SPARSEKIT_ABORTED'`. */
  signal?: AbortSignal
  /**
   * Called with progress: per phase at most every 50 ms, with non-decreasing `bytesDone`,
   * and exactly once at 100% (`bytesDone === bytesTotal`) when the phase ends; every call
   * happens before the Promise settles. If it throws, the operation is cancelled and
   * rejects with `code: 'ERR_SPARSEKIT_CALLBACK'` and the thrown value as `cause`.
   */
  onProgress?: (p: Progress) => void
}

type NativeProgress = (phase: string, bytesDone: number, bytesTotal: number) => void
type Start<T> = (cancel: native.CancelToken, onProgress: NativeProgress | undefined) => Promise<T>

/** Live jobs of this thread, cancelled when it exits (`process.exit()` in a worker). */
const live = new Set<native.CancelToken>()
let exitHook = false

/** Let queued native progress calls arrive: each is one macrotask of the event loop. */
async function drain(done: () => boolean): Promise<void> {
  for (let i = 0; i < 10000 && !done(); i++) await new Promise((r) => setImmediate(r))
}

/** Start a native job. Validation errors reject (the caller is async). */
export async function run<T>(opts: LongOptions, start: Start<T>): Promise<T> {
  const signal = checkSignal('options.signal', opts.signal)
  const onProgress = checkFunction(
    'options.onProgress',
    opts.onProgress,
  ) as LongOptions['onProgress']
  if (signal?.aborted) throw abortError(signal)
  const cancel = new native.CancelToken()
  const onAbort = () => cancel.cancel()
  signal?.addEventListener('abort', onAbort, { once: true })
  if (!exitHook) {
    exitHook = true
    process.once('exit', () => live.forEach((c) => c.cancel()))
  }
  live.add(cancel)
  let settled = false
  let received = 0
  let thrown: { value: unknown } | undefined
  // The contract, kept here for every operation whatever its core reports: per phase,
  // non-decreasing `bytesDone`, and exactly one call at 100% (later ones are dropped).
  const last = new Map<string, { done: number; complete: boolean }>()
  const report = (phase: string, bytesDone: number, bytesTotal: number) => {
    received++
    if (settled || thrown || !onProgress) return
    const prev = last.get(phase)
    if (prev && (prev.complete || bytesDone < prev.done)) return
    last.set(phase, { done: bytesDone, complete: bytesTotal >= 0 && bytesDone >= bytesTotal })
    try {
      onProgress({ phase, bytesDone, bytesTotal: bytesTotal < 0 ? undefined : bytesTotal })
    } catch (value) {
      thrown = { value }
      cancel.cancel()
    }
  }
  try {
    let result: T
    try {
      result = await start(cancel, onProgress ? report : undefined)
    } catch (err) {
      if (thrown) throw callbackError(thrown.value)
      const e = err as { code?: string }
      if (e && e.code === 'ERR_SPARSEKIT_ABORTED') throw abortError(signal)
      if (err instanceof Error && Error.captureStackTrace) {
        // Native errors carry no JS stack; point at the caller's await instead.
        Error.captureStackTrace(err, run)
      }
      throw err
    }
    if (onProgress) await drain(() => received >= cancel.progressCalls)
    if (thrown) throw callbackError(thrown.value)
    return result
  } finally {
    settled = true
    live.delete(cancel)
    signal?.removeEventListener('abort', onAbort)
  }
}
