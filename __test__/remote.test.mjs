// Remote images read with HTTP range requests: qcow2.convert and bmap.copy of https URLs
// (outputs compared with qemu-img convert and the image itself), zip archives over HTTPS,
// hostile servers (no ranges, dropped connections, short Content-Length), and the CLI.
import test from 'ava'
import { writeFileSync, readFileSync, statSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { createServer } from 'node:https'
import { createServer as createHttpServer } from 'node:http'
import { gzipSync } from 'node:zlib'
import { spawn } from 'node:child_process'
import { sk, tempDir, sparseFile, randomBytes, run, CLI, testWith, nodeDigest } from './helpers.mjs'

const MiB = 1 << 20
const withTls = testWith(['openssl'], test)
const withQemu = testWith(['openssl', 'qemu-img'], test)
const withZip = testWith(['openssl', 'zip'], test)

/** A CA and a server certificate for 127.0.0.1 signed by it. */
function certificates(dir) {
  const o = (args) => run('openssl', args, { cwd: dir, stdio: 'pipe' })
  o(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem',
    '-subj', '/CN=sparsekit-test-ca', '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign'])
  o(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=127.0.0.1'])
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n')
  o(['x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'leaf.pem', '-days', '2', '-extfile', 'ext.cnf'])
  return { ca: readFileSync(join(dir, 'ca.pem')), caPath: join(dir, 'ca.pem'), key: readFileSync(join(dir, 'leaf.key')), cert: readFileSync(join(dir, 'leaf.pem')) }
}

/**
 * An HTTPS server on loopback serving `files`, with `Range: bytes=A-B` / `bytes=A-`
 * unless `state.ranges` is false; `state.drops` ranged answers are cut half-way (the socket
 * destroyed), `state.lies` announce half the Content-Length, and ranged requests past
 * `state.failFrom` get their connection closed at once.
 */
async function httpsServer(t, tls, files) {
  const state = { ranges: true, drops: 0, lies: 0, ranged: 0, requests: 0, failFrom: Infinity }
  const server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    state.requests++
    const data = files[req.url.slice(1)]
    if (!data) {
      res.writeHead(404, { 'content-length': 0 }).end()
      return
    }
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '')
    if (!m || !state.ranges || Number(m[1]) >= data.length) {
      res.writeHead(200, { 'content-length': data.length, etag: '"v1"' })
      res.end(data)
      return
    }
    if (state.ranged >= state.failFrom) {
      req.socket.destroy()
      return
    }
    const start = Number(m[1])
    const end = Math.min(m[2] === '' ? data.length - 1 : Number(m[2]), data.length - 1)
    const len = end + 1 - start
    state.ranged++
    const lie = state.lies > 0 && state.lies-- > 0
    res.writeHead(206, {
      'content-length': lie ? Math.ceil(len / 2) : len,
      'content-range': `bytes ${start}-${end}/${data.length}`,
      etag: '"v1"',
    })
    const body = data.subarray(start, end + 1)
    if (lie) {
      // Node refuses to write more than the Content-Length: the client sees half.
      res.end(body.subarray(0, Math.ceil(len / 2)))
    } else if (len > 1 && state.drops > 0) {
      state.drops--
      res.write(body.subarray(0, len >> 1), () => res.socket.destroy())
    } else res.end(body)
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise((r) => server.close(r)))
  server.unref()
  return { url: (p) => `https://127.0.0.1:${server.address().port}/${p}`, state }
}

/** The CLI run without blocking the event loop (the test's server answers meanwhile). */
function cliAsync(args, env = {}) {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } })
    let stdout = ''
    let stderr = ''
    c.stdout.on('data', (d) => (stdout += d))
    c.stderr.on('data', (d) => (stderr += d))
    c.on('close', (status) => resolve({ status, stdout, stderr }))
  })
}

const allocated = (p) => statSync(p).blocks * 512

/** A 64 MiB raw disk with data, zeros and holes, and qemu-img's qcow2 forms of it. */
function qcow2Images(dir) {
  const size = 64 * MiB
  const data = randomBytes(5 * MiB)
  sparseFile(join(dir, 'disk.raw'), size, [[MiB, data], [40 * MiB, data.subarray(0, 2 * MiB)], [size - 4096, randomBytes(4096)]])
  const out = {}
  for (const [name, extra] of [['plain.qcow2', []], ['zlib.qcow2', ['-c']]]) {
    run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', ...extra, join(dir, 'disk.raw'), join(dir, name)])
    run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', join(dir, name), join(dir, `${name}.oracle`)])
    out[name] = readFileSync(join(dir, name))
  }
  return out
}

withQemu('qcow2.convert of an https URL equals qemu-img convert of the same file, through dropped connections', async (t) => {
  const dir = tempDir(t)
  const tls = certificates(dir)
  const files = qcow2Images(dir)
  const srv = await httpsServer(t, tls, files)
  for (const name of Object.keys(files)) {
    srv.state.drops = 3
    srv.state.lies = 2
    const dst = join(dir, `${name}.out`)
    const phases = new Set()
    const r = await sk.qcow2.convert(srv.url(name), dst, { ca: tls.ca, retryDelay: 5, onProgress: (p) => phases.add(p.phase) })
    t.is(r.size, 64 * MiB)
    t.is(await nodeDigest(dst, 'md5'), await nodeDigest(join(dir, `${name}.oracle`), 'md5'), name)
    t.true(allocated(dst) < 16 * MiB, `${name}: ${allocated(dst)} bytes allocated`)
    t.is(srv.state.drops, 0, `${name}: every drop happened`)
    t.is(srv.state.lies, 0)
    t.true(phases.has('write'))
  }
  // The CLI, trusting the CA through SSL_CERT_FILE.
  const c = await cliAsync(['qcow2', 'convert', srv.url('zlib.qcow2'), join(dir, 'cli.raw')], { SSL_CERT_FILE: tls.caPath })
  t.is(c.status, 0, c.stderr)
  t.is(await nodeDigest(join(dir, 'cli.raw'), 'md5'), await nodeDigest(join(dir, 'zlib.qcow2.oracle'), 'md5'))
  // A server that stops answering: bounded retries, then an error naming URL and offset.
  srv.state.failFrom = srv.state.ranged + 1
  const gone = await t.throwsAsync(sk.qcow2.convert(srv.url('plain.qcow2'), join(dir, 'gone'), { ca: tls.ca, retries: 2, retryDelay: 1 }))
  t.is(gone.code, 'ERR_SPARSEKIT_HTTP_INTERRUPTED')
  t.is(typeof gone.offset, 'number')
  t.true(gone.message.includes(srv.url('plain.qcow2')), gone.message)
  srv.state.failFrom = Infinity
  // A server without range support: a clear refusal.
  srv.state.ranges = false
  const e = await t.throwsAsync(sk.qcow2.convert(srv.url('plain.qcow2'), join(dir, 'x'), { ca: tls.ca }))
  t.is(e.code, 'ERR_SPARSEKIT_HTTP_NO_RANGES')
  t.regex(e.message, /range requests/)
  const c2 = await cliAsync(['qcow2', 'convert', srv.url('plain.qcow2'), join(dir, 'y')], { SSL_CERT_FILE: tls.caPath })
  t.not(c2.status, 0)
  t.regex(c2.stderr, /ERR_SPARSEKIT_HTTP_NO_RANGES/)
})

withTls('bmap.copy of an https URL: URL.bmap found, byte-exact, holes kept; gzip without a bmap', async (t) => {
  const dir = tempDir(t)
  const tls = certificates(dir)
  const size = 24 * MiB
  sparseFile(join(dir, 'os.img'), size, [[0, randomBytes(MiB)], [9 * MiB, randomBytes(3 * MiB)], [size - MiB, randomBytes(MiB)]])
  const xml = await sk.bmap.create(join(dir, 'os.img'))
  const img = readFileSync(join(dir, 'os.img'))
  const files = { 'os.img': img, 'os.img.bmap': Buffer.from(xml), 'os.img.gz': gzipSync(img, { level: 1 }) }
  const srv = await httpsServer(t, tls, files)
  srv.state.drops = 2
  const dst = join(dir, 'a')
  const r = await sk.bmap.copy(srv.url('os.img'), dst, { createFiles: true, ca: tls.ca, retryDelay: 5, readBack: true })
  t.is(r.bmap, srv.url('os.img.bmap'))
  t.is(r.bytesWritten, 5 * MiB)
  // Only the mapped ranges were fetched (range requests), not the 24 MiB file.
  t.true(srv.state.ranged > 0)
  t.true(r.rangesVerified > 0)
  t.true(r.rangesReadBack > 0)
  t.is(r.imageSize, size)
  t.is(await nodeDigest(dst, 'md5'), await nodeDigest(join(dir, 'os.img'), 'md5'))
  t.true(allocated(dst) <= 6 * MiB, `${allocated(dst)}`)
  t.is(srv.state.drops, 0)
  const g = join(dir, 'g')
  const r2 = await sk.bmap.copy(new URL(srv.url('os.img.gz')), g, { createFiles: true, ca: tls.ca })
  t.is(r2.compression, 'gzip')
  t.is(r2.bmap, undefined)
  t.is(await nodeDigest(g, 'md5'), await nodeDigest(join(dir, 'os.img'), 'md5'))
  t.true(allocated(g) <= 6 * MiB, `${allocated(g)}`)
  // The CLI.
  const c = await cliAsync(['bmap', 'copy', '--create', srv.url('os.img'), join(dir, 'cli')], { SSL_CERT_FILE: tls.caPath })
  t.is(c.status, 0, c.stderr)
  t.regex(c.stdout, /os\.img\.bmap/)
  t.is(await nodeDigest(join(dir, 'cli'), 'md5'), await nodeDigest(join(dir, 'os.img'), 'md5'))
  // The CA given with --ca instead; --ca with a local image is a usage error (exit 2).
  const c3 = await cliAsync(['bmap', 'copy', '--create', '--ca', tls.caPath, '--retries', '2', srv.url('os.img'), join(dir, 'cli-ca')])
  t.is(c3.status, 0, c3.stderr)
  t.is(await nodeDigest(join(dir, 'cli-ca'), 'md5'), await nodeDigest(join(dir, 'os.img'), 'md5'))
  const c4 = await cliAsync(['bmap', 'copy', '--create', '--ca', tls.caPath, join(dir, 'os.img'), join(dir, 'cli-local')])
  t.is(c4.status, 2)
  t.regex(c4.stderr, /--ca and --retries apply to http\(s\) URLs/)
  t.false(existsSync(join(dir, 'cli-local')))
  // Untrusted without the CA.
  const e = await t.throwsAsync(sk.bmap.copy(srv.url('os.img'), join(dir, 'u'), { createFiles: true }))
  t.is(e.code, 'ERR_SPARSEKIT_HTTP')
})

withZip('a zip archive over https is read through its central directory (flash and bmap.copy)', async (t) => {
  const dir = tempDir(t)
  const tls = certificates(dir)
  const data = randomBytes(6 * MiB)
  writeFileSync(join(dir, 'os.img'), data)
  writeFileSync(join(dir, 'README'), 'hello')
  run('zip', ['-q', '-6', 'd.zip', 'README', 'os.img'], { cwd: dir })
  run('zip', ['-q', '-0', 's.zip', 'os.img', 'README'], { cwd: dir })
  const files = { 'd.zip': readFileSync(join(dir, 'd.zip')), 's.zip': readFileSync(join(dir, 's.zip')) }
  const srv = await httpsServer(t, tls, files)
  for (const z of Object.keys(files)) {
    srv.state.drops = 2
    const dst = join(dir, `${z}.out`)
    const r = await sk.flash(srv.url(z), [dst], { createFiles: true, ca: tls.ca, retryDelay: 5 })
    t.true(r.destinations[0].ok, r.destinations[0].error?.message)
    t.is(r.zipEntry, 'os.img')
    t.true(readFileSync(dst).equals(data), z)
    const c = join(dir, `${z}.copy`)
    await sk.bmap.copy(srv.url(z), c, { createFiles: true, ca: tls.ca })
    t.true(readFileSync(c).equals(data), z)
  }
  srv.state.ranges = false
  const e = await t.throwsAsync(sk.flash(srv.url('d.zip'), [join(dir, 'x')], { createFiles: true, ca: tls.ca }))
  t.is(e.code, 'ERR_SPARSEKIT_HTTP_NO_RANGES')
})

test('remote argument errors', async (t) => {
  await t.throwsAsync(sk.qcow2.convert('https://127.0.0.1:1/x', join(tempDir(t), 'y'), { ca: 5 }), { code: 'ERR_INVALID_ARG_TYPE' })
  const e = await t.throwsAsync(sk.bmap.copy('https://127.0.0.1:1/x', join(tempDir(t), 'y'), { createFiles: true, retries: -1 }))
  t.regex(e.code, /^ERR_(INVALID_ARG|OUT_OF_RANGE)/)
  // Nothing listening: a coded HTTP error naming the URL, the destination untouched.
  const dir = tempDir(t)
  const down = await t.throwsAsync(sk.qcow2.convert('http://127.0.0.1:1/x.qcow2', join(dir, 'y'), { retries: 1, retryDelay: 1 }))
  t.regex(down.code, /^ERR_SPARSEKIT_HTTP/)
  t.throws(() => statSync(join(dir, 'y')), { code: 'ENOENT' })
})

/**
 * A plain HTTP server on loopback whose every request is handed to `handle(req, res, n)`
 * (`n`: the request's number for its path, from 0). Sockets are destroyed on teardown,
 * so a handler that never answers cannot keep the test alive.
 */
async function scripted(t, handle) {
  const counts = {}
  const sockets = new Set()
  const server = createHttpServer((req, res) => {
    const n = (counts[req.url] = (counts[req.url] ?? -1) + 1)
    handle(req, res, n)
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => {
    for (const s of sockets) s.destroy()
    return new Promise((r) => server.close(r))
  })
  server.unref()
  return { url: (p) => `http://127.0.0.1:${server.address().port}/${p}`, counts }
}

/** A whole or ranged (`Range: bytes=N-`) answer for `data`. */
function answer(req, res, data, headers = {}) {
  const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '')
  if (m && Number(m[1]) < data.length) {
    const a = Number(m[1])
    res.writeHead(206, { 'content-length': data.length - a, 'content-range': `bytes ${a}-${data.length - 1}/${data.length}`, ...headers })
    res.end(data.subarray(a))
  } else {
    res.writeHead(200, { 'content-length': data.length, ...headers })
    res.end(data)
  }
}

/** An existing, empty destination file. */
function emptyFile(dir, name) {
  const p = join(dir, name)
  writeFileSync(p, '')
  return p
}

test('abort rejects at once while the server stalls or URL.bmap trickles in', async (t) => {
  const srv = await scripted(t, (req, res) => {
    if (req.url === '/trickle.bmap') {
      res.writeHead(200)
      res.write('<?xml version="1.0"?><bmap>')
      const timer = setInterval(() => res.write(' '), 200)
      const stop = setTimeout(() => { clearInterval(timer); res.destroy() }, 20000)
      res.on('close', () => { clearInterval(timer); clearTimeout(stop) })
    }
    // Anything else: accepted, never answered.
  })
  const dir = tempDir(t)
  for (const [name, bmap] of [['stall', false], ['stall', undefined], ['trickle', undefined]]) {
    const ac = new AbortController()
    const started = Date.now()
    setTimeout(() => ac.abort(), 200)
    const e = await t.throwsAsync(sk.flash(srv.url(name), [emptyFile(dir, 'out')], { signal: ac.signal, ...(bmap === false ? { bmap } : {}) }))
    t.is(e.code, 'ERR_SPARSEKIT_ABORTED', `${name}: ${e.message}`)
    // Well before the 30 s per-read time-out and the server's 20 s trickle, whatever the
    // machine's load (the abort itself is checked every 20 ms).
    t.true(Date.now() - started < 10000, `${name}: rejected after ${Date.now() - started} ms`)
  }
})

test('the first request of an http source is retried; a resume with another file is refused', async (t) => {
  const data = randomBytes(3 * MiB)
  const other = randomBytes(3 * MiB)
  const srv = await scripted(t, (req, res, n) => {
    if (req.url.endsWith('.bmap')) return res.writeHead(404).end()
    if (req.url === '/dropped') {
      if (n === 0) return req.socket.destroy()
      if (n === 1) {
        res.writeHead(200, { 'content-length': data.length, etag: '"a"' })
        return res.write(data.subarray(0, MiB), () => res.socket.destroy())
      }
      return answer(req, res, data, { etag: '"a"' })
    }
    if (req.url === '/changed') {
      if (n === 0) {
        res.writeHead(200, { 'content-length': data.length, etag: '"v1"' })
        return res.write(data.subarray(0, MiB), () => res.socket.destroy())
      }
      // Ignores If-Range: the new file's bytes from the asked offset.
      return answer(req, res, other, { etag: '"v2"' })
    }
    res.writeHead(404).end()
  })
  const dir = tempDir(t)
  const dst = emptyFile(dir, 'a')
  const r = await sk.flash(srv.url('dropped'), [dst], { retryDelay: 5 })
  t.true(r.destinations[0].ok, r.destinations[0].error?.message)
  t.true(readFileSync(dst).equals(data))
  const e = await t.throwsAsync(sk.flash(srv.url('changed'), [emptyFile(dir, 'b')], { retryDelay: 5 }))
  t.is(e.code, 'ERR_SPARSEKIT_HTTP_CHANGED', e.message)
  t.true(e.offset > 0 && e.offset <= MiB, `${e.offset}`)
})

test('URL.bmap that is an HTML page fails with a coded error; a missing one is no bmap', async (t) => {
  const data = randomBytes(MiB)
  const srv = await scripted(t, (req, res) => {
    if (req.url === '/html/os.img.bmap') return res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><p>nothing here</p>')
    if (req.url.endsWith('.bmap')) return res.writeHead(404).end()
    answer(req, res, data)
  })
  const dir = tempDir(t)
  const e = await t.throwsAsync(sk.flash(srv.url('html/os.img'), [emptyFile(dir, 'a')], { retryDelay: 5 }))
  t.is(e.code, 'ERR_SPARSEKIT_BMAP_INVALID', e.message)
  t.regex(e.message, /HTML/)
  const r = await sk.flash(srv.url('plain/os.img'), [emptyFile(dir, 'b')], { retryDelay: 5 })
  t.true(r.destinations[0].ok)
  t.is(r.bmap, undefined)
})
