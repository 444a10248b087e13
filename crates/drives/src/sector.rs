//! Sector-aligned access to storage that takes nothing else: a Windows disk or volume
//! opened with `FILE_FLAG_NO_BUFFERING` (fileapi.h `CreateFileW`: "File access sizes,
//! including the optional file offset in the OVERLAPPED structure, if specified, must be
//! for a number of bytes that is an integer multiple of the volume sector size", and the
//! buffer must be aligned in memory), and macOS's raw `/dev/rdiskN`.
//!
//! [`SectorAligned`] passes aligned transfers through untouched (the flash writer's
//! chunks: page-aligned [`PageBuf`]s at chunk offsets) and turns any other into aligned
//! ones through a page-aligned bounce buffer: a write that starts or ends inside a sector
//! first reads that sector (read-modify-write), as the page cache does for Linux's
//! buffered writes of an unaligned tail.

use std::path::Path;

use sparsekit_bmap::Destination;
use sparsekit_io::{IoError, PageBuf, Storage, PAGE};

/// Most bytes one unaligned transfer moves through the bounce buffer per call (callers
/// loop through `read_exact_at` / `write_all_at`).
pub const MAX_BOUNCE: usize = 1 << 20;

/// [`Storage`] whose transfers reach `inner` aligned: offsets and lengths to `sector`
/// bytes, buffers to [`PAGE`].
#[derive(Debug)]
pub struct SectorAligned<S> {
    inner: S,
    sector: u64,
    block_device: bool,
}

impl<S: Storage> SectorAligned<S> {
    /// Wrap `inner`, whose sector size is `sector` (a power of two from 512 to 64 KiB;
    /// anything else is taken as 4096). `block_device` is what
    /// [`Destination::is_block_device`] answers.
    pub fn new(inner: S, sector: u32, block_device: bool) -> Self {
        let sector = if sector.is_power_of_two() && (512..=65536).contains(&sector) {
            sector as u64
        } else {
            4096
        };
        SectorAligned {
            inner,
            sector,
            block_device,
        }
    }

    /// The storage underneath.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The sector size used.
    pub fn sector(&self) -> u64 {
        self.sector
    }

    fn aligned(&self, ptr: *const u8, len: usize, offset: u64) -> bool {
        (ptr as usize).is_multiple_of(PAGE)
            && (len as u64).is_multiple_of(self.sector)
            && offset.is_multiple_of(self.sector)
    }

    /// The aligned window `[start, end)` covering `[offset, offset + len)`, at most
    /// [`MAX_BOUNCE`] bytes past `start` (and always covering `offset`).
    fn window(&self, offset: u64, len: usize) -> Result<(u64, u64), IoError> {
        let s = self.sector;
        let start = offset - offset % s;
        let want = offset
            .checked_add(len as u64)
            .ok_or_else(|| IoError::from_errno("write", sparsekit_io::errno::EINVAL).at(offset))?;
        let end = want.min(start + MAX_BOUNCE as u64).max(offset + 1);
        let end = end.div_ceil(s) * s;
        Ok((start, end))
    }
}

impl<S: Storage> Storage for SectorAligned<S> {
    fn size(&self) -> Result<u64, IoError> {
        self.inner.size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, IoError> {
        if buf.is_empty() || self.aligned(buf.as_ptr(), buf.len(), offset) {
            return self.inner.read_at(buf, offset);
        }
        let (start, end) = self.window(offset, buf.len())?;
        let mut b = PageBuf::new((end - start) as usize);
        let got = self.inner.read_at(&mut b, start)?;
        let skip = (offset - start) as usize;
        if got <= skip {
            return Ok(0);
        }
        let n = (got - skip).min(buf.len());
        buf[..n].copy_from_slice(&b[skip..skip + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize, IoError> {
        if buf.is_empty() || self.aligned(buf.as_ptr(), buf.len(), offset) {
            return self.inner.write_at(buf, offset);
        }
        let s = self.sector;
        let (start, end) = self.window(offset, buf.len())?;
        let mut b = PageBuf::new((end - start) as usize);
        let skip = (offset - start) as usize;
        let n = buf.len().min(b.len() - skip);
        // Sectors only partly written keep their other bytes: read them first.
        if skip > 0 {
            self.inner.read_exact_at(&mut b[..s as usize], start)?;
        }
        let tail = offset + n as u64;
        if !tail.is_multiple_of(s) && (skip == 0 || end - start > s) {
            let last = (end - s - start) as usize;
            let mut t = PageBuf::new(s as usize);
            self.inner.read_exact_at(&mut t, end - s)?;
            b[last..].copy_from_slice(&t);
        }
        b[skip..skip + n].copy_from_slice(&buf[..n]);
        self.inner.write_all_at(&b, start)?;
        Ok(n)
    }

    fn flush(&self) -> Result<(), IoError> {
        self.inner.flush()
    }

    fn path(&self) -> Option<&Path> {
        self.inner.path()
    }

    fn set_len(&self, len: u64) -> Result<(), IoError> {
        self.inner.set_len(len)
    }
}

impl<S: Storage> Destination for SectorAligned<S> {
    fn is_block_device(&self) -> bool {
        self.block_device
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsekit_io::{Fault, Faulty, MemStorage};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use sparsekit_testfs::{pattern, sector::Strict};

    #[test]
    fn unaligned_transfers_match_plain_storage() {
        for sector in [512u32, 4096] {
            let size = 3 << 20;
            let init = pattern(size, 1);
            let disk = SectorAligned::new(
                Strict {
                    mem: Arc::new(MemStorage::from_vec(init.clone())),
                    sector: sector as u64,
                    calls: AtomicU64::new(0),
                },
                sector,
                true,
            );
            let mut model = init;
            let data = pattern(MAX_BOUNCE * 2 + 100, 2);
            // (offset, len): inside one sector, across sectors, aligned offset with a short
            // tail, longer than one bounce window, the last bytes of the disk.
            let cases = [
                (3u64, 10usize),
                (510, 5),
                (4096, 100),
                (1000, 9000),
                (7, MAX_BOUNCE * 2 + 77),
                (size as u64 - 13, 13),
                (size as u64 - 4096, 4096),
                (0, 1),
            ];
            for (i, &(off, len)) in cases.iter().enumerate() {
                let d = &data[i..i + len];
                disk.write_all_at(d, off).unwrap();
                model[off as usize..off as usize + len].copy_from_slice(d);
                let mut back = vec![0u8; len + 3];
                let back = &mut back[3..];
                disk.read_exact_at(back, off).unwrap();
                assert_eq!(back, d, "sector {sector} case {i}");
            }
            assert!(disk.inner().mem.to_vec() == model, "sector {sector}");
            // Reading past the end: short, then end of file.
            let mut b = [0u8; 100];
            assert_eq!(disk.read_at(&mut b, size as u64 - 10).unwrap(), 10);
            assert_eq!(disk.read_at(&mut b, size as u64 + 5).unwrap(), 0);
            // Writing past the end fails, as a disk does.
            assert!(disk.write_all_at(&[1, 2, 3], size as u64 - 1).is_err());
        }
    }

    #[test]
    fn aligned_transfers_pass_through() {
        let disk = SectorAligned::new(
            Strict {
                mem: Arc::new(MemStorage::from_vec(vec![0; 1 << 20])),
                sector: 512,
                calls: AtomicU64::new(0),
            },
            512,
            true,
        );
        let mut b = PageBuf::new(64 << 10);
        b.fill(9);
        disk.write_all_at(&b, 128 << 10).unwrap();
        assert_eq!(
            disk.inner().calls.load(Ordering::Relaxed),
            1,
            "no read-modify-write"
        );
        assert!(disk.is_block_device());
        assert_eq!(
            SectorAligned::new(MemStorage::new(), 1000, false).sector(),
            4096
        );
    }

    #[test]
    fn failed_sector_read_writes_nothing() {
        // A bad sector where the partial write must read: the write fails with the read's
        // error and the disk is unchanged.
        let f = Faulty::new(
            MemStorage::from_vec(vec![5; 1 << 20]),
            Fault::ReadErrorAt(8192),
        );
        let disk = SectorAligned::new(f, 512, true);
        let e = disk.write_all_at(&[1; 10], 8192 + 3).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(sparsekit_io::errno::EIO));
        assert!(disk.inner().inner().to_vec().iter().all(|&x| x == 5));
        assert_eq!(disk.inner().writes(), 0);
    }
}
