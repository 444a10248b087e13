// The source layout (issue 20): no two source files import each other, directly or in a
// ring, in any crate (crates/*/src, the addon's src/) or in ts/. scripts/import-cycles.mjs
// finds the cycles; this test runs it as `npm test` does and fails on any cycle.
import test from 'ava'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { findCycles } from '../scripts/import-cycles.mjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

test('no import cycles between source files', (t) => {
  const unknown = findCycles(ROOT)
  t.deepEqual(
    unknown.map((c) => c.ring.join(' -> ')),
    [],
    'import cycles (break them: move the shared item to a module both can use)',
  )
})

const SCRIPT = fileURLToPath(new URL('../scripts/import-cycles.mjs', import.meta.url))

test('the checker finds Rust and TS cycles, and no false ones, and exits 1 on them', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sparsekit-cycles-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const files = {
    // x -> y with `use`; y -> x through the crate root's re-export: a cycle.
    'crates/a/src/lib.rs': 'mod x;\nmod y;\nmod m;\n#[cfg_attr(windows, path = "sys/win.rs")]\nmod sys;\npub use x::X;\n',
    'crates/a/src/x.rs': 'use crate::y::Y; // x -> y\npub struct X;\n#[cfg(test)]\nmod tests {\n    use super::*; // x itself\n}\n',
    'crates/a/src/y.rs': 'pub struct Y;\nfn f() { let _ = crate::X; }\n',
    // A module's `pub use` of its own child is its face, not a dependency: no cycle.
    'crates/a/src/m/mod.rs': 'mod inner;\npub use inner::I;\n',
    'crates/a/src/m/inner.rs': 'pub struct I;\nfn g() -> super::I { I }\n',
    'crates/a/src/sys.rs': 'pub fn s() {}\n',
    'crates/a/src/sys/win.rs': 'use crate::{y::Y};\n',
    'crates/b/src/lib.rs': 'mod p;\nmod q;\n',
    'crates/b/src/p.rs': '// crate::q::Q in a comment is no edge\nconst S: &str = "crate::q::Q";\n',
    'crates/b/src/q.rs': 'use crate::p::S;\n',
    'ts/a.ts': "import { b } from './b.js'\nexport const a = 1\n",
    'ts/b.ts': "import type { a } from './a'\nexport const b = 2\n",
    'ts/c.ts': "export * from './a.js'\n",
  }
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, f)), { recursive: true })
    writeFileSync(join(dir, f), text)
  }
  t.deepEqual(
    findCycles(dir).map((c) => c.ring.join(' -> ')),
    ['crates/a/src/x.rs -> crates/a/src/y.rs -> crates/a/src/x.rs', 'ts/a.ts -> ts/b.ts -> ts/a.ts'],
  )
  const r = spawnSync(process.execPath, [SCRIPT, dir], { encoding: 'utf8' })
  t.is(r.status, 1, r.stderr)
  t.regex(r.stdout, /^cycle: ts\/a\.ts -> ts\/b\.ts -> ts\/a\.ts$/m)
  // Without the cycles it exits 0.
  writeFileSync(join(dir, 'crates/a/src/y.rs'), 'pub struct Y;\n')
  writeFileSync(join(dir, 'ts/b.ts'), 'export const b = 2\n')
  const ok = spawnSync(process.execPath, [SCRIPT, dir], { encoding: 'utf8' })
  t.is(ok.status, 0, ok.stdout)
  t.regex(ok.stdout, /no import cycles/)
})

test('the flash engine depends on neither qcow2 nor the drive code (the addon composes them)', (t) => {
  const r = spawnSync('cargo', ['metadata', '--format-version', '1', '--no-deps', '--offline'], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  })
  if (r.error || r.status !== 0) {
    t.log(`SKIP: cargo metadata did not run here: ${r.error?.message ?? r.stderr}`)
    t.pass()
    return
  }
  const pkgs = JSON.parse(r.stdout).packages
  const deps = (name) =>
    pkgs
      .find((p) => p.name === name)
      .dependencies.filter((d) => d.kind === null)
      .map((d) => d.name)
  t.false(deps('sparsekit-flash').includes('sparsekit-qcow2'))
  t.false(deps('sparsekit-flash').includes('sparsekit-drives'))
  t.true(deps('sparsekit-flash').includes('sparsekit-http'))
  // One concern per crate: drives and http do not reach up into the engine.
  for (const low of ['sparsekit-drives', 'sparsekit-http', 'sparsekit-io']) {
    t.false(deps(low).includes('sparsekit-flash'), low)
  }
})
