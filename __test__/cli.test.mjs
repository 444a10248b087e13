// The CLI's command table (ts/cli/commands): help generated from it for every command, the
// argument layer's errors in plain words, the output layer's flag wording and interrupt message.
import test from 'ava'
import { createRequire } from 'node:module'
import { writeFileSync, mkdirSync } from 'node:fs'
import { join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { execFileSync, spawnSync } from 'node:child_process'
import { tempDir, cli, CLI, isRoot, has, randomBytes } from './helpers.mjs'
import { loopDevice } from './fs-helpers.mjs'

const require = createRequire(import.meta.url)
const { COMMANDS } = require('../dist/cli/commands/index.js')
const { parseCommandLine } = require('../dist/cli/args.js')
const { Output } = require('../dist/cli/output.js')
const { commandHelp } = require('../dist/cli/help.js')
const { UsageError } = require('../dist/cli/command.js')

const WIDTH = 100
const long = (text) => text.split('\n').filter((l) => l.length > WIDTH)
/** A value each option type accepts. */
const sample = (o) => (o.type === 'bytes' || o.type === 'count' ? '1' : o.type === 'choice' ? o.choices[0] : 'x')

test('the table: unique names, one-line summaries, every option described', (t) => {
  t.true(COMMANDS.length >= 23)
  t.is(new Set(COMMANDS.map((c) => c.name)).size, COMMANDS.length)
  for (const c of COMMANDS) {
    t.regex(c.summary, /^[^\n]{10,76}$/, c.name)
    t.is(typeof c.run, 'function')
    t.is(new Set(c.options.map((o) => o.flag)).size, c.options.length, `${c.name}: a flag twice`)
    for (const o of c.options) {
      t.truthy(o.description, `${c.name} --${o.flag}`)
      t.false(o.description.includes('\n'), `${c.name} --${o.flag}`)
      if (o.type !== 'boolean') t.truthy(o.value, `${c.name} --${o.flag} has no value name`)
      if (o.type === 'choice') t.true(o.choices.length > 1, `${c.name} --${o.flag}`)
      if (o.default !== undefined && o.type === 'choice') t.true(o.choices.includes(o.default), `${c.name} --${o.flag}`)
    }
  }
})

test('sparsekit CMD --help prints its usage and each of its flags, within 100 columns', (t) => {
  for (const c of COMMANDS) {
    const r = cli([...c.name.split(' '), '--help'])
    t.is(r.status, 0, `${c.name}: ${r.stderr}`)
    t.is(r.stderr, '')
    t.true(r.stdout.startsWith(`Usage: sparsekit ${c.name} `), `${c.name}:\n${r.stdout}`)
    for (const p of c.positionals) t.regex(r.stdout.split('\n')[0] + r.stdout.split('\n')[1], new RegExp(`\\b${p.name}\\b`), `${c.name} ${p.name}`)
    for (const o of c.options.filter((x) => !x.hidden)) {
      // The flag at the start of its row, then its description's first words.
      const row = r.stdout.split('\n').find((l) => new RegExp(`^  (-${o.short}, |    )--${o.flag}\\b`).test(l))
      t.truthy(row, `${c.name}: --${o.flag} missing from\n${r.stdout}`)
      t.true(r.stdout.replace(/\s+/g, ' ').includes(o.description.split(' ').slice(0, 4).join(' ')), `${c.name} --${o.flag}`)
      if (o.choices) for (const v of o.choices) t.true(r.stdout.includes(v), `${c.name} --${o.flag} ${v}`)
    }
    for (const o of c.options.filter((x) => x.hidden)) t.false(new RegExp(`--${o.flag}\\b +[a-z]`).test(r.stdout.split('Options:')[1].split('\n\n')[0]), `${c.name} --${o.flag} is hidden`)
    t.deepEqual(long(r.stdout), [], c.name)
    t.is(r.stdout, commandHelp(c))
  }
  // `sparsekit help CMD` is the same text.
  for (const name of ['flash', 'qcow2 info']) t.is(cli(['help', ...name.split(' ')]).stdout, cli([...name.split(' '), '--help']).stdout)
})

test('help cannot drift from parsing: every flag --help shows parses, and no other', (t) => {
  for (const c of COMMANDS) {
    const help = commandHelp(c) // what `sparsekit CMD --help` prints (checked above)
    const shown = [...help.split('Options:')[1].matchAll(/^ {2}(?:-\w, )? *--([a-z0-9-]+)/gm)].map((m) => m[1]).filter((f) => f !== 'help')
    t.deepEqual(shown.sort(), c.options.filter((o) => !o.hidden).map((o) => o.flag).sort(), c.name)
    const positionals = c.positionals.filter((p) => !p.optional).map((p) => p.name.toLowerCase())
    for (const o of c.options) {
      const args = [...positionals, `--${o.flag}`, ...(o.type === 'boolean' ? [] : [sample(o)])]
      const { values } = parseCommandLine(c, args)
      t.not(values[o.flag], undefined, `${c.name} --${o.flag}`)
      if (o.short) t.deepEqual(parseCommandLine(c, [...positionals, `-${o.short}`, ...(o.type === 'boolean' ? [] : [sample(o)])]).values, values)
    }
    t.throws(() => parseCommandLine(c, [...positionals, '--not-a-flag']), { instanceOf: UsageError, message: 'unknown option --not-a-flag' })
  }
})

test('global help lists every command; bare sparsekit prints it on stderr and exits 2', (t) => {
  const r = cli(['--help'])
  t.is(r.status, 0)
  t.regex(r.stdout, /^sparsekit \d+\.\d+\.\d+: /)
  t.regex(r.stdout, /Usage:/)
  const listed = r.stdout.split('Commands:\n')[1].split('\n\n')[0]
  for (const c of COMMANDS) t.regex(listed, new RegExp(`^  ${c.name} +${c.summary.slice(0, 20).replace(/[()|.]/g, '\\$&')}`, 'm'), c.name)
  t.deepEqual(long(r.stdout), [])
  t.is(cli(['help']).stdout, r.stdout)
  t.is(cli(['-h']).stdout, r.stdout)
  const bare = cli([])
  t.is(bare.status, 2)
  t.is(bare.stdout, '')
  t.is(bare.stderr, r.stdout)
  t.regex(cli(['-V']).stdout, /^\d+\.\d+\.\d+\n$/)
})

test('a group alone: --help lists its commands, nothing else is a usage error', (t) => {
  for (const group of ['qcow2', 'bmap']) {
    const members = COMMANDS.filter((c) => c.name.startsWith(`${group} `))
    const r = cli([group, '--help'])
    t.is(r.status, 0)
    for (const c of members) t.regex(r.stdout, new RegExp(`^  ${c.name.slice(group.length + 1)} `, 'm'))
    t.deepEqual(long(r.stdout), [])
    const bare = cli([group])
    t.is(bare.status, 2)
    t.regex(bare.stderr, new RegExp(`^sparsekit ${group}: expected a command: `))
    t.regex(bare.stderr, new RegExp(`\nTry 'sparsekit ${group} --help'.\n$`))
    const bogus = cli([group, 'bogus', 'x'])
    t.is(bogus.status, 2)
    t.regex(bogus.stderr, new RegExp(`^sparsekit ${group}: unknown command 'bogus'`))
  }
  const unknown = cli(['frobnicate'])
  t.is(unknown.status, 2)
  t.is(unknown.stderr, "sparsekit: unknown command 'frobnicate'\nTry 'sparsekit --help'.\n")
})

test('parse errors name the command and the flag in plain words, exit 2', (t) => {
  const dir = tempDir(t)
  const f = join(dir, 'f')
  writeFileSync(f, 'x')
  const cases = [
    [['copy', f, join(dir, 'g'), '--skip'], 'sparsekit copy: --skip needs a value'],
    [['copy', f, join(dir, 'g'), '--skip', '--notrunc'], 'sparsekit copy: --skip needs a value'],
    [['copy', f, join(dir, 'g'), '--skip', '-5'], "sparsekit copy: --skip needs a value (for a value that starts with '-', write --skip=-5)"],
    [['copy', f, join(dir, 'g'), '--notrunc=yes'], "sparsekit copy: --notrunc takes no value, got '--notrunc=yes'"],
    [['copy', f, join(dir, 'g'), '--skip', '1Mb'], 'sparsekit copy: --skip: expected a byte count'],
    [['copy', f], 'sparsekit copy: missing DST'],
    [['copy', f, 'a', 'b'], "sparsekit copy: unexpected argument 'b'"],
    [['bmap', 'create', f, '--json'], 'sparsekit bmap create: unknown option --json'],
    [['bmap', 'create', f, '-x'], 'sparsekit bmap create: unknown option -x'],
    [['bmap', 'create', f, '-o'], 'sparsekit bmap create: -o needs a value'],
    [['digest', f, '--algorithm', 'md5'], "sparsekit digest: --algorithm: expected one of sha256, sha3-512, blake3, sha1, got 'md5'"],
    [['qcow2', 'info', f, '--backing', 'sideways'], "sparsekit qcow2 info: --backing: expected one of follow, none, got 'sideways'"],
    [['qcow2', 'create', f], 'sparsekit qcow2 create: --size is required'],
    [['qcow2', 'resize', f, '1Q'], 'sparsekit qcow2 resize: SIZE: expected a byte count'],
    [['qcow2', 'convert', f, join(dir, 'o'), '--retries', 'many'], "sparsekit qcow2 convert: --retries: expected a count, got 'many'"],
    [['flash', f], 'sparsekit flash: missing at least one DST'],
    [['flash', f, join(dir, 'o'), '--bmap', 'b', '--nobmap'], 'sparsekit flash: --bmap and --nobmap exclude each other'],
    [['drives', 'extra'], "sparsekit drives: unexpected argument 'extra' (it takes no arguments)"],
    [['checksum'], 'sparsekit checksum: missing DST'],
  ]
  for (const [args, start] of cases) {
    const r = cli(args)
    t.is(r.status, 2, `${args.join(' ')}: ${r.stderr}`)
    t.true(r.stderr.startsWith(start), `${args.join(' ')}: ${r.stderr}`)
    const cmd = start.split(':')[0]
    t.true(r.stderr.endsWith(`\nTry '${cmd} --help'.\n`), r.stderr)
    t.is(r.stderr.trim().split('\n').length, 2, r.stderr)
    // Not node:util's wording.
    t.notRegex(r.stderr, /Option '|ambiguous|To specify a positional|Unknown option/)
    t.is(r.stdout, '')
  }
})

test('--help before `--` wins over a bad command line; after it, it is a file name', (t) => {
  const r = cli(['copy', '--skip', 'lots', '--help'])
  t.is(r.status, 0)
  t.regex(r.stdout, /^Usage: sparsekit copy /)
  const dir = tempDir(t)
  writeFileSync(join(dir, '-h'), 'abc')
  const d = cli(['digest', '--', '-h'], { cwd: dir })
  t.is(d.status, 0, d.stderr)
  t.regex(d.stdout, / {2}-h\n$/)
})

/** An Output writing into strings, as a command's context. */
function capture(command, isTTY = false) {
  const out = { text: '', write: (s) => ((out.text += s), true) }
  const err = { text: '', isTTY, write: (s) => ((err.text += s), true) }
  return { ctx: new Output(command, new AbortController().signal, out, err), out, err }
}

test('output: core messages name the flags, not the API options', (t) => {
  const flash = COMMANDS.find((c) => c.name === 'flash')
  const { ctx, err } = capture(flash)
  const busy = "refusing to write '/dev/sdx': it is in use (mounted at /mnt); unmount it first (unmount: true) or pass force to override"
  t.is(ctx.words(busy), "refusing to write '/dev/sdx': it is in use (mounted at /mnt); unmount it first (--unmount) or pass --force to override")
  const system = "refusing to write '/dev/sda': it is a system drive (holds /); pass force to override"
  t.is(ctx.words(system), "refusing to write '/dev/sda': it is a system drive (holds /); pass --force to override")
  // A message that already names the flag is left alone.
  const missing = "'/x' does not exist: create it (createFiles: true; CLI --create)"
  t.is(ctx.words(missing), missing)
  // Only words, not parts of words: `forced`, `unmounted` stay.
  t.is(ctx.words('it was forced and unmounted'), 'it was forced and unmounted')
  t.is(ctx.fail(Object.assign(new Error(busy), { code: 'ERR_SPARSEKIT_DRIVE_BUSY' })), 1)
  t.is(err.text, `sparsekit: ${ctx.words(busy)} (ERR_SPARSEKIT_DRIVE_BUSY)\n`)
  // A command without such flags changes nothing.
  t.is(capture(COMMANDS.find((c) => c.name === 'copy')).ctx.words(busy), busy)
})

test('output: exit statuses and the interrupt message come from the context', (t) => {
  const copy = COMMANDS.find((c) => c.name === 'copy')
  const aborted = () => Object.assign(new Error('aborted'), { code: 'ERR_SPARSEKIT_ABORTED' })
  let { ctx, err } = capture(copy)
  ctx.leaves('dst may be partly written')
  t.is(ctx.fail(aborted()), 130)
  t.is(err.text, 'sparsekit: interrupted; dst may be partly written\n')
  ;({ ctx, err } = capture(copy))
  ctx.leaves('dst may be partly written')
  ctx.leaves(undefined)
  t.is(ctx.fail(aborted()), 130)
  t.is(err.text, 'sparsekit: interrupted\n')
  ;({ ctx, err } = capture(copy))
  t.is(ctx.fail(new UsageError('--skip needs a value')), 2)
  t.is(err.text, "sparsekit copy: --skip needs a value\nTry 'sparsekit copy --help'.\n")
  ;({ ctx, err } = capture(copy))
  t.is(ctx.fail(Object.assign(new Error('broken pipe'), { code: 'EPIPE' })), 0)
  t.is(err.text, '')
  t.is(ctx.fail(Object.assign(new Error("ENOENT: no such file, open 'x'"), { code: 'ENOENT' })), 1)
  t.is(err.text, "sparsekit: ENOENT: no such file, open 'x'\n")
  // Two runs, two contexts: nothing is shared.
  const a = capture(copy)
  const b = capture(copy)
  a.ctx.leaves('a may be partly written')
  b.ctx.fail(aborted())
  t.is(b.err.text, 'sparsekit: interrupted\n')
})

test('output: the bar is cleared before an error', (t) => {
  const { ctx, err } = capture(COMMANDS.find((c) => c.name === 'digest'), true)
  const onProgress = ctx.progress()
  t.is(typeof onProgress, 'function')
  onProgress({ phase: 'hash', bytesDone: 1, bytesTotal: 10 })
  t.regex(err.text, /hash \[/)
  ctx.fail(Object.assign(new Error('EIO: i/o error'), { code: 'EIO' }))
  t.true(err.text.endsWith('\r\x1b[Ksparsekit: EIO: i/o error\n'), JSON.stringify(err.text))
  t.is(capture(COMMANDS[0], false).ctx.progress(), undefined)
})

/**
 * The modules (files under the repository) and native addons a `sparsekit ARGS` process
 * loads, relative to the repository: a preload script lists `require.cache` at exit.
 */
function loaded(t, args) {
  const dir = tempDir(t)
  const probe = join(dir, 'probe.cjs')
  writeFileSync(
    probe,
    `process.on('exit', () => require('fs').writeSync(3, JSON.stringify(Object.keys(require.cache))))\n`,
  )
  const r = spawnSync(process.execPath, ['--require', probe, CLI, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe', 'pipe'] })
  t.is(r.status, 0, r.stderr)
  const root = fileURLToPath(new URL('..', import.meta.url))
  return JSON.parse(r.output[3]).filter((f) => f !== probe).map((f) => relative(root, f).split(sep).join('/'))
}

test('start-up loads only what the run needs: no API or addon for help, one command module', (t) => {
  // --version reads package.json and nothing else.
  t.deepEqual(loaded(t, ['--version']).sort(), ['dist/cli.js', 'package.json'])
  // Help reads the table (and the API's lists of choices), never a command's module, the API
  // or the addon.
  for (const args of [['--help'], ['copy', '--help'], ['qcow2', '--help']]) {
    const files = loaded(t, args)
    t.true(files.includes('dist/cli/specs.js'), args.join(' '))
    t.deepEqual(files.filter((f) => /^dist\/cli\/commands\/(?!index\.js)/.test(f) || !/^(dist\/cli|dist\/choices\.js|package\.json)/.test(f)), [], args.join(' '))
  }
  // A command loads its own module and the API modules it calls, not the API's index or the
  // other commands' modules (and so not sync's node:net, qcow2's streams, ...).
  const dir = tempDir(t)
  const f = join(dir, 'f')
  writeFileSync(f, randomBytes(8192))
  const files = loaded(t, ['copy', f, join(dir, 'g')])
  t.deepEqual(files.filter((x) => x.startsWith('dist/cli/commands/')).sort(), ['dist/cli/commands/copy.js', 'dist/cli/commands/index.js'])
  t.true(files.includes('dist/copy.js'))
  t.true(files.some((x) => x.endsWith('.node')), 'the addon')
  for (const other of ['dist/index.js', 'dist/qcow2.js', 'dist/sync.js', 'dist/flash.js', 'dist/drives.js']) t.false(files.includes(other), other)
})

test("Node's compile cache is turned on when the running Node has it, before the CLI's modules load", (t) => {
  // Node >= 22.1 has module.enableCompileCache; on older Node the CLI starts without it. A
  // preload gives this Node one that records its call: no arguments (NODE_COMPILE_CACHE or
  // the OS temporary directory, as Node decides), and only dist/cli.js loaded so far.
  const dir = tempDir(t)
  const probe = join(dir, 'probe.cjs')
  writeFileSync(
    probe,
    `const fs = require('fs')
require('node:module').enableCompileCache = (...args) => fs.writeSync(3, JSON.stringify({ args, loaded: Object.keys(require.cache).filter((f) => f !== __filename) }))\n`,
  )
  const r = spawnSync(process.execPath, ['--require', probe, CLI, '--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe', 'pipe'] })
  t.is(r.status, 0, r.stderr)
  const call = JSON.parse(r.output[3])
  t.deepEqual(call.args, [])
  t.deepEqual(call.loaded, [CLI])
})

test("every command's module loads and exports its run", (t) => {
  for (const c of COMMANDS) {
    const m = require(`../dist/cli/commands/${c.name.replace(' ', '-')}.js`)
    t.is(typeof m.default, 'function', c.name)
  }
})

const rootTest = isRoot && has('losetup') && has('mkfs.ext4') ? test : test.skip
rootTest('sparsekit flash onto a mounted drive says --unmount and --force', (t) => {
  const dir = tempDir(t)
  const img = join(dir, 'os.img')
  writeFileSync(img, randomBytes(64 * 1024))
  const backing = join(dir, 'disk.bin')
  writeFileSync(backing, Buffer.alloc(16 << 20))
  const dev = loopDevice(t, backing)
  execFileSync('mkfs.ext4', ['-q', '-F', dev])
  const mnt = join(dir, 'mnt')
  mkdirSync(mnt)
  execFileSync('mount', [dev, mnt])
  t.teardown(() => spawnSync('umount', [mnt]))
  for (const json of [false, true]) {
    const r = cli(['flash', img, dev, ...(json ? ['--json'] : [])])
    t.is(r.status, 1, r.stderr)
    const message = json ? JSON.parse(r.stdout).destinations[0].error.message : r.stderr
    t.regex(message, /\(--unmount\) or pass --force/)
    t.notRegex(message, /unmount: true|pass force/)
  }
})
