//! `bmaptool copy`: write the mapped ranges of a plain or compressed image to a file or
//! block device, checking each range's checksum as it streams, then optionally reading the
//! destination back past the page cache.

use sparsekit_io::sys::{self, FileTypeExt, MetadataExt};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use sparsekit_extents::{map_file, MapOptions};
use sparsekit_io::{
    Control, Counting, Faulty, FileKind, FileStorage, IoError, MemStorage, PageBuf, Phase, Storage,
    StorageCursor,
};

use crate::create::{create_from, CHUNK, DEFAULT_BLOCK_SIZE};
use crate::format::{Bmap, BmapRange, ChecksumType};
use crate::source::{Compression, Stream};
use crate::{par, Error, Result};

/// Where a destination's data goes: a [`Storage`] that may be a block device (never
/// truncated, size checked first) and may hold cached pages that a read-back has to drop.
pub trait Destination: Storage {
    /// A block device: fixed size, never truncated, every block written when there is no
    /// bmap (its old contents are not zeros).
    fn is_block_device(&self) -> bool {
        false
    }

    /// Drop cached pages of `[offset, offset + len)` so the next read comes from the
    /// device. Storage without a cache does nothing.
    fn drop_cache(&self, _offset: u64, _len: u64) -> std::result::Result<(), IoError> {
        Ok(())
    }

    /// Start writing `[offset, offset + len)` back to the device without waiting (a hint;
    /// storage without a cache does nothing).
    fn start_writeback(&self, _offset: u64, _len: u64) {}
}

impl Destination for FileStorage {
    fn is_block_device(&self) -> bool {
        self.kind() == FileKind::BlockDevice
    }

    fn drop_cache(&self, offset: u64, len: u64) -> std::result::Result<(), IoError> {
        sys::drop_cache(self.file(), offset, len).map_err(|e| {
            IoError::new("posix_fadvise(DONTNEED)", e)
                .with_path(Storage::path(self).unwrap_or(Path::new("")))
                .at(offset)
        })
    }

    fn start_writeback(&self, offset: u64, len: u64) {
        let _ = sys::start_writeback(self.file(), offset, len);
    }
}

impl Destination for MemStorage {}

/// A block device written with `O_DIRECT` (a second descriptor) where a write is
/// page-aligned in memory, offset and length: no copy into the page cache per write (the
/// CPU the kernel spent there was the larger part of a plain copy's), and a failing device
/// fails at the write that hit it. Other writes, and every write once the device refused
/// one with EINVAL, go through the buffered descriptor; reads, sync and the read-back's
/// cache dropping too. Where the OS offers no such descriptor, everything is buffered.
struct DirectDevice {
    buffered: FileStorage,
    direct: Option<fs::File>,
    refused: AtomicBool,
}

impl DirectDevice {
    fn new(buffered: FileStorage) -> DirectDevice {
        let direct = Storage::path(&buffered).and_then(|p| sparsekit_io::sys::open_direct(p).ok());
        DirectDevice {
            buffered,
            direct,
            refused: AtomicBool::new(false),
        }
    }

    fn aligned(buf: &[u8], offset: u64) -> bool {
        let page = sparsekit_io::PAGE;
        (buf.as_ptr() as usize).is_multiple_of(page)
            && offset.is_multiple_of(page as u64)
            && buf.len().is_multiple_of(page)
            && !buf.is_empty()
    }
}

impl Storage for DirectDevice {
    fn size(&self) -> std::result::Result<u64, IoError> {
        self.buffered.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::result::Result<usize, IoError> {
        self.buffered.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::result::Result<usize, IoError> {
        if let Some(f) = &self.direct {
            if !self.refused.load(Ordering::Relaxed) && Self::aligned(buf, offset) {
                use sparsekit_io::sys::FileExt;
                match f.write_at(buf, offset) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.raw_os_error() == Some(sparsekit_io::errno::EINVAL) => {
                        self.refused.store(true, Ordering::Relaxed);
                    }
                    Err(e) => {
                        return Err(IoError::new("pwrite", e)
                            .with_path(Storage::path(self).unwrap_or(Path::new("")))
                            .at(offset))
                    }
                }
            }
        }
        self.buffered.write_at(buf, offset)
    }
    fn flush(&self) -> std::result::Result<(), IoError> {
        self.buffered.flush()
    }
    fn path(&self) -> Option<&Path> {
        Storage::path(&self.buffered)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> std::result::Result<(), IoError> {
        self.buffered.write_zeroes(offset, len)
    }
    fn punch_hole(&self, offset: u64, len: u64) -> std::result::Result<(), IoError> {
        self.buffered.punch_hole(offset, len)
    }
    fn set_len(&self, len: u64) -> std::result::Result<(), IoError> {
        self.buffered.set_len(len)
    }
}

impl Destination for DirectDevice {
    fn is_block_device(&self) -> bool {
        true
    }
    fn drop_cache(&self, offset: u64, len: u64) -> std::result::Result<(), IoError> {
        self.buffered.drop_cache(offset, len)
    }
    fn start_writeback(&self, offset: u64, len: u64) {
        self.buffered.start_writeback(offset, len)
    }
}

impl<S: Destination> Destination for Faulty<S> {
    fn is_block_device(&self) -> bool {
        self.inner().is_block_device()
    }
    fn drop_cache(&self, offset: u64, len: u64) -> std::result::Result<(), IoError> {
        self.inner().drop_cache(offset, len)
    }
    fn start_writeback(&self, offset: u64, len: u64) {
        self.inner().start_writeback(offset, len)
    }
}

/// Which bmap [`copy`] uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum BmapChoice {
    /// `IMAGE.bmap` beside the image, also with the image's extensions taken off one by
    /// one (`img.raw.xz` -> `img.raw.xz.bmap`, `img.raw.bmap`, `img.bmap`), as bmaptool
    /// looks; none found means [`BmapChoice::None`].
    #[default]
    Auto,
    /// No bmap (`bmaptool copy --nobmap`): a plain image's own holes are skipped, a
    /// compressed one is written whole (all-zero blocks skipped on a file destination).
    None,
    /// This bmap file.
    Path(PathBuf),
    /// This bmap.
    Given(Box<Bmap>),
}

/// The bmap `choice` names, and where it came from: none; the one given (from nowhere);
/// the one read from a path; for [`BmapChoice::Auto`], what `find` finds (a local image's
/// [`local_bmap`], an HTTP source's `URL.bmap`). The one place a [`BmapChoice`] is decided,
/// for every copy and flash.
pub fn resolve_bmap<E: From<Error>>(
    choice: &BmapChoice,
    cancel: &sparsekit_io::Cancel,
    find: impl FnOnce() -> std::result::Result<Option<(Bmap, PathBuf)>, E>,
) -> std::result::Result<(Option<Bmap>, Option<PathBuf>), E> {
    Ok(match choice {
        BmapChoice::None => (None, None),
        BmapChoice::Given(b) => (Some((**b).clone()), None),
        BmapChoice::Path(p) => (Some(Bmap::read_with(p, cancel)?), Some(p.clone())),
        BmapChoice::Auto => match find()? {
            Some((b, from)) => (Some(b), Some(from)),
            None => (None, None),
        },
    })
}

/// The bmap beside a local `image` ([`find_bmap`]), read, with its path; none when there
/// is none.
pub fn local_bmap(image: &Path, cancel: &sparsekit_io::Cancel) -> Result<Option<(Bmap, PathBuf)>> {
    match find_bmap(image) {
        Some(p) => Ok(Some((Bmap::read_with(&p, cancel)?, p))),
        None => Ok(None),
    }
}

/// What [`copy`] does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyOptions {
    /// The bmap to use.
    pub bmap: BmapChoice,
    /// Check each range's checksum from the bmap while it is copied (default `true`;
    /// `bmaptool copy --no-verify` turns it off).
    pub verify: bool,
    /// After writing and `fsync`, read every written range back from the destination
    /// (its cached pages dropped first) and compare (default `false`).
    pub read_back: bool,
    /// Create a destination that does not exist as a regular file (default `false`: a
    /// missing destination is refused with `ENOENT`, as a drive that was removed must
    /// not become a file; paths under `/dev` are never created).
    pub create_files: bool,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            bmap: BmapChoice::Auto,
            verify: true,
            read_back: false,
            create_files: false,
        }
    }
}

/// What [`copy`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyReport {
    /// Bytes written to the destination.
    pub bytes_written: u64,
    /// Size of the image (of the decompressed stream when there was no bmap).
    pub image_size: u64,
    /// The bmap file used, when one was read from a file.
    pub bmap_path: Option<PathBuf>,
    /// Whether a bmap was used.
    pub used_bmap: bool,
    /// The image's compression.
    pub compression: Option<Compression>,
    /// Ranges whose checksum was verified while copying.
    pub ranges_verified: u64,
    /// Ranges read back from the destination and found equal.
    pub ranges_read_back: u64,
}

/// The bmap file bmaptool would find for `image`: `IMAGE.bmap`, then the same with the
/// image's extensions taken off one at a time.
pub fn find_bmap(image: &Path) -> Option<PathBuf> {
    let mut base = image.to_path_buf();
    for _ in 0..8 {
        let mut cand = base.clone().into_os_string();
        cand.push(".bmap");
        let cand = PathBuf::from(cand);
        if cand.is_file() {
            return Some(cand);
        }
        base.extension()?;
        base.set_extension("");
    }
    None
}

/// A source of image bytes for [`copy_to`].
pub enum Source<'a> {
    /// A plain image read at offsets (ranges are copied in parallel).
    Plain(&'a dyn Storage),
    /// A compressed image, read front to back.
    Compressed {
        /// The compressed bytes.
        input: Box<dyn Read + Send>,
        /// Its format.
        format: Compression,
        /// Its size in bytes, for progress.
        size: Option<u64>,
        /// Where `input` counts the compressed bytes it gave out (for progress).
        consumed: Arc<AtomicU64>,
    },
}

/// Copy (flash) the image at `image` to `dst` (a regular file, created if missing only with
/// [`CopyOptions::create_files`], or a block device, opened `O_EXCL`). See [`copy_to`] for what is written; this function
/// adds opening, compression detection, bmap discovery and path context.
pub fn copy(
    image: &Path,
    dst: &Path,
    opts: &CopyOptions,
    ctl: &mut Control<'_>,
) -> Result<CopyReport> {
    let src = FileStorage::open(image)?;
    let src_meta = src
        .file()
        .metadata()
        .map_err(|e| IoError::new("stat", e).with_path(image))?;
    let dst_meta = fs::metadata(dst).ok();
    if let Some(m) = &dst_meta {
        if m.dev() == src_meta.dev() && m.ino() == src_meta.ino() {
            return Err(Error::InvalidArg {
                name: "destination",
                value: format!("'{}' is the image itself", dst.display()),
            });
        }
    }
    let (bmap, bmap_path) =
        resolve_bmap(&opts.bmap, ctl.cancel(), || local_bmap(image, ctl.cancel()))?;
    let mut head = [0u8; 6];
    let n = src.read_at(&mut head, 0)?;
    let compression = Compression::detect(&head[..n]);
    let is_dev = dst_meta.is_some_and(|m| m.file_type().is_block_device());
    // O_EXCL on a block device fails with EBUSY while it is mounted or held (open(2)).
    let out = FileStorage::open_destination(dst, opts.create_files, is_dev)?;
    let out: Box<dyn Destination> = if is_dev {
        Box::new(DirectDevice::new(out))
    } else {
        Box::new(out)
    };
    let source = match compression {
        None => None,
        Some(format) => {
            // Without a bmap nothing else says how large the image is: refuse a device
            // too small for it before writing, when the container records the size.
            if is_dev && bmap.is_none() {
                if let Some(size) =
                    crate::size::decompressed_size(&src, format).map_err(|e| e.with_path(image))?
                {
                    prepare(&*out, Some(size)).map_err(|e| e.with_path(dst))?;
                }
            }
            let _ = sys::sequential(src.file());
            Some(format)
        }
    };
    let fix = |e: Error| match e {
        Error::ReadBackMismatch { .. } | Error::DestinationTooSmall { .. } => e.with_path(dst),
        e => e.with_path(image),
    };
    let mut report = match source {
        None => {
            let bmap = match bmap {
                Some(b) => b,
                None => {
                    // No bmap: the image's own holes.
                    ctl.report(Phase::Map, 0, None)?;
                    let map = map_file(src.file(), &MapOptions::default())
                        .map_err(|e| e.with_path(image))?;
                    ctl.report(Phase::Map, map.size, Some(map.size))?;
                    create_from(
                        &src,
                        map.size,
                        &map.data_ranges(),
                        DEFAULT_BLOCK_SIZE,
                        None,
                        ctl,
                    )?
                }
            };
            copy_to(Source::Plain(&src), Some(&bmap), &*out, opts, ctl).map_err(fix)?
        }
        Some(format) => {
            let size = src.size()?;
            let consumed = Arc::new(AtomicU64::new(0));
            let input = Box::new(Counting::new(StorageCursor::new(src), consumed.clone()));
            let s = Source::Compressed {
                input,
                format,
                size: Some(size),
                consumed,
            };
            copy_to(s, bmap.as_ref(), &*out, opts, ctl).map_err(fix)?
        }
    };
    report.bmap_path = bmap_path;
    Ok(report)
}

/// A written range and the digest of what was written there, for read-back.
struct Written {
    first: u64,
    last: u64,
    start: u64,
    end: u64,
    digest: Option<(ChecksumType, String)>,
}

/// Write `source` to `dst` following `bmap` (or, without one, the whole decompressed
/// stream, skipping all-zero blocks on a file destination).
///
/// - A file destination is truncated to 0 and then to the image size, so unmapped ranges
///   are holes; a block device is checked to be large enough before anything is written,
///   and never truncated.
/// - With `opts.verify`, every range with a checksum is hashed as it is copied; a
///   mismatch is [`Error::ChecksumMismatch`] naming the range (it may have been written).
/// - The destination is `fsync`ed ([`Phase::Sync`]); with `opts.read_back` every written
///   range is then re-read with its cached pages dropped and compared
///   ([`Phase::Verify`]); the first bad one is [`Error::ReadBackMismatch`].
///
/// Progress: [`Phase::Write`] (mapped bytes) for a plain source, [`Phase::Decompress`]
/// (compressed bytes read) for a compressed one, then [`Phase::Sync`] and [`Phase::Verify`].
pub fn copy_to<D: Destination + ?Sized>(
    source: Source<'_>,
    bmap: Option<&Bmap>,
    dst: &D,
    opts: &CopyOptions,
    ctl: &mut Control<'_>,
) -> Result<CopyReport> {
    let mut report = CopyReport {
        bytes_written: 0,
        image_size: 0,
        bmap_path: None,
        used_bmap: bmap.is_some(),
        compression: None,
        ranges_verified: 0,
        ranges_read_back: 0,
    };
    let written = match (source, bmap) {
        (Source::Plain(src), Some(b)) => {
            report.image_size = b.image_size;
            let needed = b
                .ranges
                .last()
                .map_or(0, |r| r.bytes(b.block_size, b.image_size).1);
            let have = src.size()?;
            if have < needed {
                return Err(Error::ImageTruncated {
                    path: src.path().map(Path::to_path_buf),
                    size: have,
                    needed,
                });
            }
            prepare(dst, Some(b.image_size))?;
            plain(src, b, dst, opts, ctl, &mut report)?
        }
        (Source::Plain(src), None) => {
            // Everything is data.
            let size = src.size()?;
            let b = create_from(
                src,
                size,
                std::slice::from_ref(&(0..size)),
                DEFAULT_BLOCK_SIZE,
                None,
                ctl,
            )?;
            report.image_size = size;
            prepare(dst, Some(size))?;
            plain(src, &b, dst, opts, ctl, &mut report)?
        }
        (
            Source::Compressed {
                input,
                format,
                size,
                consumed,
            },
            b,
        ) => {
            report.compression = Some(format);
            let mut stream = Stream::spawn(input, format, consumed);
            let total = size;
            ctl.report(Phase::Decompress, 0, total)?;
            let w = match b {
                Some(b) => {
                    report.image_size = b.image_size;
                    prepare(dst, Some(b.image_size))?;
                    streamed(&mut stream, b, dst, opts, ctl, total, &mut report)?
                }
                None => {
                    prepare(dst, None)?;
                    let w = whole(&mut stream, dst, opts, ctl, total, &mut report)?;
                    report.image_size = stream.pos;
                    if !dst.is_block_device() {
                        dst.set_len(stream.pos)?;
                    }
                    w
                }
            };
            let done = total.unwrap_or(stream.consumed.load(std::sync::atomic::Ordering::Relaxed));
            ctl.report(Phase::Decompress, done, Some(done))?;
            w
        }
    };
    // Sync counts the bytes written that it makes durable (not 0/1: a bar would draw
    // "0.0/0.0 MiB").
    let total: u64 = written.iter().map(|w| w.end - w.start).sum();
    ctl.report(Phase::Sync, 0, Some(total))?;
    dst.flush()?;
    ctl.report(Phase::Sync, total, Some(total))?;
    if opts.read_back {
        par::for_each(&written, total, Phase::Verify, ctl, |w, worker| {
            let Some((cs, want)) = &w.digest else {
                return Ok(());
            };
            dst.drop_cache(w.start, w.end - w.start)?;
            let got = crate::create::hash_range(dst, w.start, w.end, *cs, worker)?;
            if &got != want {
                return Err(Error::ReadBackMismatch {
                    path: dst.path().map(Path::to_path_buf),
                    first: w.first,
                    last: w.last,
                    bytes: (w.start, w.end),
                });
            }
            Ok(())
        })?;
        report.ranges_read_back = written.len() as u64;
    }
    Ok(report)
}

/// Get the destination ready: a block device must hold `size` bytes; a file is emptied
/// and, when the size is known, extended to it (a hole).
fn prepare<D: Destination + ?Sized>(dst: &D, size: Option<u64>) -> Result<()> {
    if dst.is_block_device() {
        if let Some(size) = size {
            let have = dst.size()?;
            if have < size {
                return Err(Error::DestinationTooSmall {
                    path: dst.path().map(Path::to_path_buf),
                    image_size: size,
                    dest_size: have,
                });
            }
        }
        return Ok(());
    }
    dst.set_len(0)?;
    if let Some(size) = size {
        dst.set_len(size)?;
    }
    Ok(())
}

/// What to hash a range with while copying: the bmap's checksum (when verifying), and
/// our own digest for read-back when the bmap's is not checked or absent.
fn hashers(r: &BmapRange, opts: &CopyOptions) -> (bool, bool) {
    let verify = opts.verify && r.checksum.is_some();
    let own = opts.read_back && !verify;
    (verify, own)
}

fn mismatch(src: Option<&Path>, b: &Bmap, r: &BmapRange, actual: String) -> Error {
    Error::ChecksumMismatch {
        path: src.map(Path::to_path_buf),
        first: r.first,
        last: r.last,
        bytes: r.bytes(b.block_size, b.image_size),
        expected: r.checksum.clone().unwrap_or_default(),
        actual,
    }
}

fn plain<D: Destination + ?Sized>(
    src: &dyn Storage,
    b: &Bmap,
    dst: &D,
    opts: &CopyOptions,
    ctl: &mut Control<'_>,
    report: &mut CopyReport,
) -> Result<Vec<Written>> {
    let total = b.mapped_bytes();
    let cs = b.checksum_type;
    let out = par::for_each(&b.ranges, total, Phase::Write, ctl, |r, w| {
        let (start, end) = r.bytes(b.block_size, b.image_size);
        let (verify, own) = hashers(r, opts);
        let mut hv = verify.then(|| cs.hasher());
        let mut ho = own.then(|| ChecksumType::Sha256.hasher());
        // Page-aligned: faster page-cache copies, and O_DIRECT on a block device.
        let mut buf = PageBuf::new(CHUNK.min((end - start) as usize));
        let mut off = start;
        while off < end {
            let n = ((end - off) as usize).min(buf.len());
            src.read_exact_at(&mut buf[..n], off)?;
            if let Some(h) = &mut hv {
                h.update(&buf[..n]);
            }
            if let Some(h) = &mut ho {
                h.update(&buf[..n]);
            }
            dst.write_all_at(&buf[..n], off)?;
            dst.start_writeback(off, n as u64);
            off += n as u64;
            w.done(n as u64)?;
        }
        let digest = if let Some(h) = hv {
            let got = h.finish_hex();
            if Some(&got) != r.checksum.as_ref() {
                return Err(mismatch(src.path(), b, r, got));
            }
            Some((cs, got))
        } else {
            ho.map(|h| (ChecksumType::Sha256, h.finish_hex()))
        };
        Ok(Written {
            first: r.first,
            last: r.last,
            start,
            end,
            digest,
        })
    })?;
    report.bytes_written = total;
    report.ranges_verified = if opts.verify {
        b.ranges.iter().filter(|r| r.checksum.is_some()).count() as u64
    } else {
        0
    };
    Ok(out)
}

fn streamed<D: Destination + ?Sized>(
    stream: &mut Stream,
    b: &Bmap,
    dst: &D,
    opts: &CopyOptions,
    ctl: &mut Control<'_>,
    total: Option<u64>,
    report: &mut CopyReport,
) -> Result<Vec<Written>> {
    let cs = b.checksum_type;
    let mut out = Vec::with_capacity(b.ranges.len());
    for r in &b.ranges {
        let (start, end) = r.bytes(b.block_size, b.image_size);
        let truncated = |pos: u64| Error::ImageTruncated {
            path: None,
            size: pos,
            needed: end,
        };
        if !stream.skip_to(start)? {
            return Err(truncated(stream.pos));
        }
        let (verify, own) = hashers(r, opts);
        let mut hv = verify.then(|| cs.hasher());
        let mut ho = own.then(|| ChecksumType::Sha256.hasher());
        while stream.pos < end {
            let want = (end - stream.pos).min(CHUNK as u64) as usize;
            let off = stream.pos;
            let data = stream.next(want)?;
            if data.is_empty() {
                return Err(truncated(off));
            }
            if let Some(h) = &mut hv {
                h.update(data);
            }
            if let Some(h) = &mut ho {
                h.update(data);
            }
            dst.write_all_at(data, off)?;
            dst.start_writeback(off, data.len() as u64);
            report.bytes_written += data.len() as u64;
            let c = stream.consumed.load(std::sync::atomic::Ordering::Relaxed);
            ctl.report(Phase::Decompress, total.map_or(c, |t| c.min(t)), total)?;
        }
        let digest = if let Some(h) = hv {
            let got = h.finish_hex();
            if Some(&got) != r.checksum.as_ref() {
                return Err(mismatch(None, b, r, got));
            }
            report.ranges_verified += 1;
            Some((cs, got))
        } else {
            ho.map(|h| (ChecksumType::Sha256, h.finish_hex()))
        };
        out.push(Written {
            first: r.first,
            last: r.last,
            start,
            end,
            digest,
        });
    }
    Ok(out)
}

/// No bmap, compressed: write the whole stream; on a file destination (emptied first)
/// all-zero blocks are skipped and stay holes.
fn whole<D: Destination + ?Sized>(
    stream: &mut Stream,
    dst: &D,
    opts: &CopyOptions,
    ctl: &mut Control<'_>,
    total: Option<u64>,
    report: &mut CopyReport,
) -> Result<Vec<Written>> {
    const BS: usize = DEFAULT_BLOCK_SIZE as usize;
    let skip_zeros = !dst.is_block_device();
    let mut out: Vec<Written> = Vec::new();
    loop {
        let base = stream.pos;
        let data = stream.next(CHUNK)?;
        if data.is_empty() {
            break;
        }
        // Runs of blocks to write: everything, or the blocks that are not all zeros.
        let mut i = 0;
        while i < data.len() {
            let block_end = |j: usize| (j + BS).min(data.len());
            let is_zero = |j: usize| skip_zeros && sparsekit_io::is_zero(&data[j..block_end(j)]);
            if is_zero(i) {
                i = block_end(i);
                continue;
            }
            let mut j = i;
            while j < data.len() && !is_zero(j) {
                j = block_end(j);
            }
            let off = base + i as u64;
            dst.write_all_at(&data[i..j], off)?;
            dst.start_writeback(off, (j - i) as u64);
            report.bytes_written += (j - i) as u64;
            out.push(Written {
                first: off / BS as u64,
                last: (off + (j - i) as u64 - 1) / BS as u64,
                start: off,
                end: off + (j - i) as u64,
                digest: opts.read_back.then(|| {
                    (
                        ChecksumType::Sha256,
                        ChecksumType::Sha256.digest_hex(&data[i..j]),
                    )
                }),
            });
            i = j;
        }
        let c = stream.consumed.load(std::sync::atomic::Ordering::Relaxed);
        ctl.report(Phase::Decompress, total.map_or(c, |t| c.min(t)), total)?;
    }
    Ok(out)
}
