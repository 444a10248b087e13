//! The drive records every OS's listing produces, and what a caller allows a write to do.

use std::path::PathBuf;

/// A device number as `(major, minor)`; on Windows `(N, 0)` for `\\.\PhysicalDriveN`.
pub type DevNum = (u32, u32);

/// How a drive is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bus {
    /// USB mass storage (sticks, card readers).
    Usb,
    /// SD/MMC cards on an MMC host (`mmcblk*`).
    Mmc,
    /// SATA/PATA through libata.
    Sata,
    /// NVMe.
    Nvme,
    /// Other SCSI hosts (SAS, iSCSI, virtio-scsi).
    Scsi,
    /// virtio-blk (`vd*`).
    Virtio,
    /// A loop device (a file seen as a drive).
    Loop,
    /// Other virtual devices (device-mapper, md, zram, nbd).
    Virtual,
    /// Anything else.
    Unknown,
}

impl Bus {
    /// `usb`, `mmc`, `sata`, `nvme`, `scsi`, `virtio`, `loop`, `virtual`, `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            Bus::Usb => "usb",
            Bus::Mmc => "mmc",
            Bus::Sata => "sata",
            Bus::Nvme => "nvme",
            Bus::Scsi => "scsi",
            Bus::Virtio => "virtio",
            Bus::Loop => "loop",
            Bus::Virtual => "virtual",
            Bus::Unknown => "unknown",
        }
    }
}

/// A partition of a [`Drive`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Kernel name (`sda1`, `mmcblk0p1`, `loop3p1`).
    pub name: String,
    /// Device node (`/dev/sda1`).
    pub path: PathBuf,
    /// Partition number.
    pub number: Option<u32>,
    /// Start on the drive, in bytes.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
    /// Where it is mounted (a filesystem can be mounted more than once).
    pub mountpoints: Vec<PathBuf>,
}

/// A whole block device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drive {
    /// Kernel name (`sda`, `nvme0n1`, `loop3`).
    pub name: String,
    /// Device node (`/dev/sda`).
    pub path: PathBuf,
    /// `(major, minor)`.
    pub devnum: DevNum,
    /// Size in bytes.
    pub size: u64,
    /// Logical block size (the smallest addressable unit).
    pub logical_block_size: u32,
    /// Physical block size.
    pub physical_block_size: u32,
    /// Vendor string, trimmed (SCSI/USB vendor, or none).
    pub vendor: Option<String>,
    /// Model string, trimmed (or the card name of an MMC card).
    pub model: Option<String>,
    /// How it is attached.
    pub bus: Bus,
    /// The medium can be removed (USB sticks, card readers).
    pub removable: bool,
    /// The kernel marks it read-only.
    pub read_only: bool,
    /// Its partitions, in kernel order.
    pub partitions: Vec<Partition>,
    /// Where the whole device itself is mounted (a filesystem without a partition table).
    pub mountpoints: Vec<PathBuf>,
    /// Device-mapper or md devices built on it or its partitions (`dm-0`, `md127`).
    pub holders: Vec<String>,
    /// For a loop device, the file it reads and writes.
    pub backing_file: Option<PathBuf>,
    /// Whether it holds the running system: see [`Drive::system_reasons`].
    pub is_system: bool,
    /// Why it is a system drive: `root filesystem (/)`, `swap`, `held by dm-0`, ...
    pub system_reasons: Vec<String>,
}

impl Drive {
    /// Every mount point of the drive and of its partitions.
    pub fn all_mountpoints(&self) -> Vec<PathBuf> {
        let mut v = self.mountpoints.clone();
        for p in &self.partitions {
            v.extend(p.mountpoints.iter().cloned());
        }
        v
    }
}

/// What [`crate::check_destination`] may do about a drive in use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Safety {
    /// Write even to a system drive or a busy one (no `O_EXCL`). For tools that know
    /// better; an imaging app never sets it without asking its user.
    pub force: bool,
    /// Unmount the destination's mounted partitions first (`umount2`).
    pub unmount: bool,
    /// Create a destination that does not exist as a regular file. Off by default: a
    /// missing destination is refused with `ENOENT` (a drive pulled after it was listed
    /// must not become a file); paths under `/dev` are never created
    /// ([`sparsekit_io::FileStorage::open_destination`]).
    pub create_files: bool,
}
