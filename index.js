// sparsekit native loader: finds the compiled addon for this platform and loads it.
//
// Order: $SPARSEKIT_NATIVE_PATH (an explicit .node file, used alone when set), then the
// platform package (sparsekit-<platform>-<arch>-<libc>, installed through
// optionalDependencies), then a local build in this folder (`npm run build`). On failure it
// throws one Error (code ERR_SPARSEKIT_NATIVE_LOAD) that lists every path tried and why each
// failed. It never spawns a process and never lets process.report touch the network.
'use strict'

const { existsSync, readFileSync } = require('node:fs')
const { join } = require('node:path')

/** 'gnu' or 'musl' on Linux, decided without spawning processes. */
function linuxLibc() {
  // process.report's header names the glibc it runs on; excludeNetwork (Node >= 20.13)
  // stops getReport() from resolving host names of open sockets, which can hang for seconds.
  const report = process.report
  if (report && typeof report.getReport === 'function' && 'excludeNetwork' in report) {
    const before = report.excludeNetwork
    try {
      report.excludeNetwork = true
      const header = report.getReport().header
      return header && header.glibcVersionRuntime ? 'gnu' : 'musl'
    } catch {
      // fall through to the file check
    } finally {
      report.excludeNetwork = before
    }
  }
  // musl's ldd is a shell script naming musl; glibc's names GNU libc.
  try {
    return readFileSync('/usr/bin/ldd', 'utf8').includes('musl') ? 'musl' : 'gnu'
  } catch {
    return 'gnu'
  }
}

function platformTriple() {
  const { platform, arch } = process
  if (platform === 'linux') return `linux-${arch}-${linuxLibc()}`
  return `${platform}-${arch}`
}

function load() {
  const triple = platformTriple()
  const tried = []
  const attempt = (what, fn) => {
    try {
      return fn()
    } catch (e) {
      tried.push(`  ${what}: ${e && e.message ? e.message.split('\n')[0] : String(e)}`)
      return undefined
    }
  }
  const override = process.env.SPARSEKIT_NATIVE_PATH
  if (override) {
    const b = attempt(`SPARSEKIT_NATIVE_PATH=${override}`, () => require(override))
    if (b) return b
  } else {
    const pkg = `sparsekit-${triple}`
    const fromPackage = attempt(`package ${pkg}`, () => require(pkg))
    if (fromPackage) return fromPackage
    const local = join(__dirname, `sparsekit.${triple}.node`)
    const fromLocal = attempt(local, () => {
      if (!existsSync(local)) throw new Error('not found (run `npm run build` to build from source)')
      return require(local)
    })
    if (fromLocal) return fromLocal
  }
  const supported = ['linux-x64-gnu', 'linux-arm64-gnu']
  const hint = supported.includes(triple)
    ? ''
    : `\nThis platform (${triple}) has no prebuilt binary (prebuilt: ${supported.join(', ')}); build from source with Rust: npm run build`
  const err = new Error(`sparsekit: cannot load the native addon for ${triple}. Tried:\n${tried.join('\n')}${hint}`)
  err.code = 'ERR_SPARSEKIT_NATIVE_LOAD'
  err.tried = tried
  throw err
}

module.exports = load()
