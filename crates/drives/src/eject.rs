//! Ejecting a drive after it was written: on Linux the SCSI layer's `device/delete` in
//! sysfs (USB mass storage, SATA, SCSI: the kernel flushes the device's cache and detaches
//! it, as `udisksctl power-off` does before cutting the port's power); on Windows
//! `IOCTL_STORAGE_EJECT_MEDIA` on the `\\.\PhysicalDriveN` handle, after
//! `FlushFileBuffers` and `IOCTL_STORAGE_MEDIA_REMOVAL` (removal allowed); on macOS
//! `DKIOCEJECT` on the `/dev/rdiskN` node after `DKIOCSYNCHRONIZECACHE`. Drives without
//! it (an SD card in a built-in mmc slot, a loop device, a partition or volume rather than
//! its disk) and other OSes answer [`Error::Unsupported`] with what to do instead.

use std::path::Path;

use crate::error::{Error, Result};
#[cfg_attr(not(target_os = "linux"), allow(unused_imports))]
use crate::linux::Roots;

fn unsupported(path: &Path, why: &str) -> Error {
    Error::Unsupported {
        what: format!("ejecting '{}': {why}", path.display()),
    }
}

/// Flush and eject the whole drive at `path` (see the module's documentation).
pub fn eject(path: &Path) -> Result<()> {
    #[cfg(target_os = "linux")]
    {
        eject_with(path, &Roots::system())
    }
    #[cfg(windows)]
    {
        let n = windows_disk(&path.to_string_lossy()).map_err(|why| unsupported(path, why))?;
        crate::sys::eject_disk(n)
            .map_err(|(op, e)| Error::Io(sparsekit_io::IoError::new(op, e).with_path(path)))
    }
    #[cfg(target_os = "macos")]
    {
        let n = macos_disk(&path.to_string_lossy()).map_err(|why| unsupported(path, why))?;
        let raw = format!("/dev/rdisk{n}");
        crate::sys::eject_disk(Path::new(&raw)).map_err(|(op, e)| {
            Error::Io(sparsekit_io::IoError::new(op, e).with_path(Path::new(&raw)))
        })
    }
    #[cfg(not(any(target_os = "linux", windows, target_os = "macos")))]
    {
        Err(unsupported(path, "not supported on this OS"))
    }
}

/// The disk number Windows ejects for `path`: `\\.\PhysicalDriveN` only (a volume is
/// ejected through its disk); else why not.
pub fn windows_disk(path: &str) -> std::result::Result<u32, &'static str> {
    use crate::windows::{parse_device_path, DevicePath};
    match parse_device_path(path) {
        Some(DevicePath::Disk(n)) => Ok(n),
        Some(DevicePath::Letter(_) | DevicePath::Volume(_)) => {
            Err("a volume; eject its disk (\\\\.\\PhysicalDriveN)")
        }
        Some(DevicePath::Other(_)) | None => Err("not a disk (\\\\.\\PhysicalDriveN)"),
    }
}

/// The disk number macOS ejects for `path`: a whole disk's node (`/dev/diskN` or
/// `/dev/rdiskN`); else why not.
pub fn macos_disk(path: &str) -> std::result::Result<u32, &'static str> {
    match crate::macos::parse_device_path(path) {
        Some((n, slices, _)) if slices.is_empty() => Ok(n),
        Some(_) => Err("a partition; eject the whole disk (/dev/diskN)"),
        None => Err("not a disk node (/dev/diskN)"),
    }
}

/// [`eject`] with the sysfs under `roots` (tests use a fake one).
pub fn eject_with(path: &Path, roots: &Roots) -> Result<()> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unsupported = |why: &str| Err(unsupported(path, why));
    let dir = roots.sys.join("class/block").join(&name);
    if name.is_empty() || !dir.exists() {
        return unsupported("not a block device the kernel lists in sysfs");
    }
    if dir.join("partition").exists() {
        return unsupported("a partition; eject the whole drive");
    }
    if name.starts_with("loop") {
        return unsupported("a loop device has no medium to eject (detach it with losetup -d)");
    }
    let delete = dir.join("device/delete");
    if !delete.exists() {
        return unsupported(
            "the drive has no device/delete in sysfs (an SD card in a built-in slot): \
             remove the card after the flash",
        );
    }
    // The device's own cache first: the kernel's delete syncs too, but an error here is
    // one the caller should see.
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.sync_all();
    }
    std::fs::write(&delete, "1")
        .map_err(|e| Error::Io(sparsekit_io::IoError::new("write", e).with_path(&delete)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsekit_io::ErrorInfo;

    fn roots(dir: &Path) -> Roots {
        Roots {
            sys: dir.join("sys"),
            mountinfo: dir.join("mountinfo"),
            swaps: dir.join("swaps"),
            dev: dir.join("dev"),
        }
    }

    #[test]
    fn usb_drive_deleted_loop_and_partition_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = roots(dir.path());
        std::fs::create_dir_all(dir.path().join("dev")).unwrap();
        for (name, delete, partition) in [
            ("sdz", true, false),
            ("loop9", false, false),
            ("sdz1", false, true),
            ("mmcblk9", false, false),
        ] {
            let d = r.sys.join("class/block").join(name);
            std::fs::create_dir_all(d.join("device")).unwrap();
            if delete {
                std::fs::write(d.join("device/delete"), "").unwrap();
            }
            if partition {
                std::fs::write(d.join("partition"), "1").unwrap();
            }
            std::fs::write(dir.path().join("dev").join(name), "").unwrap();
        }
        let dev = |n: &str| dir.path().join("dev").join(n);
        eject_with(&dev("sdz"), &r).unwrap();
        let written = std::fs::read_to_string(r.sys.join("class/block/sdz/device/delete")).unwrap();
        assert_eq!(written, "1");
        for (n, want) in [
            ("loop9", "loop device"),
            ("sdz1", "partition"),
            ("mmcblk9", "remove the card"),
            ("nope", "not a block device"),
        ] {
            let e = eject_with(&dev(n), &r).unwrap_err();
            assert_eq!(e.code(), "ERR_SPARSEKIT_UNSUPPORTED", "{n}: {e}");
            assert!(e.to_string().contains(want), "{n}: {e}");
        }
    }

    #[test]
    fn windows_and_macos_eject_whole_disks_only() {
        assert_eq!(windows_disk(r"\\.\PhysicalDrive3"), Ok(3));
        assert_eq!(windows_disk(r"\\?\physicaldrive12"), Ok(12));
        assert!(windows_disk(r"\\.\E:").unwrap_err().starts_with("a volume"));
        assert!(windows_disk(r"\\.\CdRom0")
            .unwrap_err()
            .starts_with("not a disk"));
        assert!(windows_disk(r"C:\disk.img").is_err());
        assert_eq!(macos_disk("/dev/disk4"), Ok(4));
        assert_eq!(macos_disk("/dev/rdisk4"), Ok(4));
        assert!(macos_disk("/dev/disk4s1")
            .unwrap_err()
            .starts_with("a partition"));
        assert!(macos_disk("/tmp/disk4")
            .unwrap_err()
            .starts_with("not a disk"));
    }
}
