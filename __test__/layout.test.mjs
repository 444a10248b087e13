import test from 'ava'
import { writeFileSync, readFileSync, openSync, closeSync, ftruncateSync } from 'node:fs'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import { sk, tempDir, run, cli, testWith } from './helpers.mjs'

const MiB = 1 << 20

/** An ext4 image made by mkfs.ext4 on a plain file (no root needed). */
function ext4Image(t, mib = 32) {
  const img = join(tempDir(t), 'e.img')
  run('truncate', ['-s', `${mib}M`, img])
  run('mkfs.ext4', ['-q', '-F', '-L', 'lay', img])
  return img
}

/** `dumpe2fs -h`'s used bytes: size minus free blocks. */
function ext4Used(img, size) {
  const h = run('dumpe2fs', ['-h', img], { stdio: ['ignore', 'pipe', 'ignore'] })
  const num = (k) => Number(new RegExp(`^${k}:\\s*(\\d+)`, 'm').exec(h)[1])
  return size - num('Free blocks') * num('Block size')
}

function checkRanges(t, l) {
  let pos = -1
  let sum = 0
  for (const r of l.used) {
    t.true(r.offset > pos && r.length > 0 && r.offset + r.length <= l.size)
    pos = r.offset + r.length
    sum += r.length
  }
  t.is(sum, l.usedBytes)
}

testWith(['mkfs.ext4', 'dumpe2fs'], test)('layout of a whole-disk ext4: used bytes as dumpe2fs reports', async (t) => {
  const img = ext4Image(t)
  const l = await sk.layout(img)
  t.is(l.table, 'none')
  t.is(l.size, 32 * MiB)
  t.is(l.partitions.length, 1)
  const [p] = l.partitions
  t.like(p, { number: 0, start: 0, length: 32 * MiB, filesystem: 'ext4', label: 'lay', state: 'clean', type: '' })
  t.regex(p.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-/)
  t.false('reason' in p)
  t.is(p.usedBytes, ext4Used(img, 32 * MiB))
  t.true(l.usedBytes < 8 * MiB)
  checkRanges(t, l)
})

testWith(['mkfs.ext4', 'mkfs.vfat', 'sfdisk'], test)('layout of a GPT image: partitions, types, names, file systems', async (t) => {
  const dir = tempDir(t)
  const img = join(dir, 'g.img')
  run('truncate', ['-s', '40M', img])
  run('sfdisk', ['-q', img], { input: 'label: gpt\nsize=16MiB, type=L, name=root\nsize=8MiB, type=U, name=esp\nsize=4MiB, type=L\n' })
  const e = join(dir, 'e.img')
  const f = join(dir, 'f.img')
  run('truncate', ['-s', '16M', e])
  run('mkfs.ext4', ['-q', '-F', e])
  run('truncate', ['-s', '8M', f])
  run('mkfs.vfat', ['-n', 'ESP', f])
  run('dd', [`if=${e}`, `of=${img}`, 'bs=1M', 'seek=1', 'conv=notrunc', 'status=none'])
  run('dd', [`if=${f}`, `of=${img}`, 'bs=1M', 'seek=17', 'conv=notrunc', 'status=none'])
  const l = await sk.layout(img)
  t.is(l.table, 'gpt')
  t.is(l.sectorSize, 512)
  t.false(l.hybridMbr)
  t.deepEqual(l.warnings, [])
  t.deepEqual(
    l.partitions.map((p) => [p.number, p.start, p.length, p.typeName, p.name, p.filesystem, p.state]),
    [
      [1, 1 * MiB, 16 * MiB, 'Linux filesystem', 'root', 'ext4', 'clean'],
      [2, 17 * MiB, 8 * MiB, 'EFI System', 'esp', 'vfat', 'clean'],
      [3, 25 * MiB, 4 * MiB, 'Linux filesystem', undefined, null, 'unknown'],
    ],
  )
  t.is(l.partitions[1].label, 'ESP')
  t.is(l.partitions[2].usedBytes, 4 * MiB)
  t.is(l.partitions[2].reason, 'no file system this reader knows')
  t.regex(l.partitions[0].partuuid, /^[0-9a-f-]{36}$/)
  // The table, the gaps and the backup GPT are used.
  t.deepEqual(l.used[0].offset, 0)
  t.is(l.used.at(-1).offset + l.used.at(-1).length, 40 * MiB)
  checkRanges(t, l)
})

/** An MBR whose second EBR links back to itself. */
function ebrLoop(t) {
  const img = join(tempDir(t), 'loop.img')
  const b = Buffer.alloc(16 * MiB)
  const entry = (sector, i, type, lba, n) => {
    const o = sector * 512 + 446 + 16 * i
    b[o + 4] = type
    b.writeUInt32LE(lba, o + 8)
    b.writeUInt32LE(n, o + 12)
    b[sector * 512 + 510] = 0x55
    b[sector * 512 + 511] = 0xaa
  }
  entry(0, 0, 0x05, 2048, 20000)
  entry(2048, 0, 0x83, 63, 100)
  entry(2048, 1, 0x05, 1000, 1000)
  entry(3048, 0, 0x83, 63, 100)
  entry(3048, 1, 0x05, 1000, 1000)
  writeFileSync(img, b)
  return img
}

test('a broken partition table rejects with ERR_SPARSEKIT_LAYOUT_CORRUPT, path and offset', async (t) => {
  const img = ebrLoop(t)
  const err = await t.throwsAsync(sk.layout(img), { code: 'ERR_SPARSEKIT_LAYOUT_CORRUPT' })
  t.is(err.path, img)
  t.is(err.offset, 3048 * 512)
  t.regex(err.message, /EBR.*loops/)
})

test('all zeros: no table, all used', async (t) => {
  const img = join(tempDir(t), 'z.img')
  writeFileSync(img, Buffer.alloc(MiB))
  const l = await sk.layout(img)
  t.like(l, { table: 'none', usedBytes: MiB, used: [{ offset: 0, length: MiB }] })
  t.like(l.partitions[0], { filesystem: null, state: 'unknown' })
})

testWith(['mkfs.ext4', 'debugfs'], test)('a dirty ext4 is all used', async (t) => {
  const img = ext4Image(t, 16)
  run('debugfs', ['-w', '-R', 'feature needs_recovery', img], { stdio: 'ignore' })
  const l = await sk.layout(img)
  t.like(l.partitions[0], { filesystem: 'ext4', state: 'dirty', usedBytes: 16 * MiB })
  t.regex(l.partitions[0].reason, /needs_recovery/)
})

testWith(['mkfs.ext4'], test)('a truncated whole-disk ext4 is all used', async (t) => {
  const img = ext4Image(t, 16)
  const fd = openSync(img, 'r+')
  ftruncateSync(fd, 10 * MiB)
  closeSync(fd)
  const l = await sk.layout(img)
  t.like(l.partitions[0], { filesystem: 'ext4', state: 'unknown', usedBytes: 10 * MiB })
})

test('arguments, missing files and cancellation', async (t) => {
  await t.throwsAsync(sk.layout(42), { code: 'ERR_INVALID_ARG_TYPE', instanceOf: TypeError })
  await t.throwsAsync(sk.layout('/x', { bogus: 1 }), { code: 'ERR_INVALID_ARG_VALUE' })
  await t.throwsAsync(sk.layout('/x', { onProgress: 3 }), { code: 'ERR_INVALID_ARG_TYPE' })
  const e = await t.throwsAsync(sk.layout('/nonexistent/disk.img'), { code: 'ENOENT' })
  t.is(e.path, '/nonexistent/disk.img')
  const img = join(tempDir(t), 'z.img')
  writeFileSync(img, Buffer.alloc(MiB))
  await t.throwsAsync(sk.layout(img, { signal: AbortSignal.abort() }), { code: 'ERR_SPARSEKIT_ABORTED' })
})

test('onProgress: phase map, ends at 100%', async (t) => {
  const img = ebrLoop(t).replace('loop.img', 'ok.img')
  writeFileSync(img, Buffer.alloc(4 * MiB))
  const seen = []
  await sk.layout(img, { onProgress: (p) => seen.push(p) })
  t.true(seen.length >= 1)
  t.deepEqual(seen.at(-1), { phase: 'map', bytesDone: 4 * MiB, bytesTotal: 4 * MiB })
})

testWith(['mkfs.ext4'], test)('CLI: sparsekit layout IMAGE [--json]', async (t) => {
  const img = ext4Image(t, 16)
  const j = cli(['layout', img, '--json'])
  t.is(j.status, 0, j.stderr)
  const api = await sk.layout(img)
  t.deepEqual(JSON.parse(j.stdout), JSON.parse(JSON.stringify(api)))
  const txt = cli(['layout', img])
  t.is(txt.status, 0, txt.stderr)
  t.regex(txt.stdout, /table none/)
  t.regex(txt.stdout, /ext4 "lay" [0-9a-f-]{36}\s+used .*clean/)
  const bad = cli(['layout', ebrLoop(t)])
  t.is(bad.status, 1)
  t.regex(bad.stderr, /EBR/)
  t.is(bad.stderr.trim().split('\n').length, 1)
  t.is(cli(['layout']).status, 2)
  t.is(cli(['layout', '/nonexistent.img']).status, 1)
})

/** A fully allocated ext4 image (mkfs told not to discard): sparsify has work to do. */
function allocatedExt4(t, mib = 32) {
  const img = join(tempDir(t), 'a.img')
  run('fallocate', ['-l', `${mib}M`, img])
  run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', img])
  return img
}

testWith(['mkfs.ext4', 'e2fsck', 'fallocate'], test)('sparsify punches the free blocks; e2fsck stays clean', async (t) => {
  const img = allocatedExt4(t)
  const l = await sk.layout(img)
  const seen = new Set()
  const r = await sk.sparsify(img, { onProgress: (p) => seen.add(p.phase) })
  t.is(r.size, 32 * MiB)
  t.is(r.usedBytes, l.usedBytes)
  t.is(r.freedBytes, 32 * MiB - l.usedBytes)
  t.true(r.allocatedBefore >= 32 * MiB)
  t.true(r.allocatedAfter <= l.usedBytes + MiB, `${r.allocatedAfter} allocated, ${l.usedBytes} used`)
  t.deepEqual([...seen].sort(), ['map', 'write'])
  run('e2fsck', ['-fn', img], { stdio: 'ignore' })
  // Again: nothing left to free, same answer.
  const again = await sk.sparsify(img)
  t.is(again.allocatedAfter, r.allocatedAfter)
})

testWith(['mkfs.ext4', 'debugfs', 'fallocate'], test)('sparsify refuses a dirty file system and writes nothing', async (t) => {
  const img = allocatedExt4(t, 16)
  run('debugfs', ['-w', '-R', 'feature needs_recovery', img], { stdio: 'ignore' })
  const err = await t.throwsAsync(sk.sparsify(img), { code: 'ERR_SPARSEKIT_LAYOUT_DIRTY' })
  t.is(err.path, img)
  t.regex(err.message, /needs_recovery/)
  const l = await sk.layout(img)
  t.is(l.partitions[0].state, 'dirty')
})

test('sparsify: arguments and what is not an image', async (t) => {
  await t.throwsAsync(sk.sparsify('/x', { discard: 'yes' }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(sk.sparsify('/x', { bmap: 1 }), { code: 'ERR_INVALID_ARG_VALUE' })
  await t.throwsAsync(sk.sparsify('/dev/null'), { code: 'ERR_SPARSEKIT_LAYOUT_REFUSED' })
  await t.throwsAsync(sk.sparsify('/nonexistent.img'), { code: 'ENOENT' })
})

testWith(['mkfs.ext4', 'fallocate'], test)('CLI: sparsekit sparsify IMAGE [--json]', async (t) => {
  const img = allocatedExt4(t, 16)
  const r = cli(['sparsify', img])
  t.is(r.status, 0, r.stderr)
  t.regex(r.stdout, /freed .* allocated .* -> /)
  const j = cli(['sparsify', img, '--json'])
  t.is(j.status, 0, j.stderr)
  t.like(JSON.parse(j.stdout), { size: 16 * MiB })
  const bad = cli(['sparsify', '/dev/null'])
  t.is(bad.status, 1)
  t.regex(bad.stderr, /discard|neither/)
})

testWith(['mkfs.ext4', 'fallocate', 'bmaptool', 'e2fsck', 'debugfs'], test)(
  'bmap.create({ filesystems: true }) of an image without holes; bmaptool copy gives a clean file system',
  async (t) => {
    const dir = tempDir(t)
    const src = join(dir, 'src')
    run('mkdir', ['-p', src])
    const files = {}
    for (let i = 0; i < 6; i++) {
      const data = Buffer.alloc(50000 + i * 300000)
      for (let j = 0; j < data.length; j += 4) data.writeUInt32LE((j * 2654435761 + i) >>> 0, j)
      writeFileSync(join(src, `f${i}`), data)
      files[`f${i}`] = createHash('sha256').update(data).digest('hex')
    }
    const img = join(dir, 'full.img')
    // Written zeros (not fallocate: unwritten extents read as zeros and bmaps skip them).
    run('dd', ['if=/dev/zero', `of=${img}`, 'bs=1M', 'count=48', 'status=none'])
    run('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', '-d', src, img])
    const plain = await sk.bmap.create(img)
    const fsxml = await sk.bmap.create(img, { filesystems: true, output: join(dir, 'full.bmap') })
    const mapped = (xml) => Number(/<MappedBlocksCount>\s*(\d+)/.exec(xml)[1]) * Number(/<BlockSize>\s*(\d+)/.exec(xml)[1])
    const l = await sk.layout(img)
    t.true(mapped(plain) > 40 * MiB, 'almost no holes: bmaptool-style create maps nearly everything')
    t.true(mapped(fsxml) <= l.usedBytes + 4096 * l.used.length, `${mapped(fsxml)} mapped, ${l.usedBytes} used`)
    t.true(mapped(fsxml) < 12 * MiB)
    const dst = join(dir, 'dst.img')
    run('bmaptool', ['-q', 'copy', '--bmap', join(dir, 'full.bmap'), img, dst], { stdio: 'ignore' })
    run('e2fsck', ['-fn', dst], { stdio: 'ignore' })
    for (const [name, sum] of Object.entries(files)) {
      const out = join(dir, `out-${name}`)
      run('debugfs', ['-R', `dump /${name} ${out}`, dst], { stdio: 'ignore' })
      t.is(createHash('sha256').update(readFileSync(out)).digest('hex'), sum, name)
    }
    // The CLI: bmap create --fs.
    const r = cli(['bmap', 'create', img, '--fs'])
    t.is(r.status, 0, r.stderr)
    t.is(mapped(r.stdout), mapped(fsxml))
    await t.throwsAsync(sk.bmap.create(img, { filesystems: 1 }), { code: 'ERR_INVALID_ARG_TYPE' })
  },
)


testWith(['mkfs.ext4', 'sfdisk'], test)('layoutRanges streams the same ranges as layout().used, then the layout', async (t) => {
  const dir = tempDir(t)
  const img = join(dir, 'g.img')
  run('truncate', ['-s', '40M', img])
  run('sfdisk', ['-q', img], { input: 'label: dos\nsize=16MiB, type=83\ntype=5\nsize=8MiB, type=83\n' })
  const e = join(dir, 'e.img')
  run('truncate', ['-s', '16M', e])
  run('mkfs.ext4', ['-q', '-F', e])
  run('dd', [`if=${e}`, `of=${img}`, 'bs=1M', 'seek=1', 'conv=notrunc', 'status=none'])
  const l = await sk.layout(img)
  let tail
  const got = []
  for await (const r of sk.layoutRanges(img, { onLayout: (x) => (tail = x) })) got.push(r)
  t.deepEqual(got, l.used)
  t.deepEqual(tail.partitions, l.partitions)
  t.deepEqual(tail.used, [])
  t.is(tail.usedBytes, l.usedBytes)
  // Leaving early and aborting stop the producer; errors come through the iteration.
  for await (const r of sk.layoutRanges(img)) {
    t.is(r.offset, 0)
    break
  }
  const ac = new AbortController()
  ac.abort()
  await t.throwsAsync(async () => {
    for await (const r of sk.layoutRanges(img, { signal: ac.signal })) void r
  }, { code: 'ERR_SPARSEKIT_ABORTED' })
  await t.throwsAsync(async () => {
    for await (const r of sk.layoutRanges(ebrLoop(t))) void r
  }, { code: 'ERR_SPARSEKIT_LAYOUT_CORRUPT' })
  await t.throwsAsync(async () => {
    for await (const r of sk.layoutRanges('/nonexistent.img')) void r
  }, { code: 'ENOENT' })
})

testWith(['mkfs.vfat'], test)('layoutRanges: 32 000 runs in several batches, a slow consumer, same as layout()', async (t) => {
  const img = join(tempDir(t), 'f.img')
  run('truncate', ['-s', '32M', img])
  run('mkfs.vfat', ['-F', '16', '-s', '1', img], { stdio: 'ignore' })
  // Every other cluster allocated, in both FATs: one used run per cluster.
  const b = readFileSync(img)
  const reserved = b.readUInt16LE(0x0e)
  const fats = b[0x10]
  const fatBytes = b.readUInt16LE(0x16) * 512
  const clusters = (b.readUInt16LE(0x13) || b.readUInt32LE(0x20)) - reserved - fats * b.readUInt16LE(0x16) - 32
  for (let f = 0; f < fats; f++) {
    const at = (reserved * 512) + f * fatBytes
    for (let c = 4; c < Math.min(clusters, fatBytes / 2); c += 2) b.writeUInt16LE(0xffff, at + c * 2)
  }
  writeFileSync(img, b)
  const l = await sk.layout(img)
  t.true(l.used.length > 30000, `${l.used.length} runs`)
  let i = 0
  let same = true
  for await (const r of sk.layoutRanges(img)) {
    if (r.offset !== l.used[i]?.offset || r.length !== l.used[i]?.length) same = false
    if (++i % 10000 === 0) await new Promise((res) => setTimeout(res, 20))
  }
  t.true(same)
  t.is(i, l.used.length)
})

testWith(['mkfs.ext4'], test)('layout of an http(s) URL: range requests, the same layout as the file', async (t) => {
  const img = ext4Image(t, 16)
  const bytes = readFileSync(img)
  let requests = 0
  let served = 0
  const server = createServer((req, res) => {
    requests++
    const m = /bytes=(\d+)-(\d*)/.exec(req.headers.range ?? '')
    if (!m) {
      res.writeHead(200, { 'content-length': bytes.length, 'accept-ranges': 'bytes' })
      if (req.method === 'HEAD') return res.end()
      served += bytes.length
      return res.end(bytes)
    }
    const start = Number(m[1])
    const end = m[2] ? Math.min(Number(m[2]), bytes.length - 1) : bytes.length - 1
    res.writeHead(206, { 'content-length': end - start + 1, 'content-range': `bytes ${start}-${end}/${bytes.length}`, 'accept-ranges': 'bytes' })
    served += end - start + 1
    res.end(req.method === 'HEAD' ? undefined : bytes.subarray(start, end + 1))
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const url = `http://127.0.0.1:${server.address().port}/e.img`
  const remote = await sk.layout(url, { retries: 1, timeout: 5000 })
  t.deepEqual(remote, await sk.layout(img))
  t.true(requests >= 1)
  t.true(served < bytes.length, `${served} bytes served of ${bytes.length}`)
  await t.throwsAsync(sk.layout(url, { retries: -1 }), { code: 'ERR_OUT_OF_RANGE' })
})
