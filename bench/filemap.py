"""Time bmap-tools' Filemap (Debian's bmaptool 3.6 module) mapping a whole file.

    /usr/bin/python3 bench/filemap.py FILE [--iterations N] [--nosync]

Each iteration does what `bmaptool create` does to find the data: `Filemap.filemap(FILE)`
(open, fsync, FIEMAP probe; FilemapSeek where FIEMAP is missing) and then lists
`get_mapped_ranges(0, blocks_cnt)`. Filemap asks FIEMAP with FIEMAP_FLAG_SYNC on every
call (and fsyncs once on open); `--nosync` turns both off, to compare with a map that
does not sync. Prints one JSON line with the range count and the seconds per iteration.
"""
import json
import os
import sys
import time

from bmaptools import Filemap


def main():
    args = sys.argv[1:]
    iterations, nosync, path = 1, False, None
    while args:
        a = args.pop(0)
        if a == "--iterations":
            iterations = int(args.pop(0))
        elif a == "--nosync":
            nosync = True
        elif path is None and not a.startswith("--"):
            path = a
        else:
            sys.exit("usage: filemap.py FILE [--iterations N] [--nosync]")
    if path is None or iterations < 1:
        sys.exit("usage: filemap.py FILE [--iterations N] [--nosync]")
    if nosync:
        Filemap._FIEMAP_FLAG_SYNC = 0
        Filemap.os.fsync = lambda fd: None  # this process only
    times = []
    ranges = []
    kind = None
    for _ in range(iterations):
        t = time.perf_counter()
        fm = Filemap.filemap(path)
        ranges = list(fm.get_mapped_ranges(0, fm.blocks_cnt))
        times.append(time.perf_counter() - t)
        kind = type(fm).__name__
        del fm
    print(json.dumps({"ranges": len(ranges), "class": kind, "sync": not nosync,
                      "times": [round(t, 6) for t in times]}))


if __name__ == "__main__":
    main()
