// The public types: SparsekitError, typed DriveWatcher events (issue 20 §3). tsc checks
// a consumer's file against dist/index.d.ts; @ts-expect-error lines must be errors.
import test from 'ava'
import { writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { tempDir } from './helpers.mjs'

const root = new URL('..', import.meta.url).pathname
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')

test('SparsekitError and the watcher events are typed for a consumer', (t) => {
  const dir = tempDir(t)
  mkdirSync(join(dir, 'src'))
  const file = join(dir, 'src', 'consumer.ts')
  writeFileSync(
    file,
    `import * as sk from ${JSON.stringify(join(root, 'dist', 'index'))}
import type { SparsekitError, Drive, DriveWatcherEvents } from ${JSON.stringify(join(root, 'dist', 'index'))}
const w = sk.drives.watch()
w.on('add', (d) => { const p: string = d.path; const s: boolean = d.isSystem; void p; void s })
w.on('remove', (d: Drive) => void d.size)
w.on('error', (e) => void e.message)
// @ts-expect-error an event the watcher never emits
w.on('added', () => {})
// @ts-expect-error 'add' hands a Drive, not a number
w.on('add', (n: number) => void n)
w.close()
const ev: DriveWatcherEvents['add'] = [{} as Drive]
void ev
async function f() {
  const r = await sk.flash('a.img', ['b.img'], { onFail: (path: string, e: SparsekitError) => void [path, e.code, e.range?.length] })
  const e: SparsekitError | undefined = r.destinations[0].error
  if (e) { const c: string = e.code; const n: number | undefined = e.range?.length; void c; void n }
  try { await sk.copy('x', 'y') } catch (err) { const se = err as SparsekitError; void se.errno }
}
void f
`,
  )
  const r = spawnSync(process.execPath, [tsc, '--noEmit', '--strict', '--types', 'node', '--typeRoots', join(root, 'node_modules', '@types'), '--moduleResolution', 'node', '--module', 'commonjs', '--target', 'es2022', file], { encoding: 'utf8' })
  t.is(r.status, 0, r.stdout + r.stderr)
})
