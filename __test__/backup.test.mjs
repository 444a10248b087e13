// Drive backup (issue 23): a loop device with an MBR and an ext4 partition full of files is
// backed up to a sparse image with a bmap, shrunk to its last partition, and flashed back
// to a second device through the bmap; e2fsck and debugfs check the files there. Then the
// issue's round trip: a GPT and an MBR "Raspberry Pi card" on a 2 GiB drive to .img,
// .img.zst and .img.xz, each restored to a 1.5 GiB drive by flash (and by bmaptool); and
// the fault cases: ENOSPC on the output, an abort mid-way.
import test from 'ava'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { sk, tempDir, has, run, cli, isRoot, testWith } from './helpers.mjs'
import { loopDevice } from './fs-helpers.mjs'
import { EXT, card, cardTools, checkCard, readRange } from './card-helpers.mjs'

const MiB = 1 << 20
const GiB = 1024 * MiB
const P1 = { start: MiB, length: 40 * MiB }
const tools = ['sfdisk', 'mkfs.ext4', 'e2fsck', 'debugfs']
const rootTest = isRoot && has('losetup') ? testWith(tools, test) : (title, fn) => (console.error(`SKIP ${title}: needs root and losetup`), test.skip(title, fn))
const sha = (b) => createHash('sha256').update(b).digest('hex')

/** A 64 MiB MBR disk image, ext4 in partition 1 with `files`; noise after the partition. */
function disk(dir) {
  const img = join(dir, 'disk.img')
  writeFileSync(img, Buffer.alloc(64 * MiB))
  run('sfdisk', ['-q', img], { input: `label: dos\nstart=${P1.start / 512}, size=${P1.length / 512}, type=83\n` })
  const src = join(dir, 'files')
  mkdirSync(src)
  const files = {}
  for (let i = 0; i < 12; i++) {
    const b = Buffer.alloc(i * 50_000 + 10, i + 1)
    writeFileSync(join(src, `f${i}`), b)
    files[`f${i}`] = sha(b)
  }
  const part = join(dir, 'p1.img')
  writeFileSync(part, Buffer.alloc(0))
  run('truncate', ['-s', String(P1.length), part])
  run('mkfs.ext4', ['-q', '-F', '-d', src, part])
  run('dd', [`if=${part}`, `of=${img}`, 'bs=1M', 'seek=1', 'conv=notrunc', 'status=none'])
  run('dd', ['if=/dev/urandom', `of=${img}`, 'bs=1M', 'seek=50', 'count=2', 'conv=notrunc', 'status=none'])
  return { img, files }
}

function checkFiles(t, dir, device, files) {
  const part = join(dir, `check-${Math.random().toString(36).slice(2)}.img`)
  writeFileSync(part, readFileSync(device).subarray(P1.start, P1.start + P1.length))
  run('e2fsck', ['-fn', part])
  for (const [name, sum] of Object.entries(files)) {
    const out = join(dir, 'out.bin')
    run('debugfs', ['-R', `dump /${name} ${out}`, part], { stdio: 'ignore' })
    t.is(sha(readFileSync(out)), sum, name)
  }
}

rootTest('backup of a loop device: used blocks only, shrunk, bmap; flashed back it checks clean', async (t) => {
  const dir = tempDir(t)
  const { img, files } = disk(dir)
  const dev = loopDevice(t, img)
  const out = join(dir, 'card-backup.img')
  const phases = new Set()
  const r = await sk.backup(dev, out, { onProgress: (p) => phases.add(p.phase) })
  t.is(r.table, 'mbr')
  t.is(r.sourceSize, 64 * MiB)
  t.is(r.imageSize, P1.start + P1.length)
  t.is(r.cutBytes, 64 * MiB - r.imageSize)
  t.true(r.verified)
  t.true(r.bytesCopied < 24 * MiB, `copied ${r.bytesCopied}`)
  t.is(statSync(out).size, r.imageSize)
  t.true(statSync(out).blocks * 512 < 30 * MiB, 'free blocks are holes')
  t.is(r.sha256, sha(readFileSync(out)))
  t.is(r.bmap, `${out}.bmap`)
  t.deepEqual([...phases].filter((p) => ['map', 'copy', 'verify'].includes(p)), ['map', 'copy', 'verify'])
  // Restore to another "card" through the bmap: only the mapped ranges are written.
  const card = join(dir, 'card2.img')
  writeFileSync(card, Buffer.alloc(48 * MiB, 0x5a))
  const dev2 = loopDevice(t, card)
  const f = await sk.flash(out, [dev2])
  t.true(f.destinations[0].ok, f.destinations[0].error?.message)
  t.is(f.bmap, `${out}.bmap`)
  checkFiles(t, dir, dev2, files)
  // The CLI, as JSON; no temporary files left.
  const c = cli(['backup', img, join(dir, 'cli.img'), '--json'])
  t.is(c.status, 0, c.stderr)
  t.is(JSON.parse(c.stdout).sha256, r.sha256)
  t.deepEqual(readdirSync(dir).filter((n) => n.includes('.sparsekit-')), [])
})

rootTest('a mounted source drive is refused unless unmount', async (t) => {
  const dir = tempDir(t)
  const img = join(dir, 'whole.img')
  writeFileSync(img, Buffer.alloc(0))
  run('truncate', ['-s', String(32 * MiB), img])
  run('mkfs.ext4', ['-q', '-F', img])
  const dev = loopDevice(t, img)
  const mnt = join(dir, 'mnt')
  mkdirSync(mnt)
  run('mount', [dev, mnt])
  t.teardown(() => spawnSync('umount', [mnt]))
  const out = join(dir, 'b.img')
  const e = await t.throwsAsync(sk.backup(dev, out))
  t.is(e.code, 'ERR_SPARSEKIT_DRIVE_BUSY')
  t.regex(e.message, /refusing to back up/)
  t.false(existsSync(out))
  const c = cli(['backup', dev, out])
  t.is(c.status, 1)
  t.regex(c.stderr, /--unmount/)
  const r = await sk.backup(dev, out, { unmount: true })
  t.true(r.verified)
  t.is(r.table, 'none')
  run('e2fsck', ['-fn', out])
})

test('backup refuses bad arguments, and a missing source leaves no output', async (t) => {
  const dir = tempDir(t)
  const out = join(dir, 'o.img')
  await t.throwsAsync(sk.backup(join(dir, 'missing'), out), { code: 'ENOENT' })
  t.false(existsSync(out))
  await t.throwsAsync(sk.backup(out, out, { shrinkage: true }), { code: 'ERR_INVALID_ARG_VALUE' })
  await t.throwsAsync(sk.backup(out, out, { bmap: 'yes' }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(sk.backup(42, out), { code: 'ERR_INVALID_ARG_TYPE' })
  const ac = new AbortController()
  ac.abort()
  const img = join(dir, 'x.img')
  writeFileSync(img, Buffer.alloc(MiB, 1))
  await t.throwsAsync(sk.backup(img, out, { signal: ac.signal }), { code: 'ERR_SPARSEKIT_ABORTED' })
  t.false(existsSync(out))
})

// The round trip: a "Raspberry Pi card" (bootloader bytes in the gap before the
// first partition, FAT32 boot + ext4 root with files, a few deleted) on a 2 GiB drive with
// stale bytes past its last partition, backed up to .img, .img.zst and .img.xz, each
// flashed back to a smaller 1.5 GiB drive (and the .img by bmaptool with its bmap).
const roundTrip =
  isRoot && has('losetup')
    ? testWith([...cardTools, 'zstd', 'xz', 'bmaptool', 'sgdisk'], test)
    : (title, fn) => (console.error(`SKIP ${title}: needs root and losetup`), test.skip(title, fn))
for (const table of ['gpt', 'dos']) {
  roundTrip(`backup of a ${table} card on a 2 GiB drive: .img, .img.zst and .img.xz restored to a 1.5 GiB drive`, async (t) => {
    const dir = tempDir(t)
    const c = card(dir, table, 2 * GiB)
    // Stale bytes after the last partition: used by nothing, never carried.
    run('dd', ['if=/dev/urandom', `of=${c.img}`, 'bs=1M', `seek=${GiB / MiB}`, 'count=4', 'conv=notrunc', 'status=none'])
    const src = loopDevice(t, c.img)
    const layout = await sk.layout(src)
    // The image ends at the last partition (GPT: then its backup entries and header).
    const end = EXT.start + EXT.length + (table === 'gpt' ? 33 * 512 : 0)
    let raw
    for (const ext of ['img', 'img.zst', 'img.xz']) {
      const out = join(dir, `backup.${ext}`)
      const r = await sk.backup(src, out)
      t.true(r.verified, ext)
      t.is(r.table, table === 'dos' ? 'mbr' : 'gpt')
      t.is(r.sourceSize, 2 * GiB)
      t.is(r.imageSize, end, ext)
      t.is(r.cutBytes, 2 * GiB - end)
      t.is(r.bmap, `${out}.bmap`)
      if (ext === 'img') {
        raw = r
        // Allocated ≈ used: the used blocks up to the new end, free blocks are holes.
        const used = layout.used.reduce((n, u) => n + Math.max(0, Math.min(u.offset + u.length, end) - u.offset), 0)
        const allocated = statSync(out).blocks * 512
        t.true(allocated >= used - MiB && allocated <= used + MiB, `allocated ${allocated}, used ${used}`)
        t.is(r.sha256, sha(readFileSync(out)))
        // The shrunk table verifies (GPT: both headers, CRCs, the alternate LBA).
        run('sfdisk', ['--verify', out])
        if (table === 'gpt') t.regex(run('sgdisk', ['-v', out]), /No problems found/)
      } else {
        t.is(r.sha256, raw.sha256, `${ext}: the same image`)
        t.is(readFileSync(`${out}.bmap`, 'utf8'), readFileSync(`${raw.bmap}`, 'utf8'), `${ext}: the raw image's bmap`)
      }
      // Flashed back to a smaller drive (its bmap found beside it): whole, and only the
      // image's part of the drive written.
      const small = join(dir, `small-${ext}.img`)
      writeFileSync(small, Buffer.alloc(96 * MiB, 0x5a))
      run('truncate', ['-s', String(1.5 * GiB), small])
      const dev = loopDevice(t, small)
      const f = await sk.flash(out, [dev])
      t.true(f.destinations[0].ok, f.destinations[0].error?.message)
      t.is(f.bmap, `${out}.bmap`)
      const disk = checkCard(t, dir, dev, c, { table: join(dir, 'backup.img') })
      t.true(readRange(dev, end, 4 * MiB).equals(Buffer.alloc(4 * MiB, 0x5a)), `${ext}: nothing written past the image`)
      // The table as written verifies: the image's part of the drive.
      const head = join(dir, `head-${ext}.img`)
      writeFileSync(head, Buffer.concat([disk, readRange(dev, disk.length, end - disk.length)]))
      run('sfdisk', ['--verify', head])
      if (table === 'gpt') t.regex(run('sgdisk', ['-v', head]), /No problems found/)
    }
    // bmaptool restores the .img with its bmap.
    const small = join(dir, 'small-bmaptool.img')
    run('truncate', ['-s', String(1.5 * GiB), small])
    const dev = loopDevice(t, small)
    run('bmaptool', ['-q', 'copy', '--bmap', raw.bmap, join(dir, 'backup.img'), dev])
    checkCard(t, dir, dev, c, { table: join(dir, 'backup.img') })
  })
}

roundTrip('ENOSPC on the output and an abort mid-way: coded errors, no output, nothing left beside', async (t) => {
  const dir = tempDir(t)
  // The card: its files are random bytes, so no output format shrinks them much.
  const c = card(dir, 'dos')
  const dev = loopDevice(t, c.img)
  // A 2 MiB tmpfs: the backup (its gap and files alone are 6 MiB) does not fit.
  const small = join(dir, 'small')
  mkdirSync(small)
  run('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', small])
  try {
    for (const name of ['full.img', 'full.img.zst', 'full.img.xz']) {
      const out = join(small, name)
      const e = await t.throwsAsync(sk.backup(dev, out, { bmap: true }))
      t.is(e.code, 'ENOSPC', `${name}: ${e.message}`)
      t.true(e.message.includes(small), e.message)
      t.deepEqual(readdirSync(small), [], `${name}: no output and no temporary file`)
    }
  } finally {
    spawnSync('umount', [small])
  }
  // Abort once the copy is under way.
  const out = join(dir, 'aborted.img')
  const ac = new AbortController()
  let copied = 0
  const e = await t.throwsAsync(
    sk.backup(dev, out, {
      signal: ac.signal,
      onProgress: (p) => {
        if (p.phase === 'copy' && p.bytesDone > 0) {
          copied = p.bytesDone
          ac.abort()
        }
      },
    }),
  )
  t.is(e.code, 'ERR_SPARSEKIT_ABORTED', e.message)
  t.true(copied > 0, 'aborted mid-way')
  t.false(existsSync(out))
  t.false(existsSync(`${out}.bmap`))
  t.deepEqual(readdirSync(dir).filter((n) => n.includes('.sparsekit-')), [])
})
