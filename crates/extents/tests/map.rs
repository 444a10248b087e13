//! Extent maps on real filesystems (ext4, XFS, btrfs, tmpfs, a loop block device), checked
//! against `filefrag -e`, against plain `lseek` and against the file contents.

#![allow(clippy::single_range_in_vec_init)]

use sparsekit_io::ErrorInfo;
use std::fs::{self, File};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::Instant;

use sparsekit_extents::{map_path, map_path_with, Extent, MapOptions, Method};
use sparsekit_io::{Cancel, Control};
use sparsekit_testfs::{make_cases, pattern, run, Fs, LoopDev, Mount};

const K: u64 = 1024;
const M: u64 = 1024 * 1024;

/// `filefrag -e` parsed into byte extents, clipped to the file size and merged with the
/// same rule as the crate (adjacent, same unwritten/shared flags).
fn filefrag(path: &Path, size: u64) -> Vec<Extent> {
    let out = run("filefrag", &["-e", path.to_str().unwrap()]).unwrap();
    // "File size of F is N (B blocks of S bytes)", or "(1 block of S bytes)".
    let bs: u64 = out
        .split(" bytes)")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no block size in filefrag output:\n{out}"));
    let mut v: Vec<Extent> = Vec::new();
    for line in out.lines() {
        let fields: Vec<&str> = line.split(':').map(str::trim).collect();
        if fields.len() < 4 || fields[0].parse::<u64>().is_err() {
            continue;
        }
        let start: u64 = fields[1]
            .split("..")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let len: u64 = fields[3].parse().unwrap();
        let flags = fields.last().unwrap();
        let (offset, end) = (start * bs, ((start + len) * bs).min(size));
        if offset >= end {
            continue;
        }
        let e = Extent {
            offset,
            length: end - offset,
            unwritten: flags.contains("unwritten"),
            shared: flags.contains("shared"),
        };
        match v.last_mut() {
            Some(l)
                if l.offset + l.length == e.offset
                    && l.unwritten == e.unwritten
                    && l.shared == e.shared =>
            {
                l.length += e.length
            }
            _ => v.push(e),
        }
    }
    v
}

/// Data ranges found with plain lseek calls, the reference for the SEEK method.
fn lseek_truth(path: &Path) -> Vec<Range<u64>> {
    let f = File::open(path).unwrap();
    let size = f.metadata().unwrap().len() as i64;
    let mut out = Vec::new();
    let mut pos = 0i64;
    while pos < size {
        // SAFETY: plain syscalls on a valid descriptor.
        let d = unsafe { libc::lseek(f.as_raw_fd(), pos, libc::SEEK_DATA) };
        if d < 0 {
            break;
        }
        let h = unsafe { libc::lseek(f.as_raw_fd(), d, libc::SEEK_HOLE) };
        out.push(d as u64..h as u64);
        pos = h;
    }
    out
}

/// Every byte outside `data` must read as zero; every byte inside a non-prealloc data
/// range is non-zero (the pattern has no zero bytes).
fn check_contents(path: &Path, data: &[Range<u64>]) {
    let bytes = fs::read(path).unwrap();
    let mut pos = 0usize;
    for r in data {
        assert!(
            bytes[pos..r.start as usize].iter().all(|&b| b == 0),
            "{path:?}: non-zero byte in hole before {r:?}"
        );
        pos = r.end as usize;
    }
    assert!(
        bytes[pos..].iter().all(|&b| b == 0),
        "{path:?}: non-zero byte in trailing hole"
    );
}

fn map(path: &Path, method: Method) -> sparsekit_extents::Result<sparsekit_extents::ExtentMap> {
    map_path(
        path,
        &MapOptions {
            method,
            ..Default::default()
        },
    )
}

fn clip(ranges: &[Range<u64>], w: &Range<u64>) -> Vec<Range<u64>> {
    ranges
        .iter()
        .map(|r| r.start.max(w.start)..r.end.min(w.end))
        .filter(|r| !r.is_empty())
        .collect()
}

fn check_fs(fs: Fs, test: &str) {
    let Some(mnt) = Mount::new(fs, test) else {
        return;
    };
    let has_fiemap = !matches!(fs, Fs::Tmpfs(_));
    for case in make_cases(&mnt.path) {
        let p = mnt.join(case.name);
        let size = fs::metadata(&p).unwrap().len();
        let ctx = format!("{fs:?}/{}", case.name);

        let auto = map(&p, Method::Auto).unwrap();
        assert_eq!(
            auto.method,
            if has_fiemap {
                Method::Fiemap
            } else {
                Method::Seek
            },
            "{ctx}"
        );
        assert_eq!(auto.size, size, "{ctx}");
        assert!(auto.block_size >= 512, "{ctx}");
        assert_eq!(auto.data_ranges(), case.data, "{ctx}: auto");

        let seek = map(&p, Method::Seek).unwrap();
        assert_eq!(seek.method, Method::Seek);
        assert_eq!(seek.data_ranges(), case.data, "{ctx}: seek");
        assert_eq!(seek.data_ranges(), lseek_truth(&p), "{ctx}: seek vs lseek");
        assert!(seek.extents.iter().all(|e| !e.unwritten && !e.shared));

        if has_fiemap {
            let fm = map(&p, Method::Fiemap).unwrap();
            assert_eq!(fm.extents, filefrag(&p, size), "{ctx}: fiemap vs filefrag");
            assert_eq!(
                fm.data_ranges(),
                seek.data_ranges(),
                "{ctx}: fiemap vs seek"
            );
            let unwritten: Vec<_> = fm
                .extents
                .iter()
                .filter(|e| e.unwritten)
                .map(|e| e.offset..e.end())
                .collect();
            if fs == Fs::Xfs {
                // XFS speculative preallocation beyond EOF becomes unwritten extents inside
                // the file once it is extended (holes_mix, trailing_hole): extra unwritten
                // ranges are legal there, missing ones are not.
                for u in &case.unwritten {
                    assert!(
                        unwritten
                            .iter()
                            .any(|r| r.start <= u.start && u.end <= r.end),
                        "{ctx}: {u:?} not unwritten"
                    );
                }
                if unwritten != case.unwritten {
                    eprintln!("{ctx}: XFS extra unwritten ranges {unwritten:?}");
                }
            } else {
                assert_eq!(unwritten, case.unwritten, "{ctx}: unwritten");
            }
        } else {
            let e = map(&p, Method::Fiemap).unwrap_err();
            assert_eq!(e.code(), "ERR_SPARSEKIT_UNSUPPORTED", "{ctx}: {e}");
            assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "{ctx}: {e}");
            assert_eq!(e.path(), Some(p.as_path()));
        }

        let none = map(&p, Method::None).unwrap();
        assert_eq!(none.method, Method::None);
        let all: Vec<Range<u64>> = if size > 0 { vec![0..size] } else { vec![] };
        assert_eq!(none.data_ranges(), all, "{ctx}: none");

        // Windows: the map of a window is the full map clipped to it.
        for (start, length) in [
            (0, Some(1)),
            (4 * K, Some(70 * K)),
            (100, None),
            (M + 7, Some(M)),
            (size, None),
        ] {
            if start > size {
                continue;
            }
            let w = start..length.map_or(size, |l| (start + l).min(size));
            for method in [Method::Auto, Method::Seek] {
                let m = map_path(
                    &p,
                    &MapOptions {
                        start,
                        length,
                        method,
                    },
                )
                .unwrap();
                assert_eq!(m.window, w, "{ctx}");
                assert_eq!(
                    m.data_ranges(),
                    clip(&case.data, &w),
                    "{ctx}: window {w:?} {method}"
                );
                assert!(m
                    .extents
                    .iter()
                    .all(|e| e.offset >= w.start && e.end() <= w.end));
            }
        }
        let e = map_path(
            &p,
            &MapOptions {
                start: size + 1,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_OUT_OF_RANGE");

        // Last: reading caches zero pages over unwritten extents, and ext4's SEEK_DATA
        // then reports those ranges as data (FIEMAP still says unwritten).
        check_contents(&p, &case.data);
    }
}

#[test]
fn ext4_maps() {
    check_fs(Fs::Ext4, "ext4_maps");
}

#[test]
fn xfs_maps() {
    check_fs(Fs::Xfs, "xfs_maps");
}

#[test]
fn btrfs_maps() {
    check_fs(Fs::Btrfs, "btrfs_maps");
}

#[test]
fn tmpfs_maps() {
    check_fs(Fs::Tmpfs(64), "tmpfs_maps");
}

/// 100 000 extents (1 KiB written every 2 KiB on 1 KiB-block ext4): mapped in full by
/// FIEMAP (many buffer refills) and SEEK, equal to filefrag, and fast.
#[test]
fn many_extents() {
    let Some(mnt) = Mount::new(Fs::Ext4Small, "many_extents") else {
        return;
    };
    let p = mnt.join("many");
    let f = File::create(&p).unwrap();
    let chunk = pattern(1024, 9);
    let n = 100_000u64;
    for i in 0..n {
        f.write_all_at(&chunk, i * 2048).unwrap();
    }
    f.set_len(n * 2048).unwrap();
    drop(f);
    let t = Instant::now();
    let fm = map(&p, Method::Fiemap).unwrap();
    let t_fiemap = t.elapsed();
    let t = Instant::now();
    let sk = map(&p, Method::Seek).unwrap();
    let t_seek = t.elapsed();
    let t = Instant::now();
    let again = map(&p, Method::Fiemap).unwrap();
    let t_clean = t.elapsed();
    assert_eq!(again, fm);
    eprintln!(
        "many_extents: fiemap {t_fiemap:?} (with writeback), {t_clean:?} (clean), seek {t_seek:?}"
    );
    assert_eq!(fm.extents.len(), n as usize);
    let want: Vec<Range<u64>> = (0..n).map(|i| i * 2048..i * 2048 + 1024).collect();
    assert_eq!(fm.data_ranges(), want);
    assert_eq!(sk.data_ranges(), want);
    assert_eq!(fm.extents, filefrag(&p, n * 2048));
    assert!(t_fiemap.as_secs() < 10, "FIEMAP took {t_fiemap:?}");
    // A window in the middle starts and ends inside extents.
    let m = map_path(
        &p,
        &MapOptions {
            start: 1000 * 2048 + 512,
            length: Some(2048 * 10),
            method: Method::Fiemap,
        },
    )
    .unwrap();
    assert_eq!(m.extents.len(), 11);
    assert_eq!(m.extents[0].offset, 1000 * 2048 + 512);
    assert_eq!(m.extents[0].length, 512);

    // Regression (issue 8.4): a cancel between FIEMAP batches (and lseek runs) stops the
    // mapping there, reported progress short of the end.
    for method in [Method::Fiemap, Method::Seek] {
        let cancel = Cancel::new();
        let c2 = cancel.clone();
        let mut seen = Vec::new();
        let e = map_path_with(
            &p,
            &MapOptions {
                method,
                ..Default::default()
            },
            &mut Control::new(cancel, |pr| {
                seen.push(pr.done);
                c2.cancel();
            }),
        )
        .unwrap_err();
        assert!(
            matches!(e, sparsekit_extents::Error::Aborted),
            "{method}: {e}"
        );
        assert_eq!(e.code(), "ERR_SPARSEKIT_ABORTED");
        assert_eq!(seen.len(), 1, "{method}");
        assert!(seen[0] > 0 && seen[0] < n * 2048, "{method}: {seen:?}");
    }
}

/// Reflinked copies are reported shared by FIEMAP (and SEEK, which cannot know, agrees on
/// the data).
fn check_shared(fs: Fs, test: &str) {
    let Some(mnt) = Mount::new(fs, test) else {
        return;
    };
    make_cases(&mnt.path);
    let (a, b) = (mnt.join("holes_mix"), mnt.join("clone"));
    if let Err(e) = run(
        "cp",
        &["--reflink=always", a.to_str().unwrap(), b.to_str().unwrap()],
    ) {
        panic!("{test}: reflink failed on {fs:?}: {e}");
    }
    for p in [&a, &b] {
        let m = map(p, Method::Fiemap).unwrap();
        assert!(!m.extents.is_empty());
        // Written extents are shared; XFS's unwritten speculative preallocation is not.
        assert!(
            m.extents.iter().all(|e| e.shared || e.unwritten),
            "{test}: {p:?} {:?}",
            m.extents
        );
        assert!(m.extents.iter().any(|e| e.shared));
        assert_eq!(m.data_ranges(), map(p, Method::Seek).unwrap().data_ranges());
        assert_eq!(m.extents, filefrag(p, m.size));
    }
}

#[test]
fn xfs_shared() {
    check_shared(Fs::Xfs, "xfs_shared");
}

#[test]
fn btrfs_shared() {
    check_shared(Fs::Btrfs, "btrfs_shared");
}

/// A block device: size from BLKGETSIZE64, no FIEMAP, SEEK only a stub -> `none`.
#[test]
fn block_device() {
    let Some(dev) = LoopDev::new(3 * M, 0xAB, "block_device") else {
        return;
    };
    let m = map(&dev.dev, Method::Auto).unwrap();
    assert_eq!((m.size, m.method), (3 * M, Method::None));
    assert_eq!(m.data_ranges(), vec![0..3 * M]);
    assert!(m.block_size >= 512);
    let e = map(&dev.dev, Method::Fiemap).unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_UNSUPPORTED", "{e}");
    assert!(e.raw_os_error().is_some(), "{e}");
    eprintln!("block_device: forced fiemap -> {e}");
    let e = map(&dev.dev, Method::Seek).unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_UNSUPPORTED", "{e}");
    let m = map_path(
        &dev.dev,
        &MapOptions {
            start: M,
            length: Some(10),
            method: Method::None,
        },
    )
    .unwrap();
    assert_eq!(m.data_ranges(), vec![M..M + 10]);
}
