// copy(): real filesystems, dd semantics, progress phases, cancellation, atomic replacement,
// hostile arguments.
import test from 'ava'
import { writeFileSync, statSync, mkdirSync, readFileSync, chmodSync, openSync, writeSync, closeSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync, execFileSync } from 'node:child_process'
import { sk, tempDir, sparseFile, randomBytes, has } from './helpers.mjs'
import { fsTest, mountFs, loopDevice, flush, md5, blocks, sampleImage } from './fs-helpers.mjs'

const MiB = 1 << 20

async function unwrittenBytes(path) {
  return (await sk.map(path)).extents.filter((e) => e.unwritten).reduce((a, e) => a + e.length, 0)
}

for (const type of ['ext4', 'xfs', 'btrfs']) {
  fsTest([type], `copy on ${type}: md5 equal and st_blocks equal`, async (t) => {
    const mnt = mountFs(t, type, 300)
    const src = sampleImage(mnt)
    flush(src)
    const dst = join(mnt, 'copy')
    const r = await sk.copy(src, dst)
    t.is(md5(dst), md5(src))
    t.is(r.size, statSync(src).size)
    // st_blocks equal to the source's, less any preallocation the filesystem left in the
    // source (XFS speculative preallocation): unwritten extents read as zeros and every
    // method copies them as holes
    const expected = blocks(src) - (await unwrittenBytes(src)) / 512
    t.is(blocks(dst), expected)
    if (type === 'ext4') {
      t.is(r.method, 'copy_file_range')
    } else {
      // same filesystem with reflink support: the data is shared, not copied
      t.is(r.method, 'reflink')
      const m = await sk.map(dst)
      t.true(m.extents.length > 0 && m.extents.every((e) => e.shared), JSON.stringify(m.extents))
    }
    // a forced read/write copy: the same bytes and blocks
    const rw = join(mnt, 'rw')
    t.is((await sk.copy(src, rw, { method: 'readwrite' })).method, 'readwrite')
    t.is(md5(rw), md5(src))
    t.is(blocks(rw), expected)
    t.is(await unwrittenBytes(rw), 0)
  })
}

fsTest(['ext4'], 'copy into an existing larger file leaves no stale bytes in holes', async (t) => {
  const mnt = mountFs(t, 'ext4', 200)
  const src = sampleImage(mnt)
  const dst = join(mnt, 'old')
  writeFileSync(dst, Buffer.alloc(80 * MiB, 0xee))
  await sk.copy(src, dst)
  t.is(md5(dst), md5(src))
  t.is(blocks(dst), blocks(src))
})

fsTest(['tmpfs', 'ext4'], 'tmpfs -> ext4 falls back across filesystems and keeps holes', async (t) => {
  const from = mountFs(t, 'tmpfs', 128)
  const to = mountFs(t, 'ext4', 128)
  const src = sampleImage(from)
  const dst = join(to, 'copy')
  const r = await sk.copy(src, dst)
  t.not(r.method, 'reflink')
  t.is(md5(dst), md5(src))
  // exactly the source's data ranges are allocated (tmpfs maps in 4 KiB pages; cp would
  // also drop zero blocks inside them, which a map-driven copy does not look for)
  const ranges = async (p) => (await sk.map(p)).extents.map((e) => [e.offset, e.offset + e.length])
  t.deepEqual(await ranges(dst), await ranges(src))
  t.is(blocks(dst) * 512, r.bytesCopied)
})

test('skip/seek/length match dd (with and without conv=notrunc)', async (t) => {
  const dir = tempDir(t)
  const src = sparseFile(join(dir, 'src'), 3 * MiB + 333, [[1000, randomBytes(70000)], [2 * MiB, randomBytes(5000)]])
  const cases = [
    [0, 0, undefined], [4096, 0, undefined], [0, 8192, undefined], [1000, 3000, 70000],
    [123, 45678, 2 * MiB], [3 * MiB, 0, undefined], [0, 0, 10 * MiB], [2 * MiB + 10, 7, 100],
  ]
  for (const notrunc of [false, true]) {
    for (const [skip, seek, length] of cases) {
      const ours = join(dir, 'ours')
      const theirs = join(dir, 'theirs')
      const before = randomBytes(2 * MiB + 17)
      writeFileSync(ours, before)
      writeFileSync(theirs, before)
      await sk.copy(src, ours, { skip, seek, length, truncate: !notrunc })
      // bs=1 would take minutes; iflag/oflag byte units give dd's exact semantics.
      const args = [`if=${src}`, `of=${theirs}`, 'bs=64K', 'iflag=skip_bytes,count_bytes', 'oflag=seek_bytes',
        `skip=${skip}`, `seek=${seek}`, 'status=none']
      if (length !== undefined) args.push(`count=${length}`)
      if (notrunc) args.push('conv=notrunc')
      // dd truncates at seek unless notrunc: with seek smaller than bs GNU dd's O_TRUNC
      // quirk loses bytes before seek, so truncate by hand and always pass notrunc.
      if (!notrunc) {
        args.push('conv=notrunc')
        execFileSync('truncate', ['-s', String(seek), theirs])
      }
      execFileSync('dd', args)
      t.is(md5(ours), md5(theirs), `skip=${skip} seek=${seek} length=${length} notrunc=${notrunc}`)
    }
  }
})

fsTest(['loop'], 'copy into a loop block device: holes skipped, or zeroed on request', async (t) => {
  const dir = tempDir(t)
  const backing = join(dir, 'disk')
  writeFileSync(backing, Buffer.alloc(16 * MiB, 0xab))
  const dev = loopDevice(t, backing)
  const src = sparseFile(join(dir, 'src'), 8 * MiB, [[MiB, randomBytes(MiB)]])
  const r = await sk.copy(src, dev)
  t.is(r.size, 16 * MiB) // never truncated
  const disk = readFileSync(backing)
  const srcBytes = readFileSync(src)
  t.true(disk.subarray(MiB, 2 * MiB).equals(srcBytes.subarray(MiB, 2 * MiB)))
  t.is(disk[0], 0xab) // hole skipped
  await sk.copy(src, dev, { zeroHoles: true })
  const zeroed = readFileSync(backing)
  t.true(zeroed.subarray(0, 8 * MiB).equals(srcBytes))
  t.is(zeroed[8 * MiB], 0xab)
  const big = sparseFile(join(dir, 'big'), 32 * MiB, [])
  const e = await t.throwsAsync(sk.copy(big, dev))
  t.is(e.code, 'ERR_SPARSEKIT_DEST_TOO_SMALL')
})

fsTest(['tmpfs'], 'ENOSPC on a full 8 MiB tmpfs is a clear ENOSPC error', async (t) => {
  const small = mountFs(t, 'tmpfs', 8)
  const dir = tempDir(t)
  const src = join(dir, 'src')
  writeFileSync(src, randomBytes(16 * MiB))
  const e = await t.throwsAsync(sk.copy(src, join(small, 'dst')))
  t.is(e.code, 'ENOSPC')
  t.is(typeof e.offset, 'number')
  t.regex(e.message, /space/i)
})

/** Check the progress contract: phases in `order`, per phase non-decreasing, one final 100% call each. */
export function checkPhases(t, seen, order) {
  const phases = seen.map((p) => p.phase).filter((p, i, a) => i === 0 || a[i - 1] !== p)
  t.deepEqual(phases, order, JSON.stringify(seen))
  for (const phase of order) {
    const of = seen.filter((p) => p.phase === phase)
    for (let i = 1; i < of.length; i++) t.true(of[i].bytesDone >= of[i - 1].bytesDone, phase)
    const finals = of.filter((p) => p.bytesDone === p.bytesTotal)
    t.is(finals.length, 1, `${phase}: ${JSON.stringify(of)}`)
    t.is(of.at(-1), finals[0])
  }
}

test('copy progress: map, copy and sync phases, each ending once at 100%', async (t) => {
  const dir = tempDir(t)
  const src = join(dir, 'src')
  writeFileSync(src, randomBytes(64 * MiB))
  const seen = []
  await sk.copy(src, join(dir, 'a'), { method: 'readwrite', fsync: true, onProgress: (p) => seen.push(p) })
  checkPhases(t, seen, ['map', 'copy', 'sync'])
  t.deepEqual(seen.filter((p) => p.phase === 'copy').at(-1), { phase: 'copy', bytesDone: 64 * MiB, bytesTotal: 64 * MiB })
  // without fsync there is no sync phase
  const plain = []
  await sk.copy(src, join(dir, 'b'), { onProgress: (p) => plain.push(p) })
  checkPhases(t, plain, ['map', 'copy'])
})

// Serial: ava runs serial tests before the concurrent ones, so the event loop is free to
// deliver the first progress call while the copy is still running.
test.serial('abort mid-copy rejects with ERR_SPARSEKIT_ABORTED and stops early', async (t) => {
  const dir = tempDir(t)
  const src = join(dir, 'src')
  const chunk = randomBytes(MiB)
  const fd = openSync(src, 'w')
  for (let i = 0; i < 512; i++) writeSync(fd, chunk)
  closeSync(fd)
  const ac = new AbortController()
  let last = -1
  const e = await t.throwsAsync(
    sk.copy(src, join(dir, 'b'), {
      method: 'readwrite',
      signal: ac.signal,
      onProgress: (p) => {
        if (p.phase !== 'copy') return
        last = p.bytesDone
        ac.abort()
      },
    }),
  )
  t.is(e.code, 'ERR_SPARSEKIT_ABORTED')
  t.true(last >= 0 && last < 512 * MiB, `progress reached ${last}`)
  t.true(statSync(join(dir, 'b')).size < 512 * MiB)
})

test('copy errors: missing source, directory, same file, bad options', async (t) => {
  const dir = tempDir(t)
  const src = join(dir, 'src')
  writeFileSync(src, 'data')
  let e = await t.throwsAsync(sk.copy(join(dir, 'missing'), join(dir, 'x')))
  t.is(e.code, 'ENOENT')
  t.is(e.path, join(dir, 'missing'))
  mkdirSync(join(dir, 'd'))
  e = await t.throwsAsync(sk.copy(join(dir, 'd'), join(dir, 'x')))
  t.is(e.code, 'EISDIR')
  e = await t.throwsAsync(sk.copy(src, join(dir, 'd')))
  t.is(e.code, 'EISDIR')
  e = await t.throwsAsync(sk.copy(src, src))
  t.is(e.code, 'ERR_SPARSEKIT_SAME_FILE')
  t.is(readFileSync(src, 'utf8'), 'data') // nothing lost
  e = await t.throwsAsync(sk.copy(src, join(dir, 'x'), { method: 'teleport' }))
  t.is(e.code, 'ERR_INVALID_ARG_VALUE')
  e = await t.throwsAsync(sk.copy(src, 5))
  t.is(e.code, 'ERR_INVALID_ARG_TYPE')
  e = await t.throwsAsync(sk.copy(src, join(dir, 'x'), { seek: -1 }))
  t.is(e.code, 'ERR_OUT_OF_RANGE')
  e = await t.throwsAsync(sk.map(join(dir, 'missing')))
  t.is(e.code, 'ENOENT')
})

test('unreadable source gives EACCES (run as nobody)', async (t) => {
  const dir = tempDir(t)
  const src = join(dir, 'secret')
  writeFileSync(src, 'x')
  chmodSync(src, 0o600)
  chmodSync(dir, 0o755)
  if (process.getuid() !== 0 || !has('setpriv')) {
    // as a normal user the file is our own; make it unreadable for us instead
    chmodSync(src, 0o000)
  }
  const script = `require(${JSON.stringify(new URL('../dist/index.js', import.meta.url).pathname)})
    .copy(${JSON.stringify(src)}, '/tmp/never-written-${process.pid}').then(() => console.log('OK'), (e) => console.log(e.code))`
  const cmd = process.getuid() === 0 && has('setpriv')
    ? ['setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', script]]
    : [process.execPath, ['-e', script]]
  const out = spawnSync(cmd[0], cmd[1], { encoding: 'utf8' })
  t.is(out.stdout.trim(), 'EACCES', out.stderr)
})


test('regression 8.6: seek + length past 2^53 is refused before anything is written', async (t) => {
  const dir = tempDir(t)
  const src = join(dir, 'src')
  writeFileSync(src, randomBytes(8192))
  const dst = join(dir, 'dst')
  writeFileSync(dst, 'keep')
  const e = await t.throwsAsync(sk.copy(src, dst, { seek: Number.MAX_SAFE_INTEGER - 100, length: 8192 }))
  t.true(e instanceof RangeError)
  t.is(e.code, 'ERR_OUT_OF_RANGE')
  t.is(readFileSync(dst, 'utf8'), 'keep')
})

fsTest(['tmpfs'], 'regression 8.10: atomic copy keeps the old file on failure, replaces it on success', async (t) => {
  const dir = tempDir(t)
  const src = join(dir, 'src')
  writeFileSync(src, randomBytes(16 * MiB))
  const small = mountFs(t, 'tmpfs', 8)
  const dst = join(small, 'dst')
  writeFileSync(dst, 'old contents')
  chmodSync(dst, 0o640)
  // 16 MiB into 8 MiB: ENOSPC half-way; the old file is intact, the temporary file gone.
  const e = await t.throwsAsync(sk.copy(src, dst, { atomic: true }))
  t.is(e.code, 'ENOSPC')
  t.is(readFileSync(dst, 'utf8'), 'old contents')
  t.deepEqual(readdirSync(small), ['dst'])
  const fits = join(dir, 'fits')
  writeFileSync(fits, 'old contents')
  chmodSync(fits, 0o640)
  await sk.copy(src, fits, { atomic: true })
  t.is(md5(fits), md5(src))
  t.is(statSync(fits).mode & 0o777, 0o640)
})

test('regression 8.5: /proc files are copied whole, not as 0 bytes', async (t) => {
  const dir = tempDir(t)
  const dst = join(dir, 'version')
  writeFileSync(dst, Buffer.alloc(MiB, 1)) // an old destination must be replaced, not kept
  const r = await sk.copy('/proc/version', dst)
  const want = readFileSync('/proc/version')
  t.true(want.length > 0)
  t.true(readFileSync(dst).equals(want))
  t.is(r.bytesCopied, want.length)
})

test('regression 8.11: Buffer (non-UTF-8) and file: URL paths work everywhere', async (t) => {
  const dir = tempDir(t)
  const name = Buffer.concat([Buffer.from(dir + '/'), Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x69])])
  writeFileSync(name, randomBytes(100000))
  const dstName = Buffer.concat([Buffer.from(dir + '/'), Buffer.from([0xc3, 0x28])])
  await sk.copy(name, dstName)
  t.true(readFileSync(dstName).equals(readFileSync(name)))
  const url = new URL('file://' + dir + '/%66%FF%FE%2E%69')
  t.is(await sk.digest(url), await sk.digest(name))
  t.is((await sk.map(url)).size, 100000)
  const e = await t.throwsAsync(sk.digest(new URL('https://example.invalid/x')))
  t.is(e.code, 'ERR_INVALID_ARG_VALUE')
})

fsTest(['loop'], 'regression 8.9: a loop device backed by the source is the source', async (t) => {
  const dir = tempDir(t)
  const img = join(dir, 'img')
  writeFileSync(img, Buffer.alloc(MiB, 0x5a))
  const dev = loopDevice(t, img)
  const e = await t.throwsAsync(sk.copy(img, dev, { seek: 4096 }))
  t.is(e.code, 'ERR_SPARSEKIT_SAME_FILE')
  t.true(readFileSync(img).equals(Buffer.alloc(MiB, 0x5a)))
})
