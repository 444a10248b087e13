/**
 * The command table: every `sparsekit` command, in the order `sparsekit --help` lists them,
 * each its declaration (ts/cli/specs.ts) with a `run` that loads the command's module
 * (ts/cli/commands/NAME.ts) only when it runs. Parsing, help and dispatch all read this list.
 * @internal
 */
import type { Command } from '../command'
import { lazy } from '../command'
import * as specs from '../specs'

export const COMMANDS: readonly Command[] = [
  lazy(specs.map, () => import('./map')),
  lazy(specs.copy, () => import('./copy')),
  lazy(specs.digest, () => import('./digest')),
  lazy(specs.bmapCreate, () => import('./bmap-create')),
  lazy(specs.bmapCopy, () => import('./bmap-copy')),
  lazy(specs.checksum, () => import('./checksum')),
  lazy(specs.retrieve, () => import('./retrieve')),
  lazy(specs.save, () => import('./save')),
  lazy(specs.qcow2Info, () => import('./qcow2-info')),
  lazy(specs.qcow2Map, () => import('./qcow2-map')),
  lazy(specs.qcow2Check, () => import('./qcow2-check')),
  lazy(specs.qcow2Convert, () => import('./qcow2-convert')),
  lazy(specs.qcow2Create, () => import('./qcow2-create')),
  lazy(specs.qcow2Resize, () => import('./qcow2-resize')),
  lazy(specs.qcow2Rebase, () => import('./qcow2-rebase')),
  lazy(specs.qcow2SetExtension, () => import('./qcow2-set-extension')),
  lazy(specs.qcow2GetExtension, () => import('./qcow2-get-extension')),
  lazy(specs.qcow2Discard, () => import('./qcow2-discard')),
  lazy(specs.qcow2Commit, () => import('./qcow2-commit')),
  lazy(specs.qcow2Repair, () => import('./qcow2-repair')),
  lazy(specs.qcow2Snapshot, () => import('./qcow2-snapshot')),
  lazy(specs.qcow2Import, () => import('./qcow2-import')),
  lazy(specs.qcow2Export, () => import('./qcow2-export')),
  lazy(specs.qcow2Measure, () => import('./qcow2-measure')),
  lazy(specs.qcow2Compare, () => import('./qcow2-compare')),
  lazy(specs.drives, () => import('./drives')),
  lazy(specs.flash, () => import('./flash')),
  lazy(specs.customize, () => import('./customize')),
  lazy(specs.backup, () => import('./backup')),
  lazy(specs.layout, () => import('./layout')),
  lazy(specs.sparsify, () => import('./sparsify')),
  lazy(specs.verify, () => import('./verify')),
  lazy(specs.probe, () => import('./probe')),
]
