//! The macOS side of this crate's `sys` module (the Linux one is sys.rs), from Apple's
//! sys/fcntl.h.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

fn fcntl(file: &File, cmd: libc::c_int, arg: libc::c_int) -> io::Result<()> {
    // SAFETY: fcntl with an integer argument on a valid descriptor.
    if unsafe { libc::fcntl(file.as_raw_fd(), cmd, arg) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fcntl(F_NOCACHE, 1)` (sys/fcntl.h): from now on reads of this descriptor bypass the
/// unified buffer cache, so a read-back reads the device. macOS has no call that evicts
/// a range; the whole descriptor is switched, whatever `offset` and `len` say.
pub fn drop_cache(file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    fcntl(file, libc::F_NOCACHE, 1)
}

/// `fcntl(F_RDAHEAD, 1)` (sys/fcntl.h): read-ahead on. Only a hint.
pub fn sequential(file: &File) -> io::Result<()> {
    fcntl(file, libc::F_RDAHEAD, 1)
}

/// No asynchronous writeback start on macOS: `ENOTSUP` (a hint; callers ignore it).
pub fn start_writeback(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOTSUP))
}
