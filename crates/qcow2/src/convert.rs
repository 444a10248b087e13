//! Conversion to a sparse raw image: only data is read and written; holes stay holes.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};

use sparsekit_io::{Control, FileKind, FileStorage, IoError, Phase, Storage};

use crate::error::{Error, Result};
use crate::image::Image;

/// Threads reading and writing chunks at once.
pub const CONVERT_THREADS: usize = 4;
/// Bytes read and written per step.
pub const CONVERT_CHUNK: usize = 1 << 20;
/// Granularity of zero detection inside data: all-zero blocks of this size are not written
/// (as `qemu-img convert`'s default `-S 4k`).
pub const ZERO_BLOCK: usize = 4096;

/// How to convert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Write zeros where the guest reads zeros (`write_zeroes`). Not needed for a new
    /// regular file (it is created empty); a block device keeps its old bytes there
    /// unless this is set.
    pub zero_holes: bool,
}

/// What a conversion did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvertResult {
    /// Bytes of data written.
    pub bytes_written: u64,
    /// The virtual size (the raw image's size).
    pub size: u64,
}

impl Image {
    /// Write the guest disk to `dst` (already sized to at least the virtual size, and
    /// reading as zeros where nothing will be written unless `zero_holes`). Reports
    /// [`Phase::Map`], then [`Phase::Write`] in guest data bytes.
    pub fn convert_to(
        &self,
        dst: &dyn Storage,
        opts: &ConvertOptions,
        ctl: &mut Control<'_>,
    ) -> Result<ConvertResult> {
        let size = self.size();
        let map = self.map(ctl)?;
        let total: u64 = map.iter().filter(|e| e.data).map(|e| e.length).sum();
        ctl.report(Phase::Write, 0, Some(total))?;
        let mut chunks = Vec::new();
        for e in &map {
            if !e.data {
                if opts.zero_holes {
                    dst.write_zeroes(e.start, e.length)?;
                }
                continue;
            }
            let mut pos = e.start;
            while pos < e.start + e.length {
                let n = (e.start + e.length - pos).min(CONVERT_CHUNK as u64);
                chunks.push((pos, n));
                pos += n;
            }
        }
        // Workers read and write chunks in parallel, so reads (and decompression) overlap
        // writes; the caller's thread reports progress and watches for cancellation.
        let next = AtomicUsize::new(0);
        let failed: Mutex<Option<Error>> = Mutex::new(None);
        let written = AtomicU64::new(0);
        let cancel = ctl.cancel().clone();
        let workers = CONVERT_THREADS.min(chunks.len()).max(1);
        let (tx, rx) = mpsc::channel::<u64>();
        let result = std::thread::scope(|sc| -> Result<u64> {
            for _ in 0..workers {
                let tx = tx.clone();
                let (next, failed, written, cancel, chunks) =
                    (&next, &failed, &written, &cancel, &chunks);
                sc.spawn(move || {
                    // Page aligned: copies between the page cache and a buffer that is
                    // not are markedly slower (malloc puts large blocks 16 bytes into a page).
                    let mut buf = sparsekit_io::PageBuf::new(CONVERT_CHUNK);
                    loop {
                        let k = next.fetch_add(1, Ordering::SeqCst);
                        let Some(&(pos, n)) = chunks.get(k) else {
                            break;
                        };
                        if cancel.is_cancelled() || failed.lock().expect("lock").is_some() {
                            break;
                        }
                        let b = &mut buf[..n as usize];
                        match self
                            .read_at(b, pos)
                            .and_then(|()| write_nonzero(dst, b, pos, opts.zero_holes))
                        {
                            Ok(w) => {
                                written.fetch_add(w, Ordering::SeqCst);
                                let _ = tx.send(n);
                            }
                            Err(e) => {
                                failed.lock().expect("lock").get_or_insert(e);
                                break;
                            }
                        }
                    }
                });
            }
            drop(tx);
            let mut done = 0u64;
            for n in rx {
                done += n;
                if let Err(a) = ctl.report(Phase::Write, done, Some(total)) {
                    cancel.cancel();
                    failed.lock().expect("lock").get_or_insert(a.into());
                }
            }
            Ok(done)
        });
        if let Some(e) = failed.into_inner().expect("lock") {
            return Err(e);
        }
        let done = result?;
        ctl.check()?;
        if total == 0 || done != total {
            ctl.report(Phase::Write, total, Some(total))?;
        }
        Ok(ConvertResult {
            bytes_written: written.into_inner(),
            size,
        })
    }
}

/// Write the non-zero [`ZERO_BLOCK`]s of `b` (guest bytes at `pos`) to `dst`; zero blocks
/// are skipped, or zeroed with `zero_holes`. Returns the bytes written.
fn write_nonzero(dst: &dyn Storage, b: &[u8], pos: u64, zero_holes: bool) -> Result<u64> {
    let n = b.len();
    let blk = |i: usize| &b[i..(i + ZERO_BLOCK).min(n)];
    let zero = |i: usize| sparsekit_io::is_zero(blk(i));
    let mut written = 0;
    let mut i = 0;
    while i < n {
        if zero(i) {
            let j = i + blk(i).len();
            if zero_holes {
                dst.write_zeroes(pos + i as u64, (j - i) as u64)?;
            }
            i = j;
            continue;
        }
        let mut j = i + blk(i).len();
        while j < n && !zero(j) {
            j += blk(j).len();
        }
        dst.write_all_at(&b[i..j], pos + i as u64)?;
        written += (j - i) as u64;
        i = j;
    }
    Ok(written)
}

/// Convert `src` to a raw image at `dst`. A regular file (new, or replacing one there) is
/// written as a temporary file in the same folder, sized to the virtual size so
/// everything not written is a hole, and renamed over `dst` only when the conversion is
/// complete: a failed or aborted conversion (a corrupt source, a full disk) leaves the old
/// file byte for byte as it was, and no temporary file behind. A file being replaced is
/// synced before the rename, so a crash leaves the old file or the whole new one; a new
/// file is left to writeback, as `qemu-img convert` leaves it. A symbolic link is
/// followed (its target is replaced, the link stays). A block device is written in place:
/// it must be at least as large, and gets zeros written only with `zero_holes`.
pub fn convert(
    src: &Image,
    dst: &Path,
    opts: &ConvertOptions,
    ctl: &mut Control<'_>,
) -> Result<ConvertResult> {
    src.check_readable()?;
    let meta = match std::fs::metadata(dst) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::Io(IoError::new("stat", e).with_path(dst))),
    };
    let kind = meta.as_ref().map_or(FileKind::Regular, FileKind::of);
    let size = src.size();
    if kind == FileKind::BlockDevice {
        let out = FileStorage::open_rw(dst)?;
        let have = out.size()?;
        if have < size {
            return Err(Error::OutOfRange {
                path: Some(dst.to_path_buf()),
                start: 0,
                length: size,
                size: have,
            });
        }
        let r = src.convert_to(&out, opts, ctl)?;
        // Block devices are flushed (as copy does).
        ctl.report(Phase::Sync, 0, Some(1))?;
        out.flush().map_err(|e: IoError| Error::Io(e))?;
        ctl.report(Phase::Sync, 1, Some(1))?;
        return Ok(r);
    }
    if kind != FileKind::Regular {
        // A character device or anything else that is not replaced by a rename: written
        // in place, as before (open refuses what cannot be written at offsets).
        let out = FileStorage::open_with(dst, true, true, false)?;
        return src.convert_to(&out, opts, ctl);
    }
    let target = match &meta {
        Some(_) => std::fs::canonicalize(dst)
            .map_err(|e| Error::Io(IoError::new("realpath", e).with_path(dst)))?,
        None => dst.to_path_buf(),
    };
    let mut tmp = sparsekit_io::TempBeside::new(&target)?;
    let file = tmp.take_file().expect("a new temporary file is open");
    let out = FileStorage::from_file(file, tmp.path())?;
    out.set_len(size)?;
    let r = src.convert_to(&out, opts, ctl)?;
    if meta.is_some() {
        ctl.report(Phase::Sync, 0, Some(1))?;
        out.flush().map_err(|e: IoError| Error::Io(e))?;
        ctl.report(Phase::Sync, 1, Some(1))?;
    }
    drop(out);
    ctl.check()?;
    tmp.persist(&target, meta.as_ref())?;
    Ok(r)
}
