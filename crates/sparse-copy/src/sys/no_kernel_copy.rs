//! The in-kernel copies of the `sys` interface where the OS has none between two files
//! (macOS: no copy_file_range, sendfile(2) writes only to sockets; Windows: neither),
//! shared by sys/macos.rs and sys/windows.rs: both answer `ENOSYS`, so the copy falls back
//! to read/write and says so in its method.

use std::fs::File;
use std::io;

/// No copy_file_range on this OS: `ENOSYS`.
pub fn copy_file_range(
    _src: &File,
    _src_offset: u64,
    _dst: &File,
    _dst_offset: u64,
    _len: usize,
) -> io::Result<usize> {
    Err(io::Error::from_raw_os_error(sparsekit_io::errno::ENOSYS))
}

/// No sendfile between files on this OS: `ENOSYS`.
pub fn sendfile(
    _src: &File,
    _src_offset: u64,
    _dst: &File,
    _dst_offset: u64,
    _len: usize,
) -> io::Result<usize> {
    Err(io::Error::from_raw_os_error(sparsekit_io::errno::ENOSYS))
}
