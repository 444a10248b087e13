// Every code example in README.md, CONTRIBUTING.md and docs/*.md runs, as the crates' doctests do.
//
// The convention (also in CONTRIBUTING.md, "Examples in the docs"):
// - a fenced block tagged ```js runs as an ES module (`node example.mjs`): `import sk from
//   'sparsekit'` resolves to this checkout (a node_modules/sparsekit link to it);
// - a block tagged ```sh runs in `bash -e`, with `sparsekit` on PATH running dist/cli.js;
// - any other tag (```ts type listings, ```text output, ```json, ```console) is not run, nor
//   is a js or sh block whose info string says `norun` (```sh norun: installs, the developer
//   commands, Electron processes); this file prints how many each document has.
// Each block runs in a fresh folder holding the files the examples name (os.img, its bmap,
// os.img.xz, os.img.gz, disk.img, vm.qcow2 with base.qcow2 under it, new.img/old.img, ...),
// with these explicit substitutions made in its text:
// - `/dev/sdX`, `/dev/sdY`: a loop device each when root (over a 32 MiB file), else an
//   existing 32 MiB regular file (a destination must exist; a missing one is refused);
// - `https://example.com/`: a loopback HTTP server (range requests) serving the folder.
// A block that needs something this machine lacks is skipped with the reason printed.
import test from 'ava'
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync, createReadStream } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join, basename } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sk, sparseFile, randomBytes, has, isRoot } from './helpers.mjs'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const MiB = 1 << 20
const DOCS = ['README.md', 'CONTRIBUTING.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)]
const RUN = new Set(['js', 'sh'])

/** The fenced blocks of a Markdown text: { lang, info, code, line }. */
export function blocks(text) {
  const out = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,})(.*)$/.exec(lines[i])
    if (!open) continue
    const [, indent, fence, info] = open
    const body = []
    let j = i + 1
    for (; j < lines.length && !(lines[j].startsWith(indent + fence) && lines[j].trim() === fence); j++) body.push(lines[j].slice(indent.length))
    out.push({ lang: info.trim().split(/\s+/)[0] || '', info: info.trim(), code: body.join('\n') + '\n', line: i + 1 })
    i = j
  }
  return out
}

const runs = (b) => RUN.has(b.lang) && !/\bnorun\b/.test(b.info)

// ---- the fixture every block starts from ------------------------------------------------

let fixture // folder with the example files
let scratch // parent of the per-block folders
let server
let baseUrl
const devices = {} // '/dev/sdX' -> loop device or file
const loops = []

test.before(async () => {
  scratch = mkdtempSync(join(process.env.SPARSEKIT_TEST_TMP || tmpdir(), 'sparsekit-docs-'))
  fixture = join(scratch, 'fixture')
  mkdirSync(fixture)
  const f = (name) => join(fixture, name)
  // A small sparse OS image with its bmap, compressed copies, and a qcow2 pair.
  sparseFile(f('os.img'), 8 * MiB, [[0, randomBytes(64 * 1024)], [3 * MiB + 512, randomBytes(MiB)], [7 * MiB, randomBytes(4096)]])
  await sk.bmap.create(f('os.img'), { output: f('os.img.bmap') })
  for (const [cmd, ext] of [['xz', 'xz'], ['gzip', 'gz']]) {
    if (has(cmd)) writeFileSync(f(`os.img.${ext}`), spawnSync(cmd, ['-c', f('os.img')], { maxBuffer: 64 * MiB }).stdout)
  }
  cpSync(f('os.img'), f('disk.img'))
  cpSync(f('os.img'), f('new.img'))
  sparseFile(f('old.img'), 8 * MiB, [[3 * MiB, randomBytes(MiB)]])
  await sk.qcow2.create(f('base.qcow2'), { size: 64 * MiB })
  await sk.qcow2.snapshot(f('base.qcow2'), f('vm.qcow2'))
  writeFileSync(f('hello.txt'), 'hello\n')
  // pi.img: an MBR image with a FAT16 boot partition holding cmdline.txt (a Raspberry Pi
  // OS image in miniature), for the first-boot customisation examples.
  if (['sfdisk', 'mkfs.vfat', 'mcopy'].every(has)) {
    sparseFile(f('pi.img'), 30 * MiB)
    spawnSync('sfdisk', ['-q', f('pi.img')], { input: 'label: dos\nstart=2048, size=49152, type=e\nstart=51200, type=83\n' })
    const boot = join(scratch, 'pi-boot.part')
    sparseFile(boot, 24 * MiB)
    spawnSync('mkfs.vfat', ['-F', '16', '-n', 'BOOTFS', boot])
    writeFileSync(join(scratch, 'cmdline.txt'), 'console=serial0,115200 root=PARTUUID=0-02 rootwait\n')
    spawnSync('mcopy', ['-i', boot, join(scratch, 'cmdline.txt'), '::/'])
    spawnSync('dd', [`if=${boot}`, `of=${f('pi.img')}`, 'bs=1M', 'seek=1', 'conv=notrunc,sparse', 'status=none'])
  }
  // Drives: loop devices when root, else files that exist (a destination must).
  for (const name of ['sdX', 'sdY']) {
    const backing = join(scratch, `${name}.img`)
    sparseFile(backing, 32 * MiB)
    let dev = backing
    if (isRoot && has('losetup')) {
      const r = spawnSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' })
      if (r.status === 0) loops.push((dev = r.stdout.trim()))
    }
    devices[`/dev/${name}`] = dev
  }
  if (!loops.length) console.error(`docs: /dev/sdX and /dev/sdY are regular files (${isRoot ? 'losetup failed' : 'not root'})`)
  // https://example.com/ -> a loopback server with range requests, serving the block's folder.
  server = createServer((req, res) => {
    const [dir, ...rest] = decodeURIComponent(new URL(req.url, 'http://x').pathname).slice(1).split('/')
    const path = join(scratch, dir, ...rest)
    if (!dir || rest.length === 0 || !existsSync(path) || !statSync(path).isFile()) return res.writeHead(404).end()
    const size = statSync(path).size
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '')
    const start = m ? Number(m[1]) : 0
    const end = m && m[2] ? Math.min(Number(m[2]), size - 1) : size - 1
    const headers = { 'content-length': end - start + 1, 'accept-ranges': 'bytes', etag: `"${size}"` }
    if (m) headers['content-range'] = `bytes ${start}-${end}/${size}`
    res.writeHead(m ? 206 : 200, headers)
    if (req.method === 'HEAD' || end < start) return res.end()
    createReadStream(path, { start, end }).pipe(res)
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  baseUrl = `http://127.0.0.1:${server.address().port}`
})

test.after.always(() => {
  server?.close()
  for (const dev of loops) spawnSync('losetup', ['-d', dev])
  if (scratch) rmSync(scratch, { recursive: true, force: true })
})

let n = 0
/** A fresh copy of the fixture, with `sparsekit` on PATH and `sparsekit` importable. */
function workdir() {
  const name = `block${++n}`
  const dir = join(scratch, name)
  const r = spawnSync('cp', ['-a', '--sparse=always', fixture, dir])
  if (r.status !== 0) throw new Error(`cp: ${r.stderr}`)
  mkdirSync(join(dir, 'node_modules'))
  symlinkSync(ROOT, join(dir, 'node_modules', 'sparsekit'))
  const bin = join(dir, 'node_modules', '.bin')
  mkdirSync(bin)
  writeFileSync(join(bin, 'sparsekit'), `#!/bin/sh\nexec "${process.execPath}" "${join(ROOT, 'dist', 'cli.js')}" "$@"\n`)
  chmodSync(join(bin, 'sparsekit'), 0o755)
  return { dir, name, bin }
}

/** Run a command to its end (killed after 2 minutes): { status, stdout, stderr }. */
function runAsync(cmd, args, opts) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d))
    const timer = setTimeout(() => {
      stderr += '\n(killed after 120 s)'
      child.kill('SIGKILL')
    }, 120_000)
    child.on('error', reject)
    child.on('close', (status) => {
      clearTimeout(timer)
      resolve({ status, stdout, stderr })
    })
  })
}

/** The block's text with the documented substitutions made. */
function substitute(code, name) {
  let out = code.replaceAll('https://example.com/', `${baseUrl}/${name}/`)
  for (const [from, to] of Object.entries(devices)) out = out.replaceAll(from, to)
  return out
}

/** What a block needs that this machine may lack, or undefined. */
function missing(code) {
  const needs = []
  if (/os\.img\.xz/.test(code) && !has('xz')) needs.push('xz')
  if (/os\.img\.gz/.test(code) && !has('gzip')) needs.push('gzip')
  for (const cmd of ['ssh', 'qemu-img', 'bmaptool']) if (new RegExp(`\\b${cmd}\\b`).test(code) && !has(cmd)) needs.push(cmd)
  if (/pi\.img/.test(code) && !['sfdisk', 'mkfs.vfat', 'mcopy'].every(has)) needs.push('sfdisk, mkfs.vfat and mcopy (for pi.img)')
  return needs.length ? `${needs.join(', ')} not installed` : undefined
}

for (const doc of DOCS) {
  const all = blocks(readFileSync(join(ROOT, doc), 'utf8'))
  const run = all.filter(runs)
  const skipped = all.filter((b) => !runs(b))
  console.error(`docs: ${doc}: ${run.length} blocks run, ${skipped.length} not (${skipped.map((b) => `${b.info || 'untagged'}@${b.line}`).join(', ') || 'none'})`)
  test(`${doc}: no untagged code blocks`, (t) => {
    t.deepEqual(all.filter((b) => !b.lang).map((b) => b.line), [], 'tag each block: js, sh, ts, text, json, console')
  })
  for (const b of run) {
    const title = `${doc}:${b.line} ${b.lang} block runs`
    const why = missing(b.code)
    if (why) {
      console.error(`SKIP ${title}: ${why}`)
      test.skip(title, () => {})
      continue
    }
    test.serial(title, async (t) => {
      const { dir, name, bin } = workdir()
      const code = substitute(b.code, name)
      const env = { ...process.env, PATH: `${bin}:${process.env.PATH}` }
      if (b.lang === 'js') writeFileSync(join(dir, 'example.mjs'), code)
      // Not spawnSync: the HTTP server answers from this process's event loop.
      const r = await (b.lang === 'js'
        ? runAsync(process.execPath, ['example.mjs'], { cwd: dir, env })
        : runAsync('bash', ['-e', '-o', 'pipefail', '-c', code], { cwd: dir, env }))
      const shown = `--- ${doc}:${b.line}\n${code}--- stdout\n${r.stdout}--- stderr\n${r.stderr}`
      t.is(r.status, 0, shown)
      t.log(`${basename(doc)}:${b.line}: ok (${r.stdout.split('\n').length - 1} lines of output)`)
      rmSync(dir, { recursive: true, force: true })
    })
  }
}

test('every js block, run or not, is valid JavaScript (node --check)', (t) => {
  const dir = mkdtempSync(join(scratch ?? tmpdir(), 'check-'))
  for (const doc of DOCS) {
    for (const b of blocks(readFileSync(join(ROOT, doc), 'utf8')).filter((b) => b.lang === 'js')) {
      // A block with require() is CommonJS (an Electron preload); every other one is a module.
      const file = join(dir, /\brequire\(/.test(b.code) ? 'block.cjs' : 'block.mjs')
      writeFileSync(file, b.code)
      const r = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8' })
      t.is(r.status, 0, `${doc}:${b.line}: ${r.stderr}`)
      rmSync(file)
    }
  }
})

test('README.md is at most 150 lines and starts with install and a quick start', (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  t.true(readme.split('\n').length <= 151, `README.md has ${readme.split('\n').length} lines`)
  const heads = [...readme.matchAll(/^## (.*)$/gm)].map((m) => m[1])
  t.deepEqual(heads.slice(0, 2), ['Install', 'Quick start'])
  t.true(readme.includes('npm install sparsekit'))
  for (const cmd of ['npm run demo', 'npm test']) t.true(readme.includes(cmd), `README.md lacks the developer command ${cmd}`)
})

/** The anchors GitHub makes of a Markdown file's headings (outside code blocks). */
function anchors(text) {
  const inCode = new Set(blocks(text).flatMap((b) => Array.from({ length: b.code.split('\n').length + 1 }, (_, k) => b.line + k)))
  return new Set(text.split('\n').flatMap((l, i) => {
    const m = !inCode.has(i + 1) && /^#{1,6} (.*)$/.exec(l)
    return m ? [m[1].toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-')] : []
  }))
}

test('every relative link in README.md and docs/*.md names a file (and heading) that exists', (t) => {
  for (const doc of DOCS) {
    const text = readFileSync(join(ROOT, doc), 'utf8')
    for (const [, target, hash] of text.matchAll(/\]\(([^)#\s]*)(?:#([^)\s]*))?\)/g)) {
      if (/^[a-z]+:/.test(target)) continue
      const from = doc.includes('/') ? join(ROOT, doc, '..') : ROOT
      const file = target ? join(from, target) : join(ROOT, doc)
      t.true(existsSync(file), `${doc}: link to ${target}, which does not exist`)
      if (hash && existsSync(file) && file.endsWith('.md')) {
        t.true(anchors(readFileSync(file, 'utf8')).has(hash), `${doc}: link to ${target}#${hash}, a heading that does not exist`)
      }
    }
  }
})

test('blocks() finds fences, their tags and their lines', (t) => {
  const md = 'a\n```js\nx()\n```\n- item:\n  ```sh norun\n  npm i\n  ```\n```\nplain\n```\n'
  t.deepEqual(blocks(md).map((b) => [b.lang, b.info, b.line, b.code]), [
    ['js', 'js', 2, 'x()\n'],
    ['sh', 'sh norun', 6, 'npm i\n'],
    ['', '', 9, 'plain\n'],
  ])
})
