use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::{ControlFlow, Range};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use sparsekit_extents::{map_file, map_file_nosync, MapOptions, Method};

use crate::{sys, Error, Result};

/// Largest single transfer (one `copy_file_range`, `sendfile` or read/write round) and the
/// most data moved between two progress calls, so a cancel is seen within one chunk.
pub const CHUNK_SIZE: u64 = 16 << 20;
/// The read/write fallback's buffer, also used to write zeros.
const BUF_SIZE: usize = 1 << 20;
/// Progress is reported at most this often while many small extents are copied.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(50);

/// How the bytes are moved. [`CopyMethod::Auto`] tries them in the order listed and falls
/// back only when the kernel says a method cannot work for these files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CopyMethod {
    /// Reflink when possible, then `copy_file_range`, `sendfile`, read/write.
    #[default]
    Auto,
    /// `FICLONE` (whole file) or `FICLONERANGE`: share the source's blocks (btrfs, XFS with
    /// reflink). Same filesystem and block-aligned ranges only.
    Reflink,
    /// `copy_file_range` per data extent (in-kernel; may reflink or offload by itself).
    CopyFileRange,
    /// `sendfile` per data extent.
    Sendfile,
    /// `pread`/`pwrite` per data extent.
    ReadWrite,
}

impl CopyMethod {
    /// The method's name as accepted by [`FromStr`]: `auto`, `reflink`, `copy_file_range`,
    /// `sendfile`, `readwrite`.
    pub fn name(self) -> &'static str {
        match self {
            CopyMethod::Auto => "auto",
            CopyMethod::Reflink => "reflink",
            CopyMethod::CopyFileRange => "copy_file_range",
            CopyMethod::Sendfile => "sendfile",
            CopyMethod::ReadWrite => "readwrite",
        }
    }

    /// Higher is more capable; used to report the best method that moved data.
    fn rank(self) -> u8 {
        match self {
            CopyMethod::Reflink => 4,
            CopyMethod::CopyFileRange => 3,
            CopyMethod::Sendfile => 2,
            CopyMethod::ReadWrite => 1,
            CopyMethod::Auto => 0,
        }
    }

    /// The next method of the byte-moving chain.
    fn next(self) -> Option<CopyMethod> {
        match self {
            CopyMethod::CopyFileRange => Some(CopyMethod::Sendfile),
            CopyMethod::Sendfile => Some(CopyMethod::ReadWrite),
            _ => None,
        }
    }

    fn op(self) -> &'static str {
        match self {
            CopyMethod::Reflink => "ioctl(FICLONERANGE)",
            CopyMethod::CopyFileRange => "copy_file_range",
            CopyMethod::Sendfile => "sendfile",
            _ => "write",
        }
    }
}

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

impl std::fmt::Display for CopyMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

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
}

/// Errors after which another method may work (coreutils' `is_CopyFileRange_fallback_ok` and
/// `is_ENOTSUP`):
/// - ENOSYS: the syscall does not exist (copy_file_range before Linux 4.5, seccomp filters).
/// - EXDEV: source and destination on different filesystems (copy_file_range before 5.3
///   and again from 5.19, reflink always).
/// - EOPNOTSUPP/ENOTTY: the filesystem lacks the operation (reflink on ext4, tmpfs).
/// - EINVAL: unaligned reflink range, non-regular file (a block device destination of
///   copy_file_range), or a filesystem that rejects the flags.
/// - EBADF: the destination is opened O_APPEND, or the source cannot be read by this path.
/// - ETXTBSY: one of the files is an active swap file.
/// - EPERM/EACCES: some filesystems (and seccomp/LSM policies) deny the call itself; only a
///   fallback before any byte moved, as after that it is a real permission failure.
fn may_fall_back(e: &io::Error, nothing_copied: bool) -> bool {
    match e.raw_os_error() {
        Some(libc::ENOSYS | libc::EXDEV | libc::EOPNOTSUPP | libc::ENOTTY | libc::EINVAL)
        | Some(libc::EBADF | libc::ETXTBSY) => true,
        Some(libc::EPERM | libc::EACCES) => nothing_copied,
        _ => false,
    }
}

/// Copy `[skip, skip + length)` of `src` to `dst` at `seek`, preserving holes.
///
/// With default options the destination becomes a byte-identical sparse copy of the
/// source. Unwritten (preallocated) source ranges read as zeros and are copied as holes
/// (a reflink shares them as they are). The destination is created if missing; a block
/// device destination is opened `O_EXCL` (EBUSY when mounted), must be large enough and
/// is `fsync`ed at the end; a regular file is not synced (like `cp`: call `fsync` on it
/// when durability matters). A destination created before an error stays behind.
///
/// `progress(done, total)` gets window bytes processed (holes included) out of the window
/// length: once before any I/O on the destination, then at most every [`CHUNK_SIZE`] bytes
/// or 50 ms, and once at the end. `ControlFlow::Break(())` stops with [`Error::Aborted`].
pub fn copy(
    src: &Path,
    dst: &Path,
    opts: &CopyOptions,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
) -> Result<CopyReport> {
    let io_err = |path: &Path, op: &'static str, offset: Option<u64>| {
        let path = path.to_path_buf();
        move |source: io::Error| Error::Io {
            source,
            path,
            offset,
            op,
        }
    };
    let src_file = File::open(src).map_err(io_err(src, "open", None))?;
    let src_meta = src_file.metadata().map_err(io_err(src, "stat", None))?;
    let src_type = src_meta.file_type();
    if src_type.is_dir() {
        return Err(Error::IsADirectory(src.to_path_buf()));
    }
    if !src_type.is_file() && !src_type.is_block_device() {
        return Err(Error::NotAFile {
            path: src.to_path_buf(),
            kind: kind_of(&src_meta),
        });
    }
    let src_size = src_size(&src_file, src)?;
    let len = opts.length.map_or(src_size.saturating_sub(opts.skip), |l| {
        l.min(src_size.saturating_sub(opts.skip))
    });
    let dst_end = opts
        .seek
        .checked_add(len)
        .ok_or_else(|| Error::InvalidArg {
            name: "seek",
            value: opts.seek.to_string(),
        })?;
    if progress(0, len).is_break() {
        return Err(Error::Aborted);
    }

    // Open (or create) the destination without truncating it: the bytes before `seek`
    // are kept, and an error below must not have destroyed anything.
    let dst_meta = match fs::metadata(dst) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(dst, "stat", None)(e)),
    };
    let is_bdev = dst_meta
        .as_ref()
        .is_some_and(|m| m.file_type().is_block_device());
    if let Some(m) = &dst_meta {
        if m.is_dir() {
            return Err(Error::IsADirectory(dst.to_path_buf()));
        }
        if !m.is_file() && !is_bdev {
            return Err(Error::NotAFile {
                path: dst.to_path_buf(),
                kind: kind_of(m),
            });
        }
    }
    let dst_file = if is_bdev {
        sys::open_block_device_excl(dst)
    } else {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dst)
    }
    .map_err(io_err(dst, "open", None))?;
    let dst_meta = dst_file.metadata().map_err(io_err(dst, "stat", None))?;
    let same = if is_bdev {
        src_type.is_block_device() && src_meta.rdev() == dst_meta.rdev()
    } else {
        src_meta.dev() == dst_meta.dev() && src_meta.ino() == dst_meta.ino()
    };
    if same {
        return Err(Error::SameFile {
            src: src.to_path_buf(),
            dst: dst.to_path_buf(),
        });
    }
    if is_bdev {
        let size = sparsekit_extents::file_size(&dst_file)
            .map_err(|e| Error::Extents(e.with_path(dst)))?;
        if dst_end > size {
            return Err(Error::OutOfRange {
                path: dst.to_path_buf(),
                start: opts.seek,
                length: len,
                size,
            });
        }
    }

    let mut job = Job {
        src,
        dst,
        src_file: &src_file,
        dst_file: &dst_file,
        opts,
        len,
        progress,
        method: match opts.method {
            CopyMethod::Auto | CopyMethod::Reflink => CopyMethod::CopyFileRange,
            m => m,
        },
        best: CopyMethod::Auto,
        copied: 0,
        zeroed: 0,
        buf: Vec::new(),
        reported: 0,
        reported_at: Instant::now(),
    };

    // A forced reflink of a whole empty file still asks the kernel (FICLONE), so that
    // "reflink" is refused the same way whatever the file; other empty windows need no I/O.
    let whole = opts.skip == 0 && opts.seek == 0 && len == src_size;
    let reflinked = if (opts.method == CopyMethod::Reflink && (len > 0 || whole))
        || (opts.method == CopyMethod::Auto && !is_bdev && len > 0)
    {
        job.reflink(src_size, dst_meta.blksize())?
    } else {
        false
    };

    if !reflinked {
        if opts.method == CopyMethod::Reflink {
            // Nothing to clone (an empty window): done, with nothing moved.
            job.best = CopyMethod::Reflink;
        }
        // dd reads nothing when `skip` lies past the end: map an empty window at the end.
        let start = opts.skip.min(src_size);
        let map = map_file(
            &src_file,
            &MapOptions {
                start,
                length: Some(len),
                method: Method::Auto,
            },
        )
        .map_err(|e| Error::Extents(e.with_path(src)))?;
        // The source shrank between the stat above and the mapping: the map would show
        // its lost tail as a hole, which would silently become zeros.
        let src_end = start + len;
        if map.window.end < src_end {
            return Err(Error::ShortRead {
                path: src.to_path_buf(),
                offset: map.size,
            });
        }
        if !is_bdev && opts.truncate && dst_meta.len() > opts.seek {
            // Everything from `seek` on is replaced: cut it off so no stale byte survives
            // in a hole, then extend again at the end (the trailing hole).
            dst_file
                .set_len(opts.seek)
                .map_err(io_err(dst, "ftruncate", Some(opts.seek)))?;
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
        let now = src_size_now(&src_file, src)?;
        if now < src_end {
            return Err(Error::ShortRead {
                path: src.to_path_buf(),
                offset: now,
            });
        }
    }

    // Block devices are synced: the copy is usually a flash whose caller unplugs the
    // device next. Regular files are not (like cp and dd without conv=fsync): the page
    // cache writes them back, and a caller that needs durability can fsync them itself.
    if is_bdev {
        dst_file.sync_all().map_err(io_err(dst, "fsync", None))?;
    }
    let size = if is_bdev {
        sparsekit_extents::file_size(&dst_file).map_err(|e| Error::Extents(e.with_path(dst)))?
    } else {
        dst_file
            .metadata()
            .map_err(io_err(dst, "stat", None))?
            .len()
    };
    let method = if job.best == CopyMethod::Auto {
        job.method
    } else {
        job.best
    };
    let report = CopyReport {
        bytes_copied: job.copied,
        size,
        method,
        bytes_zeroed: job.zeroed,
    };
    if (job.progress)(len, len).is_break() {
        return Err(Error::Aborted);
    }
    Ok(report)
}

/// A buffer of zeros for writing `len` bytes: at most [`BUF_SIZE`], so small holes cost
/// small allocations.
fn zero_buf(len: u64) -> Vec<u8> {
    vec![0u8; len.min(BUF_SIZE as u64) as usize]
}

fn kind_of(m: &fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

fn src_size(file: &File, path: &Path) -> Result<u64> {
    sparsekit_extents::file_size(file).map_err(|e| Error::Extents(e.with_path(path)))
}

fn src_size_now(file: &File, path: &Path) -> Result<u64> {
    src_size(file, path)
}

/// The state of one copy.
struct Job<'a> {
    src: &'a Path,
    dst: &'a Path,
    src_file: &'a File,
    dst_file: &'a File,
    opts: &'a CopyOptions,
    len: u64,
    progress: &'a mut dyn FnMut(u64, u64) -> ControlFlow<()>,
    /// The byte-moving method in use now.
    method: CopyMethod,
    /// The most capable method that moved data so far (`Auto`: none yet).
    best: CopyMethod,
    copied: u64,
    zeroed: u64,
    /// The read/write fallback's buffer (empty until needed).
    buf: Vec<u8>,
    reported: u64,
    reported_at: Instant,
}

impl Job<'_> {
    /// Destination offset of source offset `pos`.
    fn dst_pos(&self, pos: u64) -> u64 {
        self.opts.seek + (pos - self.opts.skip)
    }

    fn io(&self, on_src: bool, op: &'static str, offset: u64) -> impl FnOnce(io::Error) -> Error {
        let path = if on_src { self.src } else { self.dst }.to_path_buf();
        move |source| Error::Io {
            source,
            path,
            offset: Some(offset),
            op,
        }
    }

    /// Report progress when a chunk's worth of bytes or enough time has passed.
    fn tick(&mut self, src_pos: u64) -> Result<()> {
        let done = src_pos - self.opts.skip;
        if done - self.reported >= CHUNK_SIZE || self.reported_at.elapsed() >= PROGRESS_INTERVAL {
            self.reported = done;
            self.reported_at = Instant::now();
            if (self.progress)(done, self.len).is_break() {
                return Err(Error::Aborted);
            }
        }
        Ok(())
    }

    fn used(&mut self, m: CopyMethod) {
        if m.rank() > self.best.rank() {
            self.best = m;
        }
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
            Err(io::Error::from_raw_os_error(libc::EINVAL))
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
        let map = map_file(
            self.src_file,
            &MapOptions {
                start: skip,
                length: Some(len),
                method: Method::Auto,
            },
        )
        .map_err(|e| Error::Extents(e.with_path(self.src)))?;
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
                    self.tick(pos)?;
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

    /// Write zeros over source range `h` (in destination coordinates).
    fn zero(&mut self, h: Range<u64>) -> Result<()> {
        let zeros = zero_buf(h.end - h.start);
        let mut pos = h.start;
        while pos < h.end {
            let n = (h.end - pos).min(zeros.len() as u64) as usize;
            let dpos = self.dst_pos(pos);
            self.dst_file
                .write_all_at(&zeros[..n], dpos)
                .map_err(self.io(false, "write", dpos))?;
            self.zeroed += n as u64;
            pos += n as u64;
            self.tick(pos)?;
        }
        Ok(())
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

    /// Make the destination's ranges under source holes read as zeros and hold no blocks:
    /// old data of an existing destination (notrunc), and blocks XFS speculative
    /// preallocation left inside the file. Only ranges the destination map shows as
    /// allocated are punched, so a fresh copy costs one mapping call.
    fn clear_holes(&mut self, holes: &[Range<u64>]) -> Result<()> {
        let start = self.dst_pos(self.opts.skip);
        // No FIEMAP_FLAG_SYNC: delayed allocations show up as extents anyway, and forcing
        // the whole copy to disk here would cost more than the copy itself.
        let dmap = map_file_nosync(
            self.dst_file,
            &MapOptions {
                start,
                length: Some(self.len),
                method: Method::Auto,
            },
        )
        .map_err(|e| Error::Extents(e.with_path(self.dst)))?;
        let mut allocated = dmap.extents.iter().map(|e| e.offset..e.end()).peekable();
        for h in holes {
            let (hs, he) = (self.dst_pos(h.start), self.dst_pos(h.end));
            while let Some(a) = allocated.peek() {
                if a.end <= hs {
                    allocated.next();
                    continue;
                }
                if a.start >= he {
                    break;
                }
                let (s, e) = (a.start.max(hs), a.end.min(he));
                self.punch(s, e)?;
                if a.end <= he {
                    allocated.next();
                } else {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Deallocate `[s, e)` of the destination; where the filesystem cannot punch holes
    /// (EOPNOTSUPP: e.g. older filesystems; ENOSYS), write zeros instead.
    fn punch(&mut self, s: u64, e: u64) -> Result<()> {
        match sys::punch_hole(self.dst_file, s, e - s) {
            Ok(()) => Ok(()),
            Err(err) if matches!(err.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS)) => {
                let zeros = zero_buf(e - s);
                let mut pos = s;
                while pos < e {
                    let n = (e - pos).min(zeros.len() as u64) as usize;
                    self.dst_file
                        .write_all_at(&zeros[..n], pos)
                        .map_err(self.io(false, "write", pos))?;
                    self.zeroed += n as u64;
                    pos += n as u64;
                }
                Ok(())
            }
            Err(err) => Err(self.io(false, "fallocate(PUNCH_HOLE)", s)(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn go(src: &Path, dst: &Path, opts: &CopyOptions) -> Result<CopyReport> {
        copy(src, dst, opts, &mut |_, _| ControlFlow::Continue(()))
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
            .collect()
    }

    #[test]
    fn method_names_round_trip() {
        for m in [
            CopyMethod::Auto,
            CopyMethod::Reflink,
            CopyMethod::CopyFileRange,
            CopyMethod::Sendfile,
            CopyMethod::ReadWrite,
        ] {
            assert_eq!(m.name().parse::<CopyMethod>().unwrap(), m);
        }
        let e = "rsync".parse::<CopyMethod>().unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_INVALID_ARG");
        assert!(e.to_string().contains("'rsync'"), "{e}");
    }

    #[test]
    fn fallback_errnos() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert!(may_fall_back(&e(libc::EXDEV), false));
        assert!(may_fall_back(&e(libc::EPERM), true));
        assert!(!may_fall_back(&e(libc::EPERM), false));
        for fatal in [libc::EIO, libc::ENOSPC, libc::EDQUOT, libc::ENOMEM] {
            assert!(!may_fall_back(&e(fatal), true), "{fatal}");
        }
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
            assert_eq!(e.code(), "ERR_SPARSEKIT_INVALID_ARG", "{e}");
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
        let e = copy(&src, &dst, &CopyOptions::default(), &mut |_, _| {
            ControlFlow::Break(())
        })
        .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_ABORTED");
        assert!(!dst.exists(), "aborted copy created the destination");
    }
}
