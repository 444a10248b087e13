//! How the engine reaches its destinations. It knows no drive and no OS's disk paths: the
//! caller gives it an [`Opener`]. The Node addon passes one built on `sparsekit-drives`
//! (system drives and mounted ones refused, Windows volumes locked, macOS raw nodes);
//! [`Files`] opens regular files and, on Linux, block devices `O_EXCL`, with no checks.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;

use sparsekit_bmap::Destination;
use sparsekit_io::sys::{FileTypeExt, MetadataExt};
use sparsekit_io::{errno, FileStorage};

use crate::error::{Error, Result};

/// Opens destinations for the engine.
pub trait Opener: fmt::Debug + Send + Sync {
    /// Check `path` and open it for writing (the refusal checks come first: nothing is
    /// opened for a refused path).
    fn open(&self, path: &Path) -> Result<Box<dyn Destination>>;

    /// Open `path` for reading or writing past the page cache (`O_DIRECT`, `F_NOCACHE`,
    /// `FILE_FLAG_NO_BUFFERING`), for aligned writes and the read-back.
    fn open_direct(&self, path: &Path) -> io::Result<File> {
        sparsekit_io::sys::open_direct(path)
    }

    /// Whether `path` names a drive that only [`Opener::open`] may open for writing (a
    /// Windows `\\.\PhysicalDriveN`, a macOS disk): `bmap copy` then goes through the
    /// engine instead of the plain copier.
    fn is_drive(&self, _path: &Path) -> bool {
        false
    }

    /// Flush and eject the drive at `path` after a successful flash
    /// ([`crate::FlashOptions::eject`]); the default says it cannot.
    fn eject(&self, path: &Path) -> Result<()> {
        Err(Error::Unsupported {
            what: format!(
                "ejecting '{}' (this opener knows no drives)",
                path.display()
            ),
        })
    }

    /// What makes two paths the same destination (device and inode; a block device's
    /// number), to refuse one given twice or the source itself; `None` when unknown.
    fn identity(&self, path: &Path) -> Option<(u64, u64)> {
        std::fs::metadata(path).ok().map(|m| {
            if m.file_type().is_block_device() {
                (0, m.rdev())
            } else {
                (m.dev(), m.ino())
            }
        })
    }
}

/// Regular files, and block devices opened `O_EXCL` (EBUSY when another user holds one):
/// no system-drive or mount checks. A missing path is `ENOENT` unless `create_files`
/// (never under `/dev`: [`FileStorage::open_destination`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct Files {
    /// Create a destination that does not exist, as a regular file.
    pub create_files: bool,
}

impl Opener for Files {
    fn open(&self, path: &Path) -> Result<Box<dyn Destination>> {
        let is_dev = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
        match FileStorage::open_destination(path, self.create_files, is_dev) {
            Ok(s) => Ok(Box::new(s)),
            Err(e) if is_dev && e.raw_os_error() == Some(errno::EBUSY) => Err(Error::Io(
                e.with_hint("another user holds the device exclusively"),
            )),
            Err(e) => Err(Error::Io(e)),
        }
    }
}
