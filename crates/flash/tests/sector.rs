//! The flash writer through sector-aligned storage ([`sparsekit_drives::SectorAligned`]),
//! what a Windows disk opened `FILE_FLAG_NO_BUFFERING` is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sparsekit_drives::SectorAligned;
use sparsekit_flash::{flash_to, FlashOptions, Target};
use sparsekit_io::{IoError, MemStorage, Storage, PAGE};

/// Storage that refuses what a `FILE_FLAG_NO_BUFFERING` disk refuses (EINVAL, as
/// Windows says ERROR_INVALID_PARAMETER) and counts transfers.
struct Strict {
    mem: Arc<MemStorage>,
    sector: u64,
    calls: AtomicU64,
}

impl Strict {
    fn check(&self, ptr: *const u8, len: usize, offset: u64) -> Result<(), IoError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !(ptr as usize).is_multiple_of(PAGE)
            || !(len as u64).is_multiple_of(self.sector)
            || !offset.is_multiple_of(self.sector)
        {
            return Err(IoError::from_errno("strict", sparsekit_io::errno::EINVAL).at(offset));
        }
        Ok(())
    }
}

impl Storage for Strict {
    fn size(&self) -> Result<u64, IoError> {
        self.mem.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, IoError> {
        self.check(buf.as_ptr(), buf.len(), offset)?;
        self.mem.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize, IoError> {
        self.check(buf.as_ptr(), buf.len(), offset)?;
        if offset + buf.len() as u64 > self.mem.size()? {
            return Err(IoError::from_errno("write", sparsekit_io::errno::ENOSPC).at(offset));
        }
        self.mem.write_at(buf, offset)
    }
    fn flush(&self) -> Result<(), IoError> {
        Ok(())
    }
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The flash writer through a disk that takes only aligned transfers (what a Windows
/// disk opened `FILE_FLAG_NO_BUFFERING` is): an image whose size is no multiple of the
/// sector size is written (its last sector read, merged and rewritten), read back
/// through unaligned buffers, and the bytes after it on the disk are kept.
#[test]
fn flash_writer_through_an_aligned_only_disk() {
    use sparsekit_io::Control;
    let dir = tempfile::tempdir().unwrap();
    let data = pattern((3 << 20) + 777, 5);
    let src = dir.path().join("img");
    std::fs::write(&src, &data).unwrap();
    for sector in [512u32, 4096] {
        let mem = Arc::new(MemStorage::from_vec(vec![0xEE; 5 << 20]));
        let disk = SectorAligned::new(
            Strict {
                mem: mem.clone(),
                sector: sector as u64,
                calls: AtomicU64::new(0),
            },
            sector,
            true,
        );
        let targets = vec![Target {
            path: "disk".into(),
            dst: Ok(Box::new(disk)),
        }];
        let r = flash_to(
            src.to_str().unwrap(),
            targets,
            &FlashOptions::default(),
            None,
            &mut Control::none(),
        )
        .unwrap();
        let d = &r.destinations[0];
        assert!(d.error.is_none() && d.verified, "{:?}", d.error);
        let got = mem.to_vec();
        assert!(got[..data.len()] == data[..], "sector {sector}");
        assert!(
            got[data.len()..].iter().all(|&b| b == 0xEE),
            "sector {sector}"
        );
    }
}
