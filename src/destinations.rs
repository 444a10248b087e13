//! The flash engine's destinations, opened through sparsekit-drives: the engine knows no
//! drive, the addon composes the two.

use std::sync::Arc;

use sparsekit_drives::{self as drives, Safety};
use sparsekit_flash::Opener;

/// The flash engine's destinations through sparsekit-drives: the system-drive and
/// mounted-drive refusals (or unmounting), exclusive opens, Windows volumes locked and
/// dismounted, macOS raw nodes. The engine itself knows no drive.
#[derive(Debug)]
pub struct DriveOpener(pub Safety);

impl Opener for DriveOpener {
    fn open(
        &self,
        path: &std::path::Path,
    ) -> sparsekit_flash::Result<Box<dyn sparsekit_bmap::Destination>> {
        drives::open_destination(path, self.0).map_err(|e| match e {
            drives::Error::Io(io) => sparsekit_flash::Error::Io(io),
            e => sparsekit_flash::Error::Refused(Box::new(e)),
        })
    }
    fn open_direct(&self, path: &std::path::Path) -> std::io::Result<std::fs::File> {
        drives::open_direct(path)
    }
    fn eject(&self, path: &std::path::Path) -> sparsekit_flash::Result<()> {
        drives::eject(path).map_err(|e| match e {
            drives::Error::Io(io) => sparsekit_flash::Error::Io(io),
            e => sparsekit_flash::Error::Refused(Box::new(e)),
        })
    }
    fn is_drive(&self, path: &std::path::Path) -> bool {
        drives::is_drive_path(path)
    }
    fn identity(&self, path: &std::path::Path) -> Option<(u64, u64)> {
        // Windows disks are paths std has no metadata for: their number is their identity.
        #[cfg(windows)]
        if let Some(drives::windows::DevicePath::Disk(n)) =
            drives::windows::parse_device_path(&path.to_string_lossy())
        {
            return Some((u64::MAX, u64::from(n)));
        }
        sparsekit_flash::Files::default().identity(path)
    }
}

/// The drive-checking opener with only `createFiles` set (bmap copy).
pub fn drive_opener(create_files: bool) -> Arc<dyn Opener> {
    Arc::new(DriveOpener(Safety {
        create_files,
        ..Safety::default()
    }))
}
