//! The drives of this machine for sparsekit: which whole disks there are, which of them
//! hold the running system, whether a destination may be written, and opening it for
//! exclusive raw writes.
//!
//! - [`list`] lists whole block devices: size, block sizes, vendor/model, [`Bus`],
//!   removable, read-only, partitions with mount points, and [`Drive::is_system`] (root or
//!   boot filesystem, swap, device-mapper/md/LVM member). Linux reads sysfs and
//!   `/proc/self/mountinfo` (no `lsblk`: [`linux`]); Windows lists `\\.\PhysicalDriveN`
//!   disks with their volumes ([`windows`]); macOS `/dev/diskN` disks ([`macos`]). Each
//!   OS's logic is apart from its OS calls (`sys`), and tested on every OS.
//! - [`check_destination`] refuses a system drive ([`Error::SystemDrive`],
//!   `ERR_SPARSEKIT_SYSTEM_DRIVE`) or a mounted one ([`Error::DriveBusy`],
//!   `ERR_SPARSEKIT_DRIVE_BUSY`) unless forced ([`Safety`]), and can unmount; [`decide`]
//!   is that decision once the drives are known, shared by every OS.
//! - [`open_destination`] checks and opens a destination for writing: a block device
//!   `O_EXCL`; a Windows disk with its volumes locked and dismounted and sector-aligned
//!   unbuffered I/O ([`SectorAligned`]); a macOS disk through its raw node.
//!
//! ```
//! use sparsekit_drives::{check_destination, open_destination, Safety};
//! let dir = tempfile::tempdir()?;
//! let img = dir.path().join("disk.img");
//! // A regular file passes the checks; a missing one is created only when asked for.
//! check_destination(&img, Safety::default())?;
//! assert!(open_destination(&img, Safety::default()).is_err());
//! let dst = open_destination(&img, Safety { create_files: true, ..Safety::default() })?;
//! dst.write_all_at(b"boot", 0)?;
//! assert_eq!(std::fs::read(&img)?, b"boot");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod decide;
mod drives;
mod eject;
mod error;
pub mod linux;
pub mod macos;
mod open;
pub mod sector;
#[cfg_attr(target_os = "macos", path = "sys/macos.rs")]
#[cfg_attr(windows, path = "sys/windows.rs")]
pub mod sys;
mod types;
pub mod windows;

pub use decide::{decide, Unmount};
pub use drives::{check_destination, list};
pub use eject::{eject, eject_with, macos_disk, windows_disk};
pub use error::{Error, Result};
pub use linux::{check_destination_with, list_with, parse_mountinfo, Mount, Roots};
pub use open::{busy, is_drive_path, open_destination, open_direct};
pub use sector::SectorAligned;
pub use types::{Bus, DevNum, Drive, Partition, Safety};
