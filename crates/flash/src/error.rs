use std::fmt;
use std::path::{Path, PathBuf};

use sparsekit_io::{Aborted, ErrorInfo, IoError};

/// An error a [`crate::Opener`] refuses a destination with (a system drive, a busy one), kept
/// whole: its code, path and errno reach the caller unchanged ([`Error::Refused`]).
pub trait RefusalError: ErrorInfo + std::error::Error + Send + Sync + 'static {}
impl<T: ErrorInfo + std::error::Error + Send + Sync + 'static> RefusalError for T {}

/// Everything that can go wrong while opening a source or flashing.
///
/// A flash to several destinations returns one of these per failed destination (in its
/// [`crate::DestinationReport`]) and fails as a whole only when the source fails.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An OS call failed (open, read, write, fsync, umount2, ...).
    Io(IoError),
    /// Writing a destination failed, found by a write-back check while flashing (a
    /// failing or removed drive): the failed write lies in `[start, end)`. Code
    /// `ERR_SPARSEKIT_IO` with the errno (EIO, ENOSPC).
    WriteFailed {
        /// The destination.
        path: PathBuf,
        /// First byte that may have failed.
        start: u64,
        /// End of the bytes that may have failed.
        end: u64,
        /// The failed `sync_file_range` (boxed: it keeps the error type small).
        source: Box<IoError>,
    },
    /// A write failed (after [`crate::FlashOptions::write_retries`] retries for EIO,
    /// EBUSY and EAGAIN): the bytes `[start, end)` were not written. Code
    /// `ERR_SPARSEKIT_IO` with the errno.
    Write {
        /// The destination.
        path: PathBuf,
        /// First byte of the failed write.
        start: u64,
        /// End of the failed write.
        end: u64,
        /// How many times it was tried.
        attempts: u32,
        /// The last failure.
        source: Box<IoError>,
    },
    /// The decompressed image's SHA-256 is not the one expected
    /// ([`crate::FlashOptions::sha256`]): no destination's first MiB was written. Code
    /// `ERR_SPARSEKIT_CHECKSUM_MISMATCH`.
    DigestMismatch {
        /// The source.
        source_name: String,
        /// The digest expected (lowercase hex).
        expected: String,
        /// The digest of what streamed.
        actual: String,
    },
    /// A destination does not hold the image ([`crate::verify()`]): the first differing
    /// bytes are `[start, end)` of the destination. Code `ERR_SPARSEKIT_CHECKSUM_MISMATCH`.
    Differs {
        /// The destination.
        path: PathBuf,
        /// First differing byte (on a 4 KiB block boundary).
        start: u64,
        /// End of the first run of differing blocks.
        end: u64,
    },
    /// A drive that holds less than it claims ([`crate::probe_capacity`]: a counterfeit
    /// card or stick), too little for the image. Code `ERR_SPARSEKIT_COUNTERFEIT`.
    Counterfeit {
        /// The drive.
        path: PathBuf,
        /// The size it claims.
        claimed: u64,
        /// The size that holds data.
        real: u64,
        /// What the image needs.
        needed: u64,
    },
    /// A bmap-level failure: a bad bmap, a checksum mismatch in the source, a destination
    /// that is too small (`ERR_SPARSEKIT_DEST_TOO_SMALL`) or that reads back other data
    /// (`ERR_SPARSEKIT_CHECKSUM_MISMATCH`), a stream that does not decompress.
    Bmap(sparsekit_bmap::Error),
    /// Mapping the source image's extents failed.
    Extents(sparsekit_extents::Error),
    /// A destination the [`crate::Opener`] refused, its error kept whole: with the
    /// addon's drive checks a system drive (`ERR_SPARSEKIT_SYSTEM_DRIVE`), a busy one
    /// (`ERR_SPARSEKIT_DRIVE_BUSY`), a device this OS's listing does not know
    /// (`ERR_SPARSEKIT_UNSUPPORTED`).
    Refused(Box<dyn RefusalError>),
    /// An image whose size was not known before writing (an HTTP body without
    /// Content-Length, a compressed stream without a bmap) went past what the destination
    /// holds: a block device's size, or for a regular file the free space of its file
    /// system when writing started. Code `ERR_SPARSEKIT_DEST_TOO_SMALL`.
    DestinationFull {
        /// The destination.
        path: PathBuf,
        /// The end of the data that did not fit.
        needed: u64,
        /// What the destination holds.
        room: u64,
        /// What bounds it ("the device's size", "the free space ...").
        what: &'static str,
    },
    /// An HTTP(S) source failed: `ERR_SPARSEKIT_HTTP`, `ERR_SPARSEKIT_HTTP_INTERRUPTED`,
    /// `ERR_SPARSEKIT_HTTP_CHANGED`, `ERR_SPARSEKIT_HTTP_NO_RANGES`, or a `URL.bmap` that
    /// is no bmap.
    Http(sparsekit_http::Error),
    /// A zip archive that cannot be read, or without the wanted image entry.
    Zip {
        /// The archive.
        path: Option<PathBuf>,
        /// What went wrong.
        message: String,
    },
    /// Something this crate does not do (a zip archive inside a compressed stream).
    Unsupported {
        /// What is unsupported.
        what: String,
    },
    /// Reading the source's layout for [`crate::FlashOptions::trim`] failed (a corrupt
    /// partition table): `ERR_SPARSEKIT_LAYOUT_*`.
    Layout(sparsekit_layout::Error),
    /// [`crate::FlashOptions::trim`] of a source that cannot be read at offsets (a
    /// compressed stream, a deflated zip entry, an HTTP server without range requests):
    /// `ERR_SPARSEKIT_TRIM_UNSUPPORTED`, before anything is written.
    TrimUnsupported {
        /// The source.
        source_name: String,
        /// Why it cannot be trimmed.
        why: String,
    },
    /// A bad argument (no destinations, the same destination twice).
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
    /// The URL of an HTTP failure.
    pub fn url(&self) -> Option<&str> {
        match self {
            Error::Http(e) => e.url(),
            _ => None,
        }
    }

    /// Attach the path of the file the error is about, if none is set.
    pub fn with_path(self, p: &Path) -> Self {
        match self {
            Error::Io(mut e) => {
                if e.path.is_none() {
                    e.path = Some(p.to_path_buf());
                }
                Error::Io(e)
            }
            Error::Bmap(e) => Error::Bmap(e.with_path(p)),
            Error::Zip {
                path: None,
                message,
            } => Error::Zip {
                path: Some(p.to_path_buf()),
                message,
            },
            e => e,
        }
    }
}

impl ErrorInfo for Error {
    /// A stable code: `ERR_SPARSEKIT_IO` for OS errors, `ERR_SPARSEKIT_DEST_TOO_SMALL`,
    /// `ERR_SPARSEKIT_ZIP`, or the drives, http, bmap and extents crates' codes.
    fn code(&self) -> &'static str {
        match self {
            Error::Io(_) | Error::WriteFailed { .. } | Error::Write { .. } => "ERR_SPARSEKIT_IO",
            Error::Counterfeit { .. } => "ERR_SPARSEKIT_COUNTERFEIT",
            Error::DigestMismatch { .. } | Error::Differs { .. } => {
                "ERR_SPARSEKIT_CHECKSUM_MISMATCH"
            }
            Error::Bmap(e) => e.code(),
            Error::Extents(e) => e.code(),
            Error::Refused(e) => e.code(),
            Error::DestinationFull { .. } => "ERR_SPARSEKIT_DEST_TOO_SMALL",
            Error::Http(e) => e.code(),
            Error::Zip { .. } => "ERR_SPARSEKIT_ZIP",
            Error::Unsupported { .. } => "ERR_SPARSEKIT_UNSUPPORTED",
            Error::Layout(e) => e.code(),
            Error::TrimUnsupported { .. } => "ERR_SPARSEKIT_TRIM_UNSUPPORTED",
            Error::InvalidArg { .. } => "ERR_SPARSEKIT_INVALID_ARG",
            Error::Aborted => "ERR_SPARSEKIT_ABORTED",
        }
    }

    /// The errno, for OS errors (and EBUSY of a busy drive).
    fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            Error::WriteFailed { source, .. } | Error::Write { source, .. } => {
                source.raw_os_error()
            }
            Error::Bmap(e) => e.raw_os_error(),
            Error::Extents(e) => e.raw_os_error(),
            Error::Layout(e) => e.raw_os_error(),
            Error::Refused(e) => e.raw_os_error(),
            Error::Http(e) => e.raw_os_error(),
            _ => None,
        }
    }

    /// The system call that failed, for OS errors.
    fn syscall(&self) -> Option<&'static str> {
        match self {
            Error::Io(e) => e.syscall(),
            Error::WriteFailed { source, .. } | Error::Write { source, .. } => source.syscall(),
            Error::Bmap(e) => e.syscall(),
            Error::Refused(e) => e.syscall(),
            Error::Http(e) => e.syscall(),
            _ => None,
        }
    }

    /// The file or device the error is about.
    fn path(&self) -> Option<&Path> {
        match self {
            Error::Io(e) => e.path.as_deref(),
            Error::WriteFailed { path, .. }
            | Error::Write { path, .. }
            | Error::Differs { path, .. }
            | Error::Counterfeit { path, .. } => Some(path),
            Error::Bmap(e) => e.path(),
            Error::Extents(e) => e.path(),
            Error::Layout(e) => e.path(),
            Error::Refused(e) => e.path(),
            Error::Http(e) => e.path(),
            Error::DestinationFull { path, .. } => Some(path),
            Error::Zip { path, .. } => path.as_deref(),
            _ => None,
        }
    }

    /// The byte offset the error is about (where an HTTP body stopped, for
    /// [`sparsekit_http::Error::HttpInterrupted`]).
    fn offset(&self) -> Option<u64> {
        match self {
            Error::Io(e) => e.offset,
            Error::WriteFailed { start, .. }
            | Error::Write { start, .. }
            | Error::Differs { start, .. } => Some(*start),
            Error::Bmap(e) => e.offset(),
            Error::Extents(e) => e.offset(),
            Error::Layout(e) => e.offset(),
            Error::Refused(e) => e.offset(),
            Error::Http(e) => e.offset(),
            _ => None,
        }
    }

    /// The byte range at fault as `(start, length)`.
    fn range(&self) -> Option<(u64, u64)> {
        match self {
            Error::Bmap(e) => e.range(),
            Error::Http(e) => e.range(),
            Error::Refused(e) => e.range(),
            Error::WriteFailed { start, end, .. }
            | Error::Write { start, end, .. }
            | Error::Differs { start, end, .. } => Some((*start, end - start)),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => e.fmt(f),
            Error::WriteFailed {
                path,
                start,
                end,
                source,
            } => write!(
                f,
                "writing '{}' failed between bytes {start} and {end} (found by a write-back \
                 check): {}",
                path.display(),
                source.source
            ),
            Error::Write {
                path,
                start,
                end,
                attempts,
                source,
            } => write!(
                f,
                "writing '{}' failed between bytes {start} and {end}{}: {}",
                path.display(),
                if *attempts > 1 {
                    format!(" ({attempts} attempts)")
                } else {
                    String::new()
                },
                source.source
            ),
            Error::DigestMismatch {
                source_name,
                expected,
                actual,
            } => write!(
                f,
                "the image '{source_name}' has SHA-256 {actual}, not the expected {expected}: \
                 the destinations' first MiB was left as it was"
            ),
            Error::Counterfeit {
                path,
                claimed,
                real,
                needed,
            } => write!(
                f,
                "'{}' claims {claimed} bytes but holds data only up to byte {real} (a counterfeit \
                 card or stick?): the image needs {needed}; nothing was written",
                path.display()
            ),
            Error::Differs { path, start, end } => write!(
                f,
                "'{}' differs from the image between bytes {start} and {end}",
                path.display()
            ),
            Error::Bmap(e) => e.fmt(f),
            Error::Extents(e) => e.fmt(f),
            Error::Refused(e) => e.fmt(f),
            Error::DestinationFull {
                path,
                needed,
                room,
                what,
            } => write!(
                f,
                "destination '{}' is too small: the image, whose size was not known before it \
                 ended, goes on past byte {needed}, beyond {what} ({room} bytes)",
                path.display()
            ),
            Error::Http(e) => e.fmt(f),
            Error::Zip {
                path: Some(p),
                message,
            } => write!(f, "zip archive '{}': {message}", p.display()),
            Error::Zip { message, .. } => write!(f, "zip archive: {message}"),
            Error::Unsupported { what } => write!(f, "unsupported: {what}"),
            Error::Layout(e) => e.fmt(f),
            Error::TrimUnsupported { source_name, why } => write!(
                f,
                "cannot trim '{source_name}': {why}. Free blocks are only known from \
                 file-system metadata spread through the whole image, which must be read at \
                 offsets; flash its bmap instead (one written by `sparsekit backup` beside \
                 the image, or `sparsekit bmap create --fs` of the decompressed image), or \
                 flash without trim: true. Nothing was written"
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
            Error::WriteFailed { source, .. } | Error::Write { source, .. } => {
                Some(source.as_ref())
            }
            Error::Bmap(e) => Some(e),
            Error::Extents(e) => Some(e),
            Error::Layout(e) => Some(e),
            Error::Refused(e) => Some(&**e),
            Error::Http(e) => Some(e),
            _ => None,
        }
    }
}

impl From<IoError> for Error {
    fn from(e: IoError) -> Self {
        Error::Io(e)
    }
}

impl From<sparsekit_bmap::Error> for Error {
    fn from(e: sparsekit_bmap::Error) -> Self {
        match e {
            sparsekit_bmap::Error::Aborted => Error::Aborted,
            sparsekit_bmap::Error::Io(io) => Error::Io(io),
            e => Error::Bmap(e),
        }
    }
}

impl From<sparsekit_extents::Error> for Error {
    fn from(e: sparsekit_extents::Error) -> Self {
        Error::Extents(e)
    }
}

impl From<sparsekit_http::Error> for Error {
    fn from(e: sparsekit_http::Error) -> Self {
        match e {
            sparsekit_http::Error::Aborted => Error::Aborted,
            sparsekit_http::Error::Io(io) => Error::Io(io),
            sparsekit_http::Error::Bmap(b) => Error::from(b),
            e => Error::Http(e),
        }
    }
}

/// The error an [`IoError`] from reading an HTTP source carries
/// ([`sparsekit_http::Error::from_io_error`]), else the `IoError` itself.
pub fn error_of_io(e: IoError) -> Error {
    match sparsekit_http::Error::from_io_error(e) {
        Ok(h) => h.into(),
        Err(io) => Error::Io(io),
    }
}

/// Result of this crate's functions.
pub type Result<T> = std::result::Result<T, Error>;

impl From<Aborted> for Error {
    fn from(_: Aborted) -> Self {
        Error::Aborted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 20: `range()` gave `(start, end)` where `(start, length)` is documented.
    #[test]
    fn write_failed_range_is_start_and_length() {
        let e = Error::WriteFailed {
            path: "/dev/x".into(),
            start: 4096,
            end: 12288,
            source: Box::new(IoError::from_errno(
                "sync_file_range",
                sparsekit_io::errno::EIO,
            )),
        };
        assert_eq!(e.range(), Some((4096, 8192)));
    }
}
