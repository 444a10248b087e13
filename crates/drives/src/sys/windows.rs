//! The Windows side of this crate's `sys` module (the Linux one is sys.rs): the OS calls
//! of the drive listing, of locking and dismounting volumes and of raw disk writes
//! (windows_drives.rs; the logic that uses them is [`crate::windows`]), and the few
//! calls flashing needs. Nothing here imports the code above it.
//!
//! Physical drives are `\\.\PhysicalDriveN` and volumes `\\.\X:` or
//! `\\?\Volume{GUID}`: paths, not device nodes, so std's metadata says nothing about
//! them; [`crate::windows::block_devnum`] recognises them by name.

use std::io;
use std::path::Path;

#[path = "windows_drives.rs"]
mod drives_os;
pub use drives_os::*;

/// A device number as `(major, minor)`; on Windows `(N, 0)` for `\\.\PhysicalDriveN`.
pub type DevNum = (u32, u32);

/// No device numbers on Windows: `Unsupported`.
pub fn file_devnum(_path: &Path) -> io::Result<DevNum> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Volumes are not unmounted by mount point on Windows: the writer locks and dismounts
/// every volume of the disk it opens (`windows::lock_disk_volumes`) and keeps them so until done.
/// `Unsupported` here.
pub fn umount(_target: &Path) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

pub use sparsekit_io::sys::open_direct;
