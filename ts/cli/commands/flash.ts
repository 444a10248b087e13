/** `sparsekit flash SOURCE DST...`: one image to several drives; exit 1 when any failed. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT, UsageError } from '../command'
import { human } from '../output'
import {
  HTTP_OPTIONS,
  httpOptions,
  CUSTOMIZE_OPTIONS,
  customization,
  MEDIA_OPTIONS,
  TRIM_OPTION,
} from './common'

export default command({
  name: 'flash',
  summary: 'write one image to several drives at once, then read each back and verify it',
  positionals: [{ name: 'SOURCE' }, { name: 'DST', variadic: true }],
  options: [
    {
      flag: 'bmap',
      type: 'string',
      value: 'FILE',
      description:
        'write by this bmap (default: SOURCE.bmap beside a local image, URL.bmap for a URL)',
    },
    { flag: 'nobmap', type: 'boolean', description: 'ignore any bmap beside SOURCE' },
    {
      flag: 'no-verify',
      type: 'boolean',
      description: "do not check the ranges' checksums from the bmap",
    },
    {
      flag: 'no-read-back',
      type: 'boolean',
      description: 'do not read each drive back and compare it after writing',
    },
    {
      flag: 'unmount',
      type: 'boolean',
      api: 'unmount',
      description: "unmount a drive's mounted file systems before writing it",
    },
    {
      flag: 'force',
      type: 'boolean',
      api: 'force',
      description: 'write to a system drive or a busy one (no exclusive open): dangerous',
    },
    {
      flag: 'create',
      type: 'boolean',
      api: 'createFiles',
      description: 'create a DST that does not exist as a regular file (never under /dev)',
    },
    {
      flag: 'zip-entry',
      type: 'string',
      value: 'NAME',
      description: 'the entry of a zip SOURCE to write (default: its largest file)',
    },
    {
      flag: 'check-capacity',
      type: 'boolean',
      api: 'checkCapacity',
      description:
        'probe each drive first: refuse a counterfeit one that holds less than the image',
    },
    {
      flag: 'eject',
      type: 'boolean',
      api: 'eject',
      description: 'eject each drive that was written and verified',
    },
    ...MEDIA_OPTIONS,
    TRIM_OPTION,
    ...HTTP_OPTIONS,
    ...CUSTOMIZE_OPTIONS,
    JSON_OUTPUT,
  ],
  notes: [
    'SOURCE is a path or an http(s) URL: a plain image, gz/xz/bz2/zst compressed, or a zip. A drive ' +
      'that fails is reported (exit 1) and the others finish. A missing DST is refused unless ' +
      '--create makes it a file.',
    '--trim (no bmap): only the used blocks of the partitions and file systems are read, written ' +
      'and read back; free blocks of the destination are left as they were. The image must be ' +
      'read at offsets (plain file, http(s) with ranges, stored zip entry): a compressed one is ' +
      'refused (ERR_SPARSEKIT_TRIM_UNSUPPORTED); use its bmap (sparsekit backup writes one).',
  ],
  async run(ctx, v, [src, ...dsts]) {
    if (v.bmap !== undefined && v.nobmap)
      throw new UsageError('--bmap and --nobmap exclude each other')
    if (v['zero-unmapped'] && v.discard)
      throw new UsageError('--zero-unmapped and --discard exclude each other')
    const http = httpOptions(v, src)
    const onProgress = ctx.progress()
    ctx.leaves(`${dsts.join(', ')} may be partly written`)
    const r = await sk.flash(src, dsts, {
      bmap: v.nobmap ? false : v.bmap,
      verify: !v['no-verify'],
      readBack: !v['no-read-back'],
      unmount: v.unmount,
      force: v.force,
      createFiles: v.create,
      zipEntry: v['zip-entry'],
      customize: customization(v),
      checkCapacity: v['check-capacity'],
      eject: v.eject,
      ...http,
      seek: v.seek,
      sha256: v.sha256,
      onlyChanged: v['only-changed'],
      zeroUnmapped: v['zero-unmapped'],
      discard: v.discard,
      trim: v.trim,
      writeRetries: v['write-retries'],
      writeRetryDelay: v['write-retry-delay'],
      signal: ctx.signal,
      onProgress,
    })
    ctx.leaves(undefined)
    const failed = r.destinations.filter((d) => !d.ok)
    if (v.json) {
      const plain = r.destinations.map((d) => ({
        ...d,
        error: d.error && { code: d.error.code, message: ctx.words(d.error.message) },
      }))
      await ctx.json({ ...r, destinations: plain })
    } else {
      for (const d of r.destinations) {
        if (d.ok) {
          const skipped = d.bytesSkipped ? ` (${human(d.bytesSkipped)} already there)` : ''
          const retried = d.retries ? `, ${d.retries} writes retried` : ''
          const ejected = d.ejected
            ? ', ejected'
            : d.ejectError
              ? ` (not ejected: ${ctx.words(d.ejectError.message)})`
              : ''
          const trimmed = r.trim ? ` (trimmed: ${human(r.trim.freeBytes)} free left as it was)` : ''
          await ctx.out(
            `${d.path}: wrote ${human(d.bytesWritten)}${trimmed}${skipped}${retried}${d.verified ? ', read back and verified' : ''}${ejected}\n`,
          )
        }
      }
      for (const d of failed) if (d.error) ctx.error(d.error, `${d.path}: `)
    }
    return failed.length ? 1 : 0
  },
})
