// Hostile use of the landed API (issue 8): FIFOs, exit and worker teardown with jobs in
// flight, throwing callbacks, /proc and sysfs files, look-alike signals, files above 2^53,
// and the CLI on broken pipes, full disks and Ctrl-C. Each test names the item it guards.
import test from 'ava'
import { writeFileSync, readFileSync, existsSync, openSync, writeSync, closeSync, ftruncateSync } from 'node:fs'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { spawnSync, spawn, execFileSync } from 'node:child_process'
import { sk, tempDir, randomBytes, cli, CLI, testWith } from './helpers.mjs'
import { fsTest, mountFs } from './fs-helpers.mjs'

const MiB = 1 << 20
const INDEX = new URL('../dist/index.js', import.meta.url).pathname
const sha256 = (b) => createHash('sha256').update(b).digest('hex')

function fifo(t) {
  const p = join(tempDir(t), 'fifo')
  execFileSync('mkfifo', [p])
  return p
}

/** A file of `n` 4 KiB extents separated by 4 KiB holes. */
function manyExtents(dir, n) {
  const p = join(dir, 'many')
  const fd = openSync(p, 'w')
  const block = randomBytes(4096)
  for (let i = 0; i < n; i++) writeSync(fd, block, 0, 4096, i * 8192)
  ftruncateSync(fd, n * 8192)
  closeSync(fd)
  return p
}

/** Run a Node script; never hangs longer than `timeout` ms (then `timedOut`). */
function node(script, timeout = 20000) {
  const start = Date.now()
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout })
  return { ...r, ms: Date.now() - start, timedOut: r.error?.code === 'ETIMEDOUT' }
}

test('8.1: a FIFO with no writer never hangs: digest waits and aborts, map and copy refuse it', async (t) => {
  const f = fifo(t)
  const ac = new AbortController()
  const p = sk.digest(f, { signal: ac.signal })
  setTimeout(() => ac.abort(), 100)
  t.is((await t.throwsAsync(p)).code, 'ERR_SPARSEKIT_ABORTED')
  t.is((await t.throwsAsync(sk.map(f))).code, 'ERR_SPARSEKIT_NOT_A_FILE')
  const e = await t.throwsAsync(sk.copy(f, join(tempDir(t), 'x')))
  t.is(e.code, 'ERR_SPARSEKIT_NOT_A_FILE')
  t.regex(e.message, /fifo/)
})

test('8.1: a FIFO is hashed once a writer comes and closes', async (t) => {
  const f = fifo(t)
  const p = sk.digest(f)
  const data = randomBytes(300000)
  const w = spawn('sh', ['-c', `cat > ${f}`])
  w.stdin.end(data)
  t.is(await p, sha256(data))
})

test('8.1/8.2: process.exit() returns promptly with a FIFO digest pending', (t) => {
  const f = fifo(t)
  const r = node(`const sk = require(${JSON.stringify(INDEX)}); sk.digest(${JSON.stringify(f)}).catch(() => {});
    setTimeout(() => process.exit(7), 200)`)
  t.false(r.timedOut, 'process.exit() hung')
  t.is(r.status, 7, r.stderr)
  t.log(`exit took ${r.ms} ms including Node start-up`)
})

test('8.2: process.exit() does not wait for a long digest', (t) => {
  const dir = tempDir(t)
  const big = join(dir, 'big')
  execFileSync('truncate', ['-s', '1T', big]) // SHA3-512 of 1 TiB of zeros: hours
  const r = node(`const sk = require(${JSON.stringify(INDEX)});
    sk.digest(${JSON.stringify(big)}, { algorithm: 'sha3-512' }).catch(() => {});
    setTimeout(() => process.exit(0), 300)`)
  t.false(r.timedOut, 'exit waited for the job')
  t.is(r.status, 0, r.stderr)
  t.log(`exit took ${r.ms} ms including Node start-up`)
})

test('8.2: worker.terminate() with jobs in flight resolves promptly; the jobs stop', (t) => {
  const dir = tempDir(t)
  const big = join(dir, 'big')
  execFileSync('truncate', ['-s', '1T', big])
  const f = fifo(t)
  const r = node(`const { Worker } = require('node:worker_threads');
    const w = new Worker(\`const sk = require(${JSON.stringify(INDEX)});
      sk.digest(${JSON.stringify(big)}, { algorithm: 'sha3-512', onProgress() {} }).catch(() => {});
      sk.digest(${JSON.stringify(f)}).catch(() => {});
      sk.copy(${JSON.stringify(big)}, ${JSON.stringify(join(dir, 'copy'))}, { method: 'readwrite', zeroHoles: true }).catch(() => {});
      require('node:worker_threads').parentPort.postMessage('started')\`, { eval: true });
    w.on('message', () => setTimeout(async () => {
      const t0 = Date.now(); await w.terminate(); console.log('terminated', Date.now() - t0)
    }, 300))`)
  t.false(r.timedOut, 'worker.terminate() hung')
  t.regex(r.stdout, /^terminated \d+/, r.stderr)
  t.log(r.stdout.trim() + ' ms')
})

test('8.3: a throwing onProgress rejects with ERR_SPARSEKIT_CALLBACK and its cause, mid-way or at 100%', async (t) => {
  const dir = tempDir(t)
  const f = join(dir, 'f')
  writeFileSync(f, randomBytes(8 * MiB))
  const boom = new Error('boom')
  let e = await t.throwsAsync(sk.digest(f, { onProgress: () => { throw boom } }))
  t.is(e.code, 'ERR_SPARSEKIT_CALLBACK')
  t.is(e.cause, boom)
  e = await t.throwsAsync(sk.digest(f, { onProgress: (p) => { if (p.phase === 'hash' && p.bytesDone === p.bytesTotal) throw boom } }))
  t.is(e.code, 'ERR_SPARSEKIT_CALLBACK')
  e = await t.throwsAsync(sk.copy(f, join(dir, 'c'), { onProgress: () => { throw 'a string' } }))
  t.is(e.code, 'ERR_SPARSEKIT_CALLBACK')
  t.is(e.cause, 'a string')
  // and the process is still fine
  t.is(await sk.digest(f), sha256(readFileSync(f)))
})

test('8.3: a throwing callback never crashes the process', (t) => {
  const dir = tempDir(t)
  const f = join(dir, 'f')
  writeFileSync(f, randomBytes(MiB))
  const r = node(`const sk = require(${JSON.stringify(INDEX)});
    sk.digest(${JSON.stringify(f)}, { onProgress() { throw new Error('x') } }).then(() => console.log('resolved'), (e) => console.log(e.code))`)
  t.is(r.status, 0, r.stderr)
  t.is(r.stdout.trim(), 'ERR_SPARSEKIT_CALLBACK')
})

// Cancellation between FIEMAP batches is proven deterministically in crates/extents
// (cancel_between_batches); here: the signal reaches a running map and the CLI's map.
test('8.4: map() takes its AbortSignal: aborted before or while mapping, it rejects', async (t) => {
  const p = manyExtents(tempDir(t), 20000)
  const ac = new AbortController()
  ac.abort()
  t.is((await t.throwsAsync(sk.map(p, { signal: ac.signal }))).code, 'ERR_SPARSEKIT_ABORTED')
  const seen = []
  const m = await sk.map(p, { onProgress: (pr) => seen.push(pr) })
  t.is(m.extents.length, 20000)
  t.deepEqual(seen.at(-1), { phase: 'map', bytesDone: 20000 * 8192, bytesTotal: 20000 * 8192 })
})

test('8.5: /proc and sysfs files are hashed by their content', async (t) => {
  const v = readFileSync('/proc/version')
  t.true(v.length > 0)
  t.is(await sk.digest('/proc/version'), sha256(v))
  const sys = '/sys/devices/system/cpu/possible' // st_size 4096, a few bytes of content
  if (existsSync(sys)) t.is(await sk.digest(sys), sha256(readFileSync(sys)))
})

fsTest(['tmpfs'], '8.7: files above 2^53 bytes: windows map, size is a BigInt', async (t) => {
  const mnt = mountFs(t, 'tmpfs', 8)
  const f = join(mnt, 'huge')
  writeFileSync(f, Buffer.alloc(4096, 7))
  execFileSync('truncate', ['-s', String(2n ** 60n), f])
  const w = await sk.map(f, { length: MiB })
  t.is(w.size, 2n ** 60n)
  t.deepEqual(w.extents, [{ offset: 0, length: 4096 }])
  const all = await sk.map(f)
  t.is(all.size, 2n ** 60n)
  t.deepEqual(all.extents, [{ offset: 0, length: 4096 }])
  t.is(await sk.digest(f, { length: 4096 }), sha256(Buffer.alloc(4096, 7)))
})

test('8.8: a look-alike AbortSignal is refused up front, nothing done', async (t) => {
  const dir = tempDir(t)
  const f = join(dir, 'f')
  writeFileSync(f, 'x')
  const duck = { aborted: false, addEventListener() {} }
  for (const op of [() => sk.digest(f, { signal: duck }), () => sk.copy(f, join(dir, 'y'), { signal: duck }), () => sk.map(f, { signal: duck })]) {
    const e = await t.throwsAsync(op())
    t.true(e instanceof TypeError)
    t.is(e.code, 'ERR_INVALID_ARG_TYPE')
  }
  t.false(existsSync(join(dir, 'y')))
})

test('8.16: mapExtents streams the same extents as map, merged across windows', async (t) => {
  const dir = tempDir(t)
  const p = join(dir, 'f')
  const fd = openSync(p, 'w')
  writeSync(fd, randomBytes(8192), 0, 8192, 2 ** 30 - 4096) // crosses the first 1 GiB window
  writeSync(fd, randomBytes(4096), 0, 4096, 3 * 2 ** 30)
  ftruncateSync(fd, 4 * 2 ** 30)
  closeSync(fd)
  const all = []
  let header
  for await (const e of sk.mapExtents(p, { onHeader: (h) => (header = h) })) all.push(e)
  const m = await sk.map(p)
  t.deepEqual(all, m.extents)
  t.is(header.size, m.size)
  t.is(all.length, 2)
})

test('8.12: CLI on a closed pipe exits quietly; on a full disk says so in one line', (t) => {
  const p = manyExtents(tempDir(t), 20000)
  const r = spawnSync('bash', ['-c', `set -o pipefail; ${JSON.stringify(process.execPath)} ${CLI} map ${p} | head -c1 >/dev/null`], { encoding: 'utf8' })
  t.is(r.stderr, '')
  t.is(r.status, 0)
  if (existsSync('/dev/full')) {
    const full = spawnSync('bash', ['-c', `${JSON.stringify(process.execPath)} ${CLI} map ${p} > /dev/full`], { encoding: 'utf8' })
    t.is(full.status, 1)
    t.is(full.stderr.trim().split('\n').length, 1, full.stderr)
    t.regex(full.stderr, /^sparsekit: .*(ENOSPC|space)/)
  }
})

test('8.12/8.16: CLI map --json streams valid JSON for many extents', (t) => {
  const p = manyExtents(tempDir(t), 20000)
  const r = cli(['map', p, '--json'], { maxBuffer: 64 * MiB })
  t.is(r.status, 0, r.stderr)
  const m = JSON.parse(r.stdout)
  t.is(m.extents.length, 20000)
  t.deepEqual(m.extents[1], { offset: 8192, length: 4096 })
})

test('8.13: SIGINT exits 130 and says what was left behind', async (t) => {
  const f = fifo(t)
  const child = spawn(process.execPath, [CLI, 'copy', '/dev/zero', join(tempDir(t), 'x')])
  const dig = spawn(process.execPath, [CLI, 'digest', f])
  const done = (c) => new Promise((r) => { let err = ''; c.stderr.on('data', (d) => (err += d)); c.on('close', (code) => r({ code, err })) })
  const pd = done(dig)
  const pc = done(child)
  setTimeout(() => dig.kill('SIGINT'), 500)
  const r = await pd
  t.is(r.code, 130)
  t.regex(r.err, /^sparsekit: interrupted\n$/)
  const c = await pc // /dev/zero is a character device: refused, not copied forever
  t.is(c.code, 1)
  t.regex(c.err, /character device/)
})

test('8.15: `--` ends options; bare sparsekit prints usage on stderr and exits 2', (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, '--help'), 'abc')
  const r = cli(['digest', '--', '--help'], { cwd: dir })
  t.is(r.status, 0, r.stderr)
  t.is(r.stdout, `${sha256(Buffer.from('abc'))}  --help\n`)
  const bare = cli([])
  t.is(bare.status, 2)
  t.is(bare.stdout, '')
  t.regex(bare.stderr, /Usage:/)
})

testWith(['script'], test)('8.14: TTY progress: bytes and rate for streams, bar cleared before an error', (t) => {
  const dir = tempDir(t)
  const src = join(dir, 'src')
  writeFileSync(src, randomBytes(20 * MiB))
  const node = JSON.stringify(process.execPath)
  // Half the stream, a pause, the rest: the bar is drawn with bytes moved after the pause,
  // when a rate means something (none is shown in the first quarter second).
  const feed = `{ head -c ${10 * MiB} ${src}; sleep 1; tail -c +${10 * MiB + 1} ${src}; }`
  const tty = spawnSync('script', ['-qec', `${feed} | ${node} ${CLI} digest /dev/stdin`, '/dev/null'], { encoding: 'utf8' })
  t.is(tty.status, 0, tty.stderr)
  t.regex(tty.stdout, /hash [\d.]+ MiB, [\d.]+ MiB\/s/)
  t.false(/100%.*\n.*100%/.test(tty.stdout), 'a new 100% line per update')
  const bad = spawnSync('script', ['-qec', `${node} ${CLI} copy ${src} ${join(dir, 'missing', 'x')}`, '/dev/null'], { encoding: 'utf8' })
  t.regex(bad.stdout, /(^|\r\x1b\[K|\n)sparsekit: ENOENT/)
})
