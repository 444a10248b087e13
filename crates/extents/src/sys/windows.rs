//! The Windows side of this crate's `sys` module (the Linux one is sys.rs): the same
//! functions, on Win32 (learn.microsoft.com, header in brackets).
//!
//! - No FIEMAP: [`FiemapBuf::query`] answers `EOPNOTSUPP`, so `Method::Auto` goes on to the
//!   seek method.
//! - [`seek`] (the seek method) answers SEEK_DATA/SEEK_HOLE questions from
//!   `FSCTL_QUERY_ALLOCATED_RANGES` (winioctl.h): the allocated ranges of a sparse file
//!   (NTFS, ReFS); a file that is not sparse is one allocated range. File systems without
//!   the call (FAT, some network and emulated ones) answer `EOPNOTSUPP` and the map falls
//!   back to `Method::None` (all data).

use std::fs::File;
use std::io;

use sparsekit_io::sys::seek_allocated;

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

/// FIEMAP does not exist on Windows.
pub struct FiemapBuf;

impl FiemapBuf {
    pub fn new(_capacity: u32) -> Self {
        FiemapBuf
    }

    /// Always `EOPNOTSUPP`: the caller falls back to [`seek`].
    pub fn query(
        &mut self,
        _file: &File,
        _start: u64,
        _length: u64,
        _flags: u32,
        _out: &mut Vec<RawExtent>,
    ) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(
            sparsekit_io::errno::EOPNOTSUPP,
        ))
    }
}

/// `lseek(SEEK_DATA / SEEK_HOLE)` semantics from `FSCTL_QUERY_ALLOCATED_RANGES`
/// (`sparsekit_io::sys::seek_allocated`); `Ok(None)` at or past the end of the file.
pub fn seek(file: &File, offset: u64, hole: bool) -> io::Result<Option<u64>> {
    seek_allocated(file, offset, hole)
}

/// The file system's cluster size is not asked for: `None` (the caller uses its default).
pub fn fs_block_size(_file: &File) -> Option<u64> {
    None
}
