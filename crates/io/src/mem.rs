use std::sync::Mutex;

use crate::{IoError, Storage};

/// Storage in memory, for tests and small images. Grows on writes past the end.
#[derive(Debug, Default)]
pub struct MemStorage {
    data: Mutex<Vec<u8>>,
}

impl MemStorage {
    /// Empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    /// Storage holding `data`.
    pub fn from_vec(data: Vec<u8>) -> Self {
        MemStorage {
            data: Mutex::new(data),
        }
    }

    /// A copy of the contents.
    pub fn to_vec(&self) -> Vec<u8> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A panicking writer leaves bytes, not broken invariants: keep going.
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Storage for MemStorage {
    fn size(&self) -> Result<u64, IoError> {
        Ok(self.lock().len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, IoError> {
        let data = self.lock();
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        if start >= data.len() {
            return Ok(0);
        }
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize, IoError> {
        let mut data = self.lock();
        let start = usize::try_from(offset)
            .map_err(|_| IoError::from_errno("write", crate::errno::EFBIG).at(offset))?;
        let end = start
            .checked_add(buf.len())
            .ok_or_else(|| IoError::from_errno("write", crate::errno::EFBIG).at(offset))?;
        if end > data.len() {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&self) -> Result<(), IoError> {
        Ok(())
    }

    fn punch_hole(&self, offset: u64, len: u64) -> Result<(), IoError> {
        let mut data = self.lock();
        let size = data.len() as u64;
        let start = offset.min(size) as usize;
        let end = offset.saturating_add(len).min(size) as usize;
        data[start..end].fill(0);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), IoError> {
        let len = usize::try_from(len)
            .map_err(|_| IoError::from_errno("ftruncate", crate::errno::EFBIG))?;
        self.lock().resize(len, 0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_reads_back() {
        let m = MemStorage::new();
        m.write_all_at(b"abc", 10).unwrap();
        assert_eq!(m.size().unwrap(), 13);
        let mut b = [9u8; 4];
        assert_eq!(m.read_at(&mut b, 9).unwrap(), 4);
        assert_eq!(&b, b"\0abc");
        let e = m.read_exact_at(&mut [0; 8], 8).unwrap_err();
        assert!(e.is_eof() && e.offset == Some(13), "{e}");
        m.write_zeroes(10, 2).unwrap();
        assert_eq!(&m.to_vec()[10..], b"\0\0c");
    }
}
