/** How http(s) sources are fetched: the options every URL-reading export shares. */
import { checkBytes, invalidArgType, invalidArgValue } from './validate'

/** How http(s) sources are fetched (flash, and `bmap.copy` / `qcow2.convert` of a URL). */
export interface HttpSourceOptions {
  /** Extra trusted CA certificates (PEM) for https sources, added to the system's store. */
  ca?: string | Buffer
  /** Retries in a row without data after a dropped connection or failed request; default 5. */
  retries?: number
  /** Milliseconds before the first retry, doubled for each further one (at most 5 s); default 500. */
  retryDelay?: number
  /** Connect and per-read time-out in ms; default 30000. */
  timeout?: number
}

/** The native options of an http(s) source, checked. */
export function httpArgs(o: HttpSourceOptions) {
  let ca: Buffer | undefined
  if (o.ca !== undefined) {
    if (typeof o.ca === 'string') ca = Buffer.from(o.ca)
    else if (Buffer.isBuffer(o.ca)) ca = o.ca
    else throw invalidArgType('options.ca', 'of type string or an instance of Buffer', o.ca)
  }
  const int = (name: string, v: unknown, max: number) => {
    const n = checkBytes(name, v)
    if (n !== undefined && n > max) throw invalidArgValue(name, n, `must be at most ${max}`)
    return n
  }
  return {
    ca,
    retries: int('options.retries', o.retries, 1000),
    retryDelay: int('options.retryDelay', o.retryDelay, 600000),
    timeout: int('options.timeout', o.timeout, 3600000),
  }
}

/** The http(s) URL that `x` is (a string starting with `http://` or `https://`, or such a `URL`), else `undefined`. */
export function httpUrl(x: unknown): string | undefined {
  if (x instanceof URL)
    return x.protocol === 'http:' || x.protocol === 'https:' ? x.href : undefined
  if (typeof x === 'string' && /^https?:\/\//i.test(x)) return x
  return undefined
}
