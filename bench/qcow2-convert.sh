#!/bin/sh
# qcow2 convert to a sparse raw file against `qemu-img convert -O raw`, in one run on the
# same data: a SIZE_GB image holding DATA_MB of data (64 MiB writes spread over the disk),
# and the same image compressed. Both tools leave the raw file to writeback (no fsync),
# both read and write through the page cache (qemu-img's default: no -C copy offload,
# -S 4k zero detection, as ours). The source is read once before timing (page cache warm).
# Usage: bench/qcow2-convert.sh [DIR]   (env: ROUNDS=5 SIZE_GB=4 DATA_MB=1024)
# Prints per-image medians (seconds) and qemu-img time / ours (> 1: we are faster); the
# outputs of both tools are compared byte for byte.
set -eu
ROUNDS=${ROUNDS:-5}
SIZE_GB=${SIZE_GB:-4}
DATA_MB=${DATA_MB:-1024}
DIR=${1:-/var/tmp/sparsekit-bench-qcow2-convert}
. "$(dirname "$0")/lib.sh"
bench_init sparsekit-qcow2 qcow2 "$DIR"

if [ ! -f d.qcow2 ] || [ ! -f c.qcow2 ]; then
  rm -f d.qcow2 c.qcow2
  qemu-img create -q -f qcow2 d.qcow2 "${SIZE_GB}G"
  n=$((DATA_MB / 64)); step=$((SIZE_GB * 1024 / n)); cmds=""; i=0
  while [ $i -lt $n ]; do cmds="$cmds -c 'write -P 0x$((i % 200 + 17)) $((i * step))M 64M'"; i=$((i + 1)); done
  eval qemu-io -f qcow2 $cmds d.qcow2 >/dev/null
  qemu-img convert -c -O qcow2 d.qcow2 c.qcow2
fi
echo "$(du -h d.qcow2 | cut -f1) data; $ROUNDS rounds, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

printf '%-12s %10s %10s %9s\n' image ours_s qemu_s qemu/ours
for img in d c; do
  cat $img.qcow2 > /dev/null
  : > t.ours; : > t.qemu
  r=0
  while [ $r -lt "$ROUNDS" ]; do
    for who in ours qemu; do
      rm -f out.$who.raw
      t0=$(now)
      if [ $who = ours ]; then "$SK" convert $img.qcow2 out.$who.raw >/dev/null 2>&1
      else qemu-img convert -O raw $img.qcow2 out.$who.raw; fi
      t1=$(now)
      echo "$t1 - $t0" | bc >> t.$who
    done
    cmp -s out.ours.raw out.qemu.raw || { echo "outputs differ"; exit 1; }
    r=$((r + 1))
  done
  o=$(median < t.ours); q=$(median < t.qemu)
  name=plain; [ $img = c ] && name=compressed
  printf '%-12s %10.3f %10.3f %9.2f\n' $name "$o" "$q" "$(echo "$q / $o" | bc -l)"
done
rm -f out.ours.raw out.qemu.raw
