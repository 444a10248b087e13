//! Hole-preserving copies for sparsekit, with `dd`-style `skip`/`seek`/`length` in bytes.
//!
//! [`copy`] maps the source's data with `sparsekit-extents` and moves only data: by reflink
//! (`FICLONE`/`FICLONERANGE`) when source and destination share a filesystem that can,
//! else with `copy_file_range`, `sendfile` or read/write per data extent, falling back only
//! when the kernel says a method cannot work ([`CopyMethod`]). Holes stay holes (or are
//! punched over stale destination data), unwritten (preallocated) source ranges are copied
//! as holes, and a trailing hole comes from `ftruncate`. The destination may be a block
//! device. Progress and cancellation go through one callback; [`CopyReport`] says what was
//! moved and how.
//!
//! ```
//! use std::ops::ControlFlow;
//! use sparsekit_sparse_copy::{copy, CopyOptions};
//! let dir = tempfile::tempdir()?;
//! let (src, dst) = (dir.path().join("a"), dir.path().join("b"));
//! std::fs::write(&src, b"hello, world")?;
//! let opts = CopyOptions { skip: 7, seek: 2, ..CopyOptions::default() };
//! let report = copy(&src, &dst, &opts, &mut |_, _| ControlFlow::Continue(()))?;
//! assert_eq!(report.size, 7);
//! assert_eq!(std::fs::read(&dst)?, b"\0\0world");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod copy;
mod error;
mod sys;

pub use copy::{copy, CopyMethod, CopyOptions, CopyReport, CHUNK_SIZE};
pub use error::Error;

/// Result of [`copy`]; the progress callback's `ControlFlow::Break` becomes
/// [`Error::Aborted`].
pub type Result<T> = std::result::Result<T, Error>;
