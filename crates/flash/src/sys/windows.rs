//! The Windows side of this crate's `sys` module (the Linux one is sys.rs). Drive
//! discovery reads Linux's sysfs and procfs ([`crate::drives`]), which Windows lacks:
//! `drives::list` fails there with the I/O error of the missing `/proc/self/mountinfo`,
//! and flashing goes to files (physical drives are not offered on Windows yet: no device
//! numbers, no unmounting).

use std::io;
use std::path::Path;

/// A device number as `(major, minor)`; Windows has none.
pub type DevNum = (u32, u32);

/// No block-device nodes on Windows: `None`.
pub fn block_devnum(_path: &Path) -> io::Result<Option<DevNum>> {
    Ok(None)
}

/// No device numbers on Windows: `Unsupported`.
pub fn file_devnum(_path: &Path) -> io::Result<DevNum> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Not offered on Windows (volumes would be locked and dismounted with
/// `FSCTL_LOCK_VOLUME` / `FSCTL_DISMOUNT_VOLUME`): `Unsupported`.
pub fn umount(_target: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Write the file's buffers and wait (`FlushFileBuffers`, fileapi.h, through std's
/// `sync_data`): Windows flushes whole files, not ranges, and reports a write error of any
/// part of it.
pub fn wait_writeback(file: &std::fs::File, _offset: u64, _len: u64) -> io::Result<()> {
    file.sync_data()
}

/// No read-ahead request for a range of an open handle on Windows: `Unsupported` (a hint).
pub fn will_need(_file: &std::fs::File, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

pub use sparsekit_io::sys::open_direct;
