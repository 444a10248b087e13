// Turns the results of bench/run into the table it prints and into BENCHMARKS.md.
//
//   node bench/report.mjs RESULTS_DIR [--command 'npm run bench'] [--write BENCHMARKS.md]
//
// RESULTS_DIR holds facts.env, hyperfine's JSON exports (hf-*.json: process wall times)
// and the helpers' JSON lines (ip-*.jsonl: in-process times, first call of each process
// dropped). Every figure is a median.
import { readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs'
import path from 'node:path'

const argv = process.argv.slice(2)
const dir = argv[0]
if (!dir) {
  console.error('usage: report.mjs RESULTS_DIR [--command CMD] [--write FILE]')
  process.exit(2)
}
const opt = (name) => {
  const i = argv.indexOf(name)
  return i > 0 ? argv[i + 1] : undefined
}
const command = opt('--command') ?? 'npm run bench'
const writeTo = opt('--write')

// Anchors: /work/shared/TOOLCHAIN.md, "Anchor timings (one run, page cache warm, same
// hardware class)". Shown for reference; every ratio below uses this run's own numbers.
const ANCHOR = {
  'filemap-py': 1.76,
  'bmaptool-create-frag': 1.54,
  cp: 0.34,
  'bmaptool-create-4g': 0.70,
  bmaptool: 1.11,
  'bmaptool-noverify': 0.72,
}

const facts = Object.fromEntries(
  readFileSync(path.join(dir, 'facts.env'), 'utf8').split('\n').filter(Boolean).map((l) => {
    const i = l.indexOf('=')
    return [l.slice(0, i), l.slice(i + 1)]
  }),
)

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

// id -> { median, min, max, n, kind: 'process' | 'in-process', extra }
const R = {}
for (const f of readdirSync(dir).filter((f) => /^hf-.*\.json$/.test(f))) {
  for (const r of JSON.parse(readFileSync(path.join(dir, f), 'utf8')).results) {
    R[r.command] = { median: r.median, min: r.min, max: r.max, n: r.times.length, kind: 'process', user: r.user, system: r.system }
  }
}
for (const f of readdirSync(dir).filter((f) => /^ip-.*\.jsonl$/.test(f))) {
  const id = f.replace(/^ip-/, 'ip:').replace(/\.jsonl$/, '')
  const lines = readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
  const times = lines.flatMap((l) => l.times.slice(1))
  R[id] = { median: median(times), min: Math.min(...times), max: Math.max(...times), n: times.length, kind: 'in-process', extra: lines[0], lines }
  // CPU seconds per call (all threads), where the helper reports them: less sensitive to
  // other load on the machine than wall time.
  const cpu = lines.flatMap((l) => (l.cpu ? l.cpu.slice(1) : []))
  if (cpu.length) R[id.replace(/^ip:/, 'cpu:')] = { median: median(cpu), min: Math.min(...cpu), max: Math.max(...cpu), n: cpu.length, kind: 'in-process, CPU' }
}
const t = (id) => R[id]?.median

const fmt = (s) => (s === undefined ? '–' : s < 0.1 ? `${(s * 1000).toFixed(1)} ms` : `${s.toFixed(3)} s`)
const fx = (r) => (r === undefined || !isFinite(r) ? '–' : r >= 10 ? `${r.toFixed(1)}x` : `${r.toFixed(2)}x`)
const pct = (r) => (r === undefined || !isFinite(r) ? '–' : `${r >= 0 ? '+' : ''}${(r * 100).toFixed(1)}%`)

// --- goals ---------------------------------------------------------------------------
// speedup = reference time / sparsekit time (above 1: sparsekit is faster).
const goals = []
// A comparison whose rows were not measured (e.g. `bench/run --map-only`) says so.
const speed = (goal, label, refId, ourId, need, note = '') => {
  const ref = t(refId)
  const ours = t(ourId)
  const r = ref / ours
  goals.push({ goal, label, ref: fmt(ref), ours: fmt(ours), result: fx(r), need: `>= ${need}x`, pass: r >= need, ran: ref !== undefined && ours !== undefined, note })
}
const overhead = (goal, label, rustId, jsId, limit, note = '') => {
  const rust = t(rustId)
  const js = t(jsId)
  const o = js / rust - 1
  goals.push({ goal, label, ref: fmt(rust), ours: fmt(js), result: pct(o), need: `< ${(limit * 100).toFixed(0)}%`, pass: o < limit, ran: rust !== undefined && js !== undefined, note })
}
// ours / floor: how many times the kernel floor's time sparsekit takes (1.00x: no overhead).
const withinFloor = (goal, label, floorId, ourId, limit, note = '') => {
  const floor = t(floorId)
  const ours = t(ourId)
  const r = ours / floor
  goals.push({ goal, label, ref: fmt(floor), ours: fmt(ours), result: fx(r), need: `<= ${limit}x`, pass: r <= limit, ran: floor !== undefined && ours !== undefined, note })
}

const G1 = '1. map 100 000 extents: >= 50x faster than bmaptool Filemap'
speed(G1, 'JS `map()` vs Filemap, both in process (primary)', 'ip:filemap-py', 'ip:map-js', 50)
speed(G1, 'JS, whole process: `node` + `map()` vs `python3` + Filemap', 'filemap-py', 'map-js', 50)
speed(G1, 'CLI `sparsekit map --json` vs `python3` + Filemap, whole process', 'filemap-py', 'map-cli', 50)
speed(G1, 'bare Rust `map_path` vs Filemap, in process (ceiling)', 'ip:filemap-py', 'ip:map-rust', 50)
speed(G1, 'bare Rust vs Filemap, both without sync, in process', 'ip:filemap-py-nosync', 'ip:map-rust-nosync', 50)

const G1b = '1b. map 100 000 extents: JS `map()` within 1.2x of the kernel floor (a C loop of bare FIEMAP calls)'
withinFloor(G1b, 'JS `map()` vs `fiemap_floor`, in process, interleaved rounds (primary)', 'ip:map-floor', 'ip:map-js', 1.2,
  'same FIEMAP batches and sync as map(); the C loop only counts extents')
withinFloor(G1b, 'JS `mapTable()` (typed arrays) vs `fiemap_floor`, in process, interleaved rounds', 'ip:map-floor', 'ip:map-js-table', 1.2,
  'the same map without one object per extent')
withinFloor(G1b, 'same calls, CPU time instead of wall time (all threads of the process)', 'cpu:map-floor', 'cpu:map-js', 1.2,
  'less sensitive to other load on the machine')
withinFloor(G1b, 'whole process: `node bench/js.cjs map` vs `fiemap_floor`', 'map-floor', 'map-js', 1.2, 'includes Node start-up and require()')

const G2 = '2. copy 4 GiB / 512 MiB data: no slower than cp --sparse=always'
speed(G2, 'CLI `sparsekit copy` vs `cp --sparse=always`, whole process (primary)', 'cp', 'copy-cli', 1)
speed(G2, '`node` + `copy()` vs cp, whole process', 'cp', 'copy-js', 1)
speed(G2, 'JS `copy()` in process vs cp process', 'cp', 'ip:copy-js', 1)
speed(G2, 'bare Rust `copy` (process) vs cp', 'cp', 'copy-rust', 1)
speed(G2, 'both + fsync: Rust `copy` + fsync vs `cp && sync FILE`', 'cp-fsync', 'copy-rust-fsync', 1)

const G3 = '3. same copy: >= 3x faster than bmaptool copy'
speed(G3, 'CLI `sparsekit copy` vs `bmaptool copy` (its default: verify + fsync) (primary)', 'bmaptool', 'copy-cli', 3,
  'bmaptool verifies SHA-256 and fsyncs; sparsekit copy does neither')
speed(G3, 'CLI `sparsekit copy` vs `bmaptool copy --no-verify` (fsync)', 'bmaptool-noverify', 'copy-cli', 3, 'bmaptool fsyncs, sparsekit does not')
speed(G3, 'like with like: Rust `copy` + fsync vs `bmaptool copy --no-verify`', 'bmaptool-noverify', 'copy-rust-fsync', 3,
  'both write the data back to disk, neither verifies')
speed(G3, 'like with like, JS: `copy()` + fsync (in process) vs `bmaptool copy --no-verify`', 'bmaptool-noverify', 'ip:copy-js-fsync', 3)

const G4 = "4. the JS API's overhead on the same copy: < 5% over bare Rust"
overhead(G4, 'JS `copy()` vs Rust `copy()`, in process, interleaved rounds (primary)', 'ip:copy-rust', 'ip:copy-js', 0.05)
overhead(G4, 'same, both + fsync', 'ip:copy-rust-fsync', 'ip:copy-js-fsync', 0.05)
overhead(G4, 'whole process: `node bench/js.cjs copy` vs `bench_copy`', 'copy-rust', 'copy-js', 0.05, 'includes Node start-up and require()')
overhead(G4, 'whole process: CLI `sparsekit copy` vs `bench_copy`', 'copy-rust', 'copy-cli', 0.05, 'includes Node start-up and require()')

// --- detail rows ---------------------------------------------------------------------
const rows = (list, refOf) => list.filter(([id]) => R[id]).map(([id, what]) => {
  const r = R[id]
  const ref = refOf(id)
  return [what, r.kind, fmt(r.median), `${fmt(r.min)} … ${fmt(r.max)}`, String(r.n), ANCHOR[id] ? `${ANCHOR[id]} s` : '', ref ? fx(t(ref) / r.median) : '']
})
const detailHead = ['what', 'timed', 'median', 'min … max', 'n', 'anchor', 'speedup']
const mapRows = rows([
  ['filemap-py', '`/usr/bin/python3 bench/filemap.py` (bmaptools Filemap: fsync, FIEMAP_FLAG_SYNC on each call)'],
  ['map-floor', '`fiemap_floor` (bench/fiemap_floor.c: bare FIEMAP loop, the kernel floor)'],
  ['map-rust', '`bench_map` (Rust `map_path`, FIEMAP_FLAG_SYNC on the first call)'],
  ['map-js', '`node bench/js.cjs map` (`require(dist).map()`)'],
  ['map-cli', '`node dist/cli.js map FILE --json` (output discarded)'],
  ['ip:filemap-py', 'Filemap (sync), per call'],
  ['ip:filemap-py-nosync', 'Filemap without fsync and FIEMAP_FLAG_SYNC, per call'],
  ['ip:map-floor', 'C FIEMAP loop (sync on the first call, 2048 per call), per call: the floor'],
  ['ip:map-floor-nosync', 'C FIEMAP loop without FIEMAP_FLAG_SYNC, per call'],
  ['ip:map-rust', 'Rust `map_path` (sync), per call'],
  ['ip:map-rust-nosync', 'Rust `map_file_nosync`, per call'],
  ['ip:map-rust-seek', 'Rust `map_path`, method seek (SEEK_DATA/SEEK_HOLE), per call'],
  ['ip:map-js', 'JS `await map()`, per call'],
  ['ip:map-js-table', 'JS `await mapTable()`, per call'],
  ['cpu:map-floor', 'C FIEMAP loop, CPU time per call'],
  ['cpu:map-js', 'JS `await map()`, CPU time per call (all threads)'],
], (id) => (id.startsWith('cpu:') ? undefined : id.startsWith('ip:') ? (id.includes('nosync') ? 'ip:filemap-py-nosync' : 'ip:filemap-py') : 'filemap-py'))
const copyRows = rows([
  ['cp', '`cp --sparse=always SRC DST`'],
  ['cp-fsync', '`cp --sparse=always SRC DST && sync DST` (fsync)'],
  ['bmaptool', '`bmaptool copy --bmap B SRC DST` (verify SHA-256, fsync)'],
  ['bmaptool-noverify', '`bmaptool copy --no-verify --bmap B SRC DST` (fsync)'],
  ['copy-rust', '`bench_copy SRC DST` (Rust `copy`, auto)'],
  ['copy-rust-fsync', '`bench_copy --fsync` (Rust `copy` + fsync)'],
  ['copy-rust-readwrite', '`bench_copy --method readwrite`'],
  ['copy-rust-sendfile', '`bench_copy --method sendfile`'],
  ['copy-js', '`node bench/js.cjs copy` (`require(dist).copy()`)'],
  ['copy-cli', '`node dist/cli.js copy SRC DST`'],
  ['ip:copy-rust', 'Rust `copy()`, per call'],
  ['ip:copy-js', 'JS `await copy()`, per call'],
  ['ip:copy-rust-fsync', 'Rust `copy()` + fsync, per call'],
  ['ip:copy-js-fsync', 'JS `await copy()` + fsync, per call'],
], (id) => (id.includes('fsync') ? 'cp-fsync' : 'cp'))
const createRows = rows([
  ['bmaptool-create-frag', '`bmaptool create` of the 100 000-extent file (SHA-256 of 400 MB)'],
  ['bmaptool-create-4g', '`bmaptool create` of the 4 GiB file (SHA-256 of 512 MiB)'],
], () => undefined).map((r) => r.slice(0, 6))

const startupRows = rows([
  ['node-start', '`node -e 0`'],
  ['node-require', "`node -e \"require('./dist')\"` (loads the addon)"],
  ['py-import', "`/usr/bin/python3 -c 'from bmaptools import Filemap'`"],
  ['node-start-extra-ca', '`node -e 0` with this machine\'s NODE_EXTRA_CA_CERTS (not used for any row above)'],
], () => undefined).map((r) => r.slice(0, 5))

// --- observations computed from this run -----------------------------------------------
const notes = []
if (facts.extra_ca) {
  notes.push(`This machine sets NODE_EXTRA_CA_CERTS (${facts.extra_ca}); with it every Node start parses that CA bundle${t('node-start-extra-ca') && t('node-start') ? ` (${fmt(t('node-start-extra-ca'))} against ${fmt(t('node-start'))})` : ''}. sparsekit opens no network connection, so bench/run unsets it: the process rows show Node's own start-up.`)
}
const mr = R['ip:map-rust']?.extra
if (mr && mr.sys !== undefined) {
  const cpu = mr.user + mr.sys
  notes.push(`FIEMAP is kernel-bound: over its ${R['ip:map-rust'].lines[0].times.length} calls \`bench_map\` used ${mr.sys.toFixed(3)} s of system CPU and ${mr.user.toFixed(3)} s of user CPU (${((mr.sys / cpu) * 100).toFixed(0)}% in the kernel, getrusage); ext4 walks its extent-status tree once per extent and once per hole. (ioctl alone here: ${fmt(t('ip:map-rust'))}; SEEK_DATA/SEEK_HOLE: ${fmt(t('ip:map-rust-seek'))}).`)
}
if (t('ip:map-js') && t('ip:map-rust')) {
  notes.push(`JS \`map()\` spends ${fmt(t('ip:map-js') - t('ip:map-rust'))} more than the Rust call on the same 100 000 extents (${fx(t('ip:map-js') / t('ip:map-rust'))} the Rust time): the extents cross Node-API as one copied Float64Array (about 0.1 ms; building one object per extent through Node-API cost ~100 ms before), and ts/extents.ts then builds one \`{ offset, length }\` object per extent, which with the garbage collection it causes is most of the difference.`)
}
if (t('ip:map-floor') && t('ip:map-js')) {
  const fl = R['ip:map-floor'].extra
  const cpu = fl.sys !== undefined ? ` The C loop spends ${((fl.sys / (fl.sys + fl.user)) * 100).toFixed(0)}% of its CPU time in the kernel (getrusage), so the floor is FIEMAP itself.` : ''
  notes.push(`Kernel floor: a C program issuing the same FIEMAP calls as \`map()\` (2048 extents per call, FIEMAP_FLAG_SYNC on the first) and only counting the extents takes ${fmt(t('ip:map-floor'))} per map of the 100 000-extent file (without sync ${fmt(t('ip:map-floor-nosync'))}); JS \`map()\` takes ${fmt(t('ip:map-js'))} in the same interleaved rounds, ${fx(t('ip:map-js') / t('ip:map-floor'))} the floor (${fmt(t('ip:map-js') - t('ip:map-floor'))} over it). In CPU time (all threads of each process, less sensitive to other load) the floor costs ${fmt(t('cpu:map-floor'))} per map and JS \`map()\` ${fmt(t('cpu:map-js'))} (${fx(t('cpu:map-js') / t('cpu:map-floor'))}).${cpu}`)
}
const rf = R['ip:copy-rust-fsync']?.median
const rn = R['ip:copy-rust']?.median
if (rf && rn) {
  notes.push(`Writing the copied 512 MiB back to disk (fsync) takes ${fmt(rf - rn)} on this machine (Rust copy ${fmt(rn)}, with fsync ${fmt(rf)}); every tool that fsyncs (bmaptool always does) pays it, so like-with-like ratios against bmaptool are bounded by the disk.`)
}
const methods = [...new Set(['ip:copy-rust', 'ip:copy-js'].map((id) => R[id]?.extra?.method).filter(Boolean))]
if (methods.length) {
  const noReflink = /^(ext[234]|tmpfs)$/.test(facts.fs)
  notes.push(`Copy method reported by sparsekit (\`copy()\`'s \`method\`): ${methods.join(', ')}; ` + (noReflink
    ? `the bench filesystem (${facts.fs}) cannot reflink, so every copier here really moved the 512 MiB.`
    : `**the bench filesystem (${facts.fs}) may share blocks (reflink, also behind copy_file_range): these copy timings do not compare like with like.**`))
}

// --- output --------------------------------------------------------------------------
const table = (head, body) => [
  `| ${head.join(' | ')} |`,
  `|${head.map(() => '---').join('|')}|`,
  ...body.map((r) => `| ${r.join(' | ')} |`),
].join('\n')

const goalBlocks = [...new Set(goals.map((g) => g.goal))].map((name) =>
  `**${name}**\n\n` + table(['comparison', 'reference', 'sparsekit', 'result', 'needed', 'verdict'],
    goals.filter((g) => g.goal === name).map((g) => [g.label + (g.note ? ` (${g.note})` : ''), g.ref, g.ours, g.result, g.need, !g.ran ? 'not run' : g.pass ? 'PASS' : '**MISS**']))).join('\n\n')

let checks = ''
if (existsSync(path.join(dir, 'checks.tsv'))) {
  const lines = readFileSync(path.join(dir, 'checks.tsv'), 'utf8').split('\n').filter(Boolean).map((l) => l.split('\t'))
  checks = table(['copier', 'destination allocated', 'size', 'identical (cmp)', 'last output line'],
    lines.map(([name, kib, size, out]) => [name, `${(Number(kib) / 1024).toFixed(0)} MiB`, size, 'yes', out ? `\`${out.slice(0, 90)}\`` : '']))
}

const machine = table(['fact', 'value'], [
  ['date', facts.date],
  ['`nproc`', facts.nproc],
  ['CPU', facts.cpu],
  ['kernel', facts.kernel],
  ['memory', facts.mem],
  ['bench dir filesystem', `${facts.fs} (${facts.fsdev}, block ${facts.fsblock} B, ${facts.mountopts})`],
  ['load average: start / map / copy / end', [facts.load_start, facts.load_map, facts.load_copy, facts.load_end].join(' / ')],
  ['CPU busy before / after (1 s sample)', `${facts.busy_start}% / ${facts.busy_end}%`],
  ['tools', [facts.node, facts.rustc, facts.cp, facts.bmaptool, facts.python, facts.hyperfine].join('; ')],
  ['sparsekit', `commit ${facts.commit}`],
  ['runs', `${facts.runs} timed runs per row after 1 warmup; in-process copy: ${facts.rounds} interleaved rounds`],
])

// Console.
console.log('\n' + goalBlocks + '\n')
console.log(table(detailHead, mapRows) + '\n')
if (copyRows.length) console.log(table(detailHead, copyRows) + '\n')
console.log(notes.map((n) => '- ' + n).join('\n') + '\n')
console.log(`facts: ${facts.nproc} CPUs, ${facts.cpu}, kernel ${facts.kernel}, ${facts.fs}; load ${facts.load_start} -> ${facts.load_end}`)

// BENCHMARKS.md holds one table per workload; this run writes only its own section, between
// the markers, and leaves the other workloads' tables as they are. The goals above are
// printed on the console only: the file keeps measurements, not verdicts.
const BEGIN = '<!-- bench/run: begin -->'
const END = '<!-- bench/run: end -->'
if (writeTo) {
  const md = `Command: \`${command}\`, ${facts.date}.

### What is measured

- **Data** (\`bench/mkdata.py\`, random bytes, written with \`pwrite\` and fsynced, then a
  global \`sync\`, so no timing includes writeback of the inputs): \`frag.img\`, 819 200 000
  bytes with 4 KiB of data every 8 KiB = 100 000 data extents; \`sparse4g.img\`, 4 GiB with
  64 runs of 8 MiB (512 MiB of data) every 64 MiB. The page cache is warm: the inputs were
  just written and each command has one untimed warmup run.
- **Process rows** ("process"): hyperfine, wall time of the whole command, median of
  ${facts.runs} runs after one warmup. They include interpreter start-up: \`python3\` plus
  \`import bmaptools\`, \`node\` plus \`require('dist')\`.
- **In-process rows** ("in-process"): the helper times each call itself (\`bench/filemap.py\`,
  \`bench/js.cjs\`, and the Rust examples \`crates/extents/examples/bench_map.rs\` and
  \`crates/sparse-copy/examples/bench_copy.rs\`), drops the first call of the process and
  takes the median of the rest. The Rust and JS copy series alternate (${facts.rounds} rounds
  each) so that drift on the machine hits both alike.
- **Sync, map**: bmaptools' Filemap fsyncs the file when it opens it and passes
  FIEMAP_FLAG_SYNC on every FIEMAP call (4 680 extents per call); sparsekit's \`map()\` passes
  FIEMAP_FLAG_SYNC on its first call only (2 048 extents per call). The inputs are clean,
  so these syncs find nothing to write; the "without sync" rows turn them off on both sides
  (Filemap monkeypatched in \`bench/filemap.py --nosync\`, Rust \`map_file_nosync\`).
  Filemap's result is a list of block ranges, \`map()\`'s a list of \`{offset, length}\` objects.
- **Kernel floor, map**: \`bench/fiemap_floor.c\`, compiled by bench/run with \`cc -O2\`,
  opens the file and issues the FIEMAP calls \`map()\` issues (2048 extents per call,
  FIEMAP_FLAG_SYNC on the first call only, over \`[0, size)\`), counting the extents and
  storing nothing; it is what any mapper pays on this kernel. Its in-process series and JS
  \`map()\`'s alternate (${facts.rounds} rounds each), so that drift on the machine hits both
  alike; CPU rows count every thread of the process (Node's libuv worker and GC threads too).
- **Copy**: before every run (untimed) the destination is removed and \`sync\` runs, so each
  copy starts with no destination and nothing dirty. \`cp --sparse=always\` and sparsekit's
  copy leave the data in the page cache (no fsync) like \`cp\` and \`dd\` do; \`bmaptool copy\`
  always fsyncs the destination, and by default also checks SHA-256 of every range
  (\`--no-verify\` turns that off). The "fsync" rows add an fsync of the destination to
  sparsekit's and cp's timings for a like-with-like comparison. \`bmaptool create\`, which
  makes the bmap \`bmaptool copy\` needs, runs once beforehand and is not part of the copy
  timings (its own timings are below). How each moves data (strace -c while writing this
  script): cp 9.1 finds data with SEEK_DATA/SEEK_HOLE, then reads and writes 128 KiB at a
  time, checking each buffer for zeros; bmaptool copy reads in 1 MiB batches on a reader
  thread and writes them from Python, then fsyncs; sparsekit maps with FIEMAP and moves
  each data extent with copy_file_range (in the kernel, no user-space buffer); the
  readwrite and sendfile rows force sparsekit's other methods. Source and destination are on the same
  filesystem (${facts.fs}); see the observations for whether it can share blocks.

### Map: 100 000 extents (\`frag.img\`)

Speedup = the matching Filemap row's median / this row's median (process rows against the
Filemap process, in-process rows against Filemap in process, with or without sync alike).

${table(detailHead, mapRows)}

### Copy: 4 GiB file, 512 MiB of data in 64 runs (\`sparse4g.img\`)

Speedup = the cp row's median / this row's median (rows with fsync against \`cp && sync\`).

${table(detailHead, copyRows)}

Every copier's output was compared with the source (\`cmp\`) once before the timings:

${checks}

### Interpreter start-up (informative; part of every process row)

${table(detailHead.slice(0, 5), startupRows)}

### bmap creation (informative; the setup of \`bmaptool copy\`)

${table(detailHead.slice(0, 6), createRows)}

### Observations from this run

${notes.map((n) => '- ' + n).join('\n')}

### Machine

${machine}

Anchor column: the anchor timings of \`/work/shared/TOOLCHAIN.md\` (another run on the same
hardware class), for reference only; every ratio above uses this run's own measurements of
the reference tools.
`
  const before = existsSync(writeTo) ? readFileSync(writeTo, 'utf8') : ''
  const i = before.indexOf(BEGIN)
  const j = before.indexOf(END)
  const section = `${BEGIN}\n${md.trimEnd()}\n${END}`
  writeFileSync(writeTo, i >= 0 && j > i ? before.slice(0, i) + section + before.slice(j + END.length) : `# Benchmarks\n\n${section}\n`)
  console.log(`wrote its section of ${writeTo}`)
}
