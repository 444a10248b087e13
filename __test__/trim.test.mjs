// Trimmed flashing (issue 23): `flash(src, dsts, { trim: true })` and `bmap copy --trim` read
// and write only the blocks a source's partition tables and file systems use. A "card" image
// (GPT, and MBR) with random bytes before the first partition, FAT32 boot + ext4 root holding
// files (some deleted) goes to a loop device full of a pattern byte: both file systems check
// clean, every file's SHA-256 is equal, the gap is equal, bytes written ≈ used, and the free
// blocks still hold the pattern. A compressed image is refused before anything is written.
import test from 'ava'
import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import { readFileSync, statSync, writeFileSync, writeSync, mkdirSync, mkdtempSync, rmSync, openSync, readSync, closeSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { sk, tempDir, has, run, cli, isRoot, testWith, randomBytes } from './helpers.mjs'
import { loopDevice } from './fs-helpers.mjs'

const MiB = 1 << 20
const BLOCK = 4096
const GAP = { start: MiB, length: 3 * MiB }
const FAT = { start: 4 * MiB, length: 40 * MiB }
const EXT = { start: 44 * MiB, length: 40 * MiB }
const SIZE = 85 * MiB
const FILL = 0x5a
const tools = ['sfdisk', 'mkfs.vfat', 'mkfs.ext4', 'mcopy', 'mdel', 'debugfs', 'e2fsck', 'fsck.vfat']
const rootTest =
  isRoot && has('losetup')
    ? testWith(tools, test)
    : (title, fn) => (console.error(`SKIP ${title}: needs root and losetup`), test.skip(title, fn))
const sha = (b) => createHash('sha256').update(b).digest('hex')
const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' }

/** The card image: `table` (gpt or dos), random gap, FAT32 and ext4 with files, a few deleted. */
function card(dir, table) {
  const img = join(dir, `card-${table}.img`)
  const gap = randomBytes(GAP.length)
  writeFileSync(img, Buffer.alloc(0))
  run('truncate', ['-s', String(SIZE), img])
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

/** The cards, built once for the whole file (in a directory removed after it). */
const cards = {}
let shared
function sharedCard(table) {
  shared ??= mkdtempSync(join(tmpdir(), 'sparsekit-trim-'))
  cards[table] ??= card(shared, table)
  return cards[table]
}
test.after.always(() => shared && rmSync(shared, { recursive: true, force: true }))

/** A loop device over a file of `size` bytes full of FILL. */
function patterned(t, dir, name, size = 96 * MiB) {
  const f = join(dir, name)
  writeFileSync(f, Buffer.alloc(size, FILL))
  return loopDevice(t, f)
}

function readRange(path, start, length) {
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

/** The written copy checks: file systems clean, files equal, gap equal, free blocks untouched. */
async function check(t, dir, dst, c, trim, isFile = false) {
  const disk = readRange(dst, 0, SIZE)
  const src = readFileSync(c.img)
  t.true(disk.subarray(0, GAP.start + GAP.length).equals(src.subarray(0, GAP.start + GAP.length)), 'table and gap')
  t.true(disk.subarray(GAP.start, GAP.start + GAP.length).equals(c.gap), 'gap bytes')
  const fat = join(dir, `chk-fat-${Math.random().toString(36).slice(2)}.img`)
  const ext = join(dir, `chk-ext-${Math.random().toString(36).slice(2)}.img`)
  writeFileSync(fat, disk.subarray(FAT.start, FAT.start + FAT.length))
  writeFileSync(ext, disk.subarray(EXT.start, EXT.start + EXT.length))
  run('fsck.vfat', ['-n', fat])
  run('e2fsck', ['-fn', ext], { stdio: 'ignore' })
  const out = join(dir, 'out.bin')
  for (const [n, sum] of Object.entries(c.fatFiles)) {
    run('mcopy', ['-o', '-i', fat, `::/${n}`, out], { env })
    t.is(sha(readFileSync(out)), sum, `FAT ${n}`)
  }
  for (const [n, sum] of Object.entries(c.extFiles)) {
    run('debugfs', ['-R', `dump /${n} ${out}`, ext], { stdio: 'ignore' })
    t.is(sha(readFileSync(out)), sum, `ext4 ${n}`)
  }
  // Every 4 KiB block the layout finds wholly free was not written: it holds FILL (a file
  // destination, truncated first, reads zeros there).
  const l = await sk.layout(c.img)
  const used = new Uint8Array(SIZE / BLOCK)
  for (const r of l.used) for (let b = Math.floor(r.offset / BLOCK); b * BLOCK < r.offset + r.length; b++) used[b] = 1
  let free = 0
  let untouched = 0
  const want = Buffer.alloc(BLOCK, isFile ? 0 : FILL)
  for (let b = 0; b < used.length; b++) {
    if (used[b]) continue
    free++
    if (disk.subarray(b * BLOCK, (b + 1) * BLOCK).equals(want)) untouched++
  }
  t.is(free * BLOCK, trim.freeBytes)
  t.is(untouched, free, 'every free block left as it was')
  t.is(trim.usedBytes + trim.freeBytes, SIZE)
  t.true(trim.freeBytes > 50 * MiB, `free ${trim.freeBytes}`)
}

for (const table of ['gpt', 'dos']) {
  rootTest(`flash --trim of a ${table} card: only the used blocks written, file systems clean`, async (t) => {
    const dir = tempDir(t)
    const c = sharedCard(table)
    const dev = patterned(t, dir, 'dst.img')
    const r = await sk.flash(c.img, [dev], { trim: true })
    const d = r.destinations[0]
    t.true(d.ok, d.error?.message)
    t.true(d.verified)
    t.is(r.imageSize, SIZE)
    t.is(r.bmap, undefined)
    t.truthy(r.trim)
    // Written: the used blocks (the first MiB is written last, on its own).
    t.true(d.bytesWritten >= r.trim.usedBytes && d.bytesWritten <= r.trim.usedBytes + MiB, `${d.bytesWritten} written, ${r.trim.usedBytes} used`)
    await check(t, dir, dev, c, r.trim)
    // verify with trim compares the used blocks only: equal; without, the free ones differ.
    const v = await sk.verify(c.img, dev, { trim: true })
    t.deepEqual(v.trim, r.trim)
    t.is(v.bytesCompared, r.trim.usedBytes)
    await t.throwsAsync(sk.verify(c.img, dev, { bmap: false }), { code: 'ERR_SPARSEKIT_CHECKSUM_MISMATCH' })
    // Past the image: untouched.
    t.true(readRange(dev, SIZE, 96 * MiB - SIZE).equals(Buffer.alloc(96 * MiB - SIZE, FILL)))
  })
}

rootTest('bmap copy --trim to a new file: written sparse, allocated ≈ used', async (t) => {
  const dir = tempDir(t)
  const c = sharedCard('dos')
  const out = join(dir, 'copy.img')
  const r = cli(['bmap', 'copy', '--trim', '--create', c.img, out, '--json'])
  t.is(r.status, 0, r.stderr)
  const j = JSON.parse(r.stdout)
  t.truthy(j.trim, r.stdout)
  t.is(j.bmap, undefined)
  t.is(j.imageSize, SIZE)
  t.true(j.bytesWritten >= j.trim.usedBytes && j.bytesWritten <= j.trim.usedBytes + MiB, r.stdout)
  t.is(statSync(out).size, SIZE)
  t.true(statSync(out).blocks * 512 <= j.trim.usedBytes + 2 * MiB, `allocated ${statSync(out).blocks * 512}`)
  await check(t, dir, out, c, j.trim, true)
  // The API's bmap.copy says the same.
  const a = await sk.bmap.copy(c.img, join(dir, 'copy2.img'), { trim: true, createFiles: true })
  t.deepEqual(a.trim, j.trim)
})

rootTest('trim of a compressed image: refused before anything is written; a bmap beside wins', async (t) => {
  const dir = tempDir(t)
  const c = sharedCard('dos')
  const dev = patterned(t, dir, 'dst.img')
  const gz = join(dir, 'card.img.gz')
  run('sh', ['-c', `gzip -1 < '${c.img}' > '${gz}'`])
  const e = await t.throwsAsync(sk.flash(gz, [dev], { trim: true }), { code: 'ERR_SPARSEKIT_TRIM_UNSUPPORTED' })
  t.regex(e.message, /compressed stream/)
  t.regex(e.message, /bmap/)
  t.regex(e.message, /sparsekit backup/)
  const e2 = await t.throwsAsync(sk.bmap.copy(gz, dev, { trim: true }), { code: 'ERR_SPARSEKIT_TRIM_UNSUPPORTED' })
  t.regex(e2.message, /Nothing was written/)
  t.true(readRange(dev, 0, 96 * MiB).equals(Buffer.alloc(96 * MiB, FILL)), 'destination untouched')
  const cl = cli(['flash', '--trim', gz, dev])
  t.is(cl.status, 1)
  t.regex(cl.stderr, /ERR_SPARSEKIT_TRIM_UNSUPPORTED/)
  t.regex(cl.stderr, /without --trim/)
  // A bmap beside the image wins: it is followed, trim is null.
  const img = join(dir, 'withbmap.img')
  run('cp', ['--sparse=always', c.img, img])
  writeFileSync(`${img}.bmap`, await sk.bmap.create(img, { checksum: 'none' }))
  const withBmap = await sk.flash(img, [dev], { trim: true })
  t.true(withBmap.destinations[0].ok, withBmap.destinations[0].error?.message)
  t.is(withBmap.trim, null)
  t.is(withBmap.bmap, `${img}.bmap`)
})

rootTest('flash --trim of an http source with range requests', async (t) => {
  const dir = tempDir(t)
  const c = sharedCard('dos')
  const data = readFileSync(c.img)
  let ranged = 0
  const server = createServer((req, res) => {
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
    if (req.url !== '/card.img') return res.writeHead(404, { 'content-length': 0 }).end()
    if (!m) return res.writeHead(200, { 'content-length': data.length, 'accept-ranges': 'bytes', etag: '"v1"' }).end(data)
    const start = Number(m[1])
    const end = Math.min(m[2] === '' ? data.length - 1 : Number(m[2]), data.length - 1)
    ranged++
    res.writeHead(206, { 'content-length': end + 1 - start, 'content-range': `bytes ${start}-${end}/${data.length}`, etag: '"v1"' })
    res.end(data.subarray(start, end + 1))
  })
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok))
  t.teardown(() => new Promise((ok) => server.close(ok)))
  const dev = patterned(t, dir, 'dst.img')
  const h = await sk.flash(`http://127.0.0.1:${server.address().port}/card.img`, [dev], { trim: true })
  t.true(h.destinations[0].ok, h.destinations[0].error?.message)
  t.true(ranged > 0)
  t.true(h.sourceBytes < SIZE / 2, `fetched ${h.sourceBytes}`)
  await check(t, dir, dev, c, h.trim)
})

test('trim is validated like every option', async (t) => {
  await t.throwsAsync(sk.flash('x.img', ['y.img'], { trim: 'yes' }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(sk.bmap.copy('x.img', 'y.img', { trim: 1 }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(sk.flash('x.img', ['y.img'], { trimmed: true }), { code: 'ERR_INVALID_ARG_VALUE' })
  await t.throwsAsync(sk.verify('x.img', 'y.img', { trim: 'no' }), { code: 'ERR_INVALID_ARG_TYPE' })
})
