// Delta sync (blockcopy-compatible): the real shell pipeline of the CLI, the stream API,
// sync.files, and the failure cases blockcopy defines (no `done` -> exit 1, one line).
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { writeFileSync, readFileSync, statSync, openSync, writeSync, ftruncateSync, closeSync } from 'node:fs'
import { createReadStream, createWriteStream } from 'node:fs'
import { PassThrough } from 'node:stream'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { sk, tempDir, randomBytes, cli, CLI, testWith } from './helpers.mjs'

const BS = 131072
const md5 = (p) => createHash('md5').update(readFileSync(p)).digest('hex')
const node = JSON.stringify(process.execPath)
const sk_ = `${node} ${JSON.stringify(CLI)}`

/** `src` random, `dst` = a copy with `changed` blocks altered, cut or extended to `dstLen`. */
function pair(dir, srcLen, dstLen, changed = []) {
  const src = randomBytes(srcLen)
  const dst = Buffer.alloc(dstLen)
  src.copy(dst, 0, 0, Math.min(srcLen, dstLen))
  if (dstLen > srcLen) randomBytes(dstLen - srcLen).copy(dst, srcLen)
  for (const b of changed) if (b * BS < dstLen) dst[b * BS] ^= 0xff
  const s = join(dir, 'src.img')
  const d = join(dir, 'dst.img')
  writeFileSync(s, src)
  writeFileSync(d, dst)
  return { s, d, src, dst }
}

function sh(script) {
  return spawnSync('sh', ['-c', script], { encoding: 'buffer', env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } })
}

test('cli pipeline: checksum | retrieve | save makes dst md5-equal, nothing on stderr', (t) => {
  const dir = tempDir(t)
  for (const [srcLen, dstLen] of [[10 * BS + 1234, 10 * BS + 1234], [10 * BS + 5, 3 * BS + 7], [3 * BS, 9 * BS + 1], [5 * BS + 9, 0]]) {
    const { s, d } = pair(dir, srcLen, dstLen, [0, 2, 7])
    const r = sh(`${sk_} checksum ${d} | ${sk_} retrieve ${s} | ${sk_} save ${d}`)
    t.is(r.status, 0, r.stderr.toString())
    t.is(r.stderr.length, 0, `stderr: ${r.stderr}`)
    const got = readFileSync(d)
    t.true(got.subarray(0, srcLen).equals(readFileSync(s)), `src ${srcLen} dst ${dstLen}`)
    t.is(got.length, Math.max(srcLen, dstLen))
    if (dstLen <= srcLen) t.is(md5(d), md5(s))
  }
})

test('cli: only changed blocks travel; identical files give exactly `done`', (t) => {
  const dir = tempDir(t)
  const { s, d } = pair(dir, 20 * BS, 20 * BS, [3, 11])
  const blocks = join(dir, 'blocks.bin')
  const r = sh(`${sk_} checksum ${d} | ${sk_} retrieve ${s} > ${blocks}`)
  t.is(r.status, 0, r.stderr.toString())
  t.is(statSync(blocks).size, 2 * (16 + BS) + 4)
  const b = readFileSync(blocks)
  t.is(b.subarray(0, 4).toString(), 'data')
  t.is(Number(b.readBigUInt64BE(4)), 3 * BS)
  const same = sh(`${sk_} checksum ${s} | ${sk_} retrieve ${s}`)
  t.is(same.status, 0)
  t.deepEqual(same.stdout, Buffer.from('done'))
})

test('cli: checksum golden bytes (--start alone keeps rest; --end drops it)', (t) => {
  const dir = tempDir(t)
  const f = join(dir, 'f')
  writeFileSync(f, 'hello, world')
  const digest = createHash('sha3-512').update(', world').digest()
  const r = sh(`${sk_} checksum --start 5 ${f}`)
  const want = Buffer.concat([
    Buffer.from('Hash'), Buffer.from([0, 0, 0, 0, 0, 0, 0, 5]), Buffer.from([0, 0, 0, 7]), digest,
    Buffer.from('rest'), Buffer.from([0, 0, 0, 0, 0, 0, 0, 12]), Buffer.from('done'),
  ])
  t.deepEqual(r.stdout, want)
  const e = sh(`${sk_} checksum --start 5 --end 12 ${f}`)
  t.deepEqual(e.stdout, Buffer.concat([want.subarray(0, 80), Buffer.from('done')]))
  // From a pipe: no rest.
  const p = sh(`cat ${f} | ${sk_} checksum -`)
  t.deepEqual(p.stdout.subarray(p.stdout.length - 4), Buffer.from('done'))
  t.is(p.stdout.length, 80 + 4)
})

test('cli: --lzma round trip', (t) => {
  const dir = tempDir(t)
  const s = join(dir, 'src.img')
  const d = join(dir, 'dst.img')
  writeFileSync(s, Buffer.alloc(4 * BS, 'abc'))
  writeFileSync(d, Buffer.alloc(4 * BS, 'xyz'))
  const r = sh(`${sk_} checksum ${d} | ${sk_} retrieve --lzma ${s} > ${join(dir, 'b')} && ${sk_} save ${d} < ${join(dir, 'b')}`)
  t.is(r.status, 0, r.stderr.toString())
  t.is(readFileSync(join(dir, 'b')).subarray(0, 4).toString(), 'dlzm')
  t.is(md5(d), md5(s))
})

test('cli: a stream without done fails with exit 1 and one ERROR line; earlier blocks stay', (t) => {
  const dir = tempDir(t)
  const { s, d, dst } = pair(dir, 6 * BS, 6 * BS, [1, 4])
  const blocks = join(dir, 'blocks.bin')
  t.is(sh(`${sk_} checksum ${d} | ${sk_} retrieve ${s} > ${blocks}`).status, 0)
  const full = readFileSync(blocks)
  // Cut 84 bytes into the second record's data: the first block lands, the second does not.
  const cut = join(dir, 'cut.bin')
  writeFileSync(cut, full.subarray(0, 16 + BS + 100))
  const r = sh(`${sk_} save ${d} < ${cut}`)
  t.is(r.status, 1)
  const err = r.stderr.toString()
  t.regex(err, /^ERROR \(save\): block stream ended at byte \d+ after 84 byte\(s\) of the bytes of a data record/)
  t.is(err.trim().split('\n').length, 1)
  const got = readFileSync(d)
  t.true(got.subarray(BS, 2 * BS).equals(readFileSync(s).subarray(BS, 2 * BS)))
  t.true(got.subarray(4 * BS, 5 * BS).equals(dst.subarray(4 * BS, 5 * BS)))
  // An empty stream, a missing destination, `retrieve -`.
  t.is(sh(`${sk_} save ${d} < /dev/null`).status, 1)
  t.regex(sh(`printf done | ${sk_} save ${join(dir, 'nope')}`).stderr.toString(), /^ERROR \(save\): .*ENOENT|No such file/)
  const dash = sh(`printf done | ${sk_} retrieve - > /dev/null`)
  t.is(dash.status, 1)
  t.regex(dash.stderr.toString(), /^ERROR \(retrieve\): /)
  t.is(cli(['checksum']).status, 2)
})

testWith(['socat'], test)('cli pipeline over a TCP connection on loopback (socat)', (t) => {
  const dir = tempDir(t)
  const { s, d } = pair(dir, 8 * BS + 3, 8 * BS + 3, [0, 5])
  const port = 20000 + Math.floor(Math.random() * 20000)
  // The source side serves retrieve on a port; the destination side connects.
  const r = sh(
    // -t 60: after one direction ends, socat waits for the other (default 0.5 s would cut
    // the block stream that retrieve still sends after the hash stream ended).
    `socat -t 60 TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr EXEC:'${sk_} retrieve ${s}' & ` +
      `${sk_} checksum ${d} | socat -t 60 - TCP:127.0.0.1:${port},retry=50,interval=0.2 | ${sk_} save ${d}; st=$?; wait; exit $st`,
  )
  t.is(r.status, 0, r.stderr.toString())
  t.is(md5(d), md5(s))
})

test('api: sync.checksum | sync.retrieve | sync.save over Node streams', async (t) => {
  const dir = tempDir(t)
  const { s, d } = pair(dir, 12 * BS + 77, 9 * BS, [1, 8])
  const hashes = new PassThrough()
  const blocks = new PassThrough()
  const seen = new Set()
  const [, , saved] = await Promise.all([
    sk.sync.checksum(d, hashes),
    sk.sync.retrieve(s, hashes, blocks, { onProgress: (p) => seen.add(p.phase) }),
    sk.sync.save(d, blocks),
  ])
  t.is(md5(d), md5(s))
  // Blocks 1 and 8 differ, block 9 onwards (3 blocks and 77 bytes) comes from `rest`.
  t.is(saved.blocksWritten, 2 + 4)
  t.true(seen.has('send'))
})

test('api: sync.save rejects a cut stream with ERR_SPARSEKIT_PROTOCOL', async (t) => {
  const dir = tempDir(t)
  const d = join(dir, 'd')
  writeFileSync(d, Buffer.alloc(100))
  const rec = Buffer.concat([Buffer.from('data'), Buffer.alloc(8), Buffer.from([0, 0, 0, 3]), Buffer.from('abc')])
  const e = await t.throwsAsync(sk.sync.save(d, PassThrough.from ? streamOf(rec) : streamOf(rec)))
  t.is(e.code, 'ERR_SPARSEKIT_PROTOCOL')
  t.deepEqual(readFileSync(d).subarray(0, 3), Buffer.from('abc'))
})

function streamOf(buf) {
  const p = new PassThrough()
  p.end(buf)
  return p
}

test('api: sync.files reports bytes sent; file streams as inputs', async (t) => {
  const dir = tempDir(t)
  const { s, d } = pair(dir, 16 * BS, 16 * BS, [0, 9, 15])
  const r = await sk.sync.files(s, d)
  t.deepEqual(r, { bytesSent: 3 * (16 + BS) + 4, blocksChanged: 3, bytesChanged: 3 * BS })
  t.is(md5(d), md5(s))
  const again = await sk.sync.files(s, d)
  t.is(again.bytesSent, 4)

  // retrieve from a file of hashes to a file of blocks, then save from it.
  const { s: s2, d: d2 } = pair(dir, 4 * BS, 4 * BS, [2])
  const hf = join(dir, 'h')
  const bf = join(dir, 'b')
  await sk.sync.checksum(d2, createWriteStream(hf))
  await sk.sync.retrieve(s2, createReadStream(hf), createWriteStream(bf))
  t.is(statSync(bf).size, 16 + BS + 4)
  await sk.sync.save(d2, createReadStream(bf))
  t.is(md5(d2), md5(s2))
})

test('api: abort and bad arguments', async (t) => {
  const dir = tempDir(t)
  const { s, d } = pair(dir, 4 * BS, 4 * BS, [1])
  const ac = new AbortController()
  ac.abort()
  const e = await t.throwsAsync(sk.sync.files(s, d, { signal: ac.signal }))
  t.is(e.code, 'ERR_SPARSEKIT_ABORTED')
  // A save waiting on a stream that never ends stops when aborted.
  const ac2 = new AbortController()
  const pending = sk.sync.save(d, new PassThrough(), { signal: ac2.signal })
  setTimeout(() => ac2.abort(), 50)
  t.is((await t.throwsAsync(pending)).code, 'ERR_SPARSEKIT_ABORTED')
  await t.throwsAsync(sk.sync.checksum(d, 'nope'), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(sk.sync.files(s, join(dir, 'missing')), { code: 'ENOENT' })
})

testWith(['script'], test)('cli: binary output to a terminal is refused (exit 1, one ERROR line)', (t) => {
  const dir = tempDir(t)
  const f = join(dir, 'f')
  writeFileSync(f, 'x')
  // util-linux script(1) runs the command with stdout on a pseudo-terminal.
  const r = spawnSync('script', ['-qec', `${sk_} checksum ${f}`, '/dev/null'], { encoding: 'utf8' })
  t.is(r.status, 1)
  t.regex(r.stdout, /ERROR \(checksum\): standard output is a terminal/)
  t.notRegex(r.stdout, /Hash|done/)
})

test('cli and api: the --blake3 extension round trip; a plain peer refuses it', async (t) => {
  const dir = tempDir(t)
  const { s, d } = pair(dir, 6 * BS + 11, 6 * BS + 11, [2, 6])
  const r = sh(`${sk_} checksum --blake3 ${d} | ${sk_} retrieve --blake3 ${s} | ${sk_} save --blake3 ${d}`)
  t.is(r.status, 0, r.stderr.toString())
  t.is(r.stderr.length, 0)
  t.is(md5(d), md5(s))
  const h = sh(`${sk_} checksum --blake3 ${d}`).stdout
  t.deepEqual(h.subarray(0, 12), Buffer.from('SKx1\0\0\0\x01HshB'))
  // A plain retrieve (as blockcopy would) stops at the unknown SKx1 tag: exit 1.
  const plain = sh(`${sk_} checksum --blake3 ${d} | ${sk_} retrieve ${s} > /dev/null`)
  t.is(plain.status, 1)
  t.regex(plain.stderr.toString(), /^ERROR \(retrieve\): hash stream: unknown record tag "SKx1"/)
  const { s: s2, d: d2 } = pair(dir, 5 * BS, 5 * BS, [1])
  const res = await sk.sync.files(s2, d2, { blake3: true })
  t.is(res.blocksChanged, 1)
  t.is(md5(d2), md5(s2))
})

test('cli: the --holes extension keeps holes out of the streams and punches them in dst', (t) => {
  const dir = tempDir(t)
  const s = join(dir, 'src.img')
  const d = join(dir, 'dst.img')
  // Source: 32 MiB, 1 MiB of data at 8 MiB, holes elsewhere. Destination: all data.
  const fd = openSync(s, 'w')
  writeSync(fd, randomBytes(1 << 20), 0, 1 << 20, 8 << 20)
  ftruncateSync(fd, 32 << 20)
  closeSync(fd)
  writeFileSync(d, randomBytes(32 << 20))
  const blocks = join(dir, 'b')
  const r = sh(`${sk_} checksum --holes ${d} | ${sk_} retrieve --holes ${s} > ${blocks} && ${sk_} save --holes ${d} < ${blocks}`)
  t.is(r.status, 0, r.stderr.toString())
  t.is(r.stderr.length, 0)
  t.is(md5(d), md5(s))
  // 8 data blocks and 248 zero records of 16 bytes, the header and done.
  t.is(statSync(blocks).size, 8 + 8 * (16 + BS) + 248 * 16 + 4)
  t.true(statSync(d).blocks * 512 < 4 << 20, `dst allocated ${statSync(d).blocks * 512} bytes`)
  // A plain save refuses the extended stream (as blockcopy would).
  const plain = sh(`${sk_} save ${d} < ${blocks}`)
  t.is(plain.status, 1)
  t.regex(plain.stderr.toString(), /^ERROR \(save\): block stream: unknown record tag "SKx1"/)
})
