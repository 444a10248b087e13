// The public API's smoke suite for the win32 binary, run by a Windows node.exe (under wine
// on Linux: scripts/test-windows.sh prepares the fixtures with the Linux tools and runs
// this). Usage: node.exe windows-smoke.cjs REPO_ROOT FIXTURE_DIR
// The fixtures: img.raw (sparse), img.qcow2 (qemu-img convert of it), img.bmap (bmaptool
// create of it), expected.json ({ sha256, size, changed }: img.raw's hash, its size and
// the hash of changed.raw, a copy with some blocks changed).
// Prints one line per check ("ok - ..." / "not ok - ..."), exits 1 if any failed.
'use strict'
const { join } = require('node:path')
const fs = require('node:fs')
const { createHash } = require('node:crypto')
const { PassThrough } = require('node:stream')

const [root, dir] = process.argv.slice(2)
const sk = require(join(root, 'dist', 'index.js'))
const expected = JSON.parse(fs.readFileSync(join(dir, 'expected.json'), 'utf8'))
const sha256 = (p) => createHash('sha256').update(fs.readFileSync(p)).digest('hex')
const work = fs.mkdtempSync(join(require('node:os').tmpdir(), 'sk-smoke-'))
const p = (name) => join(dir, name)
const w = (name) => join(work, name)
let failed = 0

async function check(name, fn) {
  try {
    const note = await fn()
    console.log(`ok - ${name}${note ? ` (${note})` : ''}`)
  } catch (e) {
    failed++
    console.log(`not ok - ${name}: ${e && e.code ? `[${e.code}] ` : ''}${e && e.stack ? e.stack : e}`)
  }
}
/** What `promise` rejects with, or null when it resolves. */
const rejection = (promise) => promise.then(
  () => null,
  (err) => err,
)
function eq(a, b, what) {
  if (a !== b) throw new Error(`${what}: got ${JSON.stringify(a)}, expected ${JSON.stringify(b)}`)
}

;(async () => {
  console.log(`# node ${process.version} ${process.platform}-${process.arch}, sparsekit ${sk.version}`)
  await check('digest sha256 of the raw image', async () => {
    eq(await sk.digest(p('img.raw'), { algorithm: 'sha256' }), expected.sha256, 'sha256')
  })
  await check('map of the raw image', async () => {
    const m = await sk.map(p('img.raw'))
    eq(m.size, expected.size, 'size')
    const data = m.extents.reduce((s, e) => s + e.length, 0)
    if (m.method === 'none') eq(data, m.size, 'method none maps everything as data')
    if (data < expected.dataBytes) throw new Error(`extents cover ${data} bytes, the image has ${expected.dataBytes} of data`)
    return `method ${m.method}, ${m.extents.length} extents, ${data} bytes of data of ${m.size}`
  })
  await check('copy', async () => {
    const r = await sk.copy(p('img.raw'), w('copy.raw'))
    eq(sha256(w('copy.raw')), expected.sha256, 'sha256 of the copy')
    eq(r.size, expected.size, 'size')
    return `method ${r.method}, ${r.bytesCopied} bytes copied`
  })
  await check('qcow2 info', async () => {
    const i = await sk.qcow2.info(p('img.qcow2'))
    eq(i['virtual-size'], expected.size, 'virtual-size')
    eq(i.format, 'qcow2', 'format')
    return `cluster-size ${i['cluster-size']}`
  })
  await check('qcow2 convert to raw', async () => {
    const r = await sk.qcow2.convert(p('img.qcow2'), w('conv.raw'))
    eq(sha256(w('conv.raw')), expected.sha256, 'sha256 of the converted image')
    return `${r.bytesWritten} bytes written`
  })
  await check('bmap copy to a file', async () => {
    fs.writeFileSync(w('bmap.raw'), '')
    const r = await sk.bmap.copy(p('img.raw'), w('bmap.raw'), { bmap: p('img.bmap') })
    eq(sha256(w('bmap.raw')), expected.sha256, 'sha256 of the flashed file')
    return `${r.bytesWritten} bytes written, verified`
  })
  await check('delta sync round trip (sync.files: checksum | retrieve | save streams in one process)', async () => {
    fs.copyFileSync(p('changed.raw'), w('dst.raw'))
    eq(sha256(w('dst.raw')), expected.changed, 'sha256 of the destination before')
    const r = await sk.sync.files(p('img.raw'), w('dst.raw'))
    eq(sha256(w('dst.raw')), expected.sha256, 'sha256 of the destination after')
    eq(r.blocksChanged, expected.changedBlocks, 'blocks changed')
    return `${r.blocksChanged} blocks changed, ${r.bytesSent} bytes of stream`
  })
  await check('delta sync round trip through pipes (sync.checksum | sync.retrieve | sync.save over Node streams: named pipes)', async () => {
    fs.copyFileSync(p('changed.raw'), w('dst2.raw'))
    const hashes = new PassThrough()
    const blocks = new PassThrough()
    let hashBytes = 0
    let blockBytes = 0
    hashes.on('data', (c) => (hashBytes += c.length))
    blocks.on('data', (c) => (blockBytes += c.length))
    const [, , saved] = await Promise.all([
      sk.sync.checksum(w('dst2.raw'), hashes),
      sk.sync.retrieve(p('img.raw'), hashes, blocks),
      sk.sync.save(w('dst2.raw'), blocks),
    ])
    eq(sha256(w('dst2.raw')), expected.sha256, 'sha256 of the destination after')
    eq(saved.blocksWritten, expected.changedBlocks, 'blocks written')
    return `${saved.blocksWritten} blocks written, ${hashBytes} bytes of hashes, ${blockBytes} bytes of blocks`
  })
  await check('delta sync: a cut block stream rejects with ERR_SPARSEKIT_PROTOCOL', async () => {
    fs.copyFileSync(p('changed.raw'), w('dst3.raw'))
    const cut = new PassThrough()
    cut.end(Buffer.from('sparsekit: not a block stream'))
    const e = await rejection(sk.sync.save(w('dst3.raw'), cut))
    if (!e) throw new Error('save of a cut stream resolved')
    eq(e.code, 'ERR_SPARSEKIT_PROTOCOL', 'code')
    return e.message.split('\n')[0]
  })
  await check('a missing file rejects with code ENOENT', async () => {
    const e = await rejection(sk.digest(w('missing.raw')))
    if (!e) throw new Error('digest of a missing file resolved')
    eq(e.code, 'ENOENT', 'code')
    if (!(e instanceof Error)) throw new Error('not an Error')
    return e.message.split('\n')[0]
  })
  await check('a directory rejects with code EISDIR (a Win32 error named as Node names it)', async () => {
    const e = await rejection(sk.digest(dir))
    if (!e) throw new Error('digest of a directory resolved')
    eq(e.code, 'EISDIR', 'code')
    return e.message.split('\n')[0]
  })
  await check('a copy into a missing folder rejects with ENOENT, the source untouched', async () => {
    const e = await rejection(sk.copy(p('img.raw'), w('no/such/dir/x.raw')))
    if (!e) throw new Error('copy into a missing folder resolved')
    eq(e.code, 'ENOENT', 'code')
    eq(sha256(p('img.raw')), expected.sha256, 'sha256 of the source')
    return e.message.split('\n')[0]
  })
  await check('drives.list: physical drives, the one holding Windows marked system', async () => {
    const list = await sk.drives.list()
    if (!Array.isArray(list)) throw new Error('not an array')
    for (const d of list) {
      if (!/^\\\\\.\\PhysicalDrive\d+$/.test(d.path)) throw new Error(`unexpected drive path ${d.path}`)
      if (typeof d.size !== 'number' || typeof d.isSystem !== 'boolean') throw new Error(`malformed drive ${JSON.stringify(d)}`)
      if (d.isSystem && !(d.systemReasons && d.systemReasons.length)) throw new Error(`${d.path} is system without a reason`)
    }
    // Some disk holds Windows (under wine: the listing cannot tell which, so all are).
    if (list.length && !list.some((d) => d.isSystem)) throw new Error('no drive is marked system')
    return list.map((d) => `${d.name} ${d.size} bytes ${d.bus}${d.isSystem ? ` system (${d.systemReasons[0]})` : ''}`).join('; ') || 'no drives'
  })
  await check('bmap copy to a device that is no disk (\\\\.\\CdRom0) rejects with ERR_SPARSEKIT_UNSUPPORTED', async () => {
    // Never a real disk here: under wine PhysicalDrive0 is a host disk. The refusal of a
    // system disk is tested on Linux (crates/drives windows.rs tests).
    const e = await rejection(sk.bmap.copy(p('img.raw'), '\\\\.\\CdRom0', { bmap: p('img.bmap') }))
    if (!e) throw new Error('bmap copy to \\\\.\\CdRom0 resolved')
    eq(e.code, 'ERR_SPARSEKIT_UNSUPPORTED', 'code')
    return e.message.split('\n')[0]
  })
  fs.rmSync(work, { recursive: true, force: true })
  console.log(failed ? `# ${failed} failed` : '# all passed')
  process.exit(failed ? 1 : 0)
})().catch((e) => {
  console.log(`not ok - smoke suite crashed: ${e && e.stack ? e.stack : e}`)
  process.exit(1)
})
