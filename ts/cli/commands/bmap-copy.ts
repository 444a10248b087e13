/** `sparsekit bmap copy IMAGE DST`: `bmaptool copy`, with bmaptool's flag names. @internal */
import * as sk from '../../index'
import { command, JSON_OUTPUT, UsageError } from '../command'
import { human } from '../output'
import {
  CUSTOMIZE_OPTIONS,
  customization,
  HTTP_OPTIONS,
  httpOptions,
  MEDIA_OPTIONS,
  TRIM_OPTION,
} from './common'

export default command({
  name: 'bmap copy',
  summary: 'write an image to a drive or file by its bmap, checked (bmaptool copy)',
  positionals: [{ name: 'IMAGE' }, { name: 'DST' }],
  options: [
    {
      flag: 'bmap',
      type: 'string',
      value: 'FILE',
      description: 'the bmap (default: IMAGE.bmap beside the image, as bmaptool looks)',
    },
    {
      flag: 'nobmap',
      type: 'boolean',
      description: "write without a bmap: a plain image's holes are skipped",
    },
    {
      flag: 'no-verify',
      type: 'boolean',
      description: "do not check the ranges' checksums from the bmap",
    },
    {
      flag: 'read-back',
      type: 'boolean',
      description: 'after writing, read every written range back from DST and compare',
    },
    {
      flag: 'create',
      type: 'boolean',
      api: 'createFiles',
      description: 'create DST as a regular file if it does not exist',
    },
    ...MEDIA_OPTIONS,
    TRIM_OPTION,
    ...HTTP_OPTIONS,
    ...CUSTOMIZE_OPTIONS,
    JSON_OUTPUT,
  ],
  notes: [
    'IMAGE may be plain or gz/xz/bz2/zst compressed, and an http(s) URL: read as a stream, its ' +
      'bmap fetched from URL.bmap, a cut connection resumed with range requests.',
    '--trim (no bmap): only the used blocks of the partitions and file systems are read, written ' +
      'and read back; free blocks of the destination are left as they were. The image must be ' +
      'read at offsets (plain file, http(s) with ranges, stored zip entry): a compressed one is ' +
      'refused (ERR_SPARSEKIT_TRIM_UNSUPPORTED); use its bmap (sparsekit backup writes one).',
  ],
  async run(ctx, v, [image, dst]) {
    if (v.bmap !== undefined && v.nobmap)
      throw new UsageError('--bmap and --nobmap exclude each other')
    if (v['zero-unmapped'] && v.discard)
      throw new UsageError('--zero-unmapped and --discard exclude each other')
    const http = httpOptions(v, image)
    const onProgress = ctx.progress()
    ctx.leaves(`${dst} may be partly written`)
    const r = await sk.bmap.copy(image, dst, {
      ...http,
      bmap: v.nobmap ? false : v.bmap,
      verify: !v['no-verify'],
      readBack: v['read-back'],
      createFiles: v.create,
      customize: customization(v),
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
    if (v.json) await ctx.json(r)
    else {
      await ctx.out(
        `wrote ${human(r.bytesWritten)} of a ${human(r.imageSize)} image to ${dst}` +
          (r.compression ? ` (${r.compression})` : '') +
          (r.bmap
            ? ` with ${r.bmap}`
            : r.trim
              ? ` trimmed (${human(r.trim.freeBytes)} free left as it was)`
              : ' without a bmap') +
          (r.bytesSkipped ? ` (${human(r.bytesSkipped)} already there)` : '') +
          `; ${r.rangesVerified} ranges verified` +
          (r.rangesReadBack ? `, ${r.rangesReadBack} read back` : '') +
          '\n',
      )
    }
    return 0
  },
})
