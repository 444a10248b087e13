//! The shared foundation of sparsekit's core crates: positional I/O over files, block
//! devices and test storage, phased progress with cancellation, and one I/O error type.
//!
//! - [`Storage`] is what qcow2, bmap and blocksync parse and write through: `size`,
//!   `read_at`/`write_at` (and their exact forms), `write_zeroes`, `punch_hole`, `set_len`,
//!   `flush`. [`FileStorage`] implements it for regular files and block devices (sizes from
//!   `BLKGETSIZE64`, not `st_size`), [`MemStorage`] in memory, and [`Faulty`] wraps any
//!   storage to inject failures (fail after N writes, short reads, ENOSPC past a size).
//! - [`IoError`] is an OS error with its context: the operation (`op`, also reported as the
//!   failed `syscall`), the `path` and the byte `offset`. Crates wrap it in their own error
//!   enums, which keep their own kinds. [`ErrorInfo`] is what every crate's error tells
//!   besides its message (`code`, errno, `syscall`, `path`, `offset`, `range`): the
//!   contract the Node addon builds its JavaScript errors from.
//! - [`StorageCursor`] reads a storage as `Read + Seek`, [`Counting`] counts a reader's
//!   bytes, and [`carry`]/[`take`] pass an error through `std::io` and back.
//! - [`is_zero`] (all-zero blocks) and `sys`'s page-cache hints (`drop_cache`,
//!   `sequential`, `will_need`, `start_writeback`) on every OS.
//! - [`Control`] carries a [`Cancel`] token and a progress sink. Core functions report
//!   [`Progress`] (a [`Phase`], bytes done, bytes total) and call [`Control::check`]; they
//!   never throttle (the caller does, and always passes the final report of each phase).
//!   [`read_stream`] reads pipes and character devices and wakes up when cancelled.
//! - [`PageBuf`] is a page-aligned byte buffer (faster page-cache copies, `O_DIRECT`).
//! - [`TempBeside`] replaces a regular file whole (temporary file, sync, rename, folder
//!   sync), so a failure or a crash leaves the old file.
//!
//! ```
//! use sparsekit_io::{FileStorage, MemStorage, Storage, Faulty, Fault};
//! let tmp = tempfile::NamedTempFile::new()?;
//! let file = FileStorage::open_rw(tmp.path())?;
//! file.write_all_at(b"hello", 4096)?;
//! let mut buf = [0u8; 5];
//! file.read_exact_at(&mut buf, 4096)?;
//! assert_eq!(&buf, b"hello");
//! assert_eq!(file.size()?, 4101);
//!
//! // The same code against storage that runs out of space after 8 KiB:
//! let full = Faulty::new(MemStorage::new(), Fault::NoSpaceAfter(8192));
//! assert_eq!(full.write_all_at(&[1; 16384], 0).unwrap_err().raw_os_error(), Some(libc::ENOSPC));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
// Windows: `dev`/`ino` of a file (std's `windows_by_handle`; the Windows build compiles std
// itself with `-Zbuild-std`, see scripts/prebuilt).
#![cfg_attr(windows, feature(windows_by_handle))]

pub mod errno;
mod error;
mod fault;
mod file;
mod mem;
mod pagebuf;
mod progress;
mod read;
mod replace;
mod storage;
#[cfg_attr(target_os = "macos", path = "sys/macos.rs")]
#[cfg_attr(windows, path = "sys/windows.rs")]
pub mod sys;
mod window;
mod zero;

pub use error::{Context, ErrorInfo, IoError, Quoted};
pub use fault::{Fault, Faulty};
pub use file::{is_device_namespace, FileKind, FileStorage};
pub use mem::MemStorage;
pub use pagebuf::{PageBuf, PAGE};
pub use progress::{read_stream, Aborted, Cancel, Control, Phase, Progress};
pub use read::{carries, carry, take, Counting, StorageCursor};
pub use replace::TempBeside;
pub use storage::{Storage, ZERO_CHUNK};
pub use window::Window;
pub use zero::is_zero;
