/**
 * The command table: every `sparsekit` command, in the order `sparsekit --help` lists them.
 * Parsing, help and dispatch all read this list. @internal
 */
import type { Command } from '../command'
import map from './map'
import copy from './copy'
import digest from './digest'
import bmapCreate from './bmap-create'
import bmapCopy from './bmap-copy'
import checksum from './checksum'
import retrieve from './retrieve'
import save from './save'
import qcow2Info from './qcow2-info'
import qcow2Map from './qcow2-map'
import qcow2Check from './qcow2-check'
import qcow2Convert from './qcow2-convert'
import qcow2Create from './qcow2-create'
import qcow2Resize from './qcow2-resize'
import qcow2Rebase from './qcow2-rebase'
import qcow2SetExtension from './qcow2-set-extension'
import qcow2GetExtension from './qcow2-get-extension'
import qcow2Discard from './qcow2-discard'
import qcow2Commit from './qcow2-commit'
import qcow2Repair from './qcow2-repair'
import qcow2Snapshot from './qcow2-snapshot'
import qcow2Import from './qcow2-import'
import qcow2Export from './qcow2-export'
import qcow2Measure from './qcow2-measure'
import qcow2Compare from './qcow2-compare'
import drives from './drives'
import flash from './flash'
import customize from './customize'
import backup from './backup'
import layout from './layout'
import sparsify from './sparsify'
import verify from './verify'
import probe from './probe'

export const COMMANDS: readonly Command[] = [
  map,
  copy,
  digest,
  bmapCreate,
  bmapCopy,
  checksum,
  retrieve,
  save,
  qcow2Info,
  qcow2Map,
  qcow2Check,
  qcow2Convert,
  qcow2Create,
  qcow2Resize,
  qcow2Rebase,
  qcow2SetExtension,
  qcow2GetExtension,
  qcow2Discard,
  qcow2Commit,
  qcow2Repair,
  qcow2Snapshot,
  qcow2Import,
  qcow2Export,
  qcow2Measure,
  qcow2Compare,
  drives,
  flash,
  customize,
  backup,
  layout,
  sparsify,
  verify,
  probe,
]
