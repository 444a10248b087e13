/** Options and helpers several commands share: http(s) sources, qcow2 locks and backing. @internal */
import { readFileSync } from 'node:fs'
import * as sk from '../../index'
import { UsageError } from '../command'
import type { Values } from '../command'

/** `--ca PEM` and `--retries N`, for the commands that read http(s) URLs. */
export const HTTP_OPTIONS = [
  {
    flag: 'ca',
    type: 'string',
    value: 'PEM',
    description: 'trust this CA certificate file for an https source',
  },
  {
    flag: 'retries',
    type: 'count',
    value: 'N',
    description:
      'retry an http(s) source this many times after a cut connection (resumed by range requests)',
  },
] as const

/** `--seek`, `--sha256`, `--only-changed`, `--write-retries`...: the removable-media options of flash and bmap copy. */
export const MEDIA_OPTIONS = [
  {
    flag: 'seek',
    type: 'bytes',
    value: 'N',
    description: 'write the image at byte N of each destination (into a partition)',
  },
  {
    flag: 'sha256',
    type: 'string',
    value: 'HEX',
    description:
      "the image's expected SHA-256: on a mismatch the destination's first MiB is never written",
  },
  {
    flag: 'only-changed',
    type: 'boolean',
    description: 'read each block first and write only the blocks that differ',
  },
  {
    flag: 'zero-unmapped',
    type: 'boolean',
    description: "zero the ranges the image's bmap leaves out, so no stale data survives",
  },
  {
    flag: 'discard',
    type: 'boolean',
    description: 'discard those ranges instead (an error where the device cannot discard)',
  },
  {
    flag: 'write-retries',
    type: 'count',
    value: 'N',
    description:
      'retry a write failing with EIO/EBUSY/EAGAIN this many times before the drive fails (default 5)',
  },
  {
    flag: 'write-retry-delay',
    type: 'count',
    value: 'MS',
    description: 'wait this long before the first such retry, doubled each time (default 100)',
  },
] as const

/** `--trim` of flash and bmap copy: without a bmap, only the blocks the file systems use. */
export const TRIM_OPTION = {
  flag: 'trim',
  type: 'boolean',
  api: 'trim',
  description:
    "without a bmap, read and write only the blocks the image's file systems use (faster)",
} as const

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

/** `--force` of the qcow2 edits: write although another process holds the image's lock. */
export const QCOW2_FORCE = {
  flag: 'force',
  type: 'boolean',
  api: 'force',
  description: 'edit the image although another process (a running qemu) holds its lock: dangerous',
} as const

/** `--backing follow|none` of the qcow2 readers. */
export const BACKING_POLICY = {
  flag: 'backing',
  type: 'choice',
  value: 'POLICY',
  choices: sk.qcow2.BACKING_POLICIES,
  default: 'follow',
  description: 'read through the backing chain, or treat unallocated clusters as holes',
} as const

/** The paragraph of the qcow2 edits. */
export const QCOW2_EDIT_NOTE =
  "Crash-safe: the edit takes qemu's image locks (as qemu-img does) and refuses an image a running " +
  'qemu holds, unless --force.'

/** TYPE of `qcow2 set-extension` / `get-extension`: a number such as 0x76617465, or `hidden`. */
export function extensionType(raw: string): number {
  const type = raw === 'hidden' ? sk.qcow2.EXTENSION_HIDDEN : Number(raw)
  if (!Number.isInteger(type) || type < 1 || type > 0xffffffff) {
    throw new UsageError(`TYPE must be a number such as 0x76617465 or 'hidden', got '${raw}'`)
  }
  return type
}

/** The first-boot options of `customize` and `flash`: files into the FAT boot partition. */
export const CUSTOMIZE_OPTIONS = [
  {
    flag: 'file',
    type: 'string',
    value: 'PATH=LOCALFILE',
    repeat: true,
    description: 'write LOCALFILE as PATH in the FAT boot partition',
  },
  {
    flag: 'append',
    type: 'string',
    value: 'PATH=TEXT',
    repeat: true,
    description: 'append TEXT once to PATH (e.g. cmdline.txt) in the boot partition',
  },
  {
    flag: 'delete',
    type: 'string',
    value: 'PATH',
    repeat: true,
    description: 'delete PATH from the boot partition',
  },
  {
    flag: 'partition',
    type: 'count',
    value: 'N',
    description: 'the FAT partition to customise (default: the first FAT partition)',
  },
] as const

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
