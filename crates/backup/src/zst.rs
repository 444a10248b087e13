//! `.img.zst` outputs: the image as a sequence of zstd frames (RFC 8878 section 3.1: a
//! `.zst` file is one or more frames, which `zstd -d`, libzstd's streaming decoder and
//! `flash` read as one stream).
//!
//! - Used bytes (with the free gaps between them shorter than [`ZERO_FRAME`]) are cut into
//!   frames of about [`FRAME`] bytes, each compressed on its own by one of the workers
//!   (every core), with its content size and checksum in the frame.
//! - A longer free gap becomes frames of RLE blocks written here ([`zero_frames`]): 4 bytes
//!   per 128 KiB of zeros, no compressor pass over the zeros at all (a 4 GiB card with 600
//!   MiB used has 3.4 GiB of them), at most [`ZERO_FRAME_MAX`] each, so that a reader
//!   that decodes frames on several cores fills them in.
//!
//! Each frame is recorded ([`Frame`]): where it is in the file and which image bytes it
//! holds. [`verify`] reads the file back and decompresses every compressed frame on every
//! core: libzstd checks its content against the checksum (XXH64) the compressor took of the
//! bytes read from the source, and its length is checked; the zero frames must be byte for
//! byte what was written.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use sparsekit_io::{Control, IoError, Phase};

use crate::read::Chunk;
use crate::{Error, Result};

/// Image bytes per compressed frame: a frame starts with an empty window, so larger
/// frames compress a little better; libzstd's level 3 window is 2 MiB.
pub(crate) const FRAME: usize = 4 << 20;
/// Free gaps at least this long become a frame of RLE blocks; shorter ones are compressed
/// with the bytes around them.
pub(crate) const ZERO_FRAME: u64 = 1 << 20;
/// The most zeros in one zero frame.
pub(crate) const ZERO_FRAME_MAX: u64 = 16 << 20;
/// zstd level: -1 (`zstd --fast=1`). On 750 MiB of a card's used blocks (OS files) one
/// core of this project's 2-vCPU machine compresses 433 MB/s at -1, 314 MB/s at 1 and
/// about 150 MB/s at 3 (the zstd CLI's default); the output is 263 MiB, 234 MiB and 220
/// MiB. A backup's time on a small machine is compression plus the whole image's SHA-256,
/// so the fastest level that still compresses an OS image about 3x wins; decoding is
/// faster too (1170 against 925 MB/s), which a restore gains.
const LEVEL: i32 = -1;
/// How much lower the compressors run than the other threads of a backup (nice steps):
/// the whole image's SHA-256 is a serial chain that ends a backup when it lags, while
/// the compressors have a queue to absorb a slower pace. On 2 cores: 4.6 s instead of
/// 5.0 s.
const BULK_NICE: i32 = 10;
/// Bytes per RLE block: the block size limit of a frame whose window is 128 KiB.
const RLE_BLOCK: u64 = 128 << 10;

/// Zero frames holding `len` zero bytes: [`zero_frame`]s of at most [`ZERO_FRAME_MAX`].
pub(crate) fn zero_frames(len: u64) -> Vec<u8> {
    let mut v = Vec::new();
    let mut left = len;
    while left > 0 {
        let n = left.min(ZERO_FRAME_MAX);
        v.extend(zero_frame(n));
        left -= n;
    }
    v
}

/// A frame of RLE blocks holding `len` zero bytes (`len > 0`): a frame header with an
/// 8-byte content size and a 128 KiB window (not single-segment, so a decoder needs 128
/// KiB of window whatever the length), then blocks of 128 KiB zeros, the last one flagged.
pub(crate) fn zero_frame(len: u64) -> Vec<u8> {
    let blocks = len.div_ceil(RLE_BLOCK);
    let mut v = Vec::with_capacity(14 + 4 * blocks as usize);
    v.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
    // Frame header descriptor: 8-byte content size (0b11 << 6), not single segment, no
    // checksum, no dictionary. Window descriptor: exponent 7 (2^17 = 128 KiB), mantissa 0.
    v.push(0xC0);
    v.push(7 << 3);
    v.extend_from_slice(&len.to_le_bytes());
    let mut left = len;
    while left > 0 {
        let n = left.min(RLE_BLOCK);
        left -= n;
        let last = u32::from(left == 0);
        // Block header: last flag, type 1 (RLE), size; then the byte repeated.
        let h = last | (1 << 1) | ((n as u32) << 3);
        v.extend_from_slice(&h.to_le_bytes()[..3]);
        v.push(0);
    }
    v
}

/// A piece of a frame's image bytes.
enum Piece {
    Data(Arc<Chunk>),
    Zeros(usize),
}

/// Work for a compressor: image bytes from `at`, in pieces; or a zero frame.
enum Job {
    Data {
        at: u64,
        len: usize,
        pieces: Vec<Piece>,
    },
    Zeros {
        at: u64,
        len: u64,
    },
}

/// A frame as written.
#[derive(Debug)]
pub(crate) struct Frame {
    /// Where in the file.
    file_at: u64,
    /// Its length in the file.
    size: u64,
    /// The image bytes it holds.
    at: u64,
    len: u64,
    /// A zero frame (RLE blocks written here), not a compressed one.
    zeros: bool,
}

/// A compressed frame or a zero frame, numbered in image order, for the writer.
struct Done {
    bytes: Vec<u8>,
    at: u64,
    len: u64,
    zeros: bool,
}

/// Hands the image, in order, to the compressors. Made by [`run`].
pub(crate) struct Sink {
    jobs: SyncSender<(u64, Job)>,
    seq: u64,
    pending: Vec<Piece>,
    pending_at: u64,
    pending_len: usize,
}

/// The writer or a compressor stopped (its error is what [`run`] returns).
struct Gone;

impl Sink {
    fn send(&mut self, job: Job) -> std::result::Result<(), Gone> {
        self.jobs.send((self.seq, job)).map_err(|_| Gone)?;
        self.seq += 1;
        Ok(())
    }

    fn flush(&mut self) -> std::result::Result<(), Gone> {
        if self.pending_len > 0 {
            let job = Job::Data {
                at: self.pending_at,
                len: self.pending_len,
                pieces: std::mem::take(&mut self.pending),
            };
            self.pending_len = 0;
            self.send(job)?;
        }
        Ok(())
    }

    fn push(&mut self, at: u64, len: usize, p: Piece) -> std::result::Result<(), Gone> {
        if self.pending_len > 0 && self.pending_len + len > FRAME {
            self.flush()?;
        }
        if self.pending_len == 0 {
            self.pending_at = at;
        }
        self.pending.push(p);
        self.pending_len += len;
        Ok(())
    }

    /// `len` zero bytes at `at` (a free gap).
    fn zeros(&mut self, at: u64, len: u64) -> std::result::Result<(), Gone> {
        if len >= ZERO_FRAME {
            self.flush()?;
            return self.send(Job::Zeros { at, len });
        }
        self.push(at, len as usize, Piece::Zeros(len as usize))
    }

    /// Bytes read from the source.
    fn data(&mut self, c: Arc<Chunk>) -> std::result::Result<(), Gone> {
        let (at, len) = (c.at, c.len());
        self.push(at, len, Piece::Data(c))
    }
}

impl crate::Feed for Sink {
    fn zeros(&mut self, at: u64, len: u64) -> Result<()> {
        Sink::zeros(self, at, len).map_err(|Gone| Error::Aborted)
    }
    fn data(&mut self, c: Arc<Chunk>) -> Result<()> {
        Sink::data(self, c).map_err(|Gone| Error::Aborted)
    }
}

fn compress(
    job: Job,
    z: &mut zstd::bulk::Compressor<'_>,
    scratch: &mut Vec<u8>,
) -> std::io::Result<Done> {
    match job {
        Job::Zeros { at, len } => Ok(Done {
            bytes: zero_frames(len),
            at,
            len,
            zeros: true,
        }),
        Job::Data { at, len, pieces } => {
            let src: &[u8] = match pieces.as_slice() {
                [Piece::Data(c)] => &c[..],
                _ => {
                    scratch.clear();
                    for p in &pieces {
                        match p {
                            Piece::Data(c) => scratch.extend_from_slice(c),
                            Piece::Zeros(n) => scratch.resize(scratch.len() + n, 0),
                        }
                    }
                    &scratch[..]
                }
            };
            debug_assert_eq!(src.len(), len);
            let bytes = z.compress(src)?;
            Ok(Done {
                bytes,
                at,
                len: len as u64,
                zeros: false,
            })
        }
    }
}

/// Run `produce` with a [`Sink`] whose frames are compressed on `workers` threads and
/// written to `file` in order; the frames as written, once `produce` returned and every
/// frame is in the file. `produce`'s error comes first, then the writer's, then a
/// compressor's.
pub(crate) fn run(
    file: &File,
    path: &Path,
    workers: usize,
    produce: impl FnOnce(&mut Sink) -> Result<()>,
) -> Result<Vec<Frame>> {
    let (jobs_tx, jobs_rx) = sync_channel::<(u64, Job)>(crate::read_ahead());
    // Taken (dropped) by the first compressor that finds the writer gone, so that the
    // producer's next send fails instead of waiting for a queue no one empties.
    let jobs_rx = Mutex::new(Some(jobs_rx));
    let (done_tx, done_rx) = sync_channel::<(u64, std::io::Result<Done>)>(workers);
    std::thread::scope(|s| {
        let mut compressors = Vec::new();
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let jobs_rx = &jobs_rx;
            compressors.push(s.spawn(move || -> std::io::Result<()> {
                let r = (|| {
                    let _ = sparsekit_io::sys::lower_thread_priority(BULK_NICE);
                    let mut z = zstd::bulk::Compressor::new(LEVEL)?;
                    z.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
                    z.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))?;
                    let mut scratch = Vec::new();
                    loop {
                        let job = match &*jobs_rx.lock().unwrap_or_else(|p| p.into_inner()) {
                            Some(rx) => rx.recv(),
                            None => return Ok(()),
                        };
                        let Ok((seq, job)) = job else { return Ok(()) };
                        let done = compress(job, &mut z, &mut scratch);
                        if done_tx.send((seq, done)).is_err() {
                            return Ok(());
                        }
                    }
                })();
                // This compressor is done early (the writer is gone, or it could not
                // start): close the queue so the producer stops instead of waiting.
                jobs_rx.lock().unwrap_or_else(|p| p.into_inner()).take();
                r
            }));
        }
        drop(done_tx);
        let writer = s.spawn(move || write_in_order(file, path, done_rx));
        let mut sink = Sink {
            jobs: jobs_tx,
            seq: 0,
            pending: Vec::new(),
            pending_at: 0,
            pending_len: 0,
        };
        let produced =
            produce(&mut sink).and_then(|()| sink.flush().map_err(|Gone| Error::Aborted));
        // Compressors end when the job queue closes, the writer when they all did.
        drop(sink);
        let written = writer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        for c in compressors {
            c.join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
                .map_err(|e| Error::Io(IoError::new("compress", e).with_path(path)))?;
        }
        match (produced, written) {
            // The sink's queue closed under the producer: the writer's error says why.
            (Err(Error::Aborted), Err(w)) => Err(w),
            (Err(e), _) => Err(e),
            (Ok(()), w) => w,
        }
    })
}

/// The writer: frames into `file` in their order, as they come from the compressors.
fn write_in_order(
    mut file: &File,
    path: &Path,
    rx: Receiver<(u64, std::io::Result<Done>)>,
) -> Result<Vec<Frame>> {
    let mut next = 0u64;
    let mut waiting = BTreeMap::new();
    let mut frames = Vec::new();
    let mut file_at = 0u64;
    for (seq, d) in rx {
        waiting.insert(seq, d);
        while let Some(d) = waiting.remove(&next) {
            let d = d.map_err(|e| Error::Io(IoError::new("compress", e).with_path(path)))?;
            file.write_all(&d.bytes)
                .map_err(|e| Error::Io(IoError::new("write", e).with_path(path).at(file_at)))?;
            // Start its write-back now, so that the final fsync has little left to write
            // and the read-back begins sooner.
            let _ = sparsekit_io::sys::start_writeback(file, file_at, d.bytes.len() as u64);
            frames.push(Frame {
                file_at,
                size: d.bytes.len() as u64,
                at: d.at,
                len: d.len,
                zeros: d.zeros,
            });
            file_at += d.bytes.len() as u64;
            next += 1;
        }
    }
    Ok(frames)
}

/// Read `file` back (past the page cache: the caller synced it and dropped its cache) and
/// check every frame on `threads` threads: a compressed frame decompresses to exactly its
/// length and to bytes whose BLAKE3 is the one of the bytes read from the source, a zero
/// frame is the bytes written, and the file ends after the last frame.
pub(crate) fn verify(
    file: &File,
    frames: &[Frame],
    threads: usize,
    output: &Path,
    ctl: &mut Control,
) -> Result<()> {
    use sparsekit_io::sys::FileExt;
    let total: u64 = frames.iter().map(|f| f.len).sum();
    let size = frames.last().map_or(0, |f| f.file_at + f.size);
    let len = file
        .metadata()
        .map_err(|e| IoError::new("stat", e).with_path(output))?
        .len();
    if len != size {
        return Err(Error::Mismatch {
            path: output.to_path_buf(),
            range: (0, total),
        });
    }
    let next = AtomicUsize::new(0);
    let checked = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let check = || -> Result<()> {
        let mut packed = Vec::new();
        let mut plain = Vec::new();
        let mut z = zstd::bulk::Decompressor::new()
            .map_err(|e| IoError::new("decompress", e).with_path(output))?;
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= frames.len() || stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let f = &frames[i];
            let bad = || Error::Mismatch {
                path: output.to_path_buf(),
                range: (f.at, f.len),
            };
            packed.resize(f.size as usize, 0);
            file.read_exact_at(&mut packed, f.file_at)
                .map_err(|e| IoError::new("read", e).with_path(output).at(f.file_at))?;
            match f.zeros {
                true => {
                    if packed != zero_frames(f.len) {
                        return Err(bad());
                    }
                }
                false => {
                    plain.clear();
                    plain.reserve(f.len as usize + 1);
                    let n = z
                        .decompress_to_buffer(&packed, &mut plain)
                        .map_err(|_| bad())?;
                    if n as u64 != f.len {
                        return Err(bad());
                    }
                }
            }
            checked.fetch_add(f.len, Ordering::Relaxed);
        }
    };
    std::thread::scope(|s| {
        let helpers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    // Below the whole image's hasher, which still runs (see BULK_NICE).
                    let _ = sparsekit_io::sys::lower_thread_priority(BULK_NICE);
                    let r = check();
                    if r.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        // This thread reports progress and watches for cancellation.
        let mine = (|| -> Result<()> {
            while !helpers.iter().all(|h| h.is_finished()) {
                ctl.check()?;
                ctl.report(Phase::Verify, checked.load(Ordering::Relaxed), Some(total))?;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Ok(())
        })();
        if mine.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let mut first = mine;
        for h in helpers {
            let r = h.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            if first.is_ok() {
                first = r;
            }
        }
        first?;
        ctl.report(Phase::Verify, total, Some(total))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::Pool;
    use crate::Feed;

    fn bytes(n: usize, seed: u32) -> Vec<u8> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13 ^ seed) as u8 % 7)
            .collect()
    }

    #[test]
    fn zero_frames_decode_to_zeros_of_their_length() {
        for len in [1u64, 4095, RLE_BLOCK, RLE_BLOCK + 1, 5 << 20] {
            let f = zero_frame(len);
            let d = zstd::stream::decode_all(&f[..]).unwrap();
            assert_eq!(d.len() as u64, len);
            assert!(d.iter().all(|&b| b == 0));
            // The frame records its content size, as flash's size probe reads it.
            assert_eq!(
                zstd::zstd_safe::get_frame_content_size(&f).ok().flatten(),
                Some(len),
                "{len}"
            );
        }
        // Longer runs: several frames of at most ZERO_FRAME_MAX.
        let len = 2 * ZERO_FRAME_MAX + 7;
        let f = zero_frames(len);
        assert_eq!(
            zstd::zstd_safe::get_frame_content_size(&f).ok().flatten(),
            Some(ZERO_FRAME_MAX)
        );
        let d = zstd::stream::decode_all(&f[..]).unwrap();
        assert!(d.len() as u64 == len && d.iter().all(|&b| b == 0));
    }

    /// Run the frame writer over `parts` (data, or zeros of a length) into a new file.
    fn write(dir: &Path, parts: &[(Option<Vec<u8>>, u64)]) -> (File, Vec<Frame>, Vec<u8>) {
        let path = dir.join("out.img.zst");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let pool = Arc::new(Pool::new(FRAME));
        let mut image = Vec::new();
        let frames = run(&file, &path, 2, |sink| {
            for (data, len) in parts {
                let at = image.len() as u64;
                match data {
                    Some(d) => {
                        let c = crate::read::tests_chunk(&pool, at, d);
                        image.extend_from_slice(d);
                        Feed::data(sink, Arc::new(c))?;
                    }
                    None => {
                        image.resize(image.len() + *len as usize, 0);
                        Feed::zeros(sink, at, *len)?;
                    }
                }
            }
            Ok(())
        })
        .unwrap();
        (file, frames, image)
    }

    #[test]
    fn frames_decode_as_one_stream_and_verify_catches_a_changed_byte() {
        let dir = tempfile::tempdir().unwrap();
        let parts = [
            (Some(bytes(FRAME, 1)), 0),
            (None, 4096),
            (Some(bytes(100_000, 2)), 0),
            (None, 3 * ZERO_FRAME + 5),
            (Some(bytes(3 * FRAME / 2, 3)), 0),
            (None, ZERO_FRAME),
        ];
        let (file, frames, image) = write(dir.path(), &parts);
        let path = dir.path().join("out.img.zst");
        // Two zero frames (the gaps of at least ZERO_FRAME), the rest compressed.
        assert_eq!(frames.iter().filter(|f| f.zeros).count(), 2);
        let d = zstd::stream::decode_all(File::open(&path).unwrap()).unwrap();
        assert!(d == image, "the frames decode to the image");
        verify(&file, &frames, 2, &path, &mut Control::none()).unwrap();

        // One byte changed in a compressed frame, then in a zero frame: each named.
        for f in [&frames[1], &frames[2]] {
            use sparsekit_io::sys::FileExt;
            let at = f.file_at + f.size / 2;
            let mut b = [0u8];
            file.read_exact_at(&mut b, at).unwrap();
            file.write_all_at(&[b[0] ^ 0x40], at).unwrap();
            match verify(&file, &frames, 2, &path, &mut Control::none()) {
                Err(Error::Mismatch { range, .. }) => assert_eq!(range, (f.at, f.len)),
                r => panic!("a changed byte verified: {r:?}"),
            }
            file.write_all_at(&b, at).unwrap();
        }
        // A file longer than its frames fails too.
        file.set_len(frames.last().map_or(0, |f| f.file_at + f.size) + 1)
            .unwrap();
        assert!(verify(&file, &frames, 2, &path, &mut Control::none()).is_err());
    }

    #[test]
    fn a_failing_write_ends_the_run_with_its_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro.img.zst");
        std::fs::write(&path, b"").unwrap();
        // Read-only: every write fails (EBADF); many frames queue up behind the first.
        let file = File::open(&path).unwrap();
        let pool = Arc::new(Pool::new(FRAME));
        let data = bytes(FRAME, 9);
        let r = run(&file, &path, 2, |sink| {
            for i in 0..64u64 {
                let c = crate::read::tests_chunk(&pool, i * FRAME as u64, &data);
                Feed::data(sink, Arc::new(c))?;
            }
            Ok(())
        });
        match r {
            Err(Error::Io(e)) => assert_eq!(e.syscall(), Some("write"), "{e}"),
            r => panic!("{r:?}"),
        }
    }
}
