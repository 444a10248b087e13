/** `sparsekit qcow2 resize FILE SIZE`: a new virtual size. @internal */
import * as sk from '../../index'
import { command, JSON_IGNORED } from '../command'
import { bytes } from '../args'
import { QCOW2_EDIT_NOTE, QCOW2_FORCE } from './common'

export default command({
  name: 'qcow2 resize',
  summary: "grow a qcow2 image's virtual disk, or shrink it where nothing is allocated",
  positionals: [{ name: 'FILE' }, { name: 'SIZE' }],
  options: [QCOW2_FORCE, JSON_IGNORED],
  notes: [
    "SIZE is a byte count (a multiple of 512) with dd's suffixes: 10G, 512M.",
    QCOW2_EDIT_NOTE,
  ],
  async run(ctx, v, [path, size]) {
    await sk.qcow2.resize(path, bytes('SIZE', size), { force: v.force, signal: ctx.signal })
    return 0
  },
})
