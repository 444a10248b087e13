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

#[path = "no_fiemap.rs"]
mod no_fiemap;
pub use no_fiemap::{
    FiemapBuf, RawExtent, EBADR, FIEMAP_EXTENT_LAST, FIEMAP_EXTENT_SHARED, FIEMAP_EXTENT_UNWRITTEN,
    FIEMAP_FLAG_SYNC,
};

/// `lseek(SEEK_DATA / SEEK_HOLE)` semantics from `FSCTL_QUERY_ALLOCATED_RANGES`
/// (`sparsekit_io::sys::seek_allocated`); `Ok(None)` at or past the end of the file.
pub fn seek(file: &File, offset: u64, hole: bool) -> io::Result<Option<u64>> {
    seek_allocated(file, offset, hole)
}

/// The file system's cluster size is not asked for: `None` (the caller uses its default).
pub fn fs_block_size(_file: &File) -> Option<u64> {
    None
}
