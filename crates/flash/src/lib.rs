//! The imaging-app engine of sparsekit: write one image to several drives at once, from a
//! file, a URL or a zip archive, and check what was written.
//!
//! - [`flash`] reads and decompresses the source once and writes every destination from
//!   the same page-aligned buffers through bounded queues (the slowest paces the rest;
//!   block devices are written with `O_DIRECT`, so a destination costs no page-cache
//!   copy); a destination that fails is dropped with its own error, at the offset of the
//!   failed write (or, for buffered writes, the few-MiB range a write-back check found it
//!   in: [`Error::WriteFailed`]), while the others finish and are read back.
//!   [`FlashStatus`] gives live per-destination progress.
//! - Destinations are checked and opened by the caller's [`Opener`]: the engine knows no
//!   drive. [`Files`] (the default) opens files and block devices; the Node addon passes
//!   one built on `sparsekit-drives` (system drives and busy ones refused,
//!   [`Error::Refused`]). [`flash_to`] takes destinations the caller opened.
//! - Sources: local files (plain, gzip, xz, bzip2, zstd — the decoders of
//!   [`sparsekit_bmap::Compression`]), zip archives (the largest or a named entry,
//!   streamed, zip64 included, compressed images inside too), and HTTP(S) URLs through
//!   [`sparsekit_http`] (a stream resumed with range requests; a zip archive or a plain
//!   image with a bmap read at offsets through [`sparsekit_http::HttpStorage`]; HTTP
//!   failures are [`Error::Http`]).
//! - The bmap is chosen once ([`sparsekit_bmap::resolve_bmap`]: `IMAGE.bmap`, `URL.bmap`,
//!   a given one, or none); with one, only mapped ranges are written and each range's
//!   checksum is checked as it streams. [`bmap_copy()`] and [`local_bmap_copy`] are `bmap
//!   copy` through this engine.
//!
//! ```
//! use sparsekit_flash::{flash, Files, FlashOptions};
//! use std::sync::Arc;
//! use sparsekit_io::Control;
//! let dir = tempfile::tempdir()?;
//! let img = dir.path().join("os.img");
//! std::fs::write(&img, vec![7u8; 3 << 20])?;
//! let dsts = [dir.path().join("a.img"), dir.path().join("b.img")];
//! // New regular files, asked for explicitly (a missing destination is refused with ENOENT).
//! let opts = FlashOptions {
//!     opener: Arc::new(Files { create_files: true }),
//!     ..FlashOptions::default()
//! };
//! let report = flash(img.to_str().unwrap(), &dsts, &opts, None, &mut Control::none())?;
//! for d in &report.destinations {
//!     assert!(d.error.is_none() && d.verified, "{:?}", d.error);
//!     assert_eq!(std::fs::read(&d.path)?, std::fs::read(&img)?);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod bmap_copy;
mod dest;
mod error;
mod flash;
mod probe;
mod source;
mod trim;

pub use bmap_copy::{
    bmap_copy, bmap_copy_media, local_bmap_copy, local_bmap_copy_media, local_bmap_copy_to_drive,
    local_bmap_copy_to_drive_media, Media, MediaReport,
};
pub use dest::{Files, Opener};
pub use error::{error_of_io, Error, RefusalError, Result};
pub use flash::{
    flash, flash_to, verify, verify_to, DestFailure, DestProgress, DestState, DestinationReport,
    FlashOptions, FlashReport, FlashStatus, Target, Unmapped, VerifyReport, CHECK_LAG,
    CHECK_WINDOW, CHUNK, HEAD, QUEUE, WRITE_RETRIES,
};
pub use probe::{probe_capacity, ProbeReport, PROBE_BLOCK, PROBE_POINTS};
pub use sparsekit_http::HttpOptions;
pub use trim::{bmap_of_used, Trim, TRIM_BLOCK};
