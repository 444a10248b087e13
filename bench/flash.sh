#!/usr/bin/env bash
# Benchmarks of `sparsekit flash` (issue 13), one run each on the same data:
#  1. one image to three loop devices at once, against `sparsekit bmap copy` to one device
#     and three sequential `bmap copy`s (goal: the three-way flash within 1.3x of one copy);
#  2. HTTP streaming of an xz image (`sparsekit flash URL DEV`) against `curl URL | xz -dc > DEV`.
# Needs root (losetup), xz, curl, python3. Usage: bench/flash.sh [DATA_MIB] (default 1024).
# Read-back is off on both sides (bmap copy does not read back by default); both check the
# bmap's range checksums. Page cache is dropped before each run.
set -euo pipefail
MIB=${1:-1024}
CLI=${SPARSEKIT_CLI:-"node $(cd "$(dirname "$0")/.." && pwd)/dist/cli.js"}
W=$(mktemp -d /var/tmp/sparsekit-bench-flash.XXXXXX)
DEVS=()
SRV=
cleanup() {
  [ -n "$SRV" ] && kill "$SRV" 2>/dev/null || true
  for d in "${DEVS[@]}"; do losetup -d "$d" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
t() { local s=$(date +%s.%N); "$@" >/dev/null; echo "$(date +%s.%N) - $s" | bc; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# An image of 2*MIB MiB with MIB MiB of random data in 8 MiB runs every 16 MiB.
IMG=$W/os.img
truncate -s $((2 * MIB))M "$IMG"
for ((i = 0; i < MIB / 8; i++)); do
  head -c 8M /dev/urandom | dd of="$IMG" bs=1M seek=$((i * 16)) conv=notrunc status=none
done
$CLI bmap create "$IMG" -o "$IMG.bmap"
for i in 0 1 2; do
  truncate -s $((2 * MIB))M "$W/dev$i"
  DEVS+=("$(losetup -f --show "$W/dev$i")")
done
echo "image: $((2 * MIB)) MiB with $MIB MiB of data; destinations ${DEVS[*]}"

drop; ONE=$(t $CLI bmap copy "$IMG" "${DEVS[0]}")
drop; SEQ=$(t bash -c "for d in ${DEVS[*]}; do $CLI bmap copy '$IMG' \$d; done")
drop; MULTI=$(t $CLI flash "$IMG" "${DEVS[@]}" --no-read-back)
drop; ONE2=$(t $CLI bmap copy "$IMG" "${DEVS[0]}")
drop; MULTI2=$(t $CLI flash "$IMG" "${DEVS[@]}" --no-read-back)
drop; MULTIRB=$(t $CLI flash "$IMG" "${DEVS[@]}")
printf 'bmap copy to one device:              %6.2f s, again %6.2f s\n' "$ONE" "$ONE2"
printf 'three sequential bmap copies:         %6.2f s\n' "$SEQ"
printf 'flash to three devices at once:       %6.2f s, again %6.2f s  (%.2fx one copy, best of two each; goal <= 1.3x)\n' \
  "$MULTI" "$MULTI2" "$(echo "m=$MULTI; if ($MULTI2 < m) m=$MULTI2; o=$ONE; if ($ONE2 < o) o=$ONE2; m / o" | bc -l)"
printf 'flash to three, with read-back:       %6.2f s\n' "$MULTIRB"

# HTTP: the image's first quarter (whole, zeros included) as xz, from a local server
# (xz on random data is slow to make; a quarter keeps the script short).
head -c $((MIB / 2))M "$IMG" | xz -T0 -1 -c > "$W/os.img.xz"
(cd "$W" && exec python3 -m http.server 0 --bind 127.0.0.1 > "$W/http.log" 2>&1) &
SRV=$!
for _ in $(seq 50); do grep -q 'Serving HTTP' "$W/http.log" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$W/http.log" | head -1)
URL=http://127.0.0.1:$PORT/os.img.xz
drop; CURL=$(t bash -c "curl -s '$URL' | xz -dc > ${DEVS[0]} && sync")
drop; OURS=$(t $CLI flash "$URL" "${DEVS[0]}" --nobmap --no-read-back)
printf 'curl | xz -dc > device (+ sync):      %6.2f s\n' "$CURL"
printf 'sparsekit flash URL device:           %6.2f s  (%.2fx)\n' "$OURS" "$(echo "$OURS / $CURL" | bc -l)"
