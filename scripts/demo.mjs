// sparsekit demo: a real ext4 disk image (1 GiB, mostly holes) made by mkfs.ext4 -d, then
// mapped, hashed and copied with sparsekit, checking that the copy is byte-identical and
// keeps its holes. Each capability sparsekit gains adds a step here.
import { createRequire } from 'node:module'
import { mkdtempSync, rmSync, mkdirSync, writeFileSync, statSync, createReadStream, readFileSync } from 'node:fs'
import http from 'node:http'
import { execFileSync, spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash, randomBytes } from 'node:crypto'

const require = createRequire(import.meta.url)
const sk = require('../dist/index.js')

const MiB = 1 << 20
const human = (n) => (n >= MiB ? `${(n / MiB).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`)
const time = async (label, fn) => {
  const t0 = process.hrtime.bigint()
  const r = await fn()
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  console.log(`  ${label.padEnd(34)} ${ms.toFixed(1).padStart(8)} ms`)
  return r
}
const step = (s) => console.log(`\n== ${s}`)

// A plain HTTP server on loopback serving `routes` (URL path -> file) with byte ranges, as
// a web server or object store does; `sent()` counts the bytes it sent.
const serve = (routes) => new Promise((resolve) => {
  const srv = http.createServer((req, res) => {
    const file = routes[new URL(req.url, 'http://x').pathname]
    if (!file) return res.writeHead(404).end()
    const size = statSync(file).size
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
    let [start, end, code] = [0, size - 1, 200]
    if (m) {
      ;[start, end, code] = [Number(m[1]), m[2] ? Math.min(Number(m[2]), size - 1) : size - 1, 206]
      if (start >= size) return res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end()
    }
    res.writeHead(code, {
      'Accept-Ranges': 'bytes',
      'Content-Length': end - start + 1,
      ...(code === 206 ? { 'Content-Range': `bytes ${start}-${end}/${size}` } : {}),
    })
    if (req.method === 'HEAD' || size === 0) return res.end()
    createReadStream(file, { start, end }).pipe(res)
  })
  // Bytes sent on every connection so far (a client that has what it needs closes early).
  const socks = []
  srv.on('connection', (sock) => socks.push(sock))
  srv.sent = () => socks.reduce((n, sock) => n + sock.bytesWritten, 0)
  srv.listen(0, '127.0.0.1', () => resolve(srv))
})

// Step 12: a Windows node.exe under wine hashes the image with the win32 binary and brings
// the changed copy back with checksum | retrieve | save over Node streams (named pipes on
// Windows). Runs when a win32 binary exists (npm test builds one, npm run prebuilt the
// release one) and wine is set up (scripts/cross-tools.sh, as npm test does); otherwise
// it says why it is skipped. Returns false only when a check failed.
async function windowsStep(image, copyPath, blake3) {
  const root = new URL('..', import.meta.url).pathname
  const bins = [join(root, 'npm/win32-x64-gnu/sparsekit.win32-x64-gnu.node'),
    join(process.env.CARGO_TARGET_DIR || join(root, 'target'), 'x86_64-pc-windows-gnu/smoke/sparsekit.win32-x64-gnu.node')]
  // The newer of the two (a prebuilt one may be older than the sources).
  const mtime = (b) => { try { return statSync(b).mtimeMs } catch { return -1 } }
  const bin = bins.filter((b) => mtime(b) >= 0).sort((x, y) => mtime(y) - mtime(x))[0]
  if (!bin || process.platform !== 'linux' || process.arch !== 'x64') {
    console.log('  skipped: no win32 binary here (npm test builds one; npm run prebuilt win32-x64 the release one)')
    return true
  }
  let env
  try {
    const out = execFileSync('bash', ['-c', 'source scripts/cross-tools.sh && sk_ensure_wine >&2 && echo "$SK_WINE" && sk_windows_node && echo "$WINEPREFIX"'],
      { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim().split('\n')
    env = { wine: out[0], node: out[1], prefix: out[2] }
  } catch (e) {
    console.log(`  skipped: wine is not available (${String(e.stderr || e.message).trim().split('\n').pop()})`)
    return true
  }
  const dir = mkdtempSync(join(tmpdir(), 'sparsekit-demo-win-'))
  try {
    const script = join(dir, 'win.cjs')
    writeFileSync(script, `'use strict'
const sk = require(${JSON.stringify('Z:' + join(root, 'dist/index.js'))})
const { PassThrough } = require('node:stream')
;(async () => {
  const [image, copy] = process.argv.slice(2)
  let t = Date.now()
  const sum = await sk.digest(image, { algorithm: 'blake3' })
  console.log('digest ' + sum + ' ' + (Date.now() - t))
  t = Date.now()
  const hashes = new PassThrough(), blocks = new PassThrough()
  const opts = { blake3: true }
  const [, , saved] = await Promise.all([sk.sync.checksum(copy, hashes, opts), sk.sync.retrieve(image, hashes, blocks, opts), sk.sync.save(copy, blocks, opts)])
  console.log('sync ' + saved.blocksWritten + ' ' + (Date.now() - t))
  console.log('copy ' + (await sk.digest(copy, { algorithm: 'blake3' })))
})().catch((e) => { console.log('error ' + (e.code || '') + ' ' + e.message); process.exit(1) })
`)
    // Change 3 blocks of the copy (it equals the image since step 8).
    for (const off of [MiB, 400 * MiB, 1000 * MiB]) execFileSync('dd', ['if=/dev/urandom', `of=${copyPath}`, 'bs=4096', 'count=1', `seek=${off / 4096}`, 'conv=notrunc', 'status=none'])
    const log = join(dir, 'out.txt')
    const t0 = Date.now()
    // Under wine, node.exe's stdout must be a file (a pipe gives EBADF).
    execFileSync('bash', ['-c', `"$0" "$1" "$2" "$3" "$4" > "$5" 2>/dev/null`, env.wine, env.node, 'Z:' + script, 'Z:' + image, 'Z:' + copyPath, log],
      { env: { ...process.env, WINEPREFIX: env.prefix, WINEDEBUG: '-all', SPARSEKIT_NATIVE_PATH: 'Z:' + bin }, stdio: 'ignore' })
    const lines = Object.fromEntries(readFileSync(log, 'utf8').trim().split('\n').map((l) => [l.split(' ')[0], l.split(' ').slice(1)]))
    if (lines.error) throw new Error(`under wine: ${lines.error.join(' ')}`)
    const digestOk = lines.digest[0] === blake3
    const copyOk = lines.copy[0] === blake3
    console.log(`  binary ${bin.includes('/smoke/') ? 'smoke build (npm test)' : 'release (npm run prebuilt)'}; wine and node.exe ${(Date.now() - t0) / 1000} s in all`)
    console.log(`  digest(blake3) in ${lines.digest[1]} ms: ${digestOk ? 'equals' : 'DIFFERS from'} the Linux one`)
    console.log(`  checksum | retrieve | save (--blake3) over named pipes in ${lines.sync[1]} ms: ${lines.sync[0]} blocks written; copy ${copyOk ? 'matches again' : 'DIFFERS'}`)
    return digestOk && copyOk
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const work = mkdtempSync(join(process.env.SPARSEKIT_DEMO_DIR || tmpdir(), 'sparsekit-demo-'))
try {
  step('1. a real sparse disk image: ext4 made by mkfs.ext4 -d (no mount, no root needed)')
  const content = join(work, 'content')
  mkdirSync(join(content, 'boot'), { recursive: true })
  mkdirSync(join(content, 'data'))
  writeFileSync(join(content, 'boot', 'kernel.img'), randomBytes(24 * MiB))
  writeFileSync(join(content, 'data', 'rootfs.bin'), randomBytes(40 * MiB))
  writeFileSync(join(content, 'README'), 'sparsekit demo image\n')
  const image = join(work, 'disk.img')
  execFileSync('truncate', ['-s', '1G', image])
  execFileSync('mkfs.ext4', ['-q', '-F', '-L', 'sparsekit-demo', '-d', content, image])
  const st = statSync(image)
  console.log(`  ${image}: ${human(st.size)} apparent, ${human(st.blocks * 512)} allocated`)

  step('2. map: where the data is (FIEMAP, SEEK_DATA/SEEK_HOLE fallback)')
  const m = await time('map()', () => sk.map(image))
  const sum = (list) => list.reduce((a, e) => a + e.length, 0)
  const data = sum(m.extents.filter((e) => !e.unwritten))
  const prealloc = sum(m.extents.filter((e) => e.unwritten))
  console.log(`  method ${m.method}, ${m.extents.length} extents, data ${human(data)} ` +
    `(${((data / m.size) * 100).toFixed(1)}%), preallocated ${human(prealloc)} (reads as zeros), ` +
    `holes ${human(m.size - data - prealloc)}`)
  for (const e of m.extents.slice(0, 5)) {
    console.log(`    ${String(e.offset).padStart(11)} +${human(e.length)}${e.unwritten ? ' unwritten' : ''}`)
  }
  if (m.extents.length > 5) console.log(`    ... ${m.extents.length - 5} more`)

  step('3. digest: hashing in Rust off the main thread')
  const sums = {}
  for (const algorithm of ['blake3', 'sha256']) {
    sums[algorithm] = await time(`digest(${algorithm}) of 1 GiB`, () => sk.digest(image, { algorithm }))
  }
  console.log(`  blake3 ${sums.blake3}\n  sha256 ${sums.sha256}`)

  step('4. copy: sparse copy, only the data moves')
  const copyPath = join(work, 'copy.img')
  let lastPct = -1
  const r = await time('copy()', () =>
    sk.copy(image, copyPath, {
      onProgress: (p) => {
        if (p.phase !== 'copy') return // 'map' comes first
        const pct = Math.floor((p.bytesDone / p.bytesTotal) * 100)
        if (pct >= lastPct + 25 || pct === 100) lastPct = pct
      },
    }),
  )
  const cst = statSync(copyPath)
  console.log(`  method ${r.method}, moved ${human(r.bytesCopied)}, progress reached ${lastPct}%`)
  console.log(`  copy: ${human(cst.size)} apparent, ${human(cst.blocks * 512)} allocated ` +
    `(source ${human(st.blocks * 512)}, of which ${human(prealloc)} preallocated: copied as holes)`)
  const same = (await sk.digest(copyPath, { algorithm: 'blake3' })) === sums.blake3
  console.log(`  blake3 of the copy ${same ? 'matches' : 'DIFFERS'}`)

  step('5. dd-style window: the second 1 MiB of the image into an offset of a new file')
  const part = join(work, 'part.img')
  await sk.copy(image, part, { skip: MiB, length: MiB, seek: 4 * MiB })
  const a = await sk.digest(image, { algorithm: 'sha256', start: MiB, length: MiB })
  const b = await sk.digest(part, { algorithm: 'sha256', start: 4 * MiB, length: MiB })
  console.log(`  window digests ${a === b ? 'match' : 'DIFFER'}; part.img is ${human(statSync(part).size)}`)

  step('6. bmap: create a bmaptool block map, flash the image (plain, then xz-compressed; to a file and a loop device) and verify')
  const bmapPath = join(work, 'disk.img.bmap')
  const xml = await time('bmap.create(sha256)', () => sk.bmap.create(image, { output: bmapPath }))
  const mapped = /<MappedBlocksCount>\s*(\d+)/.exec(xml)?.[1]
  const flashed = join(work, 'flashed.img')
  const f = await time('bmap.copy(verify, readBack)', () => sk.bmap.copy(image, flashed, { bmap: bmapPath, readBack: true, createFiles: true }))
  const flashOk = (await sk.digest(flashed, { algorithm: 'blake3' })) === sums.blake3
  console.log(`  ${mapped} mapped blocks; wrote ${human(f.bytesWritten)}, ${f.rangesVerified} ranges verified, ` +
    `${f.rangesReadBack} read back; flashed image ${flashOk ? 'matches' : 'DIFFERS'}`)
  // The way OS images ship: xz-compressed, the bmap beside it. Decompressed in process as
  // a stream; only the mapped ranges are written, each checked against the bmap.
  const xzPath = join(work, 'disk.img.xz')
  execFileSync('sh', ['-c', `xz -T0 -1 -c '${image}' > '${xzPath}'`])
  const flashedXz = join(work, 'flashed-xz.img')
  const fx = await time('bmap.copy(disk.img.xz)', () => sk.bmap.copy(xzPath, flashedXz, { bmap: bmapPath, createFiles: true }))
  let xzOk = (await sk.digest(flashedXz, { algorithm: 'blake3' })) === sums.blake3
  console.log(`  ${human(statSync(xzPath).size)} of xz: ${fx.rangesVerified} ranges verified while streaming; ` +
    `flashed image ${xzOk ? 'matches' : 'DIFFERS'}`)
  if (process.getuid?.() === 0) {
    // A block device: a loop device over a 1 GiB backing file (detached in finally).
    const backing = join(work, 'drive.bin')
    execFileSync('truncate', ['-s', '1G', backing])
    const dev = execFileSync('losetup', ['--find', '--show', backing]).toString().trim()
    try {
      const fd = await time(`bmap.copy(xz -> ${dev}, readBack)`, () =>
        sk.bmap.copy(xzPath, dev, { bmap: bmapPath, readBack: true }))
      const devOk = (await sk.digest(dev, { algorithm: 'blake3', length: st.size })) === sums.blake3
      xzOk &&= devOk
      console.log(`  ${dev}: ${human(fd.bytesWritten)} written, ${fd.rangesReadBack} ranges read back past the ` +
        `page cache; device ${devOk ? 'matches' : 'DIFFERS'}`)
    } finally {
      execFileSync('losetup', ['-d', dev])
    }
  } else {
    console.log('  (not root: the loop-device flash is skipped)')
  }

  step('7. qcow2: the image as a compressed qcow2 (qemu-img -c), read natively: info, map, convert back to raw')
  const q = join(work, 'disk.qcow2')
  execFileSync('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', image, q])
  const qi = await time('qcow2.info()', () => sk.qcow2.info(q))
  const qm = await time('qcow2.map()', () => sk.qcow2.map(q))
  const raw = join(work, 'from-qcow2.img')
  const qc = await time('qcow2.convert() to sparse raw', () => sk.qcow2.convert(q, raw))
  const qcowOk = (await sk.digest(raw, { algorithm: 'blake3' })) === sums.blake3
  console.log(`  ${qi.format} v${qi['format-specific']?.data?.compat ?? '?'}, virtual ${human(qi['virtual-size'])}, ` +
    `${qm.filter((e) => e.data).length} data runs (${qm.filter((e) => e.compressed).length} compressed); wrote ${human(qc.bytesWritten)}; raw image ${qcowOk ? 'matches' : 'DIFFERS'}`)

  step('7b. qcow2 writing: the image into qcow2 (zstd on every core, then 1 thread: same bytes), compared and streamed; trim leaves free file-system space out')
  const w = join(work, 'written.qcow2')
  const wr = await time('qcow2.importImage() zstd, all cores', () => sk.qcow2.importImage(image, w, { compress: 'zstd' }))
  const w1 = join(work, 'written-1.qcow2')
  await time('qcow2.importImage() zstd, 1 thread', () => sk.qcow2.importImage(image, w1, { compress: 'zstd', threads: 1 }))
  const sameBytes = readFileSync(w).equals(readFileSync(w1))
  const cmpW = await time('qcow2.compare() with the raw image', () => sk.qcow2.compare(image, w))
  let wCheck = 'passes'
  try { execFileSync('qemu-img', ['check', '-q', w]); execFileSync('qemu-img', ['compare', '-q', '-f', 'raw', image, w]) } catch { wCheck = 'FAILS' }
  const plain = join(work, 'written-plain.qcow2')
  await sk.qcow2.importImage(image, plain)
  const es = await sk.qcow2.exportStream(image)
  const parts = []
  for await (const c of es) parts.push(c)
  const streamed = Buffer.concat(parts)
  const streamOk = streamed.length === es.length && streamed.equals(readFileSync(plain))
  const writeOk = sameBytes && cmpW.identical && wCheck === 'passes' && streamOk
  console.log(`  ${human(wr.fileSize)} qcow2 (${wr.compressedClusters} compressed clusters); 1 thread ${sameBytes ? 'gives the same bytes' : 'DIFFERS'}; ` +
    `compare: ${cmpW.message}; qemu-img check and compare ${wCheck}; stream of ${human(es.length)} announced ${streamOk ? 'equals the imported file' : 'DIFFERS'}`)
  // Trim: delete the 40 MiB file in a copy (debugfs frees its blocks, its data stays on the
  // disk), then import with and without trim: the trimmed image leaves the free blocks out
  // and its file system still checks clean.
  const deleted = join(work, 'deleted.img')
  execFileSync('cp', ['--sparse=always', image, deleted])
  execFileSync('debugfs', ['-w', '-R', 'rm /data/rootfs.bin', deleted], { stdio: 'ignore' })
  const untrimmed = await sk.qcow2.importImage(deleted, join(work, 'untrimmed.qcow2'))
  const tq = join(work, 'trimmed.qcow2')
  const trimmed = await time('qcow2.importImage() trim: free file-system blocks left out', () => sk.qcow2.importImage(deleted, tq, { trim: true }))
  const back = join(work, 'trimmed.raw')
  execFileSync('qemu-img', ['convert', '-O', 'raw', tq, back])
  let trimFsck = 'clean'
  try { execFileSync('e2fsck', ['-fn', back], { stdio: 'ignore' }) } catch { trimFsck = 'NOT CLEAN' }
  const trimOk = trimFsck === 'clean' && trimmed.dataClusters < untrimmed.dataClusters
  console.log(`  after deleting a 40 MiB file: ${human(untrimmed.fileSize)} without trim, ${human(trimmed.fileSize)} with trim; e2fsck -fn of the trimmed guest: ${trimFsck}`)

  step('8. delta sync (blockcopy protocol): change 3 blocks of the copy, sync only what differs')
  for (const off of [0, 300 * MiB, 900 * MiB]) execFileSync('dd', ['if=/dev/urandom', `of=${copyPath}`, 'bs=4096', 'count=1', `seek=${off / 4096}`, 'conv=notrunc', 'status=none'])
  const d = await time('sync.files()', () => sk.sync.files(image, copyPath))
  const syncOk = (await sk.digest(copyPath, { algorithm: 'blake3' })) === sums.blake3
  console.log(`  ${d.blocksChanged} blocks changed, ${human(d.bytesSent)} on the wire; copy ${syncOk ? 'matches again' : 'DIFFERS'}`)

  step('9. qcow2 editing: an overlay on the qcow2, a guest write into it, hidden flag, commit into the base')
  const overlay = join(work, 'overlay.qcow2')
  await time('qcow2.snapshot()', () => sk.qcow2.snapshot(q, overlay))
  // The "guest" writes 1 MiB of 0x5a at 512 MiB, through qemu-io (the qcow2 oracle).
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -q -P 0x5a ${512 * MiB} ${MiB}`, overlay])
  await sk.qcow2.setExtension(overlay, sk.qcow2.EXTENSION_HIDDEN, Buffer.from([1]))
  const hidden = await sk.qcow2.getExtension(overlay, sk.qcow2.EXTENSION_HIDDEN)
  const cm = await time('qcow2.commit() into the base', () => sk.qcow2.commit(overlay))
  const baseCheck = await sk.qcow2.check(q)
  const want = Buffer.alloc(MiB, 0x5a)
  const got = Buffer.alloc(MiB)
  const raw2 = join(work, 'after-commit.img')
  await sk.qcow2.convert(q, raw2)
  const { openSync, readSync, closeSync } = await import('node:fs')
  const fd = openSync(raw2, 'r')
  readSync(fd, got, 0, MiB, 512 * MiB)
  closeSync(fd)
  let qemuCheck = 'passes'
  try { execFileSync('qemu-img', ['check', '-q', q]) } catch { qemuCheck = 'FAILS' }
  const editOk = got.equals(want) && hidden?.[0] === 1 && qemuCheck === 'passes' && !baseCheck['corruptions']
  console.log(`  hidden flag ${hidden?.[0] === 1 ? 'set' : 'MISSING'}; committed ${human(cm.bytes)}; base ` +
    `${got.equals(want) ? 'holds' : 'LACKS'} the guest write; qemu-img check ${qemuCheck}`)

  step('10. imaging engine: drives, and one compressed image to two drives at once')
  const all = await sk.drives.list()
  console.log(`  ${all.length} drives here, ${all.filter((x) => x.isSystem).length} marked system (never offered): ` +
    all.map((x) => `${x.path}${x.isSystem ? ' (system)' : ''}`).join(', '))
  let multiOk = true
  if (process.getuid?.() === 0) {
    const devs = []
    try {
      for (const n of ['drive-a.bin', 'drive-b.bin']) {
        execFileSync('truncate', ['-s', '1G', join(work, n)])
        devs.push(execFileSync('losetup', ['--find', '--show', join(work, n)]).toString().trim())
      }
      const fr = await time(`flash(xz -> ${devs.length} drives)`, () => sk.flash(xzPath, devs, { bmap: bmapPath }))
      for (const r of fr.destinations) {
        const ok = r.ok && r.verified && (await sk.digest(r.path, { algorithm: 'blake3', length: st.size })) === sums.blake3
        multiOk &&= ok
        console.log(`  ${r.path}: ${human(r.bytesWritten)} written, ${r.verified ? 'read back' : 'NOT read back'}; ${ok ? 'matches' : 'DIFFERS'}`)
      }
    } finally {
      for (const dev of devs) execFileSync('losetup', ['-d', dev])
    }
  } else {
    console.log('  (not root: flashing to loop devices is skipped)')
  }

  step('11. remote images: the qcow2 (as edited in 9) and the raw image with its bmap, served over HTTP on loopback')
  const srv = await serve({ '/disk.qcow2': q, '/disk.img': image, '/disk.img.bmap': bmapPath })
  let remoteOk = true
  try {
    const base = `http://127.0.0.1:${srv.address().port}`
    const rawUrl = join(work, 'from-url.img')
    await time('qcow2.convert(URL) range reads', () => sk.qcow2.convert(`${base}/disk.qcow2`, rawUrl))
    // The qcow2 holds the guest write step 9 committed into it.
    const convOk = (await sk.digest(rawUrl, { algorithm: 'blake3' })) === (await sk.digest(raw2, { algorithm: 'blake3' }))
    const convSent = srv.sent()
    console.log(`  ${human(convSent)} fetched of a ${human(statSync(q).size)} qcow2; raw image ${convOk ? 'matches' : 'DIFFERS'}`)
    const flashedUrl = join(work, 'flashed-url.img')
    const fu = await time('bmap.copy(URL, URL.bmap)', () => sk.bmap.copy(`${base}/disk.img`, flashedUrl, { createFiles: true }))
    const copyOk = (await sk.digest(flashedUrl, { algorithm: 'blake3' })) === sums.blake3
    console.log(`  ${human(srv.sent() - convSent)} fetched of a ${human(st.size)} image (only the mapped ranges), ` +
      `${fu.rangesVerified} ranges verified; flashed image ${copyOk ? 'matches' : 'DIFFERS'}`)
    remoteOk = convOk && copyOk
  } finally {
    srv.close()
  }

  step('13. first boot: cloud-init and firstrun.sh files into the FAT boot partition of a Pi-style image (MBR: FAT32 + ext4)')
  const pi = join(work, 'pi.img')
  execFileSync('truncate', ['-s', '256M', pi])
  execFileSync('sfdisk', ['-q', pi], { input: 'label: dos\nstart=2048, size=131072, type=c\nstart=133120, type=83\n' })
  const piBoot = join(work, 'pi-boot.part')
  execFileSync('truncate', ['-s', '64M', piBoot])
  execFileSync('mkfs.vfat', ['-F', '32', '-n', 'BOOTFS', piBoot], { stdio: 'ignore' })
  writeFileSync(join(work, 'cmdline.txt'), 'console=serial0,115200 root=PARTUUID=0-02 rootwait\n')
  execFileSync('mcopy', ['-i', piBoot, join(work, 'cmdline.txt'), '::/'])
  execFileSync('dd', [`if=${piBoot}`, `of=${pi}`, 'bs=1M', 'seek=1', 'conv=notrunc', 'status=none'])
  execFileSync('dd', [`if=${image}`, `of=${pi}`, 'bs=1M', 'seek=65', 'count=190', 'conv=notrunc,sparse', 'status=none'])
  const rootSum = () => createHash('sha256').update(readFileSync(pi).subarray(65 * MiB)).digest('hex')
  const rootBefore = rootSum()
  const settings = { hostname: 'demo-pi', user: { name: 'demo', password: 'demo password' }, wifi: { ssid: 'DemoNet', password: 'demo-passphrase', country: 'GB' } }
  const fr = sk.firstBoot.firstRun(settings)
  const ci = sk.firstBoot.cloudInit(settings)
  const cu = await time('customize(firstRun + cloudInit)', () => sk.customize(pi, { files: { ...fr.files, ...ci.files }, append: fr.append }))
  const again = await sk.customize(pi, { append: fr.append })
  writeFileSync(piBoot, readFileSync(pi).subarray(MiB, 65 * MiB))
  const fsckOk = spawnSync('fsck.fat', ['-n', piBoot]).status === 0
  const cmdline = execFileSync('mtype', ['-i', piBoot, '::/cmdline.txt']).toString()
  const piOk = fsckOk && cmdline.split('systemd.run=').length === 2 && again.already.length === 1 && rootSum() === rootBefore
  console.log(`  wrote ${cu.written.join(', ')}; appended to ${cu.appended.join(', ')} (once: a second run ${again.already.length ? 'left it' : 'CHANGED it'})`)
  console.log(`  fsck.fat -n ${fsckOk ? 'clean' : 'FAILED'}; the ext4 partition ${rootSum() === rootBefore ? 'byte-identical' : 'CHANGED'}`)

  step('14. backup a card (loop device) to an image of its used blocks, restore it to a smaller card: by its bmap, and by flash --trim')
  let backupOk = true
  if (process.getuid?.() === 0) {
    // A 256 MiB "card": MBR, a boot loader's random bytes before the first partition, FAT32
    // boot (64 MiB) + ext4 root (96 MiB) holding the step-1 files; 95 MiB unpartitioned after.
    const devs = []
    const attach = (name, size) => {
      // Filled with 0xff, as a used card's free space holds old data.
      writeFileSync(join(work, name), Buffer.alloc(size, 0xff))
      const dev = execFileSync('losetup', ['--find', '--show', join(work, name)]).toString().trim()
      devs.push(dev)
      return dev
    }
    try {
      const cardImg = join(work, 'card.img')
      execFileSync('truncate', ['-s', '256M', cardImg])
      execFileSync('sfdisk', ['-q', cardImg], { input: 'label: dos\nstart=8192, size=131072, type=c\nstart=139264, size=196608, type=83\n' })
      execFileSync('dd', ['if=/dev/urandom', `of=${cardImg}`, 'bs=1M', 'seek=1', 'count=3', 'conv=notrunc', 'status=none'])
      const bootPart = join(work, 'card-boot.part')
      const rootPart = join(work, 'card-root.part')
      execFileSync('mkfs.vfat', ['-C', '-F', '32', '-n', 'BOOT', bootPart, String(64 * 1024)], { stdio: 'ignore' })
      execFileSync('mcopy', ['-i', bootPart, join(content, 'boot', 'kernel.img'), join(content, 'README'), '::/'])
      execFileSync('mkfs.ext4', ['-q', '-F', '-d', content, rootPart, '96M'])
      execFileSync('dd', [`if=${bootPart}`, `of=${cardImg}`, 'bs=1M', 'seek=4', 'conv=notrunc', 'status=none'])
      execFileSync('dd', [`if=${rootPart}`, `of=${cardImg}`, 'bs=1M', 'seek=68', 'conv=notrunc', 'status=none'])
      const card = execFileSync('losetup', ['--find', '--show', cardImg]).toString().trim()
      devs.push(card)
      const backupImg = join(work, 'card-backup.img')
      const b = await time('backup(card)', () => sk.backup(card, backupImg))
      console.log(`  ${card}: ${human(b.sourceSize)} card, ${human(b.bytesCopied)} copied; image ${human(b.imageSize)} ` +
        `(${human(b.cutBytes)} cut after the last partition), ${human(statSync(backupImg).blocks * 512)} allocated, bmap beside`)
      // Restore to two smaller cards (164 MiB: the image ends with the last partition).
      const sum = (dev, start, len) => createHash('sha256').update(execFileSync('dd', [`if=${dev}`, 'bs=1M', `skip=${start}`, `count=${len}`, 'status=none'], { maxBuffer: 512 * MiB })).digest('hex')
      const check = (dev) => {
        const boot = join(work, 'chk-boot.part')
        const root = join(work, 'chk-root.part')
        execFileSync('dd', [`if=${dev}`, `of=${boot}`, 'bs=1M', 'skip=4', 'count=64', 'status=none'])
        execFileSync('dd', [`if=${dev}`, `of=${root}`, 'bs=1M', 'skip=68', 'count=96', 'status=none'])
        const fsck = spawnSync('fsck.vfat', ['-n', boot]).status === 0 && spawnSync('e2fsck', ['-fn', root]).status === 0
        const dumped = join(work, 'chk-rootfs.bin')
        execFileSync('debugfs', ['-R', `dump /data/rootfs.bin ${dumped}`, root], { stdio: 'ignore' })
        const filesOk = readFileSync(dumped).equals(readFileSync(join(content, 'data', 'rootfs.bin'))) &&
          execFileSync('mtype', ['-i', boot, '::/README']).toString() === readFileSync(join(content, 'README'), 'utf8')
        // The partition table and the boot loader's bytes before the first partition.
        return fsck && filesOk && sum(dev, 0, 4) === sum(cardImg, 0, 4)
      }
      const small = [attach('card-b.img', 164 * MiB), attach('card-c.img', 164 * MiB)]
      const viaBmap = await time('flash(backup, its bmap)', () => sk.flash(backupImg, [small[0]]))
      const viaTrim = await time('flash(backup, { trim, no bmap })', () => sk.flash(backupImg, [small[1]], { bmap: false, trim: true }))
      for (const [what, r] of [['bmap', viaBmap], ['trim', viaTrim]]) {
        const d = r.destinations[0]
        const ok = d.ok && d.verified && check(d.path)
        backupOk &&= ok
        console.log(`  ${d.path} by ${what}: ${human(d.bytesWritten)} written of a ${human(r.imageSize)} image` +
          `${r.trim ? ` (layout: ${human(r.trim.usedBytes)} used, ${human(r.trim.freeBytes)} free left as it was)` : ` (${r.bmap})`}; ` +
          `fsck.vfat and e2fsck ${ok ? 'clean, files and the boot loader equal' : 'FAILED or files DIFFER'}`)
      }
    } finally {
      for (const dev of devs.reverse()) spawnSync('losetup', ['-d', dev])
    }
  } else {
    console.log('  (not root: backup and restore of loop devices are skipped)')
  }

  step('12. Windows: the same image in the official Windows node.exe under wine, with the win32 binary')
  const winOk = await windowsStep(image, copyPath, sums.blake3)

  if (!same || a !== b || !flashOk || !xzOk || !qcowOk || !writeOk || !trimOk || !syncOk || !editOk || !multiOk || !remoteOk || !winOk || !piOk || !backupOk) throw new Error('demo: a copy did not match its source')
  console.log('\ndemo finished: all checks passed')
} finally {
  rmSync(work, { recursive: true, force: true })
}
