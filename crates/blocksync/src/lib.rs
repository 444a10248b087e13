//! Block-level delta sync for sparsekit, byte-compatible with the Python tool blockcopy:
//! bring a destination that holds an older copy up to date by sending only the 128 KiB
//! blocks whose SHA3-512 differs, over any pipe (ssh, netcat, a Node stream).
//!
//! Three functions, three processes (or threads), two streams:
//! [`checksum`] (destination: hash every block, in parallel) `|` [`retrieve`] (source:
//! compare, send the differing blocks) `|` [`save`] (destination: write them through a
//! [`Storage`](sparsekit_io::Storage)). [`sync_files`] runs all three in one process over
//! pipes. The records of both streams are in [`HashRecord`] and [`BlockRecord`], read by
//! [`RecordReader`] (bounded: no length from the stream is trusted for an allocation) and
//! written by [`RecordWriter`]. With default options the bytes are exactly blockcopy
//! 0.0.2's.
//!
//! ```
//! use sparsekit_blocksync::{checksum, retrieve, save, ChecksumInput, ChecksumOptions,
//!     RetrieveOptions, SaveOptions};
//! use sparsekit_io::{Control, MemStorage, Storage};
//!
//! let src = MemStorage::from_vec(vec![7u8; 300_000]);
//! let mut old = vec![7u8; 300_000];
//! old[200_000] = 0; // one byte differs, in the second block
//! let dst = MemStorage::from_vec(old);
//!
//! let mut hashes = Vec::new();
//! checksum(ChecksumInput::Storage(&dst), &mut hashes, &ChecksumOptions::default(),
//!     &mut Control::none())?;
//! let mut blocks = Vec::new();
//! let sent = retrieve(&src, &hashes[..], &mut blocks, &RetrieveOptions::default(),
//!     &mut Control::none())?;
//! assert_eq!(sent.blocks_sent, 1);
//! save(&dst, &blocks[..], &SaveOptions::default(), &mut Control::none())?;
//! assert_eq!(dst.to_vec(), src.to_vec());
//! # Ok::<(), sparsekit_blocksync::Error>(())
//! ```
#![deny(missing_docs)]

mod ahead;
mod checksum;
mod error;
mod hash;
mod input;
mod keccak4;
mod local;
mod record;
mod resume;
mod retrieve;
mod save;
mod stream;
#[cfg_attr(windows, path = "sys/windows.rs")]
pub mod sys;

pub use checksum::{checksum, ChecksumInput, ChecksumOptions, ChecksumSummary};
pub use error::{Error, Stream};
pub use input::{open_checksum_input, OpenedInput};
pub use keccak4::sha3_512;
pub use keccak4::{has_avx2, sha3_512_x4, Sha3Kernel};
pub use local::{sync_files, SyncSummary};
pub use record::{
    BlockHeader, BlockKind, BlockRecord, HashRecord, RecordReader, RecordWriter, BLAKE3_LEN,
    BLOCK_HEADER_LEN, BLOCK_SIZE, DIGEST_LEN, EXT_BLAKE3, EXT_HOLES, EXT_RESUME, EXT_TRUNCATE,
    EXT_ZSTD, HASH_RECORD_LEN, HASH_STREAM_FLAGS, MAX_RECORD_LEN, TAG_CKPT, TAG_DATA, TAG_DLZM,
    TAG_DONE, TAG_DZST, TAG_EXT, TAG_HASH, TAG_HASH_B3, TAG_HASH_SEQ, TAG_HOLE, TAG_REST,
    TAG_RESUME, TAG_SIZE, TAG_ZERO,
};
pub use resume::ResumeState;
pub use retrieve::{retrieve, RetrieveOptions, RetrieveSummary};
pub use save::{save, SaveOptions, SaveSummary};
/// What every error of this crate tells besides its message (`code`, errno, path, ...).
pub use sparsekit_io::ErrorInfo;

/// Result of this crate's functions.
pub type Result<T> = std::result::Result<T, Error>;

/// The README's example, run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The holes of a file or block device (sorted byte ranges that read as zeros without
/// being stored), for the hole-aware extension (`ChecksumOptions::holes`,
/// `RetrieveOptions::holes`). Where the file cannot be mapped the answer is "no holes": hole
/// awareness only saves work, it never changes the result.
pub fn hole_map(file: &std::fs::File) -> Vec<std::ops::Range<u64>> {
    sparsekit_extents::map_file(file, &sparsekit_extents::MapOptions::default())
        .map(|m| m.hole_ranges())
        .unwrap_or_default()
}
