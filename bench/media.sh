#!/usr/bin/env bash
# Issue 24's speed goals, each case run 3 times on the same data, medians and ratios:
#  1. only-changed re-flash (`flash A' DEV --only-changed`, the device holding A) against a
#     full bmap flash of A' (goal: >= 5x faster), with 1% of A's 4 KiB blocks changed
#     (every 100th block: 2 621 separate writes for a 1 GiB image);
#  2. a flash with `--sha256` against the same flash without it (goal: <= 3% slower);
#  3. what writing the first MiB last costs: the extra 1 MiB O_DIRECT write and fsync it
#     adds after the rest is synced, against the full flash.
# The floor of an only-changed re-flash is one read of the device: `dd iflag=direct bs=4M`
# of the same bytes is timed too, so the ratio to a full flash can be read as the device's
# write time over its read time (on an SD card reads are several times faster than writes;
# on a VM disk with a host write cache they may not be).
# The device is a loop device over a file on the real disk with --direct-io=on, so its reads
# and writes go to the disk (not the backing file's page cache, which would make writes
# nearly free). Caches are dropped before every timed run; the source is then read from
# disk too (SRC=warm reads it into the page cache first: the image just downloaded).
# Read-back is off on both sides; both check the bmap's range checksums.
# Needs root, losetup, python3 and an optimised addon (npm run build:test or build).
# Usage: bench/media.sh [DATA_MIB] (default 1024).
set -euo pipefail
MIB=${1:-1024}
. "$(dirname "$0")/lib.sh"
CLI=${SPARSEKIT_CLI:-"node $ROOT/dist/cli.js"}
SRC=${SRC:-cold}
W=$(mktemp -d /var/tmp/sparsekit-bench-media.XXXXXX)
DEV=
cleanup() {
  [ -n "$DEV" ] && losetup -d "$DEV" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
drop() {
  sync
  echo 3 > /proc/sys/vm/drop_caches
  if [ "$SRC" = warm ]; then cat "$@" > /dev/null; fi
}
# Seconds a command takes (its output discarded).
t() { local s; s=$(now); "$@" > /dev/null; echo "$(now) - $s" | bc; }

A=$W/a.img
B=$W/b.img
head -c $((MIB))M /dev/urandom > "$A"
/usr/bin/env python3 - "$A" "$B" <<'EOF'
import sys
a, b = sys.argv[1:]
data = bytearray(open(a, 'rb').read())
for blk in range(50, len(data) // 4096, 100):
    data[blk * 4096:(blk + 1) * 4096] = bytes(x ^ 0x5A for x in data[blk * 4096:(blk + 1) * 4096])
open(b, 'wb').write(data)
EOF
$CLI bmap create "$A" -o "$A.bmap" > /dev/null
$CLI bmap create "$B" -o "$B.bmap" > /dev/null
truncate -s $((MIB + 16))M "$W/dev"
DEV=$(losetup -f --show --direct-io=on "$W/dev")
CHANGED=$(( (MIB * 256 - 50 + 99) / 100 ))
echo "image: $MIB MiB, $CHANGED of its 4 KiB blocks changed; device $DEV (direct-io on a file on $(df --output=source "$W" | tail -1)); source $SRC"
$CLI flash "$A" "$DEV" --no-read-back > /dev/null

FULL=() CHG=() PLAIN=() SHA=() HEAD=() READ=()
SUM=$(sha256sum "$B" | cut -d' ' -f1)
for i in 1 2 3; do
  $CLI flash "$A" "$DEV" --no-read-back --only-changed > /dev/null
  drop "$B" "$B.bmap"; FULL+=("$(t $CLI flash "$B" "$DEV" --no-read-back)")
  $CLI flash "$A" "$DEV" --no-read-back --only-changed > /dev/null
  drop "$B" "$B.bmap"; CHG+=("$(t $CLI flash "$B" "$DEV" --no-read-back --only-changed)")
  drop "$B" "$B.bmap"; PLAIN+=("$(t $CLI flash "$B" "$DEV" --no-read-back)")
  drop "$B" "$B.bmap"; SHA+=("$(t $CLI flash "$B" "$DEV" --no-read-back --sha256 "$SUM")")
  drop; READ+=("$(t dd if="$DEV" of=/dev/null bs=4M count=$((MIB / 4)) iflag=direct status=none)")
  HEAD+=("$(t dd if="$B" of="$DEV" bs=1M count=1 oflag=direct conv=notrunc,fsync status=none)")
done
# Only-changed wrote what it should: the device equals A'.
cmp -n $((MIB * 1048576)) "$B" "$DEV"
med() { printf '%s\n' "$@" | median; }
full=$(med "${FULL[@]}") chg=$(med "${CHG[@]}") plain=$(med "${PLAIN[@]}") sha=$(med "${SHA[@]}") head=$(med "${HEAD[@]}") read=$(med "${READ[@]}")
printf 'full bmap flash of A%s:              %6.2f s  (runs %s)\n' "'" "$full" "${FULL[*]}"
printf 'only-changed re-flash A -> A%s:      %6.2f s  (runs %s)  %.2fx faster (goal >= 5x)\n' "'" "$chg" "${CHG[*]}" "$(echo "$full / $chg" | bc -l)"
printf 'device read floor (dd iflag=direct): %6.2f s  (runs %s)  only-changed takes %.2fx it\n' "$read" "${READ[*]}" "$(echo "$chg / $read" | bc -l)"
printf 'flash without --sha256:              %6.2f s  (runs %s)\n' "$plain" "${PLAIN[*]}"
printf 'flash with --sha256:                 %6.2f s  (runs %s)  %+.1f%% (goal <= 3%%)\n' "$sha" "${SHA[*]}" "$(echo "($sha / $plain - 1) * 100" | bc -l)"
printf 'first MiB last (1 MiB write + fsync): %6.3f s  (runs %s)  %.1f%% of the full flash\n' "$head" "${HEAD[*]}" "$(echo "$head / $full * 100" | bc -l)"
echo "load average: $(uptime | sed 's/.*load average: //')"
