// The "Raspberry Pi card" of the trim and backup tests (issue 23): a disk image (GPT, or MBR)
// with random bytes in the gap before the first partition (a bootloader), FAT32 boot + ext4
// root holding files (some deleted again), and the check that a copy of it is whole: both
// file systems clean by their own checkers, every file's SHA-256 equal, the gap equal.
import { createHash } from 'node:crypto'
import { writeFileSync, writeSync, mkdirSync, openSync, readSync, closeSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { run, randomBytes } from './helpers.mjs'

export const MiB = 1 << 20
export const GAP = { start: MiB, length: 3 * MiB }
export const FAT = { start: 4 * MiB, length: 40 * MiB }
export const EXT = { start: 44 * MiB, length: 40 * MiB }
/** The card image's size; the last partition ends 1 MiB before it. */
export const SIZE = 85 * MiB
export const cardTools = ['sfdisk', 'mkfs.vfat', 'mkfs.ext4', 'mcopy', 'mdel', 'debugfs', 'e2fsck', 'fsck.vfat']
export const sha = (b) => createHash('sha256').update(b).digest('hex')
export const mtoolsEnv = { ...process.env, MTOOLS_SKIP_CHECK: '1' }
const env = mtoolsEnv

/**
 * The card image in `dir`: `table` (gpt or dos) on a disk of `size` bytes (a sparse file;
 * GPT's backup header at its end), random gap, FAT32 and ext4 with files, a few deleted.
 */
export function card(dir, table, size = SIZE) {
  const img = join(dir, `card-${table}.img`)
  const gap = randomBytes(GAP.length)
  writeFileSync(img, Buffer.alloc(0))
  run('truncate', ['-s', String(size), img])
  const [fatType, extType] = table === 'gpt' ? ['EBD0A0A2-B9E5-4433-87C0-68B6B72699C7', '0FC63DAF-8483-4772-8E79-3D69D8477DE4'] : ['c', '83']
  run('sfdisk', ['-q', img], {
    input: `label: ${table}\nstart=${FAT.start / 512}, size=${FAT.length / 512}, type=${fatType}\nstart=${EXT.start / 512}, size=${EXT.length / 512}, type=${extType}\n`,
  })
  const fd = openSync(img, 'r+')
  try {
    writeSync(fd, gap, 0, gap.length, GAP.start)
  } finally {
    closeSync(fd)
  }
  const src = join(dir, `files-${table}`)
  mkdirSync(src)
  const files = {}
  for (let i = 0; i < 6; i++) {
    const b = randomBytes(300_000 + i * 123_457)
    writeFileSync(join(src, `f${i}`), b)
    files[`f${i}`] = sha(b)
  }
  const fat = join(dir, `fat-${table}.img`)
  run('mkfs.vfat', ['-C', '-F', '32', '-s', '1', '-n', 'BOOT', fat, String(FAT.length / 1024)])
  run('mcopy', ['-i', fat, ...Object.keys(files).map((n) => join(src, n)), '::/'], { env })
  const ext = join(dir, `ext-${table}.img`)
  run('mkfs.ext4', ['-q', '-F', '-d', src, ext, `${EXT.length / 1024}K`])
  // Deleted: their blocks are free again (and still hold their data).
  run('mdel', ['-i', fat, '::/f1', '::/f4'], { env })
  writeFileSync(join(dir, `rm-${table}`), 'rm f2\nrm f5\n')
  run('debugfs', ['-w', '-f', join(dir, `rm-${table}`), ext], { stdio: 'ignore' })
  const fatFiles = { ...files }
  delete fatFiles.f1
  delete fatFiles.f4
  const extFiles = { ...files }
  delete extFiles.f2
  delete extFiles.f5
  for (const [part, at] of [[fat, FAT.start], [ext, EXT.start]])
    run('dd', [`if=${part}`, `of=${img}`, 'bs=1M', `seek=${at / MiB}`, 'conv=notrunc', 'status=none'])
  return { img, gap, fatFiles, extFiles }
}

/** `length` bytes of a file or device from `start` (short at its end). */
export function readRange(path, start, length) {
  const b = Buffer.alloc(length)
  const fd = openSync(path, 'r')
  try {
    let at = 0
    while (at < length) {
      const n = readSync(fd, b, at, length - at, start + at)
      if (n === 0) break
      at += n
    }
  } finally {
    closeSync(fd)
  }
  return b
}

/**
 * A copy of card `c` at `dst` (a device or file) is whole: the table area and the gap, both
 * file systems clean by fsck.vfat -n and e2fsck -fn, every file's SHA-256 equal. Returns
 * the copy's bytes up to the end of the last partition. `table`: the image whose first
 * sectors the copy must hold (a shrunk backup's GPT header differs from the card's).
 */
export function checkCard(t, dir, dst, c, { table = c.img } = {}) {
  const disk = readRange(dst, 0, EXT.start + EXT.length)
  const src = readRange(table, 0, GAP.start + GAP.length)
  t.true(disk.subarray(0, GAP.start + GAP.length).equals(src), 'table and gap')
  t.true(disk.subarray(GAP.start, GAP.start + GAP.length).equals(c.gap), 'gap bytes')
  const tag = Math.random().toString(36).slice(2)
  const fat = join(dir, `chk-fat-${tag}.img`)
  const ext = join(dir, `chk-ext-${tag}.img`)
  writeFileSync(fat, disk.subarray(FAT.start, FAT.start + FAT.length))
  writeFileSync(ext, disk.subarray(EXT.start, EXT.start + EXT.length))
  run('fsck.vfat', ['-n', fat])
  run('e2fsck', ['-fn', ext], { stdio: 'ignore' })
  const out = join(dir, `out-${tag}.bin`)
  for (const [n, sum] of Object.entries(c.fatFiles)) {
    run('mcopy', ['-o', '-i', fat, `::/${n}`, out], { env })
    t.is(sha(readFileSync(out)), sum, `FAT ${n}`)
  }
  for (const [n, sum] of Object.entries(c.extFiles)) {
    run('debugfs', ['-R', `dump /${n} ${out}`, ext], { stdio: 'ignore' })
    t.is(sha(readFileSync(out)), sum, `ext4 ${n}`)
  }
  return disk
}
