use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{IoError, Storage};

/// A failure to inject into a [`Faulty`] storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The first `n` writes succeed; every later one fails with `errno` (EIO for a dying
    /// disk, ENOSPC, EROFS after a remount, ...).
    FailWritesAfter {
        /// Writes that succeed.
        n: u64,
        /// The errno of the failing writes.
        errno: i32,
    },
    /// Write calls number `after` to `after + times - 1` fail with `errno`, later ones
    /// succeed again: a transient error (a cheap card reader's EIO, EBUSY, EAGAIN).
    TransientWriteErrors {
        /// Write calls that succeed first.
        after: u64,
        /// Write calls that fail after those.
        times: u64,
        /// Their errno.
        errno: i32,
    },
    /// Writes ending past this byte offset fail with ENOSPC; bytes up to it are written
    /// (a short write first, as a full filesystem does).
    NoSpaceAfter(u64),
    /// Reads return at most this many bytes per call (a short read; never 0 before the end).
    ShortReads(usize),
    /// Reads at or past this offset fail with EIO (a bad sector).
    ReadErrorAt(u64),
    /// `flush` fails with EIO (a writeback error surfaced by fsync).
    FlushFails,
}

/// Any storage with a [`Fault`] injected, so error paths can be tested without a broken disk.
#[derive(Debug)]
pub struct Faulty<S> {
    inner: S,
    fault: Fault,
    writes: AtomicU64,
}

impl<S: Storage> Faulty<S> {
    /// Wrap `inner`.
    pub fn new(inner: S, fault: Fault) -> Self {
        Faulty {
            inner,
            fault,
            writes: AtomicU64::new(0),
        }
    }

    /// The wrapped storage.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The wrapped storage, to look at what was written.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Write calls made so far (failed ones included).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    fn err(&self, op: &'static str, errno: i32, offset: u64) -> IoError {
        let e = IoError::from_errno(op, errno).at(offset);
        match self.inner.path() {
            Some(p) => e.with_path(p),
            None => e,
        }
    }
}

impl<S: Storage> Storage for Faulty<S> {
    fn size(&self) -> Result<u64, IoError> {
        self.inner.size()
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, IoError> {
        match self.fault {
            Fault::ShortReads(max) => {
                let n = buf.len().min(max.max(1));
                self.inner.read_at(&mut buf[..n], offset)
            }
            Fault::ReadErrorAt(bad) if offset.saturating_add(buf.len() as u64) > bad => {
                if offset >= bad {
                    Err(self.err("read", crate::errno::EIO, offset))
                } else {
                    let n = (bad - offset) as usize;
                    self.inner.read_at(&mut buf[..n], offset)
                }
            }
            _ => self.inner.read_at(buf, offset),
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize, IoError> {
        let nth = self.writes.fetch_add(1, Ordering::SeqCst);
        match self.fault {
            Fault::FailWritesAfter { n, errno } if nth >= n => {
                Err(self.err("write", errno, offset))
            }
            Fault::TransientWriteErrors {
                after,
                times,
                errno,
            } if nth >= after && nth - after < times => Err(self.err("write", errno, offset)),
            Fault::NoSpaceAfter(limit) if offset.saturating_add(buf.len() as u64) > limit => {
                if offset >= limit {
                    Err(self.err("write", crate::errno::ENOSPC, offset))
                } else {
                    let n = (limit - offset) as usize;
                    self.inner.write_at(&buf[..n], offset)
                }
            }
            _ => self.inner.write_at(buf, offset),
        }
    }

    fn flush(&self) -> Result<(), IoError> {
        if self.fault == Fault::FlushFails {
            return Err(self.err("fsync", crate::errno::EIO, 0));
        }
        self.inner.flush()
    }

    fn path(&self) -> Option<&Path> {
        self.inner.path()
    }

    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), IoError> {
        // Through write_at, so the fault applies to zeroing too.
        crate::storage::write_zeroes_by_writing(self, offset, len)
    }

    fn punch_hole(&self, offset: u64, len: u64) -> Result<(), IoError> {
        self.inner.punch_hole(offset, len)
    }

    fn set_len(&self, len: u64) -> Result<(), IoError> {
        self.inner.set_len(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStorage;

    #[test]
    fn fails_after_n_writes() {
        let s = Faulty::new(
            MemStorage::new(),
            Fault::FailWritesAfter {
                n: 2,
                errno: libc::EIO,
            },
        );
        s.write_all_at(b"a", 0).unwrap();
        s.write_all_at(b"b", 1).unwrap();
        let e = s.write_all_at(b"c", 2).unwrap_err();
        assert_eq!((e.raw_os_error(), e.offset), (Some(libc::EIO), Some(2)));
        assert_eq!(s.inner().to_vec(), b"ab");
    }

    #[test]
    fn enospc_keeps_what_fit() {
        let s = Faulty::new(MemStorage::new(), Fault::NoSpaceAfter(5));
        let e = s.write_all_at(b"0123456789", 0).unwrap_err();
        assert_eq!((e.raw_os_error(), e.offset), (Some(libc::ENOSPC), Some(5)));
        assert_eq!(s.inner().to_vec(), b"01234");
    }

    #[test]
    fn short_reads_still_fill_exact_reads() {
        let s = Faulty::new(
            MemStorage::from_vec((0..100).collect()),
            Fault::ShortReads(7),
        );
        let mut b = [0u8; 50];
        assert_eq!(s.read_at(&mut b, 0).unwrap(), 7);
        s.read_exact_at(&mut b, 10).unwrap();
        assert_eq!(b[49], 59);
    }

    #[test]
    fn bad_sector() {
        let s = Faulty::new(MemStorage::from_vec(vec![1; 100]), Fault::ReadErrorAt(60));
        let mut b = [0u8; 50];
        s.read_exact_at(&mut b, 0).unwrap();
        let e = s.read_exact_at(&mut b, 40).unwrap_err();
        assert_eq!((e.raw_os_error(), e.offset), (Some(libc::EIO), Some(60)));
    }
}
