//! The macOS side of this crate's `sys` module (the Linux one is sys.rs): the same
//! functions. No FIEMAP ([`FiemapBuf::query`] answers `ENOTSUP`, `Method::Auto` goes on to
//! the seek method); `lseek(SEEK_DATA / SEEK_HOLE)` as on Linux (unistd.h, APFS and HFS+
//! since macOS 10.12; other file systems answer with the whole file as data, which the map
//! detects as the generic stub); the block size from `fstatfs` `f_bsize` (sys/mount.h).

use std::fs::File;
use std::os::unix::io::AsRawFd;

#[path = "no_fiemap.rs"]
mod no_fiemap;
pub use no_fiemap::{
    FiemapBuf, RawExtent, EBADR, FIEMAP_EXTENT_LAST, FIEMAP_EXTENT_SHARED, FIEMAP_EXTENT_UNWRITTEN,
    FIEMAP_FLAG_SYNC,
};

/// `lseek(SEEK_DATA / SEEK_HOLE)`: the POSIX call Linux and macOS share.
pub use sparsekit_io::sys::seek;

/// The file system block size (`fstatfs` `f_bsize`), or `None` if the call fails.
pub fn fs_block_size(file: &File) -> Option<u64> {
    // SAFETY: fstatfs fills the struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    (r == 0 && st.f_bsize > 0).then_some(st.f_bsize as u64)
}
