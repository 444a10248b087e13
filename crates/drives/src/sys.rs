//! The Linux-specific calls of this crate: device numbers of paths, unmounting, and
//! waiting for a written range to reach the drive. Drive
//! discovery itself reads sysfs and procfs files (see [`crate::linux`]). Other OSes:
//! sys/macos.rs, sys/windows.rs.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// A device number as `(major, minor)`.
pub type DevNum = (u32, u32);

/// The device number a block-device node names (`st_rdev`), or `None` for anything else.
pub fn block_devnum(path: &Path) -> io::Result<Option<DevNum>> {
    let m = std::fs::metadata(path)?;
    if !m.file_type().is_block_device() {
        return Ok(None);
    }
    Ok(Some((libc::major(m.rdev()), libc::minor(m.rdev()))))
}

/// The device a file lives on (`st_dev`): for a swap file, the device holding it.
pub fn file_devnum(path: &Path) -> io::Result<DevNum> {
    let m = std::fs::metadata(path)?;
    Ok((libc::major(m.dev()), libc::minor(m.dev())))
}

/// `umount2(target, 0)` (umount(2)): detach the filesystem mounted at `target`. Fails
/// with EBUSY while files on it are open; no lazy detach (`MNT_DETACH`) is attempted, as
/// the device would stay in use by whoever holds those files.
pub fn umount(target: &Path) -> io::Result<()> {
    let c = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    loop {
        // SAFETY: plain syscall with a NUL-terminated path.
        if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub use sparsekit_io::sys::open_direct;
