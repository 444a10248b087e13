//! Listing the drives of this machine and checking a destination before it is written, on
//! every OS: Linux ([`crate::linux`]: sysfs and procfs), Windows ([`crate::windows`]) and
//! macOS ([`crate::macos`]), each OS's logic apart from its OS calls (`sys`).

use std::path::Path;

#[allow(unused_imports)]
use crate::error::{Error, Result};
use crate::types::{Drive, Safety};

/// List every whole block device with a size above 0 (detached loop devices and empty
/// card readers have none), in kernel name order.
///
/// - Linux: sysfs and procfs ([`crate::linux::list_with`]).
/// - Windows: `\\.\PhysicalDriveN` disks with their volumes, the system disk found
///   through the Windows directory, the system partition and the page files
///   ([`crate::windows::assemble`]; the OS calls are in `sys/windows.rs`).
/// - macOS: `/dev/diskN` disks, `getfsstat` mounts, APFS containers resolved by reading
///   the disks where allowed ([`crate::macos::assemble`], which says what cannot be known
///   without IOKit).
/// - Elsewhere: [`Error::Unsupported`].
pub fn list() -> Result<Vec<Drive>> {
    #[cfg(windows)]
    {
        crate::windows::list_drives()
    }
    #[cfg(target_os = "macos")]
    {
        crate::macos::list_drives()
    }
    #[cfg(not(any(windows, target_os = "macos")))]
    {
        if !cfg!(target_os = "linux") {
            return Err(Error::Unsupported {
                what: format!("listing drives on {}", std::env::consts::OS),
            });
        }
        crate::linux::list_with(&crate::linux::Roots::system())
    }
}

/// The refusal checks of a destination, run before anything is opened for writing
/// (Windows: [`crate::windows::check_destination`], where `unmount` leaves the dismounting to
/// the writer, which locks the volumes; macOS: [`crate::macos::check_destination`]):
/// a regular file passes; a block device that is (or is a partition of) a system drive
/// fails with [`Error::SystemDrive`], one with mounted partitions with
/// [`Error::DriveBusy`] — unless `safety.force`, or, for mounts, `safety.unmount`, which
/// unmounts them (deepest first; a filesystem still in use fails with EBUSY).
pub fn check_destination(path: &Path, safety: Safety) -> Result<()> {
    #[cfg(windows)]
    {
        crate::windows::check_destination(path, safety, list)
    }
    #[cfg(target_os = "macos")]
    {
        crate::macos::check_destination_here(path, safety)
    }
    #[cfg(not(any(windows, target_os = "macos")))]
    {
        crate::linux::check_destination_with(path, safety, &crate::linux::Roots::system())
    }
}
