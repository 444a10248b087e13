// Delta sync (blockcopy-compatible): the real shell pipeline of the CLI, the stream API,
// sync.files, and the failure cases blockcopy defines (no `done` -> exit 1, one line).
import test from 'ava'
import { spawn, spawnSync } from 'node:child_process'
import { writeFileSync, readFileSync, statSync, openSync, writeSync, ftruncateSync, closeSync, existsSync, constants as fsConstants } from 'node:fs'
import { Socket } from 'node:net'
import { createReadStream, createWriteStream } from 'node:fs'
import { PassThrough } from 'node:stream'
import { join } from 'node:path'
import { createHash } from 'node:crypto'
import { sk, native, tempDir, randomBytes, cli, CLI, testWith, has, isRoot } from './helpers.mjs'

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
  return spawnSync('sh', ['-c', script], { encoding: 'buffer', maxBuffer: 256 << 20, env: { ...process.env, NODE_EXTRA_CA_CERTS: '' } })
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
  // A port the kernel just gave out (a random one could be taken by anything else running
  // here); tried again with another if it was taken in between.
  const freePort = () =>
    Number(spawnSync(process.execPath, ['-e', "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"], { encoding: 'utf8' }).stdout)
  let r
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = freePort()
    // The source side serves retrieve on a port; the destination side connects.
    r = sh(
      // -t 60: after one direction ends, socat waits for the other (default 0.5 s would cut
      // the block stream that retrieve still sends after the hash stream ended).
      `socat -t 60 TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr EXEC:'${sk_} retrieve ${s}' & ` +
        `${sk_} checksum ${d} | socat -t 60 - TCP:127.0.0.1:${port},retry=50,interval=0.2 | ${sk_} save ${d}; st=$?; wait; exit $st`,
    )
    if (!/Address already in use/.test(r.stderr.toString())) break
  }
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

/**
 * A private sshd on a loopback port (root only: it must read the host key and switch to
 * the user), with a temporary host key and authorized_keys; stopped when the test ends.
 * Returns the ssh command line that reaches it.
 */
function privateSshd(t, dir) {
  const key = join(dir, 'id')
  const host = join(dir, 'host')
  for (const k of [key, host]) spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', k])
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${key}.pub`))
  const port = 30000 + Math.floor(Math.random() * 20000)
  const cfg = join(dir, 'sshd_config')
  writeFileSync(
    cfg,
    [
      `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${host}`, `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      `PidFile ${join(dir, 'sshd.pid')}`, 'StrictModes no', 'UsePAM no', 'PermitRootLogin prohibit-password',
      'PasswordAuthentication no', 'KbdInteractiveAuthentication no', '',
    ].join('\n'),
  )
  // Privilege separation needs this folder (it exists once sshd ran as a service).
  spawnSync('mkdir', ['-p', '/run/sshd'])
  const sshd = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  sshd.stderr.on('data', (d) => (log += d))
  t.teardown(() => sshd.kill())
  const ssh =
    `ssh -p ${port} -i ${key} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null ` +
    `-o LogLevel=ERROR root@127.0.0.1`
  // Wait until it accepts a login (bounded: 100 tries).
  for (let i = 0; i < 100; i++) {
    if (sh(`${ssh} true`).status === 0) return ssh
    spawnSync('sleep', ['0.1'])
  }
  throw new Error(`the private sshd did not accept a login: ${log}`)
}

const sshdReady = isRoot && existsSync('/usr/sbin/sshd') && has('ssh') && has('ssh-keygen')
if (!sshdReady) {
  console.error('SKIP cli pipeline over ssh localhost: needs root, /usr/sbin/sshd (Debian openssh-server) and ssh, ssh-keygen (openssh-client)')
}
;(sshdReady ? test : test.skip)('cli pipeline over ssh localhost (private sshd): retrieve runs on the far side', (t) => {
  const dir = tempDir(t)
  const ssh = privateSshd(t, dir)
  // Destination smaller, larger, equal; the block stream crosses ssh (as in blockcopy's README:
  // checksum DST | ssh src retrieve SRC | save DST).
  for (const [srcLen, dstLen] of [[9 * BS + 17, 9 * BS + 17], [9 * BS + 17, 4 * BS], [4 * BS + 1, 9 * BS]]) {
    const { s, d } = pair(dir, srcLen, dstLen, [0, 3])
    const r = sh(`${sk_} checksum ${d} | ${ssh} '${sk_} retrieve ${s}' | ${sk_} save ${d}`)
    t.is(r.status, 0, r.stderr.toString())
    t.is(r.stderr.length, 0, `stderr: ${r.stderr}`)
    const got = readFileSync(d)
    t.true(got.subarray(0, srcLen).equals(readFileSync(s)), `src ${srcLen} dst ${dstLen}`)
    t.is(got.length, Math.max(srcLen, dstLen))
  }
  // A failing far side (missing source) gives exit 1 from save, and retrieve's ERROR line.
  const { d } = pair(dir, 2 * BS, 2 * BS)
  const bad = sh(`${sk_} checksum ${d} | ${ssh} '${sk_} retrieve ${join(dir, 'missing')}' | ${sk_} save ${d}`)
  t.is(bad.status, 1)
  t.regex(bad.stderr.toString(), /ERROR \(retrieve\): /)
  t.regex(bad.stderr.toString(), /ERROR \(save\): block stream ended/)
})

test('cli: --start/--end through checksum | retrieve | save touch only that window (md5 of each window)', (t) => {
  const dir = tempDir(t)
  const win = (buf, a, b) => createHash('md5').update(buf.subarray(a, b)).digest('hex')
  const n = 24 * BS + 999
  // Changed blocks before, inside and after each window.
  const { s, d, src, dst } = pair(dir, n, n, [0, 2, 5, 9, 14, 20, 23])
  const cases = [
    [3 * BS, 11 * BS], // aligned
    [3 * BS + 4096, 15 * BS - 1], // unaligned: blocks counted from --start, a short last one
    [19 * BS + 7, n], // up to the end, partial last block
  ]
  let old = dst
  for (const [a, b] of cases) {
    const r = sh(`${sk_} checksum --start ${a} --end ${b} ${d} | ${sk_} retrieve ${s} | ${sk_} save ${d}`)
    t.is(r.status, 0, r.stderr.toString())
    t.is(r.stderr.length, 0)
    const got = readFileSync(d)
    t.is(win(got, a, b), win(src, a, b), `window [${a}, ${b})`)
    t.is(win(got, 0, a), win(old, 0, a), `before ${a}`)
    t.is(win(got, b, n), win(old, b, n), `after ${b}`)
    t.not(win(got, 0, n), win(src, 0, n))
    old = got
  }
  // --start alone: rest is sent, so everything from --start on matches; what lies before stays.
  const a = 4 * BS + 100
  const r = sh(`${sk_} checksum --start ${a} ${d} | ${sk_} retrieve ${s} | ${sk_} save ${d}`)
  t.is(r.status, 0, r.stderr.toString())
  const got = readFileSync(d)
  t.is(win(got, a, n), win(src, a, n))
  t.is(win(got, 0, a), win(old, 0, a))
  t.not(win(got, 0, BS), win(src, 0, BS))
})

test('cli: --zstd and --truncate extensions round trip; a plain save refuses them', (t) => {
  const dir = tempDir(t)
  const s = join(dir, 'src.img')
  const d = join(dir, 'dst.img')
  // Compressible source; the destination is longer and differs in two blocks.
  const src = Buffer.alloc(6 * BS + 333, 'sparsekit zstd block ')
  writeFileSync(s, src)
  const old = Buffer.concat([src.subarray(0, 6 * BS), randomBytes(3 * BS)])
  old[BS] ^= 1
  old[4 * BS + 9] ^= 1
  writeFileSync(d, old)
  const blocks = join(dir, 'b')
  const r = sh(`${sk_} checksum --zstd ${d} | ${sk_} retrieve --zstd ${s} > ${blocks} && ${sk_} save --zstd ${d} < ${blocks}`)
  t.is(r.status, 0, r.stderr.toString())
  t.is(r.stderr.length, 0)
  const b = readFileSync(blocks)
  t.deepEqual(b.subarray(0, 12), Buffer.from('SKx1\0\0\0\x04dzst'))
  // Two blocks and the partial last one, compressed to a few hundred bytes.
  t.true(b.length < 4096, `${b.length} bytes`)
  t.true(readFileSync(d).subarray(0, src.length).equals(src))
  t.is(statSync(d).size, 9 * BS, 'without --truncate the tail stays')
  const plain = sh(`${sk_} save ${d} < ${blocks}`)
  t.is(plain.status, 1)
  t.regex(plain.stderr.toString(), /^ERROR \(save\): block stream: unknown record tag "SKx1"/)

  const tr = sh(`${sk_} checksum --truncate ${d} | ${sk_} retrieve --truncate --zstd ${s} | ${sk_} save --zstd --truncate ${d}`)
  t.is(tr.status, 0, tr.stderr.toString())
  t.is(md5(d), md5(s))
  t.is(statSync(d).size, src.length)
  // Only one side opted in: refused, and the destination keeps its length.
  writeFileSync(d, old)
  const one = sh(`${sk_} checksum ${d} | ${sk_} retrieve ${s} | ${sk_} save --truncate ${d}`)
  t.is(one.status, 1)
  t.regex(one.stderr.toString(), /^ERROR \(save\): block stream: expected the SKx1 extension header/)
  t.is(statSync(d).size, 9 * BS)
})

test('cli: --resume continues a cut session without re-sending what landed', (t) => {
  const dir = tempDir(t)
  const { s, d } = pair(dir, 150 * BS + 5, 70 * BS, [2, 50])
  const journal = `${d}.sksync-resume`
  const blocks = join(dir, 'b')
  const first = sh(`${sk_} checksum --resume ${d} | ${sk_} retrieve --resume ${s} > ${blocks}`)
  t.is(first.status, 0, first.stderr.toString())
  // The session is cut halfway through the block stream.
  const cut = sh(`head -c ${Math.floor(statSync(blocks).size / 2)} ${blocks} | ${sk_} save --resume ${d}`)
  t.is(cut.status, 1)
  t.regex(cut.stderr.toString(), /^ERROR \(save\): block stream ended/)
  const j = readFileSync(journal)
  t.is(j.subarray(0, 4).toString(), 'SKr1')
  t.is(Number(j.readBigUInt64BE(4)), 150 * BS + 5)
  const checkpoint = Number(j.readBigUInt64BE(12))
  t.true(checkpoint >= 70 * BS, `checkpoint ${checkpoint}`)
  // The same command line again: hashing and sending start at the checkpoint.
  const blocks2 = join(dir, 'b2')
  const again = sh(`${sk_} checksum --resume ${d} | ${sk_} retrieve --resume ${s} | tee ${blocks2} | ${sk_} save --resume ${d}`)
  t.is(again.status, 0, again.stderr.toString())
  t.is(again.stderr.length, 0)
  t.is(md5(d), md5(s))
  t.false(existsSync(journal), 'the journal is removed when the session completes')
  const b2 = readFileSync(blocks2)
  t.true(b2.length < statSync(blocks).size - checkpoint + 70 * BS, `${b2.length} bytes the second time`)
  for (let at = 8; at < b2.length - 4; ) {
    const tag = b2.subarray(at, at + 4).toString()
    const pos = Number(b2.readBigUInt64BE(at + 4))
    const len = b2.readUInt32BE(at + 12)
    if (tag === 'data') t.true(pos >= checkpoint, `data at ${pos} below the checkpoint ${checkpoint}`)
    at += 16 + (tag === 'data' || tag === 'dzst' ? len : 0)
  }
  // A journal with --journal elsewhere, and --journal without --resume.
  t.is(sh(`printf done | ${sk_} save --journal ${journal} ${d}`).status, 1)
})

test('api: zstd, truncate and resume options over Node streams and sync.files', async (t) => {
  const dir = tempDir(t)
  // sync.files with zstd and truncate: a longer destination ends up the source's size.
  const { s, d } = pair(dir, 5 * BS + 3, 8 * BS, [1, 4])
  const r = await sk.sync.files(s, d, { zstd: true, truncate: true })
  t.is(r.blocksChanged, 3)
  t.is(md5(d), md5(s))
  await t.throwsAsync(sk.sync.files(s, d, { resume: true }), { code: 'ERR_SPARSEKIT_INVALID_ARG' })
  await t.throwsAsync(sk.sync.retrieve(s, streamOf(Buffer.alloc(0)), new PassThrough(), { zstd: 1 }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(sk.sync.save(d, streamOf(Buffer.alloc(0)), { resume: true, journal: 5 }), { code: 'ERR_INVALID_ARG_TYPE' })

  // A resumable session over Node streams, cut after the first checkpoint, then resumed.
  const { s: s2, d: d2 } = pair(dir, 100 * BS, 100 * BS, [5, 80, 99])
  const journal = join(dir, 'j')
  const hashes = new PassThrough()
  const blocks = []
  const sink = new PassThrough()
  sink.on('data', (c) => blocks.push(c))
  await Promise.all([
    sk.sync.checksum(d2, hashes, { resume: true, journal }),
    sk.sync.retrieve(s2, hashes, sink, { resume: true }),
  ])
  const all = Buffer.concat(blocks)
  // SKx1, size, data of block 5, ckpt 64 blocks: cut just after that checkpoint.
  const ckpt = all.indexOf('ckpt')
  t.true(ckpt > 0)
  t.is(Number(all.readBigUInt64BE(ckpt + 4)), 64 * BS)
  const e = await t.throwsAsync(sk.sync.save(d2, streamOf(all.subarray(0, ckpt + 16 + 5)), { resume: true, journal }))
  t.is(e.code, 'ERR_SPARSEKIT_PROTOCOL')
  t.is(Number(readFileSync(journal).readBigUInt64BE(12)), 64 * BS)
  const h2 = new PassThrough()
  const b2 = new PassThrough()
  const [, , saved] = await Promise.all([
    sk.sync.checksum(d2, h2, { resume: true, journal }),
    sk.sync.retrieve(s2, h2, b2, { resume: true }),
    sk.sync.save(d2, b2, { resume: true, journal }),
  ])
  // Only blocks 80 and 99 are left: block 5 landed before the cut.
  t.is(saved.blocksWritten, 2)
  t.is(md5(d2), md5(s2))
  t.false(existsSync(journal))
})

testWith(['mkfifo'], test)('native: a pipe given by path instead of descriptor (the Windows named-pipe route, here a FIFO)', async (t) => {
  // On Windows ts/sync.ts hands each job the path of a named pipe it listens on; the
  // native side opens it (sys::open_pipe). Here the same code path opens a FIFO.
  const dir = tempDir(t)
  const { s, d } = pair(dir, 6 * BS + 77, 6 * BS + 77, [1, 4])
  const fifo = join(dir, 'hashes.fifo')
  t.is(spawnSync('mkfifo', [fifo]).status, 0)
  // The reader first (non-blocking open, so it does not wait for the writer).
  const fd = openSync(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK)
  const sock = new Socket({ fd, readable: true, writable: false })
  const chunks = []
  sock.on('data', (c) => chunks.push(c))
  const ended = new Promise((resolve) => sock.on('end', resolve))
  const r = await native.syncChecksum(d, fifo, {})
  await ended
  const viaPath = Buffer.concat(chunks)
  t.is(r.streamBytes, viaPath.length)
  // The same hash stream as the stream API's.
  const viaStream = new PassThrough()
  const got = []
  viaStream.on('data', (c) => got.push(c))
  await sk.sync.checksum(d, viaStream)
  t.true(viaPath.equals(Buffer.concat(got)), 'hash stream through the FIFO path differs from the stream API one')
  // And it drives a real retrieve | save: the destination becomes the source.
  const blocks = new PassThrough()
  const saved = sk.sync.save(d, blocks)
  await sk.sync.retrieve(s, PassThroughOf(viaPath), blocks)
  await saved
  t.is(md5(d), md5(s))

  // A FIFO nobody reads: ENXIO at once (never a blocked main thread), naming the path.
  const lonely = join(dir, 'lonely.fifo')
  t.is(spawnSync('mkfifo', [lonely]).status, 0)
  const e1 = await t.throwsAsync(native.syncChecksum(d, lonely, {}))
  t.is(e1.code, 'ENXIO')
  t.true(e1.message.includes(lonely), e1.message)
  // A missing path: ENOENT, naming it.
  const e2 = await t.throwsAsync(native.syncSave(d, join(dir, 'missing.fifo'), {}))
  t.is(e2.code, 'ENOENT')
  t.true(e2.message.includes('missing.fifo'), e2.message)
})

function PassThroughOf(buf) {
  const p = new PassThrough()
  p.end(buf)
  return p
}

/** The records of a hash stream: [{ tag, at, end }]. */
function hashRecords(buf) {
  const recs = []
  for (let at = 0; at < buf.length; ) {
    const tag = buf.subarray(at, at + 4).toString()
    const len = tag === 'Hash' ? 80 : tag === 'rest' ? 12 : 4
    recs.push({ tag, at, end: at + len })
    at += len
  }
  return recs
}

testWith(['mkfifo', 'bash'], test)('cli and api: checksum of a destination given as a pipe path (/dev/stdin, FIFO, /dev/fd/N) reads it in order, no rest', async (t) => {
  const dir = tempDir(t)
  const { s, d } = pair(dir, 9 * BS + 333, 9 * BS + 333, [2, 7])
  const size = statSync(d).size
  const asFile = sh(`${sk_} checksum ${d}`).stdout
  // The same data as a regular file, without the rest record blockcopy sends only for seekable input.
  const recs = hashRecords(asFile)
  t.deepEqual(recs.map((r) => r.tag).slice(-2), ['rest', 'done'])
  const want = Buffer.concat([asFile.subarray(0, recs.at(-2).at), Buffer.from('done')])
  t.deepEqual(sh(`${sk_} checksum --end ${size} ${d}`).stdout, want)
  for (const [what, script] of [
    ['/dev/stdin on a pipe', `cat ${d} | ${sk_} checksum /dev/stdin`],
    ['/dev/stdin on a pipe, --progress', `cat ${d} | ${sk_} checksum --progress /dev/stdin`],
    ['a process substitution', `bash -c '${sk_} checksum <(cat ${d})'`],
    ['/dev/fd/3 on a pipe', `cat ${d} | ${sk_} checksum /dev/fd/3 3<&0`],
  ]) {
    const r = sh(script)
    t.is(r.status, 0, `${what}: ${r.stderr}`)
    t.true(r.stdout.equals(want), `${what}: ${r.stdout.length} bytes, ${want.length} expected`)
    if (what.includes('--progress')) t.regex(r.stderr.toString(), /^checksum hash: /)
    else t.is(r.stderr.length, 0, `${what}: ${r.stderr}`)
  }
  // A FIFO (mkfifo), with the writer starting after checksum opened it.
  const fifo = join(dir, 'dst.fifo')
  t.is(spawnSync('mkfifo', [fifo]).status, 0)
  const viaFifo = sh(`(sleep 0.2; cat ${d} > ${fifo}) & ${sk_} checksum ${fifo}; st=$?; wait; exit $st`)
  t.is(viaFifo.status, 0, viaFifo.stderr.toString())
  t.true(viaFifo.stdout.equals(want))
  // /dev/stdin on a regular file is seekable: exactly the file's stream, rest included.
  t.deepEqual(sh(`${sk_} checksum /dev/stdin < ${d}`).stdout, asFile)
  // A Node child's stdin (a socket: Linux cannot reopen it by path) is read through the descriptor.
  const child = spawnSync(process.execPath, [CLI, 'checksum', '/dev/stdin'], { input: readFileSync(d) })
  t.is(child.status, 0, child.stderr.toString())
  t.true(child.stdout.equals(want))
  // An empty pipe: just done.
  t.deepEqual(sh(`printf '' | ${sk_} checksum /dev/stdin`).stdout, Buffer.from('done'))
  // --resume: a pipe has no journal beside it, so it must be named.
  const res = sh(`cat ${d} | ${sk_} checksum --resume /dev/stdin`)
  t.is(res.status, 1)
  t.regex(res.stderr.toString(), /^ERROR \(checksum\): a resumable checksum of a pipe \('\/dev\/stdin'\) needs its journal named/)

  // The API: sk.sync.checksum on the FIFO path gives the same bytes.
  const out = new PassThrough()
  const chunks = []
  out.on('data', (c) => chunks.push(c))
  const writer = spawn('sh', ['-c', `sleep 0.1; cat ${d} > ${fifo}`])
  const written = new Promise((resolve) => writer.on('exit', resolve))
  await sk.sync.checksum(fifo, out)
  await written
  t.true(Buffer.concat(chunks).equals(want))
  await t.throwsAsync(sk.sync.checksum(fifo, new PassThrough(), { resume: true }), { code: 'ERR_INVALID_ARG_VALUE' })
  // A FIFO nobody writes: abort stops the wait in read (the open never blocks).
  const ac = new AbortController()
  const pending = sk.sync.checksum(fifo, new PassThrough(), { signal: ac.signal })
  setTimeout(() => ac.abort(), 100)
  const started = Date.now()
  t.is((await t.throwsAsync(pending)).code, 'ERR_SPARSEKIT_ABORTED')
  t.true(Date.now() - started < 10000, `${Date.now() - started} ms`)
  // The CLI waiting for that writer stops at Ctrl-C (exit 130).
  const waiting = spawn(process.execPath, [CLI, 'checksum', fifo], { stdio: ['ignore', 'ignore', 'pipe'] })
  const exited = new Promise((resolve) => waiting.on('exit', (code, signal) => resolve(code ?? signal)))
  setTimeout(() => waiting.kill('SIGINT'), 3000)
  t.is(await exited, 130)
  // The whole pipeline with the destination read from a pipe.
  const r = sh(`cat ${d} | ${sk_} checksum /dev/stdin | ${sk_} retrieve ${s} | ${sk_} save ${d}`)
  t.is(r.status, 0, r.stderr.toString())
  t.is(md5(d), md5(s))
})

test('cli and api: a hash stream cut before done: retrieve sends the blocks of the hashes it got (as blockcopy), then exit 1', async (t) => {
  const dir = tempDir(t)
  // 40 destination blocks, every third changed; the source is longer (a rest record follows).
  const { s, d } = pair(dir, 44 * BS + 9, 40 * BS, [...Array(40).keys()].filter((b) => b % 3 === 0))
  const hf = join(dir, 'hashes')
  writeFileSync(hf, sh(`${sk_} checksum ${d}`).stdout)
  const hashes = readFileSync(hf)
  const recs = hashRecords(hashes)
  /** retrieve's output for the first `n` records followed by done, without that done. */
  const complete = (n) => {
    const f = join(dir, `h${n}`)
    writeFileSync(f, Buffer.concat([hashes.subarray(0, n === 0 ? 0 : recs[n - 1].end), Buffer.from('done')]))
    const r = sh(`${sk_} retrieve ${s} < ${f}`)
    t.is(r.status, 0, r.stderr.toString())
    return r.stdout.subarray(0, r.stdout.length - 4)
  }
  // [cut, whole records whose blocks go out]: at a record boundary or inside a tag, every
  // record received (blockcopy flushes its batch); inside a record, only whole batches of 16.
  const cases = [
    [recs[20].end, 21],
    [recs[20].end + 2, 21],
    [recs[20].end + 40, 16],
    [recs[35].end + 9, 32],
    [recs[10].end + 79, 0],
    [recs[40].end, 41], // after rest: the rest of the source, then the held-back blocks
  ]
  for (const [cut, n] of cases) {
    const f = join(dir, `cut${cut}`)
    writeFileSync(f, hashes.subarray(0, cut))
    const r = sh(`${sk_} retrieve ${s} < ${f}`)
    t.is(r.status, 1, `cut ${cut}`)
    const err = r.stderr.toString()
    t.regex(err, /^ERROR \(retrieve\): hash stream ended at byte \d+/)
    t.is(err.trim().split('\n').length, 1)
    const want = complete(n)
    t.true(r.stdout.equals(want), `cut ${cut}: ${r.stdout.length} bytes out, ${want.length} expected`)
  }
  // Through save: it writes the blocks, then refuses the stream without done (exit 1).
  const cut = recs[20].end
  const before = readFileSync(d)
  const p = sh(`head -c ${cut} ${hf} | ${sk_} retrieve ${s} | ${sk_} save ${d}`)
  t.is(p.status, 1)
  t.regex(p.stderr.toString(), /ERROR \(retrieve\): hash stream ended/)
  t.regex(p.stderr.toString(), /ERROR \(save\): block stream ended/)
  const got = readFileSync(d)
  const src = readFileSync(s)
  t.true(got.subarray(0, 21 * BS).equals(src.subarray(0, 21 * BS)), 'the blocks of the hashes received landed')
  t.true(got.subarray(21 * BS).equals(before.subarray(21 * BS)), 'nothing else changed')

  // The stream API: the blocks reach `out` (ended), then the promise rejects.
  const out = new PassThrough()
  const chunks = []
  out.on('data', (c) => chunks.push(c))
  const ended = new Promise((resolve) => out.on('end', resolve))
  const e = await t.throwsAsync(sk.sync.retrieve(s, streamOf(hashes.subarray(0, recs[20].end)), out))
  t.is(e.code, 'ERR_SPARSEKIT_PROTOCOL')
  await ended
  t.true(Buffer.concat(chunks).equals(complete(21)))
})

const mountable = isRoot && has('losetup') && has('mkfs.ext4') && has('mount')
if (!mountable) console.error('SKIP sync.files and save into a mounted device: needs root, losetup, mkfs.ext4')
;(mountable ? test : test.skip)('api and cli: sync.files and save refuse a block device with a mounted file system, or one held exclusively', async (t) => {
  const dir = tempDir(t)
  const img = join(dir, 'disk.img')
  writeFileSync(img, Buffer.alloc(8 << 20))
  t.is(spawnSync('mkfs.ext4', ['-q', '-F', img]).status, 0)
  const dev = spawnSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).stdout.trim()
  t.truthy(dev)
  const mnt = join(dir, 'mnt')
  spawnSync('mkdir', [mnt])
  let mounted = false
  try {
    t.is(spawnSync('mount', [dev, mnt]).status, 0)
    mounted = true
    // ext4 never writes its first 1024 bytes (the boot sector): every write below would.
    const head = () => readFileSync(dev).subarray(0, 1024)
    const before = head()
    const src = join(dir, 'src.img')
    writeFileSync(src, randomBytes(2 * BS))
    const e1 = await t.throwsAsync(sk.sync.files(src, dev))
    t.is(e1.code, 'ERR_SPARSEKIT_DRIVE_BUSY')
    t.true(e1.message.includes(dev) && e1.message.includes(mnt), e1.message)
    const blocks = Buffer.concat([Buffer.from('data'), Buffer.alloc(8), Buffer.from([0, 0, 0, 4]), Buffer.from('XXXX'), Buffer.from('done')])
    const e2 = await t.throwsAsync(sk.sync.save(dev, streamOf(blocks)))
    t.is(e2.code, 'ERR_SPARSEKIT_DRIVE_BUSY')
    const bf = join(dir, 'blocks')
    writeFileSync(bf, blocks)
    const c = sh(`${sk_} save ${dev} < ${bf}`)
    t.is(c.status, 1)
    t.regex(c.stderr.toString(), /^ERROR \(save\): .*mounted at/)
    const p = sh(`${sk_} checksum ${dev} | ${sk_} retrieve ${src} | ${sk_} save ${dev}`)
    t.is(p.status, 1)
    t.true(head().equals(before), 'the mounted device is unchanged')
    t.is(spawnSync('umount', [mnt]).status, 0)
    mounted = false

    // Unmounted but held exclusively by another opener: O_EXCL gives EBUSY, same code.
    const held = openSync(dev, fsConstants.O_RDONLY | fsConstants.O_EXCL)
    try {
      const e3 = await t.throwsAsync(sk.sync.files(src, dev))
      t.is(e3.code, 'ERR_SPARSEKIT_DRIVE_BUSY')
      t.regex(e3.message, /exclusively/)
    } finally {
      closeSync(held)
    }
    t.true(head().equals(before))
    // Free: the sync goes through.
    const r = await sk.sync.files(src, dev)
    t.is(r.blocksChanged, 2)
    t.true(readFileSync(dev).subarray(0, 2 * BS).equals(readFileSync(src)))
  } finally {
    if (mounted) spawnSync('umount', ['-l', mnt])
    spawnSync('losetup', ['-d', dev])
  }
})

testWith(['mkfifo'], test)('api and cli: a resume journal that is a FIFO or a directory is refused at once (never a blocked open)', async (t) => {
  const dir = tempDir(t)
  const { s, d, dst } = pair(dir, 4 * BS, 4 * BS, [1])
  const fifo = `${d}.sksync-resume`
  t.is(spawnSync('mkfifo', [fifo]).status, 0)
  const e1 = await t.throwsAsync(sk.sync.checksum(d, new PassThrough(), { resume: true }))
  t.is(e1.code, 'ERR_SPARSEKIT_BAD_JOURNAL')
  t.true(e1.message.includes(fifo) && e1.message.includes('fifo, not a regular file'), e1.message)
  const e2 = await t.throwsAsync(sk.sync.checksum(d, new PassThrough(), { resume: true, journal: dir }))
  t.is(e2.code, 'ERR_SPARSEKIT_BAD_JOURNAL')
  // save: refused before anything is written (a block stream that would change block 0),
  // the FIFO left in place.
  const hashes = new PassThrough()
  const blocks = []
  const sink = new PassThrough()
  sink.on('data', (c) => blocks.push(c))
  await Promise.all([
    sk.sync.checksum(d, hashes, { resume: true, journal: join(dir, 'j') }),
    sk.sync.retrieve(s, hashes, sink, { resume: true }),
  ])
  const e3 = await t.throwsAsync(sk.sync.save(d, streamOf(Buffer.concat(blocks)), { resume: true }))
  t.is(e3.code, 'ERR_SPARSEKIT_BAD_JOURNAL')
  t.true(readFileSync(d).equals(dst), 'the destination is unchanged')
  t.true(statSync(fifo).isFIFO())
  // The CLI: one ERROR line, exit 1, at once.
  const started = Date.now()
  const c = spawnSync('sh', ['-c', `${sk_} checksum --resume ${d} > /dev/null`], { encoding: 'utf8', timeout: 60000 })
  t.is(c.status, 1)
  t.regex(c.stderr, /^ERROR \(checksum\): resume journal '.*sksync-resume': it is a fifo, not a regular file/)
  t.true(Date.now() - started < 30000, `${Date.now() - started} ms`)
})
