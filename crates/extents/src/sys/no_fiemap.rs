//! The FIEMAP half of the `sys` interface where the OS has no FIEMAP (macOS, Windows),
//! shared by sys/macos.rs and sys/windows.rs: the Linux constants and extent type the map
//! code names, and a [`FiemapBuf`] whose query always answers `EOPNOTSUPP`, so
//! `Method::Auto` goes on to the seek method.

use std::fs::File;
use std::io;

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

/// FIEMAP does not exist on this OS.
pub struct FiemapBuf;

impl FiemapBuf {
    pub fn new(_capacity: u32) -> Self {
        FiemapBuf
    }

    /// Always `EOPNOTSUPP`: the caller falls back to the seek method.
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
