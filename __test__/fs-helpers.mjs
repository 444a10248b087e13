// Real filesystems for tests: loop-mounted images and tmpfs, always cleaned up.
import { mkdirSync, openSync, closeSync, fsyncSync, readFileSync, statSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import test from 'ava'
import { tempDir, isRoot, has, sparseFile, randomBytes } from './helpers.mjs'

const MKFS = {
  ext4: (img) => ['mkfs.ext4', ['-q', '-F', img]],
  xfs: (img) => ['mkfs.xfs', ['-q', '-f', '-m', 'reflink=1', img]],
  btrfs: (img) => ['mkfs.btrfs', ['-q', '-f', img]],
}
const MIN_MB = { ext4: 64, xfs: 300, btrfs: 128 }

function sh(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${(r.stderr || r.error || '').toString().trim()}`)
  return r.stdout
}

/** Why a filesystem of `type` cannot be used here, or null when it can. */
export function cannotMount(type) {
  if (!isRoot) return 'needs root to mount filesystems'
  if (type === 'tmpfs' || type === 'loop') return has('losetup') ? null : 'losetup not installed'
  const [cmd] = MKFS[type]('')
  return has(cmd) ? null : `${cmd} not installed`
}

/**
 * Register a test that needs the given filesystems; when one cannot be used here it is
 * registered as skipped, and the reason is printed (ava has no skip at run time).
 */
export function fsTest(types, title, fn) {
  const why = types.map(cannotMount).find(Boolean)
  if (why) {
    console.error(`SKIP ${title}: ${why}`)
    return test.skip(title, fn)
  }
  return test(title, fn)
}

/**
 * Mount a fresh filesystem of `type` ('ext4' | 'xfs' | 'btrfs' | 'tmpfs') for this test and
 * return its folder. The unmount runs in t.teardown, which ava runs even when the test fails;
 * `-o loop` attaches with autoclear, so the unmount also detaches the loop device.
 */
export function mountFs(t, type, sizeMB) {
  const dir = tempDir(t)
  const mnt = join(dir, 'mnt')
  mkdirSync(mnt)
  if (type === 'tmpfs') {
    sh('mount', ['-t', 'tmpfs', '-o', `size=${sizeMB || 64}m`, 'tmpfs', mnt])
  } else {
    const img = join(dir, `${type}.img`)
    closeSync(openSync(img, 'w'))
    sh('truncate', ['-s', `${Math.max(sizeMB || 0, MIN_MB[type])}M`, img])
    sh(...MKFS[type](img))
    sh('mount', ['-o', 'loop', img, mnt])
  }
  t.teardown(() => {
    if (spawnSync('umount', [mnt]).status !== 0) spawnSync('umount', ['-l', mnt])
  })
  return mnt
}

/** Attach `file` as a loop block device for this test; detached in teardown. */
export function loopDevice(t, file) {
  const dev = sh('losetup', ['-f', '--show', file]).trim()
  t.teardown(() => spawnSync('losetup', ['-d', dev]))
  return dev
}

/** Flush a file so st_blocks is final (ext4 counts delayed allocation late). */
export function flush(path) {
  const fd = openSync(path, 'r')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

const MiB = 1 << 20

/** md5 of a file's bytes: the equality oracle. */
export const md5 = (p) => createHash('md5').update(readFileSync(p)).digest('hex')

/** `st_blocks` once the file is on disk (holes kept or not). */
export const blocks = (p) => (flush(p), statSync(p).blocks)

/** A sparse image: data at 0, in the middle (unaligned), before a trailing hole; odd size. */
export function sampleImage(dir, name = 'img') {
  return sparseFile(join(dir, name), 64 * MiB + 4097, [
    [0, randomBytes(64 * 1024)],
    [5 * MiB + 123, randomBytes(MiB)],
    [40 * MiB, randomBytes(3 * MiB)],
  ])
}
