//! Every OS call of this crate that `std` does not wrap.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `lseek(SEEK_DATA)` (`hole == false`) or `lseek(SEEK_HOLE)` from `offset`
/// (include/uapi/linux/fs.h: `SEEK_DATA` 3, `SEEK_HOLE` 4). `Ok(None)` when there is no
/// more data (ENXIO: the offset is at or past the end, or only a hole follows).
pub fn seek(file: &File, offset: u64, hole: bool) -> io::Result<Option<u64>> {
    let whence = if hole {
        libc::SEEK_HOLE
    } else {
        libc::SEEK_DATA
    };
    let off = i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: lseek on a valid descriptor; changes only the file position, which this crate
    // never uses (all I/O is positional).
    let r = unsafe { libc::lseek(file.as_raw_fd(), off, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as u64))
}
