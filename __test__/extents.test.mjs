import test from 'ava'
import { writeFileSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { sk, tempDir, randomBytes, run, cli, testWith } from './helpers.mjs'
import { fsTest, mountFs, loopDevice, flush, md5, sampleImage } from './fs-helpers.mjs'

const MiB = 1 << 20

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

fsTest(['ext4'], 'mapTable: the same extents as map, as typed arrays, flags included', async (t) => {
  const mnt = mountFs(t, 'ext4', 128)
  const img = sampleImage(mnt)
  run('fallocate', ['-o', String(20 * MiB), '-l', String(2 * MiB), img])
  flush(img)
  for (const options of [undefined, { method: 'seek' }, { start: MiB, length: 30 * MiB }]) {
    const m = await sk.map(img, options)
    const tb = await sk.mapTable(img, options)
    t.is(tb.size, m.size)
    t.is(tb.blockSize, m.blockSize)
    t.is(tb.method, m.method)
    t.is(tb.count, m.extents.length)
    t.true(tb.offsets instanceof Float64Array && tb.lengths instanceof Float64Array && tb.flags instanceof Uint8Array)
    const back = Array.from({ length: tb.count }, (_, i) => {
      const e = { offset: tb.offsets[i], length: tb.lengths[i] }
      if (tb.flags[i] & 1) e.unwritten = true
      if (tb.flags[i] & 2) e.shared = true
      return e
    })
    t.deepEqual(back, m.extents)
  }
  t.true((await sk.mapTable(img)).flags.some((f) => f & 1), 'the preallocated range is flagged unwritten')
  // The same argument checks and errors as map().
  await t.throwsAsync(sk.mapTable(img, { start: 1 << 30 }), { code: 'ERR_SPARSEKIT_OUT_OF_RANGE' })
  await t.throwsAsync(sk.mapTable(img, { colour: 1 }), { code: 'ERR_INVALID_ARG_VALUE' })
  await t.throwsAsync(sk.mapTable(join(mnt, 'missing')), { code: 'ENOENT' })
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
test('cli: map prints extents and a summary; --json is the API result; copy works', async (t) => {
  const dir = tempDir(t)
  const img = sampleImage(dir)
  const human = cli(['map', img])
  t.is(human.status, 0, human.stderr)
  t.regex(human.stdout, /extents?; data .* holes /)
  const js = cli(['map', img, '--json'])
  t.deepEqual(JSON.parse(js.stdout), await sk.map(img))
  // Byte for byte JSON.stringify of the result (the CLI writes each extent itself), flags
  // included: a preallocated range is an unwritten extent.
  t.is(js.stdout, JSON.stringify(await sk.map(img)) + '\n')
  const pre = join(dir, 'prealloc')
  writeFileSync(pre, randomBytes(8192))
  if (spawnSync('fallocate', ['-o', '65536', '-l', '65536', pre]).status === 0) {
    const p = cli(['map', pre, '--json'])
    t.is(p.stdout, JSON.stringify(await sk.map(pre)) + '\n')
    t.true(JSON.parse(p.stdout).extents.some((e) => e.unwritten), p.stdout)
    t.regex(cli(['map', pre]).stdout, / unwritten\n/)
  }
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
