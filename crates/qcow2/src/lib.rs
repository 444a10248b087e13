//! A qcow2 reader for sparsekit that never trusts the image: the header (versions 2 and 3,
//! every field, extensions kept), L1/L2 walks over standard, zero, compressed (deflate and
//! zstd) and extended-L2 entries, external data files, internal snapshots and backing
//! chains, with outputs that match `qemu-img`: [`Image::info`], [`Image::map`] (merged as
//! `qemu-img map --output=json`), [`Image::allocation`], [`Image::check`], guest reads
//! ([`Image::read_at`]) and [`convert`] to a sparse raw file or block device.
//!
//! Everything is read through [`sparsekit_io::Storage`]; every size and offset read from
//! the image is checked (named `MIN_`/`MAX_` limits, checked arithmetic, bounds) before it
//! is used, and every malformed structure is an [`Error::Corrupt`] naming it and its offset.
//! The reader never writes to an image.
//!
//! Editing lives in [`edit`] (an [`Editor`] parses through the same validating reader and
//! refuses corrupt images): [`set_extension`], [`set_backing`], [`resize`],
//! [`discard_all`], [`create`], [`snapshot`], [`commit`] and [`repair`], crash-safe (new
//! structures written and synced before anything references them, refcounts exact,
//! every table entry and header field changed in one aligned write) and under qemu's
//! image locks ([`lock`]: an image a running qemu writes is refused with
//! `ERR_SPARSEKIT_LOCKED`).
//!
//! ```
//! use sparsekit_qcow2::{Image, OpenOptions};
//! use sparsekit_io::{Control, MemStorage};
//! // A hand-made 1 MiB image with 64 KiB clusters and nothing allocated.
//! let mut b = vec![0u8; 4 * 65536];
//! b[0..4].copy_from_slice(b"QFI\xfb");
//! b[4..8].copy_from_slice(&3u32.to_be_bytes());
//! b[20..24].copy_from_slice(&16u32.to_be_bytes());          // cluster_bits
//! b[24..32].copy_from_slice(&(1u64 << 20).to_be_bytes());   // size
//! b[36..40].copy_from_slice(&1u32.to_be_bytes());           // l1_size
//! b[40..48].copy_from_slice(&(3u64 << 16).to_be_bytes());   // l1_table_offset
//! b[48..56].copy_from_slice(&(1u64 << 16).to_be_bytes());   // refcount_table_offset
//! b[56..60].copy_from_slice(&1u32.to_be_bytes());           // refcount_table_clusters
//! b[96..100].copy_from_slice(&4u32.to_be_bytes());          // refcount_order
//! b[100..104].copy_from_slice(&104u32.to_be_bytes());       // header_length
//! let img = Image::from_storage(Box::new(MemStorage::from_vec(b)), &OpenOptions::default())?;
//! let map = img.map(&mut Control::none())?;
//! assert_eq!(map.len(), 1);
//! assert!(map[0].zero && !map[0].present);
//! let mut buf = [1u8; 512];
//! img.read_at(&mut buf, 4096)?;
//! assert_eq!(buf, [0u8; 512]);
//! # Ok::<(), sparsekit_qcow2::Error>(())
//! ```
#![deny(missing_docs)]

mod bitmap;
mod check;
mod compare;
mod compress;
mod convert;
pub mod edit;
mod error;
pub mod header;
mod image;
mod info;
pub mod lock;
mod map;
mod measure;
mod refblock;
mod snapshot;
mod source;
#[cfg_attr(target_os = "macos", path = "sys/macos.rs")]
#[cfg_attr(windows, path = "sys/windows.rs")]
mod sys;
pub mod table;
mod writer;

pub use bitmap::Bitmap;
pub use check::{CheckResult, MAX_CHECK_CLUSTERS};
pub use compare::{compare, Comparison, COMPARE_CHUNK};
pub use convert::{convert, ConvertOptions, ConvertResult, CONVERT_CHUNK, ZERO_BLOCK};
pub use edit::{
    commit, create, create_on, discard_all, get_extension, repair, resize, set_backing,
    set_extension, snapshot, CommitResult, CreateOptions, EditOptions, Editor, Preallocation,
};
pub use error::{Error, Result};
pub use header::{CompressionType, CryptMethod, Header};
pub use image::{BackingPolicy, Image, Layer, OpenOptions, RawImage, MAX_CHAIN_DEPTH};
pub use info::{Info, Qcow2Specific};
pub use map::{map_json, Allocation, MapEntry};
pub use measure::{measure, Measure, MeasureOptions};
pub use snapshot::Snapshot;
pub use source::{BlockStatus, Source, StorageSource};
/// What every error of this crate tells besides its message (`code`, errno, path, ...).
pub use sparsekit_io::ErrorInfo;
pub use sparsekit_io::PageBuf;
pub use writer::{
    export_stream, import_image, open_backing, write_image, BackingFile, ExportStream,
    ImportOptions, ImportResult, Layout, STREAM_CHUNK, WRITE_UNIT,
};

impl Image {
    /// Read guest bytes at `offset` through the backing chain; the range must lie inside
    /// the virtual disk.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let size = self.size();
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > size)
        {
            return Err(self.err(Error::OutOfRange {
                path: None,
                start: offset,
                length: buf.len() as u64,
                size,
            }));
        }
        self.read_guest(buf, offset)
    }
}

/// The README's example, run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
