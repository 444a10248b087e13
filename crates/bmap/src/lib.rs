//! bmaptool's block maps for sparsekit: read and write bmap files, create them from an
//! image's extents, and flash plain or compressed images with them.
//!
//! - [`Bmap`] is a bmap file: [`Bmap::parse`] reads formats 1.2, 1.3, 1.4 and 2.0 with a
//!   real XML parser (quick-xml) and validates every field in order (version, sizes,
//!   checksum type, file checksum, ranges sorted, disjoint, inside the image, summing to
//!   `MappedBlocksCount`, `ImageSize` at most [`MAX_IMAGE_SIZE`] = 2^53 - 1); every failure
//!   is an [`Error::Invalid`] (`ERR_SPARSEKIT_BMAP_INVALID`) naming the line. Parsing is
//!   linear in the file; [`Bmap::parse_with`] and [`Bmap::read_with`] stop with
//!   [`Error::Aborted`] when a [`sparsekit_io::Cancel`] is. [`Bmap::to_xml`] writes format 2.0
//!   with `BmapFileChecksum` computed over the exact bytes, as `bmaptool copy` checks it.
//! - [`create`] maps an image (FIEMAP, else SEEK_DATA/SEEK_HOLE, from sparsekit-extents)
//!   and hashes its ranges in parallel (sha256, sha1, or none).
//! - [`copy`] flashes an image to a file or block device: only mapped ranges are written,
//!   each range's checksum is verified as it streams ([`Error::ChecksumMismatch`]), and an
//!   optional read-back re-reads the destination past the page cache
//!   ([`Error::ReadBackMismatch`]). gzip, xz, bzip2 and zstd images are decompressed as a
//!   stream in process; `IMAGE.bmap` is found beside the image ([`find_bmap`]).
//!   [`copy_to`] does the same over any [`Destination`] (tests use
//!   [`sparsekit_io::MemStorage`] and [`sparsekit_io::Faulty`]).
//!
//! ```
//! use sparsekit_bmap::{copy, create, BmapChoice, CopyOptions, CreateOptions};
//! use sparsekit_io::Control;
//! use std::os::unix::fs::FileExt;
//! let dir = tempfile::tempdir()?;
//! let (img, out) = (dir.path().join("disk.img"), dir.path().join("copy.img"));
//! let f = std::fs::File::create(&img)?;
//! f.set_len(1 << 20)?;
//! f.write_all_at(b"boot", 0)?;
//! f.write_all_at(&[7u8; 8192], 512 * 1024)?;
//!
//! let bmap = create(&img, &CreateOptions::default(), &mut Control::none())?;
//! assert_eq!(bmap.image_size, 1 << 20);
//! std::fs::write(dir.path().join("disk.img.bmap"), bmap.to_xml())?;
//!
//! // disk.img.bmap is found beside the image, and every range is verified.
//! let opts = CopyOptions { read_back: true, create_files: true, ..CopyOptions::default() };
//! let report = copy(&img, &out, &opts, &mut Control::none())?;
//! assert!(report.used_bmap);
//! assert_eq!(std::fs::read(&out)?, std::fs::read(&img)?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod copy;
mod create;
mod error;
mod format;
mod par;
mod size;
mod source;
mod zstd_frames;

pub use copy::{
    copy, copy_to, find_bmap, local_bmap, resolve_bmap, BmapChoice, CopyOptions, CopyReport,
    Destination, Source,
};
pub use create::{create, create_from, CreateOptions, DEFAULT_BLOCK_SIZE};
pub use error::Error;
pub use format::{
    Bmap, BmapRange, ChecksumType, Hasher, MAX_BLOCK_SIZE, MAX_BMAP_SIZE, MAX_IMAGE_SIZE,
    WRITE_VERSION,
};
pub use size::decompressed_size;
pub use source::Compression;
/// What every error of this crate tells besides its message (`code`, errno, path, ...).
pub use sparsekit_io::ErrorInfo;

/// Result of this crate's functions.
pub type Result<T> = std::result::Result<T, Error>;
