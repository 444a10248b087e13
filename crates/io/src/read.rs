//! Plumbing between [`Storage`] and `std::io`: a [`StorageCursor`] reads a storage as
//! `Read + Seek`, [`Counting`] counts what a reader gives out, and [`carry`]/[`take`]
//! (with `From<IoError> for io::Error` and [`IoError::recover`]) carry an error through
//! `std::io` (a decoder, the zip crate) and get it back unchanged on the far side.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::{IoError, Storage};

/// A [`Storage`] read front to back as a [`Read`] + [`Seek`] (a decoder's input, the zip
/// crate's archive). Its read errors are the storage's [`IoError`]s carried inside the
/// `io::Error` ([`IoError::recover`] gets them back). The size is asked for only when a
/// seek is relative to the end.
pub struct StorageCursor<S> {
    inner: S,
    pos: u64,
}

impl<S: Storage> StorageCursor<S> {
    /// A cursor at offset 0.
    pub fn new(inner: S) -> Self {
        StorageCursor { inner, pos: 0 }
    }

    /// The storage.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The storage, giving up the cursor.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The offset the next read starts at.
    pub fn position(&self) -> u64 {
        self.pos
    }
}

impl<S: Storage> Read for StorageCursor<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Writes at the cursor (a file-system library writing into a partition): the storage's
/// [`IoError`]s are carried as the reads' are; `flush` is the storage's.
impl<S: Storage> Write for StorageCursor<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(self.inner.flush()?)
    }
}

impl<S: Storage> Seek for StorageCursor<S> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let p = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.inner.size()?.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match p {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start",
            )),
        }
    }
}

/// A [`Read`] that adds what it gives out to a shared counter (progress of a source read
/// on another thread).
pub struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Counting<R> {
    /// Count `inner`'s bytes into `count`.
    pub fn new(inner: R, count: Arc<AtomicU64>) -> Self {
        Counting { inner, count }
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// `e` inside an `io::Error` of `kind`, to pass through code that speaks only `std::io`;
/// [`take`] gets it back.
pub fn carry<E>(kind: io::ErrorKind, e: E) -> io::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    io::Error::new(kind, e)
}

/// Whether `e` carries an `E` ([`carry`]).
pub fn carries<E>(e: &io::Error) -> bool
where
    E: std::error::Error + Send + Sync + 'static,
{
    e.get_ref().is_some_and(|i| i.is::<E>())
}

/// The `E` that [`carry`] put inside `e`, or `e` itself when it carries none.
pub fn take<E>(e: io::Error) -> Result<E, io::Error>
where
    E: std::error::Error + Send + Sync + 'static,
{
    if !carries::<E>(&e) {
        return Err(e);
    }
    match e.into_inner().map(|i| i.downcast::<E>()) {
        Some(Ok(inner)) => Ok(*inner),
        // Checked above: `e` holds an `E`.
        _ => unreachable!("the io::Error holds the type just checked"),
    }
}

impl From<IoError> for io::Error {
    /// The [`IoError`] carried inside an `io::Error` of the same kind.
    fn from(e: IoError) -> io::Error {
        carry(e.source.kind(), e)
    }
}

impl IoError {
    /// The [`IoError`] an `io::Error` carries (`From<IoError> for io::Error`), or the
    /// `io::Error` itself when it carries none.
    pub fn recover(e: io::Error) -> Result<IoError, io::Error> {
        take(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Fault, Faulty, MemStorage};

    fn mem(data: &[u8]) -> MemStorage {
        let m = MemStorage::new();
        m.write_all_at(data, 0).unwrap();
        m
    }

    #[test]
    fn cursor_reads_and_seeks() {
        let mut c = StorageCursor::new(mem(b"0123456789"));
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        assert_eq!(s, "0123456789");
        assert_eq!(c.seek(SeekFrom::End(-3)).unwrap(), 7);
        let mut b = [0u8; 8];
        assert_eq!(c.read(&mut b).unwrap(), 3);
        assert_eq!(&b[..3], b"789");
        assert_eq!(c.seek(SeekFrom::Current(-5)).unwrap(), 5);
        assert_eq!(c.position(), 5);
        let e = c.seek(SeekFrom::Current(-6)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(c.seek(SeekFrom::Start(20)).unwrap(), 20);
        assert_eq!(c.read(&mut b).unwrap(), 0, "past the end reads nothing");
    }

    #[test]
    fn cursor_errors_carry_the_io_error() {
        let mut c = StorageCursor::new(Faulty::new(mem(&[7; 100]), Fault::ReadErrorAt(50)));
        c.seek(SeekFrom::Start(60)).unwrap();
        let e = c.read(&mut [0; 4]).unwrap_err();
        let io = IoError::recover(e).unwrap();
        assert_eq!((io.raw_os_error(), io.offset), (Some(libc::EIO), Some(60)));
    }
    #[test]
    fn carry_and_take_round_trip() {
        let e: io::Error = IoError::from_errno("write", libc::ENOSPC).at(9).into();
        assert_eq!(e.raw_os_error(), None, "the carrier is no OS error itself");
        assert_eq!(e.kind(), io::ErrorKind::StorageFull);
        let back = IoError::recover(e).unwrap();
        assert_eq!(back.offset, Some(9));
        // A plain io::Error carries nothing and comes back as it was.
        let plain = io::Error::from_raw_os_error(libc::EPERM);
        let again = IoError::recover(plain).unwrap_err();
        assert_eq!(again.raw_os_error(), Some(libc::EPERM));
        // Any error type travels the same way.
        #[derive(Debug, PartialEq)]
        struct Mine(u8);
        impl std::fmt::Display for Mine {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "mine {}", self.0)
            }
        }
        impl std::error::Error for Mine {}
        let e = carry(io::ErrorKind::Other, Mine(3));
        assert!(take::<IoError>(carry(io::ErrorKind::Other, Mine(1))).is_err());
        assert_eq!(take::<Mine>(e).unwrap(), Mine(3));
    }

    #[test]
    fn counting_counts() {
        let n = Arc::new(AtomicU64::new(5));
        let mut r = Counting::new(&b"hello world"[..], n.clone());
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(n.load(Ordering::Relaxed), 16);
    }
}
