use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while hashing.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An OS call failed on `path` (at `offset`, when reading).
    Io {
        /// The OS error; `raw_os_error()` holds the errno.
        source: io::Error,
        /// The file being hashed.
        path: PathBuf,
        /// The byte offset of the failed read, if the failure was a read.
        offset: Option<u64>,
        /// What was being done: `open`, `stat`, `read`.
        op: &'static str,
    },
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

impl Error {
    /// The errno of the failed OS call, if this error is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            Error::IsADirectory(_) => Some(libc_eisdir()),
            Error::Extents(e) => e.raw_os_error(),
            _ => None,
        }
    }

    /// A stable code for errors that are not OS errors (`ERR_SPARSEKIT_*`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Io { .. } | Error::IsADirectory(_) => "ERR_SPARSEKIT_IO",
            Error::OutOfRange { .. } => "ERR_SPARSEKIT_OUT_OF_RANGE",
            Error::ShortRead { .. } => "ERR_SPARSEKIT_SHORT_READ",
            Error::UnknownAlgorithm(_) => "ERR_SPARSEKIT_INVALID_ARG",
            Error::Aborted => "ERR_SPARSEKIT_ABORTED",
            Error::Extents(e) => e.code(),
        }
    }

    /// The file the error is about.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Error::Io { path, .. }
            | Error::IsADirectory(path)
            | Error::OutOfRange { path, .. }
            | Error::ShortRead { path, .. } => Some(path),
            Error::Extents(e) => e.path(),
            _ => None,
        }
    }

    /// The byte offset the error is about.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Error::Io { offset, .. } => *offset,
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
            Error::Io {
                source,
                path,
                offset: Some(o),
                op,
            } => {
                write!(f, "{op} '{}' at offset {o}: {source}", path.display())
            }
            Error::Io {
                source,
                path,
                offset: None,
                op,
            } => {
                write!(f, "{op} '{}': {source}", path.display())
            }
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
            Error::Io { source, .. } => Some(source),
            Error::Extents(e) => Some(e),
            _ => None,
        }
    }
}
