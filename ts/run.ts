/**
 * Running a native job: AbortSignal -> CancelToken, throttled monotonic progress with a final
 * 100% call, and one error shape. @internal
 */
import native = require('./native')
import { abortError, checkFunction, invalidArgType } from './errors'

/** Progress of a long operation. */
export interface Progress {
  /** What is being done now, e.g. `'hash'`, `'copy'`. */
  phase: string
  /** Bytes processed so far. */
  bytesDone: number
  /** Bytes to process in this phase. */
  bytesTotal: number
}

/** Options every long operation accepts. */
export interface LongOptions {
  /** Cancels the operation; the Promise rejects with `code: 'ERR_SPARSEKIT_ABORTED'`. */
  signal?: AbortSignal
  /**
   * Called with progress, at most every 50 ms, with non-decreasing `bytesDone`, and once more
   * at 100% just before the Promise resolves.
   */
  onProgress?: (p: Progress) => void
}

type NativeProgress = (bytesDone: number, bytesTotal: number) => void
type Start<T> = (cancel: native.CancelToken, onProgress: NativeProgress | undefined) => Promise<T>

function checkSignal(value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined
  if (value === null || typeof value !== 'object' || typeof (value as AbortSignal).aborted !== 'boolean' ||
      typeof (value as AbortSignal).addEventListener !== 'function') {
    throw invalidArgType('options.signal', 'an instance of AbortSignal', value)
  }
  return value as AbortSignal
}

/**
 * Start a native job. Validation errors throw synchronously-as-rejection (the caller is
 * async); `finalTotal` picks the total for the closing 100% call from the result.
 */
export async function run<T>(
  phase: string,
  opts: LongOptions,
  start: Start<T>,
  finalTotal?: (result: T) => number,
): Promise<T> {
  const signal = checkSignal(opts.signal)
  const onProgress = checkFunction('options.onProgress', opts.onProgress) as LongOptions['onProgress']
  if (signal?.aborted) throw abortError(signal)
  const cancel = new native.CancelToken()
  const onAbort = () => cancel.cancel()
  signal?.addEventListener('abort', onAbort, { once: true })
  let settled = false
  let lastDone = -1
  let lastTotal = 0
  const report = (bytesDone: number, bytesTotal: number) => {
    if (settled || !onProgress || bytesDone < lastDone) return
    lastDone = bytesDone
    lastTotal = bytesTotal
    onProgress({ phase, bytesDone, bytesTotal })
  }
  try {
    const result = await start(cancel, onProgress ? report : undefined)
    if (onProgress) {
      const total = finalTotal ? finalTotal(result) : lastTotal
      report(Math.max(total, lastDone, 0), Math.max(total, lastDone, 0))
    }
    return result
  } catch (err) {
    const e = err as { code?: string }
    if (e && e.code === 'ERR_SPARSEKIT_ABORTED') throw abortError(signal)
    if (err instanceof Error && Error.captureStackTrace) {
      // Native errors carry no JS stack; point at the caller's await instead.
      Error.captureStackTrace(err, run)
    }
    throw err
  } finally {
    settled = true
    signal?.removeEventListener('abort', onAbort)
  }
}
