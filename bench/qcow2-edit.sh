#!/bin/sh
# qcow2 editing against qemu-img, in one run on the same data: commit of an overlay
# holding DATA_MB of data into a SIZE_GB base, create, resize and rebase -u.
# Usage: bench/qcow2-edit.sh [DIR]   (env: ROUNDS=3 SIZE_GB=4 DATA_MB=1024 REPEAT=20)
# Prints per-operation medians (seconds) and qemu-img time / ours (> 1: we are faster).
# Each commit round starts from fresh copies of the same base and overlay; the bases
# both tools produce are compared with qemu-img compare.
set -eu
ROUNDS=${ROUNDS:-3}
SIZE_GB=${SIZE_GB:-4}
DATA_MB=${DATA_MB:-1024}
REPEAT=${REPEAT:-20}
DIR=${1:-/var/tmp/sparsekit-bench-qcow2-edit}
. "$(dirname "$0")/lib.sh"
bench_init sparsekit-qcow2 qcow2 "$DIR"

# The images: a base with data in its first quarter, an overlay with DATA_MB of data
# spread over the disk (64 MiB writes, every other 64 MiB region, half over the base's data).
if [ ! -f base.qcow2 ] || [ ! -f ov.qcow2 ]; then
  rm -f base.qcow2 ov.qcow2
  qemu-img create -q -f qcow2 base.qcow2 "${SIZE_GB}G"
  n=$((SIZE_GB * 1024 / 4 / 64)); cmds=""; i=0
  while [ $i -lt $n ]; do cmds="$cmds -c 'write -P 0x11 $((i * 64))M 64M'"; i=$((i + 1)); done
  eval qemu-io -f qcow2 $cmds base.qcow2 >/dev/null
  qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2
  n=$((DATA_MB / 64)); cmds=""; i=0
  while [ $i -lt $n ]; do cmds="$cmds -c 'write -P 0x$((i % 200 + 20)) $((i * 128 + 64))M 64M'"; i=$((i + 1)); done
  eval qemu-io -f qcow2 $cmds ov.qcow2 >/dev/null
fi
echo "base: $(du -h base.qcow2 | cut -f1) on disk, overlay: $(du -h ov.qcow2 | cut -f1); $ROUNDS rounds, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"

: > commit.ours; : > commit.qemu
r=0
while [ $r -lt "$ROUNDS" ]; do
  for who in ours qemu; do
    rm -rf "$who"; mkdir "$who"
    cp --sparse=always base.qcow2 ov.qcow2 "$who"/
    sync
    t0=$(now)
    if [ $who = ours ]; then "$SK" commit "$who/ov.qcow2" >/dev/null 2>&1; else qemu-img commit -q "$who/ov.qcow2"; fi
    t1=$(now)
    echo "$t1 - $t0" | bc >> commit.$who
  done
  qemu-img compare -q ours/base.qcow2 qemu/base.qcow2 || { echo "bases differ"; exit 1; }
  qemu-img check -q ours/base.qcow2
  qemu-img check -q ours/ov.qcow2
  r=$((r + 1))
done

# Small operations, REPEAT times each per round, alternated.
: > create.ours; : > create.qemu; : > resize.ours; : > resize.qemu; : > rebase.ours; : > rebase.qemu
r=0
while [ $r -lt "$ROUNDS" ]; do
  for who in ours qemu; do
    t0=$(now); i=0
    while [ $i -lt "$REPEAT" ]; do
      if [ $who = ours ]; then "$SK" create c.$who.qcow2 $((100 << 30)) 2>/dev/null; else qemu-img create -q -f qcow2 c.$who.qcow2 100G; fi
      i=$((i + 1))
    done
    t1=$(now); echo "($t1 - $t0) / $REPEAT" | bc -l >> create.$who
    cp --sparse=always ov.qcow2 r.$who.qcow2
    sync
    t0=$(now); i=0
    while [ $i -lt "$REPEAT" ]; do
      s=$(( (SIZE_GB + 1 + i) << 30 ))
      if [ $who = ours ]; then "$SK" resize r.$who.qcow2 $s 2>/dev/null; else qemu-img resize -q r.$who.qcow2 $s; fi
      i=$((i + 1))
    done
    t1=$(now); echo "($t1 - $t0) / $REPEAT" | bc -l >> resize.$who
    t0=$(now); i=0
    while [ $i -lt "$REPEAT" ]; do
      if [ $who = ours ]; then "$SK" rebase r.$who.qcow2 base.qcow2 qcow2 2>/dev/null; else qemu-img rebase -u -b base.qcow2 -F qcow2 r.$who.qcow2; fi
      i=$((i + 1))
    done
    t1=$(now); echo "($t1 - $t0) / $REPEAT" | bc -l >> rebase.$who
    qemu-img check -q r.$who.qcow2
  done
  r=$((r + 1))
done

printf '%-8s %12s %12s %8s\n' op ours_s qemu_s qemu/ours
for op in commit create resize rebase; do
  o=$(median < $op.ours); q=$(median < $op.qemu)
  printf '%-8s %12.4f %12.4f %8.2f\n' $op "$o" "$q" "$(echo "$q / $o" | bc -l)"
done
