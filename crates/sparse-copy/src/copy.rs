//! The copy itself: planning the window, the reflink attempt, the per-extent byte-moving
//! loop with its fallback chain, streams that have no size, and atomic replacement.

use sparsekit_io::sys::{FileExt, MetadataExt};
use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use sparsekit_extents::{map_file_with, MapOptions, Method};
use sparsekit_io::{read_stream, Context, Control, IoError, Phase, TempBeside};

use crate::ends::{check_not_same, open_destination, open_source, Destination, Source};
use crate::method::may_fall_back;
use crate::{sys, CopyMethod, Error, Result};

/// Largest single transfer (one `copy_file_range`, `sendfile` or read/write round) and the
/// most data moved between two progress reports, so a cancel is seen within one chunk.
pub const CHUNK_SIZE: u64 = 16 << 20;
/// The read/write fallback's buffer, also used to write zeros.
pub(crate) const BUF_SIZE: usize = 1 << 20;

/// What [`copy`] copies, with `dd` semantics: `skip` and `seek` are byte offsets in source
/// and destination, `length` is dd's `count` (in bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyOptions {
    /// Bytes of the source to skip (default 0).
    pub skip: u64,
    /// Where in the destination to start writing (default 0); bytes before it are kept.
    pub seek: u64,
    /// Bytes to copy; `None` means to the end of the source. Like dd's `count`, a length
    /// running past the end of the source copies what there is.
    pub length: Option<u64>,
    /// How to move the bytes.
    pub method: CopyMethod,
    /// `true` (default): a regular destination ends at `seek + copied` (`dd` without
    /// `conv=notrunc`). `false`: it is never shortened (`conv=notrunc`). Ignored for block
    /// devices, which are never truncated.
    pub truncate: bool,
    /// Write zeros over the source's holes instead of leaving holes. For a block device
    /// destination the default (`false`) leaves whatever the device held in those ranges;
    /// for a regular file the default makes real holes and `true` allocates them.
    pub zero_holes: bool,
    /// `fsync` a regular-file destination at the end ([`Phase::Sync`]). Block devices are
    /// always synced.
    pub fsync: bool,
    /// Regular files only: write a temporary file beside the destination and rename it
    /// into place only when the copy succeeded (permissions kept), so a failed or cancelled
    /// copy leaves the old destination as it was. Bytes the copy does not replace (before
    /// `seek`, and after the window with `truncate: false`) are carried over.
    pub atomic: bool,
    /// The destination may not end past this offset (JS numbers stop at 2^53 - 1): checked
    /// before anything is written, [`Error::TooLarge`] otherwise. Default: no limit.
    pub max_end: u64,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            skip: 0,
            seek: 0,
            length: None,
            method: CopyMethod::Auto,
            truncate: true,
            zero_holes: false,
            fsync: false,
            atomic: false,
            max_end: u64::MAX,
        }
    }
}

/// What [`copy`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyReport {
    /// Data bytes moved (or shared, for a reflink); holes are not counted.
    pub bytes_copied: u64,
    /// Size of the destination afterwards.
    pub size: u64,
    /// The most capable method that moved data (when nothing needed moving: the method
    /// that would have been used first).
    pub method: CopyMethod,
    /// Bytes of zeros written into the destination: with `zero_holes`, or where the
    /// filesystem could not punch a hole over stale destination data.
    pub bytes_zeroed: u64,
    /// Bytes of the window (data and holes). The [`Phase::Copy`] total is the data to
    /// move (the window's data extents, plus its holes with `zero_holes`): holes are not
    /// progress.
    pub bytes_total: u64,
}

/// Copy `[skip, skip + length)` of `src` to `dst` at `seek`, preserving holes.
///
/// With default options the destination becomes a byte-identical sparse copy of the
/// source. Unwritten (preallocated) source ranges read as zeros and are copied as holes
/// (a reflink shares them as they are). The destination is created if missing; a block
/// device destination is opened `O_EXCL` (EBUSY when mounted), must be large enough and
/// is `fsync`ed at the end; a regular file is synced only with `fsync` (like `cp`). Every
/// check (sizes, offsets, same file) happens before the first write. A destination created
/// before a later error stays behind, unless `atomic`.
///
/// A source whose size says nothing about its content (`/proc/cpuinfo`, sysfs attributes:
/// `st_size` 0 on procfs, 4096 on sysfs) is read to end of file, as coreutils does.
///
/// `ctl` gets [`Phase::Map`] reports while the source is mapped, [`Phase::Copy`] reports
/// (bytes of data moved against the window's data bytes: holes are neither moved nor
/// counted, except as zeros written with `zero_holes`; a reflink counts the window) after
/// every chunk, and [`Phase::Sync`] around the final `fsync` (bytes to flush); each phase
/// ends with exactly one `done == total` report. A cancel stops the copy with
/// [`Error::Aborted`] within one chunk; before any I/O, nothing is created.
pub fn copy(
    src: &Path,
    dst: &Path,
    opts: &CopyOptions,
    ctl: &mut Control<'_>,
) -> Result<CopyReport> {
    ctl.check().map_err(|_| Error::Aborted)?;
    let source = open_source(src)?;
    if opts.atomic {
        return copy_atomic(src, &source, dst, opts, ctl);
    }
    if source.stream {
        let dest = open_destination(dst, true)?;
        check_not_same(src, &source, &dest)?;
        return copy_stream(src, &source, &dest, opts, ctl);
    }
    let len = window_len(&source, opts);
    let dst_end = check_end(opts, len)?;
    ctl.check().map_err(|_| Error::Aborted)?;
    let dest = open_destination(dst, true)?;
    check_not_same(src, &source, &dest)?;
    dest.check_fits(opts.seek, len)?;
    copy_open(src, &source, &dest, opts, len, dst_end, ctl)
}

/// Bytes of the window: `length` clipped to what the source has after `skip`.
fn window_len(source: &Source, opts: &CopyOptions) -> u64 {
    let avail = source.size.saturating_sub(opts.skip);
    opts.length.map_or(avail, |l| l.min(avail))
}

fn check_end(opts: &CopyOptions, len: u64) -> Result<u64> {
    match opts.seek.checked_add(len) {
        Some(end) if end <= opts.max_end => Ok(end),
        _ => Err(Error::TooLarge {
            end: opts.seek.saturating_add(len),
            limit: opts.max_end,
        }),
    }
}

/// The copy proper, both ends open and checked.
fn copy_open(
    src: &Path,
    source: &Source,
    dest: &Destination,
    opts: &CopyOptions,
    len: u64,
    dst_end: u64,
    ctl: &mut Control<'_>,
) -> Result<CopyReport> {
    let is_bdev = dest.is_block_device();
    let mut job = Job {
        src,
        dst: &dest.path,
        src_file: &source.file,
        dst_file: &dest.file,
        opts,
        len,
        ctl,
        method: match opts.method {
            CopyMethod::Auto | CopyMethod::Reflink => CopyMethod::CopyFileRange,
            m => m,
        },
        best: CopyMethod::Auto,
        copied: 0,
        zeroed: 0,
        to_move: len,
        buf: Vec::new(),
    };

    // A forced reflink of a whole empty file still asks the kernel (FICLONE), so that
    // "reflink" is refused the same way whatever the file; other empty windows need no I/O.
    let whole = opts.skip == 0 && opts.seek == 0 && len == source.size;
    let reflinked = if (opts.method == CopyMethod::Reflink && (len > 0 || whole))
        || (opts.method == CopyMethod::Auto && !is_bdev && len > 0)
    {
        job.reflink(source.size, dest.meta.blksize())?
    } else {
        false
    };

    if !reflinked {
        if opts.method == CopyMethod::Reflink {
            // Nothing to clone (an empty window): done, with nothing moved.
            job.best = CopyMethod::Reflink;
        }
        // dd reads nothing when `skip` lies past the end: map an empty window at the end.
        let start = opts.skip.min(source.size);
        let map = job.map_source(start, len)?;
        // The source shrank between the stat above and the mapping: the map would show
        // its lost tail as a hole, which would silently become zeros.
        let src_end = start + len;
        if map.window.end < src_end {
            return Err(Error::ShortRead {
                path: src.to_path_buf(),
                offset: map.size,
            });
        }
        // Progress counts what moves: data, and zeros written over holes when asked.
        let holes_len: u64 = map.hole_ranges().iter().map(|h| h.end - h.start).sum();
        job.to_move = map
            .data_ranges()
            .iter()
            .map(|r| r.end - r.start)
            .sum::<u64>()
            + if opts.zero_holes { holes_len } else { 0 };
        job.report()?;
        if !is_bdev && opts.truncate && dest.meta.len() > opts.seek {
            // Everything from `seek` on is replaced: cut it off so no stale byte survives
            // in a hole, then extend again at the end (the trailing hole).
            dest.file
                .set_len(opts.seek)
                .op_at("ftruncate", &dest.path, opts.seek)
                .map_err(Error::Io)?;
        }
        let holes = map.hole_ranges();
        let mut hole_iter = holes.iter().peekable();
        for r in map.data_ranges() {
            if opts.zero_holes {
                while let Some(h) = hole_iter.next_if(|h| h.start < r.start) {
                    job.zero(h.clone())?;
                }
            }
            job.copy_range(r)?;
        }
        if opts.zero_holes {
            for h in hole_iter {
                job.zero(h.clone())?;
            }
        }
        if !is_bdev {
            job.set_size(dst_end)?;
            if !opts.zero_holes && !holes.is_empty() {
                job.clear_holes(&holes)?;
            }
        }
        // The source must still be as long as the window we planned: a file that shrank
        // during the copy would otherwise end in zeros where its data was.
        let now = src_size_now(job.src_file, src)?;
        if now < src_end {
            return Err(Error::ShortRead {
                path: src.to_path_buf(),
                offset: now,
            });
        }
    }
    let moved = job.to_move;
    job.ctl
        .report(Phase::Copy, moved, Some(moved))
        .map_err(|_| Error::Aborted)?;

    // Block devices are synced: the copy is usually a flash whose caller unplugs the
    // device next. Regular files only on request (like cp and dd without conv=fsync).
    if is_bdev || opts.fsync {
        sync_phase(dest, moved, job.ctl)?;
    }
    let method = if job.best == CopyMethod::Auto {
        job.method
    } else {
        job.best
    };
    Ok(CopyReport {
        bytes_copied: job.copied,
        size: dest.size()?,
        method,
        bytes_zeroed: job.zeroed,
        bytes_total: len,
    })
}

fn sync_phase(dest: &Destination, len: u64, ctl: &mut Control<'_>) -> Result<()> {
    ctl.report(Phase::Sync, 0, Some(len))
        .map_err(|_| Error::Aborted)?;
    dest.sync()?;
    ctl.report(Phase::Sync, len, Some(len))
        .map_err(|_| Error::Aborted)
}

/// Copy a source whose size means nothing (procfs, sysfs): read it to end of file, skip
/// `skip` bytes, write at most `length` bytes at `seek`. No holes to keep; the total is
/// unknown until the end.
fn copy_stream(
    src: &Path,
    source: &Source,
    dest: &Destination,
    opts: &CopyOptions,
    ctl: &mut Control<'_>,
) -> Result<CopyReport> {
    let mut buf = vec![0u8; BUF_SIZE];
    let (mut pos, mut written) = (0u64, 0u64);
    let limit = opts.length.unwrap_or(u64::MAX);
    if !dest.is_block_device() && opts.truncate && dest.meta.len() > opts.seek {
        dest.file
            .set_len(opts.seek)
            .op_at("ftruncate", &dest.path, opts.seek)
            .map_err(Error::Io)?;
    }
    ctl.report(Phase::Copy, 0, opts.length)
        .map_err(|_| Error::Aborted)?;
    while written < limit {
        let n = match read_stream(&source.file, &mut buf, ctl.cancel()) {
            Ok(Some(n)) => n,
            Ok(None) => return Err(Error::Aborted),
            Err(e) => return Err(Error::Io(IoError::new("read", e).with_path(src).at(pos))),
        };
        if n == 0 {
            break;
        }
        let skip = opts.skip.saturating_sub(pos).min(n as u64) as usize;
        pos += n as u64;
        let take = ((n - skip) as u64).min(limit - written) as usize;
        if take > 0 {
            let at = opts.seek + written;
            check_end(opts, written + take as u64)?;
            dest.check_fits(at, take as u64)?;
            dest.file
                .write_all_at(&buf[skip..skip + take], at)
                .op_at("write", &dest.path, at)
                .map_err(Error::Io)?;
            written += take as u64;
        }
        ctl.report(Phase::Copy, written, opts.length)
            .map_err(|_| Error::Aborted)?;
    }
    ctl.report(Phase::Copy, written, Some(written))
        .map_err(|_| Error::Aborted)?;
    if opts.fsync || dest.is_block_device() {
        sync_phase(dest, written, ctl)?;
    }
    Ok(CopyReport {
        bytes_copied: written,
        size: dest.size()?,
        method: CopyMethod::ReadWrite,
        bytes_zeroed: 0,
        bytes_total: written,
    })
}

/// [`CopyOptions::atomic`]: copy into a temporary file beside `dst`, then rename it over
/// `dst`. The temporary file is removed on any failure.
fn copy_atomic(
    src: &Path,
    source: &Source,
    dst: &Path,
    opts: &CopyOptions,
    ctl: &mut Control<'_>,
) -> Result<CopyReport> {
    let existing = match std::fs::metadata(dst) {
        Ok(m) if m.is_file() => Some(m),
        Ok(m) if m.is_dir() => return Err(Error::IsADirectory(dst.to_path_buf())),
        Ok(_) => {
            return Err(Error::InvalidArg {
                name: "atomic (a regular file destination)",
                value: dst.display().to_string(),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::Io(IoError::new("stat", e).with_path(dst))),
    };
    if let Some(m) = &existing {
        if m.dev() == source.meta.dev() && m.ino() == source.meta.ino() {
            return Err(Error::SameFile {
                src: src.to_path_buf(),
                dst: dst.to_path_buf(),
            });
        }
    }
    if !source.stream {
        check_end(opts, window_len(source, opts))?;
    }
    let tmp = TempBeside::new(dst).map_err(Error::Io)?;
    // Carry over what the copy keeps of the old destination: everything, then the window
    // overwrites its part (and truncation cuts the tail, as without atomic).
    if existing.is_some() && (opts.seek > 0 || !opts.truncate) {
        copy(
            dst,
            tmp.path(),
            &CopyOptions::default(),
            &mut Control::with_cancel(ctl.cancel().clone()),
        )?;
    }
    let inner = CopyOptions {
        atomic: false,
        fsync: true,
        ..*opts
    };
    let report = copy(src, tmp.path(), &inner, ctl)?;
    // Dropped on any failure above, which removes the temporary file.
    tmp.persist(dst, existing.as_ref()).map_err(Error::Io)?;
    Ok(report)
}

fn src_size_now(file: &File, path: &Path) -> Result<u64> {
    sparsekit_extents::file_size(file).map_err(|e| Error::Extents(e.with_path(path)))
}

/// The state of one copy.
pub(crate) struct Job<'a, 'c> {
    pub(crate) src: &'a Path,
    pub(crate) dst: &'a Path,
    pub(crate) src_file: &'a File,
    pub(crate) dst_file: &'a File,
    pub(crate) opts: &'a CopyOptions,
    pub(crate) len: u64,
    pub(crate) ctl: &'a mut Control<'c>,
    /// The byte-moving method in use now.
    pub(crate) method: CopyMethod,
    /// The most capable method that moved data so far (`Auto`: none yet).
    pub(crate) best: CopyMethod,
    pub(crate) copied: u64,
    pub(crate) zeroed: u64,
    /// The [`Phase::Copy`] total: data bytes to move (the window until it is mapped).
    pub(crate) to_move: u64,
    /// The read/write fallback's buffer (empty until needed).
    pub(crate) buf: Vec<u8>,
}

impl Job<'_, '_> {
    /// Destination offset of source offset `pos`.
    pub(crate) fn dst_pos(&self, pos: u64) -> u64 {
        self.opts.seek + (pos - self.opts.skip)
    }

    pub(crate) fn io(
        &self,
        on_src: bool,
        op: &'static str,
        offset: u64,
    ) -> impl FnOnce(io::Error) -> Error {
        let path = if on_src { self.src } else { self.dst }.to_path_buf();
        move |source| Error::Io(IoError::new(op, source).with_path(&path).at(offset))
    }

    /// Report [`Phase::Copy`] progress (bytes moved so far) after a chunk; `Err` once
    /// cancelled.
    /// The 100% report is made once, by [`copy`] at the end.
    pub(crate) fn report(&mut self) -> Result<()> {
        let done = self.copied + self.zeroed;
        if done >= self.to_move {
            return self.ctl.check().map_err(|_| Error::Aborted);
        }
        self.ctl
            .report(Phase::Copy, done, Some(self.to_move))
            .map_err(|_| Error::Aborted)
    }

    fn used(&mut self, m: CopyMethod) {
        if m.rank() > self.best.rank() {
            self.best = m;
        }
    }

    /// Map the source's data in `[start, start + len)`, cancellable ([`Phase::Map`]).
    fn map_source(&mut self, start: u64, len: u64) -> Result<sparsekit_extents::ExtentMap> {
        map_file_with(
            self.src_file,
            &MapOptions {
                start,
                length: Some(len),
                method: Method::Auto,
            },
            true,
            self.ctl,
        )
        .map_err(|e| match e {
            sparsekit_extents::Error::Aborted => Error::Aborted,
            e => Error::Extents(e.with_path(self.src)),
        })
    }

    /// Try to clone the whole window; `Ok(false)` means "use another method".
    fn reflink(&mut self, src_size: u64, block_size: u64) -> Result<bool> {
        let (skip, seek, len) = (self.opts.skip, self.opts.seek, self.len);
        let forced = self.opts.method == CopyMethod::Reflink;
        let whole = skip == 0 && seek == 0 && len == src_size;
        let bs = block_size.max(1);
        // FICLONERANGE needs block-aligned offsets and a block-aligned length unless the
        // range ends at the source's EOF. An unaligned length is rounded down by the
        // kernel, which clones that part and then reports EINVAL: check first so a refused
        // clone leaves the destination untouched.
        let aligned = skip % bs == 0 && seek % bs == 0 && (len % bs == 0 || skip + len == src_size);
        let result = if !aligned {
            Err(io::Error::from_raw_os_error(sparsekit_io::errno::EINVAL))
        } else if whole {
            sys::ficlone(self.src_file, self.dst_file)
        } else {
            sys::ficlonerange(self.src_file, skip, len, self.dst_file, seek)
        };
        match result {
            Ok(()) => {}
            Err(e) if may_fall_back(&e, true) => {
                if forced {
                    return Err(Error::Unsupported {
                        method: CopyMethod::Reflink,
                        path: self.dst.to_path_buf(),
                        offset: seek,
                        source: Some(e),
                    });
                }
                return Ok(false);
            }
            Err(e) => {
                let op = if whole {
                    "ioctl(FICLONE)"
                } else {
                    "ioctl(FICLONERANGE)"
                };
                return Err(self.io(false, op, seek)(e));
            }
        }
        self.used(CopyMethod::Reflink);
        // A clone never shortens the destination; dd without notrunc does.
        self.set_size(seek + len)?;
        let map = self.map_source(skip, len)?;
        self.copied = map.data_bytes();
        Ok(true)
    }

    /// Move the data of source range `r` with the current method, falling back along the
    /// chain; offsets are tracked here, so a short transfer or EINTR resumes exactly.
    fn copy_range(&mut self, r: Range<u64>) -> Result<()> {
        let forced = self.opts.method != CopyMethod::Auto;
        let mut pos = r.start;
        while pos < r.end {
            let want = (r.end - pos).min(CHUNK_SIZE) as usize;
            let dpos = self.dst_pos(pos);
            let m = self.method;
            let result = match m {
                CopyMethod::CopyFileRange => {
                    sys::copy_file_range(self.src_file, pos, self.dst_file, dpos, want)
                }
                CopyMethod::Sendfile => {
                    sys::sendfile(self.src_file, pos, self.dst_file, dpos, want)
                }
                _ => Ok(self.read_write(pos, dpos, want)?),
            };
            let refusal = match result {
                Ok(0) => {
                    // End of file before the end of a data range: did the source shrink?
                    let now = src_size_now(self.src_file, self.src)?;
                    if now <= pos || m != CopyMethod::CopyFileRange {
                        return Err(Error::ShortRead {
                            path: self.src.to_path_buf(),
                            offset: pos,
                        });
                    }
                    // copy_file_range "succeeded" with 0 bytes although data remains:
                    // files in /proc and /sys and some FUSE and network filesystems do
                    // this (coreutils falls back too).
                    None
                }
                Ok(n) => {
                    pos += n as u64;
                    self.copied += n as u64;
                    self.used(m);
                    self.report()?;
                    continue;
                }
                Err(e) if m != CopyMethod::ReadWrite && may_fall_back(&e, self.copied == 0) => {
                    Some(e)
                }
                Err(e) => return Err(self.io(false, m.op(), dpos)(e)),
            };
            if forced {
                return Err(Error::Unsupported {
                    method: m,
                    path: self.dst.to_path_buf(),
                    offset: dpos,
                    source: refusal,
                });
            }
            // Next in the chain. sendfile works where copy_file_range does not (across
            // filesystems since 5.19, onto block devices: EXDEV/EINVAL), and read/write
            // works where sendfile cannot splice (EINVAL from some FUSE and procfs files,
            // an O_APPEND destination). Offsets are ours, so the next method resumes at
            // `pos` exactly.
            match m.next() {
                Some(next) => self.method = next,
                None => {
                    return Err(Error::ShortRead {
                        path: self.src.to_path_buf(),
                        offset: pos,
                    })
                }
            }
        }
        Ok(())
    }

    /// One read/write round: read up to `want` bytes at `pos` (up to the buffer's size),
    /// write them all at `dpos`; returns the bytes moved (0 at end of file). Read errors
    /// are reported on the source, write errors on the destination.
    fn read_write(&mut self, pos: u64, dpos: u64, want: usize) -> Result<usize> {
        // One buffer per copy, allocated on first use (100 000 small extents must not
        // mean 100 000 allocations).
        let mut buf = std::mem::take(&mut self.buf);
        if buf.is_empty() {
            buf = vec![0; BUF_SIZE];
        }
        let result = self.read_write_with(&mut buf, pos, dpos, want);
        self.buf = buf;
        result
    }

    fn read_write_with(
        &mut self,
        buf: &mut [u8],
        pos: u64,
        dpos: u64,
        want: usize,
    ) -> Result<usize> {
        let want = want.min(buf.len());
        let n = loop {
            match self.src_file.read_at(&mut buf[..want], pos) {
                Ok(n) => break n,
                // A signal delivered to this thread: retry at the same offset.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(true, "read", pos)(e)),
            }
        };
        // write_all_at retries EINTR and short writes itself.
        self.dst_file
            .write_all_at(&buf[..n], dpos)
            .map_err(self.io(false, "write", dpos))?;
        Ok(n)
    }

    /// Give a regular destination its final size, as dd does: `seek + length` (with
    /// truncation: dd's ftruncate to `seek` before copying, which also extends), or with
    /// `notrunc` at least that if anything was copied (dd's writes extend the file; an
    /// empty window writes nothing). Extending makes the trailing hole.
    fn set_size(&mut self, end: u64) -> Result<()> {
        let size = self
            .dst_file
            .metadata()
            .map_err(self.io(false, "stat", end))?
            .len();
        if (size < end && (self.opts.truncate || self.len > 0))
            || (self.opts.truncate && size != end)
        {
            self.dst_file
                .set_len(end)
                .map_err(self.io(false, "ftruncate", end))?;
        }
        Ok(())
    }
}

/// Parsing lives here, beside the options, so that method.rs does not depend on the error
/// type that names a method.
impl FromStr for CopyMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => CopyMethod::Auto,
            "reflink" => CopyMethod::Reflink,
            "copy_file_range" => CopyMethod::CopyFileRange,
            "sendfile" => CopyMethod::Sendfile,
            "readwrite" => CopyMethod::ReadWrite,
            _ => {
                return Err(Error::InvalidArg {
                    name: "copy method",
                    value: s.to_owned(),
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsekit_io::ErrorInfo;
    use sparsekit_io::Phase;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use std::fs;

    fn go(src: &Path, dst: &Path, opts: &CopyOptions) -> Result<CopyReport> {
        copy(src, dst, opts, &mut Control::none())
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
            .collect()
    }

    #[test]
    fn sparse_copy_every_method() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        let f = File::create(&src).unwrap();
        let a = pattern(70_000, 3);
        f.write_all_at(&a, 0).unwrap();
        f.write_all_at(&a, 1 << 20).unwrap();
        f.set_len(3 << 20).unwrap();
        let want = fs::read(&src).unwrap();
        for m in [
            CopyMethod::Auto,
            CopyMethod::CopyFileRange,
            CopyMethod::Sendfile,
            CopyMethod::ReadWrite,
        ] {
            let dst = d.path().join(m.name());
            let r = go(
                &src,
                &dst,
                &CopyOptions {
                    method: m,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(fs::read(&dst).unwrap(), want, "{m}");
            assert_eq!(r.size, 3 << 20);
            if m != CopyMethod::Auto {
                assert_eq!(r.method, m);
            }
            assert!(
                fs::metadata(&dst).unwrap().blocks() < 2048,
                "{m}: holes not kept"
            );
        }
    }

    #[test]
    fn dd_window() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("s"), d.path().join("d"));
        fs::write(&src, b"0123456789").unwrap();
        fs::write(&dst, b"abcdefghijklmnop").unwrap();
        let opts = CopyOptions {
            skip: 2,
            seek: 3,
            length: Some(4),
            truncate: false,
            ..Default::default()
        };
        assert_eq!(go(&src, &dst, &opts).unwrap().size, 16);
        assert_eq!(fs::read(&dst).unwrap(), b"abc2345hijklmnop");
        let opts = CopyOptions {
            skip: 8,
            seek: 1,
            length: Some(100),
            ..Default::default()
        };
        let r = go(&src, &dst, &opts).unwrap();
        assert_eq!((r.size, r.bytes_copied), (3, 2));
        assert_eq!(fs::read(&dst).unwrap(), b"a89");
    }

    #[test]
    fn refuses_same_file_and_directories() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("s");
        fs::write(&src, b"keep me").unwrap();
        let link = d.path().join("l");
        fs::hard_link(&src, &link).unwrap();
        for dst in [&src, &link] {
            let e = go(&src, dst, &CopyOptions::default()).unwrap_err();
            assert_eq!(e.code(), "ERR_SPARSEKIT_SAME_FILE", "{e}");
        }
        assert_eq!(fs::read(&src).unwrap(), b"keep me");
        let e = go(d.path(), &d.path().join("x"), &CopyOptions::default()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EISDIR));
        assert_eq!(e.path(), Some(d.path()));
        let e = go(&src, d.path(), &CopyOptions::default()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EISDIR));
        let e = go(
            &d.path().join("missing"),
            &d.path().join("x"),
            &CopyOptions::default(),
        )
        .unwrap_err();
        assert_eq!(
            (e.raw_os_error(), e.code()),
            (Some(libc::ENOENT), "ERR_SPARSEKIT_IO")
        );
        assert!(e.to_string().contains("missing"), "{e}");
        assert!(!d.path().join("x").exists());
    }

    #[test]
    fn abort_before_io() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("s");
        fs::write(&src, b"data").unwrap();
        let dst = d.path().join("d");
        let cancel = sparsekit_io::Cancel::new();
        cancel.cancel();
        let e = copy(
            &src,
            &dst,
            &CopyOptions::default(),
            &mut Control::with_cancel(cancel),
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_ABORTED");
        assert!(!dst.exists(), "aborted copy created the destination");
    }

    #[test]
    fn proc_files_are_read_to_the_end() {
        let d = tempfile::tempdir().unwrap();
        let dst = d.path().join("version");
        fs::write(&dst, vec![b'x'; 1 << 20]).unwrap();
        // /proc/version: st_size 0, content that does not change between two reads.
        let r = go(Path::new("/proc/version"), &dst, &CopyOptions::default()).unwrap();
        let want = fs::read("/proc/version").unwrap();
        assert!(!want.is_empty());
        assert_eq!(fs::read(&dst).unwrap(), want);
        assert_eq!(r.bytes_copied, want.len() as u64);
    }

    #[test]
    fn offsets_checked_before_writing() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("s"), d.path().join("d"));
        fs::write(&src, vec![1u8; 8192]).unwrap();
        fs::write(&dst, b"keep").unwrap();
        let opts = CopyOptions {
            seek: (1 << 53) - 100,
            max_end: (1 << 53) - 1,
            ..Default::default()
        };
        let e = go(&src, &dst, &opts).unwrap_err();
        assert_eq!(e.code(), "ERR_OUT_OF_RANGE", "{e}");
        assert_eq!(fs::read(&dst).unwrap(), b"keep");
    }

    #[test]
    fn fsync_is_its_own_phase() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("s"), d.path().join("d"));
        fs::write(&src, pattern(3 << 20, 9)).unwrap();
        let seen = std::sync::Mutex::new(Vec::new());
        let opts = CopyOptions {
            fsync: true,
            ..Default::default()
        };
        copy(
            &src,
            &dst,
            &opts,
            &mut Control::new(sparsekit_io::Cancel::new(), |p| {
                seen.lock().unwrap().push(p)
            }),
        )
        .unwrap();
        let seen = seen.into_inner().unwrap();
        let phases: Vec<_> = seen.iter().map(|p| p.phase).collect();
        let mut order = phases.clone();
        order.dedup();
        assert_eq!(order, [Phase::Map, Phase::Copy, Phase::Sync], "{seen:?}");
        for ph in [Phase::Map, Phase::Copy, Phase::Sync] {
            let of: Vec<_> = seen.iter().filter(|p| p.phase == ph).collect();
            assert!(of.windows(2).all(|w| w[0].done <= w[1].done), "{ph}");
            let last = of.last().unwrap();
            assert_eq!(Some(last.done), last.total, "{ph}");
            assert_eq!(
                of.iter().filter(|p| Some(p.done) == p.total).count(),
                1,
                "{ph}: {of:?}"
            );
        }
    }

    /// Issue 27: a 4 GiB file with 1 GiB of data showed `4096/4096 MiB` copied; holes are
    /// not progress.
    #[test]
    fn progress_counts_data_not_holes() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("s"), d.path().join("d"));
        let f = fs::File::create(&src).unwrap();
        f.write_all_at(&pattern(1 << 20, 3), 4 << 20).unwrap();
        f.set_len(16 << 20).unwrap();
        drop(f);
        for zero_holes in [false, true] {
            let seen = std::sync::Mutex::new(Vec::new());
            let opts = CopyOptions {
                method: CopyMethod::ReadWrite,
                zero_holes,
                ..Default::default()
            };
            let r = copy(
                &src,
                &dst,
                &opts,
                &mut Control::new(sparsekit_io::Cancel::new(), |p| {
                    seen.lock().unwrap().push(p)
                }),
            )
            .unwrap();
            let seen = seen.into_inner().unwrap();
            let copy: Vec<_> = seen.iter().filter(|p| p.phase == Phase::Copy).collect();
            let want = if zero_holes { 16 << 20 } else { 1 << 20 };
            assert_eq!(copy.last().unwrap().total, Some(want), "{copy:?}");
            assert_eq!(copy.last().unwrap().done, want);
            assert!(copy.iter().all(|p| p.total == Some(want)), "{copy:?}");
            assert!(copy.windows(2).all(|w| w[0].done <= w[1].done), "{copy:?}");
            assert_eq!(r.bytes_total, 16 << 20);
        }
    }

    #[test]
    fn atomic_failure_keeps_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("s"), d.path().join("d"));
        fs::write(&src, pattern(4 << 20, 5)).unwrap();
        fs::write(&dst, b"old contents").unwrap();
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o640)).unwrap();
        let cancel = sparsekit_io::Cancel::new();
        let c2 = cancel.clone();
        let opts = CopyOptions {
            atomic: true,
            method: CopyMethod::ReadWrite,
            ..Default::default()
        };
        let e = copy(
            &src,
            &dst,
            &opts,
            &mut Control::new(cancel, move |p| {
                if p.phase == Phase::Copy && p.done > 0 {
                    c2.cancel()
                }
            }),
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_ABORTED");
        assert_eq!(fs::read(&dst).unwrap(), b"old contents");
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            2,
            "temporary file left behind"
        );
        // And a successful one replaces it, keeping the mode and the bytes before `seek`.
        let opts = CopyOptions {
            atomic: true,
            seek: 4,
            ..Default::default()
        };
        go(&src, &dst, &opts).unwrap();
        let got = fs::read(&dst).unwrap();
        assert_eq!(&got[..4], b"old ");
        assert_eq!(&got[4..], &pattern(4 << 20, 5)[..]);
        assert_eq!(fs::metadata(&dst).unwrap().mode() & 0o777, 0o640);
    }
}
