use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use sparsekit_io::{ErrorInfo, IoError, Quoted};

use crate::Method;

/// Everything that can go wrong while mapping a file.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An OS call failed (`open`, `stat`, `lseek`, `ioctl(FS_IOC_FIEMAP)`, ...); its path is
    /// `None` when only a [`std::fs::File`] was given.
    Io(IoError),
    /// The path names a directory (`raw_os_error()` is EISDIR).
    IsADirectory {
        /// The directory.
        path: Option<PathBuf>,
    },
    /// The file is neither a regular file nor a block device (a pipe, a socket, ...).
    NotAFile {
        /// The file.
        path: Option<PathBuf>,
        /// What it is instead (`fifo`, `socket`, `character device`).
        kind: &'static str,
    },
    /// The forced method does not work on this file.
    Unsupported {
        /// The method that was asked for.
        method: Method,
        /// The file.
        path: Option<PathBuf>,
        /// The kernel's answer, when it gave one (`None` when the method was detected to be
        /// a stub, like a SEEK_HOLE that always returns end of file).
        source: Option<io::Error>,
    },
    /// `start` lies past the end of the file.
    OutOfRange {
        /// The file.
        path: Option<PathBuf>,
        /// Requested start.
        start: u64,
        /// The file's size.
        size: u64,
    },
    /// A bad argument value (an unknown method name, a zero block size).
    InvalidArg {
        /// The argument's name.
        name: &'static str,
        /// The value given.
        value: String,
    },
    /// The caller cancelled the mapping (checked between FIEMAP batches and lseek steps).
    Aborted,
}

impl Error {
    /// Attach `path` to an error raised by [`map_file`](crate::map_file) or
    /// [`file_size`](crate::file_size), which only see a [`std::fs::File`].
    pub fn with_path(mut self, p: &Path) -> Self {
        match &mut self {
            Error::Io(e) => {
                if e.path.is_none() {
                    e.path = Some(p.to_path_buf())
                }
            }
            Error::IsADirectory { path }
            | Error::NotAFile { path, .. }
            | Error::Unsupported { path, .. }
            | Error::OutOfRange { path, .. } => *path = Some(p.to_path_buf()),
            Error::InvalidArg { .. } | Error::Aborted => {}
        }
        self
    }
}

impl ErrorInfo for Error {
    /// The errno of the failed OS call, if this error is one (for [`Error::Unsupported`]:
    /// the errno the kernel refused the method with).
    fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            Error::Unsupported { source, .. } => source.as_ref().and_then(|e| e.raw_os_error()),
            Error::IsADirectory { .. } => Some(sparsekit_io::errno::EISDIR),
            _ => None,
        }
    }

    /// A stable code: `ERR_SPARSEKIT_IO` for OS errors, `ERR_SPARSEKIT_*` for the others.
    fn code(&self) -> &'static str {
        match self {
            Error::Io { .. } | Error::IsADirectory { .. } => "ERR_SPARSEKIT_IO",
            Error::NotAFile { .. } => "ERR_SPARSEKIT_NOT_A_FILE",
            Error::InvalidArg { .. } => "ERR_INVALID_ARG_VALUE",
            Error::Unsupported { .. } => "ERR_SPARSEKIT_UNSUPPORTED",
            Error::Aborted => "ERR_SPARSEKIT_ABORTED",
            Error::OutOfRange { .. } => "ERR_SPARSEKIT_OUT_OF_RANGE",
        }
    }

    /// The file the error is about.
    fn path(&self) -> Option<&Path> {
        match self {
            Error::Io(e) => e.path.as_deref(),
            Error::IsADirectory { path }
            | Error::NotAFile { path, .. }
            | Error::Unsupported { path, .. }
            | Error::OutOfRange { path, .. } => path.as_deref(),
            Error::InvalidArg { .. } | Error::Aborted => None,
        }
    }

    /// The byte offset the error is about.
    fn offset(&self) -> Option<u64> {
        match self {
            Error::Io(e) => e.offset,
            Error::OutOfRange { start, .. } => Some(*start),
            _ => None,
        }
    }

    /// The byte range at fault (`start`, `length`), for a window past the end.
    fn range(&self) -> Option<(u64, u64)> {
        match self {
            Error::OutOfRange { start, .. } => Some((*start, 0)),
            _ => None,
        }
    }

    /// The system call that failed, for OS errors (`ioctl` for FIEMAP, `lseek`, ...).
    fn syscall(&self) -> Option<&'static str> {
        match self {
            Error::Io(e) => e.syscall(),
            Error::Unsupported {
                source: Some(_),
                method,
                ..
            } => Some(match method {
                Method::Seek => "lseek",
                _ => "ioctl",
            }),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => e.fmt(f),
            Error::IsADirectory { path } => {
                write!(f, "{} is a directory, not a file", Quoted(path))
            }
            Error::NotAFile { path, kind } => {
                write!(
                    f,
                    "{} is a {kind}, not a regular file or block device",
                    Quoted(path)
                )
            }
            Error::Unsupported {
                method,
                path,
                source: Some(e),
            } => write!(
                f,
                "extent mapping method '{}' is not supported for {}: {e}",
                method.name(),
                Quoted(path)
            ),
            Error::Unsupported {
                method,
                path,
                source: None,
            } => write!(
                f,
                "extent mapping method '{}' is not supported for {} (the filesystem only \
                 implements a stub)",
                method.name(),
                Quoted(path)
            ),
            Error::OutOfRange { path, start, size } => {
                write!(
                    f,
                    "start {start} lies past the end of {} (size {size})",
                    Quoted(path)
                )
            }
            Error::InvalidArg { name, value } => write!(f, "invalid {name} '{value}'"),
            Error::Aborted => f.write_str("the operation was aborted"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Unsupported {
                source: Some(e), ..
            } => Some(e),
            _ => None,
        }
    }
}
