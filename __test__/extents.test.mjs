import test from 'ava'
import { writeFileSync, statSync, mkdirSync, readFileSync, chmodSync, openSync, writeSync, closeSync } from 'node:fs'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { execFileSync, spawnSync } from 'node:child_process'
import { sk, tempDir, sparseFile, randomBytes, has, run, cli, testWith } from './helpers.mjs'
import { fsTest, mountFs, loopDevice, flush } from './fs-helpers.mjs'

const MiB = 1 << 20
const md5 = (p) => createHash('md5').update(readFileSync(p)).digest('hex')
const blocks = (p) => (flush(p), statSync(p).blocks)

/** A sparse image: data at 0, in the middle (unaligned), before a trailing hole; odd size. */
function sampleImage(dir, name = 'img') {
  return sparseFile(join(dir, name), 64 * MiB + 4097, [
    [0, randomBytes(64 * 1024)],
    [5 * MiB + 123, randomBytes(MiB)],
    [40 * MiB, randomBytes(3 * MiB)],
  ])
}

/** Data ranges from `filefrag -e` (4 KiB-block units on these filesystems), merged. */
function filefragExtents(path, blockSize) {
  const out = run('filefrag', ['-e', '-b' + blockSize, path])
  const ranges = []
  for (const line of out.split('\n')) {
    const m = /^\s*\d+:\s*(\d+)\.\.\s*(\d+):\s*\d+\.\.\s*\d+:\s*\d+:.*?(unwritten)?/.exec(line)
    if (!m || line.includes('unwritten')) continue
    const start = Number(m[1]) * blockSize
    const end = (Number(m[2]) + 1) * blockSize
    const last = ranges.at(-1)
    if (last && last[1] === start) last[1] = end
    else ranges.push([start, end])
  }
  return ranges
}

fsTest(['ext4'], 'map equals filefrag -e on ext4, incl. preallocated and trailing hole', async (t) => {
  const mnt = mountFs(t, 'ext4', 128)
  const img = sampleImage(mnt)
  run('fallocate', ['-o', String(20 * MiB), '-l', String(2 * MiB), img])
  flush(img)
  const m = await sk.map(img)
  t.is(m.method, 'fiemap')
  t.is(m.size, 64 * MiB + 4097)
  const data = m.extents.filter((e) => !e.unwritten).map((e) => [e.offset, e.offset + e.length])
  const frag = filefragExtents(img, m.blockSize).map(([s, e]) => [s, Math.min(e, m.size)])
  t.deepEqual(data, frag)
  t.deepEqual(m.extents.filter((e) => e.unwritten), [{ offset: 20 * MiB, length: 2 * MiB, unwritten: true }])
  // SEEK agrees once preallocated ranges count as holes
  const s = await sk.map(img, { method: 'seek' })
  t.is(s.method, 'seek')
  t.deepEqual(s.extents.map((e) => [e.offset, e.offset + e.length]), data)
})

test('map: window, none method, empty file, fully written file', async (t) => {
  const dir = tempDir(t)
  const img = sampleImage(dir)
  const full = await sk.map(img)
  const w = await sk.map(img, { start: 5 * MiB, length: 2 * MiB })
  const clip = full.extents
    .map((e) => [Math.max(e.offset, 5 * MiB), Math.min(e.offset + e.length, 7 * MiB)])
    .filter(([a, b]) => a < b)
  t.deepEqual(w.extents.map((e) => [e.offset, e.offset + e.length]), clip)
  t.deepEqual((await sk.map(img, { method: 'none' })).extents, [{ offset: 0, length: 64 * MiB + 4097 }])
  writeFileSync(join(dir, 'empty'), '')
  t.deepEqual((await sk.map(join(dir, 'empty'))).extents, [])
  writeFileSync(join(dir, 'dense'), randomBytes(3 * MiB + 1))
  t.deepEqual((await sk.map(join(dir, 'dense'))).extents, [{ offset: 0, length: 3 * MiB + 1 }])
  const e = await t.throwsAsync(sk.map(img, { start: 65 * MiB }))
  t.is(e.code, 'ERR_SPARSEKIT_OUT_OF_RANGE')
})

fsTest(['tmpfs'], 'tmpfs: auto falls back to SEEK; forced fiemap fails clearly', async (t) => {
  const mnt = mountFs(t, 'tmpfs', 128)
  const img = sampleImage(mnt)
  const m = await sk.map(img)
  t.is(m.method, 'seek')
  t.is(m.extents[0].offset, 0)
  const e = await t.throwsAsync(sk.map(img, { method: 'fiemap' }))
  t.is(e.code, 'ERR_SPARSEKIT_UNSUPPORTED')
  t.regex(e.message, /fiemap/i)
})

/** Bytes of preallocated (unwritten) extents: they read as zeros and are copied as holes. */
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
  t.is(e.code, 'ERR_SPARSEKIT_OUT_OF_RANGE')
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

test('copy progress increases and ends at 100%', async (t) => {
  const dir = tempDir(t)
  const src = join(dir, 'src')
  writeFileSync(src, randomBytes(64 * MiB))
  const seen = []
  await sk.copy(src, join(dir, 'a'), { method: 'readwrite', onProgress: (p) => seen.push(p) })
  t.deepEqual(seen.at(-1), { phase: 'copy', bytesDone: 64 * MiB, bytesTotal: 64 * MiB })
  for (let i = 1; i < seen.length; i++) t.true(seen[i].bytesDone >= seen[i - 1].bytesDone)
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
  t.is(e.code, 'ERR_SPARSEKIT_INVALID_ARG')
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

test('cli: map prints extents and a summary; --json is the API result; copy works', async (t) => {
  const dir = tempDir(t)
  const img = sampleImage(dir)
  const human = cli(['map', img])
  t.is(human.status, 0, human.stderr)
  t.regex(human.stdout, /extents?; data .* holes /)
  const js = cli(['map', img, '--json'])
  t.deepEqual(JSON.parse(js.stdout), await sk.map(img))
  const dst = join(dir, 'copy')
  const c = cli(['copy', img, dst, '--json'])
  t.is(c.status, 0, c.stderr)
  t.is(md5(dst), md5(img))
  t.is(JSON.parse(c.stdout).size, 64 * MiB + 4097)
  const part = join(dir, 'part')
  t.is(cli(['copy', img, part, '--skip', '5M', '--length', '1M']).status, 0)
  t.true(readFileSync(part).equals(readFileSync(img).subarray(5 * MiB, 6 * MiB)))
  t.is(cli(['copy', img]).status, 2)
  t.is(cli(['copy', img, dst, '--skip', 'lots']).status, 2)
  const bad = cli(['copy', join(dir, 'missing'), dst])
  t.is(bad.status, 1)
  t.regex(bad.stderr, /^sparsekit: ENOENT/)
})

fsTest(['loop'], 'digest and map of a loop block device use the device size', async (t) => {
  const dir = tempDir(t)
  const backing = join(dir, 'disk')
  const bytes = randomBytes(3 * MiB)
  writeFileSync(backing, bytes)
  const dev = loopDevice(t, backing)
  t.is(await sk.digest(dev, { algorithm: 'sha256' }), createHash('sha256').update(bytes).digest('hex'))
  t.is(await sk.digest(dev, { start: MiB, length: 10 }), createHash('sha256').update(bytes.subarray(MiB, MiB + 10)).digest('hex'))
  const m = await sk.map(dev)
  t.is(m.size, 3 * MiB)
  t.deepEqual(m.extents, [{ offset: 0, length: 3 * MiB }])
  const e = await t.throwsAsync(sk.digest(dev, { start: 3 * MiB, length: 1 }))
  t.is(e.code, 'ERR_SPARSEKIT_OUT_OF_RANGE')
})

testWith(['script'], test)('cli: a progress bar on a TTY only, ending at 100%', (t) => {
  const dir = tempDir(t)
  const src = join(dir, 'src')
  writeFileSync(src, randomBytes(20 * MiB))
  const quiet = cli(['copy', src, join(dir, 'a')])
  t.is(quiet.status, 0)
  t.is(quiet.stderr.replace(/^npm warn.*\n/gm, ''), '') // not a TTY: no progress output
  const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(new URL('../dist/cli.js', import.meta.url).pathname)} copy ${src} ${join(dir, 'b')}`
  const tty = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8' })
  t.is(tty.status, 0, tty.stderr)
  t.regex(tty.stdout, /copy \[#+\] 100% 20\.0\/20\.0 MiB/)
})
