// First-boot customisation (issue 25): files written into the FAT boot partition of an
// image (MBR and GPT, FAT32 boot + ext4 root, as Raspberry Pi OS images are), alone and
// while flashing a loop device. The oracles: fsck.fat -n, mtools reading the files back,
// the ext4 partition byte-identical, openssl passwd -6 for the password hash.
import test from 'ava'
import { createHash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { sk, tempDir, has, run, cli, isRoot, testWith } from './helpers.mjs'
import { loopDevice } from './fs-helpers.mjs'

const MiB = 1 << 20
const BOOT = { start: MiB, length: 40 * MiB }
const ROOT = { start: 41 * MiB, length: 22 * MiB }
const fatTest = testWith(['sfdisk', 'mkfs.vfat', 'fsck.fat', 'mcopy', 'mtype', 'mkfs.ext4'], test)
const rootTest = isRoot && has('losetup') ? fatTest : (title, fn) => (console.error(`SKIP ${title}: needs root and losetup`), test.skip(title, fn))

const sha = (b) => createHash('sha256').update(b).digest('hex')
const slice = (file, { start, length }) => readFileSync(file).subarray(start, start + length)

/** A 64 MiB image: `label` dos or gpt, FAT32 boot (cmdline.txt, config.txt) + ext4 root. */
function image(dir, { label = 'dos', fat = true } = {}) {
  const img = join(dir, 'os.img')
  writeFileSync(img, Buffer.alloc(0))
  run('truncate', ['-s', String(64 * MiB), img])
  const [t1, t2] = label === 'gpt' ? ['EBD0A0A2-B9E5-4433-87C0-68B6B72699C7', '0FC63DAF-8483-4772-8E79-3D69D8477DE4'] : ['c', '83']
  const table = `label: ${label}\nstart=${BOOT.start / 512}, size=${BOOT.length / 512}, type=${t1}\nstart=${ROOT.start / 512}, size=${ROOT.length / 512}, type=${t2}\n`
  run('sfdisk', ['-q', img], { input: table })
  const boot = join(dir, 'boot.part')
  run('truncate', ['-s', String(BOOT.length), boot])
  if (fat) {
    run('mkfs.vfat', ['-F', '32', '-n', 'BOOTFS', boot])
    writeFileSync(join(dir, 'cmdline.txt'), 'console=serial0,115200 root=PARTUUID=0-02 rootwait\n')
    writeFileSync(join(dir, 'config.txt'), 'dtparam=audio=on\n')
    run('mcopy', ['-i', boot, join(dir, 'cmdline.txt'), join(dir, 'config.txt'), '::/'])
  } else {
    run('mkfs.ext4', ['-q', '-F', boot])
  }
  const root = join(dir, 'root.part')
  run('truncate', ['-s', String(ROOT.length), root])
  run('mkfs.ext4', ['-q', '-F', root])
  for (const [part, at] of [[boot, BOOT], [root, ROOT]]) {
    run('dd', [`if=${part}`, `of=${img}`, 'bs=1M', `seek=${at.start / MiB}`, 'conv=notrunc', 'status=none'])
  }
  return img
}

/** The boot partition of `file` copied out for the FAT tools. */
function bootOf(dir, file) {
  const p = join(dir, `boot-${Math.random().toString(36).slice(2)}.img`)
  writeFileSync(p, slice(file, BOOT))
  return p
}

function fsckClean(t, part) {
  const r = spawnSync('fsck.fat', ['-n', part], { encoding: 'utf8' })
  t.is(r.status, 0, `fsck.fat -n: ${r.stdout}${r.stderr}`)
}

const mtype = (part, f) => run('mtype', ['-i', part, `::/${f}`])

fatTest('customize an MBR image: firstRun files, cmdline.txt appended once, fsck clean, ext4 untouched', async (t) => {
  const dir = tempDir(t)
  const img = image(dir)
  const rootBefore = sha(slice(img, ROOT))
  const c = sk.firstBoot.firstRun({ hostname: 'pi-lab', user: { name: 'ada', password: 'correct horse' }, sshKeys: ['ssh-ed25519 AAAAC3Nza ada@lab'], timezone: 'Europe/London' })
  for (const round of [1, 2]) {
    const r = await sk.customize(img, { ...c, files: { ...c.files, 'extra/notes/hello world.txt': 'hi\n', 'config.txt': null } })
    t.deepEqual(r.partition, BOOT)
    t.deepEqual(r.written, ['firstrun.sh', 'extra/notes/hello world.txt'])
    if (round === 1) t.deepEqual([r.appended, r.already, r.deleted], [['cmdline.txt'], [], ['config.txt']])
    else t.deepEqual([r.appended, r.already, r.deleted], [[], ['cmdline.txt'], []])
  }
  const boot = bootOf(dir, img)
  fsckClean(t, boot)
  t.is(mtype(boot, 'cmdline.txt'), 'console=serial0,115200 root=PARTUUID=0-02 rootwait systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n')
  const script = mtype(boot, 'firstrun.sh')
  t.regex(script, /imager_custom set_hostname 'pi-lab'/)
  t.regex(script, /userconf 'ada' '\$6\$rounds=5000\$[./0-9A-Za-z]+\$[./0-9A-Za-z]{86}'/)
  t.false(script.includes('correct horse'), 'the password is stored hashed')
  t.is(mtype(boot, 'extra/notes/hello world.txt'), 'hi\n')
  t.throws(() => mtype(boot, 'config.txt'))
  t.is(sha(slice(img, ROOT)), rootBefore, 'the ext4 partition is byte-identical')
})

fatTest('customize a GPT image with cloud-init files; the CLI does the same', async (t) => {
  const dir = tempDir(t)
  const img = image(dir, { label: 'gpt' })
  const rootBefore = sha(slice(img, ROOT))
  const c = sk.firstBoot.cloudInit({ hostname: 'node1', user: { name: 'ops', password: 'pw' }, wifi: { ssid: 'Lab "5G"', password: 'sekrit-pass', country: 'DE' } })
  const r = await sk.customize(img, c)
  t.deepEqual(r.written, ['user-data', 'meta-data', 'network-config'])
  const boot = bootOf(dir, img)
  fsckClean(t, boot)
  const userData = mtype(boot, 'user-data')
  t.regex(userData, /^#cloud-config\nhostname: "node1"\n/)
  t.regex(userData, /passwd: "\$6\$rounds=5000\$/)
  t.regex(mtype(boot, 'network-config'), /"Lab \\"5G\\"":\n {10}password: "sekrit-pass"/)
  t.regex(mtype(boot, 'meta-data'), /^instance-id: sparsekit-[0-9a-f]{12}\n$/)
  // The CLI: a local file and an append, then --json.
  writeFileSync(join(dir, 'ssh'), '')
  const a = cli(['customize', img, '--file', `ssh=${join(dir, 'ssh')}`, '--append', 'cmdline.txt= quiet'])
  t.is(a.status, 0, a.stderr)
  t.regex(a.stdout, /wrote ssh\n {2}appended to cmdline.txt/)
  const b = cli(['customize', img, '--append', 'cmdline.txt= quiet', '--json'])
  t.is(b.status, 0, b.stderr)
  t.deepEqual(JSON.parse(b.stdout).already, ['cmdline.txt'])
  t.is(cli(['customize', img]).status, 2, 'nothing to do is a usage error')
  fsckClean(t, bootOf(dir, img))
  t.is(sha(slice(img, ROOT)), rootBefore)
})

fatTest('no FAT partition and a full one: coded errors, nothing written, still fsck clean', async (t) => {
  const dir = tempDir(t)
  const none = image(dir, { fat: false })
  const before = sha(readFileSync(none))
  const e = await t.throwsAsync(sk.customize(none, { files: { a: 'x' } }))
  t.is(e.code, 'ERR_SPARSEKIT_CUSTOMIZE_NO_FAT')
  t.regex(e.message, /no FAT partition.*1 ext4, 2 ext4/)
  t.is(sha(readFileSync(none)), before)

  const dir2 = tempDir(t)
  const img = image(dir2)
  const big = Buffer.alloc(60 * MiB, 7)
  const bootBefore = sha(slice(img, BOOT))
  const f = await t.throwsAsync(sk.customize(img, { files: { 'big.bin': big } }))
  t.is(f.code, 'ENOSPC')
  t.regex(f.message, /big\.bin/)
  t.is(sha(slice(img, BOOT)), bootBefore, 'nothing written')
  fsckClean(t, bootOf(dir2, img))
  // Partition 2 holds ext4: asked for by number, refused.
  const p = await t.throwsAsync(sk.customize(img, { partition: 2, files: { a: 'x' } }))
  t.is(p.code, 'ERR_SPARSEKIT_CUSTOMIZE_NO_FAT')
})

rootTest('flash with customize: the loop device gets the image and the files, read back', async (t) => {
  const dir = tempDir(t)
  const img = image(dir)
  const devFile = join(dir, 'card.img')
  writeFileSync(devFile, Buffer.alloc(80 * MiB, 0xee))
  const dev = loopDevice(t, devFile)
  const r = await sk.flash(img, [dev], { customize: { files: { 'user-data': '#cloud-config\n' }, append: { 'cmdline.txt': ' quiet' } } })
  const d = r.destinations[0]
  t.true(d.ok, d.error?.message)
  t.deepEqual(d.customized?.written, ['user-data'])
  t.deepEqual(d.customized?.appended, ['cmdline.txt'])
  spawnSync('sync')
  const boot = bootOf(dir, dev)
  fsckClean(t, boot)
  t.is(mtype(boot, 'user-data'), '#cloud-config\n')
  t.regex(mtype(boot, 'cmdline.txt'), / rootwait quiet\n$/)
  t.is(sha(slice(dev, ROOT)), sha(slice(img, ROOT)), 'the ext4 partition equals the image')
  // bmap copy, from the CLI: the same files, through --file and --append.
  writeFileSync(join(dir, 'ssh'), '')
  const b = cli(['bmap', 'copy', img, dev, '--nobmap', '--file', `ssh=${join(dir, 'ssh')}`, '--append', 'cmdline.txt= splash', '--json'])
  t.is(b.status, 0, b.stderr)
  t.deepEqual(JSON.parse(b.stdout).customized.written, ['ssh'])
  spawnSync('sync')
  const boot2 = bootOf(dir, dev)
  fsckClean(t, boot2)
  t.regex(mtype(boot2, 'cmdline.txt'), / rootwait splash\n$/)
  t.is(mtype(boot2, 'ssh'), '')
  // An image without a FAT partition: that destination fails with the code, after writing.
  const none = image(tempDir(t), { fat: false })
  const failed = []
  const r2 = await sk.flash(none, [dev], { customize: { files: { a: 'x' } }, onFail: (p, e) => failed.push([p, e.code]) })
  t.false(r2.destinations[0].ok)
  t.is(r2.destinations[0].error.code, 'ERR_SPARSEKIT_CUSTOMIZE_NO_FAT')
  t.deepEqual(failed, [[dev, 'ERR_SPARSEKIT_CUSTOMIZE_NO_FAT']])
})

test('customize and firstBoot refuse bad arguments with codes', async (t) => {
  const dir = tempDir(t)
  const f = join(dir, 'x.img')
  writeFileSync(f, Buffer.alloc(MiB))
  await t.throwsAsync(sk.customize(f, { colour: 1 }), { code: 'ERR_INVALID_ARG_VALUE' })
  await t.throwsAsync(sk.customize(f, { files: 'x' }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(sk.customize(f, { files: { a: 5 } }), { code: 'ERR_INVALID_ARG_TYPE' })
  await t.throwsAsync(sk.customize(f, { files: { '../etc/passwd': 'x' } }), { code: 'ERR_INVALID_ARG_VALUE' })
  await t.throwsAsync(sk.customize(f, { partition: -1 }), { code: 'ERR_INVALID_ARG_VALUE' })
  await t.throwsAsync(sk.customize(join(dir, 'missing.img'), { files: { a: 'x' } }), { code: 'ENOENT' })
  await t.throwsAsync(sk.flash(f, [f], { customize: { files: 7 } }), { code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => sk.firstBoot.cloudInit({ hostname: 'bad host' }), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => sk.firstBoot.firstRun({ wifi: { ssid: 'x', password: 'short', country: 'GB' } }), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => sk.firstBoot.firstRun({ user: { name: 'Root!' } }), { code: 'ERR_INVALID_ARG_VALUE' })
  t.throws(() => sk.firstBoot.cloudInit({ colour: 1 }), { code: 'ERR_INVALID_ARG_VALUE' })
})

testWith(['openssl'], test)('firstBoot.hashPassword is what openssl passwd -6 computes', (t) => {
  for (const pw of ['password', "it's a pä ss"]) {
    const h = sk.firstBoot.hashPassword(pw)
    const [, id, rounds, salt, hash] = h.split('$')
    t.is(id, '6')
    t.is(rounds, 'rounds=5000')
    t.is(run('openssl', ['passwd', '-6', '-salt', salt, pw]).trim(), `$6$${salt}$${hash}`)
  }
  t.not(sk.firstBoot.hashPassword('x'), sk.firstBoot.hashPassword('x'), 'a fresh salt each time')
})
