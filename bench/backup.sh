#!/usr/bin/env bash
# Drive backup and restore (issue 23), all in ONE run on the same data:
#
#   backup of a 4 GiB drive (MBR, one ext4 partition, ~600 MiB of /usr files; the free
#   blocks hold stale random bytes, as a used card's do) to .img.zst
#       sparsekit backup DEV OUT.img.zst        (bmap and read-back verify on: the defaults)
#     vs dd if=DEV bs=4M | zstd -T0 > OUT       (whole drive)
#     vs partclone.ext4 -c of the ext4 partition alone (used blocks, no compression)
#   restore of that backup to a 4 GiB drive
#       sparsekit flash OUT.img.zst DEV2        (its bmap found beside it; read back)
#     vs dd of the whole raw image, conv=fsync
#
# The drives are loop devices over files on the disk (not tmpfs), opened with direct I/O,
# so the disk under them is what reads and writes cost; page caches are dropped before
# each run. Usage: bench/backup.sh [--runs N]   (root: loop devices, mkfs, mount)
# Environment: SPARSEKIT_BENCH_DIR (data folder, kept and reused; default
# /var/tmp/sparsekit-backup-bench). Prints a Markdown table for BENCHMARKS.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUNS=3
[ "${1:-}" = --runs ] && RUNS=$2
[ "$(id -u)" -eq 0 ] || { echo "bench/backup.sh: needs root (loop devices)" >&2; exit 2; }
for t in hyperfine zstd partclone.ext4 sfdisk mkfs.ext4 e2fsck losetup; do
  command -v "$t" >/dev/null || { echo "bench/backup.sh: $t is missing (apt-get install partclone zstd hyperfine)" >&2; exit 2; }
done
[ -f dist/cli.js ] || { echo "bench/backup.sh: build first (npm run build)" >&2; exit 2; }
SK="node $ROOT/dist/cli.js"
D=${SPARSEKIT_BENCH_DIR:-/var/tmp/sparsekit-backup-bench}
mkdir -p "$D/mnt"

loops=()
cleanup() {
  mountpoint -q "$D/mnt" && umount "$D/mnt"
  for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
}
trap cleanup EXIT
# attach FILE [OFFSET SIZE]: sets LO (partition devices are loops at the partition's offset:
# this kernel's loop partitions get no /dev node without udev).
attach() {
  if [ $# -gt 1 ]; then LO=$(losetup -f --show --direct-io=on -o "$2" --sizelimit "$3" "$1")
  else LO=$(losetup -f --show --direct-io=on "$1"); fi
  loops+=("$LO")
}
P1=$((2048 * 512))

if [ ! -f "$D/card.img.done" ]; then
  rm -f "$D/card.img"
  head -c 4G /dev/urandom > "$D/card.img"
  printf 'label: dos\nstart=2048, type=83\n' | sfdisk -q "$D/card.img"
  attach "$D/card.img" $P1 $(( (4 << 30) - P1 ))
  mkfs.ext4 -q -F -E nodiscard "$LO"
  mount "$LO" "$D/mnt"
  # ~600 MiB of real files (compressible, as an OS image is).
  /usr/bin/python3 - "$D/mnt" <<'PY'
import os, shutil, sys
dst, budget = sys.argv[1], 600 << 20
for src in ("/usr/lib", "/usr/share", "/usr/bin"):
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            if not os.path.isfile(p) or os.path.islink(p):
                continue
            size = os.path.getsize(p)
            if size > budget:
                continue
            t = os.path.join(dst, os.path.relpath(p, "/usr"))
            os.makedirs(os.path.dirname(t), exist_ok=True)
            shutil.copyfile(p, t)
            budget -= size
            if budget <= 0:
                sys.exit(0)
PY
  umount "$D/mnt"
  sync
  touch "$D/card.img.done"
fi
truncate -s 4G "$D/restore.img"
attach "$D/card.img"; SRC=$LO
attach "$D/card.img" $P1 $(( (4 << 30) - P1 )); SRC1=$LO
attach "$D/restore.img"; DST=$LO

drop='sync; echo 3 > /proc/sys/vm/drop_caches'
hyperfine --style none --warmup 0 --runs "$RUNS" --export-json "$D/backup.json" \
  --prepare "rm -f $D/out.img.zst $D/out.img.zst.bmap; $drop" \
  --prepare "rm -f $D/dd.img.zst; $drop" \
  --prepare "rm -f $D/pc.img; $drop" \
  "$SK backup $SRC $D/out.img.zst" \
  "sh -c 'dd if=$SRC bs=4M iflag=direct status=none | zstd -T0 -q > $D/dd.img.zst'" \
  "partclone.ext4 -q -c -s $SRC1 -o $D/pc.img" >/dev/null
# The raw image dd restores: the backup decompressed (same bytes as the drive up to the
# end of the last partition).
zstd -d -q -f "$D/out.img.zst" -o "$D/out.img"
hyperfine --style none --warmup 0 --runs "$RUNS" --export-json "$D/restore.json" \
  --prepare "$drop" --prepare "$drop" \
  "$SK flash $D/out.img.zst $DST" \
  "dd if=$D/out.img of=$DST bs=4M oflag=direct conv=fsync status=none" >/dev/null
# The restore by sparsekit, checked: the last run above was dd's, so flash once more.
$SK flash "$D/out.img.zst" "$DST" >/dev/null
attach "$D/restore.img" $P1 $(( (4 << 30) - P1 ))
e2fsck -fn "$LO" >/dev/null 2>&1 || { echo "bench/backup.sh: e2fsck failed on the restored drive" >&2; exit 1; }

median() { /usr/bin/python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results']; print(' '.join('%.3f' % x['median'] for x in r))" "$D/$1.json"; }
read -r b_sk b_dd b_pc <<<"$(median backup)"
read -r r_sk r_dd <<<"$(median restore)"
r() { /usr/bin/python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }
mib() { echo $(( $(stat -c %s "$1") >> 20 )); }
cat <<EOT
Command: \`bench/backup.sh --runs $RUNS\`, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p')), load $(cut -d' ' -f1-3 /proc/loadavg). 4 GiB loop device over a file on the disk, direct I/O; MBR + ext4 holding ~600 MiB of /usr files, free blocks stale random bytes; caches dropped before each run; medians of $RUNS.

| workload | sparsekit | anchor | ratio | output |
|---|---|---|---|---|
| backup to .img.zst (bmap + read-back verify) | \`sparsekit backup\` ${b_sk} s | \`dd bs=4M \| zstd -T0\` ${b_dd} s | $(r "$b_dd" "$b_sk")x | $(mib "$D/out.img.zst") MiB vs $(mib "$D/dd.img.zst") MiB |
| backup of the ext4 partition | (same) ${b_sk} s | \`partclone.ext4 -c\` ${b_pc} s (uncompressed) | $(r "$b_pc" "$b_sk")x | $(mib "$D/out.img.zst") MiB vs $(mib "$D/pc.img") MiB |
| restore to a 4 GiB drive (read back) | \`sparsekit flash out.img.zst\` ${r_sk} s | \`dd\` of the raw image, conv=fsync ${r_dd} s | $(r "$r_dd" "$r_sk")x | |
EOT
