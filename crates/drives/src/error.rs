use std::fmt;
use std::path::{Path, PathBuf};

use sparsekit_io::{ErrorInfo, IoError};

/// Everything that can go wrong while listing drives or checking and opening a
/// destination.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An OS call failed (open, stat, umount2, an ioctl, ...). Code `ERR_SPARSEKIT_IO`
    /// (from JavaScript: the errno name).
    Io(IoError),
    /// The destination holds the running system (the root or boot filesystem, swap, or
    /// a device-mapper / md / LVM member); refused unless forced. Code
    /// `ERR_SPARSEKIT_SYSTEM_DRIVE`.
    SystemDrive {
        /// The destination.
        path: PathBuf,
        /// Why it counts as a system drive.
        reason: String,
    },
    /// The destination (or one of its partitions) is mounted or held by another user;
    /// refused unless forced or unmounted first. Code `ERR_SPARSEKIT_DRIVE_BUSY`.
    DriveBusy {
        /// The destination.
        path: PathBuf,
        /// What holds it (mount points, or the failed exclusive open).
        reason: String,
        /// The errno, when an OS call said so (EBUSY from umount2 or open).
        errno: Option<i32>,
    },
    /// Something this crate does not do on this OS (listing drives on an OS without a
    /// listing, writing a device path it does not recognise). Code
    /// `ERR_SPARSEKIT_UNSUPPORTED`.
    Unsupported {
        /// What is unsupported.
        what: String,
    },
}

impl ErrorInfo for Error {
    /// A stable code: `ERR_SPARSEKIT_IO`, `ERR_SPARSEKIT_SYSTEM_DRIVE`,
    /// `ERR_SPARSEKIT_DRIVE_BUSY`, `ERR_SPARSEKIT_UNSUPPORTED`.
    fn code(&self) -> &'static str {
        match self {
            Error::Io(_) => "ERR_SPARSEKIT_IO",
            Error::SystemDrive { .. } => "ERR_SPARSEKIT_SYSTEM_DRIVE",
            Error::DriveBusy { .. } => "ERR_SPARSEKIT_DRIVE_BUSY",
            Error::Unsupported { .. } => "ERR_SPARSEKIT_UNSUPPORTED",
        }
    }

    /// The errno, for OS errors (and EBUSY of a busy drive).
    fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            Error::DriveBusy { errno, .. } => *errno,
            _ => None,
        }
    }

    /// The system call that failed, for OS errors.
    fn syscall(&self) -> Option<&'static str> {
        match self {
            Error::Io(e) => e.syscall(),
            _ => None,
        }
    }

    /// The file or device the error is about.
    fn path(&self) -> Option<&Path> {
        match self {
            Error::Io(e) => e.path.as_deref(),
            Error::SystemDrive { path, .. } | Error::DriveBusy { path, .. } => Some(path),
            Error::Unsupported { .. } => None,
        }
    }

    /// The byte offset the error is about.
    fn offset(&self) -> Option<u64> {
        match self {
            Error::Io(e) => e.offset,
            _ => None,
        }
    }

    /// The byte range at fault as `(start, length)`: none for these errors.
    fn range(&self) -> Option<(u64, u64)> {
        None
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => e.fmt(f),
            Error::SystemDrive { path, reason } => write!(
                f,
                "refusing to write '{}': it is a system drive ({reason}); pass force to override",
                path.display()
            ),
            Error::DriveBusy { path, reason, .. } => write!(
                f,
                "refusing to write '{}': it is in use ({reason}); unmount it first \
                 (unmount: true) or pass force to override",
                path.display()
            ),
            Error::Unsupported { what } => write!(f, "unsupported: {what}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<IoError> for Error {
    fn from(e: IoError) -> Self {
        Error::Io(e)
    }
}

/// Result of this crate's functions.
pub type Result<T> = std::result::Result<T, Error>;
