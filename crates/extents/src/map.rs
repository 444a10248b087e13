use sparsekit_io::errno;
use sparsekit_io::sys::{FileTypeExt, MetadataExt};
use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use sparsekit_io::{Control, IoError, Phase};

use crate::method::Method;
use crate::sys::{self, FiemapBuf, RawExtent};
use crate::{Error, Result};

/// Extents asked for per `FS_IOC_FIEMAP` call: 2048 × 56 bytes = 112 KiB, so a file of
/// 100 000 extents is mapped in about 50 calls.
pub const FIEMAP_BATCH: u32 = 2048;

impl FromStr for Method {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => Method::Auto,
            "fiemap" => Method::Fiemap,
            "seek" => Method::Seek,
            "none" => Method::None,
            _ => {
                return Err(Error::InvalidArg {
                    name: "method",
                    value: s.to_owned(),
                })
            }
        })
    }
}

/// What [`map_file`] maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapOptions {
    /// First byte of the window (default 0). Past the end of the file is an
    /// [`Error::OutOfRange`]; exactly at the end gives an empty map.
    pub start: u64,
    /// Window length; `None` means to the end of the file. A window running past the end
    /// is clipped at the end.
    pub length: Option<u64>,
    /// The mapping method; a forced method that does not work fails with
    /// [`Error::Unsupported`].
    pub method: Method,
}

/// A range of data bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Extent {
    /// First byte.
    pub offset: u64,
    /// Length in bytes (never 0).
    pub length: u64,
    /// Allocated but never written (fallocate): reads as zeros. Only FIEMAP reports these;
    /// SEEK_DATA usually reports them as holes.
    pub unwritten: bool,
    /// The blocks are shared with another file (reflink, snapshot). Only FIEMAP knows.
    pub shared: bool,
}

impl Extent {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}

/// The data extents of a window of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtentMap {
    /// Size of the file (of the device, for a block device) in bytes.
    pub size: u64,
    /// The filesystem block size (`FIGETBSZ`, else `st_blksize`).
    pub block_size: u64,
    /// The method that produced the map (never [`Method::Auto`]).
    pub method: Method,
    /// The window that was mapped, clipped at the end of the file.
    pub window: Range<u64>,
    /// Data ranges in bytes: sorted, adjacent ones with the same flags merged, clipped to
    /// [`window`](Self::window).
    pub extents: Vec<Extent>,
}

impl ExtentMap {
    /// The byte ranges that hold written data, treating unwritten (preallocated) extents
    /// as holes because they read as zeros: what a copy must move. Sorted and merged,
    /// whatever the shared flag. FIEMAP and SEEK give the same answer here.
    pub fn data_ranges(&self) -> Vec<Range<u64>> {
        let mut out: Vec<Range<u64>> = Vec::new();
        for e in self.extents.iter().filter(|e| !e.unwritten) {
            match out.last_mut() {
                Some(last) if last.end >= e.offset => last.end = last.end.max(e.end()),
                _ => out.push(e.offset..e.end()),
            }
        }
        out
    }

    /// The complement of [`data_ranges`](Self::data_ranges) inside the window: holes and
    /// unwritten ranges, all of which read as zeros.
    pub fn hole_ranges(&self) -> Vec<Range<u64>> {
        complement(&self.data_ranges(), self.window.clone())
    }

    /// Total bytes of [`data_ranges`](Self::data_ranges).
    pub fn data_bytes(&self) -> u64 {
        self.data_ranges().iter().map(|r| r.end - r.start).sum()
    }
}

/// The parts of `within` not covered by the sorted, disjoint `ranges`.
fn complement(ranges: &[Range<u64>], within: Range<u64>) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut pos = within.start;
    for r in ranges {
        if r.start > pos {
            out.push(pos..r.start.min(within.end));
        }
        pos = pos.max(r.end);
        if pos >= within.end {
            break;
        }
    }
    if pos < within.end {
        out.push(pos..within.end);
    }
    out.retain(|r| !r.is_empty());
    out
}

/// Map the data extents of the file or block device at `path`. Needs read access to the
/// file only (no write access to its folder).
pub fn map_path(path: &Path, opts: &MapOptions) -> Result<ExtentMap> {
    map_path_with(path, opts, &mut Control::none())
}

/// [`map_path`] with cancellation and progress: `ctl` gets [`Phase::Map`] reports (bytes of
/// the window covered) after every FIEMAP batch or lseek step, and a cancel stops the
/// mapping there with [`Error::Aborted`]. Opening never blocks (a FIFO with no writer is
/// refused as [`Error::NotAFile`] at once).
pub fn map_path_with(path: &Path, opts: &MapOptions, ctl: &mut Control<'_>) -> Result<ExtentMap> {
    let file = sparsekit_io::sys::open(path, false, false, false)
        .map_err(|e| Error::Io(IoError::new("open", e).with_path(path)))?;
    map_file_with(&file, opts, true, ctl).map_err(|e| e.with_path(path))
}

/// What kind of file a descriptor refers to, and its size.
struct Target {
    size: u64,
    block_device: bool,
    /// `st_blocks * 512`: bytes allocated.
    allocated: u64,
    blksize: u64,
}

fn io_err(op: &'static str, offset: Option<u64>) -> impl FnOnce(io::Error) -> Error {
    move |source| {
        let e = IoError::new(op, source);
        Error::Io(match offset {
            Some(o) => e.at(o),
            None => e,
        })
    }
}

fn inspect(file: &File) -> Result<Target> {
    let meta = file.metadata().map_err(io_err("stat", None))?;
    let ft = meta.file_type();
    let (size, block_device) = if ft.is_file() {
        (meta.len(), false)
    } else if ft.is_block_device() {
        (
            sparsekit_io::sys::block_device_size(file)
                .map_err(io_err("ioctl(BLKGETSIZE64)", None))?,
            true,
        )
    } else if ft.is_dir() {
        return Err(Error::IsADirectory { path: None });
    } else {
        let kind = if ft.is_fifo() {
            "fifo"
        } else if ft.is_socket() {
            "socket"
        } else if ft.is_char_device() {
            "character device"
        } else {
            "special file"
        };
        return Err(Error::NotAFile { path: None, kind });
    };
    Ok(Target {
        size,
        block_device,
        allocated: meta.blocks().saturating_mul(512),
        blksize: meta.blksize(),
    })
}

/// The size in bytes of a regular file or block device (`BLKGETSIZE64` for the latter).
pub fn file_size(file: &File) -> Result<u64> {
    inspect(file).map(|t| t.size)
}

/// Map the data extents of an open file or block device; see [`map_path`].
///
/// FIEMAP is asked with `FIEMAP_FLAG_SYNC`, which writes dirty pages back first, so that a
/// freshly written file is mapped as it will be on disk.
pub fn map_file(file: &File, opts: &MapOptions) -> Result<ExtentMap> {
    map_file_with(file, opts, true, &mut Control::none())
}

/// Like [`map_file`], but FIEMAP does not write dirty pages back first: delayed
/// allocations (and XFS's speculative preallocations) come back as extents with no
/// physical location yet instead of being forced to disk. Meant for callers that only need
/// to know which ranges hold or reserve blocks (e.g. before punching holes) and must not
/// pay for a writeback of what they just wrote.
pub fn map_file_nosync(file: &File, opts: &MapOptions) -> Result<ExtentMap> {
    map_file_with(file, opts, false, &mut Control::none())
}

/// [`map_file`] (`sync`) or [`map_file_nosync`] with cancellation and [`Phase::Map`]
/// progress, as [`map_path_with`].
pub fn map_file_with(
    file: &File,
    opts: &MapOptions,
    sync: bool,
    ctl: &mut Control<'_>,
) -> Result<ExtentMap> {
    let target = inspect(file)?;
    if opts.start > target.size {
        return Err(Error::OutOfRange {
            path: None,
            start: opts.start,
            size: target.size,
        });
    }
    let end = match opts.length {
        Some(len) => opts.start.saturating_add(len).min(target.size),
        None => target.size,
    };
    let window = opts.start..end;
    let block_size = if target.block_device {
        target.blksize
    } else {
        sys::fs_block_size(file).unwrap_or(target.blksize)
    }
    .max(1);
    let (method, extents) = match opts.method {
        Method::Auto => match fiemap(file, &window, sync, ctl) {
            Ok(x) => (Method::Fiemap, x),
            Err(e) if fiemap_unsupported(&e) => {
                if target.block_device {
                    // Block devices have no holes to find: their lseek is the generic
                    // fixed-size one, whose SEEK_HOLE always answers "end of device".
                    (Method::None, whole(&window))
                } else {
                    match seek_map(file, &target, &window, ctl) {
                        Ok(Some(x)) => (Method::Seek, x),
                        Ok(None) => (Method::None, whole(&window)),
                        Err(e) if seek_unsupported(&e) => (Method::None, whole(&window)),
                        Err(e) => return Err(e),
                    }
                }
            }
            Err(e) => return Err(e),
        },
        Method::Fiemap => match fiemap(file, &window, sync, ctl) {
            Ok(x) => (Method::Fiemap, x),
            Err(e) if fiemap_unsupported(&e) => return Err(unsupported(Method::Fiemap, e)),
            Err(e) => return Err(e),
        },
        Method::Seek => {
            if target.block_device {
                return Err(Error::Unsupported {
                    method: Method::Seek,
                    path: None,
                    source: None,
                });
            }
            match seek_map(file, &target, &window, ctl) {
                Ok(Some(x)) => (Method::Seek, x),
                Ok(None) => {
                    return Err(Error::Unsupported {
                        method: Method::Seek,
                        path: None,
                        source: None,
                    })
                }
                Err(e) if seek_unsupported(&e) => return Err(unsupported(Method::Seek, e)),
                Err(e) => return Err(e),
            }
        }
        Method::None => (Method::None, whole(&window)),
    };
    let len = window.end - window.start;
    ctl.report(Phase::Map, len, Some(len))
        .map_err(|_| Error::Aborted)?;
    Ok(ExtentMap {
        size: target.size,
        block_size,
        method,
        window,
        extents,
    })
}

fn whole(window: &Range<u64>) -> Vec<Extent> {
    if window.is_empty() {
        return Vec::new();
    }
    vec![Extent {
        offset: window.start,
        length: window.end - window.start,
        ..Extent::default()
    }]
}

fn unsupported(method: Method, e: Error) -> Error {
    match e {
        Error::Io(e) => Error::Unsupported {
            method,
            path: None,
            source: Some(e.source),
        },
        e => e,
    }
}

fn errno(e: &Error) -> Option<i32> {
    match e {
        Error::Io(e) => e.raw_os_error(),
        _ => None,
    }
}

/// FIEMAP errors that mean "this file or filesystem cannot do it": EOPNOTSUPP (tmpfs, no
/// `->fiemap`), ENOTTY (block devices, filesystems without the ioctl), EINVAL (some
/// network filesystems), EBADR (a flag such as FIEMAP_FLAG_SYNC refused), ENOSYS.
fn fiemap_unsupported(e: &Error) -> bool {
    matches!(
        errno(e),
        Some(errno::EOPNOTSUPP | libc::ENOTTY | errno::EINVAL | sys::EBADR | errno::ENOSYS)
    )
}

/// lseek errors that mean "SEEK_DATA/SEEK_HOLE not implemented": EINVAL (kernels before
/// 3.1 reject the whence values), EOPNOTSUPP/ENOSYS (some FUSE servers).
fn seek_unsupported(e: &Error) -> bool {
    matches!(
        errno(e),
        Some(errno::EINVAL | errno::EOPNOTSUPP | errno::ENOSYS)
    )
}

/// Add `r` clipped to `window` to `out`, merging it with the previous extent when they
/// touch and carry the same flags.
fn push_clipped(out: &mut Vec<Extent>, window: &Range<u64>, r: Extent) {
    let start = r.offset.max(window.start);
    let end = r.end().min(window.end);
    if start >= end {
        return;
    }
    let e = Extent {
        offset: start,
        length: end - start,
        ..r
    };
    if let Some(last) = out.last_mut() {
        if last.end() >= e.offset && last.unwritten == e.unwritten && last.shared == e.shared {
            last.length = last.end().max(e.end()) - last.offset;
            return;
        }
    }
    out.push(e);
}

fn fiemap(
    file: &File,
    window: &Range<u64>,
    sync: bool,
    ctl: &mut Control<'_>,
) -> Result<Vec<Extent>> {
    let mut buf = FiemapBuf::new(FIEMAP_BATCH);
    let mut raw: Vec<RawExtent> = Vec::with_capacity(FIEMAP_BATCH as usize);
    let mut out = Vec::new();
    let mut pos = window.start;
    // Sync once, on the first call: afterwards the pages this call wrote back are clean.
    let mut flags = if sync { sys::FIEMAP_FLAG_SYNC } else { 0 };
    loop {
        raw.clear();
        // fm_length 0 is EINVAL; an empty window still makes one call so that a forced
        // FIEMAP on a filesystem without it fails the same way whatever the window.
        let len = (window.end - pos).max(1);
        buf.query(file, pos, len, flags, &mut raw)
            .map_err(io_err("ioctl(FS_IOC_FIEMAP)", Some(pos)))?;
        flags = 0;
        let Some(&last) = raw.last() else { break };
        for r in &raw {
            push_clipped(
                &mut out,
                window,
                Extent {
                    offset: r.logical,
                    length: r.length,
                    unwritten: r.flags & sys::FIEMAP_EXTENT_UNWRITTEN != 0,
                    shared: r.flags & sys::FIEMAP_EXTENT_SHARED != 0,
                },
            );
        }
        let next = last.logical.saturating_add(last.length);
        // A full buffer without FIEMAP_EXTENT_LAST: ask again from the end of the last
        // extent. `next <= pos` guards against a filesystem that does not make progress.
        if last.flags & sys::FIEMAP_EXTENT_LAST != 0 || next <= pos || next >= window.end {
            break;
        }
        pos = next;
        ctl.report(
            Phase::Map,
            pos - window.start,
            Some(window.end - window.start),
        )
        .map_err(|_| Error::Aborted)?;
    }
    Ok(out)
}

/// A file whose allocated bytes (`st_blocks * 512`) fall short of its size by at least a
/// block must have a hole. The block of slack keeps inline (ext4 `inline_data`, btrfs
/// inline extents) and tail-packed small files, which have few or no blocks but no hole,
/// out of the probe.
fn must_have_hole(allocated: u64, blksize: u64, size: u64) -> bool {
    allocated.saturating_add(blksize.max(512)) <= size
}

/// Given [`must_have_hole`], the answer of `lseek(0, SEEK_HOLE)` (`None` for ENXIO) shows
/// the generic stub when it finds no hole before the end of the file.
fn is_stub(first_hole: Option<u64>, size: u64) -> bool {
    first_hole.is_none_or(|h| h >= size)
}

/// Map with SEEK_DATA/SEEK_HOLE; `Ok(None)` when lseek is the generic stub that reports
/// the whole file as data although the file must have a hole.
fn seek_map(
    file: &File,
    target: &Target,
    window: &Range<u64>,
    ctl: &mut Control<'_>,
) -> Result<Option<Vec<Extent>>> {
    // Stub probe without writing anything: a file with fewer allocated bytes than its size
    // (by at least a block, so that inline and tail-packed files do not count) must have a
    // hole. The generic stub answers SEEK_HOLE with the end of the file for any offset.
    if must_have_hole(target.allocated, target.blksize, target.size) {
        let hole = sys::seek(file, 0, true).map_err(io_err("lseek(SEEK_HOLE)", Some(0)))?;
        if is_stub(hole, target.size) {
            return Ok(None);
        }
    } else {
        // Still make one call, so that an lseek without SEEK_DATA fails here.
        sys::seek(file, window.start, false)
            .map_err(io_err("lseek(SEEK_DATA)", Some(window.start)))?;
    }
    let mut out = Vec::new();
    let mut pos = window.start;
    while pos < window.end {
        let Some(data) =
            sys::seek(file, pos, false).map_err(io_err("lseek(SEEK_DATA)", Some(pos)))?
        else {
            break;
        };
        if data >= window.end {
            break;
        }
        // ENXIO here means the file shrank under us after SEEK_DATA: no more data.
        let Some(hole) =
            sys::seek(file, data, true).map_err(io_err("lseek(SEEK_HOLE)", Some(data)))?
        else {
            break;
        };
        if hole <= data {
            break;
        }
        push_clipped(
            &mut out,
            window,
            Extent {
                offset: data,
                length: hole - data,
                ..Extent::default()
            },
        );
        pos = hole;
        // One report per 1024 extents: an lseek pair costs ~1 µs.
        if out.len() % 1024 == 0 {
            ctl.report(
                Phase::Map,
                pos.min(window.end) - window.start,
                Some(window.end - window.start),
            )
            .map_err(|_| Error::Aborted)?;
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use sparsekit_io::ErrorInfo;

    fn ext(offset: u64, length: u64, unwritten: bool) -> Extent {
        Extent {
            offset,
            length,
            unwritten,
            shared: false,
        }
    }

    #[test]
    fn method_names_round_trip() {
        for m in [Method::Auto, Method::Fiemap, Method::Seek, Method::None] {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
        }
        let e = "fast".parse::<Method>().unwrap_err();
        assert_eq!(e.code(), "ERR_INVALID_ARG_VALUE");
        assert!(e.to_string().contains("'fast'"), "{e}");
    }

    #[test]
    fn merge_keeps_flags_apart() {
        let w = 0..100;
        let mut out = Vec::new();
        push_clipped(&mut out, &w, ext(0, 10, false));
        push_clipped(&mut out, &w, ext(10, 10, false));
        push_clipped(&mut out, &w, ext(20, 10, true));
        push_clipped(&mut out, &w, ext(30, 10, true));
        push_clipped(&mut out, &w, ext(40, 100, false));
        assert_eq!(
            out,
            vec![ext(0, 20, false), ext(20, 20, true), ext(40, 60, false)]
        );
    }

    #[test]
    fn clip_to_window() {
        let w = 5..25;
        let mut out = Vec::new();
        push_clipped(&mut out, &w, ext(0, 10, false));
        push_clipped(&mut out, &w, ext(12, 100, false));
        push_clipped(&mut out, &w, ext(30, 1, false));
        assert_eq!(out, vec![ext(5, 5, false), ext(12, 13, false)]);
    }

    #[test]
    fn blocks_and_holes() {
        let m = ExtentMap {
            size: 40960,
            block_size: 4096,
            method: Method::Fiemap,
            window: 0..40960,
            extents: vec![
                ext(0, 4096, false),
                ext(4096, 4096, true),
                ext(8192, 100, false),
                ext(20480, 4096, false),
            ],
        };
        assert_eq!(m.data_ranges(), vec![0..4096, 8192..8292, 20480..24576]);
        assert_eq!(m.hole_ranges(), vec![4096..8192, 8292..20480, 24576..40960]);
        assert_eq!(m.data_bytes(), 4096 + 100 + 4096);
    }

    #[test]
    fn stub_probe() {
        // 1 MiB file with 8 KiB allocated: must have a hole.
        assert!(must_have_hole(8192, 4096, 1 << 20));
        assert!(is_stub(Some(1 << 20), 1 << 20));
        assert!(is_stub(None, 1 << 20));
        assert!(!is_stub(Some(8192), 1 << 20));
        // Fully allocated, inline (100 bytes, 0 blocks) and preallocated files prove nothing.
        assert!(!must_have_hole(1 << 20, 4096, 1 << 20));
        assert!(!must_have_hole(0, 4096, 100));
        assert!(!must_have_hole(2 << 20, 4096, 1 << 20));
    }

    #[test]
    fn complement_edges() {
        assert_eq!(complement(&[], 3..9), vec![3..9]);
        assert_eq!(complement(&[0..4, 6..20], 3..9), vec![4..6]);
        assert_eq!(complement(&[3..9], 3..9), Vec::<Range<u64>>::new());
        assert_eq!(complement(&[], 5..5), Vec::<Range<u64>>::new());
    }

    #[test]
    fn plain_file_maps() {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[1u8; 10000]).unwrap();
        for method in [Method::Auto, Method::None] {
            let m = map_file(
                f.as_file(),
                &MapOptions {
                    method,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(m.size, 10000);
            assert_ne!(m.method, Method::Auto);
            assert_eq!(m.data_ranges(), vec![0..10000]);
        }
        let m = map_file(
            f.as_file(),
            &MapOptions {
                start: 100,
                length: Some(50),
                method: Method::Auto,
            },
        )
        .unwrap();
        assert_eq!(m.data_ranges(), vec![100..150]);
        let e = map_file(
            f.as_file(),
            &MapOptions {
                start: 10001,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_OUT_OF_RANGE");
    }

    #[test]
    fn directory_and_missing() {
        let d = tempfile::tempdir().unwrap();
        let e = map_path(d.path(), &MapOptions::default()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EISDIR));
        assert_eq!(e.path(), Some(d.path()));
        let e = map_path(&d.path().join("nope"), &MapOptions::default()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(e.code(), "ERR_SPARSEKIT_IO");
        assert!(e.to_string().contains("nope"), "{e}");
    }
}
