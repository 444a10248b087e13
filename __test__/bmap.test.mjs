// bmap.create() / bmap.copy() and `sparsekit bmap`, with bmaptool (Debian bmap-tools) as
// the oracle both ways.
import test from 'ava'
import { writeFileSync, readFileSync, openSync, writeSync, closeSync, statSync, existsSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { sk, tempDir, sparseFile, randomBytes, run, cli, testWith, isRoot, has } from './helpers.mjs'
import { md5, blocks, loopDevice } from './fs-helpers.mjs'

const MiB = 1 << 20
const withBmaptool = testWith(['bmaptool'], test)
// bmaptool logs to stderr; keep the test output readable.
const quiet = { stdio: 'pipe' }

/** An image with data in 4 places, one run of explicit zeros, an odd size. */
function image(dir, name = 'disk.img') {
  return sparseFile(join(dir, name), 40 * MiB + 1000, [
    [0, randomBytes(70000)],
    [2 * MiB, Buffer.alloc(8192)],
    [5 * MiB + 3, randomBytes(3 * MiB)],
    [40 * MiB, randomBytes(1000)],
  ])
}

/** The machine-readable parts of a bmap: counts and `first-last:checksum` per range. */
function parts(xml) {
  const num = (tag) => Number(new RegExp(`<${tag}>\\s*(\\d+)\\s*</${tag}>`).exec(xml)[1])
  const ranges = [...xml.matchAll(/<Range(?:\s+chksum="([0-9a-f]+)")?>\s*([\d-]+)\s*<\/Range>/g)].map(
    (m) => `${m[2].includes('-') ? m[2] : `${m[2]}-${m[2]}`}:${m[1] ?? ''}`,
  )
  return { size: num('ImageSize'), blocks: num('BlocksCount'), mapped: num('MappedBlocksCount'), ranges }
}

withBmaptool('create equals bmaptool create, and bmaptool copy accepts it', async (t) => {
  const dir = tempDir(t)
  const img = image(dir)
  for (const [checksum, flags] of [['sha256', []], ['none', ['--no-checksum']]]) {
    const theirs = join(dir, `bt-${checksum}.bmap`)
    run('bmaptool', ['create', ...flags, '-o', theirs, img], quiet)
    const out = join(dir, `ours-${checksum}.bmap`)
    const xml = await sk.bmap.create(img, { checksum, output: out })
    t.is(readFileSync(out, 'utf8'), xml)
    t.deepEqual(parts(xml), parts(readFileSync(theirs, 'utf8')), checksum)
    t.true(parts(xml).ranges.length >= 4)
    const dst = join(dir, `bt-copy-${checksum}`)
    run('bmaptool', ['copy', '--bmap', out, img, dst], quiet)
    t.is(md5(dst), md5(img))
  }
})

withBmaptool('copy with a bmaptool bmap: verified, sparse, read back, phases end at 100%', async (t) => {
  const dir = tempDir(t)
  const img = image(dir)
  run('bmaptool', ['create', '-o', `${img}.bmap`, img], quiet)
  const dst = join(dir, 'out.img')
  writeFileSync(dst, Buffer.alloc(50 * MiB, 0xee)) // old contents must not survive
  const seen = new Map()
  const r = await sk.bmap.copy(img, dst, { createFiles: true, readBack: true, onProgress: (p) => seen.set(p.phase, p) })
  t.is(md5(dst), md5(img))
  t.is(r.bmap, `${img}.bmap`)
  const ranges = parts(readFileSync(`${img}.bmap`, 'utf8')).ranges.length
  t.is(r.rangesVerified, ranges)
  t.is(r.rangesReadBack, ranges)
  t.is(r.imageSize, statSync(img).size)
  t.true(blocks(dst) * 512 < 5 * MiB, `allocated ${blocks(dst) * 512}`)
  t.deepEqual([...seen.keys()], ['write', 'sync', 'verify'])
  for (const p of seen.values()) t.is(p.bytesDone, p.bytesTotal, p.phase)
})

withBmaptool('a corrupted image block rejects with the range', async (t) => {
  const dir = tempDir(t)
  const img = image(dir)
  const bmapFile = join(dir, 'b.bmap')
  run('bmaptool', ['create', '-o', bmapFile, img], quiet)
  const fd = openSync(img, 'r+')
  writeSync(fd, Buffer.from('!'), 0, 1, 6 * MiB)
  closeSync(fd)
  const err = await t.throwsAsync(sk.bmap.copy(img, join(dir, 'o'), { createFiles: true, bmap: bmapFile }), { code: 'ERR_SPARSEKIT_CHECKSUM_MISMATCH' })
  t.regex(err.message, /blocks range 1280-2048/)
  t.deepEqual(err.range, { start: 1280 * 4096, length: 769 * 4096 })
  t.is(err.path, img)
  // --no-verify copies it as it is, like bmaptool's.
  await sk.bmap.copy(img, join(dir, 'o'), { createFiles: true, bmap: bmapFile, verify: false })
  t.is(md5(join(dir, 'o')), md5(img))
})

for (const [tool, args, ext] of [
  ['xz', ['-0', '-T1'], 'xz'],
  ['gzip', ['-1'], 'gz'],
  ['bzip2', ['-1'], 'bz2'],
  ['zstd', ['-1', '-q'], 'zst'],
]) {
  testWith([tool, 'bmaptool'], test)(`${tool} image: bmap found beside it, flashed and verified; bmaptool agrees`, async (t) => {
    const dir = tempDir(t)
    const img = image(dir)
    await sk.bmap.create(img, { output: join(dir, 'disk.bmap') })
    run('sh', ['-c', `${tool} ${args.join(' ')} -c '${img}' > '${img}.${ext}'`], quiet)
    const z = `${img}.${ext}`
    // disk.img.xz -> disk.bmap (the extensions taken off one by one)
    const dst = join(dir, 'out.img')
    let last
    const r = await sk.bmap.copy(z, dst, { createFiles: true, readBack: true, onProgress: (p) => p.phase === 'decompress' && (last = p) })
    t.is(r.compression, tool)
    t.is(r.bmap, join(dir, 'disk.bmap'))
    t.is(md5(dst), md5(img))
    t.is(last.bytesDone, statSync(z).size)
    // bmaptool flashes the same compressed image with the bmap we wrote.
    const dst2 = join(dir, 'bt.img')
    run('bmaptool', ['copy', '--bmap', join(dir, 'disk.bmap'), z, dst2], quiet)
    t.is(md5(dst2), md5(img))
    // Without a bmap: written whole, zeros left as holes.
    const r2 = await sk.bmap.copy(z, join(dir, 'nobmap.img'), { createFiles: true, bmap: false })
    t.is(md5(join(dir, 'nobmap.img')), md5(img))
    t.true(r2.bytesWritten < 4 * MiB)
    // A truncated stream is a coded error.
    const data = readFileSync(z)
    writeFileSync(join(dir, 'cut'), data.subarray(0, Math.floor(data.length / 2)))
    const e = await t.throwsAsync(sk.bmap.copy(join(dir, 'cut'), join(dir, 'o2'), { createFiles: true, bmap: false }))
    t.true(['ERR_SPARSEKIT_DECOMPRESS', 'ERR_SPARSEKIT_IMAGE_TRUNCATED'].includes(e.code), e.message)
  })
}

test('old bmap versions (1.2 written from the spec) copy correctly', async (t) => {
  const dir = tempDir(t)
  const img = image(dir)
  const ours = parts(await sk.bmap.create(img))
  const ranges = ours.ranges.map((r) => `    <Range> ${r.split(':')[0]} </Range>\n`).join('')
  const xml = `<?xml version="1.0" ?>\n<bmap version="1.2">\n <ImageSize> ${ours.size} </ImageSize>\n <BlockSize> 4096 </BlockSize>\n` +
    ` <BlocksCount> ${ours.blocks} </BlocksCount>\n <MappedBlocksCount> ${ours.mapped} </MappedBlocksCount>\n <BlockMap>\n${ranges} </BlockMap>\n</bmap>\n`
  writeFileSync(join(dir, 'v12.bmap'), xml)
  const r = await sk.bmap.copy(img, join(dir, 'o'), { createFiles: true, bmap: join(dir, 'v12.bmap') })
  t.is(r.rangesVerified, 0)
  t.is(md5(join(dir, 'o')), md5(img))
  // Counts that disagree: a coded error naming the line.
  writeFileSync(join(dir, 'bad.bmap'), xml.replace(`<MappedBlocksCount> ${ours.mapped} `, `<MappedBlocksCount> ${ours.mapped + 1} `))
  const e = await t.throwsAsync(sk.bmap.copy(img, join(dir, 'o'), { createFiles: true, bmap: join(dir, 'bad.bmap') }), { code: 'ERR_SPARSEKIT_BMAP_INVALID' })
  t.regex(e.message, /line 6: <MappedBlocksCount>/)
  t.is(e.path, join(dir, 'bad.bmap'))
})

/** A format 1.2 bmap (no checksums) of an image of `size` bytes (a BigInt) with `ranges`. */
function v12(size, ranges) {
  const body = ranges.map((r) => `  <Range> ${r} </Range>\n`).join('')
  return `<?xml version="1.0" ?>\n<bmap version="1.2">\n <ImageSize> ${size} </ImageSize>\n <BlockSize> 4096 </BlockSize>\n` +
    ` <BlocksCount> ${(size + 4095n) / 4096n} </BlocksCount>\n <MappedBlocksCount> ${ranges.length} </MappedBlocksCount>\n` +
    ` <BlockMap>\n${body} </BlockMap>\n</bmap>\n`
}

test('a bmap whose ImageSize is above 2^53 - 1 is refused before anything is written', async (t) => {
  const dir = tempDir(t)
  const img = join(dir, 'disk.img')
  writeFileSync(img, randomBytes(8192))
  const dst = join(dir, 'out.img')
  writeFileSync(dst, 'keep')
  for (const size of [2n ** 53n, 2n ** 60n, 2n ** 63n - 1n]) {
    const bmapFile = join(dir, 'huge.bmap')
    writeFileSync(bmapFile, v12(size, ['0', `${size / 4096n - 1n}`]))
    const e = await t.throwsAsync(sk.bmap.copy(img, dst, { bmap: bmapFile }), { code: 'ERR_SPARSEKIT_BMAP_INVALID' })
    t.regex(e.message, new RegExp(`line 3: <ImageSize> ${size} is larger than 2\\^53 - 1`))
    t.is(e.path, bmapFile)
    const f = await t.throwsAsync(sk.flash(img, [dst], { bmap: bmapFile }), { code: 'ERR_SPARSEKIT_BMAP_INVALID' })
    t.regex(f.message, /<ImageSize>/)
    t.is(readFileSync(dst, 'utf8'), 'keep')
    const c = cli(['bmap', 'copy', img, dst, '--bmap', bmapFile])
    t.is(c.status, 1)
    t.regex(c.stderr, /ERR_SPARSEKIT_BMAP_INVALID|2\^53/)
    t.is(readFileSync(dst, 'utf8'), 'keep')
  }
})

// Serial: ava runs a file's serial tests before its concurrent ones, so no other test of
// this file blocks the event loop (execFileSync of bmaptool, big sync reads) while the 5 s
// timer below runs; a blocked loop fires the expired timer before the rejection.
test.serial('abort while a large bmap is parsed rejects at once', async (t) => {
  const dir = tempDir(t)
  const img = join(dir, 'disk.img')
  writeFileSync(img, randomBytes(8192))
  // A million ranges (26 MB): parsing takes about a second (more in an unoptimised build).
  const n = 1_000_000
  const ranges = Array.from({ length: n }, (_, i) => `${2 * i}`)
  writeFileSync(join(dir, 'disk.img.bmap'), v12(BigInt(2 * n * 4096), ranges))
  const dst = join(dir, 'out.img')
  writeFileSync(dst, 'keep')
  const jobs = [
    (signal) => sk.bmap.copy(img, dst, { bmap: join(dir, 'disk.img.bmap'), signal }),
    (signal) => sk.flash(img, [dst], { signal }), // disk.img.bmap found beside the image
  ]
  for (const job of jobs) {
    const ac = new AbortController()
    const p = job(ac.signal)
    // The job's thread is started by the call itself: abort at once, while it opens or
    // parses (a timer here could fire after the second-long parse on a loaded machine).
    const aborted = Date.now()
    ac.abort()
    const settled = await Promise.race([
      p.then(() => 'resolved', (e) => e),
      new Promise((resolve) => setTimeout(resolve, 5000, 'still running 5 s after abort')),
    ])
    t.is(settled?.code, 'ERR_SPARSEKIT_ABORTED', String(settled?.message ?? settled))
    t.true(Date.now() - aborted < 5000)
    t.is(readFileSync(dst, 'utf8'), 'keep')
  }
})

test('arguments are checked; abort rejects with ERR_SPARSEKIT_ABORTED', async (t) => {
  const dir = tempDir(t)
  const img = image(dir)
  await t.throwsAsync(sk.bmap.create(img, { checksum: 'md5' }), { code: 'ERR_INVALID_ARG_VALUE' })
  await t.throwsAsync(sk.bmap.copy(img, join(dir, 'o'), { createFiles: true, bmap: true }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(sk.bmap.copy(img, join(dir, 'o'), { createFiles: true, readBack: 'yes' }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(sk.bmap.copy(join(dir, 'missing'), join(dir, 'o'), { createFiles: true }), { code: 'ENOENT' })
  await t.throwsAsync(sk.bmap.copy(img, img, { createFiles: true, bmap: false }), { code: 'ERR_SPARSEKIT_INVALID_ARG' })
  const ac = new AbortController()
  ac.abort()
  await t.throwsAsync(sk.bmap.copy(img, join(dir, 'o'), { createFiles: true, signal: ac.signal }), { code: 'ERR_SPARSEKIT_ABORTED' })
  await t.throwsAsync(sk.bmap.create(img, { signal: ac.signal }), { code: 'ERR_SPARSEKIT_ABORTED' })
})

;(isRoot && has('losetup') ? test : test.skip)('flash to a loop device; too small a device is refused untouched', async (t) => {
  const dir = tempDir(t)
  const img = image(dir)
  const xml = await sk.bmap.create(img)
  writeFileSync(join(dir, 'disk.img.bmap'), xml)
  const backing = join(dir, 'dev')
  writeFileSync(backing, Buffer.alloc(48 * MiB, 0x5a))
  const dev = loopDevice(t, backing)
  const r = await sk.bmap.copy(img, dev, { createFiles: true, readBack: true })
  t.true(r.rangesReadBack > 0)
  const devBytes = readFileSync(backing)
  const imgBytes = readFileSync(img)
  for (const range of parts(xml).ranges) {
    const [first, last] = range.split(':')[0].split('-').map(Number)
    const end = Math.min((last + 1) * 4096, imgBytes.length)
    t.true(devBytes.subarray(first * 4096, end).equals(imgBytes.subarray(first * 4096, end)))
  }
  t.is(devBytes[30 * MiB], 0x5a) // unmapped: untouched
  const small = join(dir, 'small')
  writeFileSync(small, Buffer.alloc(16 * MiB, 0x77))
  const sdev = loopDevice(t, small)
  const e = await t.throwsAsync(sk.bmap.copy(img, sdev, { createFiles: true }), { code: 'ERR_SPARSEKIT_DEST_TOO_SMALL' })
  t.is(e.path, sdev)
  t.true(readFileSync(small).every((b) => b === 0x77))
})

withBmaptool('CLI: bmap create | bmaptool copy, bmaptool create | bmap copy', async (t) => {
  const dir = tempDir(t)
  const img = image(dir)
  const c = cli(['bmap', 'create', img])
  t.is(c.status, 0, c.stderr)
  t.true(c.stdout.startsWith('<?xml'))
  writeFileSync(join(dir, 'ours.bmap'), c.stdout)
  run('bmaptool', ['copy', '--bmap', join(dir, 'ours.bmap'), img, join(dir, 'a')], quiet)
  t.is(md5(join(dir, 'a')), md5(img))
  t.is(cli(['bmap', 'create', img, '-o', join(dir, 'o.bmap')]).status, 0)
  t.is(readFileSync(join(dir, 'o.bmap'), 'utf8'), c.stdout)
  run('bmaptool', ['create', '-o', join(dir, 'bt.bmap'), img], quiet)
  const r = cli(['bmap', 'copy', '--create', img, join(dir, 'b'), '--bmap', join(dir, 'bt.bmap'), '--read-back', '--json'])
  t.is(r.status, 0, r.stderr)
  t.is(JSON.parse(r.stdout).bmap, join(dir, 'bt.bmap'))
  t.is(md5(join(dir, 'b')), md5(img))
  const nv = cli(['bmap', 'copy', '--create', img, join(dir, 'c'), '--nobmap', '--no-verify'])
  t.is(nv.status, 0, nv.stderr)
  t.regex(nv.stdout, /without a bmap/)
  t.is(md5(join(dir, 'c')), md5(img))
  t.is(cli(['bmap']).status, 2)
  t.is(cli(['bmap', 'copy', '--create', img]).status, 2)
  t.is(cli(['bmap', 'copy', '--create', img, 'x', '--bmap', 'f', '--nobmap']).status, 2)
  const bad = cli(['bmap', 'copy', '--create', img, join(dir, 'd'), '--bmap', join(dir, 'missing.bmap')])
  t.is(bad.status, 1)
  t.regex(bad.stderr, /ENOENT/)
})

// Issue 27 item 1, for bmap.copy: a missing destination is not silently created.
test('bmap.copy refuses a missing destination unless createFiles; never under /dev', async (t) => {
  const dir = tempDir(t)
  const img = image(dir)
  const plain = join(dir, 'new.img')
  const gone = `/dev/sparsekit-missing-${process.pid}-bmap`
  t.teardown(() => rmSync(gone, { force: true }))
  await t.throwsAsync(sk.bmap.copy(img, plain, { bmap: false }), { code: 'ENOENT', message: /createFiles/ })
  t.false(existsSync(plain))
  for (const createFiles of [false, true]) {
    const e = await t.throwsAsync(sk.bmap.copy(img, gone, { bmap: false, createFiles }), { code: 'ENOENT' })
    t.is(e.path, gone)
    t.false(existsSync(gone))
  }
  await sk.bmap.copy(img, plain, { bmap: false, createFiles: true })
  t.true(readFileSync(plain).equals(readFileSync(img)))
  t.is(cli(['bmap', 'copy', img, gone, '--create']).status, 1)
  t.false(existsSync(gone))
  const viaCli = join(dir, 'cli.img')
  t.is(cli(['bmap', 'copy', img, viaCli]).status, 1)
  t.is(cli(['bmap', 'copy', img, viaCli, '--create']).status, 0)
  t.true(readFileSync(viaCli).equals(readFileSync(img)))
})

// Issue 27 item 6: a local bmap.copy of a .zip wrote the archive, while a remote one
// extracted it; both now write the entry.
testWith(['zip'], test)('bmap.copy of a local zip writes its entry, not the archive', async (t) => {
  const dir = tempDir(t)
  const data = Buffer.concat([randomBytes(300000), Buffer.alloc(MiB)])
  writeFileSync(join(dir, 'os.img'), data)
  run('zip', ['-q', '-j', join(dir, 'os.zip'), join(dir, 'os.img')])
  const out = join(dir, 'out.img')
  const r = await sk.bmap.copy(join(dir, 'os.zip'), out, { createFiles: true })
  t.true(readFileSync(out).equals(data))
  t.is(r.imageSize, data.length)
  const e = await t.throwsAsync(sk.bmap.copy(join(dir, 'os.zip'), join(dir, 'nope.img')), { code: 'ENOENT' })
  t.truthy(e)
})
