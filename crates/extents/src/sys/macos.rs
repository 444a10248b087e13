//! The macOS side of this crate's `sys` module (the Linux one is sys.rs): the same
//! functions. No FIEMAP ([`FiemapBuf::query`] answers `ENOTSUP`, `Method::Auto` goes on to
//! the seek method); `lseek(SEEK_DATA / SEEK_HOLE)` as on Linux (unistd.h, APFS and HFS+
//! since macOS 10.12; other file systems answer with the whole file as data, which the map
//! detects as the generic stub); the block size from `fstatfs` `f_bsize` (sys/mount.h).

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

/// What Linux calls EBADR (a FIEMAP flag refused); never produced here.
pub const EBADR: i32 = -1;
/// `FIEMAP_FLAG_SYNC` (linux/fiemap.h); unused here.
pub const FIEMAP_FLAG_SYNC: u32 = 0x1;
/// `FIEMAP_EXTENT_LAST`.
pub const FIEMAP_EXTENT_LAST: u32 = 0x1;
/// `FIEMAP_EXTENT_UNWRITTEN`.
pub const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
/// `FIEMAP_EXTENT_SHARED`.
pub const FIEMAP_EXTENT_SHARED: u32 = 0x2000;

/// One extent, as the Linux module returns them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawExtent {
    /// Byte offset in the file.
    pub logical: u64,
    /// Bytes.
    pub length: u64,
    /// FIEMAP flags.
    pub flags: u32,
}

/// FIEMAP does not exist on macOS.
pub struct FiemapBuf;

impl FiemapBuf {
    pub fn new(_capacity: u32) -> Self {
        FiemapBuf
    }

    /// Always `ENOTSUP`: the caller falls back to [`seek`].
    pub fn query(
        &mut self,
        _file: &File,
        _start: u64,
        _length: u64,
        _flags: u32,
        _out: &mut Vec<RawExtent>,
    ) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
    }
}

/// `lseek(fd, offset, SEEK_DATA or SEEK_HOLE)`; `Ok(None)` for ENXIO (no data past
/// `offset`, or `offset` at/after end of file).
pub fn seek(file: &File, offset: u64, hole: bool) -> io::Result<Option<u64>> {
    let whence = if hole {
        libc::SEEK_HOLE
    } else {
        libc::SEEK_DATA
    };
    let off = i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: plain syscall on a valid descriptor.
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

/// The file system block size (`fstatfs` `f_bsize`), or `None` if the call fails.
pub fn fs_block_size(file: &File) -> Option<u64> {
    // SAFETY: fstatfs fills the struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    (r == 0 && st.f_bsize > 0).then_some(st.f_bsize as u64)
}
