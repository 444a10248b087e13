//! The macOS side of this crate's `sys` module (the Linux one is sys.rs): drive listing
//! (macos_drives.rs; the logic that uses them is [`crate::macos`]), device numbers, unmounting
//! and the writer's raw-disk handle, following Apple's headers.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// A device number as `(major, minor)`.
pub type DevNum = (u32, u32);

/// `major()`/`minor()` of sys/types.h: 8 bits of major above 24 bits of minor.
fn split(dev: u64) -> DevNum {
    (((dev >> 24) & 0xff) as u32, (dev & 0x00ff_ffff) as u32)
}

/// The device number a block-device node names (`st_rdev`), or `None` for anything else.
pub fn block_devnum(path: &Path) -> io::Result<Option<DevNum>> {
    let m = std::fs::metadata(path)?;
    if !m.file_type().is_block_device() {
        return Ok(None);
    }
    Ok(Some(split(m.rdev())))
}

/// The device a file lives on (`st_dev`).
pub fn file_devnum(path: &Path) -> io::Result<DevNum> {
    Ok(split(std::fs::metadata(path)?.dev()))
}

/// `unmount(target, 0)` (sys/mount.h): detach the file system mounted at `target`; EBUSY
/// while files on it are open (no `MNT_FORCE`).
pub fn umount(target: &Path) -> io::Result<()> {
    let c = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    loop {
        // SAFETY: plain syscall with a NUL-terminated path.
        if unsafe { libc::unmount(c.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[path = "macos_drives.rs"]
mod drives_os;
pub use drives_os::*;

pub use sparsekit_io::sys::open_direct;
