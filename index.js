// sparsekit native loader: finds the compiled addon for this platform and loads it.
//
// Order (the napi-rs convention):
//   1. $SPARSEKIT_NATIVE_PATH, an explicit .node file (relative to the working directory);
//      when set it is the only candidate, so a wrong override fails loudly instead of
//      silently loading another binary.
//   2. a local build in this folder, sparsekit.<platform>.node (`npm run build`); published
//      tarballs carry none, so this only wins in a source checkout, where it is fresher
//      than a package binary.
//   3. the platform package sparsekit-<platform> (linux-x64-gnu, linux-arm64-gnu,
//      win32-x64-gnu, darwin-x64, darwin-arm64), which npm installs through
//      optionalDependencies on matching machines.
// On failure it throws one Error (code ERR_SPARSEKIT_NATIVE_LOAD) that lists every
// candidate tried and why each failed. It never spawns a process, and process.report is
// consulted only with excludeNetwork set (so no host-name lookups of open sockets).
'use strict'

const { existsSync, readFileSync, openSync, readSync, closeSync } = require('node:fs')
const { join, resolve } = require('node:path')

/** Platforms with a prebuilt package on npm. */
const PREBUILT = ['linux-x64-gnu', 'linux-arm64-gnu', 'win32-x64-gnu', 'darwin-x64', 'darwin-arm64']
const LINUX_PREBUILT = PREBUILT.filter((p) => p.startsWith('linux-'))

/** true / false when /usr/bin/ldd names musl / glibc, null when it cannot tell. */
function muslFromLdd() {
  // glibc's ldd is a bash script that names "GNU C Library"/glibc; musl's names musl.
  // Reading it is cheap and needs no process.
  try {
    const text = readFileSync('/usr/bin/ldd', 'latin1')
    if (text.includes('musl')) return true
    if (text.includes('GNU C Library') || text.includes('glibc') || text.includes('GLIBC')) return false
  } catch {
    // no ldd (distroless, some containers): ask process.report
  }
  return null
}

/** true / false from process.report's header, null when unavailable or unsafe. */
function muslFromReport() {
  const report = process.report
  // excludeNetwork (Node >= 20.13 / 22) stops getReport() from resolving the host names of
  // open sockets, which can hang for seconds; without it we do not call getReport at all.
  if (!report || typeof report.getReport !== 'function' || !('excludeNetwork' in report)) return null
  const before = report.excludeNetwork
  try {
    report.excludeNetwork = true
    const { header, sharedObjects } = report.getReport()
    if (!header) return null
    if (header.glibcVersionRuntime) return false
    return Array.isArray(sharedObjects) && sharedObjects.some((f) => f.includes('libc.musl-') || f.includes('ld-musl-'))
  } catch {
    return null
  } finally {
    report.excludeNetwork = before
  }
}

/** 'gnu' or 'musl' on Linux, decided without spawning processes; glibc when unsure. */
function linuxLibc() {
  const musl = muslFromLdd() ?? muslFromReport()
  return musl ? 'musl' : 'gnu'
}

/** This machine as npm platform-package suffix: linux-x64-gnu, linux-arm64-musl,
 *  win32-x64-gnu (the binary is built with mingw-w64: it runs on any Windows 10+), darwin-arm64. */
function platformTriple() {
  const { platform, arch } = process
  if (platform === 'linux') return `linux-${arch}-${linuxLibc()}`
  if (platform === 'win32') return `win32-${arch}-gnu`
  return `${platform}-${arch}`
}

const ELF_MACHINES = { 3: 'ia32', 40: 'arm', 62: 'x64', 183: 'arm64', 243: 'riscv64', 21: 'ppc64', 22: 's390x' }

/** Why an existing file may fail to load, from its ELF header (glibc's dlopen says only
 *  "cannot open shared object file" for a binary of another architecture). */
function elfMismatch(path) {
  try {
    const fd = openSync(path, 'r')
    const head = Buffer.alloc(20)
    try {
      readSync(fd, head, 0, 20, 0)
    } finally {
      closeSync(fd)
    }
    if (head.readUInt32BE(0) !== 0x7f454c46) return ' (not an ELF file)'
    const machine = head[5] === 2 ? head.readUInt16BE(18) : head.readUInt16LE(18)
    const arch = ELF_MACHINES[machine] || `ELF machine ${machine}`
    return arch === process.arch ? '' : ` (the file is built for ${arch}, this is ${process.arch})`
  } catch {
    return ''
  }
}

/** require() a .node file that exists, explaining an architecture mismatch. */
function requireFile(path) {
  try {
    return require(path)
  } catch (e) {
    const why = elfMismatch(path)
    if (why && e && e.message) e.message = e.message.split('\n')[0] + why
    throw e
  }
}

function firstLine(e) {
  return e && e.message ? e.message.split('\n')[0] : String(e)
}

function load() {
  const triple = platformTriple()
  const tried = []
  const errors = []
  const attempt = (what, fn) => {
    try {
      return fn()
    } catch (e) {
      tried.push(`  ${what}: ${firstLine(e)}`)
      errors.push(e)
      return undefined
    }
  }

  const override = process.env.SPARSEKIT_NATIVE_PATH
  if (override) {
    const path = resolve(override)
    const b = attempt(`SPARSEKIT_NATIVE_PATH=${override}`, () => {
      if (!existsSync(path)) throw new Error(`${path} does not exist`)
      if (!path.endsWith('.node')) throw new Error(`${path} is not a .node file`)
      return requireFile(path)
    })
    if (b) return b
  } else {
    const local = join(__dirname, `sparsekit.${triple}.node`)
    if (existsSync(local)) {
      const b = attempt(local, () => requireFile(local))
      if (b) return b
    } else {
      tried.push(`  ${local}: not built (npm run build builds it from source)`)
    }
    const pkg = `sparsekit-${triple}`
    const fromPackage = attempt(`package ${pkg}`, () => {
      try {
        return require(pkg)
      } catch (e) {
        if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).startsWith(`Cannot find module '${pkg}'`)) {
          throw new Error('not installed')
        }
        throw e
      }
    })
    if (fromPackage) return fromPackage
  }

  const hints = []
  if (!PREBUILT.includes(triple)) {
    const list = (l) => `${l.slice(0, -1).join(', ')} and ${l[l.length - 1]}`
    hints.push(
      process.platform === 'linux'
        ? `sparsekit has prebuilt binaries for ${list(LINUX_PREBUILT)} only, not for ${triple} ` +
            `(other systems: ${list(PREBUILT.filter((p) => !p.startsWith('linux-')))}).\n` +
            'Build it from source (Rust >= 1.88 and a C compiler): `npm run build` in a clone of the ' +
            `repository makes sparsekit.${triple}.node; set SPARSEKIT_NATIVE_PATH to it.`
        : `sparsekit has prebuilt binaries for ${list(PREBUILT)} only, not for ${triple}. ` +
            'Supported systems: Linux, Windows (x64) and macOS.',
    )
  } else if (!override) {
    hints.push(
      `Reinstall so npm fetches the optional dependency sparsekit-${triple} (installs made with ` +
        '--omit=optional or --no-optional, or copied from another platform, lack it).',
    )
  }
  if (__dirname.includes('.asar')) {
    hints.push('Electron: unpack *.node files from the asar archive (asarUnpack / AutoUnpackNatives); see docs/ELECTRON.md.')
  }
  const err = new Error(
    `sparsekit: cannot load the native addon for ${triple}. Tried:\n${tried.join('\n')}` +
      (hints.length ? `\n${hints.join('\n')}` : ''),
  )
  err.code = 'ERR_SPARSEKIT_NATIVE_LOAD'
  err.platform = triple
  err.tried = tried
  if (errors.length) err.cause = errors[errors.length - 1]
  throw err
}

module.exports = load()
