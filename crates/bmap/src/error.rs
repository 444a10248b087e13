use std::fmt;
use std::path::{Path, PathBuf};

use sparsekit_io::{Aborted, ErrorInfo, IoError, Quoted};

/// Everything that can go wrong while reading, writing, creating or flashing with a bmap.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An OS call failed (open, read, write, fsync, ...).
    Io(IoError),
    /// Mapping the image's extents failed.
    Extents(sparsekit_extents::Error),
    /// The bmap file is not a bmap we can trust: malformed XML, a missing or repeated
    /// element, a number that does not parse, counts that disagree, ranges out of order
    /// or past the image, an `ImageSize` above [`crate::MAX_IMAGE_SIZE`] (2^53 - 1).
    /// `line` is 1-based.
    Invalid {
        /// The bmap file, when read from one.
        path: Option<PathBuf>,
        /// The line of the bmap file the problem is on.
        line: u64,
        /// What is wrong, quoting the bad input.
        what: String,
    },
    /// The bmap uses something this crate does not implement (a checksum type other
    /// than sha256 or sha1, a future major version).
    Unsupported {
        /// The bmap file.
        path: Option<PathBuf>,
        /// The line of the bmap file.
        line: u64,
        /// What is unsupported.
        what: String,
    },
    /// `BmapFileChecksum` (or `BmapFileSHA1`) does not match the file's bytes.
    BmapChecksum {
        /// The bmap file.
        path: Option<PathBuf>,
        /// The checksum the file claims.
        expected: String,
        /// The checksum of its bytes.
        actual: String,
    },
    /// A range of the image does not have the checksum the bmap gives for it.
    ChecksumMismatch {
        /// The image.
        path: Option<PathBuf>,
        /// First block of the range.
        first: u64,
        /// Last block of the range (inclusive).
        last: u64,
        /// Byte range `[start, end)` in the image.
        bytes: (u64, u64),
        /// The checksum in the bmap.
        expected: String,
        /// The checksum of the data read.
        actual: String,
    },
    /// Reading the destination back found data other than what was written.
    ReadBackMismatch {
        /// The destination.
        path: Option<PathBuf>,
        /// First block of the first bad range.
        first: u64,
        /// Last block of that range (inclusive).
        last: u64,
        /// Byte range `[start, end)` in the destination.
        bytes: (u64, u64),
    },
    /// The destination (a block device) is smaller than the image.
    DestinationTooSmall {
        /// The destination.
        path: Option<PathBuf>,
        /// Bytes the image needs.
        image_size: u64,
        /// Bytes the destination has.
        dest_size: u64,
    },
    /// The image ends before the data the bmap lists (or before its `ImageSize`).
    ImageTruncated {
        /// The image.
        path: Option<PathBuf>,
        /// Bytes the image has (bytes decompressed, for a compressed image).
        size: u64,
        /// Bytes the bmap needs.
        needed: u64,
    },
    /// A compressed image could not be decompressed (corrupt or truncated stream).
    Decompress {
        /// The image.
        path: Option<PathBuf>,
        /// `gzip`, `xz`, `bzip2` or `zstd`.
        format: &'static str,
        /// Decompressed bytes produced before the failure.
        offset: u64,
        /// The decoder's message.
        message: String,
    },
    /// A bad argument (source and destination are the same file, an unknown checksum name).
    InvalidArg {
        /// The argument.
        name: &'static str,
        /// Its value or what is wrong with it.
        value: String,
    },
    /// Cancelled through the [`sparsekit_io::Cancel`] token.
    Aborted,
}

impl Error {
    /// The bmap line at fault, for [`Error::Invalid`] and [`Error::Unsupported`].
    pub fn line(&self) -> Option<u64> {
        match self {
            Error::Invalid { line, .. } | Error::Unsupported { line, .. } => Some(*line),
            _ => None,
        }
    }

    /// Attach the path of the file the error is about, if none is set.
    pub fn with_path(mut self, p: &Path) -> Self {
        match &mut self {
            Error::Io(e) => {
                if e.path.is_none() {
                    e.path = Some(p.to_path_buf());
                }
            }
            Error::Invalid { path, .. }
            | Error::Unsupported { path, .. }
            | Error::BmapChecksum { path, .. }
            | Error::ChecksumMismatch { path, .. }
            | Error::ReadBackMismatch { path, .. }
            | Error::DestinationTooSmall { path, .. }
            | Error::ImageTruncated { path, .. }
            | Error::Decompress { path, .. } => {
                if path.is_none() {
                    *path = Some(p.to_path_buf());
                }
            }
            Error::Extents(_) | Error::InvalidArg { .. } | Error::Aborted => {}
        }
        self
    }
}

impl ErrorInfo for Error {
    /// A stable code: `ERR_SPARSEKIT_IO` for OS errors, `ERR_SPARSEKIT_BMAP_INVALID` for a
    /// bad bmap file, `ERR_SPARSEKIT_CHECKSUM_MISMATCH` for data (or a bmap file) that does
    /// not match its checksum, and so on.
    fn code(&self) -> &'static str {
        match self {
            Error::Io(_) => "ERR_SPARSEKIT_IO",
            Error::Extents(e) => e.code(),
            Error::Invalid { .. } => "ERR_SPARSEKIT_BMAP_INVALID",
            Error::Unsupported { .. } => "ERR_SPARSEKIT_UNSUPPORTED",
            Error::BmapChecksum { .. }
            | Error::ChecksumMismatch { .. }
            | Error::ReadBackMismatch { .. } => "ERR_SPARSEKIT_CHECKSUM_MISMATCH",
            Error::DestinationTooSmall { .. } => "ERR_SPARSEKIT_DEST_TOO_SMALL",
            Error::ImageTruncated { .. } => "ERR_SPARSEKIT_IMAGE_TRUNCATED",
            Error::Decompress { .. } => "ERR_SPARSEKIT_DECOMPRESS",
            Error::InvalidArg { .. } => "ERR_SPARSEKIT_INVALID_ARG",
            Error::Aborted => "ERR_SPARSEKIT_ABORTED",
        }
    }

    /// The errno, for OS errors.
    fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            Error::Extents(e) => e.raw_os_error(),
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

    /// The file the error is about.
    fn path(&self) -> Option<&Path> {
        match self {
            Error::Io(e) => e.path.as_deref(),
            Error::Extents(e) => e.path(),
            Error::Invalid { path, .. }
            | Error::Unsupported { path, .. }
            | Error::BmapChecksum { path, .. }
            | Error::ChecksumMismatch { path, .. }
            | Error::ReadBackMismatch { path, .. }
            | Error::DestinationTooSmall { path, .. }
            | Error::ImageTruncated { path, .. }
            | Error::Decompress { path, .. } => path.as_deref(),
            Error::InvalidArg { .. } | Error::Aborted => None,
        }
    }

    /// The byte offset the error is about.
    fn offset(&self) -> Option<u64> {
        match self {
            Error::Io(e) => e.offset,
            Error::Extents(e) => e.offset(),
            Error::ChecksumMismatch { bytes, .. } | Error::ReadBackMismatch { bytes, .. } => {
                Some(bytes.0)
            }
            Error::ImageTruncated { size, .. } => Some(*size),
            Error::Decompress { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    /// The byte range at fault as `(start, length)`, for checksum mismatches (JS sees it
    /// as `err.range = { start, length }`).
    fn range(&self) -> Option<(u64, u64)> {
        match self {
            Error::ChecksumMismatch { bytes, .. } | Error::ReadBackMismatch { bytes, .. } => {
                Some((bytes.0, bytes.1 - bytes.0))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => e.fmt(f),
            Error::Extents(e) => e.fmt(f),
            Error::Invalid { path, line, what } => {
                write!(f, "invalid bmap {} line {line}: {what}", Quoted(path))
            }
            Error::Unsupported { path, line, what } => {
                write!(f, "unsupported bmap {} line {line}: {what}", Quoted(path))
            }
            Error::BmapChecksum {
                path,
                expected,
                actual,
            } => write!(
                f,
                "checksum mismatch for bmap file {}: calculated {actual}, should be {expected}",
                Quoted(path)
            ),
            Error::ChecksumMismatch {
                path,
                first,
                last,
                bytes,
                expected,
                actual,
            } => write!(
                f,
                "checksum mismatch for blocks range {first}-{last} (bytes {}-{}) of {}: \
                 calculated {actual}, should be {expected}",
                bytes.0,
                bytes.1,
                Quoted(path)
            ),
            Error::ReadBackMismatch {
                path,
                first,
                last,
                bytes,
            } => write!(
                f,
                "read-back verification failed for blocks range {first}-{last} (bytes {}-{}) \
                 of {}: the destination does not hold what was written",
                bytes.0,
                bytes.1,
                Quoted(path)
            ),
            Error::DestinationTooSmall {
                path,
                image_size,
                dest_size,
            } => write!(
                f,
                "destination {} is too small: the image needs {image_size} bytes, it has {dest_size}",
                Quoted(path)
            ),
            Error::ImageTruncated { path, size, needed } => write!(
                f,
                "image {} ends at byte {size}, but the bmap needs {needed} bytes",
                Quoted(path)
            ),
            Error::Decompress {
                path,
                format,
                offset,
                message,
            } => write!(
                f,
                "cannot decompress {format} image {} after {offset} bytes: {message}",
                Quoted(path)
            ),
            Error::InvalidArg { name, value } => write!(f, "invalid {name}: '{value}'"),
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

impl From<IoError> for Error {
    fn from(e: IoError) -> Self {
        Error::Io(e)
    }
}

impl From<sparsekit_extents::Error> for Error {
    fn from(e: sparsekit_extents::Error) -> Self {
        Error::Extents(e)
    }
}

impl From<Aborted> for Error {
    fn from(_: Aborted) -> Self {
        Error::Aborted
    }
}
