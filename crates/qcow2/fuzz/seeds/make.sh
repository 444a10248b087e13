#!/bin/sh
# Seed corpus for the `read` fuzz target: small qcow2 images of every kind, made by qemu-img.
# Usage: sh seeds/make.sh corpus/read
set -eu
out=${1:-corpus/read}
mkdir -p "$out"
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
cd "$t"
qemu-img create -q -f qcow2 -o cluster_size=4k a.qcow2 256k
qemu-io -f qcow2 -c 'write -P 1 0 8k' -c 'write -z 16k 4k' -c 'write -P 2 200k 4k' a.qcow2 >/dev/null
qemu-img snapshot -c s a.qcow2
yes abc | head -c 20000 > r; truncate -s 64k r
qemu-img convert -c -O qcow2 -o cluster_size=4k r b.qcow2
qemu-img convert -c -O qcow2 -o cluster_size=4k,compression_type=zstd r c.qcow2
qemu-img create -q -f qcow2 -o cluster_size=16k,extended_l2=on d.qcow2 128k
qemu-io -f qcow2 -c 'write -P 1 1k 2k' -c 'write -z 40k 1k' d.qcow2 >/dev/null
qemu-img create -q -f qcow2 -o cluster_size=512,compat=0.10 e.qcow2 64k
qemu-io -f qcow2 -c 'write -P 1 0 3k' -c 'write -P 2 40k 1k' e.qcow2 >/dev/null
qemu-img create -q -f qcow2 -o cluster_size=4k f.qcow2 64k
qemu-img bitmap --add f.qcow2 b0
cd - >/dev/null
cp "$t"/*.qcow2 "$out"/
