// Issue 27 item 2: the progress contract of every long operation, and what each phase
// counts (data, not holes; bytes flushed, not 0/1; the compressed position of a stream of
// unknown size), plus onFail and the CLI's progress line.
import test from 'ava'
import { writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { sk, tempDir, sparseFile, randomBytes, testWith } from './helpers.mjs'
import { collect, byPhase, assertContract } from './progress-contract.mjs'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const { progressLine } = require('../dist/cli-progress.js')
const MiB = 1 << 20
const withXz = testWith(['xz'], test)
const withQemu = testWith(['qemu-img'], test)

/** 24 MiB with 3 MiB of data in three runs and holes between. */
function sparseImage(dir, name = 'disk.img') {
  return sparseFile(join(dir, name), 24 * MiB, [
    [0, randomBytes(MiB)],
    [8 * MiB, randomBytes(MiB)],
    [20 * MiB, randomBytes(MiB)],
  ])
}

test('digest, copy, bmap.create and bmap.copy keep the contract', async (t) => {
  const dir = tempDir(t)
  const img = sparseImage(dir)
  const ops = {
    digest: (onProgress) => sk.digest(img, { onProgress }),
    copy: (onProgress) => sk.copy(img, join(dir, 'c.img'), { onProgress, fsync: true }),
    'bmap.create': (onProgress) => sk.bmap.create(img, { output: join(dir, 'disk.img.bmap'), onProgress }),
    'bmap.copy': (onProgress) => sk.bmap.copy(img, join(dir, 'b.img'), { createFiles: true, readBack: true, onProgress }),
    'bmap.copy --nobmap': (onProgress) => sk.bmap.copy(img, join(dir, 'n.img'), { bmap: false, createFiles: true, readBack: true, onProgress }),
  }
  for (const [name, op] of Object.entries(ops)) {
    const c = collect()
    await op(c.onProgress)
    assertContract(t, c.calls, name)
  }
})

withXz('compressed bmap.copy and flash keep the contract', async (t) => {
  const dir = tempDir(t)
  const img = sparseImage(dir)
  await sk.bmap.create(img, { output: join(dir, 'disk.img.bmap') })
  execFileSync('xz', ['-k', '-1', img])
  for (const [name, op] of Object.entries({
    'bmap.copy xz': (onProgress) => sk.bmap.copy(img + '.xz', join(dir, 'x.img'), { createFiles: true, readBack: true, onProgress }),
    'flash xz with bmap': (onProgress) => sk.flash(img + '.xz', [join(dir, 'f1.img'), join(dir, 'f2.img')], { createFiles: true, onProgress }),
    'flash xz without bmap': (onProgress) => sk.flash(img + '.xz', [join(dir, 'f3.img')], { bmap: false, createFiles: true, onProgress }),
    'flash plain': (onProgress) => sk.flash(img, [join(dir, 'f4.img')], { createFiles: true, onProgress }),
  })) {
    const c = collect()
    await op(c.onProgress)
    assertContract(t, c.calls, name)
  }
})

withQemu('qcow2.convert and sync.files keep the contract', async (t) => {
  const dir = tempDir(t)
  const img = sparseImage(dir)
  execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', img, join(dir, 'd.qcow2')])
  let c = collect()
  await sk.qcow2.convert(join(dir, 'd.qcow2'), join(dir, 'r.img'), { onProgress: c.onProgress })
  assertContract(t, c.calls, 'qcow2.convert')
  writeFileSync(join(dir, 'old.img'), Buffer.alloc(24 * MiB))
  c = collect()
  await sk.sync.files(img, join(dir, 'old.img'), { onProgress: c.onProgress })
  assertContract(t, c.calls, 'sync.files')
})

test('copy counts data, not holes', async (t) => {
  const dir = tempDir(t)
  const img = sparseImage(dir)
  const c = collect()
  const r = await sk.copy(img, join(dir, 'c.img'), { onProgress: c.onProgress })
  const copy = byPhase(c.calls).get('copy')
  t.is(copy.at(-1).bytesTotal, 3 * MiB, JSON.stringify(copy))
  t.true(copy.every((p) => p.bytesTotal === 3 * MiB))
  t.is(r.size, 24 * MiB)
})

test('sync counts the bytes it flushes, not 0/1', async (t) => {
  const dir = tempDir(t)
  const img = sparseImage(dir)
  await sk.bmap.create(img, { output: join(dir, 'disk.img.bmap') })
  for (const op of [
    (onProgress) => sk.bmap.copy(img, join(dir, 'b.img'), { createFiles: true, onProgress }),
    (onProgress) => sk.flash(img, [join(dir, 'f.img')], { createFiles: true, onProgress }),
  ]) {
    const c = collect()
    await op(c.onProgress)
    const sync = byPhase(c.calls).get('sync')
    t.truthy(sync, JSON.stringify(c.calls))
    t.is(sync.at(-1).bytesTotal, 3 * MiB, JSON.stringify(sync))
  }
})

withXz('flash of an .img.xz without a bmap reports the compressed position against its size', async (t) => {
  const dir = tempDir(t)
  // Incompressible data, large enough for several progress ticks.
  const data = randomBytes(48 * MiB)
  writeFileSync(join(dir, 'os.img'), data)
  execFileSync('xz', ['-0', '-T1', join(dir, 'os.img')])
  const size = (await import('node:fs')).statSync(join(dir, 'os.img.xz')).size
  const c = collect()
  const r = await sk.flash(join(dir, 'os.img.xz'), [join(dir, 'out.img')], { bmap: false, createFiles: true, onProgress: c.onProgress })
  t.true(r.destinations[0].ok)
  const writing = c.calls.filter((p) => p.phase === 'write' || p.phase === 'decompress')
  t.true(writing.length > 0)
  // Every call while writing has a total: a bar can show a percentage and an ETA.
  t.true(writing.every((p) => p.bytesTotal !== undefined), JSON.stringify(writing.slice(0, 5)))
  const dec = byPhase(c.calls).get('decompress')
  if (dec) t.is(dec.at(-1).bytesTotal, size)
  assertContract(t, c.calls, 'flash xz')
})

test('onFail delivers a failed destination at once, with the same error as the result', async (t) => {
  const dir = tempDir(t)
  const data = randomBytes(32 * MiB)
  writeFileSync(join(dir, 'os.img'), data)
  const bad = join(dir, 'a-folder')
  mkdirSync(bad)
  const good = join(dir, 'good.img')
  writeFileSync(good, '')
  const events = []
  const r = await sk.flash(join(dir, 'os.img'), [good, bad], {
    onFail: (path, err) => events.push({ kind: 'fail', path, err }),
    onProgress: (p) => events.push({ kind: 'progress', p }),
  })
  const fails = events.filter((e) => e.kind === 'fail')
  t.is(fails.length, 1)
  t.is(fails[0].path, bad)
  t.true(fails[0].err instanceof Error)
  t.is(fails[0].err.code, r.destinations[1].error.code)
  t.is(fails[0].err.code, 'EISDIR')
  // Delivered while the other destination was still being written, not with the result.
  const failAt = events.indexOf(fails[0])
  const lastWrite = events.findLastIndex((e) => e.kind === 'progress' && e.p.phase === 'write')
  t.true(failAt < lastWrite, `onFail at ${failAt}, last write progress at ${lastWrite}`)
  t.true(r.destinations[0].ok)
  // Without onProgress too; a throwing onFail cancels as a throwing onProgress does.
  const alone = []
  await sk.flash(join(dir, 'os.img'), [good, bad], { onFail: (p) => alone.push(p) })
  t.deepEqual(alone, [bad])
  const e = await t.throwsAsync(
    sk.flash(join(dir, 'os.img'), [good, bad], {
      onFail: () => {
        throw new Error('boom')
      },
    }),
  )
  t.is(e.code, 'ERR_SPARSEKIT_CALLBACK')
  await t.throwsAsync(sk.flash(join(dir, 'os.img'), [good], { onFail: 5 }), { code: 'ERR_INVALID_ARG_TYPE' })
})

test('the CLI progress line: no rate for map, sync in bytes, an ETA where the total is known', (t) => {
  const map = progressLine({ phase: 'map', bytesDone: 4096 * MiB, bytesTotal: 4096 * MiB }, 0.001)
  t.notRegex(map, /MiB\/s/, map)
  t.regex(map, /100% 4096\.0\/4096\.0 MiB mapped/)
  const sync = progressLine({ phase: 'sync', bytesDone: 512 * MiB, bytesTotal: 512 * MiB }, 3)
  t.regex(sync, /512\.0\/512\.0 MiB flushed/)
  t.notRegex(sync, /MiB\/s/)
  const write = progressLine({ phase: 'write', bytesDone: 100 * MiB, bytesTotal: 400 * MiB }, 2)
  t.regex(write, / 25% 100\.0\/400\.0 MiB, 50\.0 MiB\/s, ETA 0:06$/, write)
  const stream = progressLine({ phase: 'write', bytesDone: 10 * MiB, bytesTotal: undefined }, 1)
  t.is(stream, 'write 10.0 MiB, 10.0 MiB/s')
  // Too early for a meaningful rate.
  t.notRegex(progressLine({ phase: 'copy', bytesDone: 4096 * MiB, bytesTotal: 8192 * MiB }, 0.001), /MiB\/s/)
})
