// Shared test helpers: the package under test, temp folders, oracle tools.
import { createRequire } from 'node:module'
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, openSync, closeSync, writeSync, ftruncateSync, createReadStream } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createHash, randomBytes } from 'node:crypto'

const require = createRequire(import.meta.url)
export const sk = require('../dist/index.js')
export const native = require('../index.js')
export const CLI = new URL('../dist/cli.js', import.meta.url).pathname

/** A fresh temp folder, removed when the test ends (pass the ava `t`). */
export function tempDir(t) {
  const dir = mkdtempSync(join(process.env.SPARSEKIT_TEST_TMP || tmpdir(), 'sparsekit-test-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Create a file of `size` bytes that holds `runs` = [[offset, Buffer], ...] and holes elsewhere. */
export function sparseFile(path, size, runs = []) {
  const fd = openSync(path, 'w')
  try {
    for (const [offset, buf] of runs) writeSync(fd, buf, 0, buf.length, offset)
    ftruncateSync(fd, size)
  } finally {
    closeSync(fd)
  }
  return path
}

export { randomBytes }

/** Digest a file with Node's crypto (the oracle for sha256 / sha3-512 / sha1 / md5). */
export function nodeDigest(path, algorithm, { start = 0, end } = {}) {
  return new Promise((resolve, reject) => {
    const h = createHash(algorithm)
    createReadStream(path, { start, end, highWaterMark: 1 << 20 })
      .on('data', (d) => h.update(d))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')))
  })
}

export function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0
}

export function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', ...opts })
}

/** Run the CLI; returns { status, stdout, stderr } and never throws. */
export function cli(args, opts = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', ...opts })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

export const isRoot = process.getuid && process.getuid() === 0

/**
 * `test` when every command in `cmds` is installed, else `test.skip` with the reason
 * printed: a test that cannot run is reported as skipped, never as passed.
 */
export function testWith(cmds, test) {
  const missing = cmds.filter((c) => !has(c))
  if (missing.length === 0) return test
  return (title, fn) => {
    console.error(`SKIP ${title}: ${missing.join(', ')} not installed`)
    return test.skip(title, fn)
  }
}
