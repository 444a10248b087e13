#!/usr/bin/env bash
# One xz image to three drives at the pace of one (issue 26), in ONE run on the same data:
#   sparsekit flash IMG.xz DEV0 DEV1 DEV2   vs   sparsekit flash IMG.xz DEV0
# (goal: three within 1.3x the time of one). The drives are loop devices over files in a
# tmpfs, so the one disk under file-backed loops is not what is measured; the image is a
# 1 GiB disk image holding ~512 MiB of /usr files (compressible, as an OS image is),
# compressed with xz -T0 -1 (multi-block: decoded on every core). Each flash reads back
# what it wrote (the default) and once without (--no-read-back).
# Usage: bench/many-drives.sh [--runs N]   (root: loop devices, tmpfs mount)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=3
[ "${1:-}" = --runs ] && RUNS=$2
[ "$(id -u)" -eq 0 ] || { echo "bench/many-drives.sh: needs root (loop devices)" >&2; exit 2; }
for t in hyperfine xz mkfs.ext4 losetup; do
  command -v "$t" >/dev/null || { echo "bench/many-drives.sh: $t is missing" >&2; exit 2; }
done
[ -f "$ROOT/dist/cli.js" ] || { echo "bench/many-drives.sh: build first (npm run build)" >&2; exit 2; }
SK="node $ROOT/dist/cli.js"
W=$(mktemp -d /var/tmp/sparsekit-many.XXXXXX)
T=$W/tmpfs
mkdir -p "$T" "$W/mnt"
DEVS=()
cleanup() {
  mountpoint -q "$W/mnt" && umount "$W/mnt"
  for d in "${DEVS[@]}"; do losetup -d "$d" 2>/dev/null || true; done
  mountpoint -q "$T" && umount "$T"
  rm -rf "$W"
}
trap cleanup EXIT
mount -t tmpfs -o size=4G tmpfs "$T"

# The image: ext4 over 1 GiB with ~512 MiB of /usr files.
IMG=$W/os.img
truncate -s 1G "$IMG"
mkfs.ext4 -q -F "$IMG"
mount -o loop "$IMG" "$W/mnt"
/usr/bin/python3 - "$W/mnt" <<'PY'
import os, shutil, sys
dst, budget = sys.argv[1], 512 << 20
for src in ("/usr/lib", "/usr/share"):
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            if not os.path.isfile(p) or os.path.islink(p) or os.path.getsize(p) > budget:
                continue
            t = os.path.join(dst, os.path.relpath(p, "/usr"))
            os.makedirs(os.path.dirname(t), exist_ok=True)
            shutil.copyfile(p, t)
            budget -= os.path.getsize(p)
            if budget <= 0:
                sys.exit(0)
PY
umount "$W/mnt"
xz -T0 -1 -k -c "$IMG" > "$IMG.xz"
rm "$IMG"
for i in 0 1 2; do
  truncate -s 1G "$T/dev$i"
  DEVS+=("$(losetup -f --show "$T/dev$i")")
done

hyperfine --style none --warmup 1 --runs "$RUNS" --export-json "$W/r.json" \
  "$SK flash $IMG.xz ${DEVS[0]}" \
  "$SK flash $IMG.xz ${DEVS[*]}" \
  "$SK flash $IMG.xz ${DEVS[0]} --no-read-back" \
  "$SK flash $IMG.xz ${DEVS[*]} --no-read-back" \
  "xz -T0 -dc $IMG.xz" >/dev/null
read -r one three one_n three_n xzd <<<"$(/usr/bin/python3 -c "import json,sys; print(' '.join('%.3f' % r['median'] for r in json.load(open(sys.argv[1]))['results']))" "$W/r.json")"
r() { /usr/bin/python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }
cat <<EOT
Command: \`bench/many-drives.sh --runs $RUNS\`, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p')), load $(cut -d' ' -f1-3 /proc/loadavg). 1 GiB ext4 image with ~512 MiB of /usr files as xz ($(( $(stat -c %s "$IMG.xz") >> 20 )) MiB); tmpfs-backed loop devices; medians of $RUNS after one warmup.

| | one drive | three drives | three / one (goal ≤ 1.3x) |
|---|---|---|---|
| \`sparsekit flash IMG.xz\` (read back) | ${one} s | ${three} s | $(r "$three" "$one")x |
| \`sparsekit flash IMG.xz --no-read-back\` | ${one_n} s | ${three_n} s | $(r "$three_n" "$one_n")x |
| \`xz -T0 -dc IMG.xz > /dev/null\` (decoding alone) | ${xzd} s | | |
EOT
