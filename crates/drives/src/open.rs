//! Opening a destination for exclusive raw writes, once [`crate::check_destination`] has
//! passed, on every OS.

use std::path::Path;

use sparsekit_bmap::Destination;
use sparsekit_io::sys::FileTypeExt;
use sparsekit_io::{errno, FileStorage};

use crate::drives::check_destination;
use crate::error::{Error, Result};
use crate::types::Safety;

/// Check and open `path` for writing: [`check_destination`], then a block device opened
/// `O_EXCL` (EBUSY: [`Error::DriveBusy`]) unless forced; a missing path is refused with
/// `ENOENT` unless `safety.create_files` (never under `/dev`).
///
/// Windows: `\\.\PhysicalDriveN` and volume paths are opened by
/// `windows::open_device` (volumes locked and dismounted for as long as the
/// destination lives, sector-aligned unbuffered writes). macOS: `/dev/rdiskN` is opened as
/// its block node `/dev/diskN` (the raw node, a character device, has no size through
/// `stat`); the writer then writes aligned chunks through `/dev/rdiskN` ([`open_direct`]).
pub fn open_destination(path: &Path, safety: Safety) -> Result<Box<dyn Destination>> {
    check_destination(path, safety)?;
    #[cfg(windows)]
    if let Some(dev) = crate::windows::parse_device_path(&path.to_string_lossy()) {
        return Ok(Box::new(crate::windows::open_device(path, &dev, safety)?));
    }
    #[cfg(target_os = "macos")]
    let block_node = crate::macos::parse_device_path(&path.to_string_lossy())
        .filter(|(_, _, raw)| *raw)
        .map(|_| {
            std::path::PathBuf::from(
                path.to_string_lossy()
                    .replacen("/dev/rdisk", "/dev/disk", 1),
            )
        });
    #[cfg(target_os = "macos")]
    let path = block_node.as_deref().unwrap_or(path);
    let is_dev = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
    match FileStorage::open_destination(path, safety.create_files, is_dev && !safety.force) {
        Ok(s) => Ok(Box::new(s)),
        Err(e) if is_dev && e.raw_os_error() == Some(errno::EBUSY) => Err(busy(path)),
        Err(e) => Err(e.into()),
    }
}

/// The [`Error::DriveBusy`] of a block device whose exclusive open (`O_EXCL`) failed with
/// EBUSY.
pub fn busy(path: &Path) -> Error {
    Error::DriveBusy {
        path: path.to_path_buf(),
        reason: "another user holds it exclusively (open O_EXCL: EBUSY)".into(),
        errno: Some(errno::EBUSY),
    }
}

/// Open `path` for reading back what was written, with the cache off (`O_DIRECT`,
/// `F_NOCACHE`, `FILE_FLAG_NO_BUFFERING`); on macOS a `/dev/diskN` is read through its raw
/// node `/dev/rdiskN`.
pub fn open_direct(path: &Path) -> std::io::Result<std::fs::File> {
    #[cfg(target_os = "macos")]
    {
        crate::macos::open_direct(path)
    }
    #[cfg(not(target_os = "macos"))]
    {
        crate::sys::open_direct(path)
    }
}

/// Whether `path` names a drive that only [`open_destination`] may open for writing on
/// this OS: on Windows a `\\.\PhysicalDriveN` or volume path, on macOS a block or
/// character device; on Linux never (an `O_EXCL` open of a block device is enough there).
pub fn is_drive_path(path: &Path) -> bool {
    #[cfg(windows)]
    return crate::windows::parse_device_path(&path.to_string_lossy()).is_some();
    #[cfg(target_os = "macos")]
    return std::fs::metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_block_device() || m.file_type().is_char_device()
    });
    #[cfg(not(any(windows, target_os = "macos")))]
    {
        let _ = path;
        false
    }
}
