use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use sparsekit_io::{ErrorInfo, IoError};

use crate::CopyMethod;

/// Everything that can go wrong while copying.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An OS call failed (`open`, `stat`, `copy_file_range`, `write`, `ftruncate`, ...) on
    /// the source or the destination, at an offset when it was a transfer.
    Io(IoError),
    /// A source or destination path names a directory (`raw_os_error()` is EISDIR).
    IsADirectory(PathBuf),
    /// The source is neither a regular file nor a block device, or the destination is
    /// neither a regular file (or a new one) nor a block device.
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is instead (`fifo`, `socket`, `character device`).
        kind: &'static str,
    },
    /// Source and destination are the same file: copying would destroy it.
    SameFile {
        /// The source path.
        src: PathBuf,
        /// The destination path (a hard link, symlink, the same name, or a loop device
        /// backed by the source).
        dst: PathBuf,
    },
    /// The copy would end past `limit` in the destination (callers that can only represent
    /// offsets up to a bound, like JavaScript numbers, set it); nothing was written.
    TooLarge {
        /// Where the copy would end.
        end: u64,
        /// The largest end allowed.
        limit: u64,
    },
    /// A forced copy method was refused by the kernel.
    Unsupported {
        /// The method that was asked for.
        method: CopyMethod,
        /// The destination.
        path: PathBuf,
        /// Where in the destination the refused call would have written.
        offset: u64,
        /// The kernel's error (`None` when `copy_file_range` copied 0 bytes of a file that
        /// was not at its end: the file only pretends to support it).
        source: Option<io::Error>,
    },
    /// The destination block device is smaller than `seek + length`: code
    /// `ERR_SPARSEKIT_DEST_TOO_SMALL`, as flash and bmap copy say it.
    OutOfRange {
        /// The destination device.
        path: PathBuf,
        /// Where the copy would start writing (`seek`).
        start: u64,
        /// Bytes to write.
        length: u64,
        /// The device's size.
        size: u64,
    },
    /// The source ended (shrank) before the planned bytes were read.
    ShortRead {
        /// The source.
        path: PathBuf,
        /// Where the read found end of file.
        offset: u64,
    },
    /// A bad option value (an unknown method name).
    InvalidArg {
        /// The option's name.
        name: &'static str,
        /// The value given.
        value: String,
    },
    /// Mapping the source's extents failed.
    Extents(sparsekit_extents::Error),
    /// The progress callback asked to stop. The destination is left partly written.
    Aborted,
}

impl ErrorInfo for Error {
    /// The errno of the failed OS call, if this error is one (for [`Error::Unsupported`]:
    /// the errno the kernel refused the method with).
    fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            Error::Unsupported { source, .. } => source.as_ref().and_then(|e| e.raw_os_error()),
            Error::IsADirectory(_) => Some(sparsekit_io::errno::EISDIR),
            Error::Extents(e) => e.raw_os_error(),
            _ => None,
        }
    }

    /// A stable code: `ERR_SPARSEKIT_IO` for OS errors, `ERR_SPARSEKIT_*` for the others.
    fn code(&self) -> &'static str {
        match self {
            Error::Io { .. } | Error::IsADirectory(_) => "ERR_SPARSEKIT_IO",
            Error::NotAFile { .. } => "ERR_SPARSEKIT_NOT_A_FILE",
            Error::SameFile { .. } => "ERR_SPARSEKIT_SAME_FILE",
            Error::InvalidArg { .. } => "ERR_INVALID_ARG_VALUE",
            Error::TooLarge { .. } => "ERR_OUT_OF_RANGE",
            Error::Unsupported { .. } => "ERR_SPARSEKIT_UNSUPPORTED",
            Error::OutOfRange { .. } => "ERR_SPARSEKIT_DEST_TOO_SMALL",
            Error::ShortRead { .. } => "ERR_SPARSEKIT_SHORT_READ",
            Error::Extents(e) => e.code(),
            Error::Aborted => "ERR_SPARSEKIT_ABORTED",
        }
    }

    /// The file the error is about.
    fn path(&self) -> Option<&Path> {
        match self {
            Error::Io(e) => e.path.as_deref(),
            Error::IsADirectory(path)
            | Error::NotAFile { path, .. }
            | Error::Unsupported { path, .. }
            | Error::OutOfRange { path, .. }
            | Error::ShortRead { path, .. } => Some(path),
            Error::SameFile { dst, .. } => Some(dst),
            Error::Extents(e) => e.path(),
            Error::InvalidArg { .. } | Error::TooLarge { .. } | Error::Aborted => None,
        }
    }

    /// The byte range at fault (`start`, `length`): the window that does not fit a device.
    fn range(&self) -> Option<(u64, u64)> {
        match self {
            Error::OutOfRange { start, length, .. } => Some((*start, *length)),
            Error::Extents(e) => e.range(),
            _ => None,
        }
    }

    /// The system call that failed, for OS errors.
    fn syscall(&self) -> Option<&'static str> {
        match self {
            Error::Io(e) => e.syscall(),
            Error::Extents(e) => e.syscall(),
            _ => None,
        }
    }

    /// The byte offset the error is about.
    fn offset(&self) -> Option<u64> {
        match self {
            Error::Io(e) => e.offset,
            Error::Unsupported { offset, .. } => Some(*offset),
            Error::OutOfRange { start, .. } => Some(*start),
            Error::ShortRead { offset, .. } => Some(*offset),
            Error::Extents(e) => e.offset(),
            _ => None,
        }
    }
}

impl From<sparsekit_extents::Error> for Error {
    fn from(e: sparsekit_extents::Error) -> Self {
        Error::Extents(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => e.fmt(f),
            Error::IsADirectory(p) => write!(f, "'{}' is a directory, not a file", p.display()),
            Error::NotAFile { path, kind } => {
                write!(
                    f,
                    "'{}' is a {kind}, not a regular file or block device",
                    path.display()
                )
            }
            Error::SameFile { src, dst } => write!(
                f,
                "source '{}' and destination '{}' are the same file",
                src.display(),
                dst.display()
            ),
            Error::Unsupported {
                method,
                path,
                offset,
                source: Some(e),
            } => write!(
                f,
                "copy method '{}' is not supported for '{}' (at offset {offset}): {e}",
                method.name(),
                path.display()
            ),
            Error::Unsupported {
                method,
                path,
                offset,
                source: None,
            } => write!(
                f,
                "copy method '{}' is not supported for '{}' (it copied 0 bytes at offset {offset})",
                method.name(),
                path.display()
            ),
            Error::OutOfRange {
                path,
                start,
                length,
                size,
            } => write!(
                f,
                "writing {length} bytes at offset {start} runs past the end of '{}' (size {size})",
                path.display()
            ),
            Error::ShortRead { path, offset } => write!(
                f,
                "'{}' ended at offset {offset} while it was being copied (file shrank?)",
                path.display()
            ),
            Error::InvalidArg { name, value } => write!(f, "invalid {name} '{value}'"),
            Error::TooLarge { end, limit } => write!(
                f,
                "the copy would end at offset {end}, past the largest allowed offset {limit}"
            ),
            Error::Extents(e) => e.fmt(f),
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
            Error::Extents(e) => Some(e),
            _ => None,
        }
    }
}
