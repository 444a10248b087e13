//! The Windows drive listing's logic, apart from the OS calls (those are in
//! `sys/windows_drives.rs`, compiled on Windows only, which import nothing from here):
//! every function here takes bytes or plain values and is tested on every OS, except the
//! `live` part (Windows only: `list_drives`, `open_device`, ...) that feeds the logic
//! with the OS calls' answers.
//!
//! - [`parse_device_path`]: which paths name a device (`\\.\PhysicalDriveN`,
//!   `\\?\PhysicalDriveN`, `\\.\X:`, `\\.\Volume{GUID}`), case-insensitive.
//! - [`parse_device_descriptor`]: a `STORAGE_DEVICE_DESCRIPTOR` (winioctl.h) as
//!   `IOCTL_STORAGE_QUERY_PROPERTY` / `StorageDeviceProperty` returns it. The descriptor is
//!   the driver's (a USB bridge's) say: every offset is checked against the bytes returned
//!   and against the descriptor's own `Size`, strings end at a NUL or at that bound.
//! - [`parse_disk_extents`]: a `VOLUME_DISK_EXTENTS` (winioctl.h) from
//!   `IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS`, bounded by the bytes returned.
//! - [`parse_multi_sz`], [`pagefile_path`]: the registry's `ExistingPageFiles` value.
//! - [`assemble`]: disks, volumes and what holds the system into [`Drive`]s, deciding
//!   [`Drive::is_system`] conservatively: when the Windows directory's volume cannot be
//!   placed on a disk, every disk is a system disk.

use std::path::PathBuf;

use crate::decide::decide;
use crate::error::{Error, Result};
use crate::types::{Bus, Drive, Partition, Safety};

/// Highest `N` of `\\.\PhysicalDriveN` accepted in a path (the listing probes 0..=this).
pub const MAX_DISK_NUMBER: u32 = 255;
/// Most extents read from one `VOLUME_DISK_EXTENTS` (a spanned volume has one per disk).
pub const MAX_EXTENTS: usize = 64;
/// Longest string taken from a device descriptor.
const MAX_DESCRIPTOR_STRING: usize = 256;
/// Size of `STORAGE_DEVICE_DESCRIPTOR` up to `RawDeviceProperties` (winioctl.h):
/// Version, Size (u32), DeviceType, DeviceTypeModifier, RemovableMedia, CommandQueueing
/// (u8), VendorIdOffset, ProductIdOffset, ProductRevisionOffset, SerialNumberOffset,
/// BusType, RawPropertiesLength (u32).
pub const DESCRIPTOR_HEADER: usize = 36;

/// What a Windows device path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DevicePath {
    /// `\\.\PhysicalDriveN` (or `\\?\PhysicalDriveN`): a whole disk.
    Disk(u32),
    /// `\\.\X:`: the volume with drive letter X (upper case).
    Letter(char),
    /// `\\.\Volume{GUID}`: a volume by its GUID name (the `Volume{...}` part, as given).
    Volume(String),
    /// Some other device in the `\\.\` or `\\?\` namespace (`\\.\CdRom0`,
    /// `\\.\Harddisk0Partition1`, a malformed drive number): never written.
    Other(String),
}

/// Classify `path`: `None` for a path in the file system (a file to write), else the
/// device it names. `\\.\` and `\\?\` prefixes alike, any case, `/` for `\`; a trailing
/// separator after a volume is allowed (`\\.\E:\` is the root directory of E:, a
/// directory, but nobody means that as a destination).
pub fn parse_device_path(path: &str) -> Option<DevicePath> {
    let p = path.replace('/', "\\");
    let rest = p
        .strip_prefix(r"\\.\")
        .or_else(|| p.strip_prefix(r"\\?\"))?;
    // `\\?\C:\dir\file` and `\\?\UNC\...` are file system paths in long form.
    let lower = rest.to_ascii_lowercase();
    if lower.starts_with(r"unc\") || (rest.len() > 3 && rest.as_bytes().get(1) == Some(&b':')) {
        return None;
    }
    let name = rest.trim_end_matches('\\');
    let lname = name.to_ascii_lowercase();
    if let Some(n) = lname.strip_prefix("physicaldrive") {
        let ok = !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit());
        return Some(match n.parse::<u32>() {
            Ok(v) if ok && v <= MAX_DISK_NUMBER => DevicePath::Disk(v),
            _ => DevicePath::Other(name.to_string()),
        });
    }
    let b = name.as_bytes();
    if b.len() == 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Some(DevicePath::Letter(b[0].to_ascii_uppercase() as char));
    }
    if lname.starts_with("volume{") && lname.ends_with('}') {
        return Some(DevicePath::Volume(name.to_string()));
    }
    Some(DevicePath::Other(name.to_string()))
}

/// The parts of a `STORAGE_DEVICE_DESCRIPTOR` a drive listing shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceDescriptor {
    /// `VendorIdOffset`'s string, trimmed.
    pub vendor: Option<String>,
    /// `ProductIdOffset`'s string, trimmed.
    pub product: Option<String>,
    /// `SerialNumberOffset`'s string, trimmed.
    pub serial: Option<String>,
    /// `RemovableMedia`.
    pub removable: bool,
    /// `BusType` (`STORAGE_BUS_TYPE`).
    pub bus_type: u32,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

fn i64_at(b: &[u8], off: usize) -> Option<i64> {
    let s = b.get(off..off.checked_add(8)?)?;
    Some(i64::from_le_bytes(s.try_into().ok()?))
}

/// The string at `off` of the descriptor `b` (already cut to its valid length): none for
/// offset 0 (the field is absent) or past the end; up to a NUL, the end, or
/// [`MAX_DESCRIPTOR_STRING`] bytes; printable ASCII kept, trimmed; empty is none.
fn descriptor_string(b: &[u8], off: u32) -> Option<String> {
    let off = off as usize;
    if off == 0 || off < DESCRIPTOR_HEADER || off >= b.len() {
        return None;
    }
    let tail = &b[off..];
    let end = tail
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(tail.len())
        .min(MAX_DESCRIPTOR_STRING);
    let s: String = tail[..end]
        .iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                ' '
            }
        })
        .collect();
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Parse the bytes `IOCTL_STORAGE_QUERY_PROPERTY` returned for `StorageDeviceProperty`
/// (`buf` cut to the byte count the call returned). `None` when even the fixed header is
/// not there. The valid length is the smaller of the bytes returned and the descriptor's
/// `Size`; a string offset outside it (or inside the header) is ignored.
pub fn parse_device_descriptor(buf: &[u8]) -> Option<DeviceDescriptor> {
    if buf.len() < DESCRIPTOR_HEADER {
        return None;
    }
    let size = u32_at(buf, 4)? as usize;
    let b = &buf[..buf.len().min(size.max(DESCRIPTOR_HEADER))];
    Some(DeviceDescriptor {
        removable: buf[10] != 0,
        vendor: descriptor_string(b, u32_at(buf, 12)?),
        product: descriptor_string(b, u32_at(buf, 16)?),
        serial: descriptor_string(b, u32_at(buf, 24)?),
        bus_type: u32_at(buf, 28)?,
    })
}

/// A `STORAGE_BUS_TYPE` (winioctl.h) as a [`Bus`]: `BusTypeUsb` (7) USB; `BusTypeSd` (12),
/// `BusTypeMmc` (13) MMC; `BusTypeAtapi` (2), `BusTypeAta` (3), `BusTypeSata` (11) SATA;
/// `BusTypeNvme` (17); `BusTypeScsi` (1), `BusTypeFibre` (6), `BusTypeiScsi` (9),
/// `BusTypeSas` (10) SCSI; `BusTypeFileBackedVirtual` (15, a mounted VHD) loop;
/// `BusTypeVirtual` (14), `BusTypeSpaces` (16) virtual; anything else unknown.
pub fn bus_of(bus_type: u32) -> Bus {
    match bus_type {
        7 => Bus::Usb,
        12 | 13 => Bus::Mmc,
        2 | 3 | 11 => Bus::Sata,
        17 => Bus::Nvme,
        1 | 6 | 9 | 10 => Bus::Scsi,
        15 => Bus::Loop,
        14 | 16 => Bus::Virtual,
        _ => Bus::Unknown,
    }
}

/// One `DISK_EXTENT`: where a volume lies on a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// `DiskNumber`: the `N` of `\\.\PhysicalDriveN`.
    pub disk: u32,
    /// `StartingOffset`, bytes.
    pub start: u64,
    /// `ExtentLength`, bytes.
    pub len: u64,
}

/// Parse a `VOLUME_DISK_EXTENTS` (winioctl.h: `NumberOfDiskExtents` u32, 4 bytes of
/// padding, then `DISK_EXTENT`s of 24 bytes: `DiskNumber` u32, padding, `StartingOffset`
/// and `ExtentLength` i64). Only extents wholly inside `buf` are read, at most
/// [`MAX_EXTENTS`]; negative offsets or lengths are dropped.
pub fn parse_disk_extents(buf: &[u8]) -> Vec<Extent> {
    let Some(n) = u32_at(buf, 0) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in 0..(n as usize).min(MAX_EXTENTS) {
        let o = 8 + i * 24;
        let (Some(disk), Some(start), Some(len)) =
            (u32_at(buf, o), i64_at(buf, o + 8), i64_at(buf, o + 16))
        else {
            break;
        };
        if let (Ok(start), Ok(len)) = (u64::try_from(start), u64::try_from(len)) {
            out.push(Extent { disk, start, len });
        }
    }
    out
}

/// The strings of a `REG_MULTI_SZ` value (UTF-16, each NUL-terminated, an empty string
/// ends the list); a missing final NUL ends the last string.
pub fn parse_multi_sz(w: &[u16]) -> Vec<String> {
    w.split(|&c| c == 0)
        .take_while(|s| !s.is_empty())
        .map(String::from_utf16_lossy)
        .collect()
}

/// The file of an `ExistingPageFiles` entry (`\??\C:\pagefile.sys`): the NT prefix
/// `\??\` dropped; `None` unless it is then a drive-letter path.
pub fn pagefile_path(entry: &str) -> Option<String> {
    let e = entry.trim();
    let e = e.strip_prefix(r"\??\").unwrap_or(e);
    let b = e.as_bytes();
    (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && b[2] == b'\\')
        .then(|| e.to_string())
}

/// The path that opens a volume: its GUID name without the trailing backslash
/// (`\\?\Volume{...}`; with it, the root directory would be opened).
pub fn volume_device(name: &str) -> String {
    name.trim_end_matches('\\').to_string()
}

/// A physical disk as the OS calls report it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Disk {
    /// `N` of `\\.\PhysicalDriveN`.
    pub number: u32,
    /// Bytes (`DISK_GEOMETRY_EX.DiskSize`, or `IOCTL_DISK_GET_LENGTH_INFO`).
    pub size: u64,
    /// `DISK_GEOMETRY.BytesPerSector`: the logical sector size.
    pub sector_size: u32,
    /// The physical sector size, when the disk tells (`StorageAccessAlignmentProperty`);
    /// else the logical one.
    pub physical_sector_size: u32,
    /// The device descriptor, when the query answered.
    pub descriptor: Option<DeviceDescriptor>,
    /// `IOCTL_DISK_IS_WRITABLE` failed with `ERROR_WRITE_PROTECT`.
    pub read_only: bool,
}

/// A volume as the OS calls report it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Volume {
    /// Its GUID name, `\\?\Volume{...}\`.
    pub name: String,
    /// Its NT device (`\Device\HarddiskVolume3`, from `QueryDosDeviceW`).
    pub nt_device: Option<String>,
    /// Its disk extents; empty when the volume would not say (then it is on no disk
    /// here, and if it holds the system, every disk counts as a system disk).
    pub extents: Vec<Extent>,
    /// Its mount points (`E:\`, `C:\mnt\x\`).
    pub mountpoints: Vec<String>,
    /// Its partition number (`STORAGE_DEVICE_NUMBER.PartitionNumber`), when known.
    pub partition_number: Option<u32>,
}

/// What holds the running system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SystemInfo {
    /// The Windows directory (`GetSystemWindowsDirectoryW`), for messages.
    pub windows_dir: Option<String>,
    /// The GUID name of the volume holding it; `None` when it could not be found.
    pub windows_volume: Option<String>,
    /// The NT device of the system partition, where the boot manager is (the registry's
    /// `HKLM\SYSTEM\Setup\SystemPartition`, `\Device\HarddiskVolume1`).
    pub system_partition: Option<String>,
    /// Page files: `(volume GUID name, file)`.
    pub pagefiles: Vec<(String, String)>,
}

fn same_volume(a: &str, b: &str) -> bool {
    volume_device(a).eq_ignore_ascii_case(&volume_device(b))
}

/// Build the listing: one [`Drive`] per disk, in disk-number order, named
/// `PhysicalDriveN` with path `\\.\PhysicalDriveN` and `devnum` `(N, 0)`; each volume
/// extent on the disk is a [`Partition`] (name: its first mount point, else its GUID name;
/// path: the volume's device path `\\?\Volume{...}`; start and size of the extent).
/// System reasons: the disks under the Windows directory's volume, under the system
/// partition, and under a page file's volume; when the Windows directory's volume is
/// unknown or its extents are, every disk gets the reason "cannot tell which disk holds
/// Windows".
pub fn assemble(mut disks: Vec<Disk>, volumes: &[Volume], sys: &SystemInfo) -> Vec<Drive> {
    disks.sort_by_key(|d| d.number);
    disks.dedup_by_key(|d| d.number);
    let windir = sys
        .windows_dir
        .as_deref()
        .unwrap_or("the Windows directory");
    let win_vol = sys
        .windows_volume
        .as_deref()
        .and_then(|w| volumes.iter().find(|v| same_volume(&v.name, w)));
    let unknown = match win_vol {
        Some(v) if !v.extents.is_empty() => None,
        Some(_) => Some(format!(
            "cannot tell which disk holds Windows ({windir}: its volume reports no disk extents)"
        )),
        None => Some(format!(
            "cannot tell which disk holds Windows ({windir}: volume not found)"
        )),
    };
    // (disk number, reason)
    let mut reasons: Vec<(u32, String)> = Vec::new();
    let mut mark = |v: &Volume, why: String| {
        for e in &v.extents {
            reasons.push((e.disk, why.clone()));
        }
    };
    if let Some(v) = win_vol {
        mark(v, format!("Windows ({windir})"));
    }
    if let Some(sp) = &sys.system_partition {
        for v in volumes {
            if v.nt_device
                .as_deref()
                .is_some_and(|d| d.eq_ignore_ascii_case(sp))
            {
                mark(v, format!("system partition, boot manager ({sp})"));
            }
        }
    }
    for (vol, file) in &sys.pagefiles {
        for v in volumes.iter().filter(|v| same_volume(&v.name, vol)) {
            mark(v, format!("page file ({file})"));
        }
    }
    disks
        .into_iter()
        .map(|d| {
            let mut why: Vec<String> = Vec::new();
            if let Some(u) = &unknown {
                why.push(u.clone());
            }
            for (n, r) in &reasons {
                if *n == d.number && !why.contains(r) {
                    why.push(r.clone());
                }
            }
            let mut partitions: Vec<Partition> = volumes
                .iter()
                .flat_map(|v| {
                    v.extents
                        .iter()
                        .filter(|e| e.disk == d.number)
                        .map(move |e| Partition {
                            name: v
                                .mountpoints
                                .first()
                                .cloned()
                                .unwrap_or_else(|| v.name.clone()),
                            path: PathBuf::from(volume_device(&v.name)),
                            number: v.partition_number,
                            start: e.start,
                            size: e.len,
                            mountpoints: v.mountpoints.iter().map(PathBuf::from).collect(),
                        })
                })
                .collect();
            partitions.sort_by_key(|p| p.start);
            let desc = d.descriptor.clone().unwrap_or_default();
            let name = format!("PhysicalDrive{}", d.number);
            Drive {
                path: PathBuf::from(format!(r"\\.\{name}")),
                name,
                devnum: (d.number, 0),
                size: d.size,
                logical_block_size: d.sector_size.max(1),
                physical_block_size: d.physical_sector_size.max(d.sector_size).max(1),
                vendor: desc.vendor.clone(),
                model: desc.product.clone(),
                bus: if d.descriptor.is_some() {
                    bus_of(desc.bus_type)
                } else {
                    Bus::Unknown
                },
                removable: desc.removable,
                read_only: d.read_only,
                partitions,
                mountpoints: Vec::new(),
                holders: Vec::new(),
                backing_file: None,
                is_system: !why.is_empty(),
                system_reasons: why,
            }
        })
        .collect()
}

/// The drives with a partition `hit` picks, and that partition's mount points (of the
/// first such drive); `None` when no drive has one.
fn holding(
    drives: &[Drive],
    hit: impl Fn(&Partition) -> bool,
) -> Option<(Vec<&Drive>, Vec<PathBuf>)> {
    let ds: Vec<&Drive> = drives
        .iter()
        .filter(|d| d.partitions.iter().any(&hit))
        .collect();
    let mps = ds
        .first()
        .and_then(|d| d.partitions.iter().find(|p| hit(p)))
        .map(|p| p.mountpoints.clone())
        .unwrap_or_default();
    (!ds.is_empty()).then_some((ds, mps))
}

/// The drives a destination path concerns, for the refusal checks: a whole disk, or every
/// disk under a drive-letter or GUID-named volume (with that volume's mount points as the
/// "mounted" list). `None` when no listed drive matches.
pub fn drives_of<'a>(
    dev: &DevicePath,
    drives: &'a [Drive],
) -> Option<(Vec<&'a Drive>, Vec<PathBuf>)> {
    match dev {
        DevicePath::Disk(n) => {
            let d = drives.iter().find(|d| d.devnum == (*n, 0))?;
            Some((vec![d], d.all_mountpoints()))
        }
        DevicePath::Letter(c) => {
            let root = format!("{c}:\\");
            let hit = |p: &Partition| {
                p.mountpoints
                    .iter()
                    .any(|m| m.to_string_lossy().eq_ignore_ascii_case(&root))
            };
            holding(drives, hit)
        }
        DevicePath::Volume(g) => {
            let hit = |p: &Partition| {
                p.path
                    .to_string_lossy()
                    .to_ascii_lowercase()
                    .ends_with(&g.to_ascii_lowercase())
            };
            holding(drives, hit)
        }
        DevicePath::Other(_) => None,
    }
}

/// `DISK_GEOMETRY_EX` (winioctl.h) from `IOCTL_DISK_GET_DRIVE_GEOMETRY_EX`: the disk size
/// (`DiskSize`, i64 at 24) and the logical sector size (`Geometry.BytesPerSector`, u32 at
/// 20). `None` when the bytes are short, the size negative or the sector size 0.
pub fn parse_geometry_ex(buf: &[u8]) -> Option<(u64, u32)> {
    let sector = u32_at(buf, 20)?;
    let size = u64::try_from(i64_at(buf, 24)?).ok()?;
    (sector > 0).then_some((size, sector))
}

/// `STORAGE_ACCESS_ALIGNMENT_DESCRIPTOR` (winioctl.h) from `IOCTL_STORAGE_QUERY_PROPERTY`
/// / `StorageAccessAlignmentProperty`: `(BytesPerLogicalSector, BytesPerPhysicalSector)`
/// (u32 at 16 and 20), each a power of two from 512 to 64 KiB, else `None`.
pub fn parse_access_alignment(buf: &[u8]) -> Option<(u32, u32)> {
    let ok = |v: u32| v.is_power_of_two() && (512..=65536).contains(&v);
    let (l, p) = (u32_at(buf, 16)?, u32_at(buf, 20)?);
    (ok(l) && ok(p)).then_some((l, p))
}

/// `STORAGE_DEVICE_NUMBER` (winioctl.h) from `IOCTL_STORAGE_GET_DEVICE_NUMBER`:
/// `(DeviceNumber, PartitionNumber)` (u32 at 4 and 8; the partition number is 0 for a
/// whole disk and `u32::MAX` where there is none).
pub fn parse_device_number(buf: &[u8]) -> Option<(u32, u32)> {
    Some((u32_at(buf, 4)?, u32_at(buf, 8)?))
}

/// The Windows refusal checks of a destination, with `list` giving the drives (the OS
/// listing on Windows, a fixed list in tests): a file system path passes; a device path
/// other than a disk or volume is refused ([`Error::Unsupported`]); a disk or
/// volume missing from the listing fails with ENOENT; then the shared decision of [`crate::check_destination`]: a system
/// disk is refused, and mounted volumes unless `safety.unmount` or `safety.force` (the
/// volumes are locked and dismounted when the writer opens the drive, and stay so until
/// it is done). A listing that fails refuses every device.
pub fn check_destination(
    path: &std::path::Path,
    safety: Safety,
    list: impl FnOnce() -> Result<Vec<Drive>>,
) -> Result<()> {
    let Some(dev) = parse_device_path(&path.to_string_lossy()) else {
        return Ok(());
    };
    if let DevicePath::Other(name) = &dev {
        return Err(Error::Unsupported {
            what: format!(
                "writing to the device '{name}' (only \\\\.\\PhysicalDriveN disks and drive-letter or \\\\?\\Volume{{GUID}} volumes are recognised)"
            ),
        });
    }
    let drives = list()?;
    let Some((ds, mounted)) = drives_of(&dev, &drives) else {
        if let DevicePath::Disk(_) = dev {
            return Err(
                sparsekit_io::IoError::from_errno("open", sparsekit_io::errno::ENOENT)
                    .with_path(path)
                    .into(),
            );
        }
        // A volume on no listed disk: missing, or one whose disk extents are unknown (so
        // nothing says whether it holds the system).
        return Err(Error::Unsupported {
            what: format!(
                "writing to the volume '{}': it lies on no disk of the drive listing (no such volume, or its disk extents are unknown)",
                path.display()
            ),
        });
    };
    decide(path, &ds, mounted, safety, None)
}

/// `(N, 0)` for a `\\.\PhysicalDriveN` path (either prefix, any case); `None` for a file
/// system path. Volumes and other device paths are `Unsupported`: they are devices, but
/// have no disk number of their own (the refusal checks place them on their disks).
pub fn block_devnum(path: &std::path::Path) -> std::io::Result<Option<crate::types::DevNum>> {
    match parse_device_path(&path.to_string_lossy()) {
        None => Ok(None),
        Some(DevicePath::Disk(n)) => Ok(Some((n, 0))),
        Some(_) => Err(std::io::Error::from(std::io::ErrorKind::Unsupported)),
    }
}

#[cfg(windows)]
pub use live::{list_drives, lock_disk_volumes, open_device, system_info, volumes};

/// The listing and the opening of disks on Windows: the logic above fed with the OS calls
/// of `sys/windows_drives.rs`.
///
/// Disks are found by probing `\\.\PhysicalDrive0` to `\\.\PhysicalDrive63` (plus any
/// higher number a volume's extents name): the disk class driver numbers disks densely
/// from 0, these are the numbers `DISK_EXTENT.DiskNumber` uses, and probing needs no
/// SetupAPI (setupapi.h `SetupDiGetClassDevsW` with `GUID_DEVINTERFACE_DISK` would find
/// the same disks through device interface paths, one more library and more code). A
/// disk that does not exist fails `CreateFileW` with ERROR_FILE_NOT_FOUND and is skipped.
#[cfg(windows)]
mod live {
    use std::io;
    use std::path::Path;

    use sparsekit_io::IoError;

    use super::{
        assemble, pagefile_path, parse_access_alignment, parse_device_descriptor,
        parse_device_number, parse_disk_extents, parse_geometry_ex, parse_multi_sz, volume_device,
        DevicePath, Disk, SystemInfo, Volume, MAX_DISK_NUMBER,
    };
    use crate::error::{Error, Result};
    use crate::sector::SectorAligned;
    use crate::sys::{self, RawDevice, VolumeLocks};
    use crate::types::{Drive, Safety};

    /// Disk numbers probed: `\\.\PhysicalDrive0` to `\\.\PhysicalDrive63`.
    const PROBE_DISKS: u32 = 64;

    /// One disk, or `None` when `\\.\PhysicalDriveN` does not open or has no size (an
    /// empty card reader: `IOCTL_DISK_GET_DRIVE_GEOMETRY_EX` fails with ERROR_NOT_READY).
    fn disk(n: u32) -> Option<Disk> {
        let f = sys::open_query(&format!(r"\\.\PhysicalDrive{n}")).ok()?;
        let (size, sector) = sys::geometry_ex(&f)
            .ok()
            .and_then(|b| parse_geometry_ex(&b))?;
        if size == 0 {
            return None;
        }
        let descriptor = sys::device_descriptor(&f)
            .ok()
            .and_then(|b| parse_device_descriptor(&b));
        let physical = sys::access_alignment(&f)
            .ok()
            .and_then(|b| parse_access_alignment(&b))
            .map_or(sector, |(_, p)| p);
        Some(Disk {
            number: n,
            size,
            sector_size: sector,
            physical_sector_size: physical,
            descriptor,
            read_only: sys::write_protected(&f),
        })
    }

    /// Every volume with its disk extents, partition number, mount points and NT device.
    /// Volumes that answer no extents (optical drives, RAM disks) have none.
    pub fn volumes() -> io::Result<Vec<Volume>> {
        Ok(sys::volume_names()?
            .into_iter()
            .map(|name| {
                let f = sys::open_query(&volume_device(&name)).ok();
                let extents = f
                    .as_ref()
                    .and_then(|f| sys::volume_disk_extents(f).ok())
                    .map(|b| parse_disk_extents(&b))
                    .unwrap_or_default();
                let partition_number = f
                    .as_ref()
                    .and_then(|f| sys::device_number(f).ok())
                    .and_then(|b| parse_device_number(&b))
                    .map(|(_, p)| p)
                    .filter(|&p| p != 0 && p != u32::MAX);
                let short = volume_device(&name);
                Volume {
                    nt_device: short.strip_prefix(r"\\?\").and_then(sys::query_dos_device),
                    mountpoints: parse_multi_sz(&sys::volume_path_names(&name)),
                    extents,
                    partition_number,
                    name,
                }
            })
            .collect())
    }

    /// What holds the running system: the Windows directory and its volume; the system
    /// partition (`HKLM\SYSTEM\Setup` `SystemPartition`, the NT device the boot manager
    /// is on); the page files (`HKLM\SYSTEM\CurrentControlSet\Control\Session
    /// Manager\Memory Management` `ExistingPageFiles`) and their volumes.
    pub fn system_info() -> SystemInfo {
        let windows_dir = sys::windows_directory();
        let windows_volume = windows_dir
            .as_deref()
            .and_then(|d| sys::volume_of(&format!("{d}\\")));
        let system_partition =
            sys::registry_sz(r"SYSTEM\Setup", "SystemPartition").filter(|s| !s.is_empty());
        let pagefiles = sys::registry_multi_sz(
            r"SYSTEM\CurrentControlSet\Control\Session Manager\Memory Management",
            "ExistingPageFiles",
        )
        .map(|w| parse_multi_sz(&w))
        .unwrap_or_default()
        .iter()
        .filter_map(|e| pagefile_path(e))
        .filter_map(|f| Some((sys::volume_of(&f)?, f)))
        .collect();
        SystemInfo {
            windows_dir,
            windows_volume,
            system_partition,
            pagefiles,
        }
    }

    /// The drive listing on Windows (see [`crate::list`]). A volume enumeration that
    /// fails (wine without a volume manager) leaves every disk without volumes, and so
    /// every disk a system disk (the Windows directory's volume is on no known disk).
    pub fn list_drives() -> Result<Vec<Drive>> {
        let vols = volumes().unwrap_or_default();
        let mut numbers: Vec<u32> = (0..PROBE_DISKS).collect();
        for v in &vols {
            for e in &v.extents {
                if e.disk <= MAX_DISK_NUMBER && !numbers.contains(&e.disk) {
                    numbers.push(e.disk);
                }
            }
        }
        let disks: Vec<Disk> = numbers.into_iter().filter_map(disk).collect();
        Ok(assemble(disks, &vols, &system_info()))
    }

    /// Lock and dismount every volume with an extent on disk `disk`. A volume that does
    /// not open (no administrator rights) fails with [`Error::Io`], one that does not lock
    /// (files open on it) with [`Error::DriveBusy`]; a volume list that cannot be read
    /// fails too (nothing would say which volumes to take offline).
    pub fn lock_disk_volumes(path: &Path, disk: u32, force: bool) -> Result<VolumeLocks> {
        let vols = volumes().map_err(|e| IoError::new("FindFirstVolumeW", e).with_path(path))?;
        let mut locks = VolumeLocks::default();
        for v in vols
            .iter()
            .filter(|v| v.extents.iter().any(|e| e.disk == disk))
        {
            let dev = volume_device(&v.name);
            let f = sys::open_rw(&dev, false).map_err(|e| {
                Error::Io(IoError::new("CreateFileW", e).with_path(Path::new(&dev)))
            })?;
            sys::lock_and_dismount(&f, force).map_err(|e| busy(path, &dev, e))?;
            locks.hold(f);
        }
        Ok(locks)
    }

    fn busy(path: &Path, what: &str, e: io::Error) -> Error {
        Error::DriveBusy {
            path: path.to_path_buf(),
            reason: format!("cannot lock and dismount {what}: {e}"),
            errno: e.raw_os_error(),
        }
    }

    /// Open a disk or volume destination for writing, after [`crate::check_destination`]
    /// passed: a disk's volumes are locked and dismounted first (busy volumes fail with
    /// [`Error::DriveBusy`] unless `safety.force`); a drive-letter or GUID volume is
    /// opened, locked and dismounted through the handle that writes it, with
    /// `FSCTL_ALLOW_EXTENDED_DASD_IO` so its last sectors (past the file system's end)
    /// can be written. The size is `IOCTL_DISK_GET_LENGTH_INFO`, the sector size the
    /// listing's (`DISK_GEOMETRY.BytesPerSector`).
    pub fn open_device(
        path: &Path,
        dev: &DevicePath,
        safety: Safety,
    ) -> Result<SectorAligned<RawDevice>> {
        let io = |op: &'static str, e: io::Error| Error::Io(IoError::new(op, e).with_path(path));
        let (file, locks, sector) = match dev {
            DevicePath::Disk(n) => {
                let locks = lock_disk_volumes(path, *n, safety.force)?;
                let f = sys::open_rw(&format!(r"\\.\PhysicalDrive{n}"), true)
                    .map_err(|e| io("CreateFileW", e))?;
                let sector = sys::geometry_ex(&f)
                    .ok()
                    .and_then(|b| parse_geometry_ex(&b))
                    .map_or(4096, |(_, s)| s);
                (f, locks, sector)
            }
            DevicePath::Letter(_) | DevicePath::Volume(_) => {
                let p = match dev {
                    DevicePath::Letter(c) => format!(r"\\.\{c}:"),
                    DevicePath::Volume(g) => format!(r"\\?\{g}"),
                    _ => unreachable!(),
                };
                let f = sys::open_rw(&p, true).map_err(|e| io("CreateFileW", e))?;
                sys::lock_and_dismount(&f, safety.force).map_err(|e| busy(path, &p, e))?;
                sys::allow_extended_dasd_io(&f)
                    .map_err(|e| io("DeviceIoControl(FSCTL_ALLOW_EXTENDED_DASD_IO)", e))?;
                let sector = sparsekit_io::sys::block_sizes(&f).map_or(4096, |(l, _)| l);
                (f, VolumeLocks::default(), sector)
            }
            DevicePath::Other(name) => {
                return Err(Error::Unsupported {
                    what: format!("writing to the device '{name}'"),
                })
            }
        };
        let size = sparsekit_io::sys::block_device_size(&file)
            .map_err(|e| io("DeviceIoControl(IOCTL_DISK_GET_LENGTH_INFO)", e))?;
        Ok(SectorAligned::new(
            RawDevice::new(
                file,
                path.to_path_buf(),
                size,
                matches!(dev, DevicePath::Disk(_)),
                locks,
            ),
            sector,
            true,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsekit_io::ErrorInfo;

    #[test]
    fn device_paths() {
        use DevicePath::*;
        assert_eq!(parse_device_path(r"\\.\PhysicalDrive0"), Some(Disk(0)));
        assert_eq!(parse_device_path(r"\\?\physicaldrive12"), Some(Disk(12)));
        assert_eq!(parse_device_path(r"//./PHYSICALDRIVE3"), Some(Disk(3)));
        assert_eq!(parse_device_path(r"\\.\PhysicalDrive1\"), Some(Disk(1)));
        assert_eq!(
            parse_device_path(r"\\.\PhysicalDrive"),
            Some(Other("PhysicalDrive".into()))
        );
        assert_eq!(
            parse_device_path(r"\\.\PhysicalDrive99999999999"),
            Some(Other("PhysicalDrive99999999999".into()))
        );
        assert_eq!(
            parse_device_path(r"\\.\PhysicalDrive-1"),
            Some(Other("PhysicalDrive-1".into()))
        );
        assert_eq!(parse_device_path(r"\\.\e:"), Some(Letter('E')));
        assert_eq!(parse_device_path(r"\\?\E:\"), Some(Letter('E')));
        assert_eq!(
            parse_device_path(r"\\?\Volume{1b3b-22}\"),
            Some(Volume("Volume{1b3b-22}".into()))
        );
        assert_eq!(
            parse_device_path(r"\\.\CdRom0"),
            Some(Other("CdRom0".into()))
        );
        // File system paths.
        assert_eq!(parse_device_path(r"C:\images\x.img"), None);
        assert_eq!(parse_device_path(r"\\?\C:\images\x.img"), None);
        assert_eq!(parse_device_path(r"\\?\UNC\server\share\x.img"), None);
        assert_eq!(parse_device_path("/tmp/x.img"), None);
        assert_eq!(parse_device_path(r"\\server\share\x.img"), None);
    }

    /// A descriptor as a driver would return it: header, then strings.
    fn descriptor(strings: &[(usize, &[u8])], size: u32, removable: bool, bus: u32) -> Vec<u8> {
        let mut b = vec![0u8; 40];
        b[0..4].copy_from_slice(&1u32.to_le_bytes());
        b[4..8].copy_from_slice(&size.to_le_bytes());
        b[10] = removable as u8;
        b[28..32].copy_from_slice(&bus.to_le_bytes());
        for (field, s) in strings {
            let off = b.len() as u32;
            b[*field..*field + 4].copy_from_slice(&off.to_le_bytes());
            b.extend_from_slice(s);
        }
        b
    }

    #[test]
    fn descriptors() {
        let b = descriptor(
            &[
                (12, b"SanDisk \0"),
                (16, b"Cruzer Blade    \0"),
                (24, b"4C53\0"),
            ],
            0,
            true,
            7,
        );
        let mut b2 = b.clone();
        let n = b2.len() as u32;
        b2[4..8].copy_from_slice(&n.to_le_bytes());
        let d = parse_device_descriptor(&b2).unwrap();
        assert_eq!(d.vendor.as_deref(), Some("SanDisk"));
        assert_eq!(d.product.as_deref(), Some("Cruzer Blade"));
        assert_eq!(d.serial.as_deref(), Some("4C53"));
        assert!(d.removable);
        assert_eq!(bus_of(d.bus_type), Bus::Usb);
        // Size 0 (claims nothing past the header): no strings are trusted.
        let d = parse_device_descriptor(&b).unwrap();
        assert_eq!((d.vendor, d.product), (None, None));
    }

    #[test]
    fn hostile_descriptors() {
        // Too short for the header.
        assert_eq!(parse_device_descriptor(&[0u8; 35]), None);
        assert_eq!(parse_device_descriptor(&[]), None);
        // Offsets past the end, into the header, u32::MAX.
        let mut b = descriptor(&[(16, b"Model\0")], 1000, false, 11);
        b[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        b[24..28].copy_from_slice(&8u32.to_le_bytes());
        let d = parse_device_descriptor(&b).unwrap();
        assert_eq!(d.vendor, None);
        assert_eq!(d.serial, None, "an offset inside the header is ignored");
        assert_eq!(d.product.as_deref(), Some("Model"));
        assert_eq!(bus_of(d.bus_type), Bus::Sata);
        // No NUL: the string ends at the bytes returned.
        let b = descriptor(&[(16, b"NoTerminator")], 1000, false, 17);
        let d = parse_device_descriptor(&b).unwrap();
        assert_eq!(d.product.as_deref(), Some("NoTerminator"));
        // Size cuts the string short.
        let mut b = descriptor(&[(16, b"Truncated\0")], 0, false, 17);
        let cut = (40 + 5) as u32;
        b[4..8].copy_from_slice(&cut.to_le_bytes());
        assert_eq!(
            parse_device_descriptor(&b).unwrap().product.as_deref(),
            Some("Trunc")
        );
        // Control bytes and non-ASCII become spaces; only spaces is none.
        let b = descriptor(
            &[(12, b"\x01\x02 \xff\0"), (16, b"A\x07B\0")],
            1000,
            false,
            0,
        );
        let d = parse_device_descriptor(&b).unwrap();
        assert_eq!(d.vendor, None);
        assert_eq!(d.product.as_deref(), Some("A B"));
        // A huge string is capped.
        let long = vec![b'x'; 10_000];
        let b = descriptor(&[(16, &long)], u32::MAX, false, 0);
        assert_eq!(
            parse_device_descriptor(&b).unwrap().product.unwrap().len(),
            MAX_DESCRIPTOR_STRING
        );
        // Every cut of a valid descriptor parses or is none, without panicking.
        let b = descriptor(&[(12, b"V\0"), (16, b"P\0"), (24, b"S\0")], 46, true, 7);
        for n in 0..b.len() {
            let _ = parse_device_descriptor(&b[..n]);
        }
    }

    fn extents_bytes(n: u32, ext: &[(u32, i64, i64)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        for (d, s, l) in ext {
            b.extend_from_slice(&d.to_le_bytes());
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&s.to_le_bytes());
            b.extend_from_slice(&l.to_le_bytes());
        }
        b
    }

    #[test]
    fn extents() {
        let b = extents_bytes(2, &[(1, 1 << 20, 1 << 30), (3, 0, 4096)]);
        assert_eq!(
            parse_disk_extents(&b),
            [
                Extent {
                    disk: 1,
                    start: 1 << 20,
                    len: 1 << 30
                },
                Extent {
                    disk: 3,
                    start: 0,
                    len: 4096
                }
            ]
        );
        // A count beyond the bytes returned: only whole extents.
        let b = extents_bytes(u32::MAX, &[(1, 0, 10)]);
        assert_eq!(parse_disk_extents(&b).len(), 1);
        assert_eq!(parse_disk_extents(&b[..b.len() - 1]).len(), 0);
        assert!(parse_disk_extents(&[1, 0]).is_empty());
        // Negative values dropped.
        let b = extents_bytes(2, &[(1, -1, 10), (2, 0, -5)]);
        assert!(parse_disk_extents(&b).is_empty());
        // At most MAX_EXTENTS.
        let many: Vec<(u32, i64, i64)> = (0..100).map(|i| (i, 0, 1)).collect();
        assert_eq!(
            parse_disk_extents(&extents_bytes(100, &many)).len(),
            MAX_EXTENTS
        );
    }

    #[test]
    fn registry_values() {
        let w: Vec<u16> = "\\??\\C:\\pagefile.sys\0\\??\\D:\\swapfile.sys\0\0junk"
            .encode_utf16()
            .collect();
        let v = parse_multi_sz(&w);
        assert_eq!(v, [r"\??\C:\pagefile.sys", r"\??\D:\swapfile.sys"]);
        assert_eq!(pagefile_path(&v[0]).as_deref(), Some(r"C:\pagefile.sys"));
        assert_eq!(pagefile_path("?:\\pagefile.sys"), None);
        assert_eq!(pagefile_path(""), None);
        let unterminated: Vec<u16> = "E:\\p.sys".encode_utf16().collect();
        assert_eq!(parse_multi_sz(&unterminated), [r"E:\p.sys"]);
        assert!(parse_multi_sz(&[]).is_empty());
    }

    fn vol(name: &str, dev: &str, ext: &[(u32, u64, u64)], mps: &[&str]) -> Volume {
        Volume {
            name: format!(r"\\?\Volume{{{name}}}\"),
            nt_device: Some(dev.to_string()),
            extents: ext
                .iter()
                .map(|&(disk, start, len)| Extent { disk, start, len })
                .collect(),
            mountpoints: mps.iter().map(|s| s.to_string()).collect(),
            partition_number: None,
        }
    }

    fn disk(n: u32, bus: u32, removable: bool) -> Disk {
        Disk {
            number: n,
            size: 8 << 30,
            sector_size: 512,
            physical_sector_size: 4096,
            descriptor: Some(DeviceDescriptor {
                vendor: Some("V".into()),
                product: Some("P".into()),
                serial: None,
                removable,
                bus_type: bus,
            }),
            read_only: false,
        }
    }

    fn machine() -> (Vec<Disk>, Vec<Volume>) {
        let volumes = vec![
            vol(
                "esp",
                r"\Device\HarddiskVolume1",
                &[(0, 1 << 20, 100 << 20)],
                &[],
            ),
            vol(
                "c",
                r"\Device\HarddiskVolume3",
                &[(0, 200 << 20, 1 << 30)],
                &[r"C:\"],
            ),
            vol(
                "d",
                r"\Device\HarddiskVolume4",
                &[(1, 1 << 20, 1 << 30)],
                &[r"D:\"],
            ),
            vol(
                "stick",
                r"\Device\HarddiskVolume9",
                &[(2, 1 << 20, 1 << 30)],
                &[r"E:\", r"C:\mnt\stick\"],
            ),
        ];
        (
            vec![disk(2, 7, true), disk(0, 17, false), disk(1, 11, false)],
            volumes,
        )
    }

    #[test]
    fn system_disks() {
        let (disks, volumes) = machine();
        let sys = SystemInfo {
            windows_dir: Some(r"C:\Windows".into()),
            windows_volume: Some(r"\\?\Volume{c}\".into()),
            system_partition: Some(r"\Device\HarddiskVolume1".into()),
            pagefiles: vec![(r"\\?\Volume{d}\".into(), r"D:\pagefile.sys".into())],
        };
        let drives = assemble(disks, &volumes, &sys);
        let names: Vec<&str> = drives.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            ["PhysicalDrive0", "PhysicalDrive1", "PhysicalDrive2"]
        );
        let d0 = &drives[0];
        assert_eq!(d0.path, PathBuf::from(r"\\.\PhysicalDrive0"));
        assert!(d0.is_system);
        assert_eq!(
            d0.system_reasons,
            [
                r"Windows (C:\Windows)",
                r"system partition, boot manager (\Device\HarddiskVolume1)"
            ]
        );
        assert_eq!(d0.bus, Bus::Nvme);
        assert_eq!(d0.partitions.len(), 2);
        assert_eq!(d0.partitions[0].path, PathBuf::from(r"\\?\Volume{esp}"));
        assert_eq!(d0.partitions[1].name, r"C:\");
        assert_eq!(d0.partitions[1].start, 200 << 20);
        assert!(drives[1].is_system, "page file on D:");
        assert_eq!(drives[1].system_reasons, [r"page file (D:\pagefile.sys)"]);
        let stick = &drives[2];
        assert!(!stick.is_system);
        assert_eq!((stick.bus, stick.removable), (Bus::Usb, true));
        assert_eq!(
            (stick.logical_block_size, stick.physical_block_size),
            (512, 4096)
        );
        assert_eq!(
            stick.all_mountpoints(),
            [PathBuf::from(r"E:\"), PathBuf::from(r"C:\mnt\stick\")]
        );

        // Destination lookups.
        let (ds, mps) = drives_of(&DevicePath::Disk(2), &drives).unwrap();
        assert_eq!((ds.len(), mps.len()), (1, 2));
        let (ds, _) = drives_of(&DevicePath::Letter('C'), &drives).unwrap();
        assert_eq!(ds[0].name, "PhysicalDrive0");
        let (ds, mps) = drives_of(&DevicePath::Volume("volume{STICK}".into()), &drives).unwrap();
        assert_eq!((ds[0].name.as_str(), mps.len()), ("PhysicalDrive2", 2));
        assert!(drives_of(&DevicePath::Disk(7), &drives).is_none());
        assert!(drives_of(&DevicePath::Letter('Z'), &drives).is_none());
        assert!(drives_of(&DevicePath::Other("CdRom0".into()), &drives).is_none());
    }

    #[test]
    fn fixed_structs() {
        let mut g = vec![0u8; 32];
        g[20..24].copy_from_slice(&512u32.to_le_bytes());
        g[24..32].copy_from_slice(&(16i64 << 30).to_le_bytes());
        assert_eq!(parse_geometry_ex(&g), Some((16 << 30, 512)));
        assert_eq!(parse_geometry_ex(&g[..31]), None);
        g[24..32].copy_from_slice(&(-1i64).to_le_bytes());
        assert_eq!(parse_geometry_ex(&g), None);
        let mut a = vec![0u8; 28];
        a[16..20].copy_from_slice(&512u32.to_le_bytes());
        a[20..24].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(parse_access_alignment(&a), Some((512, 4096)));
        a[20..24].copy_from_slice(&4095u32.to_le_bytes());
        assert_eq!(parse_access_alignment(&a), None);
        assert_eq!(parse_access_alignment(&a[..20]), None);
        let mut n = vec![0u8; 12];
        n[4..8].copy_from_slice(&3u32.to_le_bytes());
        n[8..12].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(parse_device_number(&n), Some((3, 2)));
        assert_eq!(parse_device_number(&n[..11]), None);
    }

    #[test]
    fn destination_checks() {
        use crate::types::Safety;
        use std::path::Path;
        let (disks, volumes) = machine();
        let sys = SystemInfo {
            windows_dir: Some(r"C:\Windows".into()),
            windows_volume: Some(r"\\?\Volume{c}\".into()),
            ..Default::default()
        };
        let drives = assemble(disks, &volumes, &sys);
        let list = || Ok(drives.clone());
        let check = |p: &str, s: Safety| check_destination(Path::new(p), s, list);
        let code = |p: &str, s: Safety| check(p, s).map_err(|e| e.code()).err();
        let none = Safety::default();
        let force = Safety {
            force: true,
            unmount: false,
            ..Safety::default()
        };
        let unmount = Safety {
            force: false,
            unmount: true,
            ..Safety::default()
        };
        // The system disk, by any spelling, and its volume by letter.
        for p in [r"\\.\PhysicalDrive0", r"\\?\physicaldrive0", r"\\.\C:"] {
            assert_eq!(code(p, none), Some("ERR_SPARSEKIT_SYSTEM_DRIVE"), "{p}");
            assert_eq!(code(p, unmount), Some("ERR_SPARSEKIT_SYSTEM_DRIVE"), "{p}");
        }
        let e = check(r"\\.\PhysicalDrive0", none).unwrap_err();
        assert!(e.to_string().contains("Windows"), "{e}");
        assert_eq!(code(r"\\.\PhysicalDrive0", force), None);
        // The stick: mounted (E:), so busy unless unmounted (by the writer) or forced.
        assert_eq!(
            code(r"\\.\PhysicalDrive2", none),
            Some("ERR_SPARSEKIT_DRIVE_BUSY")
        );
        assert_eq!(code(r"\\.\E:", none), Some("ERR_SPARSEKIT_DRIVE_BUSY"));
        assert_eq!(code(r"\\.\PhysicalDrive2", unmount), None);
        assert_eq!(code(r"\\.\PhysicalDrive2", force), None);
        // Unlisted disks, unknown devices; files pass.
        let e = check(r"\\.\PhysicalDrive9", force).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(sparsekit_io::errno::ENOENT));
        // A volume on no listed disk (wine's C:, whose extents are unknown).
        assert_eq!(code(r"\\.\Z:", force), Some("ERR_SPARSEKIT_UNSUPPORTED"));
        assert_eq!(
            code(r"\\.\CdRom0", force),
            Some("ERR_SPARSEKIT_UNSUPPORTED")
        );
        assert_eq!(
            code(r"\\.\Harddisk0Partition1", force),
            Some("ERR_SPARSEKIT_UNSUPPORTED")
        );
        assert_eq!(code(r"C:\images\out.img", none), None);
        // A listing that fails (wine, an OS call refused) refuses every device.
        let failing = || {
            Err(Error::Unsupported {
                what: "no listing".into(),
            })
        };
        assert!(check_destination(Path::new(r"\\.\PhysicalDrive0"), force, failing).is_err());
        // No volume known for the Windows directory: the stick is a system disk too.
        let (disks, volumes) = machine();
        let drives = assemble(disks, &volumes, &SystemInfo::default());
        let e = check_destination(Path::new(r"\\.\PhysicalDrive2"), unmount, || Ok(drives))
            .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_SYSTEM_DRIVE");
    }

    #[test]
    fn unknown_windows_volume_makes_every_disk_system() {
        let (disks, mut volumes) = machine();
        // Wine, or a call that failed: the Windows directory's volume is not known.
        let sys = SystemInfo {
            windows_dir: Some(r"C:\windows".into()),
            ..Default::default()
        };
        let drives = assemble(disks.clone(), &volumes, &sys);
        assert!(drives.iter().all(|d| d.is_system), "{drives:?}");
        assert!(drives[2].system_reasons[0].contains("cannot tell"));
        // Known volume, but it reports no extents (a RAM disk, a network-backed volume).
        volumes[1].extents.clear();
        let sys = SystemInfo {
            windows_volume: Some(r"\\?\Volume{C}".into()),
            ..Default::default()
        };
        let drives = assemble(disks, &volumes, &sys);
        assert!(drives.iter().all(|d| d.is_system));
        // No disks at all: an empty list, nothing offered.
        assert!(assemble(Vec::new(), &volumes, &sys).is_empty());
    }

    #[test]
    fn spanned_volume_marks_every_disk() {
        let (disks, mut volumes) = machine();
        volumes[1].extents.push(Extent {
            disk: 2,
            start: 0,
            len: 1 << 20,
        });
        let sys = SystemInfo {
            windows_volume: Some(r"\\?\Volume{c}\".into()),
            ..Default::default()
        };
        let drives = assemble(disks, &volumes, &sys);
        assert!(drives[0].is_system && drives[2].is_system && !drives[1].is_system);
    }
}
