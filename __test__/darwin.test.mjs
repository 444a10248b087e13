// The darwin-x64 and darwin-arm64 prebuilt binaries: built here (scripts/prebuilt
// darwin-x64 darwin-arm64: -Zbuild-std, zig as the linker) and checked structurally, since
// no macOS runs them here. The checks read the Mach-O files themselves (not the build
// script's own checks): 64-bit Mach-O dylib of the right CPU, minimum macOS version
// (LC_BUILD_VERSION), only system libraries linked (LC_LOAD_DYLIB), arm64 signed
// (LC_CODE_SIGNATURE), `_napi_register_module_v1` exported and no `napi_create_external_*`
// referenced (llvm-nm); and what each npm package tarball holds.
//
// Building takes several minutes cold (std from source, twice): it runs with
// SPARSEKIT_LONG_TESTS=1; otherwise the tests are registered as skipped with that reason.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CAN_NOT_RUN = 3
const LONG = process.env.SPARSEKIT_LONG_TESTS === '1'
const TARGETS = {
  'darwin-x64': { cputype: 0x01000007, minos: '10.13', cpu: 'x64' },
  'darwin-arm64': { cputype: 0x0100000c, minos: '11.0', cpu: 'arm64' },
}
const file = (p) => join(ROOT, 'npm', p, `sparsekit.${p}.node`)

let build = null
let reason = null
if (!LONG) {
  reason = 'building the darwin binaries takes minutes (std from source): set SPARSEKIT_LONG_TESTS=1, or run npm run prebuilt darwin-x64 darwin-arm64'
} else if (process.platform !== 'linux' || process.arch !== 'x64') {
  reason = `the cross tools run on linux-x64 hosts, this is ${process.platform}-${process.arch}`
} else {
  const start = Date.now()
  const r = spawnSync('bash', ['scripts/prebuilt', 'darwin-x64', 'darwin-arm64'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 })
  build = { code: r.status, out: `${r.stdout}\n${r.stderr}`, seconds: Math.round((Date.now() - start) / 1000) }
  if (build.code === CAN_NOT_RUN) reason = `cannot build here: ${build.out.trim().split('\n').slice(-3).join(' | ')}`
}
if (reason) console.log(`darwin.test.mjs: skipped: ${reason}`)
const maybe = reason ? test.skip : test.serial

/** The load commands of a 64-bit little-endian Mach-O file. */
function machO(buf) {
  if (buf.readUInt32LE(0) !== 0xfeedfacf) throw new Error('not a 64-bit little-endian Mach-O file')
  const h = { cputype: buf.readUInt32LE(4), filetype: buf.readUInt32LE(12), dylibs: [], minos: null, signed: false }
  const ncmds = buf.readUInt32LE(16)
  let off = 32
  const cstr = (at) => buf.toString('latin1', at, buf.indexOf(0, at))
  for (let i = 0; i < ncmds; i++) {
    const cmd = buf.readUInt32LE(off)
    const size = buf.readUInt32LE(off + 4)
    if (cmd === 0x32) {
      // LC_BUILD_VERSION: platform, minos (xxxx.yy.zz nibbles), sdk
      const v = buf.readUInt32LE(off + 12)
      h.platform = buf.readUInt32LE(off + 8)
      h.minos = `${v >>> 16}.${(v >>> 8) & 0xff}`
    } else if (cmd === 0x24) {
      const v = buf.readUInt32LE(off + 8) // LC_VERSION_MIN_MACOSX: the pre-10.14 form, macOS only
      h.platform = 1
      h.minos = `${v >>> 16}.${(v >>> 8) & 0xff}`
    } else if (cmd === 0xc || cmd === 0x80000018 || cmd === 0x8000001f) {
      h.dylibs.push(cstr(off + buf.readUInt32LE(off + 8))) // LC_LOAD_(WEAK_|REEXPORT_)DYLIB
    } else if (cmd === 0x1d) {
      h.signed = true // LC_CODE_SIGNATURE
    }
    off += size
  }
  return h
}

maybe('scripts/prebuilt builds the darwin binaries', (t) => {
  for (const l of build.out.split('\n')) if (l.startsWith('prebuilt: ')) t.log(l)
  t.log(`scripts/prebuilt darwin-x64 darwin-arm64: ${build.seconds} s`)
  t.is(build.code, 0, build.out.split('\n').slice(-40).join('\n'))
})

for (const [p, want] of Object.entries(TARGETS)) {
  maybe(`${p}: Mach-O dylib for its CPU, macOS >= ${want.minos}, system libraries only, napi_register_module_v1 exported`, (t) => {
    t.true(existsSync(file(p)), `${file(p)} missing`)
    const h = machO(readFileSync(file(p)))
    t.is(h.cputype, want.cputype, 'CPU type')
    t.is(h.filetype, 6, 'MH_DYLIB')
    t.is(h.platform, 1, 'PLATFORM_MACOS')
    t.is(h.minos, want.minos, 'minimum macOS version')
    t.true(h.dylibs.length > 0)
    for (const d of h.dylibs) t.regex(d, /^(\/usr\/lib\/lib[A-Za-z0-9+.]+\.dylib|\/System\/Library\/Frameworks\/.*)$/, `links ${d}`)
    t.true(h.dylibs.includes('/usr/lib/libSystem.B.dylib'))
    if (p === 'darwin-arm64') t.true(h.signed, 'arm64 macOS loads only signed code')
    t.log(`${p}: ${readFileSync(file(p)).length} bytes, links ${h.dylibs.join(' ')}, signed ${h.signed}`)
    const nm = spawnSync('llvm-nm', ['--extern-only', file(p)], { encoding: 'utf8', maxBuffer: 64 << 20 })
    t.is(nm.status, 0, nm.stderr)
    t.regex(nm.stdout, /^[0-9a-f]+ T _napi_register_module_v1$/m)
    t.notRegex(nm.stdout, /napi_create_external_/)
  })

  maybe(`${p}: package os/cpu fields, and its tarball holds only the binary`, (t) => {
    const m = JSON.parse(readFileSync(join(ROOT, 'npm', p, 'package.json'), 'utf8'))
    t.is(m.name, `sparsekit-${p}`)
    t.deepEqual([m.os, m.cpu, m.files], [['darwin'], [want.cpu], [`sparsekit.${p}.node`]])
    const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
    t.is(root.optionalDependencies[m.name], root.version)
    const r = spawnSync('npm', ['pack', '--dry-run', '--json'], { cwd: join(ROOT, 'npm', p), encoding: 'utf8' })
    t.is(r.status, 0, r.stderr)
    t.deepEqual(JSON.parse(r.stdout)[0].files.map((f) => f.path).sort(), ['README.md', 'package.json', `sparsekit.${p}.node`])
  })
}
