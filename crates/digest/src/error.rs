use std::fmt;
use std::path::PathBuf;

use sparsekit_io::{ErrorInfo, IoError};

/// Everything that can go wrong while hashing.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An OS call failed (`open`, `stat`, `read`, `poll`), with its path and offset.
    Io(IoError),
    /// The path names something that cannot be hashed as a byte stream (a directory).
    IsADirectory(PathBuf),
    /// `start + length` runs past the end of the file.
    OutOfRange {
        /// The file.
        path: PathBuf,
        /// Requested start.
        start: u64,
        /// Requested length.
        length: u64,
        /// The file's size.
        size: u64,
    },
    /// The file ended (shrank) before the window was fully read.
    ShortRead {
        /// The file.
        path: PathBuf,
        /// Where the read returned end of file.
        offset: u64,
    },
    /// The algorithm name is not one of `sha256`, `sha1`, `sha3-512`, `blake3`.
    UnknownAlgorithm(String),
    /// Sizing a block device failed.
    Extents(sparsekit_extents::Error),
    /// The progress callback asked to stop.
    Aborted,
}

impl ErrorInfo for Error {
    /// The errno of the failed OS call, if this error is one.
    fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            Error::IsADirectory(_) => Some(libc_eisdir()),
            Error::Extents(e) => e.raw_os_error(),
            _ => None,
        }
    }

    /// A stable code for errors that are not OS errors (`ERR_SPARSEKIT_*`).
    fn code(&self) -> &'static str {
        match self {
            Error::Io { .. } | Error::IsADirectory(_) => "ERR_SPARSEKIT_IO",
            Error::OutOfRange { .. } => "ERR_SPARSEKIT_OUT_OF_RANGE",
            Error::ShortRead { .. } => "ERR_SPARSEKIT_SHORT_READ",
            Error::UnknownAlgorithm(_) => "ERR_INVALID_ARG_VALUE",
            Error::Aborted => "ERR_SPARSEKIT_ABORTED",
            Error::Extents(e) => e.code(),
        }
    }

    /// The file the error is about.
    fn path(&self) -> Option<&std::path::Path> {
        match self {
            Error::Io(e) => e.path.as_deref(),
            Error::IsADirectory(path)
            | Error::OutOfRange { path, .. }
            | Error::ShortRead { path, .. } => Some(path),
            Error::Extents(e) => e.path(),
            _ => None,
        }
    }

    /// The byte range at fault: the requested window of an [`Error::OutOfRange`].
    fn range(&self) -> Option<(u64, u64)> {
        match self {
            Error::OutOfRange { start, length, .. } => Some((*start, *length)),
            _ => None,
        }
    }

    /// The system call that failed, for OS errors.
    fn syscall(&self) -> Option<&'static str> {
        match self {
            Error::Io(e) => e.syscall(),
            Error::Extents(e) => e.syscall(),
            Error::IsADirectory(_) => Some("read"),
            _ => None,
        }
    }

    /// The byte offset the error is about.
    fn offset(&self) -> Option<u64> {
        match self {
            Error::Io(e) => e.offset,
            Error::ShortRead { offset, .. } => Some(*offset),
            Error::OutOfRange { start, .. } => Some(*start),
            _ => None,
        }
    }
}

// EISDIR is 21 on every Linux architecture (asm-generic/errno-base.h).
fn libc_eisdir() -> i32 {
    21
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => e.fmt(f),
            Error::IsADirectory(p) => write!(f, "'{}' is a directory, not a file", p.display()),
            Error::OutOfRange {
                path,
                start,
                length,
                size,
            } => write!(
                f,
                "range start {start} length {length} runs past the end of '{}' (size {size})",
                path.display()
            ),
            Error::ShortRead { path, offset } => write!(
                f,
                "'{}' ended at offset {offset} while it was being read (file shrank?)",
                path.display()
            ),
            Error::UnknownAlgorithm(a) => write!(
                f,
                "unknown algorithm '{a}' (expected sha256, sha1, sha3-512 or blake3)"
            ),
            Error::Aborted => f.write_str("the operation was aborted"),
            Error::Extents(e) => e.fmt(f),
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
