//! File and byte-range hashing for sparsekit: one streaming [`Hasher`] over SHA-256, SHA-1,
//! SHA3-512 and BLAKE3, and [`digest_file`], which hashes a window of a file in large chunks
//! with phased progress and cancellation ([`sparsekit_io::Control`]).
//!
//! The algorithms are the ones the formats sparsekit speaks need: SHA-256 (bmap 2.0),
//! SHA-1 (bmap 1.3), SHA3-512 (the blockcopy protocol) and BLAKE3 (fast local checks).
//!
//! ```
//! use sparsekit_digest::{Algorithm, Hasher};
//! let mut h = Hasher::new(Algorithm::Sha256);
//! h.update(b"abc");
//! assert_eq!(
//!     h.finish_hex(),
//!     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
//! );
//! # Ok::<(), sparsekit_digest::Error>(())
//! ```
#![deny(missing_docs)]

mod algorithm;
mod error;
mod file;

pub use algorithm::{Algorithm, Hasher};
pub use error::Error;
pub use file::{digest_file, digest_storage, DigestOptions, CHUNK_SIZE};
/// What every error of this crate tells besides its message (`code`, errno, path, ...).
pub use sparsekit_io::ErrorInfo;

/// Result of [`digest_file`]; a cancel becomes [`Error::Aborted`].
pub type Result<T> = std::result::Result<T, Error>;
