// Benchmark helper: the JS API on the same work as the Rust examples (used by bench/run).
//
//   node bench/js.cjs map FILE [--iterations N] [--table] [--floor BIN --floor-out FILE]
//   node bench/js.cjs copy SRC DST [--iterations N] [--method M] [--fsync] [--no-prepare]
//
// Times each `await map(...)` / `await copy(...)` in process with performance.now() and
// prints one JSON line, shaped like the Rust examples' output (map also lists the CPU
// seconds of each call, all threads, as `cpu`). For copy, every iteration
// first (untimed) removes DST and runs `sync`, exactly as crates/sparse-copy's bench_copy
// does; `--fsync` adds an fsync of DST to the timed part. With `--floor BIN` (the compiled
// bench/fiemap_floor.c), every map() call is preceded by one map of the same file by BIN,
// started once with --serve (no process start between calls); BIN's times (its own clock)
// go, as one JSON line of BIN's shape, to the file `--floor-out` names (appended). A
// diagnostic: alternating call by call, each side maps with caches the other just used, so
// bench/run alternates whole series instead. CommonJS and no other imports on
// the hot path, so a whole-process timing adds as little as possible to Node's start-up.
'use strict'
const path = require('node:path')
const fs = require('node:fs')
const sk = require(process.env.SPARSEKIT_BENCH_MODULE || path.join(__dirname, '..', 'dist'))

function usage () {
  console.error('usage: js.cjs map FILE [--iterations N] [--table] [--floor BIN --floor-out FILE] | copy SRC DST [--iterations N] [--method M] [--fsync] [--no-prepare]')
  process.exit(2)
}

const round = (s) => Math.round(s * 1e6) / 1e6

/** `fiemap_floor FILE --serve`, started once: `map()` asks it for one map and resolves with its answer. */
function floorServer (bin, file) {
  const child = require('node:child_process').spawn(bin, [file, '--serve'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const waiting = []
  let buf = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (d) => {
    buf += d
    let i
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      waiting.shift().resolve(JSON.parse(line))
    }
  })
  child.on('exit', (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`${bin} exited with ${code}`))
  })
  return {
    map: () => new Promise((resolve, reject) => {
      waiting.push({ resolve, reject })
      child.stdin.write('\n')
    }),
    close: () => child.stdin.end(),
  }
}

async function main () {
  const [cmd, ...rest] = process.argv.slice(2)
  const files = []
  let iterations = 1
  let method
  let fsync = false
  let prepare = true
  let floor
  let floorOut
  let table = false
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]
    if (a === '--iterations') iterations = Number(rest[++i])
    else if (a === '--method') method = rest[++i]
    else if (a === '--fsync') fsync = true
    else if (a === '--table') table = true
    else if (a === '--no-prepare') prepare = false
    else if (a === '--floor') floor = rest[++i]
    else if (a === '--floor-out') floorOut = rest[++i]
    else if (!a.startsWith('--')) files.push(a)
    else usage()
  }
  if (!(iterations >= 1) || !floor !== !floorOut) usage()

  const times = []
  if (cmd === 'map' && files.length === 1) {
    let m
    let n = 0
    const floorTimes = []
    const floorCpu = []
    const cpu = []
    const server = floor && floorServer(floor, files[0])
    for (let i = 0; i < iterations; i++) {
      if (server) {
        const fl = await server.map()
        floorTimes.push(fl.time)
        floorCpu.push(fl.cpu)
      }
      const c = process.cpuUsage()
      const t = performance.now()
      // --table: mapTable(), the extents as typed arrays instead of one object each.
      m = await (table ? sk.mapTable : sk.map)(files[0], method ? { method } : undefined)
      // Inside the timing: reading the last extent, so that a map() which built its extents
      // lazily would pay for them here too.
      n = table ? m.count : m.extents.length
      const last = table ? m.lengths[n - 1] : m.extents[n - 1]?.length
      if (n > 0 && !(last > 0)) throw new Error('map(): empty last extent')
      times.push((performance.now() - t) / 1000)
      const d = process.cpuUsage(c) // all of this process's threads: main, libuv worker, GC
      cpu.push((d.user + d.system) / 1e6)
    }
    if (server) {
      server.close()
      fs.appendFileSync(floorOut, JSON.stringify({ extents: n, times: floorTimes.map(round), cpu: floorCpu.map(round) }) + '\n')
    }
    console.log(JSON.stringify({ extents: n, method: m.method, times: times.map(round), cpu: cpu.map(round) }))
  } else if (cmd === 'copy' && files.length === 2) {
    const [src, dst] = files
    let r
    for (let i = 0; i < iterations; i++) {
      if (prepare) {
        fs.rmSync(dst, { force: true })
        require('node:child_process').execFileSync('sync')
      }
      const t = performance.now()
      r = await sk.copy(src, dst, method ? { method } : undefined)
      if (fsync) {
        const fd = fs.openSync(dst, 'r+')
        fs.fsyncSync(fd)
        fs.closeSync(fd)
      }
      times.push((performance.now() - t) / 1000)
    }
    console.log(JSON.stringify({ bytesCopied: r.bytesCopied, size: r.size, method: r.method, fsync, times: times.map(round) }))
  } else {
    usage()
  }
}

main().catch((e) => {
  console.error(`js.cjs: ${e && e.stack ? e.stack : e}`)
  process.exit(1)
})
