//! A disk that takes only aligned transfers, for the sector-aligned writer's tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sparsekit_io::{IoError, MemStorage, Storage, PAGE};

/// Storage that refuses what a `FILE_FLAG_NO_BUFFERING` disk refuses (EINVAL, as
/// Windows says ERROR_INVALID_PARAMETER) and counts transfers.
pub struct Strict {
    pub mem: Arc<MemStorage>,
    pub sector: u64,
    pub calls: AtomicU64,
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
