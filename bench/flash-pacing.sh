#!/usr/bin/env bash
# Where the time of a flash to several loop devices goes (issue 13, multi-drive pacing).
# One run, interleaved, on the same image (2*MIB MiB with MIB MiB of data, with a bmap):
#   bmap copy to one device, flash to one device, flash to three devices (no read-back),
# once with the loop devices' backing files on disk (BACKING_DIR, default /var/tmp) and
# once on tmpfs (/dev/shm): the loop devices all write through one page cache and one
# disk, so three of them cost three times the kernel copies and the disk writes of one,
# whatever the writer does. Prints wall time and the process's user+sys CPU (kernel work
# of the loop workers and the flusher threads is not in it) and the load average.
# Needs root (losetup). Usage: bench/flash-pacing.sh [DATA_MIB] (default 256).
# SPARSEKIT_CLI selects the build (default: node dist/cli.js of this checkout).
set -euo pipefail
MIB=${1:-256}
CLI=${SPARSEKIT_CLI:-"node $(cd "$(dirname "$0")/.." && pwd)/dist/cli.js"}
ROUNDS=${ROUNDS:-2}
W=$(mktemp -d "${BACKING_DIR:-/var/tmp}/sparsekit-bench-pacing.XXXXXX")
S=$(mktemp -d /dev/shm/sparsekit-bench-pacing.XXXXXX)
DEVS=()
cleanup() {
  for d in "${DEVS[@]}"; do losetup -d "$d" 2>/dev/null || true; done
  rm -rf "$W" "$S"
}
trap cleanup EXIT
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
m() {
  local label=$1; shift
  drop
  /usr/bin/time -f "%e %U %S" -o "$W/time" "$@" > /dev/null
  read -r wall user sys < "$W/time"
  printf '%-34s %6.2f s wall  %5.2f s cpu (user %.2f, sys %.2f)  load %s\n' "$label" "$wall" \
    "$(echo "$user + $sys" | bc)" "$user" "$sys" "$(cut -d' ' -f1 /proc/loadavg)"
}

IMG=$W/os.img
truncate -s $((2 * MIB))M "$IMG"
for ((i = 0; i < MIB / 8; i++)); do
  head -c 8M /dev/urandom | dd of="$IMG" bs=1M seek=$((i * 16)) conv=notrunc status=none
done
$CLI bmap create "$IMG" -o "$IMG.bmap"
echo "image: $((2 * MIB)) MiB with $MIB MiB of data; $(nproc) CPUs"
for where in "$W" "$S"; do
  DEVS=()
  for i in 0 1 2; do
    truncate -s $((2 * MIB))M "$where/dev$i"
    DEVS+=("$(losetup -f --show "$where/dev$i")")
  done
  echo "backing files in $where ($(df --output=fstype "$where" | tail -1)): ${DEVS[*]}"
  for ((r = 0; r < ROUNDS; r++)); do
    m "bmap copy, one device" $CLI bmap copy "$IMG" "${DEVS[0]}"
    m "flash, one device" $CLI flash "$IMG" "${DEVS[0]}" --no-read-back
    m "flash, three devices" $CLI flash "$IMG" "${DEVS[@]}" --no-read-back
  done
  for d in "${DEVS[@]}"; do losetup -d "$d"; done
  DEVS=()
done
