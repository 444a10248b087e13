/**
 * Helpers several commands share: reading `--ca`/`--retries`, qcow2 extension types, the
 * first-boot files (their options are declared in ts/cli/specs.ts). @internal
 */
import { readFileSync } from 'node:fs'
import { EXTENSION_HIDDEN } from '../../choices'
import { UsageError } from '../command'
import type { Values } from '../command'

/** Reads `--ca` and checks that `--ca` / `--retries` have an http(s) `source` to apply to. */
export function httpOptions(values: Values, source: string): { ca?: Buffer; retries?: number } {
  const o: { ca?: Buffer; retries?: number } = {}
  if (values.ca === undefined && values.retries === undefined) return o
  if (!/^https?:\/\//i.test(source))
    throw new UsageError(`--ca and --retries apply to http(s) URLs, not '${source}'`)
  if (values.retries !== undefined) o.retries = values.retries as number
  if (values.ca !== undefined) {
    try {
      o.ca = readFileSync(values.ca as string)
    } catch (e) {
      throw new UsageError(`--ca: cannot read '${values.ca}': ${(e as Error).message}`)
    }
  }
  return o
}

/** TYPE of `qcow2 set-extension` / `get-extension`: a number such as 0x76617465, or `hidden`. */
export function extensionType(raw: string): number {
  const type = raw === 'hidden' ? EXTENSION_HIDDEN : Number(raw)
  if (!Number.isInteger(type) || type < 1 || type > 0xffffffff) {
    throw new UsageError(`TYPE must be a number such as 0x76617465 or 'hidden', got '${raw}'`)
  }
  return type
}

/** `--file`, `--append`, `--delete` as {@link customize}'s files and append; undefined when none. */
export function customization(
  v: Values,
):
  | { files: Record<string, Buffer | null>; append: Record<string, string>; partition?: number }
  | undefined {
  const pairs = (flag: string) =>
    ((v[flag] as string[] | undefined) ?? []).map((p) => {
      const i = p.indexOf('=')
      if (i <= 0)
        throw new UsageError(
          `--${flag} needs PATH=${flag === 'file' ? 'LOCALFILE' : 'TEXT'}, got '${p}'`,
        )
      return [p.slice(0, i), p.slice(i + 1)] as const
    })
  const files: Record<string, Buffer | null> = {}
  for (const [path, local] of pairs('file')) files[path] = readFileSync(local)
  for (const path of (v.delete as string[] | undefined) ?? []) files[path] = null
  const append = Object.fromEntries(pairs('append'))
  if (Object.keys(files).length === 0 && Object.keys(append).length === 0) return undefined
  return {
    files,
    append,
    ...(v.partition !== undefined ? { partition: v.partition as number } : {}),
  }
}
