//! Conversion to a sparse raw image: only data is read and written; holes stay holes.

use std::path::Path;

use sparsekit_io::{Control, FileKind, FileStorage, IoError, Phase, Storage};

use crate::error::{Error, Result};
use crate::image::Image;

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
        let mut done = 0u64;
        let mut written = 0u64;
        let mut buf = vec![0u8; CONVERT_CHUNK];
        ctl.report(Phase::Write, 0, Some(total))?;
        for e in &map {
            if !e.data {
                if opts.zero_holes {
                    dst.write_zeroes(e.start, e.length)?;
                }
                continue;
            }
            let mut pos = e.start;
            let end = e.start + e.length;
            while pos < end {
                let n = ((end - pos) as usize).min(CONVERT_CHUNK);
                let b = &mut buf[..n];
                self.read_at(b, pos)?;
                let mut i = 0;
                while i < n {
                    // Write runs of non-zero blocks; skip zero blocks.
                    let blk = |i: usize| &b[i..(i + ZERO_BLOCK).min(n)];
                    if blk(i).iter().all(|&x| x == 0) {
                        let j = i + blk(i).len();
                        if opts.zero_holes {
                            dst.write_zeroes(pos + i as u64, (j - i) as u64)?;
                        }
                        i = j;
                        continue;
                    }
                    let mut j = i + blk(i).len();
                    while j < n && !blk(j).iter().all(|&x| x == 0) {
                        j += blk(j).len();
                    }
                    dst.write_all_at(&b[i..j], pos + i as u64)?;
                    written += (j - i) as u64;
                    i = j;
                }
                pos += n as u64;
                done += n as u64;
                ctl.report(Phase::Write, done, Some(total))?;
            }
        }
        if total == 0 || done != total {
            ctl.report(Phase::Write, total, Some(total))?;
        }
        Ok(ConvertResult {
            bytes_written: written,
            size,
        })
    }
}

/// Convert `src` to a raw image at `dst`: a regular file is created (or truncated) and
/// sized to the virtual size, so everything not written is a hole; a block device must be
/// at least as large, and gets zeros written only with `zero_holes`.
pub fn convert(
    src: &Image,
    dst: &Path,
    opts: &ConvertOptions,
    ctl: &mut Control<'_>,
) -> Result<ConvertResult> {
    src.check_readable()?;
    let kind = match std::fs::metadata(dst) {
        Ok(m) => FileKind::of(&m),
        Err(_) => FileKind::Regular,
    };
    let size = src.size();
    let out = if kind == FileKind::BlockDevice {
        let s = FileStorage::open_rw(dst)?;
        let have = s.size()?;
        if have < size {
            return Err(Error::OutOfRange {
                path: Some(dst.to_path_buf()),
                start: 0,
                length: size,
                size: have,
            });
        }
        s
    } else {
        let s = FileStorage::open_with(dst, true, true, false)?;
        // Old data must not survive where the guest has holes. Punch it out rather than
        // truncate to 0: on ext4 a truncation to size 0 arms `auto_da_alloc`, which makes
        // the final close() write back the whole file (0.5 s for 128 MiB here).
        let old = s.size()?;
        if old > 0 {
            match s.punch_hole(0, old) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => s.set_len(0)?,
                Err(e) => return Err(e.into()),
            }
        }
        s.set_len(size)?;
        s
    };
    let r = src.convert_to(&out, opts, ctl)?;
    // Block devices are flushed (as copy does); a regular file is left to writeback, as
    // `qemu-img convert` leaves it.
    if kind == FileKind::BlockDevice {
        ctl.report(Phase::Sync, 0, Some(1))?;
        out.flush().map_err(|e: IoError| Error::Io(e))?;
        ctl.report(Phase::Sync, 1, Some(1))?;
    }
    Ok(r)
}
