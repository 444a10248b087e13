// The qcow2 writer through the public API and the CLI, against qemu-img: importImage
// (raw, qcow2 chain, URL; zlib/zstd/none; cluster sizes; v2/v3; a delta overlay),
// exportStream (bytes == importImage's file, length announced), measure and compare
// (same numbers and offsets as qemu-img), option checks, abort and progress.
import test from 'ava'
import { readFileSync, readdirSync, existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createServer } from 'node:http'
import { execFileSync, spawnSync } from 'node:child_process'
import { sk, tempDir, sparseFile, cli, CLI, testWith } from './helpers.mjs'
import { collect, assertContract } from './progress-contract.mjs'

const qtest = testWith(['qemu-img', 'qemu-io'], test)
const MiB = 1 << 20

function sh(dir, script) {
  return execFileSync('sh', ['-c', script], { cwd: dir, encoding: 'utf8' })
}

/** qemu-img's exit status and output. */
function qemu(dir, args) {
  const r = spawnSync('qemu-img', args, { cwd: dir, encoding: 'utf8' })
  return { status: r.status, out: r.stdout + r.stderr }
}

/** A 3 MiB sparse raw file: random data, text, zeros written as data, holes. */
function rawSource(dir, name = 'src.raw') {
  const text = Buffer.from('sparsekit writes qcow2 images\n'.repeat(20000))
  const noise = Buffer.alloc(200000)
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919 + (i >> 3) * 104729) & 0xff
  return sparseFile(join(dir, name), 3 * MiB + 512, [
    [4096, noise],
    [MiB, text],
    [2 * MiB, Buffer.alloc(100000)],
    [3 * MiB + 100, Buffer.from('tail')],
  ])
}

function assertGood(t, dir, src, img, fmt = 'raw') {
  const check = qemu(dir, ['check', img])
  t.is(check.status, 0, check.out)
  const cmp = qemu(dir, ['compare', '-f', fmt, '-F', 'qcow2', src, img])
  t.is(cmp.status, 0, cmp.out)
}

const info = (dir, img) => JSON.parse(sh(dir, `qemu-img info --output=json ${img}`))

for (const [compress, clusterSize, compat] of [
  [false, 65536, '1.1'],
  ['zlib', 65536, '1.1'],
  ['zstd', 65536, '1.1'],
  ['zlib', 512, '0.10'],
  [false, 2 * MiB, '0.10'],
  ['zstd', 4096, '1.1'],
]) {
  qtest(`importImage raw: compress ${compress}, cluster ${clusterSize}, compat ${compat} is clean and equal for qemu-img`, async (t) => {
    const dir = tempDir(t)
    const src = rawSource(dir)
    const dst = join(dir, 'out.qcow2')
    const r = await sk.qcow2.importImage(src, dst, { compress, clusterSize, compat })
    assertGood(t, dir, src, dst)
    const i = info(dir, dst)
    t.is(i['virtual-size'], 3 * MiB + 512)
    t.is(i['cluster-size'], clusterSize)
    t.is(i['format-specific'].data.compat, compat)
    if (compat === '1.1') t.is(i['format-specific'].data['compression-type'], compress === 'zstd' ? 'zstd' : 'zlib')
    t.is(r.fileSize, readFileSync(dst).length)
    t.is(r.compressedClusters > 0, compress !== false)
  })
}

qtest('importImage flattens a qcow2 backing chain; extended L2', async (t) => {
  const dir = tempDir(t)
  sh(
    dir,
    "truncate -s 2M base.raw && printf hello | dd of=base.raw bs=1 seek=200000 conv=notrunc 2>/dev/null && qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2 3M && qemu-io -f qcow2 -c 'write -P 3 512k 4k' mid.qcow2 >/dev/null && qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 t.qcow2 && qemu-io -f qcow2 -c 'write -P 4 500k 100k' t.qcow2 >/dev/null",
  )
  await sk.qcow2.importImage(join(dir, 't.qcow2'), join(dir, 'flat.qcow2'), { extendedL2: true, compress: 'zlib' })
  assertGood(t, dir, 't.qcow2', 'flat.qcow2', 'qcow2')
  const i = info(dir, 'flat.qcow2')
  t.is(i['backing-filename'], undefined)
  t.true(i['format-specific'].data['extended-l2'])
})

qtest('a delta overlay on its base compares equal and holds only the changed clusters', async (t) => {
  const dir = tempDir(t)
  rawSource(dir, 'base.raw')
  sh(dir, 'qemu-img convert -O qcow2 base.raw base.qcow2 && cp base.raw new.raw && printf changed | dd of=new.raw bs=1 seek=70000 conv=notrunc 2>/dev/null && printf new | dd of=new.raw bs=1 seek=2900000 conv=notrunc 2>/dev/null')
  const r = await sk.qcow2.importImage(join(dir, 'new.raw'), join(dir, 'delta.qcow2'), { backing: { file: 'base.qcow2', format: 'qcow2' } })
  t.is(r.dataClusters, 2)
  assertGood(t, dir, 'new.raw', 'delta.qcow2')
  const i = info(dir, 'delta.qcow2')
  t.is(i['backing-filename'], 'base.qcow2')
  t.is(i['backing-filename-format'], 'qcow2')
  const map = JSON.parse(sh(dir, 'qemu-img map --output=json delta.qcow2'))
  t.is(map.filter((e) => e.depth === 0 && e.data).reduce((n, e) => n + e.length, 0), 2 * 65536)
})

qtest('exportStream gives importImage bytes and announces its length', async (t) => {
  const dir = tempDir(t)
  const src = rawSource(dir)
  for (const clusterSize of [512, 65536]) {
    await sk.qcow2.importImage(src, join(dir, 'i.qcow2'), { clusterSize })
    const { calls, onProgress } = collect()
    const s = await sk.qcow2.exportStream(src, { clusterSize, onProgress })
    assertContract(t, calls, 'exportStream')
    const chunks = []
    for await (const c of s) chunks.push(c)
    const bytes = Buffer.concat(chunks)
    t.is(bytes.length, s.length)
    t.true(bytes.equals(readFileSync(join(dir, 'i.qcow2'))))
  }
  await t.throwsAsync(sk.qcow2.exportStream(src, { compress: 'zlib' }), { code: 'ERR_SPARSEKIT_QCOW2_REFUSED' })
})

qtest('measure equals qemu-img measure --output=json', async (t) => {
  const dir = tempDir(t)
  const src = rawSource(dir)
  sh(dir, 'qemu-img convert -c -O qcow2 src.raw c.qcow2 && qemu-img bitmap --add c.qcow2 b0')
  for (const [file, opts, qopts] of [
    ['src.raw', {}, []],
    ['src.raw', { clusterSize: 512 }, ['-o', 'cluster_size=512']],
    ['src.raw', { compat: '0.10' }, ['-o', 'compat=0.10']],
    ['src.raw', { backing: true }, ['-o', 'backing_file=src.raw,backing_fmt=raw']],
    ['c.qcow2', {}, []],
    ['c.qcow2', { extendedL2: true, clusterSize: MiB }, ['-o', 'extended_l2=on,cluster_size=1M']],
  ]) {
    const theirs = sh(dir, ['qemu-img measure --output=json -O qcow2', ...qopts, file].join(' '))
    const ours = await sk.qcow2.measure(join(dir, file), opts)
    t.is(sk.qcow2.toQemuJson(ours) + '\n', theirs, `${file} ${qopts.join(' ')}`)
  }
  t.truthy(src)
})

qtest('compare agrees with qemu-img compare; the CLI exits 0, 1, 2', async (t) => {
  const dir = tempDir(t)
  sh(
    dir,
    'truncate -s 4M a.raw && printf x | dd of=a.raw bs=1 seek=70005 conv=notrunc 2>/dev/null && cp a.raw b.raw && printf y | dd of=b.raw bs=1 seek=3000000 conv=notrunc 2>/dev/null && cp a.raw big.raw && truncate -s 5M big.raw && qemu-img convert -O qcow2 a.raw a.qcow2',
  )
  for (const [x, y, strict] of [
    ['a.raw', 'b.raw', false],
    ['a.raw', 'a.qcow2', false],
    ['a.raw', 'a.qcow2', true],
    ['a.raw', 'big.raw', false],
    ['a.raw', 'big.raw', true],
    ['b.raw', 'a.qcow2', false],
  ]) {
    const q = qemu(dir, ['compare', ...(strict ? ['-s'] : []), x, y])
    const r = await sk.qcow2.compare(join(dir, x), join(dir, y), { strict })
    t.is(r.message + '\n', q.out, `${x} ${y} ${strict}`)
    t.is(r.identical ? 0 : 1, q.status)
    const c = cli(['qcow2', 'compare', ...(strict ? ['-s'] : []), join(dir, x), join(dir, y)])
    t.is(c.status, q.status)
    t.is(c.stdout, q.out)
  }
  const r = await sk.qcow2.compare(join(dir, 'a.raw'), join(dir, 'b.raw'))
  t.is(r.offset, 2999808)
  t.is(cli(['qcow2', 'compare', join(dir, 'a.raw'), join(dir, 'nope')]).status, 2)
})

test('options are checked before anything is written', async (t) => {
  const dir = tempDir(t)
  const src = rawSource(dir)
  const dst = join(dir, 'x.qcow2')
  for (const [opts, code] of [
    [{ compres: 'zlib' }, 'ERR_INVALID_ARG_VALUE'],
    [{ compress: 'lz4' }, 'ERR_INVALID_ARG_VALUE'],
    [{ compress: true }, 'ERR_INVALID_ARG_TYPE'],
    [{ clusterSize: 1000 }, 'ERR_INVALID_ARG_VALUE'],
    [{ clusterSize: -1 }, 'ERR_OUT_OF_RANGE'],
    [{ compat: '2' }, 'ERR_INVALID_ARG_VALUE'],
    [{ backing: { file: 'b' } }, 'ERR_INVALID_ARG_TYPE'],
    [{ backing: { file: 'b', format: 'vmdk' } }, 'ERR_INVALID_ARG_VALUE'],
    [{ compat: '0.10', compress: 'zstd' }, 'ERR_SPARSEKIT_QCOW2_REFUSED'],
    [{ extendedL2: true, clusterSize: 4096 }, 'ERR_SPARSEKIT_QCOW2_REFUSED'],
    [{ backing: { file: 'missing.qcow2', format: 'qcow2' } }, 'ERR_SPARSEKIT_QCOW2_BACKING'],
  ]) {
    await t.throwsAsync(sk.qcow2.importImage(src, dst, opts), { code }, JSON.stringify(opts))
    t.false(existsSync(dst))
  }
  await t.throwsAsync(sk.qcow2.importImage(join(dir, 'nope'), dst), { code: 'ENOENT' })
  t.deepEqual(readdirSync(dir), ['src.raw'])
})

test('abort leaves no image and the old file in place; progress follows the contract', async (t) => {
  const dir = tempDir(t)
  // Several windows of work, so the abort (asked at the first progress call) lands while
  // clusters are still being compressed.
  const big = Buffer.alloc(32 * MiB)
  for (let i = 0; i < big.length; i += 512) big.writeUInt32LE(i * 2654435761 >>> 0, i)
  writeFileSync(join(dir, 'src.raw'), big)
  const dst = join(dir, 'x.qcow2')
  writeFileSync(dst, 'old')
  // The source is a URL whose every range answer waits 100 ms: the import needs many of
  // them, so an abort 300 ms in always lands mid-work, however fast the machine is (a
  // local file can be imported whole before the first progress message reaches JS).
  const server = createServer((req, res) => {
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
    const a = m ? Number(m[1]) : 0
    const b = m && m[2] !== '' ? Math.min(Number(m[2]), big.length - 1) : big.length - 1
    setTimeout(() => {
      res.writeHead(m ? 206 : 200, { 'content-length': b + 1 - a, 'accept-ranges': 'bytes', ...(m ? { 'content-range': `bytes ${a}-${b}/${big.length}` } : {}) })
      res.end(req.method === 'HEAD' ? undefined : big.subarray(a, b + 1))
    }, 100)
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise((r) => server.close(r)))
  const url = `http://127.0.0.1:${server.address().port}/src.raw`
  const ac = new AbortController()
  setTimeout(() => ac.abort(), 300)
  const e = await t.throwsAsync(sk.qcow2.importImage(url, dst, { compress: 'zlib', signal: ac.signal }))
  t.is(e.code, 'ERR_SPARSEKIT_ABORTED')
  t.is(readFileSync(dst, 'utf8'), 'old')
  t.deepEqual(readdirSync(dir).sort(), ['src.raw', 'x.qcow2'])
  const { calls, onProgress } = collect()
  await sk.qcow2.importImage(join(dir, 'src.raw'), dst, { onProgress })
  assertContract(t, calls, 'importImage')
  // One pass over the source ('write'), then the replaced file synced.
  t.deepEqual([...new Set(calls.map((c) => c.phase))], ['write', 'sync'])
})

/** A plain HTTP server on loopback with `Range: bytes=A-B` answers. */
async function rangeServer(t, files) {
  const server = createServer((req, res) => {
    const data = files[req.url.slice(1)]
    if (!data) return res.writeHead(404, { 'content-length': 0 }).end()
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
    if (!m || Number(m[1]) >= data.length) return res.writeHead(200, { 'content-length': data.length, 'accept-ranges': 'bytes' }).end(data)
    const a = Number(m[1])
    const b = Math.min(m[2] === '' ? data.length - 1 : Number(m[2]), data.length - 1)
    res.writeHead(206, { 'content-length': b + 1 - a, 'content-range': `bytes ${a}-${b}/${data.length}`, 'accept-ranges': 'bytes' })
    res.end(data.subarray(a, b + 1))
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise((r) => server.close(r)))
  server.unref()
  return (p) => `http://127.0.0.1:${server.address().port}/${p}`
}

qtest('importImage of an http URL (raw and qcow2) reads ranges and writes an equal image', async (t) => {
  const dir = tempDir(t)
  const src = rawSource(dir)
  sh(dir, 'qemu-img convert -c -O qcow2 src.raw src.qcow2')
  const url = await rangeServer(t, { 'disk.raw': readFileSync(src), 'disk.qcow2': readFileSync(join(dir, 'src.qcow2')) })
  await sk.qcow2.importImage(url('disk.raw'), join(dir, 'u1.qcow2'), { compress: 'zstd' })
  assertGood(t, dir, 'src.raw', 'u1.qcow2')
  await sk.qcow2.importImage(new URL(url('disk.qcow2')), join(dir, 'u2.qcow2'))
  assertGood(t, dir, 'src.raw', 'u2.qcow2')
  // The same bytes as from the local file.
  await sk.qcow2.importImage(src, join(dir, 'l1.qcow2'), { compress: 'zstd' })
  t.true(readFileSync(join(dir, 'u1.qcow2')).equals(readFileSync(join(dir, 'l1.qcow2'))))
})

qtest('CLI: qcow2 import, export (stdout) and measure', (t) => {
  const dir = tempDir(t)
  const src = rawSource(dir)
  let r = cli(['qcow2', 'import', '-c', 'zstd', '--cluster-size', '16K', src, join(dir, 'c.qcow2')])
  t.is(r.status, 0, r.stderr)
  assertGood(t, dir, 'src.raw', 'c.qcow2')
  t.is(info(dir, 'c.qcow2')['cluster-size'], 16384)
  r = cli(['qcow2', 'import', src, join(dir, 'i.qcow2')])
  t.is(r.status, 0, r.stderr)
  const out = spawnSync(process.execPath, [CLI, 'qcow2', 'export', src], { maxBuffer: 64 * MiB })
  t.is(out.status, 0, String(out.stderr))
  t.true(out.stdout.equals(readFileSync(join(dir, 'i.qcow2'))))
  r = cli(['qcow2', 'export', '--length', src])
  t.is(Number(r.stdout), out.stdout.length)
  r = cli(['qcow2', 'measure', '--json', src])
  t.is(r.stdout, sh(dir, 'qemu-img measure --output=json -O qcow2 src.raw'))
  r = cli(['qcow2', 'import', '--backing', 'x.qcow2', src, join(dir, 'd.qcow2')])
  t.is(r.status, 2)
})

// Trim: a 64 MiB disk (MBR or GPT) with a FAT32 and an ext4 partition holding files, some
// deleted (their data left in free space). Imported with `trim`, the image leaves out the
// clusters lying in free space only: qemu-img check clean; converted back to raw, both
// file systems check clean (fsck.vfat -n, e2fsck -fn on the partitions cut out) and the
// files read back equal; the deleted files' data is gone; fewer clusters than without trim.
const TRIM_TOOLS = ['qemu-img', 'sfdisk', 'mkfs.vfat', 'fsck.vfat', 'mcopy', 'mdel', 'mtype', 'mkfs.ext4', 'e2fsck', 'debugfs']
const FATP = { start: MiB, length: 40 * MiB }
const EXTP = { start: 41 * MiB, length: 22 * MiB }

/** Bytes that do not compress and that no file system writes by itself. */
function noise(n, seed) {
  const b = Buffer.alloc(n)
  let x = seed >>> 0 || 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    b[i] = x & 0xff
  }
  return b
}

function trimDisk(dir, label) {
  const files = {
    keep: noise(300000, 1),
    gone: noise(3 * MiB, 2),
    text: Buffer.from('trimmed qcow2 images keep every file\n'.repeat(5000)),
  }
  for (const [n, b] of Object.entries(files)) writeFileSync(join(dir, n), b)
  const img = join(dir, 'disk.img')
  sh(dir, 'truncate -s 64M disk.img')
  const [t1, t2] = label === 'gpt' ? ['EBD0A0A2-B9E5-4433-87C0-68B6B72699C7', '0FC63DAF-8483-4772-8E79-3D69D8477DE4'] : ['c', '83']
  execFileSync('sfdisk', ['-q', img], {
    input: `label: ${label}\nstart=${FATP.start / 512}, size=${FATP.length / 512}, type=${t1}\nstart=${EXTP.start / 512}, size=${EXTP.length / 512}, type=${t2}\n`,
  })
  // FAT32: keep and text stay, gone is deleted (its clusters free, the data still there).
  sh(dir, `truncate -s ${FATP.length} fat.part && mkfs.vfat -F 32 fat.part >/dev/null && mcopy -i fat.part keep text gone ::/ && mdel -i fat.part ::/gone`)
  // ext4: files from a folder, then one removed with debugfs (blocks freed, data left).
  sh(dir, `mkdir -p root && cp keep text gone root/ && truncate -s ${EXTP.length} ext.part && mkfs.ext4 -q -F -d root ext.part && debugfs -w -R 'rm /gone' ext.part >/dev/null 2>&1`)
  for (const [part, at] of [['fat.part', FATP], ['ext.part', EXTP]]) {
    sh(dir, `dd if=${part} of=disk.img bs=1M seek=${at.start / MiB} conv=notrunc status=none`)
  }
  // The deleted data really is in the raw disk before the import.
  t_assertHas(readFileSync(img), files.gone.subarray(0, 4096))
  return { img, files }
}

function t_assertHas(buf, needle) {
  if (buf.indexOf(needle) < 0) throw new Error('test setup: the deleted data is not in the disk image')
}

/** Convert `q` back to raw, cut the partitions out, check them and read the files. */
function checkTrimmed(t, dir, q, files) {
  sh(dir, `qemu-img convert -O raw ${q} back.raw`)
  const raw = readFileSync(join(dir, 'back.raw'))
  writeFileSync(join(dir, 'fat.back'), raw.subarray(FATP.start, FATP.start + FATP.length))
  writeFileSync(join(dir, 'ext.back'), raw.subarray(EXTP.start, EXTP.start + EXTP.length))
  const fsck = spawnSync('fsck.vfat', ['-n', 'fat.back'], { cwd: dir, encoding: 'utf8' })
  t.is(fsck.status, 0, fsck.stdout + fsck.stderr)
  const e2 = spawnSync('e2fsck', ['-fn', 'ext.back'], { cwd: dir, encoding: 'utf8' })
  t.is(e2.status, 0, e2.stdout + e2.stderr)
  for (const f of ['keep', 'text']) {
    t.true(execFileSync('mtype', ['-i', 'fat.back', `::/${f}`], { cwd: dir }).equals(files[f]), `FAT ${f}`)
    t.true(execFileSync('debugfs', ['-R', `cat /${f}`, 'ext.back'], { cwd: dir, stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 16 * MiB }).equals(files[f]), `ext4 ${f}`)
  }
  // The deleted file's data lay in free space (but for the clusters it shares with the
  // files before and after it): its middle is not in the image any more, in neither
  // file system (both copies were the same bytes).
  for (const at of [MiB, 2 * MiB]) t.is(raw.indexOf(files.gone.subarray(at, at + 4096)), -1, `deleted data at ${at} left out`)
}

for (const [label, compress] of [['dos', false], ['gpt', 'zlib']]) {
  testWith(TRIM_TOOLS, test)(`importImage trim (${label}, FAT32 + ext4, compress ${compress}): free clusters left out, file systems clean, files equal`, async (t) => {
    const dir = tempDir(t)
    const { img, files } = trimDisk(dir, label)
    const full = await sk.qcow2.importImage(img, join(dir, 'full.qcow2'), { compress })
    const { calls, onProgress } = collect()
    const r = await sk.qcow2.importImage(img, join(dir, 'trim.qcow2'), { compress, trim: true, onProgress })
    assertContract(t, calls, 'importImage')
    // The file systems read first ('map'), then one pass over what they use ('write').
    t.deepEqual([...new Set(calls.map((c) => c.phase))], ['map', 'write'])
    const check = qemu(dir, ['check', 'trim.qcow2'])
    t.is(check.status, 0, check.out)
    const stored = (x) => x.dataClusters + x.compressedClusters
    // Without trim the deleted files (3 MiB each, noise) are stored: 96 clusters or more.
    t.true(stored(r) + 90 < stored(full), `trim ${stored(r)} clusters, full ${stored(full)}`)
    t.true(r.fileSize < full.fileSize)
    checkTrimmed(t, dir, 'trim.qcow2', files)
    if (!compress) {
      // The stream with trim: the same bytes as the import, its length announced.
      const s = await sk.qcow2.exportStream(img, { trim: true })
      const chunks = []
      for await (const c of s) chunks.push(c)
      const got = Buffer.concat(chunks)
      t.is(got.length, s.length)
      t.true(got.equals(readFileSync(join(dir, 'trim.qcow2'))), 'stream == import')
      // The CLI: --trim gives the same file.
      const c = cli(['qcow2', 'import', '--trim', img, join(dir, 'cli.qcow2')])
      t.is(c.status, 0, c.stderr)
      t.true(readFileSync(join(dir, 'cli.qcow2')).equals(readFileSync(join(dir, 'trim.qcow2'))), 'CLI == API')
    }
  })
}

test('importImage trim must be a boolean', async (t) => {
  const dir = tempDir(t)
  const src = rawSource(dir)
  const e = await t.throwsAsync(sk.qcow2.importImage(src, join(dir, 'x.qcow2'), { trim: 'yes' }))
  t.is(e.code, 'ERR_INVALID_ARG_TYPE')
  t.false(existsSync(join(dir, 'x.qcow2')))
})
