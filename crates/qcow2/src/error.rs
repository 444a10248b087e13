use std::fmt;
use std::path::{Path, PathBuf};

use sparsekit_io::{Aborted, ErrorInfo, IoError};

/// Everything that can go wrong reading a qcow2 image.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An OS call failed (open, read, write of the conversion target, ...).
    Io(IoError),
    /// The file does not start with the qcow2 magic `QFI\xfb`.
    NotQcow2 {
        /// The file.
        path: Option<PathBuf>,
        /// The first four bytes found.
        magic: u32,
    },
    /// A structure of the image breaks the format's rules (out of bounds, unaligned,
    /// overflowing, inconsistent, a bad compressed stream).
    Corrupt {
        /// The image file.
        path: Option<PathBuf>,
        /// The structure at fault: `header`, `L1 table`, `L2 entry`, `compressed cluster`, ...
        structure: &'static str,
        /// The byte offset in the image file of the structure (or the bad field).
        offset: u64,
        /// The bytes at fault, `(start, length)`, when a range is at fault.
        range: Option<(u64, u64)>,
        /// What is wrong, quoting the bad value.
        detail: String,
    },
    /// A valid image using something this reader refuses (an unknown incompatible feature
    /// bit, a protocol-style backing name, version 1, AES encryption of data ...).
    Unsupported {
        /// The image file.
        path: Option<PathBuf>,
        /// What is not supported, quoting the value.
        detail: String,
    },
    /// The guest data is encrypted: metadata can be read, data cannot.
    Encrypted {
        /// The image file.
        path: Option<PathBuf>,
        /// `aes` or `luks`.
        method: &'static str,
    },
    /// The backing chain cannot be followed: missing format, protocol name, too deep, a loop.
    Backing {
        /// The image naming the backing file.
        path: Option<PathBuf>,
        /// The backing file name as stored.
        name: String,
        /// Why it was refused.
        detail: String,
    },
    /// A guest offset or length outside the virtual disk.
    OutOfRange {
        /// The image file.
        path: Option<PathBuf>,
        /// Requested start.
        start: u64,
        /// Requested length.
        length: u64,
        /// The virtual size.
        size: u64,
    },
    /// The image is in use: another process (a running qemu) holds a conflicting lock.
    Locked {
        /// The image file.
        path: Option<PathBuf>,
        /// Which permission conflicts (`write`, `consistent read`, ...).
        detail: String,
    },
    /// An edit refused because it cannot be done safely (shrinking over allocated data, a
    /// backing name that does not fit in the header cluster, a dirty image, ...).
    Refused {
        /// The image file.
        path: Option<PathBuf>,
        /// Why, quoting the value.
        detail: String,
    },
    /// Cancelled through the operation's `Control`.
    Aborted,
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The same error with `suffix` added to a [`Error::Corrupt`] or [`Error::Refused`]
    /// detail (other errors unchanged).
    pub(crate) fn with_detail_suffix(mut self, suffix: &str) -> Self {
        if let Error::Corrupt { detail, .. } | Error::Refused { detail, .. } = &mut self {
            detail.push_str(suffix);
        }
        self
    }

    pub(crate) fn with_path(mut self, p: Option<&Path>) -> Self {
        let Some(p) = p else { return self };
        match &mut self {
            Error::Io(e) => {
                if e.path.is_none() {
                    e.path = Some(p.to_path_buf());
                }
            }
            Error::NotQcow2 { path, .. }
            | Error::Corrupt { path, .. }
            | Error::Unsupported { path, .. }
            | Error::Encrypted { path, .. }
            | Error::Backing { path, .. }
            | Error::OutOfRange { path, .. }
            | Error::Locked { path, .. }
            | Error::Refused { path, .. } => {
                if path.is_none() {
                    *path = Some(p.to_path_buf());
                }
            }
            Error::Aborted => {}
        }
        self
    }
}

impl ErrorInfo for Error {
    /// The stable code: `ERR_SPARSEKIT_IO` for OS errors, `ERR_SPARSEKIT_QCOW2_*` otherwise.
    fn code(&self) -> &'static str {
        match self {
            Error::Io(_) => "ERR_SPARSEKIT_IO",
            Error::NotQcow2 { .. } => "ERR_SPARSEKIT_QCOW2_FORMAT",
            Error::Corrupt { .. } => "ERR_SPARSEKIT_QCOW2_CORRUPT",
            Error::Unsupported { .. } => "ERR_SPARSEKIT_QCOW2_UNSUPPORTED",
            Error::Encrypted { .. } => "ERR_SPARSEKIT_QCOW2_ENCRYPTED",
            Error::Backing { .. } => "ERR_SPARSEKIT_QCOW2_BACKING",
            Error::OutOfRange { .. } => "ERR_SPARSEKIT_OUT_OF_RANGE",
            Error::Locked { .. } => "ERR_SPARSEKIT_LOCKED",
            Error::Refused { .. } => "ERR_SPARSEKIT_QCOW2_REFUSED",
            Error::Aborted => "ERR_SPARSEKIT_ABORTED",
        }
    }

    /// The errno of a failed OS call.
    fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            _ => None,
        }
    }

    /// The failed system call (`open`, `read`, ...), for OS errors.
    fn syscall(&self) -> Option<&'static str> {
        match self {
            Error::Io(e) => e.syscall(),
            _ => None,
        }
    }

    /// The file the error is about.
    fn path(&self) -> Option<&Path> {
        match self {
            Error::Io(e) => e.path.as_deref(),
            Error::NotQcow2 { path, .. }
            | Error::Corrupt { path, .. }
            | Error::Unsupported { path, .. }
            | Error::Encrypted { path, .. }
            | Error::Backing { path, .. }
            | Error::OutOfRange { path, .. }
            | Error::Locked { path, .. }
            | Error::Refused { path, .. } => path.as_deref(),
            Error::Aborted => None,
        }
    }

    /// The byte offset the error is about (in the image file; in the guest for
    /// [`Error::OutOfRange`]).
    fn offset(&self) -> Option<u64> {
        match self {
            Error::Io(e) => e.offset,
            Error::Corrupt { offset, .. } => Some(*offset),
            Error::OutOfRange { start, .. } => Some(*start),
            _ => None,
        }
    }

    /// The byte range at fault, `(start, length)`.
    fn range(&self) -> Option<(u64, u64)> {
        match self {
            Error::Corrupt { range, .. } => *range,
            Error::OutOfRange { start, length, .. } => Some((*start, *length)),
            _ => None,
        }
    }
}

/// A name from an image or a caller, quoted for a message: `'name'`, or escaped as Rust
/// escapes a string (`"a\0b"`) when it holds control characters (a NUL byte, an escape
/// sequence, a line break) that would garble or forge a terminal's output.
pub(crate) fn quoted(name: &str) -> String {
    if name.chars().any(char::is_control) {
        format!("{name:?}")
    } else {
        format!("'{name}'")
    }
}

/// A [`Error::Corrupt`] without a path yet (the image attaches it).
pub(crate) fn corrupt(structure: &'static str, offset: u64, detail: impl Into<String>) -> Error {
    Error::Corrupt {
        path: None,
        structure,
        offset,
        range: None,
        detail: detail.into(),
    }
}

/// A [`Error::Corrupt`] about a byte range.
pub(crate) fn corrupt_range(
    structure: &'static str,
    offset: u64,
    len: u64,
    detail: impl Into<String>,
) -> Error {
    Error::Corrupt {
        path: None,
        structure,
        offset,
        range: Some((offset, len)),
        detail: detail.into(),
    }
}

/// A [`Error::Refused`] without a path yet.
pub(crate) fn refused(detail: impl Into<String>) -> Error {
    Error::Refused {
        path: None,
        detail: detail.into(),
    }
}

/// A [`Error::Unsupported`] without a path yet.
pub(crate) fn unsupported(detail: impl Into<String>) -> Error {
    Error::Unsupported {
        path: None,
        detail: detail.into(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |p: &Option<PathBuf>| match p {
            Some(p) => format!("'{}'", p.display()),
            None => "the image".to_string(),
        };
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::NotQcow2 { path, magic } => {
                write!(
                    f,
                    "{} is not a qcow2 image (magic {magic:#010x})",
                    name(path)
                )
            }
            Error::Corrupt {
                path,
                structure,
                offset,
                detail,
                ..
            } => write!(
                f,
                "{} is corrupt: {structure} at offset {offset}: {detail}",
                name(path)
            ),
            Error::Unsupported { path, detail } => {
                write!(f, "{} uses an unsupported feature: {detail}", name(path))
            }
            Error::Encrypted { path, method } => write!(
                f,
                "{} is encrypted ({method}): its metadata can be read, its data cannot",
                name(path)
            ),
            Error::Backing {
                path,
                name: n,
                detail,
            } => {
                write!(
                    f,
                    "{}: backing file {} refused: {detail}",
                    name(path),
                    quoted(n)
                )
            }
            Error::OutOfRange {
                path,
                start,
                length,
                size,
            } => write!(
                f,
                "{}: range {start}+{length} is outside the virtual disk of {size} bytes",
                name(path)
            ),
            Error::Locked { path, detail } => write!(
                f,
                "{} is in use by another process (a running qemu?): {detail}",
                name(path)
            ),
            Error::Refused { path, detail } => write!(f, "{}: refused: {detail}", name(path)),
            Error::Aborted => f.write_str("the operation was aborted"),
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

impl From<Aborted> for Error {
    fn from(_: Aborted) -> Self {
        Error::Aborted
    }
}
