//! One image to many destinations: the source is read (and decompressed) once by one
//! thread; each destination has a writer thread fed through a bounded queue of shared
//! chunks, so the slowest destination paces the reader and memory stays at about
//! `(QUEUE + 2) * CHUNK` bytes whatever the number of destinations. A destination that
//! fails drops its queue: the reader stops feeding it and the others go on.

use sparsekit_io::sys::MetadataExt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use sparsekit_bmap::{Bmap, BmapChoice, Compression, Destination};
use sparsekit_io::{
    errno, is_zero, Aborted, Cancel, Control, ErrorInfo, PageBuf, Phase, Storage, PAGE,
};

use sparsekit_http::HttpOptions;

use crate::dest::{Files, Opener};
use crate::error::{error_of_io, Error, Result};
use crate::source::{self, Input, Opened};

/// Bytes per chunk read from the source and written to every destination.
pub const CHUNK: usize = 1 << 20;
/// Chunks queued per destination: how far the fastest may run ahead of the slowest.
pub const QUEUE: usize = 8;
/// Block size for read-back error reports and for skipping zero blocks in files.
const BLOCK: u64 = 4096;
/// Bytes per write-error check window of each destination: every window is written back
/// and waited for ([`sparsekit_io::sys::wait_writeback`]) once the writer is [`CHECK_LAG`] windows
/// past it, so a failing drive fails within a few MiB of the fault with
/// [`Error::WriteFailed`] naming the byte range that holds it, instead of at the final
/// `fsync`.
pub const CHECK_WINDOW: u64 = 2 << 20;
/// Windows a writer may run ahead of the last one checked (writeback of those is started
/// and in flight, so the wait is short).
pub const CHECK_LAG: usize = 2;
/// Bytes of a plain local image asked for ahead of the reader (`POSIX_FADV_WILLNEED`).
const PREFETCH: u64 = 4 << 20;
/// How often the coordinating thread reports progress.
const TICK: Duration = Duration::from_millis(50);

/// What [`flash`] does.
#[derive(Clone, Debug)]
pub struct FlashOptions {
    /// The bmap to follow: [`BmapChoice::Auto`] looks for `IMAGE.bmap` beside a local
    /// image and fetches `URL.bmap` for a URL.
    pub bmap: BmapChoice,
    /// Check each bmap range's checksum as the source streams (default `true`).
    pub verify: bool,
    /// After writing and `fsync`, read every destination back past the page cache and
    /// compare with what was written (default `true`).
    pub read_back: bool,
    /// How destinations are checked and opened (default [`Files`]: regular files and
    /// block devices, no drive checks; the addon passes one with the drive refusals).
    pub opener: Arc<dyn Opener>,
    /// The zip entry to write (default: the largest).
    pub zip_entry: Option<String>,
    /// How HTTP(S) sources are fetched.
    pub http: HttpOptions,
    /// Byte offset in every destination where the image's first byte goes (default 0:
    /// the whole device). A destination must hold `seek + image size` bytes; a regular
    /// file is then neither truncated nor shortened, so bytes before and after the image
    /// stay as they were.
    pub seek: u64,
    /// The decompressed image's expected SHA-256 (64 hex digits), computed while it
    /// streams (every byte of the image, also those a bmap skips). On a mismatch the
    /// flash fails with [`Error::DigestMismatch`] and no destination's first MiB
    /// ([`HEAD`]) is written.
    pub sha256: Option<String>,
    /// Read each destination's blocks first and write only those that differ (less wear
    /// on flash media; a re-flash with a few MiB changed writes a few MiB). A regular
    /// file is then not truncated first.
    pub only_changed: bool,
    /// Times a write failing with EIO, EBUSY or EAGAIN is tried again before its
    /// destination fails (default [`WRITE_RETRIES`]).
    pub write_retries: u32,
    /// The wait before the first such retry, doubled for each further one (default
    /// 100 ms).
    pub retry_delay: Duration,
    /// What becomes of the destination's bytes in the image's unmapped ranges (those a
    /// bmap, or a plain image's holes, leave out): kept (default), zeroed, or discarded.
    pub unmapped: Unmapped,
    /// Before writing a block device, probe its capacity ([`crate::probe_capacity`]): a
    /// counterfeit drive that holds less than the image needs fails with
    /// [`Error::Counterfeit`] before anything is written (its bytes are left as they were).
    pub check_capacity: bool,
    /// After a destination succeeded, flush and eject it through [`Opener::eject`] (its
    /// outcome in [`DestinationReport::ejected`] and [`DestinationReport::eject_error`]; a
    /// failed eject does not fail the destination).
    pub eject: bool,
    /// Without a bmap, skip the free blocks of a random-access source (a plain local
    /// file, an HTTP(S) URL whose server takes range requests, a zip archive's stored
    /// entry) as its partition tables and file systems say
    /// ([`sparsekit_layout::layout`]: free means provably free, everything unknown is
    /// used): only the used blocks, rounded outward to 4 KiB, are read, written and read
    /// back; the destination's bytes in free blocks are left as they were (see
    /// [`FlashOptions::unmapped`]). [`FlashReport::trim`] says what was found. With a bmap
    /// found or given, the bmap is followed and this does nothing. A compressed stream
    /// (gzip, xz, bzip2, zstd, a deflated zip entry) or a server without range requests
    /// fails with [`Error::TrimUnsupported`] before anything is written.
    pub trim: bool,
}

/// What [`FlashOptions::unmapped`] does with the ranges of the image that are not written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Unmapped {
    /// Left as they are (stale data of an earlier image survives there).
    #[default]
    Keep,
    /// Zeroed: `BLKZEROOUT` on a block device (the device's write-zeroes command),
    /// `FALLOC_FL_ZERO_RANGE` in a file, else zeros written.
    Zero,
    /// Discarded: `fallocate(PUNCH_HOLE)`, which a block device turns into a zeroing
    /// discard (Linux 4.9) and a file into holes; a device or file system that cannot
    /// fails the destination with [`Error::Unsupported`].
    Discard,
}

/// Bytes at the start of every destination written last: only after everything else is
/// written and synced, then synced themselves, so an abort, a failed drive or a digest
/// mismatch leaves the old partition table and boot code (no half-written image boots),
/// as Raspberry Pi Imager does.
pub const HEAD: u64 = 1 << 20;
/// Default retries of a write failing with a transient error ([`FlashOptions::write_retries`]).
pub const WRITE_RETRIES: u32 = 5;

impl Default for FlashOptions {
    fn default() -> Self {
        FlashOptions {
            bmap: BmapChoice::Auto,
            verify: true,
            read_back: true,
            opener: Arc::new(Files::default()),
            zip_entry: None,
            http: HttpOptions::default(),
            seek: 0,
            sha256: None,
            only_changed: false,
            write_retries: WRITE_RETRIES,
            retry_delay: Duration::from_millis(100),
            unmapped: Unmapped::Keep,
            check_capacity: false,
            eject: false,
            trim: false,
        }
    }
}

/// One destination's outcome.
#[derive(Debug)]
pub struct DestinationReport {
    /// The destination.
    pub path: PathBuf,
    /// Bytes written to it.
    pub bytes_written: u64,
    /// Whether it was read back and found equal to the image.
    pub verified: bool,
    /// Bytes not written because the destination already held them
    /// ([`FlashOptions::only_changed`]).
    pub bytes_skipped: u64,
    /// Writes tried again after a transient error (EIO, EBUSY, EAGAIN).
    pub retries: u64,
    /// Ejected after it succeeded ([`FlashOptions::eject`]).
    pub ejected: bool,
    /// Why it could not be ejected.
    pub eject_error: Option<Error>,
    /// Why it failed; `None` when it succeeded.
    pub error: Option<Error>,
}

/// What [`flash`] did.
#[derive(Debug)]
pub struct FlashReport {
    /// Per destination, in the order given.
    pub destinations: Vec<DestinationReport>,
    /// The image size (decompressed).
    pub image_size: u64,
    /// The source's compression.
    pub compression: Option<Compression>,
    /// Where the bmap came from (a path or URL), when one was used.
    pub bmap: Option<String>,
    /// The zip entry written, for a zip source.
    pub zip_entry: Option<String>,
    /// Bytes read from the source (compressed bytes for a compressed one).
    pub source_bytes: u64,
    /// The decompressed image's SHA-256 (lowercase hex), when
    /// [`FlashOptions::sha256`] asked for it to be checked.
    pub sha256: Option<String>,
    /// With [`FlashOptions::trim`] and no bmap: the image's used and free bytes (only the
    /// used ones were read and written); `None` without trim or when a bmap was followed.
    pub trim: Option<crate::trim::Trim>,
}

/// The state of one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum DestState {
    /// Not started.
    Pending = 0,
    /// Being written.
    Writing = 1,
    /// `fsync`.
    Syncing = 2,
    /// Being read back.
    Verifying = 3,
    /// Finished.
    Done = 4,
    /// Failed (see its report).
    Failed = 5,
}

impl DestState {
    fn from_u8(v: u8) -> DestState {
        match v {
            1 => DestState::Writing,
            2 => DestState::Syncing,
            3 => DestState::Verifying,
            4 => DestState::Done,
            5 => DestState::Failed,
            _ => DestState::Pending,
        }
    }

    /// `pending`, `writing`, `syncing`, `verifying`, `done`, `failed`.
    pub fn name(self) -> &'static str {
        match self {
            DestState::Pending => "pending",
            DestState::Writing => "writing",
            DestState::Syncing => "syncing",
            DestState::Verifying => "verifying",
            DestState::Done => "done",
            DestState::Failed => "failed",
        }
    }
}

#[derive(Default, Debug)]
struct DestStatus {
    state: AtomicU8,
    written: AtomicU64,
    verified: AtomicU64,
    /// Writes tried again after a transient error.
    retries: AtomicU64,
    /// Why it failed, as soon as it did.
    failure: std::sync::Mutex<Option<DestFailure>>,
}

/// A destination's error, known while the others go on ([`FlashStatus::failure`]): what
/// the error's accessors say, so a caller can deliver it at once (the error itself comes
/// in the [`DestinationReport`] at the end).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestFailure {
    /// The error's code ([`Error::code`]).
    pub code: &'static str,
    /// Its message.
    pub message: String,
    /// The OS error number.
    pub errno: Option<i32>,
    /// The failed call.
    pub syscall: Option<&'static str>,
    /// The file or device.
    pub path: Option<PathBuf>,
    /// The byte offset.
    pub offset: Option<u64>,
    /// The byte range, as `(start, length)`.
    pub range: Option<(u64, u64)>,
}

impl DestFailure {
    fn of(e: &Error) -> Self {
        DestFailure {
            code: e.code(),
            message: e.to_string(),
            errno: e.raw_os_error(),
            syscall: e.syscall(),
            path: e.path().map(Path::to_path_buf),
            offset: e.offset(),
            range: e.range(),
        }
    }
}

impl ErrorInfo for DestFailure {
    fn code(&self) -> &'static str {
        self.code
    }
    fn raw_os_error(&self) -> Option<i32> {
        self.errno
    }
    fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
    fn offset(&self) -> Option<u64> {
        self.offset
    }
    fn syscall(&self) -> Option<&'static str> {
        self.syscall
    }
    fn range(&self) -> Option<(u64, u64)> {
        self.range
    }
}

impl std::fmt::Display for DestFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// One destination's live numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DestProgress {
    /// Where it is.
    pub state: DestState,
    /// Bytes written.
    pub written: u64,
    /// Bytes read back and found equal.
    pub verified: u64,
}

/// Live per-destination progress, shared with whoever displays it (speed and ETA are
/// the displayer's arithmetic on successive snapshots).
#[derive(Debug)]
pub struct FlashStatus {
    dests: Vec<DestStatus>,
    total: AtomicU64,
}

impl FlashStatus {
    /// Status for `n` destinations.
    pub fn new(n: usize) -> Self {
        FlashStatus {
            dests: (0..n).map(|_| DestStatus::default()).collect(),
            total: AtomicU64::new(u64::MAX),
        }
    }

    /// Bytes each destination will be written, once known.
    pub fn total(&self) -> Option<u64> {
        let t = self.total.load(Ordering::Relaxed);
        (t != u64::MAX).then_some(t)
    }

    /// Why destination `i` failed, once it has (before the flash returns).
    pub fn failure(&self, i: usize) -> Option<DestFailure> {
        self.dests.get(i)?.failure.lock().ok()?.clone()
    }

    fn fail(&self, i: usize, e: &Error) {
        if let Some(d) = self.dests.get(i) {
            if let Ok(mut f) = d.failure.lock() {
                *f = Some(DestFailure::of(e));
            }
            d.state.store(DestState::Failed as u8, Ordering::Relaxed);
        }
    }

    /// Every destination's numbers, in the order given.
    pub fn snapshot(&self) -> Vec<DestProgress> {
        self.dests
            .iter()
            .map(|d| DestProgress {
                state: DestState::from_u8(d.state.load(Ordering::Relaxed)),
                written: d.written.load(Ordering::Relaxed),
                verified: d.verified.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// A destination for [`flash_to`]: opened storage, or the error that kept it from opening.
pub struct Target {
    /// For reports.
    pub path: PathBuf,
    /// The storage, or why there is none.
    pub dst: std::result::Result<Box<dyn Destination>, Error>,
}

/// Flash `source` (a path or an http(s) URL; plain, gzip, xz, bzip2, zstd, or a zip
/// archive) to every destination at once.
///
/// The source is opened first (an unreachable URL fails before any drive is touched);
/// then each destination is checked and opened ([`open_destination`]). A destination
/// that fails (refused, too small, an I/O error, a read-back mismatch) gets its error in
/// its [`DestinationReport`] while the others finish. The call itself fails only when
/// the source does (unreadable, corrupt, a bmap checksum mismatch, an interrupted
/// download) or when cancelled.
///
/// Progress: [`Phase::Write`] (bytes written by the slowest live destination),
/// [`Phase::Sync`], and [`Phase::Verify`] with `read_back`; per destination through
/// `status`.
pub fn flash(
    source: &str,
    dsts: &[PathBuf],
    opts: &FlashOptions,
    status: Option<&FlashStatus>,
    ctl: &mut Control<'_>,
) -> Result<FlashReport> {
    if dsts.is_empty() {
        return Err(Error::InvalidArg {
            name: "destinations",
            value: "none given".into(),
        });
    }
    let id = |p: &Path| opts.opener.identity(p);
    let src_id = (!sparsekit_http::is_url(source))
        .then(|| std::fs::metadata(source).ok().map(|m| (m.dev(), m.ino())))
        .flatten();
    let mut seen = Vec::new();
    for p in dsts {
        if let Some(i) = id(p) {
            if seen.contains(&i) {
                return Err(Error::InvalidArg {
                    name: "destinations",
                    value: format!("'{}' is given twice", p.display()),
                });
            }
            if Some(i) == src_id {
                return Err(Error::InvalidArg {
                    name: "destinations",
                    value: format!("'{}' is the source itself", p.display()),
                });
            }
            seen.push(i);
        }
    }
    let opened = open_source(source, opts, ctl)?;
    let targets = dsts
        .iter()
        .map(|p| Target {
            path: p.clone(),
            dst: opts.opener.open(p),
        })
        .collect();
    run(opened, targets, opts, Mode::Write, status, ctl)
}

/// Open `source` as `opts` say, trimmed ([`FlashOptions::trim`]) when asked: only the
/// source is read, nothing is written.
pub(crate) fn open_source(
    source: &str,
    opts: &FlashOptions,
    ctl: &mut Control<'_>,
) -> Result<Opened> {
    let opened = source::open(
        source,
        &opts.bmap,
        opts.zip_entry.as_deref(),
        &opts.http,
        opts.trim,
        ctl.cancel(),
    )?;
    if !opts.trim {
        return Ok(opened);
    }
    // The layout is read with the caller's cancel token; its progress is not the
    // flash's phases.
    crate::trim::apply(opened, &mut Control::with_cancel(ctl.cancel().clone()))
}

/// [`flash`] to destinations opened by the caller (any [`Destination`]: tests use
/// [`sparsekit_io::MemStorage`] and [`sparsekit_io::Faulty`]); no refusal checks.
pub fn flash_to(
    source: &str,
    targets: Vec<Target>,
    opts: &FlashOptions,
    status: Option<&FlashStatus>,
    ctl: &mut Control<'_>,
) -> Result<FlashReport> {
    let opened = open_source(source, opts, ctl)?;
    run(opened, targets, opts, Mode::Write, status, ctl)
}

/// What [`verify()`] found: the destination holds the image.
#[derive(Debug)]
pub struct VerifyReport {
    /// The destination.
    pub path: PathBuf,
    /// Bytes compared (the bmap's mapped ranges, or the image's data).
    pub bytes_compared: u64,
    /// The image size (decompressed).
    pub image_size: u64,
    /// Where the bmap came from, when one was used.
    pub bmap: Option<String>,
    /// The image's SHA-256, when [`FlashOptions::sha256`] asked for it to be checked.
    pub sha256: Option<String>,
    /// With [`FlashOptions::trim`] and no bmap: what was found (only the used bytes were
    /// compared).
    pub trim: Option<crate::trim::Trim>,
}

/// Read `dst` back and compare it with the image at `source` (any source [`flash`]
/// takes, at [`FlashOptions::seek`]), writing nothing: what a flash writes is compared
/// (the bmap's mapped ranges; without one, a plain image's data extents, a stream
/// whole). The first run of differing 4 KiB blocks is [`Error::Differs`]
/// (`ERR_SPARSEKIT_CHECKSUM_MISMATCH` with its range). Progress: [`Phase::Verify`].
pub fn verify(
    source: &str,
    dst: &Path,
    opts: &FlashOptions,
    ctl: &mut Control<'_>,
) -> Result<VerifyReport> {
    let opened = open_source(source, opts, ctl)?;
    let d = sparsekit_io::FileStorage::open(dst)?;
    verify_opened(
        opened,
        Target {
            path: dst.to_path_buf(),
            dst: Ok(Box::new(d)),
        },
        opts,
        ctl,
    )
}

/// [`verify()`] of a destination the caller opened.
pub fn verify_to(
    source: &str,
    target: Target,
    opts: &FlashOptions,
    ctl: &mut Control<'_>,
) -> Result<VerifyReport> {
    let opened = open_source(source, opts, ctl)?;
    verify_opened(opened, target, opts, ctl)
}

fn verify_opened(
    opened: Opened,
    target: Target,
    opts: &FlashOptions,
    ctl: &mut Control<'_>,
) -> Result<VerifyReport> {
    let mut r = run(opened, vec![target], opts, Mode::Compare, None, ctl)?;
    let d = r.destinations.remove(0);
    if let Some(e) = d.error {
        return Err(e);
    }
    Ok(VerifyReport {
        path: d.path,
        bytes_compared: d.bytes_written,
        image_size: r.image_size,
        bmap: r.bmap,
        sha256: r.sha256,
        trim: r.trim,
    })
}

/// What the reader tells every writer.
enum Msg {
    /// Before any data: the image size when known, and whether all-zero blocks may be
    /// left as holes in a file destination (no bmap: the whole image streams).
    Start { size: Option<u64>, sparse: bool },
    /// `buf` belongs at `offset`.
    Data { offset: u64, buf: Arc<Buf> },
    /// The source ended at `size`; `segments` are what was sent, with digests.
    End {
        size: u64,
        segments: Arc<Vec<Segment>>,
    },
}

/// A chunk as sent, for read-back.
struct Segment {
    offset: u64,
    len: u32,
    digest: [u8; 32],
}

/// What the reader found out about the source.
struct SourceInfo {
    image_size: u64,
    compression: Option<Compression>,
    /// Source bytes read, where the reader knows better than the byte counter.
    read: Option<u64>,
}

/// The read-back digests' thread: its queue and its result (one digest per chunk).
type Blake = (SyncSender<Arc<Buf>>, std::thread::JoinHandle<Vec<[u8; 32]>>);

struct Feed {
    senders: Vec<Option<SyncSender<Msg>>>,
    segments: Vec<Segment>,
    pool: Vec<Arc<Buf>>,
    cancel: Cancel,
    /// Keep a digest of every chunk for the read-back.
    digests: bool,
    /// The thread taking those digests (BLAKE3), off the reader's path: started with the
    /// first chunk, its digests collected by [`Feed::segments`].
    blake: Option<Blake>,
}

/// A chunk buffer (at most [`CHUNK`] bytes) whose data starts on a page boundary: the
/// kernel's copies between the page cache and a buffer that is not page-aligned are
/// markedly slower, and `O_DIRECT` writes need the alignment.
pub(crate) type Buf = PageBuf;

impl Feed {
    /// A chunk buffer of `len` bytes: one no writer holds any more, or a new one.
    fn buffer(&mut self, len: usize) -> Buf {
        // A pooled buffer no writer holds any more is taken out of the pool (the
        // pool keeps at most QUEUE * 2 + 4; `data` puts buffers back).
        if let Some(i) = self.pool.iter().position(|b| Arc::strong_count(b) == 1) {
            if let Ok(mut b) = Arc::try_unwrap(self.pool.swap_remove(i)) {
                b.resize(len.min(CHUNK));
                return b;
            }
        }
        let mut b = PageBuf::new(CHUNK);
        b.resize(len.min(CHUNK));
        b
    }

    /// The segments sent, with their digests (waiting for the digests' thread).
    fn segments(&mut self) -> Vec<Segment> {
        let mut segments = std::mem::take(&mut self.segments);
        if let Some((tx, h)) = self.blake.take() {
            drop(tx);
            let digests = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            for (s, d) in segments.iter_mut().zip(digests) {
                s.digest = d;
            }
        }
        segments
    }

    fn alive(&self) -> bool {
        self.senders.iter().any(Option::is_some)
    }

    /// Send to every live writer; a writer that hung up (failed) is dropped. `false` when
    /// none is left.
    fn send(&mut self, make: impl Fn() -> Msg) -> Result<bool> {
        for s in self.senders.iter_mut() {
            if let Some(tx) = s {
                if tx.send(make()).is_err() {
                    *s = None;
                }
            }
        }
        self.cancel.check()?;
        Ok(self.alive())
    }

    /// Send `buf` (image bytes at `offset`) to every live writer, and to `sha`'s hasher.
    fn data(&mut self, offset: u64, buf: Buf, sha: Option<&mut Digester>) -> Result<bool> {
        // Without a read-back nothing compares digests: none are made. They are taken on a
        // thread of their own (filled in by `segments`).
        self.segments.push(Segment {
            offset,
            len: buf.len() as u32,
            digest: [0; 32],
        });
        let buf = Arc::new(buf);
        if self.digests {
            let (tx, _) = self.blake.get_or_insert_with(|| {
                let (tx, rx) = sync_channel::<Arc<Buf>>(QUEUE);
                let h = std::thread::Builder::new()
                    .name("sparsekit-flash-blake3".into())
                    .spawn(move || rx.iter().map(|b| *blake3::hash(&b).as_bytes()).collect())
                    .expect("spawn the flash digester");
                (tx, h)
            });
            let _ = tx.send(buf.clone());
        }
        if let Some(d) = sha {
            d.shared(&buf);
        }
        // Keep the buffer for reuse once every writer is done with it.
        if self.pool.len() < QUEUE * 2 + 4 {
            self.pool.push(buf.clone());
        } else if let Some(i) = self.pool.iter().position(|b| Arc::strong_count(b) == 1) {
            self.pool[i] = buf.clone();
        }
        self.send(|| Msg::Data {
            offset,
            buf: buf.clone(),
        })
    }
}

/// Read `buf.len()` bytes, fewer only at the end of the stream.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Ranges of a bmap as byte ranges, with their checksum when it is to be verified.
fn ranges(b: &Bmap, verify: bool) -> Vec<(u64, u64, Option<&str>)> {
    b.ranges
        .iter()
        .map(|r| {
            let (s, e) = r.bytes(b.block_size, b.image_size);
            (s, e, r.checksum.as_deref().filter(|_| verify))
        })
        .collect()
}

fn check_range(b: &Bmap, i: usize, h: sparsekit_bmap::Hasher, label: &Path) -> Result<()> {
    let r = &b.ranges[i];
    let got = h.finish_hex();
    if Some(&got) != r.checksum.as_ref() {
        return Err(Error::Bmap(sparsekit_bmap::Error::ChecksumMismatch {
            path: Some(label.to_path_buf()),
            first: r.first,
            last: r.last,
            bytes: r.bytes(b.block_size, b.image_size),
            expected: r.checksum.clone().unwrap_or_default(),
            actual: got,
        }));
    }
    Ok(())
}

/// The image's bytes, sent to the thread that hashes them (SHA-256) while the reader goes
/// on: the chunks the writers get are shared with it (no copy; the buffer pool reuses a
/// chunk once the hasher is done with it too), the bytes no writer gets (those a bmap
/// skips) are copied.
struct Digester {
    tx: SyncSender<Arc<Buf>>,
}

impl Digester {
    fn update(&mut self, data: &[u8]) {
        let mut b = PageBuf::default();
        b.resize(data.len());
        b.copy_from_slice(data);
        let _ = self.tx.send(Arc::new(b));
    }

    fn shared(&mut self, buf: &Arc<Buf>) {
        let _ = self.tx.send(buf.clone());
    }
}

/// The image's expected SHA-256 in lowercase, checked to be 64 hex digits.
fn check_sha256(h: &str) -> Result<String> {
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidArg {
            name: "sha256",
            value: format!("{h}' is not 64 hexadecimal digits (a SHA-256)"),
        });
    }
    Ok(h.to_ascii_lowercase())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The reader: open the stream, tell every writer the size, send the data; with `sha`,
/// every byte of the image is hashed, also those a bmap skips.
fn produce(
    input: Input,
    bmap: Option<&Bmap>,
    verify: bool,
    label: &Path,
    feed: &mut Feed,
    total: &AtomicU64,
    mut sha: Option<&mut Digester>,
) -> Result<SourceInfo> {
    match input {
        Input::Plain(file) => {
            let size = file.size()?;
            let owned;
            let b = match bmap {
                Some(b) => b,
                None => {
                    let map = sparsekit_extents::map_file(file.file(), &Default::default())
                        .map_err(|e| e.with_path(label))?;
                    owned = sparsekit_bmap::create_from(
                        &file,
                        size,
                        &map.data_ranges(),
                        BLOCK,
                        None,
                        &mut Control::none(),
                    )?;
                    &owned
                }
            };
            // Ask for the next ranges ahead of the reader, so the disk reads while the
            // current chunk is hashed and handed out.
            let ahead = |off: u64, len: u64| {
                let _ = sparsekit_io::sys::will_need(file.file(), off, len);
            };
            by_ranges(&file, size, b, verify, label, feed, total, &ahead, sha)
        }
        Input::Ranged(storage) => {
            let size = storage.size()?;
            let b = bmap.expect("ranged sources have a bmap");
            by_ranges(
                &*storage,
                size,
                b,
                verify,
                label,
                feed,
                total,
                &|_, _| {},
                sha,
            )
        }
        Input::Stream { reader, len, .. } => {
            let (mut r, c) = source::decompressed(source::buffered(reader), label)?;
            let size = if c.is_none() { len } else { None };
            stream(
                &mut *r,
                c,
                size,
                bmap,
                verify,
                label,
                feed,
                total,
                false,
                sha.take(),
            )
        }
        Input::Zip { mut archive, index } => {
            let entry = archive
                .by_index(index)
                .map_err(|e| source::zip_error(label, e))?;
            let entry_size = entry.size();
            // What reading the entry costs: its compressed bytes (a local archive counts
            // nothing else).
            let packed = entry.compressed_size();
            let (mut r, c) = source::decompressed(source::buffered(entry), label)?;
            let size = if c.is_none() { Some(entry_size) } else { None };
            let mut info = stream(
                &mut *r,
                c,
                size,
                bmap,
                verify,
                label,
                feed,
                total,
                true,
                sha.take(),
            )?;
            info.read = Some(packed);
            Ok(info)
        }
    }
}

/// A plain image read at offsets (a local file, or a URL with range requests): only the
/// bmap's ranges are read.
#[allow(clippy::too_many_arguments)]
fn by_ranges(
    file: &dyn Storage,
    size: u64,
    b: &Bmap,
    verify: bool,
    label: &Path,
    feed: &mut Feed,
    total: &AtomicU64,
    prefetch: &dyn Fn(u64, u64),
    mut sha: Option<&mut Digester>,
) -> Result<SourceInfo> {
    // Bytes the bmap skips, read only to be hashed.
    let cancel = feed.cancel.clone();
    let gap = |from: u64, to: u64, sha: &mut Option<&mut Digester>| -> Result<()> {
        let Some(h) = sha else { return Ok(()) };
        let mut buf = vec![0u8; CHUNK];
        let mut off = from;
        while off < to {
            let n = ((to - off) as usize).min(CHUNK);
            file.read_exact_at(&mut buf[..n], off)
                .map_err(error_of_io)?;
            h.update(&buf[..n]);
            off += n as u64;
            cancel.check()?;
        }
        Ok(())
    };
    let mut hashed = 0u64;
    {
        {
            let needed = b
                .ranges
                .last()
                .map_or(0, |r| r.bytes(b.block_size, b.image_size).1);
            if size < needed {
                return Err(Error::Bmap(sparsekit_bmap::Error::ImageTruncated {
                    path: Some(label.to_path_buf()),
                    size,
                    needed,
                }));
            }
            total.store(b.mapped_bytes(), Ordering::Relaxed);
            if !feed.send(|| Msg::Start {
                size: Some(b.image_size),
                sparse: false,
            })? {
                return Ok(SourceInfo {
                    image_size: b.image_size,
                    compression: None,
                    read: None,
                });
            }
            let cs = b.checksum_type;
            for (i, (start, end, sum)) in ranges(b, verify).into_iter().enumerate() {
                gap(hashed, start, &mut sha)?;
                hashed = end;
                let mut h = sum.map(|_| cs.hasher());
                let mut off = start;
                while off < end {
                    let n = ((end - off) as usize).min(CHUNK);
                    if (off - start) % PREFETCH == 0 {
                        prefetch(off, (end - off).min(2 * PREFETCH));
                    }
                    let mut buf = feed.buffer(n);
                    file.read_exact_at(&mut buf, off).map_err(error_of_io)?;
                    if let Some(h) = &mut h {
                        h.update(&buf);
                    }
                    if !feed.data(off, buf, sha.as_deref_mut())? {
                        return Ok(SourceInfo {
                            image_size: b.image_size,
                            compression: None,
                            read: None,
                        });
                    }
                    off += n as u64;
                }
                if let Some(h) = h {
                    check_range(b, i, h, label)?;
                }
            }
            gap(hashed, b.image_size.max(hashed), &mut sha)?;
            Ok(SourceInfo {
                image_size: b.image_size,
                compression: None,
                read: None,
            })
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn stream(
    r: &mut dyn Read,
    c: Option<Compression>,
    size: Option<u64>,
    bmap: Option<&Bmap>,
    verify: bool,
    label: &Path,
    feed: &mut Feed,
    total: &AtomicU64,
    zip: bool,
    mut sha: Option<&mut Digester>,
) -> Result<SourceInfo> {
    let mut pos = 0u64;
    let fail = |e: std::io::Error, pos: u64| {
        let e = source::decode_error(e, c, pos, label);
        match e {
            Error::Io(io) if zip && io.raw_os_error().is_none() => Error::Zip {
                path: Some(label.to_path_buf()),
                message: format!("entry data at byte {pos}: {}", io.source),
            },
            e => e,
        }
    };
    let info = |image_size| SourceInfo {
        image_size,
        compression: c,
        read: None,
    };
    match bmap {
        Some(b) => {
            total.store(b.mapped_bytes(), Ordering::Relaxed);
            if !feed.send(|| Msg::Start {
                size: Some(b.image_size),
                sparse: false,
            })? {
                return Ok(info(b.image_size));
            }
            let cs = b.checksum_type;
            let mut scratch = vec![0u8; 64 * 1024];
            for (i, (start, end, sum)) in ranges(b, verify).into_iter().enumerate() {
                while pos < start {
                    let n = ((start - pos) as usize).min(scratch.len());
                    let k = read_full(r, &mut scratch[..n]).map_err(|e| fail(e, pos))?;
                    if k == 0 {
                        return Err(truncated(label, pos, end));
                    }
                    if let Some(s) = &mut sha {
                        s.update(&scratch[..k]);
                    }
                    pos += k as u64;
                }
                let mut h = sum.map(|_| cs.hasher());
                while pos < end {
                    let n = ((end - pos) as usize).min(CHUNK);
                    let mut buf = feed.buffer(n);
                    let k = read_full(r, &mut buf).map_err(|e| fail(e, pos))?;
                    if k < n {
                        return Err(truncated(label, pos + k as u64, end));
                    }
                    if let Some(h) = &mut h {
                        h.update(&buf);
                    }
                    if !feed.data(pos, buf, sha.as_deref_mut())? {
                        return Ok(info(b.image_size));
                    }
                    pos += n as u64;
                }
                if let Some(h) = h {
                    check_range(b, i, h, label)?;
                }
            }
            // The rest of the image (past the last mapped range) is read to be hashed.
            if let Some(s) = &mut sha {
                loop {
                    let k = read_full(r, &mut scratch).map_err(|e| fail(e, pos))?;
                    if k == 0 {
                        break;
                    }
                    s.update(&scratch[..k]);
                    pos += k as u64;
                    feed.cancel.check()?;
                }
            }
            Ok(info(b.image_size))
        }
        None => {
            if let Some(s) = size {
                total.store(s, Ordering::Relaxed);
            }
            if !feed.send(|| Msg::Start { size, sparse: true })? {
                return Ok(info(size.unwrap_or(0)));
            }
            loop {
                let mut buf = feed.buffer(CHUNK);
                let k = read_full(r, &mut buf).map_err(|e| fail(e, pos))?;
                if k == 0 {
                    break;
                }
                buf.resize(k);
                if !feed.data(pos, buf, sha.as_deref_mut())? {
                    return Ok(info(pos));
                }
                pos += k as u64;
            }
            if let Some(s) = size {
                if pos < s {
                    return Err(truncated(label, pos, s));
                }
            }
            total.store(pos, Ordering::Relaxed);
            Ok(info(pos))
        }
    }
}

fn truncated(label: &Path, size: u64, needed: u64) -> Error {
    Error::Bmap(sparsekit_bmap::Error::ImageTruncated {
        path: Some(label.to_path_buf()),
        size,
        needed,
    })
}

/// Write-error checks of one destination, through a descriptor of its own (the writer's
/// is behind [`Destination`]): written ranges are grouped in [`CHECK_WINDOW`]s, and each
/// window is waited for once [`CHECK_LAG`] newer ones exist.
struct Checks {
    file: Option<std::fs::File>,
    path: Option<PathBuf>,
    /// Closed windows not yet checked, oldest first.
    pending: std::collections::VecDeque<(u64, u64)>,
    /// The open window.
    open: Option<(u64, u64)>,
    /// The end of the highest byte written.
    high: u64,
}

impl Checks {
    fn new(path: Option<&Path>) -> Self {
        // Read-only: sync_file_range needs no write access, and a block device opened
        // O_EXCL by the writer can still be opened without O_EXCL.
        let file = path.and_then(|p| std::fs::File::open(p).ok());
        Checks {
            file,
            path: path.map(Path::to_path_buf),
            pending: Default::default(),
            open: None,
            high: 0,
        }
    }

    fn wrote(&mut self, offset: u64, len: u64) -> Result<()> {
        if self.file.is_none() || len == 0 {
            return Ok(());
        }
        self.high = self.high.max(offset + len);
        let (start, end) = match self.open {
            Some((s, e)) if offset >= s => (s, e.max(offset + len)),
            Some(w) => {
                // Out of order: close the window and open another.
                self.pending.push_back(w);
                (offset, offset + len)
            }
            None => (offset, offset + len),
        };
        if end - start >= CHECK_WINDOW {
            self.pending.push_back((start, end));
            self.open = None;
        } else {
            self.open = Some((start, end));
        }
        while self.pending.len() > CHECK_LAG {
            let w = self.pending.pop_front().expect("non-empty");
            self.check(w)?;
        }
        Ok(())
    }

    /// Check every remaining window, oldest first (before the final `fsync`).
    fn finish(&mut self) -> Result<()> {
        if let Some(w) = self.open.take() {
            self.pending.push_back(w);
        }
        while let Some(w) = self.pending.pop_front() {
            self.check(w)?;
        }
        Ok(())
    }

    fn check(&self, (start, end): (u64, u64)) -> Result<()> {
        let Some(f) = &self.file else {
            return Ok(());
        };
        match sparsekit_io::sys::wait_writeback(f, start, end - start) {
            Ok(()) => Ok(()),
            // Not a file or device that has it: the final fsync reports errors.
            Err(e) if matches!(e.raw_os_error(), Some(errno::EINVAL | errno::ESPIPE)) => Ok(()),
            Err(e) => {
                // The error sequence is per file, not per range: the failed write-back
                // is of a page not yet checked, which lies between this window's start
                // and the highest byte written (every earlier window checked clean).
                let path = self.path.clone().unwrap_or_default();
                let source = sparsekit_io::IoError::new("sync_file_range", e)
                    .with_path(&path)
                    .at(start);
                Err(Error::WriteFailed {
                    path,
                    start,
                    end: self.high.max(end),
                    source: Box::new(source),
                })
            }
        }
    }
}

/// Bytes an unprivileged user may still write on the file system holding `path`
/// (`statvfs`: `f_bavail * f_frsize`), when known.
fn free_space(path: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: `c` is a NUL-terminated path and `st` a statvfs buffer to fill.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return None;
        }
        #[allow(clippy::unnecessary_cast)]
        Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// What a writer does with what the reader sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Write the image (and read it back with `read_back`).
    Write,
    /// Write nothing: read the destination and compare ([`crate::verify()`]).
    Compare,
}

/// How a writer writes: the options of [`FlashOptions`] every writer shares.
#[derive(Clone, Copy)]
struct Plan {
    mode: Mode,
    read_back: bool,
    seek: u64,
    only_changed: bool,
    write_retries: u32,
    retry_delay: Duration,
    unmapped: Unmapped,
    check_capacity: bool,
}

/// Whether a failed write is worth trying again: a card reader's EIO that the next
/// attempt does not see, a device still busy (EBUSY), a queue full (EAGAIN).
fn transient(errno: Option<i32>) -> bool {
    matches!(errno, Some(errno::EIO | errno::EBUSY | libc::EAGAIN))
}

/// Wait `delay` before retrying a transient error (in small steps, so that an abort is not
/// held up), and return the next delay: doubled, at most 5 s.
fn back_off(cancel: &Cancel, delay: Duration) -> std::result::Result<Duration, Aborted> {
    let until = std::time::Instant::now() + delay;
    while std::time::Instant::now() < until {
        cancel.check()?;
        std::thread::sleep(Duration::from_millis(10).min(delay));
    }
    Ok((delay * 2).min(Duration::from_secs(5)))
}

/// One destination's writes: `O_DIRECT` where aligned, retries of transient errors,
/// only-changed comparison, and the counts for its report.
struct Writer<'a> {
    dst: &'a dyn Destination,
    label: &'a Path,
    direct: Option<std::fs::File>,
    checks: Checks,
    plan: Plan,
    cancel: &'a Cancel,
    written: u64,
    skipped: u64,
    /// Writes tried again (the destination's count, kept also when it fails).
    retries: &'a AtomicU64,
    /// What the destination holds, read for comparison.
    old: PageBuf,
}

impl Writer<'_> {
    /// Write `data` at `at` of the destination: through the `O_DIRECT` descriptor when
    /// buffer, offset and length are page-aligned, else buffered; a transient error is
    /// tried again after a growing wait, a persistent one is [`Error::Write`] with the
    /// range.
    fn write(&mut self, data: &[u8], at: u64) -> Result<()> {
        let mut attempts = 0u32;
        let mut delay = self.plan.retry_delay;
        loop {
            attempts += 1;
            let aligned = at.is_multiple_of(PAGE as u64)
                && data.len().is_multiple_of(PAGE)
                && (data.as_ptr() as usize).is_multiple_of(PAGE);
            let (r, was_direct) = match self.direct.as_ref().filter(|_| aligned) {
                Some(f) => (
                    sparsekit_io::sys::FileExt::write_all_at(f, data, at)
                        .map_err(|e| sparsekit_io::IoError::new("write", e).at(at)),
                    true,
                ),
                None => (self.dst.write_all_at(data, at), false),
            };
            match r {
                Ok(()) => break,
                // EINVAL from O_DIRECT: alignment the device does not take; buffered from now.
                Err(e) if was_direct && e.raw_os_error() == Some(errno::EINVAL) => {
                    self.direct = None;
                    attempts -= 1;
                }
                Err(e) if transient(e.raw_os_error()) && attempts <= self.plan.write_retries => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    delay = back_off(self.cancel, delay)?;
                }
                Err(e) => {
                    let e = match (&e.path, self.label.as_os_str().is_empty()) {
                        (None, false) => e.with_path(self.label),
                        _ => e,
                    };
                    return Err(Error::Write {
                        path: self.label.to_path_buf(),
                        start: at,
                        end: at + data.len() as u64,
                        attempts,
                        source: Box::new(e),
                    });
                }
            }
        }
        self.written += data.len() as u64;
        if self.direct.is_none() {
            self.dst.start_writeback(at, data.len() as u64);
        }
        self.checks.wrote(at, data.len() as u64)
    }

    /// Whether `buf` may be written with others in one `O_DIRECT` write: page-aligned,
    /// whole pages, and the destination is written that way.
    fn gathers(&self, buf: &[u8]) -> bool {
        cfg!(target_os = "linux")
            && self.direct.is_some()
            && buf.len().is_multiple_of(PAGE)
            && (buf.as_ptr() as usize).is_multiple_of(PAGE)
    }

    /// Write contiguous chunks at `at` in one `O_DIRECT` write (`pwritev`); if that fails
    /// or falls short, chunk by chunk (each with its retries, a failure naming its own
    /// range, as [`Writer::write`] does).
    fn put_group(&mut self, bufs: &[Arc<Buf>], at: u64) -> Result<()> {
        #[cfg(target_os = "linux")]
        if let (Some(f), true) = (self.direct.as_ref(), bufs.len() > 1) {
            use std::os::fd::AsRawFd;
            let iov: Vec<libc::iovec> = bufs
                .iter()
                .map(|b| libc::iovec {
                    iov_base: b.as_ptr() as *mut libc::c_void,
                    iov_len: b.len(),
                })
                .collect();
            let total: usize = bufs.iter().map(|b| b.len()).sum();
            // SAFETY: every iovec points into a live buffer of its length (held by `bufs`).
            let n = unsafe {
                libc::pwritev(
                    f.as_raw_fd(),
                    iov.as_ptr(),
                    iov.len() as libc::c_int,
                    at as libc::off_t,
                )
            };
            if n >= 0 && n as usize == total {
                self.written += total as u64;
                return self.checks.wrote(at, total as u64);
            }
        }
        let mut a = at;
        for b in bufs {
            self.write(b, a)?;
            a += b.len() as u64;
        }
        Ok(())
    }

    /// Read what the destination holds at `at` into `self.old` (`len` bytes): the bytes
    /// there, fewer at its end (the first MiB, compared at the end; every other chunk is
    /// read ahead by [`OldReader`]).
    fn read_old(&mut self, at: u64, len: usize) -> Result<usize> {
        let mut old = std::mem::take(&mut self.old);
        let mut reader = OldReader {
            dst: self.dst,
            direct: None,
            plan: self.plan,
            cancel: self.cancel,
            retries: self.retries,
        };
        let r = reader.read(&mut old, at, len);
        self.old = old;
        r
    }

    /// Put `data` at `at`: all of it, or with `only_changed` the 4 KiB blocks that differ
    /// from what the destination holds, or in a sparse file the blocks that are not zeros.
    fn put(&mut self, data: &[u8], at: u64, sparse: bool) -> Result<()> {
        if self.plan.only_changed {
            let have = self.read_old(at, data.len())?;
            let old = std::mem::take(&mut self.old);
            let r = self.put_changed(data, at, &old[..have]);
            self.old = old;
            return r;
        }
        self.put_all(data, at, sparse)
    }

    /// Write the 4 KiB blocks of `data` that differ from `old`, what the destination holds
    /// at `at` (shorter than `data` where the destination ends): one `memcmp` of the whole
    /// chunk first (most chunks of a re-flash are equal), block by block only where not.
    fn put_changed(&mut self, data: &[u8], at: u64, old: &[u8]) -> Result<()> {
        if old.len() == data.len() && data == old {
            self.skipped += data.len() as u64;
            return Ok(());
        }
        let mut i = 0;
        while i < data.len() {
            if !block_differs(data, old, i) {
                let end = (i + BLOCK as usize).min(data.len());
                self.skipped += (end - i) as u64;
                i = end;
                continue;
            }
            let mut j = i;
            while j < data.len() && block_differs(data, old, j) {
                j = (j + BLOCK as usize).min(data.len());
            }
            self.write(&data[i..j], at + i as u64)?;
            i = j;
        }
        Ok(())
    }

    /// Put `data` at `at`, all of it, or in a sparse file the blocks that are not zeros.
    fn put_all(&mut self, data: &[u8], at: u64, sparse: bool) -> Result<()> {
        if sparse {
            // Runs of blocks that are not all zeros; the rest stays a hole.
            let mut i = 0usize;
            let bs = BLOCK as usize;
            while i < data.len() {
                let end = |j: usize| (j + bs).min(data.len());
                if is_zero(&data[i..end(i)]) {
                    i = end(i);
                    continue;
                }
                let mut j = i;
                while j < data.len() && !is_zero(&data[j..end(j)]) {
                    j = end(j);
                }
                self.write(&data[i..j], at + i as u64)?;
                i = j;
            }
            return Ok(());
        }
        self.write(data, at)
    }

    /// Zero or discard `[start, end)` of the destination ([`Unmapped`]).
    fn clear(&mut self, start: u64, end: u64) -> Result<()> {
        if end <= start {
            return Ok(());
        }
        match self.plan.unmapped {
            Unmapped::Keep => Ok(()),
            Unmapped::Zero => Ok(self.dst.write_zeroes(start, end - start)?),
            Unmapped::Discard => {
                // A device discards whole sectors: the unaligned edges (an image whose size
                // is no multiple of 4 KiB) are zeroed instead.
                let s = start.next_multiple_of(BLOCK).min(end);
                let e = (end / BLOCK * BLOCK).max(s);
                self.dst.write_zeroes(start, s - start)?;
                self.dst.write_zeroes(e, end - e)?;
                self.discard(s, e)
            }
        }
    }

    /// Discard `[start, end)` (4 KiB-aligned) of the destination.
    fn discard(&mut self, start: u64, end: u64) -> Result<()> {
        if end <= start {
            return Ok(());
        }
        match self.dst.punch_hole(start, end - start) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(errno::EOPNOTSUPP | errno::EINVAL)) => {
                Err(Error::Unsupported {
                    what: format!(
                        "discard on '{}' (the device or file system does not discard: {}); \
                         zero the unmapped ranges instead",
                        self.label.display(),
                        e.source
                    ),
                })
            }
            Err(e) => Err(Error::Io(e)),
        }
    }

    /// Zero a stale GPT backup (its header at the last 512-byte or 4 KiB sector, "EFI
    /// PART") in the device's last MiB when the image ends before it: a bigger card keeps
    /// the backup table of an older image, which partitioning tools then find and offer
    /// to "restore".
    fn zero_stale_gpt(&mut self, image_end: u64) -> Result<()> {
        let size = self.dst.size()?;
        if size < 2 * HEAD || image_end > size - HEAD {
            return Ok(());
        }
        let mut tail = [0u8; 4096];
        self.dst.read_exact_at(&mut tail, size - 4096)?;
        let sig = b"EFI PART";
        if &tail[4096 - 512..4096 - 512 + 8] != sig && &tail[..8] != sig {
            return Ok(());
        }
        let mut zeros = PageBuf::new(HEAD as usize);
        zeros.resize(HEAD as usize);
        zeros.fill(0);
        self.write(&zeros, size - HEAD)
    }
}

/// Whether the 4 KiB block of `data` at `i` differs from `old` (what the destination
/// holds there; shorter where the destination ends).
fn block_differs(data: &[u8], old: &[u8], i: usize) -> bool {
    let end = (i + BLOCK as usize).min(data.len());
    end > old.len() || data[i..end] != old[i..end]
}

/// The first run of 4 KiB blocks of `data` (to go at `at`) that differ from `old`, what
/// the destination holds there, as destination byte offsets.
fn first_difference(data: &[u8], old: &[u8], at: u64) -> Option<(u64, u64)> {
    if old.len() == data.len() && data == old {
        return None;
    }
    let bs = BLOCK as usize;
    let i = (0..data.len())
        .step_by(bs)
        .find(|&i| block_differs(data, old, i))?;
    let mut j = i;
    while j < data.len() && block_differs(data, old, j) {
        j = (j + bs).min(data.len());
    }
    Some((at + i as u64, at + j as u64))
}

/// What a destination held under a chunk, read ahead of its writer.
struct Old {
    /// The read that covered the chunk (one read may cover several chunks).
    buf: Arc<PageBuf>,
    /// Where the chunk's bytes start in `buf`.
    start: usize,
    /// Bytes of the chunk read (fewer than the chunk where the destination ends).
    have: usize,
}

impl Old {
    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.have]
    }
}

/// The most bytes [`read_ahead`] reads at once: the chunks already queued behind one are
/// read with it, so a device that serves several requests at once (the block layer splits
/// a large read) gets them.
const SPAN: usize = 4 * CHUNK;
/// The most bytes of queued contiguous chunks written at once ([`Writer::put_group`]).
const GATHER: usize = 8 * CHUNK;

/// A message of the source's reader, with what the destination holds under a chunk when
/// the writer compares ([`FlashOptions::only_changed`], [`crate::verify()`]).
struct Item {
    msg: Msg,
    old: Option<Result<Old>>,
}

/// Reads what a destination holds: past the page cache (`O_DIRECT`, whole chunks) where
/// offset and length are aligned and the destination takes it, else through the
/// destination (its page cache dropped first); transient errors are tried again as writes
/// are.
struct OldReader<'a> {
    dst: &'a dyn Destination,
    direct: Option<std::fs::File>,
    plan: Plan,
    cancel: &'a Cancel,
    retries: &'a AtomicU64,
}

impl OldReader<'_> {
    /// Read `len` bytes at `at` into `buf` (resized to hold them); the bytes read, fewer
    /// only where the destination ends.
    fn read(&mut self, buf: &mut PageBuf, at: u64, len: usize) -> Result<usize> {
        let mut attempts = 0u32;
        let mut delay = self.plan.retry_delay;
        loop {
            attempts += 1;
            match self.try_read(buf, at, len) {
                Ok(n) => return Ok(n),
                Err(e) if transient(e.raw_os_error()) && attempts <= self.plan.write_retries => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    delay = back_off(self.cancel, delay)?;
                }
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    fn try_read(
        &mut self,
        buf: &mut PageBuf,
        at: u64,
        len: usize,
    ) -> std::result::Result<usize, sparsekit_io::IoError> {
        if let Some(f) = self
            .direct
            .as_ref()
            .filter(|_| at.is_multiple_of(PAGE as u64))
        {
            // Whole pages: the last partial block of an image is read with the rest of
            // its page (the device or file ends there, or holds more).
            buf.resize(len.next_multiple_of(PAGE));
            let mut n = 0;
            let r = loop {
                if n == buf.len() {
                    break Ok(());
                }
                match sparsekit_io::sys::FileExt::read_at(f, &mut buf[n..], at + n as u64) {
                    Ok(0) => break Ok(()),
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            match r {
                Ok(()) => return Ok(n.min(len)),
                // EINVAL: alignment the device or file system does not take; read
                // through the destination from now.
                Err(e) if e.raw_os_error() == Some(errno::EINVAL) => self.direct = None,
                Err(e) => {
                    return Err(sparsekit_io::IoError::new("read", e).at(at + n as u64));
                }
            }
        }
        buf.resize(len);
        let mut n = 0;
        while n < len {
            match self.dst.read_at(&mut buf[n..], at + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

/// Open `path` to read it past the page cache (`O_DIRECT`) on Linux; elsewhere `None`: the
/// read-back reads through its destination (macOS's `F_NOCACHE` switches a whole
/// descriptor, which the read-back does with `drop_cache` instead).
fn open_read_direct(path: &Path) -> Option<std::fs::File> {
    if cfg!(target_os = "linux") {
        sparsekit_io::sys::open_direct_read(path).ok()
    } else {
        None
    }
}

/// The destination's reader of an only-changed flash or a verify, on a thread of its own
/// between the source's reader and the writer: it reads what the destination holds under
/// each chunk while the writer compares and writes the previous ones and the source's
/// reader reads (and decompresses) the next, so the destination's reads, the source's and
/// the writes overlap instead of taking turns. Contiguous chunks already queued are read
/// at once (up to [`SPAN`]). After `Start` it waits for `go` (the writer's size checks and
/// capacity probe come first: the probe writes patterns it then restores). Buffers come
/// back through `back`.
fn read_ahead(
    rx: Receiver<Msg>,
    tx: SyncSender<Item>,
    go: Receiver<()>,
    back: Receiver<Arc<PageBuf>>,
    mut reader: OldReader<'_>,
    stop: &std::sync::atomic::AtomicBool,
) {
    let seek = reader.plan.seek;
    let mut free: Vec<PageBuf> = Vec::new();
    // A message taken while gathering a span that did not belong to it.
    let mut next: Option<Msg> = None;
    loop {
        let msg = match next.take() {
            Some(msg) => msg,
            None => match rx.recv_timeout(TICK) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => continue,
                Err(_) => return,
            },
        };
        let item = match msg {
            Msg::Data { offset, buf } => {
                let start = seek + offset;
                let mut end = start + buf.len() as u64;
                let mut run = vec![(offset, buf)];
                while end - start < SPAN as u64 && end.is_multiple_of(PAGE as u64) {
                    match rx.try_recv() {
                        Ok(Msg::Data { offset, buf })
                            if seek + offset == end
                                && (end - start) as usize + buf.len() <= SPAN =>
                        {
                            end += buf.len() as u64;
                            run.push((offset, buf));
                        }
                        Ok(msg) => {
                            next = Some(msg);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                while let Ok(b) = back.try_recv() {
                    if let Ok(b) = Arc::try_unwrap(b) {
                        if free.len() < 4 {
                            free.push(b);
                        }
                    }
                }
                let mut old = free.pop().unwrap_or_else(|| PageBuf::new(SPAN));
                match reader.read(&mut old, start, (end - start) as usize) {
                    Ok(have) => {
                        let old = Arc::new(old);
                        for (offset, buf) in run {
                            let at = (seek + offset - start) as usize;
                            let o = Old {
                                buf: old.clone(),
                                start: at.min(have),
                                have: have.saturating_sub(at).min(buf.len()),
                            };
                            let item = Item {
                                msg: Msg::Data { offset, buf },
                                old: Some(Ok(o)),
                            };
                            if tx.send(item).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let (offset, buf) = run.swap_remove(0);
                        let _ = tx.send(Item {
                            msg: Msg::Data { offset, buf },
                            old: Some(Err(e)),
                        });
                        return;
                    }
                }
                continue;
            }
            msg => msg,
        };
        let start = matches!(item, Msg::Start { .. });
        if tx
            .send(Item {
                msg: item,
                old: None,
            })
            .is_err()
        {
            return;
        }
        if start && go.recv().is_err() {
            return;
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

/// The image's first [`HEAD`] bytes, held back by a writer until everything else is
/// written and synced.
struct Head {
    buf: PageBuf,
    /// Ranges of `buf` that hold data, as image offsets.
    ranges: Vec<(u64, u64)>,
}

impl Head {
    fn new() -> Self {
        let mut buf = PageBuf::new(HEAD as usize);
        buf.resize(HEAD as usize);
        Head {
            buf,
            ranges: Vec::new(),
        }
    }

    fn hold(&mut self, offset: u64, data: &[u8]) {
        let s = offset as usize;
        self.buf[s..s + data.len()].copy_from_slice(data);
        self.ranges.push((offset, offset + data.len() as u64));
    }
}

/// A writer: everything the reader sends, the image's first MiB held back; then `fsync`,
/// the first MiB written and synced, and the read-back.
///
/// An image whose size is not known before it ends (an HTTP body without Content-Length,
/// a compressed stream without a bmap) is bounded by the destination: a block device's
/// size, a regular file's file system's free space when writing starts (holes count: an
/// endless run of zeros must not grow a sparse file without end). Past it the
/// destination fails with [`Error::DestinationFull`] (`ERR_SPARSEKIT_DEST_TOO_SMALL`).
#[allow(clippy::too_many_arguments)]
fn consume(
    dst: &dyn Destination,
    label: &Path,
    opener: &dyn Opener,
    rx: Receiver<Msg>,
    st: &DestStatus,
    plan: Plan,
    cancel: &Cancel,
) -> Result<(u64, bool, u64)> {
    if plan.mode != Mode::Compare && !plan.only_changed {
        let mut next = || rx.recv().ok().map(|msg| Item { msg, old: None });
        let mut ready = || rx.try_recv().ok().map(|msg| Item { msg, old: None });
        return consume_items(
            dst, label, opener, &mut next, &mut ready, None, st, plan, cancel,
        );
    }
    // Compared: the destination is read ahead on a thread of its own ([`read_ahead`]).
    let direct = dst.path().and_then(open_read_direct);
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let (tx, items) = sync_channel::<Item>(QUEUE);
        let (go_tx, go_rx) = sync_channel::<()>(1);
        let (back_tx, back_rx) = std::sync::mpsc::channel::<Arc<PageBuf>>();
        let reader = OldReader {
            dst,
            direct,
            plan,
            cancel,
            retries: &st.retries,
        };
        let stop = &stop;
        std::thread::Builder::new()
            .name("sparsekit-flash-compare".into())
            .spawn_scoped(s, move || read_ahead(rx, tx, go_rx, back_rx, reader, stop))
            .expect("spawn a flash destination reader");
        let mut next = || items.recv().ok();
        let r = consume_items(
            dst,
            label,
            opener,
            &mut next,
            &mut || None,
            Some((go_tx, back_tx)),
            st,
            plan,
            cancel,
        );
        // The destination's reader may wait for the source: it stops at its next look.
        stop.store(true, Ordering::Relaxed);
        drop(items);
        r
    })
}

/// [`consume`] of the messages `next` gives (`ready` gives one only when it is already
/// queued: contiguous chunks are written together); with `ahead`, the destination's
/// reader is told to go on after `Start` and gets its buffers back.
#[allow(clippy::too_many_arguments)]
fn consume_items(
    dst: &dyn Destination,
    label: &Path,
    opener: &dyn Opener,
    next: &mut dyn FnMut() -> Option<Item>,
    ready: &mut dyn FnMut() -> Option<Item>,
    ahead: Option<(SyncSender<()>, std::sync::mpsc::Sender<Arc<PageBuf>>)>,
    st: &DestStatus,
    plan: Plan,
    cancel: &Cancel,
) -> Result<(u64, bool, u64)> {
    let path = dst.path().map(Path::to_path_buf);
    let is_dev = dst.is_block_device();
    let seek = plan.seek;
    let compare = plan.mode == Mode::Compare;
    // A file is kept as it is (not truncated first) when its bytes are compared, or when
    // the image goes at an offset into it.
    let keep = compare || plan.only_changed || seek > 0;
    let mut sparse = false;
    // Where an image of unknown size must stop: the device's size, or the free space of
    // the file system holding a file (with what it is, for the error).
    let mut room: Option<(u64, &'static str)> = None;
    let mut old_len = 0u64;
    // A block device is written with O_DIRECT where a chunk is aligned: no copy into the
    // page cache per destination (the copies that made three drives cost three times the
    // CPU of one), and a failing drive fails at the write itself, at its offset. Buffered
    // writes (an unaligned tail, a device that refuses O_DIRECT) go through `dst`.
    let direct = if is_dev && !compare {
        path.as_deref().and_then(|p| opener.open_direct(p).ok())
    } else {
        None
    };
    let mut w = Writer {
        dst,
        label,
        direct,
        checks: Checks::new(path.as_deref()),
        plan,
        cancel,
        written: 0,
        skipped: 0,
        retries: &st.retries,
        old: PageBuf::new(if keep { CHUNK } else { 0 }),
    };
    let mut head = Head::new();
    // A message taken from the queue while gathering chunks, not yet handled.
    let mut stash: Option<Item> = None;
    loop {
        let Some(Item { msg, old }) = stash.take().or_else(&mut *next) else {
            // The reader stopped without an end: it failed or was cancelled (or the
            // image's digest did not match). The first MiB was not written.
            return Err(Error::Aborted);
        };
        cancel.check()?;
        let old = old.transpose()?;
        match msg {
            Msg::Start { size, sparse: s } => {
                sparse = s && !is_dev && !keep;
                if is_dev || compare {
                    let have = dst.size()?;
                    match size {
                        Some(size) if have < seek.saturating_add(size) => {
                            return Err(Error::Bmap(sparsekit_bmap::Error::DestinationTooSmall {
                                path,
                                image_size: seek.saturating_add(size),
                                dest_size: have,
                            }));
                        }
                        Some(_) => {}
                        None => room = Some((have.saturating_sub(seek), "the device's size")),
                    }
                    if plan.check_capacity && is_dev && !compare {
                        let p = crate::probe::probe_capacity(dst, cancel)?;
                        let needed = size.map_or(p.claimed, |s| seek.saturating_add(s));
                        if p.real < needed {
                            return Err(Error::Counterfeit {
                                path: label.to_path_buf(),
                                claimed: p.claimed,
                                real: p.real,
                                needed,
                            });
                        }
                    }
                } else {
                    if keep {
                        old_len = dst.size()?;
                    } else {
                        dst.set_len(0)?;
                    }
                    match size {
                        Some(size) => {
                            if !keep || old_len < seek + size {
                                dst.set_len(seek + size)?;
                            }
                        }
                        None => {
                            room = path
                                .as_deref()
                                .and_then(free_space)
                                .map(|f| (f, "the free space of the file system holding it"))
                        }
                    }
                }
                if keep {
                    // Compare with what the medium holds, not with cached pages.
                    let _ = dst.drop_cache(0, 0);
                }
                if let Some((go, _)) = &ahead {
                    let _ = go.send(());
                }
                st.state.store(DestState::Writing as u8, Ordering::Relaxed);
            }
            Msg::Data { offset, buf } => {
                let end = offset + buf.len() as u64;
                if let Some((room, what)) = room.filter(|(r, _)| end > *r) {
                    return Err(Error::DestinationFull {
                        path: path.unwrap_or_default(),
                        needed: seek + end,
                        room,
                        what,
                    });
                }
                let at = seek + offset;
                let old = match old {
                    Some(o) => Some(o),
                    None if compare => {
                        let have = w.read_old(at, buf.len())?;
                        Some(Old {
                            buf: Arc::new(std::mem::take(&mut w.old)),
                            start: 0,
                            have,
                        })
                    }
                    None => None,
                };
                let give_back = |o: Option<Old>| {
                    if let (Some(o), Some((_, back))) = (o, &ahead) {
                        let _ = back.send(o.buf);
                    }
                };
                if compare {
                    let o = old.as_ref().expect("read above");
                    let diff = first_difference(&buf, o.bytes(), at);
                    give_back(old);
                    if let Some((start, end)) = diff {
                        return Err(Error::Differs {
                            path: label.to_path_buf(),
                            start,
                            end,
                        });
                    }
                    st.verified.fetch_add(buf.len() as u64, Ordering::Relaxed);
                    st.written.fetch_add(buf.len() as u64, Ordering::Relaxed);
                    continue;
                }
                let held = if offset < HEAD {
                    ((HEAD - offset) as usize).min(buf.len())
                } else {
                    0
                };
                if held > 0 {
                    head.hold(offset, &buf[..held]);
                }
                if held < buf.len() {
                    let at = at + held as u64;
                    match &old {
                        Some(o) if plan.only_changed => {
                            let bytes = o.bytes();
                            let r =
                                w.put_changed(&buf[held..], at, &bytes[held.min(bytes.len())..]);
                            give_back(old);
                            r?;
                        }
                        _ if held == 0 && !sparse && !plan.only_changed && w.gathers(&buf) => {
                            // The chunks queued right behind this one, contiguous, go with
                            // it in one write (a device serves a large write as several
                            // requests at once; one 1 MiB O_DIRECT write at a time waits
                            // on each).
                            let mut group = vec![buf.clone()];
                            let mut len = buf.len();
                            let mut next_at = end;
                            while len < GATHER {
                                match ready() {
                                    Some(Item {
                                        msg: Msg::Data { offset: o, buf: b },
                                        old: None,
                                    }) if o == next_at
                                        && len + b.len() <= GATHER
                                        && w.gathers(&b)
                                        && room.is_none_or(|(r, _)| o + b.len() as u64 <= r) =>
                                    {
                                        next_at += b.len() as u64;
                                        len += b.len();
                                        group.push(b);
                                    }
                                    Some(item) => {
                                        stash = Some(item);
                                        break;
                                    }
                                    None => break,
                                }
                            }
                            w.put_group(&group, at)?;
                            let extra = (len - buf.len()) as u64;
                            st.written.fetch_add(extra, Ordering::Relaxed);
                        }
                        _ => w.put(&buf[held..], at, sparse)?,
                    }
                } else {
                    give_back(old);
                }
                st.written.fetch_add(buf.len() as u64, Ordering::Relaxed);
            }
            Msg::End { size, segments } => {
                st.state.store(DestState::Syncing as u8, Ordering::Relaxed);
                if compare {
                    let n = st.verified.load(Ordering::Relaxed);
                    return Ok((n, true, 0));
                }
                if is_dev && seek == 0 {
                    w.zero_stale_gpt(size)?;
                }
                // The image's ranges nothing was sent for, past the first MiB now, within
                // it with the first MiB.
                let mut gaps = Vec::new();
                if plan.unmapped != Unmapped::Keep {
                    let mut at = 0u64;
                    for sg in segments.iter() {
                        if sg.offset > at {
                            gaps.push((at, sg.offset));
                        }
                        at = at.max(sg.offset + u64::from(sg.len));
                    }
                    if size > at {
                        gaps.push((at, size));
                    }
                }
                for &(a, b) in &gaps {
                    w.clear(seek + a.max(HEAD), seek + b.max(HEAD))?;
                }
                w.checks.finish()?;
                if !is_dev {
                    // At an offset, a file keeps what lies after the image.
                    dst.set_len(if seek > 0 {
                        old_len.max(seek + size)
                    } else {
                        size
                    })?;
                }
                // Everything but the first MiB is durable before the first MiB is written.
                dst.flush()?;
                let ranges = std::mem::take(&mut head.ranges);
                for (s, e) in ranges {
                    cancel.check()?;
                    let data = &head.buf[s as usize..e as usize];
                    w.put(data, seek + s, sparse)?;
                }
                for &(a, b) in &gaps {
                    w.clear(seek + a.min(HEAD), seek + b.min(HEAD))?;
                }
                w.checks.finish()?;
                dst.flush()?;
                let (written, skipped) = (w.written, w.skipped);
                if !plan.read_back {
                    return Ok((written, false, skipped));
                }
                st.state
                    .store(DestState::Verifying as u8, Ordering::Relaxed);
                dst.drop_cache(0, 0)?;
                let reader = OldReader {
                    dst,
                    direct: path.as_deref().and_then(open_read_direct),
                    plan,
                    cancel,
                    retries: &st.retries,
                };
                read_back(reader, &segments, seek, path, st)?;
                return Ok((written, true, skipped));
            }
        }
    }
}

/// The most bytes the read-back reads at once: contiguous segments are read together, so
/// a device that serves several requests at once (the block layer splits a large read)
/// gets them.
const BACK_SPAN: usize = 8 * CHUNK;

/// Read every segment written back past the page cache and compare its digest: spans of
/// contiguous segments (up to [`BACK_SPAN`]) are read by `reader` (`O_DIRECT` where the
/// destination takes it) on a thread of its own, ahead of the hashing here.
fn read_back(
    mut reader: OldReader<'_>,
    segments: &[Segment],
    seek: u64,
    path: Option<PathBuf>,
    st: &DestStatus,
) -> Result<()> {
    // Spans: (first segment, end segment, start offset, length).
    let mut spans: Vec<(usize, usize, u64, usize)> = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        match spans.last_mut() {
            Some((_, end, start, len))
                if *start + *len as u64 == s.offset && *len + s.len as usize <= BACK_SPAN =>
            {
                *end = i + 1;
                *len += s.len as usize;
            }
            _ => spans.push((i, i + 1, s.offset, s.len as usize)),
        }
    }
    let cancel = reader.cancel;
    std::thread::scope(|sc| {
        let (tx, rx) = sync_channel::<Result<(PageBuf, usize)>>(1);
        let (back_tx, back_rx) = std::sync::mpsc::channel::<PageBuf>();
        let spans = &spans;
        std::thread::Builder::new()
            .name("sparsekit-flash-read-back".into())
            .spawn_scoped(sc, move || {
                for &(_, _, start, len) in spans {
                    let mut buf = back_rx.try_recv().unwrap_or_default();
                    let r = reader.read(&mut buf, seek + start, len).map(|n| (buf, n));
                    let failed = r.is_err();
                    if tx.send(r).is_err() || failed {
                        return;
                    }
                }
            })
            .expect("spawn the flash read-back");
        for &(first, end, start, len) in spans {
            cancel.check()?;
            let Ok(r) = rx.recv() else {
                return Err(Error::Aborted);
            };
            let (buf, n) = r?;
            if n < len {
                let at = seek + start + n as u64;
                return Err(Error::Io(
                    sparsekit_io::IoError::new(
                        "read",
                        std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                    )
                    .at(at),
                ));
            }
            for s in &segments[first..end] {
                let o = (s.offset - start) as usize;
                let b = &buf[o..o + s.len as usize];
                if blake3::hash(b).as_bytes() != &s.digest {
                    let at = seek + s.offset;
                    return Err(Error::Bmap(sparsekit_bmap::Error::ReadBackMismatch {
                        path,
                        first: at / BLOCK,
                        last: (at + s.len as u64 - 1) / BLOCK,
                        bytes: (at, at + s.len as u64),
                    }));
                }
                st.verified.fetch_add(s.len as u64, Ordering::Relaxed);
            }
            let _ = back_tx.send(buf);
        }
        Ok(())
    })
}

pub(crate) fn run(
    opened: Opened,
    targets: Vec<Target>,
    opts: &FlashOptions,
    mode: Mode,
    status: Option<&FlashStatus>,
    ctl: &mut Control<'_>,
) -> Result<FlashReport> {
    let expected = match &opts.sha256 {
        Some(h) => Some(check_sha256(h)?),
        None => None,
    };
    let local;
    let status = match status {
        Some(s) if s.dests.len() == targets.len() => s,
        _ => {
            local = FlashStatus::new(targets.len());
            &local
        }
    };
    let cancel = ctl.cancel().clone();
    let Opened {
        input,
        bmap,
        bmap_from,
        zip_entry,
        consumed,
        label,
        trim,
        ..
    } = opened;
    let mut reports: Vec<DestinationReport> = Vec::with_capacity(targets.len());
    let mut senders = Vec::new();
    let mut work = Vec::new();
    for (i, t) in targets.into_iter().enumerate() {
        reports.push(DestinationReport {
            path: t.path.clone(),
            bytes_written: 0,
            verified: false,
            bytes_skipped: 0,
            retries: 0,
            ejected: false,
            eject_error: None,
            error: None,
        });
        match t.dst {
            Ok(d) => {
                let (tx, rx) = sync_channel::<Msg>(QUEUE);
                senders.push(Some(tx));
                work.push((i, d, rx));
            }
            Err(e) => {
                status.fail(i, &e);
                reports[i].error = Some(e);
                senders.push(None);
            }
        }
    }
    let read_back = opts.read_back && mode == Mode::Write;
    let verify = opts.verify;
    let plan = Plan {
        mode,
        read_back,
        seek: opts.seek,
        only_changed: opts.only_changed,
        write_retries: opts.write_retries,
        retry_delay: opts.retry_delay,
        unmapped: opts.unmapped,
        check_capacity: opts.check_capacity,
    };
    let mut feed = Feed {
        digests: read_back,
        blake: None,
        senders,
        segments: Vec::new(),
        pool: Vec::new(),
        cancel: cancel.clone(),
    };
    // A stream's own length (compressed bytes), for progress while the image size is
    // unknown (an .img.xz without a bmap).
    // Decided before the first byte, so a phase never starts as one and ends as the other:
    // a compressed stream without a bmap has no image size until it ends.
    let stream_len = match &input {
        Input::Stream {
            len,
            compressed: true,
            ..
        } if bmap.is_none() => *len,
        _ => None,
    };
    let mut sha256: Option<String> = None;
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let outcome =
        std::thread::scope(|s| {
            let reader = {
                let done_tx = done_tx.clone();
                let bmap = bmap.as_ref();
                let label = &label;
                let total = &status.total;
                let feed = &mut feed;
                let expected = &expected;
                let digest_out = &mut sha256;
                // The SHA-256 on a thread of its own, off the reader's path.
                let mut digester = expected.as_ref().map(|_| {
                    let (tx, rx) = sync_channel::<Arc<Buf>>(QUEUE);
                    let h = std::thread::Builder::new()
                        .name("sparsekit-flash-sha256".into())
                        .spawn_scoped(s, move || {
                            use sha2::Digest;
                            let mut h = sha2::Sha256::new();
                            for b in rx {
                                h.update(&b[..]);
                            }
                            hex(&h.finalize())
                        })
                        .expect("spawn the flash hasher");
                    (Digester { tx }, h)
                });
                std::thread::Builder::new()
                    .name("sparsekit-flash-read".into())
                    .spawn_scoped(s, move || {
                        let mut r = produce(
                            input,
                            bmap,
                            verify,
                            label,
                            feed,
                            total,
                            digester.as_mut().map(|(d, _)| d),
                        );
                        let got = digester.take().map(|(d, h)| {
                            drop(d);
                            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
                        });
                        if let (Ok(_), Some(want), Some(got)) = (&r, &expected, got) {
                            if &got != want {
                                r = Err(Error::DigestMismatch {
                                    source_name: label.display().to_string(),
                                    expected: want.clone(),
                                    actual: got.clone(),
                                });
                            }
                            *digest_out = Some(got);
                        }
                        // Only a whole, matching image lets the writers write the first MiB.
                        if let Ok(info) = &r {
                            let segments = Arc::new(feed.segments());
                            let size = info.image_size;
                            let _ = feed.send(|| Msg::End {
                                size,
                                segments: segments.clone(),
                            });
                        }
                        // Hang up so that writers waiting for data learn the reader is gone.
                        feed.senders.clear();
                        drop(done_tx);
                        r
                    })
                    .expect("spawn the flash reader")
            };
            let mut writers = Vec::new();
            for (i, d, rx) in work {
                let st = &status.dests[i];
                let path = &reports[i].path;
                let cancel = cancel.clone();
                let done_tx = done_tx.clone();
                writers.push((
                    i,
                    std::thread::Builder::new()
                        .name("sparsekit-flash-write".into())
                        .spawn_scoped(s, move || {
                            let r = consume(&*d, path, &*opts.opener, rx, st, plan, &cancel)
                                .map_err(|e| match e {
                                    Error::Io(io) if io.path.is_none() => {
                                        Error::Io(io.with_path(path))
                                    }
                                    e => e,
                                });
                            match &r {
                                // Known to the caller at once, not only in the report.
                                Err(e) => status.fail(i, e),
                                Ok(_) => st.state.store(DestState::Done as u8, Ordering::Relaxed),
                            }
                            drop(done_tx);
                            r
                        })
                        .expect("spawn a flash writer"),
                ));
            }
            drop(done_tx);
            // Report until every thread has hung up its end of `done`.
            let mut reporter = Reporter {
                stream_len,
                compare: mode == Mode::Compare,
                ..Reporter::default()
            };
            while let Err(RecvTimeoutError::Timeout) | Ok(()) = done_rx.recv_timeout(TICK) {
                reporter.tick(status, &consumed, read_back, ctl, false);
            }
            let source = reader
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            let results: Vec<_> = writers
                .into_iter()
                .map(|(i, h)| (i, h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))))
                .collect();
            (source, results, reporter)
        });
    let (source, results, mut reporter) = outcome;
    let info = source?;
    cancel.check()?;
    for (i, r) in results {
        reports[i].retries = status.dests[i].retries.load(Ordering::Relaxed);
        match r {
            Ok((written, verified, skipped)) => {
                reports[i].bytes_written = written;
                reports[i].verified = verified;
                reports[i].bytes_skipped = skipped;
            }
            Err(e) => {
                reports[i].bytes_written = status.dests[i].written.load(Ordering::Relaxed);
                reports[i].error = Some(e);
            }
        }
    }
    if opts.eject && mode == Mode::Write {
        for r in reports.iter_mut().filter(|r| r.error.is_none()) {
            match opts.opener.eject(&r.path) {
                Ok(()) => r.ejected = true,
                Err(e) => r.eject_error = Some(e),
            }
        }
    }
    reporter.tick(status, &consumed, read_back, ctl, true);
    Ok(FlashReport {
        destinations: reports,
        image_size: info.image_size,
        compression: info.compression,
        // A trim's bmap is the engine's own: no bmap was used.
        bmap: bmap_from.or_else(|| {
            bmap.as_ref()
                .filter(|_| trim.is_none())
                .map(|_| "given".to_string())
        }),
        zip_entry,
        source_bytes: consumed.load(Ordering::Relaxed).max(info.read.unwrap_or(0)),
        sha256,
        trim,
    })
}

/// Turns the writers' states into phased progress: write, sync, verify, each ending with
/// one `done == total` report.
///
/// While the image's size is unknown (a compressed stream without a bmap), the write
/// phase is reported as [`Phase::Decompress`]: the compressed bytes read against the
/// compressed size, as etcher-sdk does, so a bar can show a percentage and an ETA.
#[derive(Default)]
struct Reporter {
    /// Phases whose final report was sent.
    ended: Vec<Phase>,
    /// A compressed source stream's length in bytes, when writing is reported as its
    /// position (no bmap, so no image size until the end).
    stream_len: Option<u64>,
    /// Comparing only ([`verify()`]): one phase, [`Phase::Verify`].
    compare: bool,
}

impl Reporter {
    fn end(&mut self, ctl: &mut Control<'_>, phase: Phase, total: u64) {
        if !self.ended.contains(&phase) {
            self.ended.push(phase);
            let _ = ctl.report(phase, total, Some(total));
        }
    }

    fn tick(
        &mut self,
        status: &FlashStatus,
        consumed: &AtomicU64,
        read_back: bool,
        ctl: &mut Control<'_>,
        last: bool,
    ) {
        let snap = status.snapshot();
        let live: Vec<&DestProgress> = snap
            .iter()
            .filter(|d| d.state != DestState::Failed)
            .collect();
        let total = status.total();
        let stage = |d: &DestProgress| match d.state {
            DestState::Pending | DestState::Writing => 0,
            DestState::Syncing => 1,
            DestState::Verifying => 2,
            _ => 3,
        };
        let min_stage = live.iter().map(|d| stage(d)).min().unwrap_or(3);
        if self.compare {
            let done = live.iter().map(|d| d.verified).min().unwrap_or(0);
            if min_stage == 0 && !last {
                let _ = ctl.report(Phase::Verify, total.map_or(done, |t| done.min(t)), total);
            } else {
                let all =
                    total.unwrap_or_else(|| snap.iter().map(|d| d.verified).max().unwrap_or(0));
                self.end(ctl, Phase::Verify, all);
            }
            return;
        }
        if min_stage == 0 && !last {
            let done = live.iter().map(|d| d.written).min().unwrap_or(0);
            if let Some(n) = self.stream_len {
                let at = consumed.load(Ordering::Relaxed).min(n);
                // The last compressed bytes are read before the last writes land.
                let _ = ctl.report(Phase::Decompress, at.min(n.saturating_sub(1)), Some(n));
                return;
            }
            let _ = ctl.report(Phase::Write, total.map_or(done, |t| done.min(t)), total);
            return;
        }
        let written = total.unwrap_or_else(|| live.iter().map(|d| d.written).max().unwrap_or(0));
        match self.stream_len {
            Some(n) => self.end(ctl, Phase::Decompress, n),
            None => self.end(ctl, Phase::Write, written),
        }
        // Sync counts the bytes it makes durable (not 0/1).
        if min_stage == 1 && !last {
            let _ = ctl.report(Phase::Sync, 0, Some(written));
            return;
        }
        self.end(ctl, Phase::Sync, written);
        if !read_back {
            return;
        }
        if min_stage == 2 && !last {
            let done = live.iter().map(|d| d.verified).min().unwrap_or(0);
            let _ = ctl.report(Phase::Verify, done.min(written), Some(written));
            return;
        }
        self.end(ctl, Phase::Verify, written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsekit_io::{Fault, Faulty, IoError, MemStorage};
    use std::io::Write;

    fn image(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|i| {
                if (i / 65536) % 3 == 1 {
                    return 0;
                }
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    struct Shared(Arc<MemStorage>);
    impl Storage for Shared {
        fn size(&self) -> std::result::Result<u64, IoError> {
            self.0.size()
        }
        fn read_at(&self, b: &mut [u8], o: u64) -> std::result::Result<usize, IoError> {
            self.0.read_at(b, o)
        }
        fn write_at(&self, b: &[u8], o: u64) -> std::result::Result<usize, IoError> {
            self.0.write_at(b, o)
        }
        fn flush(&self) -> std::result::Result<(), IoError> {
            Ok(())
        }
        fn set_len(&self, l: u64) -> std::result::Result<(), IoError> {
            self.0.set_len(l)
        }
    }
    impl Destination for Shared {}

    #[test]
    fn one_failing_destination_among_three() {
        let dir = tempfile::tempdir().unwrap();
        let data = image(5 * CHUNK + 12345, 7);
        let src = dir.path().join("img.gz");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&data).unwrap();
        std::fs::write(&src, e.finish().unwrap()).unwrap();
        let a = Arc::new(MemStorage::new());
        let c = Arc::new(MemStorage::new());
        let bad = Faulty::new(
            MemStorage::new(),
            Fault::FailWritesAfter {
                n: 2,
                errno: libc::EIO,
            },
        );
        let targets = vec![
            Target {
                path: "a".into(),
                dst: Ok(Box::new(Shared(a.clone()))),
            },
            Target {
                path: "bad".into(),
                dst: Ok(Box::new(bad)),
            },
            Target {
                path: "c".into(),
                dst: Ok(Box::new(Shared(c.clone()))),
            },
        ];
        let mut phases = Vec::new();
        let mut ctl = Control::new(Cancel::new(), |p| phases.push(p));
        let status = FlashStatus::new(3);
        let r = flash_to(
            src.to_str().unwrap(),
            targets,
            &FlashOptions::default(),
            Some(&status),
            &mut ctl,
        )
        .unwrap();
        drop(ctl);
        assert_eq!(r.compression, Some(Compression::Gzip));
        assert_eq!(r.image_size, data.len() as u64);
        assert!(r.destinations[0].error.is_none() && r.destinations[0].verified);
        assert!(r.destinations[2].error.is_none() && r.destinations[2].verified);
        let e = r.destinations[1].error.as_ref().unwrap();
        assert_eq!(
            (e.code(), e.raw_os_error()),
            ("ERR_SPARSEKIT_IO", Some(libc::EIO)),
            "{e}"
        );
        assert_eq!(a.to_vec(), data);
        assert_eq!(c.to_vec(), data);
        let snap = status.snapshot();
        assert_eq!(snap[1].state, DestState::Failed);
        assert_eq!(snap[0].verified, data.len() as u64);
        // Writing a compressed source of unknown size is reported as its compressed
        // position (Decompress), else as Write: one of the two ends once at 100%.
        let writing: Vec<_> = phases
            .iter()
            .filter(|p| matches!(p.phase, Phase::Write | Phase::Decompress))
            .filter(|p| p.total == Some(p.done))
            .collect();
        assert_eq!(writing.len(), 1, "{phases:?}");
        for ph in [Phase::Sync, Phase::Verify] {
            let finals: Vec<_> = phases
                .iter()
                .filter(|p| p.phase == ph && p.total == Some(p.done))
                .collect();
            // Exactly once at 100% (issue 27), and sync in bytes, not 0/1.
            assert_eq!(finals.len(), 1, "{ph}: {phases:?}");
            assert_eq!(finals[0].done, data.len() as u64, "{ph}: {phases:?}");
        }
    }

    #[test]
    fn too_small_and_unopened_destinations() {
        let dir = tempfile::tempdir().unwrap();
        let data = image(CHUNK + 100, 3);
        let src = dir.path().join("img");
        std::fs::write(&src, &data).unwrap();
        let ok = Arc::new(MemStorage::new());
        let targets = vec![
            Target {
                path: "gone".into(),
                dst: Err(Error::InvalidArg {
                    name: "x",
                    value: "y".into(),
                }),
            },
            Target {
                path: "ok".into(),
                dst: Ok(Box::new(Shared(ok.clone()))),
            },
        ];
        let r = flash_to(
            src.to_str().unwrap(),
            targets,
            &FlashOptions::default(),
            None,
            &mut Control::none(),
        )
        .unwrap();
        assert_eq!(
            r.destinations[0].error.as_ref().unwrap().code(),
            "ERR_SPARSEKIT_INVALID_ARG"
        );
        assert!(r.destinations[1].verified);
        assert_eq!(ok.to_vec(), data);
    }

    #[test]
    fn corrupt_source_fails_the_whole_flash() {
        let dir = tempfile::tempdir().unwrap();
        let data = image(3 * CHUNK, 9);
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&data).unwrap();
        let mut z = e.finish().unwrap();
        z.truncate(z.len() / 2);
        let src = dir.path().join("img.gz");
        std::fs::write(&src, z).unwrap();
        let targets = vec![Target {
            path: "a".into(),
            dst: Ok(Box::new(MemStorage::new())),
        }];
        let e = flash_to(
            src.to_str().unwrap(),
            targets,
            &FlashOptions::default(),
            None,
            &mut Control::none(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_DECOMPRESS", "{e}");
    }

    /// A block device in memory: fixed size, not truncated; optionally cancels the flash
    /// when a write reaches `cancel_at` (an abort part-way through).
    struct Dev {
        mem: Arc<MemStorage>,
        cancel_at: Option<(u64, Cancel)>,
    }
    impl Storage for Dev {
        fn size(&self) -> std::result::Result<u64, IoError> {
            self.mem.size()
        }
        fn read_at(&self, b: &mut [u8], o: u64) -> std::result::Result<usize, IoError> {
            self.mem.read_at(b, o)
        }
        fn write_at(&self, b: &[u8], o: u64) -> std::result::Result<usize, IoError> {
            if let Some((at, c)) = &self.cancel_at {
                if o >= *at {
                    c.cancel();
                }
            }
            self.mem.write_at(b, o)
        }
        fn flush(&self) -> std::result::Result<(), IoError> {
            Ok(())
        }
        fn set_len(&self, _: u64) -> std::result::Result<(), IoError> {
            panic!("a device is never truncated")
        }
        fn punch_hole(&self, o: u64, l: u64) -> std::result::Result<(), IoError> {
            self.mem.punch_hole(o, l)
        }
    }
    impl Destination for Dev {
        fn is_block_device(&self) -> bool {
            true
        }
    }

    fn dev(size: usize, fill: u8) -> Arc<MemStorage> {
        Arc::new(MemStorage::from_vec(vec![fill; size]))
    }

    fn target(path: &str, d: impl Destination + 'static) -> Target {
        Target {
            path: path.into(),
            dst: Ok(Box::new(d)),
        }
    }

    fn write_image(dir: &Path, data: &[u8]) -> String {
        let src = dir.join("img");
        std::fs::write(&src, data).unwrap();
        src.to_str().unwrap().to_string()
    }

    fn sha256_hex(data: &[u8]) -> String {
        use sha2::Digest;
        hex(&sha2::Sha256::digest(data))
    }

    const MIB: usize = 1 << 20;

    /// Issue 24, first MiB last: an abort at 60% leaves the old first MiB.
    #[test]
    fn abort_leaves_the_first_mib() {
        let dir = tempfile::tempdir().unwrap();
        let data = image(10 * MIB, 5);
        let src = write_image(dir.path(), &data);
        let mem = dev(16 * MIB, 0xAA);
        let cancel = Cancel::new();
        let d = Dev {
            mem: mem.clone(),
            cancel_at: Some((6 * MIB as u64, cancel.clone())),
        };
        let mut ctl = Control::new(cancel, |_| {});
        let e = flash_to(
            &src,
            vec![target("dev", d)],
            &FlashOptions::default(),
            None,
            &mut ctl,
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_ABORTED", "{e}");
        let got = mem.to_vec();
        assert!(got[..MIB].iter().all(|&b| b == 0xAA), "first MiB written");
        // Something past it was written.
        assert_eq!(&got[MIB..2 * MIB], &data[MIB..2 * MIB]);
    }

    /// Issue 24: a successful flash writes the first MiB too, and zeroes a stale GPT
    /// backup in the device's last MiB; a device without one keeps its tail.
    #[test]
    fn first_mib_written_last_and_stale_gpt_zeroed() {
        let dir = tempfile::tempdir().unwrap();
        let data = image(3 * MIB + 4096, 6);
        let src = write_image(dir.path(), &data);
        let mut old = vec![0x55u8; 8 * MIB];
        old[8 * MIB - 512..8 * MIB - 504].copy_from_slice(b"EFI PART");
        let gpt = Arc::new(MemStorage::from_vec(old));
        let plain = dev(8 * MIB, 0x55);
        let r = flash_to(
            &src,
            vec![
                target(
                    "gpt",
                    Dev {
                        mem: gpt.clone(),
                        cancel_at: None,
                    },
                ),
                target(
                    "plain",
                    Dev {
                        mem: plain.clone(),
                        cancel_at: None,
                    },
                ),
            ],
            &FlashOptions::default(),
            None,
            &mut Control::none(),
        )
        .unwrap();
        for d in &r.destinations {
            assert!(d.error.is_none() && d.verified, "{:?}", d.error);
        }
        let g = gpt.to_vec();
        assert_eq!(&g[..data.len()], &data[..]);
        assert!(
            g[7 * MIB..].iter().all(|&b| b == 0),
            "stale GPT backup kept"
        );
        assert!(g[data.len()..7 * MIB].iter().all(|&b| b == 0x55));
        let p = plain.to_vec();
        assert_eq!(&p[..data.len()], &data[..]);
        assert!(p[data.len()..].iter().all(|&b| b == 0x55));
    }

    /// Issue 24, expected digest: a matching SHA-256 passes (and is reported); a wrong
    /// one fails with both digests and leaves the first MiB, also through a bmap that
    /// skips part of the image and from a compressed stream.
    #[test]
    fn sha256_checked_and_mismatch_leaves_the_first_mib() {
        let dir = tempfile::tempdir().unwrap();
        let data = image(4 * MIB + 512, 8);
        let src = write_image(dir.path(), &data);
        let gz = dir.path().join("img.gz");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&data).unwrap();
        std::fs::write(&gz, e.finish().unwrap()).unwrap();
        let good = sha256_hex(&data);
        for source in [src.as_str(), gz.to_str().unwrap()] {
            let mem = dev(8 * MIB, 0xAA);
            let opts = FlashOptions {
                sha256: Some(good.to_uppercase()),
                ..FlashOptions::default()
            };
            let r = flash_to(
                source,
                vec![target(
                    "dev",
                    Dev {
                        mem: mem.clone(),
                        cancel_at: None,
                    },
                )],
                &opts,
                None,
                &mut Control::none(),
            )
            .unwrap();
            assert!(
                r.destinations[0].error.is_none(),
                "{:?}",
                r.destinations[0].error
            );
            assert_eq!(r.sha256.as_deref(), Some(good.as_str()));
            assert_eq!(&mem.to_vec()[..data.len()], &data[..]);

            let mem = dev(8 * MIB, 0xAA);
            let bad = "0".repeat(64);
            let opts = FlashOptions {
                sha256: Some(bad.clone()),
                ..FlashOptions::default()
            };
            let e = flash_to(
                source,
                vec![target(
                    "dev",
                    Dev {
                        mem: mem.clone(),
                        cancel_at: None,
                    },
                )],
                &opts,
                None,
                &mut Control::none(),
            )
            .unwrap_err();
            assert_eq!(e.code(), "ERR_SPARSEKIT_CHECKSUM_MISMATCH", "{e}");
            let msg = e.to_string();
            assert!(msg.contains(&good) && msg.contains(&bad), "{msg}");
            let got = mem.to_vec();
            assert!(got[..MIB].iter().all(|&b| b == 0xAA), "first MiB written");
        }
        let e = flash_to(
            &src,
            vec![target(
                "dev",
                Dev {
                    mem: dev(8 * MIB, 0),
                    cancel_at: None,
                },
            )],
            &FlashOptions {
                sha256: Some("abc".into()),
                ..FlashOptions::default()
            },
            None,
            &mut Control::none(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_INVALID_ARG", "{e}");
    }

    /// Issue 24, only changed blocks: A then A' with 5 blocks changed writes 5 blocks.
    #[test]
    fn only_changed_writes_the_changed_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let a = image(6 * MIB, 11);
        let mem = dev(8 * MIB, 0xAA);
        let src = write_image(dir.path(), &a);
        flash_to(
            &src,
            vec![target(
                "dev",
                Dev {
                    mem: mem.clone(),
                    cancel_at: None,
                },
            )],
            &FlashOptions::default(),
            None,
            &mut Control::none(),
        )
        .unwrap();
        let mut b = a.clone();
        for blk in [3usize, 700, 1000, 1200, 1500] {
            b[blk * 4096 + 17] ^= 0xFF;
        }
        let src = write_image(dir.path(), &b);
        let r = flash_to(
            &src,
            vec![target(
                "dev",
                Dev {
                    mem: mem.clone(),
                    cancel_at: None,
                },
            )],
            &FlashOptions {
                only_changed: true,
                ..FlashOptions::default()
            },
            None,
            &mut Control::none(),
        )
        .unwrap();
        let d = &r.destinations[0];
        assert!(d.error.is_none() && d.verified, "{:?}", d.error);
        assert_eq!(d.bytes_written, 5 * 4096);
        assert_eq!(&mem.to_vec()[..b.len()], &b[..]);
        // A file is compared too, not truncated first.
        let file = Arc::new(MemStorage::from_vec(a.clone()));
        let r = flash_to(
            &src,
            vec![target("file", Shared(file.clone()))],
            &FlashOptions {
                only_changed: true,
                ..FlashOptions::default()
            },
            None,
            &mut Control::none(),
        )
        .unwrap();
        // Holes of the image (its zero blocks) are not in the plain image's map: only
        // mapped blocks are compared.
        assert_eq!(r.destinations[0].bytes_written, 5 * 4096);
        assert_eq!(file.to_vec(), b);
    }

    /// Issue 24, transient errors: EIO on three writes in a row is retried and counted;
    /// a persistent one fails that destination with the range, the others go on.
    #[test]
    fn transient_write_errors_are_retried() {
        let dir = tempfile::tempdir().unwrap();
        let data = image(5 * MIB, 12);
        let src = write_image(dir.path(), &data);
        let flaky = Faulty::new(
            MemStorage::new(),
            Fault::TransientWriteErrors {
                after: 2,
                times: 3,
                errno: libc::EIO,
            },
        );
        let dead = Faulty::new(
            MemStorage::new(),
            Fault::TransientWriteErrors {
                after: 2,
                times: 1000,
                errno: libc::EBUSY,
            },
        );
        let ok = Arc::new(MemStorage::new());
        let opts = FlashOptions {
            retry_delay: Duration::from_millis(1),
            ..FlashOptions::default()
        };
        let r = flash_to(
            &src,
            vec![
                target("flaky", flaky),
                target("dead", dead),
                target("ok", Shared(ok.clone())),
            ],
            &opts,
            None,
            &mut Control::none(),
        )
        .unwrap();
        let d = &r.destinations;
        assert!(d[0].error.is_none() && d[0].verified, "{:?}", d[0].error);
        assert_eq!(d[0].retries, 3);
        let e = d[1].error.as_ref().unwrap();
        assert_eq!(
            (e.code(), e.raw_os_error()),
            ("ERR_SPARSEKIT_IO", Some(libc::EBUSY))
        );
        let (start, len) = e.range().expect("a range");
        assert!(len > 0 && start < data.len() as u64, "{e}");
        assert_eq!(d[1].retries, u64::from(WRITE_RETRIES));
        assert!(e.to_string().contains("6 attempts"), "{e}");
        assert!(d[2].error.is_none() && d[2].verified);
        assert_eq!(ok.to_vec(), data);
    }

    /// Issue 24, seek: the image at an offset, bytes before and after untouched (a
    /// device, and a file that is neither truncated nor shortened).
    #[test]
    fn seek_writes_at_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let data = image(3 * MIB + 8192, 13);
        let src = write_image(dir.path(), &data);
        let seek = MIB + 4096;
        let d = dev(8 * MIB, 0xAA);
        let f = Arc::new(MemStorage::from_vec(vec![0xAA; 8 * MIB]));
        let opts = FlashOptions {
            seek: seek as u64,
            ..FlashOptions::default()
        };
        let r = flash_to(
            &src,
            vec![
                target(
                    "dev",
                    Dev {
                        mem: d.clone(),
                        cancel_at: None,
                    },
                ),
                target("file", Shared(f.clone())),
            ],
            &opts,
            None,
            &mut Control::none(),
        )
        .unwrap();
        for (m, rep) in [(&d, &r.destinations[0]), (&f, &r.destinations[1])] {
            assert!(rep.error.is_none() && rep.verified, "{:?}", rep.error);
            let got = m.to_vec();
            assert_eq!(got.len(), 8 * MIB);
            assert!(got[..seek].iter().all(|&b| b == 0xAA));
            assert_eq!(&got[seek..seek + data.len()], &data[..]);
            assert!(got[seek + data.len()..].iter().all(|&b| b == 0xAA));
        }
        // The size check counts the offset.
        let small = dev(4 * MIB, 0);
        let r = flash_to(
            &src,
            vec![target(
                "small",
                Dev {
                    mem: small,
                    cancel_at: None,
                },
            )],
            &opts,
            None,
            &mut Control::none(),
        )
        .unwrap();
        let e = r.destinations[0].error.as_ref().unwrap();
        assert_eq!(e.code(), "ERR_SPARSEKIT_DEST_TOO_SMALL", "{e}");
    }

    /// Issue 24, verify only: equal, then the first differing range named; nothing
    /// written.
    #[test]
    fn verify_names_the_first_differing_range() {
        let dir = tempfile::tempdir().unwrap();
        let data = image(3 * MIB, 14);
        let src = write_image(dir.path(), &data);
        let seek = 8192usize;
        let mut on = vec![0x11u8; 4 * MIB];
        on[seek..seek + data.len()].copy_from_slice(&data);
        let opts = FlashOptions {
            seek: seek as u64,
            ..FlashOptions::default()
        };
        let mem = Arc::new(MemStorage::from_vec(on.clone()));
        let mut phases = Vec::new();
        let mut ctl = Control::new(Cancel::new(), |p| phases.push(p));
        let r = verify_to(&src, target("dev", Shared(mem.clone())), &opts, &mut ctl).unwrap();
        drop(ctl);
        // The image's data (its zero blocks are holes of the plain file, not compared).
        assert!(r.bytes_compared > 0 && r.bytes_compared <= data.len() as u64);
        assert_eq!(r.image_size, data.len() as u64);
        assert!(
            phases.iter().all(|p| p.phase == Phase::Verify),
            "{phases:?}"
        );
        assert_eq!(phases.last().map(|p| Some(p.done) == p.total), Some(true));
        let mut bad = on.clone();
        bad[seek + 2 * MIB + 5000] ^= 1;
        bad[seek + 2 * MIB + 9000] ^= 1;
        let mem = Arc::new(MemStorage::from_vec(bad.clone()));
        let e = verify_to(
            &src,
            target("dev", Shared(mem.clone())),
            &opts,
            &mut Control::none(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_CHECKSUM_MISMATCH", "{e}");
        let at = (seek + 2 * MIB + 4096) as u64;
        assert_eq!(e.range(), Some((at, 8192)), "{e}");
        assert_eq!(mem.to_vec(), bad, "verify wrote");
    }

    /// Issue 24, unmapped ranges: stale bytes in the image's holes are zeroed or
    /// discarded on request, kept by default; a destination without discard says so.
    #[test]
    fn unmapped_ranges_zeroed_or_discarded() {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("sparse.img");
        let f = std::fs::File::create(&src).unwrap();
        f.set_len(6 * MIB as u64).unwrap();
        let a = image(MIB, 21);
        let b = image(MIB, 22);
        f.write_all_at(&a, 0).unwrap();
        f.write_all_at(&b, 3 * MIB as u64).unwrap();
        f.sync_all().unwrap();
        drop(f);
        let map =
            sparsekit_extents::map_file(&std::fs::File::open(&src).unwrap(), &Default::default())
                .unwrap();
        if map.data_ranges().len() < 2 {
            eprintln!("SKIP unmapped_ranges_zeroed_or_discarded: no holes on this file system");
            return;
        }
        let src = src.to_str().unwrap();
        for (mode, fill) in [
            (Unmapped::Keep, 0xAA),
            (Unmapped::Zero, 0),
            (Unmapped::Discard, 0),
        ] {
            let mem = dev(8 * MIB, 0xAA);
            let opts = FlashOptions {
                unmapped: mode,
                ..FlashOptions::default()
            };
            let r = flash_to(
                src,
                vec![target(
                    "dev",
                    Dev {
                        mem: mem.clone(),
                        cancel_at: None,
                    },
                )],
                &opts,
                None,
                &mut Control::none(),
            )
            .unwrap();
            assert!(
                r.destinations[0].error.is_none(),
                "{mode:?}: {:?}",
                r.destinations[0].error
            );
            let got = mem.to_vec();
            assert_eq!(&got[..MIB], &a[..]);
            assert_eq!(&got[3 * MIB..4 * MIB], &b[..]);
            for (s, e) in [(MIB, 3 * MIB), (4 * MIB, 6 * MIB)] {
                assert!(got[s..e].iter().all(|&x| x == fill), "{mode:?} at {s}");
            }
            assert!(
                got[6 * MIB..].iter().all(|&x| x == 0xAA),
                "{mode:?}: past the image"
            );
        }
        let r = flash_to(
            src,
            vec![target(
                "nodiscard",
                Shared(Arc::new(MemStorage::from_vec(vec![1; 8 * MIB]))),
            )],
            &FlashOptions {
                unmapped: Unmapped::Discard,
                ..FlashOptions::default()
            },
            None,
            &mut Control::none(),
        )
        .unwrap();
        let e = r.destinations[0].error.as_ref().expect("discard refused");
        assert_eq!(e.code(), "ERR_SPARSEKIT_UNSUPPORTED", "{e}");
        assert!(e.to_string().contains("discard"), "{e}");
    }

    /// Issue 24, eject: each destination that succeeded is ejected through the opener and
    /// reported; a failed one is not; an eject that fails leaves the destination ok.
    #[test]
    fn eject_after_success_reported_per_destination() {
        #[derive(Debug, Default)]
        struct Ejector(std::sync::Mutex<Vec<PathBuf>>);
        impl Opener for Ejector {
            fn open(&self, _: &Path) -> Result<Box<dyn Destination>> {
                unreachable!()
            }
            fn eject(&self, path: &Path) -> Result<()> {
                self.0.lock().unwrap().push(path.to_path_buf());
                if path == Path::new("stuck") {
                    return Err(Error::Unsupported {
                        what: "ejecting 'stuck'".into(),
                    });
                }
                Ok(())
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let src = write_image(dir.path(), &image(2 * MIB, 23));
        let ej = Arc::new(Ejector::default());
        let bad = Faulty::new(
            MemStorage::new(),
            Fault::FailWritesAfter {
                n: 0,
                errno: libc::ENOSPC,
            },
        );
        let r = flash_to(
            &src,
            vec![
                target("ok", MemStorage::new()),
                target("bad", bad),
                target("stuck", MemStorage::new()),
            ],
            &FlashOptions {
                eject: true,
                opener: ej.clone(),
                ..FlashOptions::default()
            },
            None,
            &mut Control::none(),
        )
        .unwrap();
        let d = &r.destinations;
        assert!(d[0].error.is_none() && d[0].ejected && d[0].eject_error.is_none());
        assert!(d[1].error.is_some() && !d[1].ejected);
        assert!(d[2].error.is_none() && !d[2].ejected);
        assert_eq!(
            d[2].eject_error.as_ref().unwrap().code(),
            "ERR_SPARSEKIT_UNSUPPORTED"
        );
        assert_eq!(
            *ej.0.lock().unwrap(),
            vec![PathBuf::from("ok"), PathBuf::from("stuck")]
        );
    }

    /// Issue 24: with `check_capacity` a counterfeit drive (it wraps around at 8 MiB but
    /// claims 32) is refused before anything is written.
    #[test]
    fn check_capacity_refuses_a_counterfeit_drive() {
        struct Wrap(MemStorage, u64);
        impl Storage for Wrap {
            fn size(&self) -> std::result::Result<u64, IoError> {
                Ok(32 << 20)
            }
            fn read_at(&self, b: &mut [u8], o: u64) -> std::result::Result<usize, IoError> {
                let n = b.len().min((self.1 - o % self.1) as usize);
                self.0.read_at(&mut b[..n], o % self.1)
            }
            fn write_at(&self, b: &[u8], o: u64) -> std::result::Result<usize, IoError> {
                let n = b.len().min((self.1 - o % self.1) as usize);
                self.0.write_at(&b[..n], o % self.1)
            }
            fn flush(&self) -> std::result::Result<(), IoError> {
                Ok(())
            }
        }
        impl Destination for Wrap {
            fn is_block_device(&self) -> bool {
                true
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let src = write_image(dir.path(), &image(12 * MIB, 24));
        let before = image(8 * MIB, 25);
        let w = Arc::new(Wrap(MemStorage::from_vec(before.clone()), 8 << 20));
        struct Share(Arc<Wrap>);
        impl Storage for Share {
            fn size(&self) -> std::result::Result<u64, IoError> {
                self.0.size()
            }
            fn read_at(&self, b: &mut [u8], o: u64) -> std::result::Result<usize, IoError> {
                self.0.read_at(b, o)
            }
            fn write_at(&self, b: &[u8], o: u64) -> std::result::Result<usize, IoError> {
                self.0.write_at(b, o)
            }
            fn flush(&self) -> std::result::Result<(), IoError> {
                Ok(())
            }
        }
        impl Destination for Share {
            fn is_block_device(&self) -> bool {
                true
            }
        }
        let r = flash_to(
            &src,
            vec![target("fake", Share(w.clone()))],
            &FlashOptions {
                check_capacity: true,
                ..FlashOptions::default()
            },
            None,
            &mut Control::none(),
        )
        .unwrap();
        let e = r.destinations[0].error.as_ref().expect("refused");
        assert_eq!(e.code(), "ERR_SPARSEKIT_COUNTERFEIT", "{e}");
        assert!(e.to_string().contains("8388608"), "{e}");
        assert_eq!(w.0.to_vec(), before, "written");
    }
}
