//! The Linux-specific calls of this crate: device numbers of paths, unmounting, and
//! waiting for a written range to reach the drive. Drive
//! discovery itself reads sysfs and procfs files (see [`crate::linux`]). Other OSes:
//! sys/macos.rs, sys/windows.rs.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// A device number as `(major, minor)`.
pub type DevNum = (u32, u32);

/// The device number a block-device node names (`st_rdev`), or `None` for anything else.
pub fn block_devnum(path: &Path) -> io::Result<Option<DevNum>> {
    let m = std::fs::metadata(path)?;
    if !m.file_type().is_block_device() {
        return Ok(None);
    }
    Ok(Some((libc::major(m.rdev()), libc::minor(m.rdev()))))
}

/// The device a file lives on (`st_dev`): for a swap file, the device holding it.
pub fn file_devnum(path: &Path) -> io::Result<DevNum> {
    let m = std::fs::metadata(path)?;
    Ok((libc::major(m.dev()), libc::minor(m.dev())))
}

/// `umount2(target, 0)` (umount(2)): detach the filesystem mounted at `target`. Fails
/// with EBUSY while files on it are open; no lazy detach (`MNT_DETACH`) is attempted, as
/// the device would stay in use by whoever holds those files.
pub fn umount(target: &Path) -> io::Result<()> {
    let c = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    loop {
        // SAFETY: plain syscall with a NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `sync_file_range(SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
/// SYNC_FILE_RANGE_WAIT_AFTER)` (linux/fs.h): write the dirty pages of `[offset, offset +
/// len)` and wait for them, reporting a write error of that range (EIO from a failing
/// drive, ENOSPC from a full loop backing file): since Linux 4.13 the wait checks the
/// mapping's error sequence (`file_check_and_advance_wb_err`) as seen by this descriptor,
/// so a descriptor opened for the checks alone sees errors of writes made through another
/// one (the page cache of a block device is shared by all its openers).
pub fn wait_writeback(file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    loop {
        // SAFETY: plain syscall on a valid descriptor.
        if unsafe { libc::sync_file_range(file.as_raw_fd(), off, len, flags) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `posix_fadvise(POSIX_FADV_WILLNEED)` (linux/fadvise.h): start reading `[offset, offset +
/// len)` into the page cache without waiting, so a reader that hashes what it read finds
/// the next range there. Only a hint.
pub fn will_need(file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: plain syscall on a valid descriptor; it returns the error number.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), off, len, libc::POSIX_FADV_WILLNEED) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

pub use sparsekit_io::sys::open_direct;
