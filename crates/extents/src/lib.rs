//! Extent maps for sparsekit: which byte ranges of a file or block device hold data, found
//! with the `FS_IOC_FIEMAP` ioctl, with `lseek(SEEK_DATA/SEEK_HOLE)`, or (when neither
//! works) by treating everything as data.
//!
//! [`map_path`] and [`map_file`] return an [`ExtentMap`]: sorted, merged [`Extent`]s in
//! bytes, with the unwritten (preallocated) and shared (reflinked) flags that FIEMAP
//! reports. [`ExtentMap::data_ranges`] treats unwritten extents as holes, which is what a
//! copy needs and where FIEMAP and SEEK agree. (bmaptool-style block ranges live in the bmap
//! crate.)
//! [`map_file_nosync`] skips FIEMAP's writeback for callers that only look for allocated
//! ranges, and [`file_size`] sizes regular files and block devices alike.
//!
//! ```
//! use std::io::Write;
//! use sparsekit_extents::{map_path, MapOptions, Method};
//! let mut f = tempfile::NamedTempFile::new().unwrap();
//! f.write_all(&[7u8; 8192])?;
//! let map = map_path(f.path(), &MapOptions::default())?;
//! assert_eq!(map.size, 8192);
//! assert_ne!(map.method, Method::Auto);
//! assert_eq!(map.data_ranges(), vec![0..8192]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod error;
mod map;
mod method;
#[cfg_attr(target_os = "macos", path = "sys/macos.rs")]
#[cfg_attr(windows, path = "sys/windows.rs")]
mod sys;

pub use error::Error;
pub use map::{
    file_size, map_file, map_file_nosync, map_file_with, map_path, map_path_with, Extent,
    ExtentMap, MapOptions, FIEMAP_BATCH,
};
pub use method::Method;
/// What every error of this crate tells besides its message (`code`, errno, path, ...).
pub use sparsekit_io::ErrorInfo;

/// Result of this crate's functions.
pub type Result<T> = std::result::Result<T, Error>;
