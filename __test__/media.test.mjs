// Removable media (issue 24): first MiB last, expected digest, only-changed writes,
// seek, verify; on loop devices (root) and regular files, API and CLI.
import test from 'ava'
import { writeFileSync, readFileSync, truncateSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { sk, tempDir, randomBytes, sparseFile, cli, isRoot, has } from './helpers.mjs'
import { loopDevice, mountFs } from './fs-helpers.mjs'

const MiB = 1 << 20
const rootTest = isRoot && has('losetup') ? test : (title, fn) => (console.error(`SKIP ${title}: needs root and losetup`), test.skip(title, fn))
const sha256 = (b) => createHash('sha256').update(b).digest('hex')

/** A dense random image of `size` bytes written to dir/name. */
function image(dir, size, name = 'os.img') {
  const data = randomBytes(size)
  writeFileSync(join(dir, name), data)
  return { path: join(dir, name), data }
}

/** A loop device over a file of `size` bytes of `fill`; its backing file's path too. */
function device(t, dir, size, fill, name = 'dev') {
  const backing = join(dir, name)
  writeFileSync(backing, Buffer.alloc(size, fill))
  return { dev: loopDevice(t, backing), backing }
}

// An abort at 60% is tested at the Rust level (flash::tests::abort_leaves_the_first_mib, a
// destination that cancels when a write reaches 60%): from JS, progress arrives after the
// fact on a busy event loop, so a flash of a loop device often ends before the abort.
rootTest('a drive that fails at 8 MiB (a loop device on a full tmpfs) keeps its old first MiB', async (t) => {
  const dir = tempDir(t)
  const img = image(dir, 24 * MiB)
  const mnt = mountFs(t, 'tmpfs', 8)
  const backing = join(mnt, 'dev')
  writeFileSync(backing, Buffer.alloc(MiB, 0xa5))
  truncateSync(backing, 32 * MiB)
  const dev = loopDevice(t, backing)
  const r = await sk.flash(img.path, [dev], { bmap: false })
  const d = r.destinations[0]
  t.false(d.ok)
  t.is(d.error.code, 'ENOSPC', d.error.message)
  // The range not written, as { start, length } (issue 20: `length` was once the end): the
  // tmpfs is full once about 7 MiB of the image is on it (after the 1 MiB already there),
  // so the failed write ends past that; one write is at most 8 MiB (queued chunks are
  // gathered; on a quiet machine: start 8 MiB, length 1 MiB).
  const { start, length } = d.error.range
  t.true(start % 4096 === 0 && start <= 8 * MiB, `range ${start}+${length}`)
  t.true(length > 0 && length <= 8 * MiB && start + length > 6 * MiB && start + length <= img.data.length, `range ${start}+${length}`)
  const got = readFileSync(backing)
  t.true(got.subarray(0, MiB).every((b) => b === 0xa5), 'first MiB written before the end')
  t.true(got.subarray(MiB, 2 * MiB).equals(img.data.subarray(MiB, 2 * MiB)), 'nothing written at all')
})

rootTest('sha256: a match is reported; a mismatch rejects with both digests and leaves the first MiB', async (t) => {
  const dir = tempDir(t)
  const img = image(dir, 6 * MiB)
  const good = sha256(img.data)
  const a = device(t, dir, 16 * MiB, 0x11, 'a')
  const r = await sk.flash(img.path, [a.dev], { sha256: good.toUpperCase() })
  t.is(r.sha256, good)
  t.true(r.destinations[0].ok && r.destinations[0].verified)
  t.true(readFileSync(a.backing).subarray(0, img.data.length).equals(img.data))
  const b = device(t, dir, 16 * MiB, 0x22, 'b')
  const bad = 'ab'.repeat(32)
  const e = await t.throwsAsync(sk.flash(img.path, [b.dev], { sha256: bad }), { code: 'ERR_SPARSEKIT_CHECKSUM_MISMATCH' })
  t.true(e.message.includes(good) && e.message.includes(bad), e.message)
  t.true(readFileSync(b.backing).subarray(0, MiB).every((x) => x === 0x22))
  // bmap copy too.
  const e2 = await t.throwsAsync(sk.bmap.copy(img.path, b.dev, { sha256: bad }), { code: 'ERR_SPARSEKIT_CHECKSUM_MISMATCH' })
  t.true(e2.message.includes(bad))
  t.true(readFileSync(b.backing).subarray(0, MiB).every((x) => x === 0x22))
})

rootTest('onlyChanged: A then A\' with 5 blocks changed writes 5 blocks; the device equals A\'', async (t) => {
  const dir = tempDir(t)
  const a = image(dir, 8 * MiB, 'a.img')
  const { dev, backing } = device(t, dir, 16 * MiB, 0)
  await sk.flash(a.path, [dev], { bmap: false })
  const b = Buffer.from(a.data)
  for (const blk of [0, 300, 901, 1500, 2047]) b[blk * 4096 + 100] ^= 0xff
  writeFileSync(join(dir, 'b.img'), b)
  const r = await sk.flash(join(dir, 'b.img'), [dev], { bmap: false, onlyChanged: true })
  const d = r.destinations[0]
  t.true(d.ok && d.verified, d.error?.message)
  t.is(d.bytesWritten, 5 * 4096)
  t.is(d.bytesSkipped, b.length - 5 * 4096)
  t.true(readFileSync(backing).subarray(0, b.length).equals(b))
  // The CLI says so.
  const c = cli(['flash', join(dir, 'b.img'), dev, '--nobmap', '--only-changed', '--json'])
  t.is(c.status, 0, c.stderr)
  t.is(JSON.parse(c.stdout).destinations[0].bytesWritten, 0)
})

rootTest('seek: an image written into a partition offset; bytes before and after untouched', async (t) => {
  const dir = tempDir(t)
  const img = image(dir, 3 * MiB + 4096)
  const { dev, backing } = device(t, dir, 16 * MiB, 0x5a)
  const seek = 4 * MiB
  const r = await sk.flash(img.path, [dev], { seek })
  t.true(r.destinations[0].ok, r.destinations[0].error?.message)
  let got = readFileSync(backing)
  t.true(got.subarray(0, seek).every((x) => x === 0x5a))
  t.true(got.subarray(seek, seek + img.data.length).equals(img.data))
  t.true(got.subarray(seek + img.data.length).every((x) => x === 0x5a))
  // bmap copy and the CLI, at another offset; the size check counts the offset.
  const c = cli(['bmap', 'copy', img.path, dev, '--nobmap', '--seek', '10M'])
  t.is(c.status, 0, c.stderr)
  got = readFileSync(backing)
  t.true(got.subarray(10 * MiB, 10 * MiB + img.data.length).equals(img.data))
  t.true(got.subarray(seek + img.data.length, 10 * MiB).every((x) => x === 0x5a))
  await t.throwsAsync(sk.bmap.copy(img.path, dev, { bmap: false, seek: 14 * MiB }), { code: 'ERR_SPARSEKIT_DEST_TOO_SMALL' })
  // verify at the offset, then after a byte changed there.
  const v = await sk.verify(img.path, dev, { seek })
  t.is(v.imageSize, img.data.length)
  t.true(v.bytesCompared > 0)
})

rootTest('stale GPT backup in the last MiB of a bigger device is zeroed', async (t) => {
  const dir = tempDir(t)
  const img = image(dir, 2 * MiB)
  const backing = join(dir, 'dev')
  const old = Buffer.alloc(16 * MiB, 0x33)
  old.write('EFI PART', 16 * MiB - 512, 'latin1')
  writeFileSync(backing, old)
  const dev = loopDevice(t, backing)
  const r = await sk.flash(img.path, [dev])
  t.true(r.destinations[0].ok, r.destinations[0].error?.message)
  const got = readFileSync(backing)
  t.true(got.subarray(15 * MiB).every((x) => x === 0))
  t.true(got.subarray(img.data.length, 15 * MiB).every((x) => x === 0x33))
})

test('verify: equal resolves; a difference rejects naming the first differing range', async (t) => {
  const dir = tempDir(t)
  const img = image(dir, 2 * MiB)
  const dst = join(dir, 'dst')
  const on = Buffer.concat([img.data, Buffer.alloc(MiB, 7)])
  writeFileSync(dst, on)
  const phases = new Set()
  const r = await sk.verify(img.path, dst, { onProgress: (p) => phases.add(p.phase) })
  t.deepEqual([...phases], ['verify'])
  t.is(r.bytesCompared, img.data.length)
  on[MiB + 10] ^= 1
  writeFileSync(dst, on)
  const e = await t.throwsAsync(sk.verify(img.path, dst), { code: 'ERR_SPARSEKIT_CHECKSUM_MISMATCH' })
  t.deepEqual(e.range, { start: MiB, length: 4096 })
  t.is(e.path, dst)
  t.true(readFileSync(dst).equals(on), 'verify wrote')
  const c = cli(['verify', img.path, dst])
  t.is(c.status, 1)
  t.regex(c.stderr, /differs from the image between bytes 1048576 and 1052672/)
  const ok = cli(['verify', img.path, img.path + '.copy'])
  t.not(ok.status, 0)
})

test('option checking: unknown keys refused, wrong types coded', async (t) => {
  const dir = tempDir(t)
  const img = image(dir, MiB)
  const dst = join(dir, 'd')
  writeFileSync(dst, '')
  await t.throwsAsync(sk.flash(img.path, [dst], { sha256: 'xyz' }), { code: 'ERR_INVALID_ARG_VALUE', message: /SHA-256/ })
  await t.throwsAsync(sk.flash(img.path, [dst], { sha256: 5 }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(sk.flash(img.path, [dst], { seek: -1 }), { code: 'ERR_OUT_OF_RANGE' })
  await t.throwsAsync(sk.flash(img.path, [dst], { onlyChanged: 'yes' }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(sk.bmap.copy(img.path, dst, { seek: '1M' }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(sk.bmap.copy(img.path, dst, { onlychanged: true }), { code: 'ERR_INVALID_ARG_VALUE', message: /onlyChanged/ })
  await t.throwsAsync(sk.verify(img.path, dst, { onlyChanged: true }), { code: 'ERR_INVALID_ARG_VALUE' })
  await t.throwsAsync(sk.verify(img.path, dst, { sha256: 1 }), { code: 'ERR_INVALID_ARG_TYPE' })
  // Files: onlyChanged and sha256 through flash.
  const r = await sk.flash(img.path, [dst], { sha256: sha256(img.data), onlyChanged: true })
  t.true(r.destinations[0].ok, r.destinations[0].error?.message)
  t.true(readFileSync(dst).equals(img.data))
  const again = await sk.flash(img.path, [dst], { onlyChanged: true })
  t.is(again.destinations[0].bytesWritten, 0)
  t.is(again.destinations[0].retries, 0)
})

test('writeRetries / writeRetryDelay: checked, typed, and taken by flash, bmap copy and the CLI', async (t) => {
  const dir = tempDir(t)
  const img = image(dir, 2 * MiB)
  const dst = join(dir, 'd')
  writeFileSync(dst, '')
  for (const run of [(o) => sk.flash(img.path, [dst], o), (o) => sk.bmap.copy(img.path, dst, o)]) {
    await t.throwsAsync(run({ writeRetries: '3' }), { code: 'ERR_INVALID_ARG_TYPE', message: /writeRetries/ })
    await t.throwsAsync(run({ writeRetries: -1 }), { code: 'ERR_OUT_OF_RANGE' })
    await t.throwsAsync(run({ writeRetries: 1.5 }), { code: 'ERR_OUT_OF_RANGE' })
    await t.throwsAsync(run({ writeRetries: 101 }), { code: 'ERR_INVALID_ARG_VALUE', message: /at most 100/ })
    await t.throwsAsync(run({ writeRetryDelay: 60001 }), { code: 'ERR_INVALID_ARG_VALUE', message: /at most 60000/ })
    await t.throwsAsync(run({ writeretries: 1 }), { code: 'ERR_INVALID_ARG_VALUE', message: /writeRetries/ })
  }
  t.true(readFileSync(dst).length === 0, 'nothing written before the options were checked')
  const r = await sk.flash(img.path, [dst], { writeRetries: 0, writeRetryDelay: 1 })
  t.true(r.destinations[0].ok, r.destinations[0].error?.message)
  t.is(r.destinations[0].retries, 0)
  t.true(readFileSync(dst).equals(img.data))
  const dst2 = join(dir, 'd2')
  const c = await sk.bmap.copy(img.path, dst2, { createFiles: true, writeRetries: 100, writeRetryDelay: 0 })
  t.is(c.retries, 0)
  t.true(readFileSync(dst2).equals(img.data))
  const ok = cli(['bmap', 'copy', img.path, join(dir, 'd3'), '--create', '--write-retries', '2', '--write-retry-delay', '10'])
  t.is(ok.status, 0, ok.stderr)
  t.true(readFileSync(join(dir, 'd3')).equals(img.data))
  const bad = cli(['flash', img.path, dst, '--write-retries', 'many'])
  t.is(bad.status, 2)
  t.regex(bad.stderr, /write-retries/)
})

rootTest('zeroUnmapped / discard: stale random bytes in unmapped ranges are gone afterwards', async (t) => {
  const dir = tempDir(t)
  const img = join(dir, 'os.img')
  const a = randomBytes(MiB)
  const b = randomBytes(MiB)
  sparseFile(img, 6 * MiB, [[0, a], [3 * MiB, b]])
  await sk.bmap.create(img, { output: img + '.bmap' })
  for (const [opts, flags] of [[{ zeroUnmapped: true }, ['--zero-unmapped']], [{ discard: true }, ['--discard']]]) {
    const backing = join(dir, `dev-${flags[0].slice(2)}`)
    writeFileSync(backing, randomBytes(8 * MiB))
    const dev = loopDevice(t, backing)
    const r = await sk.flash(img, [dev], opts)
    t.true(r.destinations[0].ok, r.destinations[0].error?.message)
    let got = readFileSync(backing)
    t.true(got.subarray(0, MiB).equals(a) && got.subarray(3 * MiB, 4 * MiB).equals(b))
    for (const [s, e] of [[MiB, 3 * MiB], [4 * MiB, 6 * MiB]]) t.true(got.subarray(s, e).every((x) => x === 0), `${flags} ${s}`)
    // bmap copy through the CLI, after fresh stale bytes.
    writeFileSync(backing, randomBytes(8 * MiB))
    const c = cli(['bmap', 'copy', img, dev, ...flags])
    t.is(c.status, 0, c.stderr)
    got = readFileSync(backing)
    t.true(got.subarray(MiB, 3 * MiB).every((x) => x === 0), `CLI ${flags}`)
  }
  await t.throwsAsync(sk.flash(img, [join(dir, 'x')], { zeroUnmapped: true, discard: true }), { code: 'ERR_INVALID_ARG_VALUE' })
  t.is(cli(['flash', img, join(dir, 'x'), '--zero-unmapped', '--discard']).status, 2)
})

rootTest('drives.probe leaves a loop device byte-identical; flash checkCapacity passes a sound one', async (t) => {
  const dir = tempDir(t)
  const backing = join(dir, 'dev')
  const before = randomBytes(16 * MiB)
  writeFileSync(backing, before)
  const dev = loopDevice(t, backing)
  const r = await sk.drives.probe(dev)
  t.is(r.size, 16 * MiB)
  t.is(r.realSize, 16 * MiB)
  t.false(r.counterfeit)
  t.true(r.points >= 64)
  t.true(readFileSync(backing).equals(before), 'probe changed the device')
  const c = cli(['probe', dev, '--json'])
  t.is(c.status, 0, c.stderr)
  t.false(JSON.parse(c.stdout).counterfeit)
  t.true(readFileSync(backing).equals(before))
  const img = image(dir, 2 * MiB)
  const f = await sk.flash(img.path, [dev], { checkCapacity: true, eject: true })
  t.true(f.destinations[0].ok, f.destinations[0].error?.message)
  // A loop device cannot be ejected: reported, the destination still ok.
  t.false(f.destinations[0].ejected)
  t.is(f.destinations[0].ejectError?.code, 'ERR_SPARSEKIT_UNSUPPORTED')
  t.regex(f.destinations[0].ejectError.message, /loop device/)
  const ce = cli(['flash', img.path, dev, '--eject'])
  t.is(ce.status, 0, ce.stderr)
  t.regex(ce.stdout, /not ejected/)
  await t.throwsAsync(sk.drives.probe(dev, { bogus: true }), { code: 'ERR_INVALID_ARG_VALUE' })
  await t.throwsAsync(sk.flash(img.path, [dev], { checkCapacity: 1 }), { code: 'ERR_INVALID_ARG_TYPE' })
})
