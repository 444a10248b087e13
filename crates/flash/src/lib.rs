//! The imaging-app engine of sparsekit: find the drives a user may write, write one image
//! to several of them at once, and take images from a URL or a zip archive.
//!
//! - [`drives::list`] lists whole block devices from sysfs and `/proc/self/mountinfo`
//!   (no `lsblk`): size, block sizes, vendor/model, [`Bus`], removable, read-only,
//!   partitions with mount points, and [`Drive::is_system`] (root or boot filesystem,
//!   swap, device-mapper/md/LVM member). [`drives::check_destination`] refuses a system
//!   drive ([`Error::SystemDrive`], `ERR_SPARSEKIT_SYSTEM_DRIVE`) or a mounted one
//!   ([`Error::DriveBusy`], `ERR_SPARSEKIT_DRIVE_BUSY`) unless forced, and can unmount.
//!   Windows (`\\.\PhysicalDriveN`, volumes) and macOS (`/dev/diskN`, `/dev/rdiskN`)
//!   have their own listing ([`drives::windows`], [`drives::macos`]: what each can and
//!   cannot determine); a Windows disk is written with its volumes locked and dismounted
//!   and sector-aligned unbuffered I/O ([`sector::SectorAligned`]), a macOS disk through
//!   its raw node.
//! - [`flash`] reads and decompresses the source once and writes every destination from
//!   the same page-aligned buffers through bounded queues (the slowest paces the rest;
//!   block devices are written with `O_DIRECT`, so a destination costs no page-cache
//!   copy); a destination that fails is dropped with its own error, at the offset of the
//!   failed write (or, for buffered writes, the few-MiB range a write-back check found it
//!   in: [`Error::WriteFailed`]), while the others finish and are read back.
//!   [`FlashStatus`] gives live per-destination progress.
//! - Sources: local files (plain, gzip, xz, bzip2, zstd — the decoders of
//!   [`sparsekit_bmap::Compression`]), zip archives (the largest or a named entry,
//!   streamed, zip64 included, compressed images inside too), and HTTP(S) URLs
//!   ([`http::HttpReader`]: bounded retries from the first request on, range requests
//!   resume a dropped download and must come from the same version of the file
//!   ([`Error::HttpChanged`]), a body without Content-Length cut by a reset is an
//!   interruption, redirects to http(s) only, proxy variables chosen per scheme as curl
//!   does, the system CA store plus a caller's CA, `URL.bmap` with a deadline and a size
//!   bound; an abort shuts a [`http::Client`]'s connections down at once).
//! - Remote images read at offsets: [`HttpStorage`] is a read-only
//!   [`sparsekit_io::Storage`] over HTTP range requests (bounded block cache, read-ahead);
//!   it serves zip archives over HTTP (their central directory is at the end), plain
//!   images with a bmap (only mapped ranges fetched), [`remote::qcow2_convert`] and
//!   [`remote::bmap_copy`].
//!
//! ```
//! use sparsekit_flash::{flash, FlashOptions, Safety};
//! use sparsekit_io::Control;
//! let dir = tempfile::tempdir()?;
//! let img = dir.path().join("os.img");
//! std::fs::write(&img, vec![7u8; 3 << 20])?;
//! let dsts = [dir.path().join("a.img"), dir.path().join("b.img")];
//! // New regular files, asked for explicitly (a missing destination is refused with ENOENT).
//! let opts = FlashOptions {
//!     safety: Safety { create_files: true, ..Safety::default() },
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

pub mod drives;
mod error;
mod flash;
pub mod http;
pub mod remote;
pub mod sector;
mod source;
#[cfg_attr(target_os = "macos", path = "sys/macos.rs")]
#[cfg_attr(windows, path = "sys/windows.rs")]
pub mod sys;

pub use drives::{Bus, Drive, Partition, Safety};
pub use error::Error;
pub use flash::{
    flash, flash_to, open_destination, DestFailure, DestProgress, DestState, DestinationReport,
    FlashOptions, FlashReport, FlashStatus, Target, CHECK_LAG, CHECK_WINDOW, CHUNK, QUEUE,
};
pub use http::HttpOptions;
pub use remote::{HttpStorage, StorageCursor};
pub use source::Counting;

/// Result of this crate's functions.
pub type Result<T> = std::result::Result<T, Error>;

/// An [`Error`] carried inside an `io::Error` through `Read` implementations (an HTTP
/// body read under a decompressor), recovered when the stream fails.
#[derive(Debug)]
pub(crate) struct Wrapped(pub(crate) Error);

impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Wrapped {}
