"""Create the benchmark inputs of bench/run (any Python 3, standard library only).

    python3 bench/mkdata.py DIR

DIR/frag.img      800 000 000 bytes: 4 KiB of data every 8 KiB (100 000 data extents with
                  4 KiB holes between them, on a 4 KiB-block filesystem).
DIR/sparse4g.img  4 GiB: 64 runs of 8 MiB of data (512 MiB), one every 64 MiB, starting
                  28 MiB in, so the file begins and ends with a hole.

Data is random (never all-zero blocks, so `cp --sparse=always` cannot turn it into holes).
Files are written with pwrite, then fsync'ed; existing files of the right size are kept
when DIR/.stamp says they were made by this version of the script.
"""
import os
import sys

VERSION = "2"
FRAG_EXTENTS = 100_000
FRAG_STRIDE = 8192
FRAG_DATA = 4096
SPARSE_SIZE = 4 << 30
SPARSE_RUNS = 64
SPARSE_RUN = 8 << 20
SPARSE_STEP = 64 << 20
SPARSE_FIRST = 28 << 20


def nonzero_random(n):
    b = bytearray(os.urandom(n))
    # No 4 KiB block may be all zeros (astronomically unlikely anyway): force one byte.
    for i in range(0, n, 4096):
        b[i] |= 1
    return bytes(b)


def make_frag(path):
    pool = nonzero_random(1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, FRAG_EXTENTS * FRAG_STRIDE)
        for i in range(FRAG_EXTENTS):
            o = (i * FRAG_DATA) % len(pool)
            os.pwrite(fd, pool[o:o + FRAG_DATA], i * FRAG_STRIDE)
        os.fsync(fd)
    finally:
        os.close(fd)


def make_sparse(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, SPARSE_SIZE)
        for i in range(SPARSE_RUNS):
            os.pwrite(fd, nonzero_random(SPARSE_RUN), SPARSE_FIRST + i * SPARSE_STEP)
        os.fsync(fd)
    finally:
        os.close(fd)


def main():
    if len(sys.argv) == 2 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: mkdata.py DIR")
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    stamp = os.path.join(d, ".stamp")
    try:
        ok = open(stamp).read().strip() == VERSION
    except OSError:
        ok = False
    wanted = {
        "frag.img": (FRAG_EXTENTS * FRAG_STRIDE, make_frag),
        "sparse4g.img": (SPARSE_SIZE, make_sparse),
    }
    for name, (size, make) in wanted.items():
        p = os.path.join(d, name)
        if ok and os.path.exists(p) and os.path.getsize(p) == size:
            print(f"mkdata: keeping {p}", file=sys.stderr)
            continue
        print(f"mkdata: writing {p}", file=sys.stderr)
        make(p)
    with open(stamp, "w") as f:
        f.write(VERSION + "\n")


if __name__ == "__main__":
    main()
