// Issue 27 item 5: the argument and CLI contract — unknown option keys, dd's size
// suffixes, --json only where output is data, one code for a destination too small,
// what a zip flash reports, a hint for drives that need privileges, mounts in `drives`.
import test from 'ava'
import { writeFileSync, readFileSync, mkdtempSync, chmodSync, rmSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { spawnSync, execFileSync } from 'node:child_process'
import { sk, tempDir, sparseFile, randomBytes, cli, CLI, testWith, isRoot, has } from './helpers.mjs'
import { loopDevice } from './fs-helpers.mjs'

const MiB = 1 << 20
const rootTest = isRoot && has('losetup') ? test : (title, fn) => (console.error(`SKIP ${title}: needs root and losetup`), test.skip(title, fn))
const withZip = testWith(['zip'], test)

test('a misspelled option key is refused, naming the valid ones', async (t) => {
  const dir = tempDir(t)
  const img = sparseFile(join(dir, 'i'), MiB, [[0, randomBytes(4096)]])
  writeFileSync(join(dir, 'o'), '')
  const cases = [
    [() => sk.bmap.copy(img, join(dir, 'o'), { readback: true }), /readback.*readBack/s],
    [() => sk.flash(img, [join(dir, 'o')], { readback: false }), /readback/],
    [() => sk.copy(img, join(dir, 'o'), { zero_holes: true }), /zeroHoles/],
    [() => sk.digest(img, { algo: 'sha256' }), /algorithm/],
    [() => sk.map(img, { lenght: 5 }), /length/],
    [() => sk.bmap.create(img, { out: 'x' }), /output/],
  ]
  for (const [call, names] of cases) {
    const e = await t.throwsAsync(call(), { code: 'ERR_INVALID_ARG_VALUE' })
    t.regex(e.message, names)
    t.true(e instanceof TypeError)
  }
  t.throws(() => sk.drives.watch({ intreval: 5 }), { code: 'ERR_INVALID_ARG_VALUE' })
  // Known keys, and keys set to undefined, still pass.
  await sk.bmap.copy(img, join(dir, 'o'), { bmap: false, readBack: true, signal: undefined, onProgress: undefined, typo: undefined })
})

test('--skip and friends read sizes as dd does: 1M is MiB, 1MB is 10^6', (t) => {
  const dir = tempDir(t)
  const src = join(dir, 's')
  writeFileSync(src, randomBytes(3 * MiB))
  const data = readFileSync(src)
  for (const [arg, n] of [['1M', MiB], ['1MB', 1e6], ['1MiB', MiB], ['2K', 2048], ['2kB', 2000], ['2KB', 2000], ['3b', 1536], ['5w', 10], ['7c', 7], ['1000', 1000]]) {
    const out = join(dir, `o-${arg}`)
    const r = cli(['copy', src, out, '--skip', arg])
    t.is(r.status, 0, r.stderr)
    t.true(readFileSync(out).equals(data.subarray(n)), arg)
    if (has('dd')) {
      const dd = join(dir, `dd-${arg}`)
      execFileSync('dd', [`if=${src}`, `of=${dd}`, `skip=${arg}`, 'iflag=skip_bytes', 'status=none'])
      t.true(readFileSync(dd).equals(readFileSync(out)), `dd agrees on ${arg}`)
    }
  }
  for (const bad of ['1Mb', '1m', '1.5M', 'lots', '1MiB2']) t.is(cli(['copy', src, join(dir, 'x'), '--skip', bad]).status, 2, bad)
})

test('bmap create refuses --json (a bmap is XML)', (t) => {
  const dir = tempDir(t)
  const img = sparseFile(join(dir, 'i'), MiB, [[0, randomBytes(4096)]])
  const r = cli(['bmap', 'create', img, '--json'])
  t.is(r.status, 2)
  t.regex(r.stderr, /--json/)
  t.is(r.stdout, '')
})

withZip('flashing a zip reports the bytes read and compression zip', async (t) => {
  const dir = tempDir(t)
  const data = Buffer.concat([randomBytes(MiB), Buffer.alloc(3 * MiB)])
  writeFileSync(join(dir, 'os.img'), data)
  execFileSync('zip', ['-q', '-j', join(dir, 'os.zip'), join(dir, 'os.img')])
  const r = await sk.flash(join(dir, 'os.zip'), [join(dir, 'out.img')], { createFiles: true })
  t.true(r.destinations[0].ok)
  t.is(r.compression, 'zip')
  t.true(r.sourceBytes > MiB && r.sourceBytes < 4 * MiB, `${r.sourceBytes}`)
})

rootTest('a drive that needs privileges: EACCES with a hint, the code said once', async (t) => {
  if (!has('setpriv')) return t.pass('SKIP: setpriv missing') // util-linux, always on Debian
  // A folder the unprivileged user can read, with a small image in it.
  const dir = mkdtempSync(join(tmpdir(), 'sparsekit-eacces-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  chmodSync(dir, 0o755)
  const img = join(dir, 'os.img')
  writeFileSync(img, randomBytes(64 * 1024))
  chmodSync(img, 0o644)
  const backing = join(dir, 'disk.bin')
  writeFileSync(backing, Buffer.alloc(MiB))
  const dev = loopDevice(t, backing)
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, 'flash', img, dev], { encoding: 'utf8' })
  t.is(r.status, 1, r.stderr)
  t.regex(r.stderr, /EACCES/)
  t.is(r.stderr.match(/EACCES/g).length, 1, r.stderr)
  t.regex(r.stderr, /needs root/)
})

rootTest('sparsekit drives shows where a drive is mounted', async (t) => {
  if (!has('mkfs.ext4')) return t.pass('SKIP: mkfs.ext4 missing')
  const dir = tempDir(t)
  const backing = join(dir, 'disk.bin')
  writeFileSync(backing, Buffer.alloc(16 * MiB))
  const dev = loopDevice(t, backing)
  execFileSync('mkfs.ext4', ['-q', '-F', dev])
  const mnt = join(dir, 'mnt')
  mkdirSync(mnt)
  execFileSync('mount', [dev, mnt])
  t.teardown(() => spawnSync('umount', [mnt]))
  const r = cli(['drives'])
  t.is(r.status, 0, r.stderr)
  const line = r.stdout.split('\n').find((l) => l.startsWith(`${dev} `))
  t.truthy(line, r.stdout)
  t.regex(line, new RegExp(`mounted at ${mnt}`))
  t.regex(line, /in use/)
})

test('qcow2 and sync refuse misspelled option keys too', async (t) => {
  const dir = tempDir(t)
  const img = sparseFile(join(dir, 'i'), MiB, [[0, randomBytes(4096)]])
  const cases = [
    () => sk.qcow2.info(img, { backingChain: true }),
    () => sk.qcow2.map(img, { backing_policy: 'none' }),
    () => sk.qcow2.convert(img, join(dir, 'o'), { zero_holes: true }),
    () => sk.qcow2.create(join(dir, 'q'), { size: MiB, cluster_size: 65536 }),
    () => sk.qcow2.resize(img, MiB, { forced: true }),
    () => sk.sync.files(img, join(dir, 'o2'), { blake: true }),
  ]
  for (const call of cases) await t.throwsAsync(call(), { code: 'ERR_INVALID_ARG_VALUE', message: /is unknown\. Valid options/ })
})
