#!/usr/bin/env bash
# The `sparsekit` CLI as whole processes (issue 26), in ONE hyperfine run on the same data:
#
#   start-up: `node -e 0` (the floor), `sparsekit --version`, `sparsekit --help`,
#             `sparsekit layout` of a small ext4 image, `sparsekit map` of a small file
#   copy:     `sparsekit copy` of bench/run's 4 GiB file with 512 MiB of data
#             vs `cp --sparse=always`, and the API in a process (`node bench/js.cjs copy`)
#   map:      `sparsekit map --json` of bench/run's 100 000-extent file (output discarded)
#             vs the API in a process (`node bench/js.cjs map`)
#
# Usage: bench/cli.sh [--runs N] [--rounds R] [--baseline DIR] [--wait-idle S]
#   --runs N        timed runs per command after one warmup; default 20
#   --rounds R      time the copy rows in R rounds of N/R runs each, the commands taking
#                   turns, so that load that comes and goes hits all alike; default 1
#   --wait-idle S   first wait up to S seconds for the CPUs to be less than 25% busy
#   --baseline DIR  also time DIR/dist/cli.js on the same rows (another checkout or build of
#                   sparsekit, e.g. the commit before a change), interleaved in the same run
#
# Environment: SPARSEKIT_BENCH_DIR (data folder, kept and reused; default
# /var/tmp/sparsekit-cli-bench). NODE_EXTRA_CA_CERTS is unset as in bench/run (with it Node
# 20 parses the CA bundle at every start). The copy rows remove the destination and run
# `sync` before every run (untimed), as bench/run does. Needs hyperfine, mkfs.ext4 (no root:
# the image is a plain file) and a built checkout (`npm run build` or `npm run build:test`).
# Writes hyperfine's JSON and Markdown into the data folder and prints the Markdown tables.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUNS=20
BASE=
WAIT_IDLE=0
ROUNDS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --baseline) BASE=$(cd "$2" && pwd); shift 2 ;;
    --wait-idle) WAIT_IDLE=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/cli.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
for t in hyperfine mkfs.ext4 cp node; do
  command -v "$t" >/dev/null || { echo "bench/cli.sh: $t is missing (scripts/setup)" >&2; exit 2; }
done
[ -f dist/cli.js ] || { echo "bench/cli.sh: build first (npm run build)" >&2; exit 2; }
[ -z "$BASE" ] || [ -f "$BASE/dist/cli.js" ] || { echo "bench/cli.sh: $BASE/dist/cli.js is missing" >&2; exit 2; }
unset NODE_EXTRA_CA_CERTS

D=${SPARSEKIT_BENCH_DIR:-/var/tmp/sparsekit-cli-bench}
mkdir -p "$D"
/usr/bin/python3 bench/mkdata.py "$D" >&2
SRC=$D/sparse4g.img
FRAG=$D/frag.img
DST=$D/dst.img
SMALL=$D/small-ext4.img
if [ ! -f "$SMALL" ]; then
  truncate -s 64M "$SMALL"
  mkfs.ext4 -q -F -E nodiscard "$SMALL"
fi
SMALLFILE=$D/small.bin
[ -f "$SMALLFILE" ] || head -c 1M /dev/urandom > "$SMALLFILE"
trap 'rm -f "$DST"' EXIT

# name, command: the same rows for this checkout and the baseline.
rows() { # PREFIX CLI
  local p=$1 cli=$2
  STARTUP+=(-n "${p}--version" "node $cli --version")
  STARTUP+=(-n "${p}--help" "node $cli --help")
  STARTUP+=(-n "${p}layout" "node $cli layout '$SMALL'")
  STARTUP+=(-n "${p}map" "node $cli map '$SMALLFILE'")
  COPY+=(-n "${p}copy" "node $cli copy '$SRC' '$DST'")
  MAP+=(-n "${p}map --json (100 000 extents)" "node $cli map '$FRAG' --json")
}
STARTUP=(-n "node -e 0" "node -e 0")
COPY=(-n "cp --sparse=always" "cp --sparse=always '$SRC' '$DST'")
MAP=(-n "node bench/js.cjs map (API)" "node $ROOT/bench/js.cjs map '$FRAG'")
rows "sparsekit " "$ROOT/dist/cli.js"
[ -z "$BASE" ] || rows "baseline " "$BASE/dist/cli.js"
COPY+=(-n "node bench/js.cjs copy (API)" "node $ROOT/bench/js.cjs copy '$SRC' '$DST' --no-prepare")

# Each command once, untimed: all succeed, and every copier's output equals the source.
for cli in "$ROOT/dist/cli.js" ${BASE:+"$BASE/dist/cli.js"}; do
  node "$cli" --version >/dev/null
  node "$cli" layout "$SMALL" >/dev/null
  node "$cli" map "$SMALLFILE" >/dev/null
  rm -f "$DST"
  node "$cli" copy "$SRC" "$DST" >/dev/null
  cmp "$SRC" "$DST"
done
rm -f "$DST"
cp --sparse=always "$SRC" "$DST"
cmp "$SRC" "$DST"

# CPU busy share over a second, from /proc/stat (as bench/run).
busy() {
  local a b
  read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ < /proc/stat
  sleep 1
  read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ < /proc/stat
  a=$((b1 + b2 + b3 + b4 + b5 + b6 + b7 + b8 - a1 - a2 - a3 - a4 - a5 - a6 - a7 - a8))
  b=$((b4 + b5 - a4 - a5))
  echo $(( a > 0 ? (100 * (a - b)) / a : 0 ))
}
deadline=$((SECONDS + WAIT_IDLE))
while [ "$SECONDS" -lt "$deadline" ] && [ "$(busy)" -ge 25 ]; do sleep 4; done
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load before: $(cut -d' ' -f1-3 /proc/loadavg); CPUs $(busy)% busy; $(nproc) CPUs; $(node --version); commit $(git rev-parse --short HEAD)" | tee "$D/facts.txt"
HF=(hyperfine --style basic --warmup 1 --runs "$RUNS")
"${HF[@]}" --export-json "$D/startup.json" --export-markdown "$D/startup.md" "${STARTUP[@]}" >&2
for r in $(seq "$ROUNDS"); do
  hyperfine --style basic --warmup 1 --runs $(((RUNS + ROUNDS - 1) / ROUNDS)) --prepare "rm -f '$DST'; sync" \
    --export-json "$D/copy-$r.json" "${COPY[@]}" >&2
done
"${HF[@]}" --export-json "$D/map.json" --export-markdown "$D/map.md" "${MAP[@]}" >&2
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$D/facts.txt"
# Median wall clock (over every run of every round) and mean CPU (user + system) of each
# row, from hyperfine's JSON; a group's files are joined by '+'.
node -e '
const fs = require("fs")
for (const group of process.argv.slice(1)) {
  const rows = new Map()
  for (const f of group.split("+")) {
    for (const r of JSON.parse(fs.readFileSync(f, "utf8")).results) {
      const row = rows.get(r.command) ?? { times: [], cpu: [] }
      row.times.push(...r.times)
      row.cpu.push(r.user + r.system)
      rows.set(r.command, row)
    }
  }
  const ms = (s) => (s * 1000).toFixed(1) + " ms"
  const median = (a) => { const b = [...a].sort((x, y) => x - y); return b.length % 2 ? b[(b.length - 1) / 2] : (b[b.length / 2 - 1] + b[b.length / 2]) / 2 }
  console.log(`\n| command | median | min … max | n | CPU (user+sys, mean) |\n|---|---|---|---|---|`)
  for (const [name, r] of rows)
    console.log(`| ${name} | ${ms(median(r.times))} | ${ms(Math.min(...r.times))} … ${ms(Math.max(...r.times))} | ${r.times.length} | ${ms(r.cpu.reduce((a, b) => a + b) / r.cpu.length)} |`)
}' "$D/startup.json" "$(seq -f "$D/copy-%g.json" -s + "$ROUNDS")" "$D/map.json"
