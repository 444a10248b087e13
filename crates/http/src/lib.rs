//! HTTP(S) sources for sparsekit: read a remote image front to back, or at offsets,
//! surviving dropped connections and refusing to splice two versions of a file.
//!
//! - [`HttpReader`]: a body as a [`std::io::Read`] (never stored in a temporary file)
//!   with bounded retries from the first request on; a dropped connection resumes with a
//!   range request from the byte where it stopped, guarded by `If-Range`, and must come
//!   from the same version of the file ([`Error::HttpChanged`]); a body without
//!   Content-Length cut by a reset is an interruption ([`Error::HttpInterrupted`]).
//! - [`HttpStorage`]: a read-only [`sparsekit_io::Storage`] over range requests, with a
//!   bounded block cache and read-ahead (a qcow2 image, a zip archive's central
//!   directory, a plain image's mapped ranges are read where they are). A server without
//!   range support is refused ([`Error::HttpNoRanges`]).
//! - [`Client`] ([`client_for`]): redirects to http(s) only, proxy variables chosen per
//!   scheme as curl does ([`proxy_for`]), the system CA store plus a caller's CA
//!   ([`HttpOptions::ca_pem`]); cancelling its token shuts its connections down at once.
//! - [`find_bmap`]: `URL.bmap` with a deadline and a size bound.
//!
//! Errors are [`Error`]s; one carried through a `Read` or a [`sparsekit_io::Storage`]
//! (inside an `io::Error` or an [`sparsekit_io::IoError`]) comes back with
//! [`Error::from_io`] and [`Error::from_io_error`].
//!
//! ```
//! use sparsekit_http::{is_url, proxy_for, Error, HttpOptions, HttpStorage};
//! use sparsekit_io::{Cancel, ErrorInfo};
//! assert!(is_url("https://example.com/os.img.xz") && !is_url("/tmp/os.img"));
//! // Nothing listens on port 9 of the loopback address: the open fails, with a code.
//! let opts = HttpOptions { retries: 0, ..HttpOptions::default() };
//! let e = HttpStorage::open("http://127.0.0.1:9/os.img", &opts, Cancel::new()).unwrap_err();
//! assert!(matches!(e, Error::Http { .. } | Error::HttpInterrupted { .. }), "{e}");
//! assert!(e.code().starts_with("ERR_SPARSEKIT_HTTP"));
//! ```
#![deny(missing_docs)]

mod client;
mod error;
mod storage;

pub use client::{
    client_for, fetch_bmap, find_bmap, is_url, proxy_for, Client, HttpOptions, HttpReader,
    ABORT_POLL,
};
pub use error::{Error, Result};
pub use storage::{HttpStorage, BLOCK, CACHE_BLOCKS, READAHEAD};
