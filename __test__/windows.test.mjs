// The win32-x64 binary, run: the public API's smoke suite (scripts/windows-smoke.cjs) in a
// real Windows node.exe under wine (scripts/test-windows.sh, also `npm run test:windows`),
// and what its npm package tarball holds.
//
// `npm test` builds the binary with the `smoke` profile (Cargo.toml: the release code
// without LTO, unoptimised; about 4 CPU-minutes cold with std from source, half the release
// build) and runs the suite against it; with SPARSEKIT_LONG_TESTS=1 it tests the shipped
// binary instead (scripts/prebuilt win32-x64, the release profile). The script runs while
// this file loads (ava wants every test declared in the first tick) so that a machine that
// cannot run it (exit 3: not linux-x64, wine or the cross tools not installable) skips with
// the reason instead of passing.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CAN_NOT_RUN = 3
const LONG = process.env.SPARSEKIT_LONG_TESTS === '1'
const PKG = join(ROOT, 'npm/win32-x64-gnu')
const TARGET = process.env.CARGO_TARGET_DIR || join(ROOT, 'target')
const BIN = LONG ? join(PKG, 'sparsekit.win32-x64-gnu.node') : join(TARGET, 'x86_64-pc-windows-gnu/smoke/sparsekit.win32-x64-gnu.node')

let run = null
let reason = null
if (process.platform !== 'linux' || process.arch !== 'x64') {
  reason = `wine and the cross tools run on linux-x64 hosts, this is ${process.platform}-${process.arch}`
} else {
  const start = Date.now()
  const args = ['scripts/test-windows.sh', ...(LONG ? [] : ['--smoke-build'])]
  const r = spawnSync('bash', args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 })
  run = { code: r.status, out: `${r.stdout}\n${r.stderr}`, seconds: Math.round((Date.now() - start) / 1000) }
  if (run.code === CAN_NOT_RUN) reason = `cannot run here: ${run.out.trim().split('\n').slice(-3).join(' | ')}`
}
if (reason) console.log(`windows.test.mjs: skipped: ${reason}`)
const maybe = reason ? test.skip : test.serial

maybe('the smoke suite passes in a Windows node.exe under wine against the win32 binary', (t) => {
  const lines = run.out.split('\n').filter((l) => /^(ok|not ok|# )/.test(l))
  for (const l of lines) t.log(l)
  t.log(`scripts/test-windows.sh: ${run.seconds} s`)
  t.is(run.code, 0, run.out.split('\n').slice(-40).join('\n'))
  t.true(lines.includes('# all passed'))
  for (const what of ['digest', 'map', 'copy', 'qcow2 info', 'qcow2 convert', 'bmap copy', 'delta sync round trip through pipes', 'cut block stream', 'missing file', 'directory rejects with code EISDIR', 'missing folder', 'drives.list', 'CdRom0']) {
    t.true(lines.some((l) => l.startsWith('ok - ') && l.includes(what)), `no passing check for ${what}`)
  }
  t.false(lines.some((l) => l.startsWith('not ok')))
})

maybe('the win32 package: os/cpu fields, and its tarball holds only the binary', (t) => {
  t.true(existsSync(BIN), BIN)
  const m = JSON.parse(readFileSync(join(PKG, 'package.json'), 'utf8'))
  t.is(m.name, 'sparsekit-win32-x64-gnu')
  t.deepEqual([m.os, m.cpu, m.main, m.files], [['win32'], ['x64'], 'sparsekit.win32-x64-gnu.node', ['sparsekit.win32-x64-gnu.node']])
  const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
  t.is(root.optionalDependencies[m.name], root.version)
  // Packed from a copy of the package folder holding the tested binary (npm test's is not
  // the shipped one, which it must not overwrite).
  const dir = mkdtempSync(join(tmpdir(), 'sk-win32-pack-'))
  try {
    for (const f of ['package.json', 'README.md']) copyFileSync(join(PKG, f), join(dir, f))
    copyFileSync(BIN, join(dir, 'sparsekit.win32-x64-gnu.node'))
    const r = spawnSync('npm', ['pack', '--dry-run', '--json'], { cwd: dir, encoding: 'utf8' })
    t.is(r.status, 0, r.stderr)
    const files = JSON.parse(r.stdout)[0].files.map((f) => f.path).sort()
    t.deepEqual(files, ['README.md', 'package.json', 'sparsekit.win32-x64-gnu.node'])
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
