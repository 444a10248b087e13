//! A byte range of a [`Storage`] seen as a storage of its own (a partition of a disk
//! image): offsets start at the range's start and nothing outside it is read or written.

use std::path::Path;

use crate::{errno, IoError, Storage};

/// `len` bytes of `inner` from `start`. A read past the end returns what is left (0 at
/// the end); a write that would cross the end is refused with `ENOSPC` before anything is
/// written, so the bytes after the range are never touched.
pub struct Window<S> {
    inner: S,
    start: u64,
    len: u64,
}

impl<S: Storage> Window<S> {
    /// The range `[start, start + len)` of `inner`; `EINVAL` when it ends past 2^64 or past
    /// the storage's size.
    pub fn new(inner: S, start: u64, len: u64) -> Result<Self, IoError> {
        let end = start.checked_add(len);
        match end {
            Some(end) if end <= inner.size()? => Ok(Window { inner, start, len }),
            _ => Err(IoError::from_errno("window", errno::EINVAL).at(start)),
        }
    }

    /// The storage the window is in.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Where the window starts in the storage.
    pub fn start(&self) -> u64 {
        self.start
    }
}

impl<S: Storage> Storage for Window<S> {
    fn size(&self) -> Result<u64, IoError> {
        Ok(self.len)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, IoError> {
        let left = self.len.saturating_sub(offset);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.inner.read_at(&mut buf[..n], self.start + offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize, IoError> {
        match offset.checked_add(buf.len() as u64) {
            Some(end) if end <= self.len => self.inner.write_at(buf, self.start + offset),
            _ => Err(IoError::from_errno("write", errno::ENOSPC).at(self.start + offset)),
        }
    }

    fn flush(&self) -> Result<(), IoError> {
        self.inner.flush()
    }

    fn path(&self) -> Option<&Path> {
        self.inner.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStorage;

    #[test]
    fn reads_and_writes_stay_inside() {
        let mem = MemStorage::from_vec(vec![7u8; 100]);
        let w = Window::new(&mem, 10, 20).unwrap();
        assert_eq!(w.size().unwrap(), 20);
        w.write_all_at(&[1; 20], 0).unwrap();
        let e = w.write_at(&[1; 2], 19).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(errno::ENOSPC));
        let mut b = [0u8; 30];
        assert_eq!(w.read_at(&mut b, 5).unwrap(), 15);
        assert_eq!(w.read_at(&mut b, 20).unwrap(), 0);
        let all = {
            let mut v = vec![0u8; 100];
            mem.read_exact_at(&mut v, 0).unwrap();
            v
        };
        assert!(all[..10].iter().all(|&x| x == 7));
        assert!(all[10..30].iter().all(|&x| x == 1));
        assert!(all[30..].iter().all(|&x| x == 7));
        assert!(Window::new(&mem, 90, 20).is_err());
        assert!(Window::new(&mem, u64::MAX, 2).is_err());
    }
}
