#!/usr/bin/env bash
# layout, sparsify and bmap-from-file-systems benchmarks (issue 21), all in ONE run:
#
#   layout of an 8 GiB ext4 with 20 000 files (a fifth deleted)  vs e2freefrag
#   layout of an 8 GiB XFS with the same files                   vs xfs_db -r -c 'freesp -s'
#   layout of an 8 GiB NTFS with 5 000 files (ntfs-3g)           vs ntfscluster -i
#   sparsify of the ext4 image (holes re-allocated before each run)
#                                          vs mount -o loop + fstrim + umount
#   bmap create --fs + bmap copy of a 4 GiB ext4 image written in full with 600 MiB used
#                                          vs bmaptool copy --nobmap of the same image
#
# Usage: bench/layout.sh [--runs N]      (root: mounts and loop devices)
# Environment: SPARSEKIT_BENCH_DIR (data folder, kept and reused; default
# /var/tmp/sparsekit-layout-bench). Prints a Markdown table for BENCHMARKS.md.
# Whole processes are timed by hyperfine (median, one warmup): `sparsekit` is the Node CLI
# (start-up included, about 0.25 s here), `layout` the crate's example binary (release).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUNS=5
[ "${1:-}" = --runs ] && RUNS=$2
[ "$(id -u)" -eq 0 ] || { echo "bench/layout.sh: needs root (mounts)" >&2; exit 2; }
for t in hyperfine e2freefrag xfs_db ntfscluster mkfs.ntfs mkfs.xfs fstrim bmaptool; do
  command -v "$t" >/dev/null || { echo "bench/layout.sh: $t is missing (scripts/setup)" >&2; exit 2; }
done
D=${SPARSEKIT_BENCH_DIR:-/var/tmp/sparsekit-layout-bench}
mkdir -p "$D"
cargo build -q --release -p sparsekit-layout --example layout
LAYOUT="$ROOT/target/release/examples/layout"
SK="node $ROOT/dist/cli.js"
[ -f dist/cli.js ] || { echo "bench/layout.sh: build first (npm run build)" >&2; exit 2; }

# 20 000 (or N) files of 1-32 KiB in 100 folders, then every fifth deleted.
fill() { # DIR COUNT
  /usr/bin/python3 - "$1" "$2" <<'PY'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(21)
blob = os.urandom(1 << 16)
for i in range(n):
    d = os.path.join(root, f"d{i % 100:02d}")
    os.makedirs(d, exist_ok=True)
    size = rnd.randint(1024, 32768)
    off = rnd.randint(0, len(blob) - size)
    with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
        f.write(blob[off:off + size])
for i in range(0, n, 5):
    os.unlink(os.path.join(root, f"d{i % 100:02d}", f"f{i:05d}"))
PY
}

make_fs() { # NAME MKFS MOUNT COUNT SIZE
  local img="$D/$1.img"
  [ -f "$img.done" ] && return
  rm -f "$img"; truncate -s "$5" "$img"
  $2 "$img" >/dev/null 2>&1
  local lo; lo=$(losetup -f --show "$img")
  mkdir -p "$D/mnt"
  $3 "$lo" "$D/mnt"
  fill "$D/mnt" "$4"
  umount "$D/mnt"; losetup -d "$lo"
  touch "$img.done"
}
make_fs ext4 "mkfs.ext4 -q -F" mount 20000 8G
make_fs xfs "mkfs.xfs -q -f" mount 20000 8G
make_fs ntfs "mkfs.ntfs -Q -F" "mount -t ntfs-3g" 5000 8G
if [ ! -f "$D/full.img.done" ]; then
  dd if=/dev/zero of="$D/full.img" bs=4M count=1024 status=none
  mkfs.ext4 -q -F -E nodiscard "$D/full.img"
  lo=$(losetup -f --show "$D/full.img"); mount "$lo" "$D/mnt"
  for i in $(seq 1 60); do head -c 10485760 /dev/urandom > "$D/mnt/big$i"; done
  umount "$D/mnt"; losetup -d "$lo"; sync
  touch "$D/full.img.done"
fi
sync

json() { hyperfine -N --style none --warmup 1 --runs "$RUNS" --export-json "$D/$1.json" "${@:2}" >/dev/null 2>&1 || hyperfine --style none --warmup 1 --runs "$RUNS" --export-json "$D/$1.json" "${@:2}" >/dev/null; }
median() { /usr/bin/python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results']; print(' '.join('%.4f' % x['median'] for x in r))" "$D/$1.json"; }

json ext4 "$LAYOUT $D/ext4.img" "$SK layout $D/ext4.img --json" "e2freefrag $D/ext4.img"
json xfs "$LAYOUT $D/xfs.img" "$SK layout $D/xfs.img --json" "xfs_db -r -c 'freesp -s' $D/xfs.img"
json ntfs "$LAYOUT $D/ntfs.img" "$SK layout $D/ntfs.img --json" "ntfscluster -i $D/ntfs.img"
# sparsify: before each run the image's holes are allocated again (fallocate, unwritten
# extents), so both sides deallocate the same free space.
cp --sparse=always "$D/ext4.img" "$D/sp.img"
hyperfine --style none --warmup 1 --runs "$RUNS" --export-json "$D/sparsify.json" \
  --prepare "fallocate -l 8G $D/sp.img && sync" \
  "$LAYOUT --sparsify $D/sp.img" \
  "$SK sparsify $D/sp.img" \
  "sh -c 'lo=\$(losetup -f --show $D/sp.img) && mount \$lo $D/mnt && fstrim $D/mnt && umount $D/mnt && losetup -d \$lo'" >/dev/null
e2fsck -fn "$D/sp.img" >/dev/null 2>&1 || { echo "bench/layout.sh: e2fsck failed on the sparsified image" >&2; exit 1; }
hyperfine --style none --warmup 1 --runs "$RUNS" --export-json "$D/flash.json" \
  --prepare "rm -f $D/dst1.img $D/full.fs.bmap; sync" --prepare "rm -f $D/dst2.img; sync" \
  "sh -c '$SK bmap create $D/full.img --fs -o $D/full.fs.bmap && $SK bmap copy $D/full.img $D/dst1.img --bmap $D/full.fs.bmap --create >/dev/null'" \
  "bmaptool -q copy --nobmap $D/full.img $D/dst2.img" >/dev/null
e2fsck -fn "$D/dst1.img" >/dev/null 2>&1 || { echo "bench/layout.sh: e2fsck failed on the flashed image" >&2; exit 1; }

read -r e_rs e_js e_tool <<<"$(median ext4)"
read -r x_rs x_js x_tool <<<"$(median xfs)"
read -r n_rs n_js n_tool <<<"$(median ntfs)"
read -r s_rs s_sk s_trim <<<"$(median sparsify)"
read -r f_sk f_bt <<<"$(median flash)"
r() { /usr/bin/python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }
cat <<EOT
Command: \`bench/layout.sh --runs $RUNS\`, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg).

| workload | sparsekit | anchor | ratio |
|---|---|---|---|
| layout, 8 GiB ext4, 20 000 files | example binary ${e_rs} s; CLI ${e_js} s | e2freefrag ${e_tool} s | $(r "$e_tool" "$e_rs")x (CLI $(r "$e_tool" "$e_js")x) |
| layout, 8 GiB XFS, 20 000 files | example binary ${x_rs} s; CLI ${x_js} s | xfs_db freesp -s ${x_tool} s | $(r "$x_tool" "$x_rs")x (CLI $(r "$x_tool" "$x_js")x) |
| layout, 8 GiB NTFS, 5 000 files | example binary ${n_rs} s; CLI ${n_js} s | ntfscluster -i ${n_tool} s | $(r "$n_tool" "$n_rs")x (CLI $(r "$n_tool" "$n_js")x) |
| sparsify the 8 GiB ext4 | example binary ${s_rs} s; CLI ${s_sk} s | mount -o loop + fstrim + umount ${s_trim} s | $(r "$s_trim" "$s_rs")x (CLI $(r "$s_trim" "$s_sk")x) |
| 4 GiB ext4 without holes, 600 MiB used, to a file | bmap create --fs + bmap copy ${f_sk} s | bmaptool copy --nobmap ${f_bt} s | $(r "$f_bt" "$f_sk")x |
EOT
