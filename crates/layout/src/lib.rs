//! Where the data of a disk image or a block device is, read from its partition table and
//! each file system's own allocation metadata, without mounting anything.
//!
//! [`layout`] reads a [`Storage`] (a file, a block device, a qcow2 guest, an HTTP source)
//! and returns its [`Layout`]: the partition [`Table`] (GPT, MBR with logical partitions,
//! or none), every [`Partition`] with the [`FileSystem`] in it, and the merged, sorted
//! byte ranges that are **used**. [`scan`] is the streaming form: the same walk, the used
//! ranges handed to a callback as they are found (for file systems with millions of runs).
//!
//! The rule: **free means provably free**. A byte is reported free only when a file system
//! this crate fully understands says so in metadata that passed its checks. Everything
//! else is used: the gap before the first partition, the space between and after
//! partitions, the partition tables, unknown or encrypted partitions (LUKS, LVM), a file
//! system with an unknown feature flag, one that is dirty or needs journal recovery, one
//! whose metadata fails a check. The image is never trusted: loops, counts past the
//! device and overlapping partitions are [`Error`]s with a code or "all used", never a
//! panic, a hang or an allocation the image chose.
//!
//! Understood file systems: ext2/3/4 (block bitmaps; flex_bg, uninitialised groups,
//! 64bit, meta_bg, bigalloc), FAT12/16/32, exFAT (the allocation bitmap), NTFS
//! (`$Bitmap`), XFS (each allocation group's by-block free-space B+tree, only with a
//! provably clean log), btrfs (allocated chunks on a single device), Linux swap (only its
//! header is used).
//!
//! ```
//! use sparsekit_io::{Control, MemStorage, Storage};
//! use sparsekit_layout::{layout, Table};
//! // 1 MiB of zeros: no table, no file system: all of it is used.
//! let disk = MemStorage::from_vec(vec![0; 1 << 20]);
//! let l = layout(&disk, &mut Control::none())?;
//! assert_eq!(l.table, Table::None);
//! assert_eq!(l.used, vec![sparsekit_layout::Range { offset: 0, length: 1 << 20 }]);
//! # Ok::<(), sparsekit_layout::Error>(())
//! ```
#![deny(missing_docs)]

mod dev;
mod error;
mod fs;
mod mapped;
mod sparsify;
mod sys;
mod table;

pub use error::Error;
pub use mapped::{intersect, mapped_ranges, Mapped};
pub use sparsify::{sparsify, Sparsified, SparsifyOptions};

use dev::Dev;
use sparsekit_io::{Control, Phase, Storage};

/// The kind of partition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// A GUID partition table (with a protective or hybrid MBR).
    Gpt,
    /// An MBR (DOS) table, with logical partitions in an extended one.
    Mbr,
    /// No table: one file system (or nothing known) on the whole device ("superfloppy").
    None,
}

impl Table {
    /// `gpt`, `mbr` or `none`.
    pub fn name(self) -> &'static str {
        match self {
            Table::Gpt => "gpt",
            Table::Mbr => "mbr",
            Table::None => "none",
        }
    }
}

/// A file system (or another known kind of content) found in a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileSystem {
    /// ext2 (no journal).
    Ext2,
    /// ext3 (a journal, no ext4 features).
    Ext3,
    /// ext4.
    Ext4,
    /// FAT12, FAT16 or FAT32.
    Vfat,
    /// exFAT.
    Exfat,
    /// NTFS.
    Ntfs,
    /// XFS.
    Xfs,
    /// btrfs.
    Btrfs,
    /// Linux swap.
    Swap,
    /// A LUKS container (always all used).
    CryptoLuks,
    /// An LVM physical volume (always all used).
    Lvm2Member,
}

impl FileSystem {
    /// The name blkid uses: `ext4`, `vfat`, `exfat`, `ntfs`, `xfs`, `btrfs`, `swap`,
    /// `crypto_LUKS`, `LVM2_member`, ...
    pub fn name(self) -> &'static str {
        match self {
            FileSystem::Ext2 => "ext2",
            FileSystem::Ext3 => "ext3",
            FileSystem::Ext4 => "ext4",
            FileSystem::Vfat => "vfat",
            FileSystem::Exfat => "exfat",
            FileSystem::Ntfs => "ntfs",
            FileSystem::Xfs => "xfs",
            FileSystem::Btrfs => "btrfs",
            FileSystem::Swap => "swap",
            FileSystem::CryptoLuks => "crypto_LUKS",
            FileSystem::Lvm2Member => "LVM2_member",
        }
    }
}

/// Whether a partition's free space could be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// A file system this crate understands, cleanly unmounted, whose metadata passed
    /// every check: its free blocks are reported free.
    Clean,
    /// A file system marked dirty, with errors, or needing journal recovery: all used.
    Dirty,
    /// No file system, one this crate does not read, or one that failed a check: all used.
    Unknown,
}

impl State {
    /// `clean`, `dirty` or `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            State::Clean => "clean",
            State::Dirty => "dirty",
            State::Unknown => "unknown",
        }
    }
}

/// A byte range of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
}

/// One partition (for [`Table::None`], the whole device as partition 0).
#[derive(Clone, Debug)]
pub struct Partition {
    /// The number Linux gives it (`sda3` is 3; logical partitions start at 5); 0 for the
    /// whole device without a table.
    pub number: u32,
    /// First byte on the device.
    pub start: u64,
    /// Length in bytes.
    pub length: u64,
    /// The partition type: a GPT type GUID (`0fc63daf-...`) or an MBR type (`0x83`);
    /// empty without a table.
    pub type_: String,
    /// What that type usually means (`Linux filesystem`, `EFI System`), when known.
    pub type_name: Option<&'static str>,
    /// The GPT partition name.
    pub name: Option<String>,
    /// The GPT partition's unique GUID.
    pub partuuid: Option<String>,
    /// The file system found in it, if any.
    pub filesystem: Option<FileSystem>,
    /// The file system's label.
    pub label: Option<String>,
    /// The file system's UUID (or volume serial number), as blkid prints it.
    pub uuid: Option<String>,
    /// Bytes of this partition that are used.
    pub used_bytes: u64,
    /// Whether its free space could be read.
    pub state: State,
    /// Why the partition is all used, when it is not [`State::Clean`].
    pub reason: Option<String>,
}

/// The layout of a device: table, partitions and used ranges.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The size of the device in bytes.
    pub size: u64,
    /// The partition table.
    pub table: Table,
    /// The logical sector size the table uses (512 or 4096).
    pub sector_size: u32,
    /// Whether the GPT comes with a hybrid MBR (MBR partitions besides the 0xee one).
    pub hybrid_mbr: bool,
    /// The partitions, in the order of their start.
    pub partitions: Vec<Partition>,
    /// The used byte ranges: merged, sorted, in device offsets (empty from [`scan`]).
    pub used: Vec<Range>,
    /// Bytes used in all.
    pub used_bytes: u64,
    /// Things worth knowing that did not stop the read (a backup GPT header missing).
    pub warnings: Vec<String>,
}

/// Read the layout of `storage`; progress is [`Phase::Map`] over the device's bytes.
pub fn layout(storage: &dyn Storage, ctl: &mut Control) -> Result<Layout, Error> {
    let mut used: Vec<Range> = Vec::new();
    let mut l = scan(storage, ctl, &mut |r| {
        used.push(r);
        Ok(())
    })?;
    l.used = used;
    Ok(l)
}

/// The streaming form of [`layout`]: each used range (merged, in ascending order) goes to
/// `on_used` as it is found; the returned [`Layout`] has an empty `used`. A file system's
/// runs are only handed out after its metadata passed every check (it is walked twice:
/// once to check and count, once to emit), so a range once reported used stays used.
pub fn scan(
    storage: &dyn Storage,
    ctl: &mut Control,
    on_used: &mut dyn FnMut(Range) -> Result<(), Error>,
) -> Result<Layout, Error> {
    let path = storage.path().map(|p| p.to_path_buf());
    scan_inner(storage, ctl, on_used).map_err(|e| e.with_path(path.as_deref()))
}

fn scan_inner(
    storage: &dyn Storage,
    ctl: &mut Control,
    on_used: &mut dyn FnMut(Range) -> Result<(), Error>,
) -> Result<Layout, Error> {
    let size = storage.size()?;
    let whole = Dev {
        s: storage,
        base: 0,
        len: size,
    };
    ctl.report(Phase::Map, 0, Some(size))?;
    let vbr = size >= 512 && fs::is_boot_sector_fs(&whole)?;
    let parsed = table::read(&whole, vbr)?;
    let mut entries = parsed.entries;
    if parsed.table == Table::None && size > 0 {
        entries.push(table::Entry {
            number: 0,
            start: 0,
            length: size,
            type_: String::new(),
            name: None,
            partuuid: None,
        });
    }
    entries.sort_by_key(|e| (e.start, e.number));
    for e in &entries {
        let end = e.start.saturating_add(e.length);
        if end > size {
            return Err(error::corrupt(
                "partition table",
                e.start,
                format!(
                    "partition {} ({} bytes at offset {}) ends at byte {end}, past the end of the device ({size} bytes): truncated image?",
                    e.number, e.length, e.start
                ),
            ));
        }
        if e.length == 0 {
            return Err(error::corrupt(
                "partition table",
                e.start,
                format!("partition {} is empty", e.number),
            ));
        }
    }
    for w in entries.windows(2) {
        if w[0].start + w[0].length > w[1].start {
            return Err(error::corrupt(
                "partition table",
                w[1].start,
                format!("partitions {} and {} overlap", w[0].number, w[1].number),
            ));
        }
    }

    // The sink that merges across partitions and table areas.
    let mut pending: Option<Range> = None;
    let mut total_used = 0u64;
    let mut push = |r: Range| -> Result<(), Error> {
        if r.length == 0 {
            return Ok(());
        }
        match &mut pending {
            Some(p) if p.offset + p.length == r.offset => p.length += r.length,
            Some(_) => {
                let p = pending.replace(r).unwrap();
                total_used += p.length;
                on_used(p)?;
            }
            None => pending = Some(r),
        }
        Ok(())
    };

    let mut partitions = Vec::new();
    let mut pos = 0u64;
    for e in entries {
        // Everything between partitions is used (tables, boot loaders, gaps).
        push(Range {
            offset: pos,
            length: e.start - pos,
        })?;
        let part = Dev {
            s: storage,
            base: e.start,
            len: e.length,
        };
        let found = fs::read_partition(&part, ctl, size, &mut |s, l| {
            push(Range {
                offset: e.start + s,
                length: l,
            })
        })?;
        pos = e.start + e.length;
        partitions.push(Partition {
            number: e.number,
            start: e.start,
            length: e.length,
            type_name: table::type_name(&e.type_),
            type_: e.type_,
            name: e.name,
            partuuid: e.partuuid,
            filesystem: found.filesystem,
            label: found.label,
            uuid: found.uuid,
            used_bytes: found.used_bytes,
            state: found.state,
            reason: found.reason,
        });
    }
    push(Range {
        offset: pos,
        length: size - pos,
    })?;
    if let Some(p) = pending.take() {
        total_used += p.length;
        on_used(p)?;
    }
    ctl.report(Phase::Map, size, Some(size))?;
    Ok(Layout {
        size,
        table: parsed.table,
        sector_size: parsed.sector_size,
        hybrid_mbr: parsed.hybrid_mbr,
        partitions,
        used: Vec::new(),
        used_bytes: total_used,
        warnings: parsed.warnings,
    })
}
