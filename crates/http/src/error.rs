use std::fmt;
use std::io;
use std::path::Path;

use sparsekit_io::{Aborted, ErrorInfo, IoError};

/// Everything that can go wrong while fetching over HTTP(S).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An OS call failed (`ERR_SPARSEKIT_IO`, or the errno name from JavaScript).
    Io(IoError),
    /// An HTTP(S) request failed: a status other than 200/206, a TLS or connection
    /// failure before any data, a bad URL. Code `ERR_SPARSEKIT_HTTP`.
    Http {
        /// The URL.
        url: String,
        /// The HTTP status, when the server answered.
        status: Option<u16>,
        /// What went wrong.
        message: String,
    },
    /// The connection dropped at `offset` and could not be resumed with range requests
    /// within the allowed retries. Code `ERR_SPARSEKIT_HTTP_INTERRUPTED`.
    HttpInterrupted {
        /// The URL.
        url: String,
        /// Bytes of the body received before the last failure.
        offset: u64,
        /// Attempts made to resume.
        attempts: u32,
        /// The last failure.
        message: String,
    },
    /// The file at `url` changed on the server during the download: a resumed (206)
    /// answer carries another ETag or Last-Modified than the first answer, or a
    /// `Content-Range` with another total size (a server that ignores `If-Range`).
    /// Nothing is spliced from two versions. Code `ERR_SPARSEKIT_HTTP_CHANGED`.
    HttpChanged {
        /// The URL.
        url: String,
        /// Where the download was resumed.
        offset: u64,
        /// How the answers differ.
        message: String,
    },
    /// A server that answers range requests with the whole file (status 200), where the
    /// file has to be read at offsets ([`crate::HttpStorage`]). Code
    /// `ERR_SPARSEKIT_HTTP_NO_RANGES`.
    HttpNoRanges {
        /// The URL.
        url: String,
    },
    /// A `URL.bmap` that is no bmap (an HTML page, binary data, too large), or one that
    /// does not parse: the bmap crate's error and code.
    Bmap(sparsekit_bmap::Error),
    /// Something this crate does not do (a SOCKS proxy). Code `ERR_SPARSEKIT_UNSUPPORTED`.
    Unsupported {
        /// What is unsupported.
        what: String,
    },
    /// A bad argument (a CA that is no PEM certificate, a malformed proxy variable).
    /// Code `ERR_SPARSEKIT_INVALID_ARG`.
    InvalidArg {
        /// The argument.
        name: &'static str,
        /// Its value or what is wrong with it.
        value: String,
    },
    /// Cancelled through the [`sparsekit_io::Cancel`] token. Code `ERR_SPARSEKIT_ABORTED`.
    Aborted,
}

impl Error {
    /// The URL of an HTTP failure.
    pub fn url(&self) -> Option<&str> {
        match self {
            Error::Http { url, .. }
            | Error::HttpInterrupted { url, .. }
            | Error::HttpChanged { url, .. }
            | Error::HttpNoRanges { url } => Some(url),
            _ => None,
        }
    }

    /// This error carried inside an `io::Error`, for `Read` implementations (an HTTP
    /// body read under a decompressor); [`Error::from_io`] gets it back.
    pub fn into_io(self) -> io::Error {
        sparsekit_io::carry(io::ErrorKind::Other, self)
    }

    /// Whether `e` carries an [`Error`] ([`Error::into_io`]).
    pub fn is_carried(e: &io::Error) -> bool {
        sparsekit_io::carries::<Error>(e)
    }

    /// The [`Error`] an `io::Error` carries ([`Error::into_io`]), else `e` unchanged.
    pub fn from_io(e: io::Error) -> std::result::Result<Error, io::Error> {
        sparsekit_io::take(e)
    }

    /// The [`Error`] a read error of an [`crate::HttpStorage`] carries, else `e`
    /// unchanged.
    pub fn from_io_error(e: IoError) -> std::result::Result<Error, IoError> {
        if !Self::is_carried(&e.source) {
            return Err(e);
        }
        match Self::from_io(e.source) {
            Ok(err) => Ok(err),
            Err(_) => unreachable!("checked above"),
        }
    }
}

impl ErrorInfo for Error {
    /// A stable code: `ERR_SPARSEKIT_HTTP`, `ERR_SPARSEKIT_HTTP_INTERRUPTED`,
    /// `ERR_SPARSEKIT_HTTP_CHANGED`, `ERR_SPARSEKIT_HTTP_NO_RANGES`, `ERR_SPARSEKIT_IO`,
    /// `ERR_SPARSEKIT_UNSUPPORTED`, `ERR_SPARSEKIT_INVALID_ARG`, `ERR_SPARSEKIT_ABORTED`,
    /// or the bmap crate's codes.
    fn code(&self) -> &'static str {
        match self {
            Error::Io(_) => "ERR_SPARSEKIT_IO",
            Error::Http { .. } => "ERR_SPARSEKIT_HTTP",
            Error::HttpInterrupted { .. } => "ERR_SPARSEKIT_HTTP_INTERRUPTED",
            Error::HttpChanged { .. } => "ERR_SPARSEKIT_HTTP_CHANGED",
            Error::HttpNoRanges { .. } => "ERR_SPARSEKIT_HTTP_NO_RANGES",
            Error::Bmap(e) => e.code(),
            Error::Unsupported { .. } => "ERR_SPARSEKIT_UNSUPPORTED",
            Error::InvalidArg { .. } => "ERR_SPARSEKIT_INVALID_ARG",
            Error::Aborted => "ERR_SPARSEKIT_ABORTED",
        }
    }

    /// The errno, for OS errors.
    fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            Error::Bmap(e) => e.raw_os_error(),
            _ => None,
        }
    }

    /// The system call that failed, for OS errors.
    fn syscall(&self) -> Option<&'static str> {
        match self {
            Error::Io(e) => e.syscall(),
            Error::Bmap(e) => e.syscall(),
            _ => None,
        }
    }

    /// The file the error is about (HTTP errors name their URL: [`Error::url`]).
    fn path(&self) -> Option<&Path> {
        match self {
            Error::Io(e) => e.path.as_deref(),
            Error::Bmap(e) => e.path(),
            _ => None,
        }
    }

    /// The byte offset the error is about (where an HTTP body stopped, for
    /// [`Error::HttpInterrupted`] and [`Error::HttpChanged`]).
    fn offset(&self) -> Option<u64> {
        match self {
            Error::Io(e) => e.offset,
            Error::Bmap(e) => e.offset(),
            Error::HttpInterrupted { offset, .. } | Error::HttpChanged { offset, .. } => {
                Some(*offset)
            }
            _ => None,
        }
    }

    /// The byte range at fault as `(start, length)`.
    fn range(&self) -> Option<(u64, u64)> {
        match self {
            Error::Bmap(e) => e.range(),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => e.fmt(f),
            Error::Http {
                url,
                status: Some(s),
                message,
            } => write!(
                f,
                "HTTP request for '{url}' failed with status {s}: {message}"
            ),
            Error::Http { url, message, .. } => {
                write!(f, "HTTP request for '{url}' failed: {message}")
            }
            Error::HttpInterrupted {
                url,
                offset,
                attempts,
                message,
            } => write!(
                f,
                "download of '{url}' interrupted at byte {offset} and not resumed after \
                 {attempts} attempts: {message}"
            ),
            Error::HttpChanged {
                url,
                offset,
                message,
            } => write!(f, "download of '{url}' stopped at byte {offset}: {message}"),
            Error::HttpNoRanges { url } => write!(
                f,
                "'{url}' has to be read at offsets, but the server does not support range \
                 requests (it answered 'Range: bytes=0-' with the whole file, status 200)"
            ),
            Error::Bmap(e) => e.fmt(f),
            Error::Unsupported { what } => write!(f, "unsupported: {what}"),
            Error::InvalidArg { name, value } => write!(f, "invalid {name}: '{value}'"),
            Error::Aborted => f.write_str("the operation was aborted"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Bmap(e) => Some(e),
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

impl From<Aborted> for Error {
    fn from(_: Aborted) -> Self {
        Error::Aborted
    }
}

/// Result of this crate's functions.
pub type Result<T> = std::result::Result<T, Error>;
