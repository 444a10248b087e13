//! The Windows side of this crate's `sys` module (the Linux one is sys.rs).
//!
//! - [`seek`]: SEEK_DATA/SEEK_HOLE answers from `FSCTL_QUERY_ALLOCATED_RANGES` (winioctl.h,
//!   through `sparsekit_io::sys::seek_allocated`).
//! - Locks: qemu's Windows file driver (block/file-win32.c) takes no byte-range locks, so
//!   there is no lock to share or test: [`ofd_read_lock`] does nothing and [`ofd_locked`]
//!   answers false.
//! - The page-cache hints are `sparsekit_io::sys`'s.

use std::fs::File;
use std::io;

/// `lseek(SEEK_DATA / SEEK_HOLE)` semantics; `Ok(None)` when no more data follows.
pub fn seek(file: &File, offset: u64, hole: bool) -> io::Result<Option<u64>> {
    sparsekit_io::sys::seek_allocated(file, offset, hole)
}

/// qemu on Windows does not lock: nothing to share.
pub fn ofd_read_lock(_file: &File, _byte: u64) -> io::Result<()> {
    Ok(())
}

/// qemu on Windows does not lock: never locked.
pub fn ofd_locked(_file: &File, _byte: u64) -> io::Result<bool> {
    Ok(false)
}

/// Preallocation is measured on Linux's ext4 only (sys.rs): nothing here.
pub fn preallocate(_file: &File, _offset: u64, _len: u64) -> bool {
    false
}
