// drives.list() / drives.watch() / flash() and `sparsekit drives|flash`: real loop devices,
// a local HTTPS server with its own CA, zip archives from the system `zip`.
import test from 'ava'
import { writeFileSync, readFileSync, statSync, openSync, readSync, closeSync, existsSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { createServer } from 'node:https'
import { gzipSync } from 'node:zlib'
import { spawnSync } from 'node:child_process'
import { sk, tempDir, sparseFile, randomBytes, run, cli, testWith, isRoot, has, nodeDigest } from './helpers.mjs'
import { loopDevice, cannotMount } from './fs-helpers.mjs'

const MiB = 1 << 20
const rootTest = isRoot && has('losetup') ? test : (title, fn) => (console.error(`SKIP ${title}: needs root and losetup`), test.skip(title, fn))
const withTls = testWith(['openssl', 'xz'], test)
const withZip = testWith(['zip'], test)

/** An image with data and holes (plain local images are written by their extents). */
function image(dir, size = 12 * MiB, name = 'os.img') {
  const data = Buffer.alloc(size)
  for (let off = 0; off < size; off += 3 * 256 * 1024) randomBytes(256 * 1024).copy(data, off)
  writeFileSync(join(dir, name), data)
  return { path: join(dir, name), data }
}

/** The first `len` bytes of a file or device. */
function head(path, len) {
  const b = Buffer.alloc(len)
  const fd = openSync(path, 'r')
  try {
    readSync(fd, b, 0, len, 0)
  } finally {
    closeSync(fd)
  }
  return b
}

/** A loop device over a sparse file of `size` bytes filled with `fill`. */
function loop(t, dir, name, size, fill = 0xee) {
  const file = join(dir, name)
  writeFileSync(file, Buffer.alloc(size, fill))
  return loopDevice(t, file)
}

test('drives.list() marks the root disk isSystem and flash refuses it', async (t) => {
  const drives = await sk.drives.list()
  t.true(Array.isArray(drives))
  for (const d of drives) {
    t.is(typeof d.path, 'string')
    t.true(d.size > 0)
    t.true(['usb', 'mmc', 'sata', 'nvme', 'scsi', 'virtio', 'loop', 'virtual', 'unknown'].includes(d.bus))
  }
  const rootDev = statSync('/').dev
  const major = Math.floor(rootDev / 256) // old-style encoding, good for majors < 4096
  const holder = drives.find((d) => {
    try {
      return statSync(d.path).rdev === rootDev || d.partitions.some((p) => statSync(p.path).rdev === rootDev)
    } catch {
      return false
    }
  })
  if (!holder) {
    t.log(`no listed drive holds / (dev ${major}:${rootDev % 256}); nothing more to check`)
    return
  }
  t.true(holder.isSystem, JSON.stringify(holder))
  t.true(holder.systemReasons.some((r) => r.includes('root')), holder.systemReasons.join())
  // The CLI lists it only with --all.
  const plain = JSON.parse(cli(['drives', '--json']).stdout)
  t.false(plain.some((d) => d.path === holder.path))
  t.true(JSON.parse(cli(['drives', '--all', '--json']).stdout).some((d) => d.path === holder.path && d.isSystem))
  if (!isRoot) return
  const dir = tempDir(t)
  const { path } = image(dir, MiB)
  const r = await sk.flash(path, [holder.path], { createFiles: true })
  t.false(r.destinations[0].ok)
  t.is(r.destinations[0].error.code, 'ERR_SPARSEKIT_SYSTEM_DRIVE')
})

rootTest('one image to three loop devices, verified, progress per destination', async (t) => {
  const dir = tempDir(t)
  const { data } = image(dir)
  const devs = [0, 1, 2].map((i) => loop(t, dir, `d${i}`, 16 * MiB))
  const seen = []
  const gz = join(dir, 'os.img.gz')
  writeFileSync(gz, gzipSync(data, { level: 1 }))
  const r = await sk.flash(gz, devs, { createFiles: true, onProgress: (p) => seen.push(p) })
  t.is(r.compression, 'gzip')
  t.is(r.imageSize, data.length)
  for (const [i, d] of r.destinations.entries()) {
    t.true(d.ok && d.verified, `${d.path}: ${d.error?.message}`)
    t.is(d.path, devs[i])
    t.true(head(devs[i], data.length).equals(data))
  }
  // A gzip stream of unknown size may report its compressed position ('decompress')
  // instead of 'write' (once data is written before its size is known): one of the two.
  const wrote = seen.filter((p) => (p.phase === 'write' || p.phase === 'decompress') && p.bytesDone === p.bytesTotal)
  t.is(wrote.length, 1, JSON.stringify(seen.map((p) => [p.phase, p.bytesDone, p.bytesTotal])))
  for (const phase of ['sync', 'verify']) {
    t.true(seen.some((p) => p.phase === phase && p.bytesDone === p.bytesTotal), phase)
  }
  const last = seen.at(-1)
  t.is(last.destinations.length, 3)
  t.true(last.destinations.every((d) => d.state === 'done' && d.bytesVerified === data.length))
  // The listing sees them as loop drives with their backing files, not system drives.
  const listed = await sk.drives.list()
  for (const [i, dev] of devs.entries()) {
    const d = listed.find((x) => x.path === dev)
    t.truthy(d)
    t.is(d.bus, 'loop')
    t.is(d.backingFile, join(dir, `d${i}`))
    t.false(d.isSystem)
  }
})

rootTest('a failing and a too-small destination are dropped; the others finish', async (t) => {
  const why = cannotMount('tmpfs')
  if (why) return t.log(why)
  const dir = tempDir(t)
  const { path, data } = image(dir, 12 * MiB)
  const a = loop(t, dir, 'a', 16 * MiB)
  const small = loop(t, dir, 'small', 4 * MiB, 0xab)
  // A loop device over a sparse file on an 8 MiB tmpfs: writes past 8 MiB fail (ENOSPC).
  const mnt = join(dir, 'mnt')
  run('mkdir', [mnt])
  run('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt])
  t.teardown(() => spawnSync('umount', ['-l', mnt]))
  run('truncate', ['-s', '16M', join(mnt, 'dev')])
  const bad = loopDevice(t, join(mnt, 'dev'))
  const r = await sk.flash(path, [small, bad, a], { createFiles: true, bmap: false })
  const [s, b, ok] = r.destinations
  t.is(s.error.code, 'ERR_SPARSEKIT_DEST_TOO_SMALL')
  t.is(s.bytesWritten, 0)
  t.true(head(small, 4 * MiB).equals(Buffer.alloc(4 * MiB, 0xab)), 'the small device is untouched')
  t.false(b.ok)
  t.true(['EIO', 'ENOSPC'].includes(b.error.code), b.error.message)
  t.is(b.error.path, bad)
  t.true(ok.ok && ok.verified)
  const got = head(a, data.length)
  // Holes of the plain image are not written: compare the data blocks.
  for (let off = 0; off < data.length; off += 3 * 256 * 1024) {
    t.true(got.subarray(off, off + 256 * 1024).equals(data.subarray(off, off + 256 * 1024)))
  }
  // The CLI reports the failures and exits 1.
  const c = cli(['flash', '--create', path, small, a])
  t.is(c.status, 1, c.stderr)
  t.regex(c.stderr, /ERR_SPARSEKIT_DEST_TOO_SMALL/)
  t.regex(c.stdout, /read back and verified/)
})

/** A CA and a server certificate for 127.0.0.1 signed by it. */
function certificates(dir) {
  const o = (args) => run('openssl', args, { cwd: dir, stdio: 'pipe' })
  o(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem',
    '-subj', '/CN=sparsekit-test-ca', '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'])
  o(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=127.0.0.1'])
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n')
  o(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'leaf.pem', '-days', '2', '-extfile', 'ext.cnf'])
  return { ca: readFileSync(join(dir, 'ca.pem')), key: readFileSync(join(dir, 'leaf.key')), cert: readFileSync(join(dir, 'leaf.pem')) }
}

/**
 * An HTTPS server on loopback: `files` by path, `Range: bytes=N-` when `ranges`, and the
 * connection destroyed after writing up to the next offset of `drops` (absolute body offsets).
 */
async function httpsServer(t, tls, files, { ranges = true, drops = [] } = {}) {
  const state = { drops: [...drops], ranged: 0 }
  const server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    const data = files[req.url.slice(1)]
    if (!data) {
      res.writeHead(404, { 'content-length': 0 }).end()
      return
    }
    let start = 0
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
    if (m && ranges && Number(m[1]) < data.length) {
      start = Number(m[1])
      state.ranged++
      res.writeHead(206, {
        'content-length': data.length - start,
        'content-range': `bytes ${start}-${data.length - 1}/${data.length}`,
        etag: '"v1"',
      })
    } else {
      res.writeHead(200, { 'content-length': data.length, etag: '"v1"' })
    }
    const stop = state.drops.length && state.drops[0] > start ? state.drops.shift() : data.length
    res.write(data.subarray(start, Math.min(stop, data.length)), () => {
      if (stop < data.length) res.socket.destroy()
      else res.end()
    })
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise((r) => server.close(r)))
  server.unref()
  return { url: (p) => `https://127.0.0.1:${server.address().port}/${p}`, state }
}

withTls('HTTPS with a private CA: plain, gzip and xz images through five dropped connections', async (t) => {
  const dir = tempDir(t)
  const tls = certificates(dir)
  const data = randomBytes(5 * MiB)
  const xz = spawnSync('xz', ['-c', '-1'], { input: data, maxBuffer: 64 * MiB }).stdout
  const files = { 'os.img': data, 'os.img.gz': gzipSync(data, { level: 1 }), 'os.img.xz': xz }
  for (const name of Object.keys(files)) {
    const len = files[name].length
    const drops = [...new Set([0.13, 0.31, 0.5, 0.72, 0.9].map((f) => Math.floor(f * len * (0.9 + Math.random() * 0.1)) + 1))].sort((a, b) => a - b)
    const srv = await httpsServer(t, tls, files, { drops })
    const dst = join(dir, `${name}.out`)
    const r = await sk.flash(srv.url(name), [dst], { createFiles: true, ca: tls.ca, retryDelay: 10 })
    t.true(r.destinations[0].ok, `${name}: ${r.destinations[0].error?.message}`)
    t.true(readFileSync(dst).equals(data), name)
    t.is(srv.state.drops.length, 0, `${name}: every drop happened`)
    t.is(srv.state.ranged, drops.length, name)
    t.is(r.sourceBytes, len)
  }
  // Without the CA the server is not trusted: a coded HTTP error, nothing written.
  const srv = await httpsServer(t, tls, files)
  const e = await t.throwsAsync(sk.flash(srv.url('os.img'), [join(dir, 'untrusted')], { createFiles: true }))
  t.is(e.code, 'ERR_SPARSEKIT_HTTP')
  t.regex(e.message, /certificate|issuer/i)
})

withTls('a server without range support fails once the retries are used up, naming the offset', async (t) => {
  const dir = tempDir(t)
  const tls = certificates(dir)
  const data = randomBytes(2 * MiB)
  const srv = await httpsServer(t, tls, { 'os.img': data }, { ranges: false, drops: Array(20).fill(MiB) })
  const e = await t.throwsAsync(sk.flash(srv.url('os.img'), [join(dir, 'out')], { createFiles: true, ca: tls.ca, retryDelay: 5, retries: 3 }))
  t.is(e.code, 'ERR_SPARSEKIT_HTTP_INTERRUPTED')
  t.is(e.offset, MiB)
  t.regex(e.message, /range requests/)
  const missing = await t.throwsAsync(sk.flash(srv.url('nope'), [join(dir, 'x')], { createFiles: true, ca: tls.ca }))
  t.is(missing.code, 'ERR_SPARSEKIT_HTTP')
  t.regex(missing.message, /404/)
})

withZip('zip archives from the system zip: deflate, stored, a named entry, xz inside', async (t) => {
  const dir = tempDir(t)
  const { data } = image(dir, 6 * MiB)
  writeFileSync(join(dir, 'README'), 'hello')
  const zip = (args) => run('zip', ['-q', ...args], { cwd: dir })
  zip(['-6', 'deflate.zip', 'README', 'os.img'])
  zip(['-0', 'stored.zip', 'os.img', 'README'])
  const cases = [['deflate.zip'], ['stored.zip'], ['deflate.zip', 'os.img']]
  if (has('xz')) {
    writeFileSync(join(dir, 'os.img.xz'), spawnSync('xz', ['-c', '-1'], { input: data, maxBuffer: 64 * MiB }).stdout)
    zip(['-0', 'xz.zip', 'os.img.xz'])
    cases.push(['xz.zip'])
  }
  for (const [z, zipEntry] of cases) {
    const dst = join(dir, `${z}.out`)
    const r = await sk.flash(join(dir, z), [dst], { createFiles: true, zipEntry })
    t.true(r.destinations[0].ok, `${z}: ${r.destinations[0].error?.message}`)
    t.true(r.zipEntry.startsWith('os.img'))
    t.true(readFileSync(dst).equals(data), z)
  }
  const e = await t.throwsAsync(sk.flash(join(dir, 'deflate.zip'), [join(dir, 'x')], { createFiles: true, zipEntry: 'nope' }))
  t.is(e.code, 'ERR_SPARSEKIT_ZIP')
})

const long = process.env.SPARSEKIT_LONG_TESTS === '1' ? withZip : (title, fn) => (console.error(`SKIP ${title}: set SPARSEKIT_LONG_TESTS=1`), test.skip(title, fn))
long('zip64: a 4.5 GiB sparse image in a zip, streamed to a sparse file', async (t) => {
  const dir = tempDir(t)
  const size = 4.5 * 1024 * MiB
  const tail = randomBytes(MiB)
  sparseFile(join(dir, 'big.img'), size, [[0, randomBytes(MiB)], [size - MiB, tail]])
  run('zip', ['-q', '-1', 'big.zip', 'big.img'], { cwd: dir })
  t.true(statSync(join(dir, 'big.zip')).size < size / 100)
  const dst = join(dir, 'out')
  const r = await sk.flash(join(dir, 'big.zip'), [dst], { createFiles: true, readBack: false })
  t.true(r.destinations[0].ok, r.destinations[0].error?.message)
  t.is(r.imageSize, size)
  t.is(statSync(dst).size, size)
  t.is(await nodeDigest(dst, 'md5'), await nodeDigest(join(dir, 'big.img'), 'md5'))
})

rootTest('drives.watch() sees a loop device attached and detached', async (t) => {
  const dir = tempDir(t)
  const w = sk.drives.watch({ interval: 50 })
  t.teardown(() => w.close())
  const added = []
  const removed = []
  w.on('add', (d) => added.push(d.path))
  w.on('remove', (d) => removed.push(d.path))
  await new Promise((r) => setTimeout(r, 200))
  writeFileSync(join(dir, 'w'), Buffer.alloc(MiB))
  const dev = run('losetup', ['-f', '--show', join(dir, 'w')]).trim()
  let detached = false
  t.teardown(() => detached || spawnSync('losetup', ['-d', dev]))
  for (let i = 0; i < 100 && !added.includes(dev); i++) await new Promise((r) => setTimeout(r, 20))
  t.true(added.includes(dev))
  run('losetup', ['-d', dev])
  detached = true
  for (let i = 0; i < 100 && !removed.includes(dev); i++) await new Promise((r) => setTimeout(r, 20))
  t.true(removed.includes(dev))
})

test('argument errors', async (t) => {
  await t.throwsAsync(sk.flash('x', 'y', { createFiles: true }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(sk.flash('x', [], { createFiles: true }), { code: 'ERR_INVALID_ARG_VALUE' })
  await t.throwsAsync(sk.flash('x', ['y'], { createFiles: true, ca: 5 }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(sk.flash(join(tempDir(t), 'missing'), ['y'], { createFiles: true }), { code: 'ENOENT' })
  t.throws(() => sk.drives.watch({ interval: 1 }), { code: 'ERR_INVALID_ARG_VALUE' })
  t.is(cli(['flash', '--create', 'only-source']).status, 2)
})

// Issue 27 item 1: a destination that does not exist (a card pulled after drives.list(),
// a mistyped /dev/sdX) was created as a regular file and reported flashed and verified.
test('a missing destination is refused with ENOENT and nothing is created', async (t) => {
  const dir = tempDir(t)
  const { path: src, data } = image(dir, 4 * MiB)
  const gone = `/dev/sparsekit-missing-${process.pid}-${Date.now()}`
  const plain = join(dir, 'new.img')
  t.teardown(() => rmSync(gone, { force: true }))
  for (const createFiles of [undefined, false, true]) {
    const r = await sk.flash(src, [gone], { createFiles })
    t.false(r.destinations[0].ok, `createFiles ${createFiles}`)
    t.is(r.destinations[0].error.code, 'ENOENT')
    t.is(r.destinations[0].error.path, gone)
    t.false(existsSync(gone), 'nothing created under /dev')
  }
  const r = await sk.flash(src, [plain])
  t.is(r.destinations[0].error.code, 'ENOENT')
  t.regex(r.destinations[0].error.message, /createFiles/)
  t.false(existsSync(plain))
  // A second, existing destination is still written.
  const other = join(dir, 'exists.img')
  writeFileSync(other, '')
  const two = await sk.flash(src, [plain, other])
  t.deepEqual(two.destinations.map((d) => d.ok), [false, true])
  t.true(readFileSync(other).equals(data))
  // Asked for explicitly, a regular file is created.
  const made = await sk.flash(src, [plain], { createFiles: true })
  t.true(made.destinations[0].ok)
  t.true(readFileSync(plain).equals(data))
  await t.throwsAsync(sk.flash(src, [plain], { createFiles: 1 }), { code: 'ERR_INVALID_ARG_TYPE' })
})

test('sparsekit flash to a missing drive exits 1 and creates nothing; --create makes a file', (t) => {
  const dir = tempDir(t)
  const { path: src, data } = image(dir, 2 * MiB)
  const gone = `/dev/sdzz-sparsekit-${process.pid}`
  t.teardown(() => rmSync(gone, { force: true }))
  for (const extra of [[], ['--create']]) {
    const r = cli(['flash', src, gone, ...extra])
    t.is(r.status, 1, r.stdout + r.stderr)
    t.regex(r.stderr, /ENOENT/)
    t.false(existsSync(gone))
  }
  const plain = join(dir, 'out.img')
  t.is(cli(['flash', src, plain]).status, 1)
  t.false(existsSync(plain))
  const ok = cli(['flash', src, plain, '--create'])
  t.is(ok.status, 0, ok.stderr)
  t.true(readFileSync(plain).equals(data))
})
