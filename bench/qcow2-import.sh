#!/bin/sh
# qcow2 import (writing a qcow2 image from a raw disk) against `qemu-img convert -O qcow2`,
# in one run on the same data: an ext4 file system image of SIZE_GB holding the files of
# DATA_DIRS (real, compressible data: /usr/share and /usr/include by default), written
# uncompressed, with zlib (`-c`) and with zstd (`-c -o compression_type=zstd`). Both tools
# leave the new file to writeback (no fsync) and read through the page cache, warm.
# Then the streamed export (`export SRC > /dev/null`) against reading the data once.
# Usage: bench/qcow2-import.sh [DIR]   (env: ROUNDS=3 SIZE_GB=4 MODES="none zlib zstd"
#        DATA_DIRS="/usr/share /usr/include")
# Prints per-mode medians (seconds), qemu-img time / ours (> 1: we are faster), the
# medians of CPU seconds (user + system, all threads: on a shared machine the wall-clock
# ratio depends on how many threads each tool runs, the CPU ratio does not), and the
# output sizes (ours / qemu-img's). Our outputs are checked with qemu-img compare, and
# the compressed ones are checked byte-identical between 1 thread and all threads.
set -eu
ROUNDS=${ROUNDS:-3}
SIZE_GB=${SIZE_GB:-4}
DATA_DIRS=${DATA_DIRS:-/usr/share /usr/include}
MODES=${MODES:-none zlib zstd}
DIR=${1:-/var/tmp/sparsekit-bench-qcow2-import}
. "$(dirname "$0")/lib.sh"
bench_init sparsekit-qcow2 qcow2_import "$DIR"

if [ ! -f src.img ]; then
  rm -rf root && mkdir root
  for d in $DATA_DIRS; do cp -a "$d" root/ 2>/dev/null || true; done
  truncate -s "${SIZE_GB}G" src.img
  mkfs.ext4 -q -F -d root src.img
  rm -rf root
fi
data=$(du -k src.img | cut -f1)
echo "src.img: ${SIZE_GB} GiB, $((data / 1024)) MiB allocated; $ROUNDS rounds, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
cat src.img > /dev/null

printf '%-6s %9s %9s %9s %9s %9s %9s %13s %13s %10s\n' mode ours_s qemu_s qemu/ours ours_cpu qemu_cpu cpu_ratio ours_bytes qemu_bytes size_ratio
for mode in $MODES; do
  : > t.ours; : > t.qemu; : > c.ours; : > c.qemu
  r=0
  while [ $r -lt "$ROUNDS" ]; do
    for who in ours qemu; do
      rm -f out.$who.qcow2
      t0=$(now)
      if [ $who = ours ]; then /usr/bin/time -f '%U + %S' -o cpu "$SK" import src.img out.ours.qcow2 $mode 2>/dev/null
      else
        case $mode in
          none) /usr/bin/time -f '%U + %S' -o cpu qemu-img convert -O qcow2 src.img out.qemu.qcow2 ;;
          zlib) /usr/bin/time -f '%U + %S' -o cpu qemu-img convert -c -O qcow2 src.img out.qemu.qcow2 ;;
          zstd) /usr/bin/time -f '%U + %S' -o cpu qemu-img convert -c -O qcow2 -o compression_type=zstd src.img out.qemu.qcow2 ;;
        esac
      fi
      t1=$(now)
      echo "$t1 - $t0" | bc >> t.$who
      bc < cpu >> c.$who
    done
    r=$((r + 1))
  done
  qemu-img compare -q -f raw src.img out.ours.qcow2 || { echo "$mode: our image differs from the source"; exit 1; }
  qemu-img check -q out.ours.qcow2 || { echo "$mode: qemu-img check failed"; exit 1; }
  if [ $mode != none ]; then
    "$SK" import src.img out.one.qcow2 $mode 1 2>/dev/null
    cmp -s out.one.qcow2 out.ours.qcow2 || { echo "$mode: 1 thread and $(nproc) threads differ"; exit 1; }
    rm -f out.one.qcow2
  fi
  o=$(median < t.ours); q=$(median < t.qemu)
  oc=$(median < c.ours); qc=$(median < c.qemu)
  ob=$(stat -c %s out.ours.qcow2); qb=$(stat -c %s out.qemu.qcow2)
  printf '%-6s %9.3f %9.3f %9.2f %9.2f %9.2f %9.2f %13d %13d %10.4f\n' $mode "$o" "$q" "$(echo "$q / $o" | bc -l)" \
    "$oc" "$qc" "$(echo "$qc / $oc" | bc -l)" "$ob" "$qb" "$(echo "$ob / $qb" | bc -l)"
  echo "  load $(cut -d' ' -f1-3 /proc/loadavg)"
done

# The stream: all of it read to /dev/null, against reading the allocated data once.
: > t.export; : > t.read
r=0
while [ $r -lt "$ROUNDS" ]; do
  t0=$(now); "$SK" export src.img > /dev/null 2>&1; t1=$(now); echo "$t1 - $t0" | bc >> t.export
  t0=$(now); cp --sparse=always src.img /dev/null 2>/dev/null || cat src.img > /dev/null; t1=$(now); echo "$t1 - $t0" | bc >> t.read
  r=$((r + 1))
done
e=$(median < t.export); c=$(median < t.read)
printf 'export %9.3f s (reading the whole image once: %.3f s)\n' "$e" "$c"
rm -f out.ours.qcow2 out.qemu.qcow2 cpu c.ours c.qemu
