use std::io;
use std::path::Path;

use crate::IoError;

/// Bytes of zeros written per call when zeroing has to be done by writing.
pub const ZERO_CHUNK: usize = 1 << 20;

static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Positional I/O: what every format and protocol crate of sparsekit reads and writes
/// through. All methods take `&self`, so one storage can be shared by threads that read or
/// write at different offsets (like `pread`/`pwrite`).
///
/// Errors carry their context ([`IoError`]): implementations set `op` and `offset`, and
/// `path` when they know it.
pub trait Storage: Send + Sync {
    /// The size in bytes (a block device's size, not its `st_size` of 0).
    fn size(&self) -> Result<u64, IoError>;

    /// Read up to `buf.len()` bytes at `offset`; `Ok(0)` at or past the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, IoError>;

    /// Write up to `buf.len()` bytes at `offset`, returning how many were written.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize, IoError>;

    /// Make written data durable (`fsync`).
    fn flush(&self) -> Result<(), IoError>;

    /// The path the storage was opened from, for error messages.
    fn path(&self) -> Option<&Path> {
        None
    }

    /// Fill `buf` from `offset`; an end of file before it is full is an `UnexpectedEof`
    /// [`IoError`] at the offset where the data ended.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> Result<(), IoError> {
        while !buf.is_empty() {
            match self.read_at(buf, offset)? {
                0 => {
                    let e = IoError::new(
                        "read",
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "end of file before the expected data",
                        ),
                    )
                    .at(offset);
                    return Err(match self.path() {
                        Some(p) => e.with_path(p),
                        None => e,
                    });
                }
                n => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }

    /// Write all of `buf` at `offset`.
    fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> Result<(), IoError> {
        while !buf.is_empty() {
            match self.write_at(buf, offset)? {
                0 => {
                    let e = IoError::new("write", io::ErrorKind::WriteZero.into()).at(offset);
                    return Err(match self.path() {
                        Some(p) => e.with_path(p),
                        None => e,
                    });
                }
                n => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
            }
        }
        Ok(())
    }

    /// Make `[offset, offset + len)` read as zeros. The default writes zeros; files and
    /// block devices use the kernel's zeroing where it has one.
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), IoError> {
        write_zeroes_by_writing(self, offset, len)
    }

    /// Deallocate `[offset, offset + len)` so it reads as zeros and takes no space, without
    /// changing the size. Storage that cannot fails with EOPNOTSUPP; callers then fall back
    /// to [`Storage::write_zeroes`].
    fn punch_hole(&self, offset: u64, _len: u64) -> Result<(), IoError> {
        Err(IoError::from_errno("fallocate(PUNCH_HOLE)", crate::errno::EOPNOTSUPP).at(offset))
    }

    /// Truncate or extend to `len` bytes (extension reads as zeros). Storage of fixed size
    /// (a block device) fails with EINVAL.
    fn set_len(&self, _len: u64) -> Result<(), IoError> {
        Err(IoError::from_errno("ftruncate", crate::errno::EINVAL))
    }
}

/// [`Storage::write_zeroes`] done by writing a buffer of zeros.
pub fn write_zeroes_by_writing<S: Storage + ?Sized>(
    s: &S,
    mut offset: u64,
    len: u64,
) -> Result<(), IoError> {
    let end = offset.saturating_add(len);
    while offset < end {
        let n = (end - offset).min(ZEROS.len() as u64) as usize;
        s.write_all_at(&ZEROS[..n], offset)?;
        offset += n as u64;
    }
    Ok(())
}

/// `&S` and `Box<S>` are storage too: every method forwards.
macro_rules! forward {
    ($($t:ty),*) => {$(
        impl<S: Storage + ?Sized> Storage for $t {
            fn size(&self) -> Result<u64, IoError> {
                (**self).size()
            }
            fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, IoError> {
                (**self).read_at(buf, offset)
            }
            fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize, IoError> {
                (**self).write_at(buf, offset)
            }
            fn flush(&self) -> Result<(), IoError> {
                (**self).flush()
            }
            fn path(&self) -> Option<&Path> {
                (**self).path()
            }
            fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), IoError> {
                (**self).write_zeroes(offset, len)
            }
            fn punch_hole(&self, offset: u64, len: u64) -> Result<(), IoError> {
                (**self).punch_hole(offset, len)
            }
            fn set_len(&self, len: u64) -> Result<(), IoError> {
                (**self).set_len(len)
            }
        }
    )*};
}
forward!(&S, Box<S>);
