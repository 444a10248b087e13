// Benchmark helper: the JS API on the same work as the Rust examples (used by bench/run).
//
//   node bench/js.cjs map FILE [--iterations N]
//   node bench/js.cjs copy SRC DST [--iterations N] [--method M] [--fsync] [--no-prepare]
//
// Times each `await map(...)` / `await copy(...)` in process with performance.now() and
// prints one JSON line, shaped like the Rust examples' output. For copy, every iteration
// first (untimed) removes DST and runs `sync`, exactly as crates/sparse-copy's bench_copy
// does; `--fsync` adds an fsync of DST to the timed part. CommonJS and no other imports on
// the hot path, so a whole-process timing adds as little as possible to Node's start-up.
'use strict'
const path = require('node:path')
const fs = require('node:fs')
const sk = require(process.env.SPARSEKIT_BENCH_MODULE || path.join(__dirname, '..', 'dist'))

function usage () {
  console.error('usage: js.cjs map FILE [--iterations N] | copy SRC DST [--iterations N] [--method M] [--fsync] [--no-prepare]')
  process.exit(2)
}

const round = (s) => Math.round(s * 1e6) / 1e6

async function main () {
  const [cmd, ...rest] = process.argv.slice(2)
  const files = []
  let iterations = 1
  let method
  let fsync = false
  let prepare = true
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]
    if (a === '--iterations') iterations = Number(rest[++i])
    else if (a === '--method') method = rest[++i]
    else if (a === '--fsync') fsync = true
    else if (a === '--no-prepare') prepare = false
    else if (!a.startsWith('--')) files.push(a)
    else usage()
  }
  if (!(iterations >= 1)) usage()

  const times = []
  if (cmd === 'map' && files.length === 1) {
    let m
    let n = 0
    for (let i = 0; i < iterations; i++) {
      const t = performance.now()
      m = await sk.map(files[0], method ? { method } : undefined)
      // Inside the timing: reading the last extent, so that a map() which built its extents
      // lazily would pay for them here too.
      n = m.extents.length
      if (n > 0 && !(m.extents[n - 1].length > 0)) throw new Error('map(): empty last extent')
      times.push((performance.now() - t) / 1000)
    }
    console.log(JSON.stringify({ extents: n, method: m.method, times: times.map(round) }))
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
