//! The Windows side of this crate's `sys` module (the Linux one is sys.rs). Windows has no
//! call that evicts a range of a file from the cache, no read-ahead advice for an open
//! handle and no asynchronous writeback start: [`drop_cache`] does nothing (a read-back
//! then reads through the system cache: it checks what the file system holds, not the
//! medium), and the two hints answer `Unsupported` (callers ignore them).

use std::fs::File;
use std::io;

/// Nothing to do on Windows (see the module documentation).
pub fn drop_cache(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

/// No read-ahead advice for an open handle: `Unsupported` (a hint).
pub fn sequential(_file: &File) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// No writeback start: `Unsupported` (a hint).
pub fn start_writeback(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}
