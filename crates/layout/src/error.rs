use std::fmt;
use std::path::PathBuf;

use sparsekit_io::{Aborted, ErrorInfo, IoError};

/// What went wrong reading a layout. Every variant has a stable code ([`Error::code`]).
///
/// A file system that fails a check does not fail [`crate::layout`]: its partition is
/// reported all used with [`crate::State::Unknown`] (or [`crate::State::Dirty`]) and the
/// reason. Errors are for what makes the whole device unreadable: an I/O error, a broken
/// partition table (an EBR loop, overlapping partitions, a partition past the end of the
/// device), cancellation.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An OS call failed.
    Io(IoError),
    /// Mapping an image file's allocated extents failed.
    Extents(sparsekit_extents::Error),
    /// A structure on the device is inconsistent: `ERR_SPARSEKIT_LAYOUT_CORRUPT`.
    Corrupt {
        /// The device or image, when known.
        path: Option<PathBuf>,
        /// The structure at fault: `MBR`, `EBR`, `GPT header`, `ext4 group descriptor`, ...
        structure: &'static str,
        /// The byte offset of that structure on the device.
        offset: u64,
        /// What is wrong, quoting the bad values.
        detail: String,
    },
    /// A structure uses something this reader does not understand (a feature flag, a
    /// sector size): `ERR_SPARSEKIT_LAYOUT_UNSUPPORTED`.
    Unsupported {
        /// The device or image, when known.
        path: Option<PathBuf>,
        /// The structure.
        structure: &'static str,
        /// The byte offset of that structure on the device.
        offset: u64,
        /// What is not supported.
        detail: String,
    },
    /// A file system is marked dirty or needs journal recovery, so its allocation
    /// metadata may be stale: `ERR_SPARSEKIT_LAYOUT_DIRTY`. [`crate::layout`] reports such a
    /// partition all used; operations that would free its blocks fail with this.
    Dirty {
        /// The device or image, when known.
        path: Option<PathBuf>,
        /// The file system (`ext4`, `ntfs`, ...).
        filesystem: &'static str,
        /// The byte offset of the partition.
        offset: u64,
        /// Why it is dirty.
        detail: String,
    },
    /// The image or device is in use (attached to a loop device, mounted, claimed):
    /// `ERR_SPARSEKIT_LAYOUT_BUSY`. Nothing was written.
    Busy {
        /// The image or device.
        path: Option<PathBuf>,
        /// Who holds it.
        detail: String,
    },
    /// The operation is not done on this kind of target without being asked (a block
    /// device without `discard`): `ERR_SPARSEKIT_LAYOUT_REFUSED`. Nothing was written.
    Refused {
        /// The image or device.
        path: Option<PathBuf>,
        /// Why.
        detail: String,
    },
    /// Cancelled: `ERR_SPARSEKIT_ABORTED`.
    Aborted,
}

impl Error {
    /// The stable code: `ERR_SPARSEKIT_IO` for an OS failure (the addon reports the
    /// errno's name, such as `ENOENT`), otherwise `ERR_SPARSEKIT_LAYOUT_CORRUPT`,
    /// `ERR_SPARSEKIT_LAYOUT_UNSUPPORTED`, `ERR_SPARSEKIT_LAYOUT_DIRTY` or
    /// `ERR_SPARSEKIT_ABORTED`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Io(_) => "ERR_SPARSEKIT_IO",
            Error::Extents(e) => e.code(),
            Error::Corrupt { .. } => "ERR_SPARSEKIT_LAYOUT_CORRUPT",
            Error::Unsupported { .. } => "ERR_SPARSEKIT_LAYOUT_UNSUPPORTED",
            Error::Dirty { .. } => "ERR_SPARSEKIT_LAYOUT_DIRTY",
            Error::Busy { .. } => "ERR_SPARSEKIT_LAYOUT_BUSY",
            Error::Refused { .. } => "ERR_SPARSEKIT_LAYOUT_REFUSED",
            Error::Aborted => "ERR_SPARSEKIT_ABORTED",
        }
    }

    /// The byte range at fault (only extent-mapping errors have one).
    pub fn range(&self) -> Option<(u64, u64)> {
        match self {
            Error::Extents(e) => e.range(),
            _ => None,
        }
    }

    /// The errno of an OS error.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            Error::Extents(e) => e.raw_os_error(),
            _ => None,
        }
    }

    /// The path the error is about.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Error::Io(e) => e.path.as_deref(),
            Error::Extents(e) => e.path(),
            Error::Corrupt { path, .. }
            | Error::Unsupported { path, .. }
            | Error::Dirty { path, .. }
            | Error::Busy { path, .. }
            | Error::Refused { path, .. } => path.as_deref(),
            Error::Aborted => None,
        }
    }

    /// The byte offset the error is about.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::Io(e) => e.offset,
            Error::Extents(e) => e.offset(),
            Error::Corrupt { offset, .. }
            | Error::Unsupported { offset, .. }
            | Error::Dirty { offset, .. } => Some(*offset),
            Error::Busy { .. } | Error::Refused { .. } | Error::Aborted => None,
        }
    }

    /// The failed system call of an OS error.
    pub fn syscall(&self) -> Option<&'static str> {
        match self {
            Error::Io(e) => e.syscall(),
            Error::Extents(e) => e.syscall(),
            _ => None,
        }
    }

    /// Attach the path (kept if one is set).
    pub(crate) fn with_path(mut self, p: Option<&std::path::Path>) -> Self {
        if let Some(p) = p {
            match &mut self {
                Error::Io(e) => {
                    if e.path.is_none() {
                        e.path = Some(p.to_path_buf());
                    }
                }
                Error::Corrupt { path, .. }
                | Error::Unsupported { path, .. }
                | Error::Dirty { path, .. }
                | Error::Busy { path, .. }
                | Error::Refused { path, .. } => {
                    if path.is_none() {
                        *path = Some(p.to_path_buf());
                    }
                }
                Error::Extents(_) | Error::Aborted => {}
            }
        }
        self
    }

    /// Shift the offset of a partition-relative error by the partition's start.
    pub(crate) fn shifted(mut self, by: u64) -> Self {
        match &mut self {
            Error::Io(e) => {
                if let Some(o) = &mut e.offset {
                    *o = o.saturating_add(by);
                }
            }
            Error::Corrupt { offset, .. }
            | Error::Unsupported { offset, .. }
            | Error::Dirty { offset, .. } => *offset = offset.saturating_add(by),
            Error::Extents(_) | Error::Busy { .. } | Error::Refused { .. } | Error::Aborted => {}
        }
        self
    }

    /// The detail for a partition's `reason`.
    pub(crate) fn reason(&self) -> String {
        match self {
            Error::Corrupt {
                structure,
                offset,
                detail,
                ..
            } => format!("{structure} at offset {offset}: {detail}"),
            Error::Unsupported {
                structure, detail, ..
            } => format!("{structure}: unsupported: {detail}"),
            Error::Dirty { detail, .. } => detail.clone(),
            Error::Io(e) if e.is_eof() => format!(
                "the file system extends past the end of its partition or the device (read at offset {})",
                e.offset.unwrap_or(0)
            ),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = |f: &mut fmt::Formatter<'_>, path: &Option<PathBuf>| match path {
            Some(p) => write!(f, " in '{}'", p.display()),
            None => Ok(()),
        };
        match self {
            Error::Io(e) => e.fmt(f),
            Error::Extents(e) => e.fmt(f),
            Error::Corrupt {
                path,
                structure,
                offset,
                detail,
            } => {
                write!(f, "corrupt {structure} at offset {offset}")?;
                place(f, path)?;
                write!(f, ": {detail}")
            }
            Error::Unsupported {
                path,
                structure,
                offset,
                detail,
            } => {
                write!(f, "unsupported {structure} at offset {offset}")?;
                place(f, path)?;
                write!(f, ": {detail}")
            }
            Error::Dirty {
                path,
                filesystem,
                offset,
                detail,
            } => {
                write!(f, "{filesystem} file system at offset {offset}")?;
                place(f, path)?;
                write!(f, " is not clean: {detail}")
            }
            Error::Busy { path, detail } | Error::Refused { path, detail } => {
                if let Some(p) = path {
                    write!(f, "'{}': ", p.display())?
                }
                f.write_str(detail)
            }
            Error::Aborted => f.write_str("the operation was aborted"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Extents(e) => Some(e),
            _ => None,
        }
    }
}

/// The contract the addon turns into JS errors (the inherent methods above, so callers
/// need no trait import).
impl ErrorInfo for Error {
    fn code(&self) -> &'static str {
        Error::code(self)
    }
    fn raw_os_error(&self) -> Option<i32> {
        Error::raw_os_error(self)
    }
    fn path(&self) -> Option<&std::path::Path> {
        Error::path(self)
    }
    fn offset(&self) -> Option<u64> {
        Error::offset(self)
    }
    fn syscall(&self) -> Option<&'static str> {
        Error::syscall(self)
    }
    fn range(&self) -> Option<(u64, u64)> {
        Error::range(self)
    }
}

impl From<IoError> for Error {
    fn from(e: IoError) -> Self {
        Error::Io(e)
    }
}

impl From<Aborted> for Error {
    fn from(_: Aborted) -> Self {
        Error::Aborted
    }
}

/// A [`Error::Corrupt`] without a path.
pub(crate) fn corrupt(structure: &'static str, offset: u64, detail: impl Into<String>) -> Error {
    Error::Corrupt {
        path: None,
        structure,
        offset,
        detail: detail.into(),
    }
}

/// A [`Error::Unsupported`] without a path.
pub(crate) fn unsupported(
    structure: &'static str,
    offset: u64,
    detail: impl Into<String>,
) -> Error {
    Error::Unsupported {
        path: None,
        structure,
        offset,
        detail: detail.into(),
    }
}

/// A [`Error::Dirty`] without a path.
#[allow(dead_code)]
pub(crate) fn dirty(filesystem: &'static str, detail: impl Into<String>) -> Error {
    Error::Dirty {
        path: None,
        filesystem,
        offset: 0,
        detail: detail.into(),
    }
}
