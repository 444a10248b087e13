//! Hole-preserving copies for sparsekit, with `dd`-style `skip`/`seek`/`length` in bytes.
//!
//! [`copy`] maps the source's data with `sparsekit-extents` and moves only data: by reflink
//! (`FICLONE`/`FICLONERANGE`) when source and destination share a filesystem that can,
//! else with `copy_file_range`, `sendfile` or read/write per data extent, falling back only
//! when the kernel says a method cannot work ([`CopyMethod`]). Holes stay holes (or are
//! punched over stale destination data), unwritten (preallocated) source ranges are copied
//! as holes, and a trailing hole comes from `ftruncate`. The destination may be a block
//! device. Progress (map, copy, sync phases) and cancellation go through
//! [`sparsekit_io::Control`]; [`CopyReport`] says what was moved and how.
//!
//! The modules: [`ends`] opens and checks source and destination (`O_EXCL` block devices,
//! size checks, same-file refusal through links and loop devices, fsync) and is shared
//! with bmap flashing; `method` holds the fallback chain; `copy` the loop; `holes` the
//! zero writer and hole punching.
//!
//! ```
//! use sparsekit_io::Control;
//! use sparsekit_sparse_copy::{copy, CopyOptions};
//! let dir = tempfile::tempdir()?;
//! let (src, dst) = (dir.path().join("a"), dir.path().join("b"));
//! std::fs::write(&src, b"hello, world")?;
//! let opts = CopyOptions { skip: 7, seek: 2, ..CopyOptions::default() };
//! let report = copy(&src, &dst, &opts, &mut Control::none())?;
//! assert_eq!(report.size, 7);
//! assert_eq!(std::fs::read(&dst)?, b"\0\0world");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod copy;
pub mod ends;
mod error;
mod holes;
mod method;
#[cfg_attr(target_os = "macos", path = "sys/macos.rs")]
#[cfg_attr(windows, path = "sys/windows.rs")]
mod sys;

pub use copy::{copy, CopyOptions, CopyReport, CHUNK_SIZE};
pub use error::Error;
pub use method::CopyMethod;
/// What every error of this crate tells besides its message (`code`, errno, path, ...).
pub use sparsekit_io::ErrorInfo;

/// Result of [`copy`]; a cancel becomes [`Error::Aborted`].
pub type Result<T> = std::result::Result<T, Error>;
