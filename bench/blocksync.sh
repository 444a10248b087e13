#!/usr/bin/env bash
# Delta sync benchmark (issue #11), all rows in ONE run on the same data:
#
#   SHA3-512 of 128 KiB blocks, one core and per CPU second: each sparsekit kernel this CPU
#   runs (avx2x4: 4-way AVX2 Keccak; scalar: the sha3 crate) vs
#   OpenSSL (Python hashlib)
#   Same-run anchor (issue #26): with BLOCKCOPY=path/to/blockcopy.py, the Python blockcopy
#   pipeline (checksum | retrieve | save, three python3 processes) against sparsekit's
#   compatible pipeline and sync_files, on 1 GiB and 256 MiB, 1% of 128 KiB blocks changed,
#   same data, same hyperfine run; the ratios (blockcopy / sparsekit) of wall mean and of
#   CPU seconds (user + sys, which other load on the machine disturbs less) are printed.
#   Without BLOCKCOPY this section is skipped with a printed reason.
#   1 GiB random file, 1% of its 128 KiB blocks changed, whole local pipeline:
#     sparsekit checksum | retrieve | save (three processes, pipes)   [bench_sync example]
#     sparsekit sync_files (one process, three threads over pipes)    [bench_sync example]
#     the same with the --blake3 extension (BLAKE3 instead of SHA3-512; sparsekit on both
#     sides), with and without --holes, in one process and as three processes
#     rsync --inplace --no-whole-file
#     with BASELINE=path/to/an/older/bench_sync: its compatible pipeline and sync_files
#     --blake3 in the same run
#   4 GiB image, 90% holes (410 MiB of data in 64 runs), 1% of its data blocks changed:
#     compatible mode vs --holes vs --holes --blake3 (sync_files) vs rsync
#   Every run starts from the same modified copy, written back to disk before the timing
#   (hyperfine --prepare 'cp ...; sync': save ends with an fsync of the destination, which
#   would otherwise wait for the copy's 1 GiB of dirty pages; rsync does not fsync). Each
#   command is checked once with cmp before the timing. The tables give wall time (mean,
#   min) and CPU time (user + system, mean) from hyperfine's JSON; the load (uptime) is
#   printed before and after.
#
# Usage: bench/blocksync.sh [--runs N] [--keep] [--boost] [--only SECTIONS]
#   --only   comma-separated subset of: hash, anchor, sync, sparse (default: all four)
#   --boost  run in a session of its own at autogroup nice -15 (root), so that builds
#            running at the same time take less of the 2 cores from the timed commands
# Environment: SPARSEKIT_BENCH_DIR (data folder, kept between runs; default a temp dir under
# /var/tmp, removed at the end), CARGO_TARGET_DIR, BASELINE (an older bench_sync binary),
# BLOCKCOPY (blockcopy.py, the anchor: https://github.com/messa/blockcopy).
# Needs: hyperfine, rsync, python3, cargo. Warm page cache.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUNS=5
KEEP=0
BOOST=0
ONLY=hash,anchor,sync,sparse
ARGS=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --boost) BOOST=1; shift ;;
    --only) ONLY=$2; shift 2 ;;
    -h|--help) sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/blocksync.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
if [ "$BOOST" = 1 ] && [ -z "${SPARSEKIT_BENCH_BOOSTED:-}" ]; then
  # A new session gets an autogroup of its own; its nice weighs it against the others.
  exec env SPARSEKIT_BENCH_BOOSTED=1 setsid --wait bash -c 'echo -15 > /proc/$$/autogroup && exec bash "$0" "$@"' "$0" "${ARGS[@]}"
fi
want() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
for t in hyperfine rsync python3 cargo cmp; do
  command -v "$t" >/dev/null || { echo "bench/blocksync.sh: '$t' not found" >&2; exit 1; }
done

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --release --example bench_sync -p sparsekit-blocksync >&2
B=$TARGET/release/examples/bench_sync

DIR=${SPARSEKIT_BENCH_DIR:-}
if [ -z "$DIR" ]; then
  DIR=$(mktemp -d /var/tmp/sparsekit-blocksync.XXXXXX)
  [ "$KEEP" = 1 ] || trap 'rm -rf "$DIR"' EXIT
fi
mkdir -p "$DIR"
# mkpair NAME MIB SEED: NAME.img random, NAME-dst0.img the same with 1% of its 128 KiB
# blocks changed (one byte each).
mkpair() {
  [ -f "$DIR/$1.img" ] && [ -f "$DIR/$1-dst0.img" ] && return
  echo "== data: $2 MiB random, 1% of the 128 KiB blocks changed ($1)" >&2
  head -c "$2M" /dev/urandom > "$DIR/$1.img"
  python3 - "$DIR/$1" "$3" <<'EOF'
import random, sys
p, seed = sys.argv[1], int(sys.argv[2])
bs = 131072
data = bytearray(open(p + '.img', 'rb').read())
n = len(data) // bs
random.seed(seed)
for b in random.sample(range(n), n // 100):
    data[b * bs + 5] ^= 0xff
open(p + '-dst0.img', 'wb').write(data)
EOF
}
mkpair src 1024 11
cat "$DIR/src.img" "$DIR/src-dst0.img" > /dev/null # warm the page cache

if want hash; then
echo "== SHA3-512, 128 KiB blocks" >&2
$B hash "$DIR/src.img"
python3 - "$DIR/src.img" <<'EOF'
import hashlib, sys, time
f = open(sys.argv[1], 'rb')
n = 0
t = time.monotonic()
while n < (256 << 20):
    b = f.read(131072)
    hashlib.sha3_512(b).digest()
    n += len(b)
print(f"sha3-512 128 KiB blocks: one core, OpenSSL via Python hashlib {n / (time.monotonic() - t) / 1048576:.0f} MiB/s")
EOF

# Per CPU second of the hashing thread (steadier on a loaded machine), alternated.
for r in 1 2 3; do
  $B hashcpu "$DIR/src.img"
  /usr/bin/python3 - "$DIR/src.img" <<'EOF'
import hashlib, sys, time
f = open(sys.argv[1], 'rb')
bufs = [f.read(131072) for _ in range(512)]
best = 0
for r in range(3):
    t = time.thread_time()
    for b in bufs:
        hashlib.sha3_512(b).digest()
    best = max(best, 64 / (time.thread_time() - t))
print(f"sha3-512 128 KiB blocks per CPU second: OpenSSL (python hashlib) {best:.0f} MiB/s")
EOF
done
fi

# Wall (mean, min) and CPU (user + system) of each command of a hyperfine JSON export.
table() {
  python3 - "$1" <<'EOF'
import json, sys
print("| command | wall mean | wall min | CPU (user + sys) |")
print("|---|---|---|---|")
for r in json.load(open(sys.argv[1]))["results"]:
    name = r["command"].replace("|", "\\|")
    print(f"| {name} | {r['mean']:.3f} s | {r['min']:.3f} s | "
          f"{r['user'] + r['system']:.2f} s ({r['user']:.2f} + {r['system']:.2f}) |")
EOF
}

# Ratios of a hyperfine JSON export: the first command (the anchor) over each other one.
ratios() {
  python3 - "$1" <<'EOF'
import json, sys
rs = json.load(open(sys.argv[1]))["results"]
a = rs[0]
cpu = lambda r: r["user"] + r["system"]
for r in rs[1:]:
    print(f"{a['command']} / {r['command']}: wall mean {a['mean'] / r['mean']:.2f}x, "
          f"wall min {a['min'] / r['min']:.2f}x, CPU {cpu(a) / cpu(r):.2f}x")
EOF
}

if want anchor; then
  if [ -z "${BLOCKCOPY:-}" ]; then
    echo "== SKIP same-run blockcopy anchor: BLOCKCOPY=path/to/blockcopy.py not given"
  elif [ ! -f "$BLOCKCOPY" ]; then
    echo "== SKIP same-run blockcopy anchor: BLOCKCOPY=$BLOCKCOPY is not a file"
  else
    mkpair a256 256 13
    for name in src a256; do
      S=$DIR/$name.img D=$DIR/$name-dst.img
      cat "$S" "$DIR/$name-dst0.img" > /dev/null
      echo "== same-run anchor: $(($(stat -c %s "$S") >> 20)) MiB, 1% of blocks changed"
      PY="python3 $BLOCKCOPY"
      CMDS=(
        'blockcopy.py checksum | retrieve | save' "sh -c '$PY checksum $D | $PY retrieve $S | $PY save $D'"
        'sparsekit checksum | retrieve | save' "sh -c '$B checksum $D | $B retrieve $S | $B save $D'"
        'sparsekit sync_files (one process)' "$B files $S $D"
      )
      HF=()
      for ((i = 0; i < ${#CMDS[@]}; i += 2)); do
        cp "$DIR/$name-dst0.img" "$D"
        sh -c "${CMDS[i + 1]}" >/dev/null
        cmp "$S" "$D" || { echo "bench/blocksync.sh: '${CMDS[i + 1]}' left the files different" >&2; exit 1; }
        HF+=(-n "${CMDS[i]}" "${CMDS[i + 1]}")
      done
      uptime
      hyperfine -N --runs "$RUNS" --prepare "sh -c 'cp $DIR/$name-dst0.img $D && sync'" \
        --export-json "$DIR/anchor-$name.json" "${HF[@]}" >&2
      uptime
      table "$DIR/anchor-$name.json"
      ratios "$DIR/anchor-$name.json"
      rm -f "$D"
    done
  fi
fi

if want sync; then
echo "== 1 GiB, 1% of blocks changed" >&2
S=$DIR/src.img D=$DIR/dst.img
pipe() { echo "$1 checksum $2 $D | $1 retrieve $2 $S | $1 save $2 $D"; }
CMDS=(
  'sparsekit checksum | retrieve | save' "sh -c '$(pipe "$B" "")'"
  'sparsekit sync_files (one process)' "$B files $S $D"
  'sparsekit sync_files --blake3' "$B files --blake3 $S $D"
  'sparsekit sync_files --blake3 --holes' "$B files --blake3 --holes $S $D"
  'sparsekit checksum | retrieve | save, --blake3 --holes' "sh -c '$(pipe "$B" "--blake3 --holes")'"
  'rsync --inplace --no-whole-file' "rsync --inplace --no-whole-file $S $D"
)
if [ -n "${BASELINE:-}" ]; then
  CMDS+=(
    'baseline checksum | retrieve | save' "sh -c '$(pipe "$BASELINE" "")'"
    'baseline sync_files --blake3' "$BASELINE files --blake3 $S $D"
  )
fi
# Each command once, checked, outside the timing.
HF=()
for ((i = 0; i < ${#CMDS[@]}; i += 2)); do
  cp "$DIR/src-dst0.img" "$D"
  sh -c "${CMDS[i + 1]}" >/dev/null
  cmp "$S" "$D" || { echo "bench/blocksync.sh: '${CMDS[i + 1]}' left the files different" >&2; exit 1; }
  HF+=(-n "${CMDS[i]}" "${CMDS[i + 1]}")
done
uptime
hyperfine -N --runs "$RUNS" --prepare "sh -c 'cp $DIR/src-dst0.img $D && sync'" \
  --export-json "$DIR/sync.json" "${HF[@]}" >&2
uptime
table "$DIR/sync.json"
fi

if want sparse; then
echo "== 4 GiB image, 90% holes, 1% of data blocks changed" >&2
SP=$DIR/sparse-src.img DP=$DIR/sparse-dst.img
if [ ! -f "$SP" ] || [ ! -f "$DIR/sparse-dst0.img" ]; then
  python3 - "$DIR" <<'EOF'
import os, random, sys
d = sys.argv[1]
bs, size = 131072, 4 << 30
random.seed(12)
run = (410 << 20) // 64 // bs * bs
starts = sorted(random.sample(range(0, size // run), 64))
with open(d + '/sparse-src.img', 'wb') as f, open(d + '/sparse-dst0.img', 'wb') as g:
    for s in starts:
        data = bytearray(os.urandom(run))
        f.seek(s * run); f.write(data)
        for b in random.sample(range(run // bs), max(1, run // bs // 100)):
            data[b * bs + 3] ^= 0xff
        g.seek(s * run); g.write(data)
    f.truncate(size); g.truncate(size)
EOF
fi
for flags in "" "--holes" "--holes --blake3"; do
  cp --sparse=always "$DIR/sparse-dst0.img" "$DP"
  $B files $flags "$SP" "$DP" >/dev/null
  cmp "$SP" "$DP" || { echo "bench/blocksync.sh: files $flags left the images different" >&2; exit 1; }
done
uptime
hyperfine -N --runs "$RUNS" --prepare "sh -c 'cp --sparse=always $DIR/sparse-dst0.img $DP && sync'" \
  --export-json "$DIR/sparse.json" \
  -n 'sync_files, compatible (holes read and hashed)' "$B files $SP $DP" \
  -n 'sync_files --holes' "$B files --holes $SP $DP" \
  -n 'sync_files --holes --blake3' "$B files --holes --blake3 $SP $DP" \
  -n 'rsync --inplace --no-whole-file' "rsync --inplace --no-whole-file $SP $DP" >&2
uptime
table "$DIR/sparse.json"
fi
