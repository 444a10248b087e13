import test from 'ava'
import { Worker } from 'node:worker_threads'
import { writeFileSync, mkdirSync, statSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { sk, native, tempDir, sparseFile, nodeDigest, randomBytes, run, cli, testWith } from './helpers.mjs'

// The sparse file's size: many 1 MiB read windows and holes, yet cheap to hash with every
// algorithm here and in node:crypto (SHA3-512 runs at 150-200 MiB/s on one core).
const SPARSE = 256 * 1024 ** 2

/** Files every digest test uses: empty, 1 byte, 3 MB random, 256 MiB sparse with data islands. */
function corpus(t) {
  const dir = tempDir(t)
  const files = {
    empty: join(dir, 'empty'),
    one: join(dir, 'one'),
    random: join(dir, 'random'),
    sparse: join(dir, 'sparse'),
  }
  writeFileSync(files.empty, '')
  writeFileSync(files.one, Buffer.from([0]))
  writeFileSync(files.random, randomBytes(3_000_000))
  sparseFile(files.sparse, SPARSE, [
    [0, randomBytes(4096)],
    [100 * 1024 * 1024 + 7, randomBytes(1 << 20)],
    [SPARSE - 5000, randomBytes(5000)],
  ])
  return files
}

for (const algorithm of ['sha256', 'sha3-512']) {
  test(`${algorithm} equals node:crypto on empty, 1-byte, 3 MB random, 256 MiB sparse`, async (t) => {
    const f = corpus(t)
    for (const [name, path] of Object.entries(f)) {
      t.is(await sk.digest(path, { algorithm }), await nodeDigest(path, algorithm), name)
    }
  })
}

test('sha1 equals node:crypto', async (t) => {
  const f = corpus(t)
  t.is(await sk.digest(f.random, { algorithm: 'sha1' }), await nodeDigest(f.random, 'sha1'))
})

test('default algorithm is sha256', async (t) => {
  const f = corpus(t)
  t.is(await sk.digest(f.random), await nodeDigest(f.random, 'sha256'))
})

test('blake3 official test vectors (input i % 251) for lengths 0 and 1', async (t) => {
  const f = corpus(t)
  t.is(await sk.digest(f.empty, { algorithm: 'blake3' }), 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262')
  t.is(await sk.digest(f.one, { algorithm: 'blake3' }), '2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213')
})

testWith(['b3sum'], test)('blake3 equals b3sum on 3 MB random and 256 MiB sparse', async (t) => {
  const f = corpus(t)
  for (const path of [f.random, f.sparse]) {
    t.is(await sk.digest(path, { algorithm: 'blake3' }), run('b3sum', ['--no-names', path]).trim())
  }
})

test('start/length windows equal node:crypto of the same bytes', async (t) => {
  const f = corpus(t)
  const windows = [
    [f.random, 0, 0],
    [f.random, 1, 1],
    [f.random, 12345, 1_000_000],
    [f.random, 2_999_999, 1],
    [f.random, 3_000_000, 0],
    [f.sparse, 100 * 1024 * 1024, 3 << 20],
    [f.sparse, SPARSE - 4096, 4096],
  ]
  for (const algorithm of ['sha256', 'sha3-512']) {
    for (const [path, start, length] of windows) {
      const want = length === 0
        ? createHash(algorithm).digest('hex')
        : await nodeDigest(path, algorithm, { start, end: start + length - 1 })
      t.is(await sk.digest(path, { algorithm, start, length }), want, `${algorithm} ${start}+${length}`)
    }
  }
  // start alone hashes to the end
  t.is(await sk.digest(f.random, { start: 1000 }), await nodeDigest(f.random, 'sha256', { start: 1000 }))
})

test('a window past the end rejects with ERR_SPARSEKIT_OUT_OF_RANGE', async (t) => {
  const f = corpus(t)
  const e = await t.throwsAsync(sk.digest(f.one, { start: 1, length: 1 }))
  t.is(e.code, 'ERR_SPARSEKIT_OUT_OF_RANGE')
  t.is(e.path, f.one)
})

test('missing file rejects with ENOENT and the path', async (t) => {
  const dir = tempDir(t)
  const missing = join(dir, 'nope')
  const e = await t.throwsAsync(sk.digest(missing))
  t.is(e.code, 'ENOENT')
  t.is(e.errno, -2)
  t.is(e.path, missing)
  t.true(e instanceof Error)
  t.regex(e.message, /nope/)
})

test('directory rejects with EISDIR', async (t) => {
  const dir = tempDir(t)
  mkdirSync(join(dir, 'd'))
  const e = await t.throwsAsync(sk.digest(join(dir, 'd')))
  t.is(e.code, 'EISDIR')
})

test('wrong argument types throw TypeError ERR_INVALID_ARG_TYPE', async (t) => {
  for (const bad of [undefined, null, 42, {}, [1], true]) {
    const e = await t.throwsAsync(sk.digest(bad))
    t.true(e instanceof TypeError)
    t.is(e.code, 'ERR_INVALID_ARG_TYPE')
  }
  const f = corpus(t)
  for (const opts of [{ algorithm: 5 }, { start: '1' }, { length: true }, { onProgress: 'x' }, { signal: {} }, { signal: { aborted: false, addEventListener() {} } }, 'sha256']) {
    const e = await t.throwsAsync(sk.digest(f.one, opts))
    t.is(e.code, 'ERR_INVALID_ARG_TYPE', JSON.stringify(opts))
    t.true(e instanceof TypeError)
  }
  const e = await t.throwsAsync(sk.digest(f.one, { algorithm: 'md5' }))
  t.is(e.code, 'ERR_INVALID_ARG_VALUE')
})

test('offsets outside [0, MAX_SAFE_INTEGER] throw RangeError', async (t) => {
  const f = corpus(t)
  for (const start of [-1, 1.5, 2 ** 53, Infinity, NaN]) {
    const e = await t.throwsAsync(sk.digest(f.one, { start }))
    t.true(e instanceof RangeError, String(start))
    t.is(e.code, 'ERR_OUT_OF_RANGE')
  }
  // the native layer checks too, for callers that skip the TS layer
  const e = await t.throwsAsync(native.digest(f.one, { start: -5 }))
  t.is(e.code, 'ERR_OUT_OF_RANGE')
})

test('a Rust panic becomes ERR_SPARSEKIT_INTERNAL, not a crash', async (t) => {
  const e = await t.throwsAsync(native.testPanic('boom on purpose'))
  t.is(e.code, 'ERR_SPARSEKIT_INTERNAL')
  t.regex(e.message, /boom on purpose/)
  const s = t.throws(() => native.testPanicSync('sync boom'))
  t.is(s.code, 'ERR_SPARSEKIT_INTERNAL')
  // the addon still works afterwards
  const f = corpus(t)
  t.is(await sk.digest(f.empty), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855')
})

// The contract, not a timing (issue 7): how many calls arrive depends on the machine's
// speed; the phases, their order, monotonicity and the one final 100% call per phase do not.
test('progress: map then hash, each non-decreasing and ending once at exactly 100%', async (t) => {
  const f = corpus(t)
  for (const [file, size] of [[f.sparse, SPARSE], [f.one, 1]]) {
    const seen = []
    await sk.digest(file, { algorithm: 'sha256', onProgress: (p) => seen.push(p) })
    const phases = seen.map((p) => p.phase).filter((p, i, a) => i === 0 || a[i - 1] !== p)
    t.deepEqual(phases, ['map', 'hash'])
    for (const phase of phases) {
      const of = seen.filter((p) => p.phase === phase)
      for (let i = 1; i < of.length; i++) t.true(of[i].bytesDone >= of[i - 1].bytesDone)
      t.true(of.every((p) => p.bytesTotal === size))
      t.is(of.filter((p) => p.bytesDone === size).length, 1, `${phase}: ${JSON.stringify(of)}`)
      t.deepEqual(of.at(-1), { phase, bytesDone: size, bytesTotal: size })
    }
  }
  // a stream: total unknown until the end, then one final call at 100%
  const seen = []
  await sk.digest('/proc/version', { onProgress: (p) => seen.push(p) })
  const n = readFileSync('/proc/version').length
  t.deepEqual(seen.at(-1), { phase: 'hash', bytesDone: n, bytesTotal: n })
  t.true(seen.slice(0, -1).every((p) => p.bytesTotal === undefined))
})

test('abort before start rejects at once with ERR_SPARSEKIT_ABORTED', async (t) => {
  const f = corpus(t)
  const ac = new AbortController()
  ac.abort()
  const e = await t.throwsAsync(sk.digest(f.sparse, { signal: ac.signal }))
  t.is(e.code, 'ERR_SPARSEKIT_ABORTED')
  t.is(e.name, 'AbortError')
})

test('abort during hashing stops the Rust work early', async (t) => {
  // A file of its own, 1 GiB: aborted early, only its first tens of MiB are hashed.
  const big = join(tempDir(t), 'big')
  sparseFile(big, 1024 ** 3, [[0, randomBytes(4096)]])
  const ac = new AbortController()
  let lastDone = 0
  const p = sk.digest(big, {
    algorithm: 'sha3-512', // ~7 s for 1 GiB: long enough to abort in the middle
    signal: ac.signal,
    onProgress: (pr) => {
      lastDone = pr.bytesDone
      if (pr.bytesDone > 32 << 20) ac.abort()
    },
  })
  const e = await t.throwsAsync(p)
  t.is(e.code, 'ERR_SPARSEKIT_ABORTED')
  // Had the Rust work gone on, the rejection would only come after the whole GiB was hashed.
  t.true(lastDone < 1024 ** 3 / 2, `hashed ${lastDone} bytes before stopping`)
})

test('200 concurrent digests all resolve correctly', async (t) => {
  const dir = tempDir(t)
  const files = []
  for (let i = 0; i < 20; i++) {
    const p = join(dir, `f${i}`)
    writeFileSync(p, randomBytes(10_000 + i * 777))
    files.push(p)
  }
  const want = await Promise.all(files.map((p) => nodeDigest(p, 'sha256')))
  const got = await Promise.all(Array.from({ length: 200 }, (_, i) => sk.digest(files[i % 20])))
  got.forEach((g, i) => t.is(g, want[i % 20]))
})

test('the addon works from 8 worker_threads at once', async (t) => {
  const f = corpus(t)
  const want = await nodeDigest(f.random, 'sha256')
  const url = new URL('../dist/index.js', import.meta.url).pathname
  const code = `
    const { parentPort, workerData } = require('node:worker_threads')
    const sk = require(workerData.url)
    Promise.all([1, 2, 3].map(() => sk.digest(workerData.path)))
      .then((d) => parentPort.postMessage(d), (e) => parentPort.postMessage({ error: e.code }))`
  const results = await Promise.all(
    Array.from({ length: 8 }, () =>
      new Promise((resolve, reject) => {
        const w = new Worker(code, { eval: true, workerData: { url, path: f.random } })
        w.once('message', (m) => { resolve(m); w.terminate() })
        w.once('error', reject)
      }),
    ),
  )
  for (const r of results) t.deepEqual(r, [want, want, want])
})

test('cli: digest prints hex and path; errors exit 1 with one line; usage exits 2', (t) => {
  const dir = tempDir(t)
  const p = join(dir, 'x')
  writeFileSync(p, 'abc')
  const ok = cli(['digest', p])
  t.is(ok.status, 0)
  t.is(ok.stdout, `ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  ${p}\n`)
  const js = cli(['digest', p, '--algorithm', 'sha3-512', '--json'])
  t.is(JSON.parse(js.stdout).digest.length, 128)
  const missing = cli(['digest', join(dir, 'nope')])
  t.is(missing.status, 1)
  t.is(missing.stderr.trim().split('\n').length, 1)
  t.regex(missing.stderr, /ENOENT/)
  t.is(cli(['digest']).status, 2)
  t.is(cli(['frobnicate']).status, 2)
  t.is(cli(['digest', p, '--algorithm', 'md5']).status, 2)
  t.is(cli(['--version']).stdout.trim(), sk.version)
  t.regex(cli(['--help']).stdout, /Usage:/)
  t.is(statSync(p).size, 3)
})
