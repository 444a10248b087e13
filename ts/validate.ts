/** Argument validation and the errors sparsekit makes in JS, with Node's own conventions. @internal */

type Coded<E extends Error> = E & { code: string }

/**
 * What every error sparsekit rejects or reports with looks like: an `Error` (a `TypeError`
 * for `ERR_INVALID_ARG_TYPE`/`_VALUE`, a `RangeError` for `ERR_OUT_OF_RANGE`) with `code`
 * (`ENOENT`, ... for OS errors, `ERR_SPARSEKIT_*` for sparsekit's own) and, when known,
 * the OS error number (negative, as Node's fs), the failed call, the file, the byte offset
 * and the byte range at fault. Per-destination errors of `flash` have the same shape.
 */
export interface SparsekitError extends Error {
  code: string
  errno?: number
  syscall?: string
  path?: string
  offset?: number
  range?: { start: number; length: number }
}

function withCode<E extends Error>(err: E, code: string): Coded<E> {
  return Object.assign(err, { code })
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (value === undefined) return 'undefined'
  if (typeof value === 'function') return `function ${value.name || '<anonymous>'}`
  if (typeof value === 'object') {
    const ctor = (value as object).constructor
    return ctor && ctor.name ? `an instance of ${ctor.name}` : 'an object'
  }
  let shown = String(value)
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`
  if (typeof value === 'string') shown = `'${shown}'`
  return `type ${typeof value} (${shown})`
}

/** `TypeError` with `code: 'ERR_INVALID_ARG_TYPE'`, worded as Node words it. */
export function invalidArgType(name: string, expected: string, actual: unknown): Coded<TypeError> {
  return withCode(
    new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(actual)}`),
    'ERR_INVALID_ARG_TYPE',
  )
}

/** `TypeError` with `code: 'ERR_INVALID_ARG_VALUE'`. */
export function invalidArgValue(name: string, value: unknown, reason: string): Coded<TypeError> {
  return withCode(
    new TypeError(`The argument '${name}' ${reason}. Received ${describe(value)}`),
    'ERR_INVALID_ARG_VALUE',
  )
}

export function checkString(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string', value)
  if (value.length === 0) throw invalidArgValue(name, value, 'must be a non-empty string')
  if (value.includes('\0'))
    throw invalidArgValue(name, value, 'must be a string without null bytes')
}

/** A path as `node:fs` takes it: string, Buffer (any bytes, for names that are not UTF-8) or `file:` URL. */
export type PathLike = string | Buffer | URL

/** Check a path; a `file:` URL becomes its path (bytes, so percent-encoded non-UTF-8 names survive). */
export function checkPath(name: string, value: unknown): string | Buffer {
  if (value instanceof URL) {
    if (value.protocol !== 'file:') throw invalidArgValue(name, value.href, 'must be a file: URL')
    if (value.hostname !== '' && value.hostname !== 'localhost') {
      throw invalidArgValue(name, value.href, 'must be a file: URL without a host')
    }
    const bytes = Buffer.from(
      value.pathname.replace(/%([0-9a-fA-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16))),
      'latin1',
    )
    if (bytes.includes(0))
      throw invalidArgValue(name, value.href, 'must be a path without null bytes')
    return bytes
  }
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
    const b = Buffer.from(value as Uint8Array)
    if (b.length === 0) throw invalidArgValue(name, value, 'must be a non-empty path')
    if (b.includes(0)) throw invalidArgValue(name, value, 'must be a path without null bytes')
    return b
  }
  if (typeof value !== 'string')
    throw invalidArgType(name, 'of type string or an instance of Buffer or URL', value)
  checkString(name, value)
  return value
}

/** A path for messages: Buffers shown as UTF-8 with replacement characters. */
export function showPath(p: string | Buffer): string {
  return typeof p === 'string' ? p : p.toString('utf8')
}

/** The option keys every long operation takes ({@link LongOptions}). */
export const LONG_KEYS = ['signal', 'onProgress'] as const
/** The removable-media option keys of flash, `bmap.copy` and verify ({@link MediaOptions}). */
export const MEDIA_KEYS = [
  'seek',
  'sha256',
  'onlyChanged',
  'zeroUnmapped',
  'discard',
  'trim',
  'writeRetries',
  'writeRetryDelay',
] as const

/** An expected SHA-256: 64 hex digits, returned in lowercase. */
export function checkSha256(name: string, value: unknown): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string', value)
  if (!/^[0-9a-fA-F]{64}$/.test(value))
    throw invalidArgValue(name, value, 'must be a SHA-256 in hex (64 hexadecimal digits)')
  return value.toLowerCase()
}

/** The option keys of an http(s) source. */
export const HTTP_KEYS = ['ca', 'retries', 'retryDelay', 'timeout'] as const

/**
 * Check an options object. With `known`, a key outside it (a misspelling such as
 * `readback`, which would silently mean "no read-back") is refused with
 * `ERR_INVALID_ARG_VALUE` naming the valid keys; keys whose value is `undefined` pass.
 */
export function checkOptions(
  name: string,
  value: unknown,
  known: readonly string[],
): Record<string, unknown> {
  if (value === undefined || value === null) return {}
  if (typeof value !== 'object' || Array.isArray(value))
    throw invalidArgType(name, 'of type object', value)
  {
    for (const key of Object.keys(value)) {
      if (!known.includes(key) && (value as Record<string, unknown>)[key] !== undefined) {
        const err = new TypeError(
          `The option '${name}.${key}' is unknown. Valid options: ${[...known].sort().join(', ')}`,
        )
        throw withCode(err, 'ERR_INVALID_ARG_VALUE')
      }
    }
  }
  return value as Record<string, unknown>
}

/** A byte offset or size: an integer in [0, Number.MAX_SAFE_INTEGER]; RangeError otherwise. */
export function checkBytes(name: string, value: unknown): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value)
  if (!Number.isInteger(value) || value < 0 || value > Number.MAX_SAFE_INTEGER) {
    throw withCode(
      new RangeError(
        `The value of "${name}" is out of range. It must be an integer >= 0 and <= ${Number.MAX_SAFE_INTEGER}. Received ${value}`,
      ),
      'ERR_OUT_OF_RANGE',
    )
  }
  return value
}

export function checkOneOf<T extends string>(
  name: string,
  value: unknown,
  allowed: readonly T[],
): T | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string', value)
  if (!allowed.includes(value as T)) {
    throw invalidArgValue(name, value, `must be one of ${allowed.map((a) => `'${a}'`).join(', ')}`)
  }
  return value as T
}

export function checkFunction(
  name: string,
  value: unknown,
): ((...args: never[]) => unknown) | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'function') throw invalidArgType(name, 'of type function', value)
  return value as (...args: never[]) => unknown
}

/**
 * The `bmap` option of flash, verify and bmap copy: a path (string, Buffer or URL) to use,
 * `false` for none, or absent for the default (`IMAGE.bmap` beside the image).
 */
export function checkBmapChoice(
  name: string,
  value: unknown,
): { bmap: string | Buffer | undefined; noBmap: boolean } {
  if (value === false) return { bmap: undefined, noBmap: true }
  if (value === undefined) return { bmap: undefined, noBmap: false }
  if (value === true || value === null) {
    throw invalidArgType(name, 'of type string or an instance of Buffer or URL, or false', value)
  }
  return { bmap: checkPath(name, value), noBmap: false }
}

export function checkBoolean(name: string, value: unknown): boolean | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'boolean') throw invalidArgType(name, 'of type boolean', value)
  return value
}

/**
 * An `AbortSignal`, checked whole up front (as Node's own APIs do) so a look-alike cannot
 * fail half-way through an operation: a real `AbortSignal`, or an object with a boolean
 * `aborted` and `addEventListener`/`removeEventListener` functions (another realm's signal).
 */
export function checkSignal(name: string, value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined
  if (value instanceof AbortSignal) return value
  const v = value as Partial<AbortSignal> | null
  if (
    v === null ||
    typeof v !== 'object' ||
    typeof v.aborted !== 'boolean' ||
    typeof v.addEventListener !== 'function' ||
    typeof v.removeEventListener !== 'function'
  ) {
    throw invalidArgType(name, 'an instance of AbortSignal', value)
  }
  return value as AbortSignal
}

/** The error an operation rejects with when its `onProgress` (or another callback) threw. */
export function callbackError(cause: unknown): Coded<Error> {
  const err = withCode(
    new Error(
      `The onProgress callback threw: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    ),
    'ERR_SPARSEKIT_CALLBACK',
  )
  return err
}

/** The error an aborted operation rejects with. */
export function abortError(signal?: AbortSignal): Coded<Error> {
  const err = withCode(new Error('The operation was aborted'), 'ERR_SPARSEKIT_ABORTED')
  err.name = 'AbortError'
  if (signal && signal.reason !== undefined)
    (err as Error & { cause?: unknown }).cause = signal.reason
  return err
}
