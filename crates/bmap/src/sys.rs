//! The Linux-specific calls of this crate: dropping cached pages of a range so that a
//! read-back really reads the device, and asking for sequential read-ahead. Other OSes:
//! sys/macos.rs, sys/windows.rs.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

fn fadvise(file: &File, offset: u64, len: u64, advice: libc::c_int) -> io::Result<()> {
    let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: plain syscall on a valid descriptor; it returns the error number.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), off, len, advice) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// `posix_fadvise(POSIX_FADV_DONTNEED)` (linux/fadvise.h): evict the clean cached pages of
/// `[offset, offset + len)` so that the next read goes to the device. Dirty pages are not
/// dropped (mm/fadvise.c only invalidates what writeback finished), so callers `fsync`
/// first. Works on regular files and on block devices (their page cache is the bdev
/// inode's mapping).
pub fn drop_cache(file: &File, offset: u64, len: u64) -> io::Result<()> {
    fadvise(file, offset, len, libc::POSIX_FADV_DONTNEED)
}

/// `posix_fadvise(POSIX_FADV_SEQUENTIAL)`: double the read-ahead window for a file read
/// front to back (a compressed image). Only a hint; failures are ignored by callers.
pub fn sequential(file: &File) -> io::Result<()> {
    fadvise(file, 0, 0, libc::POSIX_FADV_SEQUENTIAL)
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)` (linux/fs.h, Linux 2.6.17): start writeback of
/// the dirty pages of `[offset, offset + len)` without waiting for it. A flash writes far
/// less than `dirty_background_ratio` of RAM, so without this the kernel would start no
/// writeback before the final `fsync`, which would then write everything while the copy
/// waits; kicked per chunk, the device writes while the next ranges are read and hashed.
/// Only a hint: callers ignore failures (EINVAL on filesystems or files that lack it).
pub fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: plain syscall on a valid descriptor.
    let r =
        unsafe { libc::sync_file_range(file.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
