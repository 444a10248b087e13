//! Drive backup: an image of a drive (or of any image) holding only what its file systems
//! use, that flashes back fast.
//!
//! [`backup`] reads the source's [`sparsekit_layout::layout`] and copies only the used
//! ranges (partition tables, the gap before the first partition, every used block, whole
//! unknown partitions: free blocks are never read) into a sparse image file, written
//! beside the output and renamed into place. With `shrink` the image ends at the end of
//! the last partition, so it fits a smaller card: for GPT the backup entries and header are
//! rewritten at the new end (both headers' CRCs and the primary's alternate LBA fixed, the
//! protective MBR's size too); for MBR it is plain truncation. With `bmap` a bmap 2.0 file
//! (SHA-256 per range, only the used ranges mapped) is written beside it, so `flash`,
//! `bmap copy` and `bmaptool copy` write back only those. With `verify` the output is read
//! back past the page cache and compared per range. The report carries the image's
//! SHA-256.
#![deny(missing_docs)]

mod read;
mod zst;

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use sparsekit_bmap::{Bmap, BmapRange, ChecksumType};
use sparsekit_io::{Control, ErrorInfo, FileStorage, IoError, PageBuf, Phase, Storage, TempBeside};
use sparsekit_layout::Table;

use read::{Chunk, Pool};

/// The bmap block size: what `bmaptool create` uses.
const BLOCK: u64 = 4096;
/// Bytes copied per read.
const CHUNK: usize = 4 << 20;

/// How many chunks the reading may run ahead of the slowest consumer (the compressors of
/// a `.img.zst`, the whole image's hasher): 1/64 of the machine's memory, between 8 and
/// 64 chunks (32–256 MiB). The hasher is a serial chain over the whole image, zeros
/// included (3.4 GiB of a 4 GiB card with 600 MiB used), and a card's used blocks mostly
/// come first: while the compressors work through them, the hasher can only go as far
/// as the reading got. With 8 chunks a backup of such a card took 5.0 s on 2 cores, with
/// 64 4.4–4.6 s (BENCHMARKS.md).
pub(crate) fn read_ahead() -> usize {
    let budget = sparsekit_io::sys::physical_memory().unwrap_or(0) / 64;
    ((budget / CHUNK as u64) as usize).clamp(8, 64)
}

/// Open a backup's source for reading: a drive is read once from end to end, so past the
/// page cache ([`FileStorage::read_direct`]); an image file through the cache, which may
/// hold it already.
pub fn open_source(path: &Path) -> std::result::Result<FileStorage, IoError> {
    let s = FileStorage::open(path)?;
    Ok(if s.kind() == sparsekit_io::FileKind::BlockDevice {
        s.read_direct()
    } else {
        s
    })
}

/// What [`backup`] does.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// Write `OUTPUT.bmap` beside the image (default `true`).
    pub bmap: bool,
    /// End the image at the end of the last partition (default `true`).
    pub shrink: bool,
    /// Read the image back past the page cache and compare (default `true`).
    pub verify: bool,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            bmap: true,
            shrink: true,
            verify: true,
        }
    }
}

/// What [`backup`] did.
#[derive(Clone, Debug)]
pub struct BackupReport {
    /// The source's size.
    pub source_size: u64,
    /// The image's size (smaller than the source when shrunk).
    pub image_size: u64,
    /// Bytes read from the source and written: the used ranges.
    pub bytes_copied: u64,
    /// The partition table: `gpt`, `mbr` or `none`.
    pub table: &'static str,
    /// Lowercase hex SHA-256 of the whole image (free ranges read as zeros).
    pub sha256: String,
    /// The bmap written beside the image.
    pub bmap: Option<PathBuf>,
    /// The bytes cut off the end (`source_size - image_size`): after the last partition.
    pub cut_bytes: u64,
    /// Read back and found equal.
    pub verified: bool,
}

/// What can go wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading the source or writing the image failed (the range is in the error).
    Io(IoError),
    /// The source's partition table or a file system could not be read.
    Layout(sparsekit_layout::Error),
    /// The GPT to rewrite at the new end is not one this crate can rewrite. Code
    /// `ERR_SPARSEKIT_BACKUP_GPT`.
    Gpt {
        /// What is wrong.
        message: String,
    },
    /// The image read back differs from what was read from the source. Code
    /// `ERR_SPARSEKIT_CHECKSUM_MISMATCH`.
    Mismatch {
        /// The image.
        path: PathBuf,
        /// The range `(start, length)` that differs.
        range: (u64, u64),
    },
    /// Cancelled. Code `ERR_SPARSEKIT_ABORTED`.
    Aborted,
}

/// `Result` of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => e.fmt(f),
            Error::Layout(e) => e.fmt(f),
            Error::Gpt { message } => write!(f, "backup: cannot rewrite the GPT: {message}"),
            Error::Mismatch { path, range } => write!(
                f,
                "backup: '{}' reads back different from the source at bytes {}..{}",
                path.display(),
                range.0,
                range.0 + range.1
            ),
            Error::Aborted => f.write_str("the operation was aborted"),
        }
    }
}

impl std::error::Error for Error {}

impl ErrorInfo for Error {
    fn code(&self) -> &'static str {
        match self {
            Error::Io(_) => "ERR_SPARSEKIT_IO",
            Error::Layout(e) => e.code(),
            Error::Gpt { .. } => "ERR_SPARSEKIT_BACKUP_GPT",
            Error::Mismatch { .. } => "ERR_SPARSEKIT_CHECKSUM_MISMATCH",
            Error::Aborted => "ERR_SPARSEKIT_ABORTED",
        }
    }
    fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            Error::Layout(e) => e.raw_os_error(),
            _ => None,
        }
    }
    fn path(&self) -> Option<&Path> {
        match self {
            Error::Io(e) => e.path.as_deref(),
            Error::Layout(e) => e.path(),
            Error::Mismatch { path, .. } => Some(path),
            _ => None,
        }
    }
    fn offset(&self) -> Option<u64> {
        match self {
            Error::Io(e) => e.offset,
            Error::Layout(e) => e.offset(),
            _ => None,
        }
    }
    fn syscall(&self) -> Option<&'static str> {
        match self {
            Error::Io(e) => e.syscall(),
            _ => None,
        }
    }
    fn range(&self) -> Option<(u64, u64)> {
        match self {
            Error::Mismatch { range, .. } => Some(*range),
            _ => None,
        }
    }
}

impl From<IoError> for Error {
    fn from(e: IoError) -> Self {
        Error::Io(e)
    }
}

impl From<sparsekit_io::Aborted> for Error {
    fn from(_: sparsekit_io::Aborted) -> Self {
        Error::Aborted
    }
}

/// A GPT header's fields this crate rewrites.
struct Gpt {
    sector: u64,
    header: Vec<u8>,
    entries: Vec<u8>,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Gpt {
    /// The primary header (LBA 1) and its entry array, checked (signature, sizes, CRCs).
    fn read(src: &dyn Storage, sector: u64) -> Result<Gpt> {
        let bad = |m: &str| Error::Gpt {
            message: m.to_string(),
        };
        let mut s = vec![0u8; sector as usize];
        src.read_exact_at(&mut s, sector)?;
        if &s[..8] != b"EFI PART" {
            return Err(bad("no primary GPT header at LBA 1"));
        }
        let hsize = le32(&s, 12) as usize;
        if !(92..=sector as usize).contains(&hsize) {
            return Err(bad("the primary header's size is out of range"));
        }
        let mut h = s[..hsize].to_vec();
        let crc = le32(&h, 16);
        h[16..20].fill(0);
        if crc32fast::hash(&h) != crc {
            return Err(bad("the primary header's CRC does not match"));
        }
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        let (n, esize) = (u64::from(le32(&h, 80)), u64::from(le32(&h, 84)));
        let len = n * esize;
        if esize < 128 || n == 0 || len > 4 << 20 {
            return Err(bad("the entry array's size is out of range"));
        }
        let mut entries = vec![0u8; len as usize];
        src.read_exact_at(&mut entries, le64(&h, 72) * sector)?;
        if crc32fast::hash(&entries) != le32(&h, 88) {
            return Err(bad("the entry array's CRC does not match"));
        }
        Ok(Gpt {
            sector,
            header: h,
            entries,
        })
    }

    /// Sectors the entry array takes.
    fn entry_sectors(&self) -> u64 {
        (self.entries.len() as u64).div_ceil(self.sector)
    }

    /// The primary header and the backup header and entries for a disk of `size` bytes:
    /// `(offset, bytes)` to write.
    fn rewrite(&self, size: u64) -> Vec<(u64, Vec<u8>)> {
        let ss = self.sector;
        let last = size / ss - 1;
        let backup_entries = last - self.entry_sectors();
        let set64 =
            |h: &mut Vec<u8>, at: usize, v: u64| h[at..at + 8].copy_from_slice(&v.to_le_bytes());
        let seal = |mut h: Vec<u8>| {
            h[16..20].fill(0);
            let crc = crc32fast::hash(&h);
            h[16..20].copy_from_slice(&crc.to_le_bytes());
            h
        };
        let mut primary = self.header.clone();
        set64(&mut primary, 32, last); // alternate LBA
        set64(&mut primary, 48, backup_entries - 1); // last usable LBA
        let mut backup = primary.clone();
        set64(&mut backup, 24, last); // my LBA
        set64(&mut backup, 32, 1); // alternate LBA
        set64(&mut backup, 72, backup_entries); // entries LBA
        let mut entries = self.entries.clone();
        entries.resize((self.entry_sectors() * ss) as usize, 0);
        vec![
            (ss, seal(primary)),
            (backup_entries * ss, entries),
            (last * ss, seal(backup)),
        ]
    }
}

/// The protective MBR's 0xEE entry sized for a disk of `size` bytes, if the MBR has one.
fn protective_mbr(mbr: &[u8; 512], size: u64, sector: u64) -> Option<[u8; 512]> {
    let mut m = *mbr;
    for i in 0..4 {
        let e = 446 + 16 * i;
        if m[e + 4] == 0xEE {
            let count = (size / sector - 1).min(u64::from(u32::MAX)) as u32;
            m[e + 12..e + 16].copy_from_slice(&count.to_le_bytes());
            return Some(m);
        }
    }
    None
}

/// A streaming compressed output's encoder, by the output's name (`.zst` outputs are
/// written by [`zst`], frame by frame).
enum Enc {
    Xz(liblzma::write::XzEncoder<File>),
    Gz(flate2::write::GzEncoder<File>),
}

impl Enc {
    /// The encoder `output`'s name asks for (`.xz`, `.gz`), over `file`.
    fn for_name(
        output: &Path,
        file: File,
    ) -> std::io::Result<Option<(Enc, sparsekit_bmap::Compression)>> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        let ext = output.extension().map(|e| e.to_ascii_lowercase());
        Ok(Some(match ext.as_ref().and_then(|e| e.to_str()) {
            Some("xz") => {
                let stream = liblzma::stream::MtStreamBuilder::new()
                    .threads(threads)
                    .preset(6)
                    .check(liblzma::stream::Check::Crc64)
                    .encoder()
                    .map_err(std::io::Error::other)?;
                (
                    Enc::Xz(liblzma::write::XzEncoder::new_stream(file, stream)),
                    sparsekit_bmap::Compression::Xz,
                )
            }
            Some("gz") => (
                Enc::Gz(flate2::write::GzEncoder::new(
                    file,
                    flate2::Compression::default(),
                )),
                sparsekit_bmap::Compression::Gzip,
            ),
            _ => return Ok(None),
        }))
    }

    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        match self {
            Enc::Xz(e) => e.write_all(b),
            Enc::Gz(e) => e.write_all(b),
        }
    }

    fn finish(self) -> std::io::Result<File> {
        match self {
            Enc::Xz(e) => e.finish(),
            Enc::Gz(e) => e.finish(),
        }
    }
}

/// What a backup copies: the image's end, the used ranges inside it (whole bmap blocks,
/// merged) and the bytes the GPT rewrite puts over the source's.
struct Plan {
    source_size: u64,
    end: u64,
    table: &'static str,
    tail: Vec<(u64, Vec<u8>)>,
    ranges: Vec<(u64, u64)>,
    total: u64,
}

impl Plan {
    /// Read `n` bytes at `at` as the image has them: the source's (zeros past its end),
    /// with the GPT rewrite laid over.
    fn read(&self, source: &dyn Storage, b: &mut [u8], at: u64) -> Result<()> {
        let n = b.len();
        let avail = self.source_size.saturating_sub(at).min(n as u64) as usize;
        source.read_exact_at(&mut b[..avail], at)?;
        b[avail..].fill(0);
        for (t_at, t) in &self.tail {
            let (t_s, t_e) = (*t_at, t_at + t.len() as u64);
            let (o_s, o_e) = (t_s.max(at), t_e.min(at + n as u64));
            if o_s < o_e {
                b[(o_s - at) as usize..(o_e - at) as usize]
                    .copy_from_slice(&t[(o_s - t_s) as usize..(o_e - t_s) as usize]);
            }
        }
        Ok(())
    }
}

fn plan(source: &dyn Storage, opts: &BackupOptions, ctl: &mut Control) -> Result<Plan> {
    let l = sparsekit_layout::layout(source, ctl).map_err(Error::Layout)?;
    let source_size = l.size;
    let ss = u64::from(l.sector_size);
    // Where the image ends, and what the GPT rewrite puts there.
    let mut tail: Vec<(u64, Vec<u8>)> = Vec::new();
    let end = match l.table {
        _ if !opts.shrink => source_size,
        Table::None => source_size,
        Table::Mbr => l
            .partitions
            .iter()
            .map(|p| p.start + p.length)
            .max()
            .unwrap_or(source_size)
            .max(512)
            .min(source_size),
        Table::Gpt => {
            let gpt = Gpt::read(source, ss)?;
            let parts_end = l
                .partitions
                .iter()
                .map(|p| p.start + p.length)
                .max()
                .unwrap_or(0);
            let first_usable = le64(&gpt.header, 40) * ss;
            let end =
                parts_end.max(first_usable).div_ceil(ss) * ss + (gpt.entry_sectors() + 1) * ss;
            if end >= source_size {
                source_size
            } else {
                tail = gpt.rewrite(end);
                let mut mbr = [0u8; 512];
                source.read_exact_at(&mut mbr, 0)?;
                if let Some(m) = protective_mbr(&mbr, end, ss) {
                    tail.push((0, m.to_vec()));
                }
                end
            }
        }
    };

    // The ranges to copy, whole bmap blocks inside [0, end), merged.
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut add = |s: u64, e: u64| {
        let (s, e) = (
            s / BLOCK * BLOCK,
            e.div_ceil(BLOCK).saturating_mul(BLOCK).min(end),
        );
        if s >= e {
            return;
        }
        match ranges.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => ranges.push((s, e)),
        }
    };
    for r in &l.used {
        add(r.offset.min(end), (r.offset + r.length).min(end));
    }
    for (at, b) in &tail {
        add(*at, at + b.len() as u64);
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    let total: u64 = merged.iter().map(|(s, e)| e - s).sum();
    Ok(Plan {
        source_size,
        end,
        table: l.table.name(),
        tail,
        ranges: merged,
        total,
    })
}

/// Copy the used ranges of `source` into an image at `output` (see the crate docs): a
/// sparse raw image, or with a `.qcow2` name a zlib-compressed qcow2 (v3) made by the qcow2
/// writer, its clusters compressed on every core (no bmap beside a qcow2).
pub fn backup(
    source: &dyn Storage,
    output: &Path,
    opts: &BackupOptions,
    ctl: &mut Control,
) -> Result<BackupReport> {
    let p = plan(source, opts, ctl)?;
    if output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("qcow2"))
    {
        return to_qcow2(source, &p, output, opts, ctl);
    }
    let (source_size, end, merged, total) = (p.source_size, p.end, &p.ranges, p.total);

    let mut tmp = TempBeside::new(output)?;
    let tmp_path = tmp.path().to_path_buf();
    let file = tmp.take_file().expect("a new temporary file");
    let out = FileStorage::from_file(file, &tmp_path)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pool = Arc::new(Pool::new(CHUNK));
    let is_zst = output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zst"));
    let mut frames = None;
    let mut compression = None;
    let (bmap_ranges, whole) = if is_zst {
        compression = Some(sparsekit_bmap::Compression::Zstd);
        let mut made = None;
        let f = zst::run(out.file(), &tmp_path, threads, |sink| {
            made = Some(produce(source, &p, &pool, sink, ctl)?);
            Ok(())
        })?;
        frames = Some(f);
        made.expect("produced")
    } else {
        let enc_file = out
            .file()
            .try_clone()
            .map_err(|e| IoError::new("dup", e).with_path(&tmp_path))?;
        match Enc::for_name(output, enc_file)
            .map_err(|e| IoError::new("compress", e).with_path(&tmp_path))?
        {
            Some((enc, c)) => {
                compression = Some(c);
                let mut feed = EncFeed {
                    enc,
                    path: &tmp_path,
                    zeros: vec![0u8; 1 << 20],
                };
                let r = produce(source, &p, &pool, &mut feed, ctl)?;
                feed.enc
                    .finish()
                    .map_err(|e| Error::Io(IoError::new("write", e).with_path(&tmp_path)))?;
                r
            }
            None => {
                out.set_len(end)?;
                produce(source, &p, &pool, &mut RawFeed { out: &out }, ctl)?
            }
        }
    };
    ctl.report(Phase::Sync, 0, Some(1))?;
    out.flush()?;
    ctl.report(Phase::Sync, 1, Some(1))?;

    let mut whole = Some(whole);
    let verified = if let (true, Some(f)) = (opts.verify, &frames) {
        let _ = sparsekit_io::sys::drop_cache(out.file(), 0, u64::MAX >> 1);
        zst::verify(out.file(), f, threads, output, ctl)?;
        true
    } else if let (true, Some(c)) = (opts.verify, compression) {
        let sha256 = whole.take().expect("not taken").finish();
        verify_compressed(&out, c, end, merged, &bmap_ranges, &sha256, output, ctl)?;
        whole = Some(WholeSha::Done(sha256));
        true
    } else if opts.verify {
        let mut buf = PageBuf::new(CHUNK);
        let file: &File = out.file();
        let _ = sparsekit_io::sys::drop_cache(file, 0, end);
        let mut checked = 0u64;
        for (r, &(s, e)) in bmap_ranges.iter().zip(merged) {
            let mut h = Sha256::new();
            let mut at = s;
            while at < e {
                ctl.check()?;
                let n = ((e - at) as usize).min(CHUNK);
                out.read_exact_at(&mut buf[..n], at)?;
                h.update(&buf[..n]);
                at += n as u64;
                checked += n as u64;
                ctl.report(Phase::Verify, checked, Some(total))?;
            }
            if Some(hex(&h.finalize())) != r.checksum {
                return Err(Error::Mismatch {
                    path: output.to_path_buf(),
                    range: (s, e - s),
                });
            }
        }
        true
    } else {
        false
    };

    let bmap_path = if opts.bmap {
        let blocks_count = end.div_ceil(BLOCK);
        let mapped: u64 = bmap_ranges.iter().map(|r| r.last - r.first + 1).sum();
        let b = Bmap {
            version: "2.0".into(),
            image_size: end,
            block_size: BLOCK,
            blocks_count,
            mapped_blocks_count: mapped,
            checksum_type: ChecksumType::Sha256,
            file_checksum: None,
            ranges: bmap_ranges,
        };
        let mut p = output.as_os_str().to_owned();
        p.push(".bmap");
        let p = PathBuf::from(p);
        let mut t = TempBeside::new(&p)?;
        let tp = t.path().to_path_buf();
        let f = t.take_file().expect("a new temporary file");
        let s = FileStorage::from_file(f, &tp)?;
        s.write_all_at(b.to_xml().as_bytes(), 0)?;
        s.flush()?;
        drop(s);
        t.persist(&p, None)?;
        Some(p)
    } else {
        None
    };
    let sha256 = whole.take().expect("not taken").finish();
    drop(out);
    tmp.persist(output, None)?;
    Ok(BackupReport {
        source_size,
        image_size: end,
        bytes_copied: total,
        table: p.table,
        sha256,
        bmap: bmap_path,
        cut_bytes: source_size - end,
        verified,
    })
}

/// Where [`produce`] hands the image's bytes, in order.
pub(crate) trait Feed {
    /// `len` zero bytes at `at` (free space, never read).
    fn zeros(&mut self, at: u64, len: u64) -> Result<()>;
    /// Bytes read from the source.
    fn data(&mut self, c: Arc<Chunk>) -> Result<()>;
}

/// A sparse raw image: data written at its offset, free space left as holes.
struct RawFeed<'a> {
    out: &'a FileStorage,
}

impl Feed for RawFeed<'_> {
    fn zeros(&mut self, _at: u64, _len: u64) -> Result<()> {
        Ok(())
    }
    fn data(&mut self, c: Arc<Chunk>) -> Result<()> {
        Ok(self.out.write_all_at(&c, c.at)?)
    }
}

/// A streaming compressor (xz, gzip) fed every byte, zeros too.
struct EncFeed<'a> {
    enc: Enc,
    path: &'a Path,
    zeros: Vec<u8>,
}

impl EncFeed<'_> {
    fn err(&self, e: std::io::Error) -> Error {
        Error::Io(IoError::new("write", e).with_path(self.path))
    }
}

impl Feed for EncFeed<'_> {
    fn zeros(&mut self, _at: u64, mut len: u64) -> Result<()> {
        while len > 0 {
            let n = (len as usize).min(self.zeros.len());
            if let Err(e) = self.enc.write_all(&self.zeros[..n]) {
                return Err(self.err(e));
            }
            len -= n as u64;
        }
        Ok(())
    }
    fn data(&mut self, c: Arc<Chunk>) -> Result<()> {
        self.enc.write_all(&c).map_err(|e| self.err(e))
    }
}

/// What the whole-image hasher gets.
enum Whole {
    Data(Arc<Chunk>),
    Zeros(u64),
}

/// The image's SHA-256, still being computed on its own thread ([`produce`]), or known.
enum WholeSha {
    Running(std::thread::JoinHandle<String>),
    Done(String),
}

impl WholeSha {
    /// Wait for it.
    fn finish(self) -> String {
        match self {
            WholeSha::Running(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            WholeSha::Done(s) => s,
        }
    }
}

/// Read the plan's ranges ([`read::in_order`]: several reads in flight), hash each range
/// (SHA-256, for the bmap) here, and hand the image to `feed` in order. The whole image's
/// SHA-256 (free space as zeros: 3.4 GiB of a 4 GiB card with 600 MiB used, the longest
/// serial computation of a backup) is computed on a thread of its own, fed the same chunks,
/// and still runs when this returns, so that it overlaps the output's sync and read-back.
fn produce(
    source: &dyn Storage,
    p: &Plan,
    pool: &Arc<Pool>,
    feed: &mut dyn Feed,
    ctl: &mut Control,
) -> Result<(Vec<BmapRange>, WholeSha)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Whole>(read_ahead());
    let hasher = std::thread::Builder::new()
        .name("sparsekit-backup-sha256".into())
        .spawn(move || {
            let zeros = vec![0u8; 256 << 10];
            let mut h = Sha256::new();
            for m in rx {
                match m {
                    Whole::Data(c) => h.update(&c[..]),
                    Whole::Zeros(mut n) => {
                        while n > 0 {
                            let k = (n as usize).min(zeros.len());
                            h.update(&zeros[..k]);
                            n -= k as u64;
                        }
                    }
                }
            }
            hex(&h.finalize())
        })
        .map_err(|e| IoError::new("spawn", e))?;
    // On an early return `tx` is dropped and the hasher ends (its result unused).
    let pieces = read::pieces(&p.ranges, CHUNK);
    let mut bmap = Vec::with_capacity(p.ranges.len());
    let mut ri = 0usize;
    let mut h = Sha256::new();
    let (mut pos, mut done) = (0u64, 0u64);
    // A send fails only when the hasher panicked: its join re-raises that.
    read::in_order(p, source, &pieces, pool, |c| {
        ctl.check()?;
        if pos < c.at {
            feed.zeros(pos, c.at - pos)?;
            let _ = tx.send(Whole::Zeros(c.at - pos));
        }
        h.update(&c[..]);
        let n = c.len() as u64;
        let end = c.at + n;
        let c = Arc::new(c);
        let _ = tx.send(Whole::Data(c.clone()));
        feed.data(c)?;
        pos = end;
        done += n;
        ctl.report(Phase::Copy, done, Some(p.total))?;
        let (s, e) = p.ranges[ri];
        if end == e {
            bmap.push(BmapRange {
                first: s / BLOCK,
                last: (e - 1) / BLOCK,
                checksum: Some(hex(&h.finalize_reset())),
            });
            ri += 1;
        }
        Ok(())
    })?;
    if pos < p.end {
        feed.zeros(pos, p.end - pos)?;
        let _ = tx.send(Whole::Zeros(p.end - pos));
    }
    Ok((bmap, WholeSha::Running(hasher)))
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// The image a [`Plan`] describes, as the qcow2 writer reads a source: the used ranges
/// are its data, everything else zeros (never read).
struct Planned<'a> {
    source: &'a dyn Storage,
    plan: &'a Plan,
}

impl sparsekit_qcow2::Source for Planned<'_> {
    fn size(&self) -> u64 {
        self.plan.end
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> sparsekit_qcow2::Result<()> {
        buf.fill(0);
        let end = offset + buf.len() as u64;
        for &(s, e) in &self.plan.ranges {
            let (o_s, o_e) = (s.max(offset), e.min(end));
            if o_s < o_e {
                let b = &mut buf[(o_s - offset) as usize..(o_e - offset) as usize];
                self.plan.read(self.source, b, o_s).map_err(|e| match e {
                    Error::Io(io) => sparsekit_qcow2::Error::Io(io),
                    e => sparsekit_qcow2::Error::Io(IoError::new(
                        "read",
                        std::io::Error::other(e.to_string()),
                    )),
                })?;
            }
        }
        Ok(())
    }

    fn data_ranges(&self, _ctl: &mut Control<'_>) -> sparsekit_qcow2::Result<Vec<(u64, u64)>> {
        Ok(self.plan.ranges.iter().map(|&(s, e)| (s, e - s)).collect())
    }

    fn path(&self) -> Option<&Path> {
        self.source.path()
    }
}

fn qcow2_error(e: sparsekit_qcow2::Error) -> Error {
    match e {
        sparsekit_qcow2::Error::Io(io) => Error::Io(io),
        sparsekit_qcow2::Error::Aborted => Error::Aborted,
        e => Error::Gpt {
            message: format!("writing the qcow2 image: {e}"),
        },
    }
}

/// [`backup`] into a qcow2 image: the qcow2 writer over [`Planned`]; `verify` reads the
/// image back through the qcow2 reader and compares it with the source range by range.
fn to_qcow2(
    source: &dyn Storage,
    p: &Plan,
    output: &Path,
    opts: &BackupOptions,
    ctl: &mut Control,
) -> Result<BackupReport> {
    let src = Planned { source, plan: p };
    let o = sparsekit_qcow2::ImportOptions {
        compression: Some(sparsekit_qcow2::CompressionType::Zlib),
        ..Default::default()
    };
    // Written and checked under a temporary name beside `output`, then renamed: a failure
    // leaves whatever `output` was.
    let name = output.file_name().unwrap_or_default().to_string_lossy();
    let tmp = output.with_file_name(format!(".{name}.sparsekit-backup-{}", std::process::id()));
    struct Gone<'a>(&'a Path, bool);
    impl Drop for Gone<'_> {
        fn drop(&mut self) {
            if !self.1 {
                let _ = std::fs::remove_file(self.0);
            }
        }
    }
    let mut gone = Gone(&tmp, false);
    sparsekit_qcow2::import_image(&src, &tmp, &o, ctl).map_err(qcow2_error)?;
    let img = sparsekit_qcow2::Image::open(&tmp, &sparsekit_qcow2::OpenOptions::default())
        .map_err(qcow2_error)?;
    use sparsekit_qcow2::Source as _;
    let mut whole = Sha256::new();
    let (mut a, mut b) = (PageBuf::new(CHUNK), PageBuf::new(CHUNK));
    let zeros = vec![0u8; CHUNK];
    let mut pos = 0u64;
    let mut checked = 0u64;
    for &(s, e) in &p.ranges {
        while pos < s {
            let n = ((s - pos) as usize).min(CHUNK);
            whole.update(&zeros[..n]);
            pos += n as u64;
        }
        let mut at = s;
        while at < e {
            ctl.check()?;
            let n = ((e - at) as usize).min(CHUNK);
            img.read_exact_at(&mut b[..n], at).map_err(qcow2_error)?;
            if opts.verify {
                p.read(source, &mut a[..n], at)?;
                if a[..n] != b[..n] {
                    return Err(Error::Mismatch {
                        path: output.to_path_buf(),
                        range: (at, n as u64),
                    });
                }
                checked += n as u64;
                ctl.report(Phase::Verify, checked, Some(p.total))?;
            }
            whole.update(&b[..n]);
            at += n as u64;
        }
        pos = e;
    }
    while pos < p.end {
        let n = ((p.end - pos) as usize).min(CHUNK);
        whole.update(&zeros[..n]);
        pos += n as u64;
    }
    drop(img);
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| IoError::new("fsync", e).with_path(&tmp))?;
    std::fs::rename(&tmp, output).map_err(|e| IoError::new("rename", e).with_path(output))?;
    gone.1 = true;
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(BackupReport {
        source_size: p.source_size,
        image_size: p.end,
        bytes_copied: p.total,
        table: p.table,
        sha256: hex(&whole.finalize()),
        bmap: None,
        cut_bytes: p.source_size - p.end,
        verified: opts.verify,
    })
}

/// Decompress the written image and compare it with what was read: each bmap range's
/// SHA-256, the whole image's, and its length.
#[allow(clippy::too_many_arguments)]
fn verify_compressed(
    out: &FileStorage,
    c: sparsekit_bmap::Compression,
    end: u64,
    ranges: &[(u64, u64)],
    bmap: &[BmapRange],
    sha256: &str,
    output: &Path,
    ctl: &mut Control,
) -> Result<()> {
    use std::io::Read;
    use std::io::Seek;
    let mut file = out.file().try_clone().map_err(|e| IoError::new("dup", e))?;
    let _ = sparsekit_io::sys::drop_cache(&file, 0, u64::MAX >> 1);
    // The encoder wrote through a descriptor sharing this one's offset: back to the start.
    file.seek(std::io::SeekFrom::Start(0))
        .map_err(|e| IoError::new("seek", e).with_path(output))?;
    let r = std::io::BufReader::with_capacity(1 << 20, file);
    let mut d = c
        .decoder(r)
        .map_err(|e| IoError::new("read", e).with_path(output))?;
    let mut buf = vec![0u8; CHUNK];
    let mut whole = Sha256::new();
    let mut pos = 0u64;
    let mut i = 0usize;
    let mut h = Sha256::new();
    let mismatch = |range| Error::Mismatch {
        path: output.to_path_buf(),
        range,
    };
    loop {
        ctl.check()?;
        let n = d
            .read(&mut buf)
            .map_err(|e| IoError::new("decompress", e).with_path(output))?;
        if n == 0 {
            break;
        }
        whole.update(&buf[..n]);
        // Split the chunk at range boundaries to hash each bmap range.
        let mut off = 0usize;
        while off < n && i < ranges.len() {
            let (s, e) = ranges[i];
            let at = pos + off as u64;
            if at < s {
                off += ((s - at) as usize).min(n - off);
                continue;
            }
            let take = ((e - at) as usize).min(n - off);
            h.update(&buf[off..off + take]);
            off += take;
            if at + take as u64 == e {
                if Some(hex(&h.finalize_reset())) != bmap[i].checksum {
                    return Err(mismatch((s, e - s)));
                }
                i += 1;
            }
        }
        pos += n as u64;
        ctl.report(Phase::Verify, pos, Some(end))?;
    }
    if pos != end || i != ranges.len() || hex(&whole.finalize()) != sha256 {
        return Err(mismatch((0, end)));
    }
    Ok(())
}
