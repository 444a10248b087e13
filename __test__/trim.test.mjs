// Trimmed flashing (issue 23): `flash(src, dsts, { trim: true })` and `bmap copy --trim` read
// and write only the blocks a source's partition tables and file systems use. A "card" image
// (GPT, and MBR) with random bytes before the first partition, FAT32 boot + ext4 root holding
// files (some deleted) goes to a loop device full of a pattern byte: both file systems check
// clean, every file's SHA-256 is equal, the gap is equal, bytes written ≈ used, and the free
// blocks still hold the pattern. A compressed image is refused before anything is written.
import test from 'ava'
import { createServer } from 'node:http'
import { readFileSync, statSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { sk, tempDir, has, run, cli, isRoot, testWith } from './helpers.mjs'
import { loopDevice } from './fs-helpers.mjs'
import { MiB, SIZE, card, cardTools as tools, checkCard, readRange } from './card-helpers.mjs'

const BLOCK = 4096
const FILL = 0x5a
const rootTest =
  isRoot && has('losetup')
    ? testWith(tools, test)
    : (title, fn) => (console.error(`SKIP ${title}: needs root and losetup`), test.skip(title, fn))

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

/** The written copy checks: file systems clean, files equal, gap equal, free blocks untouched. */
async function check(t, dir, dst, c, trim, isFile = false) {
  checkCard(t, dir, dst, c)
  const disk = readRange(dst, 0, SIZE)
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
