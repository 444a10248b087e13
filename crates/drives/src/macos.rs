//! The macOS drive listing's logic, apart from the OS calls (those are in
//! `sys/macos_drives.rs`, compiled on macOS only, which import nothing from here): every
//! function here takes names, bytes and plain values and is tested on every OS, except the
//! `live` part (macOS only: `list_drives`, `check_destination_here`, `open_direct`) that
//! feeds the logic with the OS calls' answers.
//!
//! Without IOKit or DiskArbitration (this crate links only libSystem) a disk's place in
//! the device tree is unknown: whether it is internal, removable, on USB, or a disk
//! synthesized by APFS for a container. What can be known from `/dev`, `getfsstat(2)` and
//! reading the disks (root only: the nodes are `root:operator 0640`):
//!
//! - whole disks are the `/dev/diskN` nodes, slices `/dev/diskNsM` (APFS volumes and
//!   their snapshots add `sK` levels: `disk3s1s1`); a mount's `f_mntfromname`
//!   (`/dev/disk3s1s1`) names its disk ([`parse_disk_name`]);
//! - a disk whose slices are mounted as `apfs`, or whose first block holds an APFS
//!   container superblock (`nx_superblock_t`, magic `NXSB`, Apple File System Reference),
//!   is a synthesized container disk; its physical store is the slice of another disk
//!   whose first block holds the same superblock (same `nx_uuid`): [`parse_nx_uuid`];
//! - the system disk: the disk whose slice is mounted at `/` or under `/System` (the Data,
//!   Preboot, VM (swap) and Update volumes), the physical store of that disk if it is a
//!   container, and — when that store cannot be resolved (not root: nothing can be read)
//!   — every other disk, since any of them might be it ([`assemble`]).

use std::path::PathBuf;

use crate::decide::decide;
use crate::error::Result;
use crate::types::{Bus, Drive, Partition, Safety};

/// Deepest slice nesting accepted in a name (`disk3s1s1` is 2).
const MAX_SLICE_DEPTH: usize = 4;

/// `diskN`, `diskNsM`, `diskNsMsK` (also with `r` for the raw node): the disk number
/// and the slice numbers. `None` for anything else.
pub fn parse_disk_name(name: &str) -> Option<(u32, Vec<u32>)> {
    let rest = name.strip_prefix('r').unwrap_or(name);
    let rest = rest.strip_prefix("disk")?;
    let mut parts = rest.split('s');
    let num = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let disk = num(parts.next()?)?;
    let mut slices = Vec::new();
    for p in parts {
        slices.push(num(p)?);
        if slices.len() > MAX_SLICE_DEPTH {
            return None;
        }
    }
    Some((disk, slices))
}

/// For a device path (`/dev/disk2`, `/dev/rdisk2s1`): the disk number, the slice numbers
/// and whether it is the raw (character) node. `None` outside `/dev` or for other names.
pub fn parse_device_path(path: &str) -> Option<(u32, Vec<u32>, bool)> {
    let name = path.strip_prefix("/dev/")?;
    if name.contains('/') {
        return None;
    }
    let (d, s) = parse_disk_name(name)?;
    Some((d, s, name.starts_with('r')))
}

/// The first-level slice of a slice name: `disk3s1s1` -> `disk3s1`; a whole disk's name is
/// `None`.
fn top_slice(disk: u32, slices: &[u32]) -> Option<String> {
    slices.first().map(|s| format!("disk{disk}s{s}"))
}

/// `nx_uuid` of an APFS container superblock at the start of `block0` (Apple File System
/// Reference, `nx_superblock_t`: the 32-byte object header, `nx_magic` `'NXSB'` (u32
/// little-endian 0x4253584E) at 32, `nx_block_size` at 36, `nx_uuid` at 72); `None`
/// unless the magic is there and the block size is sane (4 KiB to 64 KiB, a power of 2).
pub fn parse_nx_uuid(block0: &[u8]) -> Option<[u8; 16]> {
    let magic = u32::from_le_bytes(block0.get(32..36)?.try_into().ok()?);
    let bs = u32::from_le_bytes(block0.get(36..40)?.try_into().ok()?);
    if magic != 0x4253_584E || !(4096..=65536).contains(&bs) || !bs.is_power_of_two() {
        return None;
    }
    block0.get(72..88)?.try_into().ok()
}

/// A whole disk (`/dev/diskN`), with what could be read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Disk {
    /// `N`.
    pub number: u32,
    /// `DKIOCGETBLOCKCOUNT` x `DKIOCGETBLOCKSIZE`; `None` when it could not be opened.
    pub size: Option<u64>,
    /// `DKIOCGETBLOCKSIZE`, `DKIOCGETPHYSICALBLOCKSIZE`.
    pub block_sizes: Option<(u32, u32)>,
    /// `DKIOCISWRITABLE`.
    pub writable: Option<bool>,
    /// The disk was opened and its first block read: `container` is then a finding, not
    /// a gap.
    pub read: bool,
    /// `nx_uuid` when its first block is an APFS container superblock.
    pub container: Option<[u8; 16]>,
}

/// A first-level slice (`/dev/diskNsM`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slice {
    /// `diskNsM`.
    pub name: String,
    /// `N`.
    pub disk: u32,
    /// `M`.
    pub number: u32,
    /// `DKIOCGETBASE`: its offset on the disk.
    pub start: Option<u64>,
    /// Its size.
    pub size: Option<u64>,
    /// It was opened and its first block read.
    pub read: bool,
    /// `nx_uuid` when it is an APFS physical store.
    pub container: Option<[u8; 16]>,
}

/// One `getfsstat(2)` entry (`struct statfs`, sys/mount.h).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mount {
    /// `f_mntfromname` (`/dev/disk3s1s1`, `map auto_home`, `devfs`).
    pub from: String,
    /// `f_mntonname`.
    pub on: String,
    /// `f_fstypename` (`apfs`, `msdos`, `hfs`, `exfat`).
    pub fstype: String,
}

/// Mount points that make a disk a system disk: `/` and anything under `/System`
/// (`/System/Volumes/Data`, `Preboot`, `VM` holding swap, `Update`, `Recovery`), plus the
/// swap directory of macOS before 10.15 (`/private/var/vm`).
pub fn is_system_mount(on: &str) -> bool {
    on == "/" || on == "/System" || on.starts_with("/System/") || on == "/private/var/vm"
}

fn reason_for(on: &str) -> String {
    if on == "/" {
        "root filesystem (/)".into()
    } else {
        format!("system volume ({on})")
    }
}

/// Build the listing: one [`Drive`] per disk in number order (name `diskN`, path
/// `/dev/diskN`, `devnum` `(N, 0)`, size 0 when it could not be read), first-level
/// slices as partitions with the mounts of their nested slices.
///
/// Bus is [`Bus::Unknown`] and `removable` false for every disk: there is no ioctl for
/// either (IOKit's `Removable`/`Protocol Characteristics` would say); `read_only` is
/// `DKIOCISWRITABLE` answering 0. System reasons: a system mount (see
/// [`is_system_mount`]) on the disk; the disk being the physical store of a container
/// disk with one; a container disk (mounted as `apfs`, or with `NXSB` in its first block)
/// whose physical store is not found ("APFS container whose physical store could not be
/// resolved"); and when a system container's store is not found, every disk not known
/// to be something else gets "may hold the APFS container of / (diskN)".
pub fn assemble(disks: &[Disk], slices: &[Slice], mounts: &[Mount]) -> Vec<Drive> {
    let mut disks: Vec<&Disk> = disks.iter().collect();
    disks.sort_by_key(|d| d.number);
    disks.dedup_by_key(|d| d.number);
    // Mounts per disk: (first-level slice or none, mount).
    let mut on_disk: Vec<(u32, Option<String>, &Mount)> = Vec::new();
    for m in mounts {
        if let Some((d, s, _)) = parse_device_path(&m.from) {
            on_disk.push((d, top_slice(d, &s), m));
        }
    }
    let sys_of = |n: u32| -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for (d, _, m) in &on_disk {
            if *d == n && is_system_mount(&m.on) {
                let r = reason_for(&m.on);
                if !v.contains(&r) {
                    v.push(r);
                }
            }
        }
        v
    };
    let is_container = |d: &Disk| {
        d.container.is_some()
            || on_disk
                .iter()
                .any(|(n, _, m)| *n == d.number && m.fstype == "apfs")
    };
    let stores_of = |d: &Disk| -> Vec<u32> {
        let Some(u) = d.container else {
            return Vec::new();
        };
        let mut v: Vec<u32> = slices
            .iter()
            .filter(|s| s.disk != d.number && s.container == Some(u))
            .map(|s| s.disk)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    // Reasons per disk number.
    let mut reasons: Vec<(u32, String)> = Vec::new();
    let mut unresolved_system: Vec<u32> = Vec::new();
    for d in &disks {
        let own = sys_of(d.number);
        for r in &own {
            reasons.push((d.number, r.clone()));
        }
        if !is_container(d) {
            continue;
        }
        let stores = stores_of(d);
        if stores.is_empty() {
            reasons.push((
                d.number,
                "APFS container whose physical store could not be resolved".into(),
            ));
            if !own.is_empty() {
                unresolved_system.push(d.number);
            }
        }
        for s in stores {
            for r in &own {
                reasons.push((s, format!("physical store of disk{} ({r})", d.number)));
            }
        }
    }
    // A system container disk mounted from a device that is not listed (no /dev node
    // read) is unresolved as well.
    for (n, _, m) in &on_disk {
        if is_system_mount(&m.on)
            && m.fstype == "apfs"
            && !disks.iter().any(|d| d.number == *n)
            && !unresolved_system.contains(n)
        {
            unresolved_system.push(*n);
        }
    }
    for c in &unresolved_system {
        for d in &disks {
            // Known not to be a store of anything: read, not a container, and every slice
            // read with no container superblock.
            let own_slices: Vec<&Slice> = slices.iter().filter(|s| s.disk == d.number).collect();
            let cleared = d.read
                && !is_container(d)
                && own_slices.iter().all(|s| s.read && s.container.is_none());
            if d.number != *c && !cleared {
                reasons.push((
                    d.number,
                    format!(
                        "may hold the APFS container of the system (disk{c}): its physical store could not be resolved without IOKit (run as root to read the disks)"
                    ),
                ));
            }
        }
    }
    disks
        .iter()
        .map(|&d| {
            let mut why: Vec<String> = Vec::new();
            for (n, r) in &reasons {
                if *n == d.number && !why.contains(r) {
                    why.push(r.clone());
                }
            }
            let mut partitions: Vec<Partition> = slices
                .iter()
                .filter(|s| s.disk == d.number)
                .map(|s| Partition {
                    name: s.name.clone(),
                    path: PathBuf::from(format!("/dev/{}", s.name)),
                    number: Some(s.number),
                    start: s.start.unwrap_or(0),
                    size: s.size.unwrap_or(0),
                    mountpoints: on_disk
                        .iter()
                        .filter(|(n, top, _)| *n == d.number && top.as_deref() == Some(&s.name))
                        .chain(
                            // A physical store: the volumes of its container are mounted
                            // from it.
                            on_disk.iter().filter(|(n, _, _)| {
                                s.container.is_some()
                                    && *n != d.number
                                    && disks
                                        .iter()
                                        .any(|c| c.number == *n && c.container == s.container)
                            }),
                        )
                        .map(|(_, _, m)| PathBuf::from(&m.on))
                        .collect(),
                })
                .collect();
            // Mounted slices with no /dev node read still count as mounted.
            for (n, top, m) in &on_disk {
                if let (true, Some(t)) = (*n == d.number, top) {
                    if !partitions.iter().any(|p| &p.name == t) {
                        let (_, s) = parse_disk_name(t).unwrap_or((0, vec![0]));
                        partitions.push(Partition {
                            name: t.clone(),
                            path: PathBuf::from(format!("/dev/{t}")),
                            number: s.first().copied(),
                            start: 0,
                            size: 0,
                            mountpoints: vec![PathBuf::from(&m.on)],
                        });
                    } else if let Some(p) = partitions.iter_mut().find(|p| &p.name == t) {
                        let mp = PathBuf::from(&m.on);
                        if !p.mountpoints.contains(&mp) {
                            p.mountpoints.push(mp);
                        }
                    }
                }
            }
            partitions.sort_by_key(|p| (p.number.unwrap_or(u32::MAX), p.name.clone()));
            let (logical, physical) = d.block_sizes.unwrap_or((512, 512));
            Drive {
                name: format!("disk{}", d.number),
                path: PathBuf::from(format!("/dev/disk{}", d.number)),
                devnum: (d.number, 0),
                size: d.size.unwrap_or(0),
                logical_block_size: logical.max(1),
                physical_block_size: physical.max(logical).max(1),
                vendor: None,
                model: None,
                bus: Bus::Unknown,
                removable: false,
                read_only: d.writable == Some(false),
                partitions,
                mountpoints: on_disk
                    .iter()
                    .filter(|(n, top, _)| *n == d.number && top.is_none())
                    .map(|(_, _, m)| PathBuf::from(&m.on))
                    .collect(),
                holders: Vec::new(),
                backing_file: None,
                is_system: !why.is_empty(),
                system_reasons: why,
            }
        })
        .collect()
}

/// The macOS refusal checks of a `/dev/diskN`, `/dev/rdiskN` or slice destination, with
/// `list` giving the drives and `umount` unmounting (`unmount(2)`): the disk must be in the
/// listing (else ENOENT), then the shared decision of [`crate::check_destination`] with the whole disk's mount points (with
/// those of the volumes of an APFS container it is the store of), or the slice's.
/// Paths that are no disk node pass (the caller refuses other device nodes).
pub fn check_destination(
    path: &std::path::Path,
    safety: Safety,
    list: impl FnOnce() -> Result<Vec<Drive>>,
    umount: &dyn Fn(&std::path::Path) -> std::io::Result<()>,
) -> Result<()> {
    let Some((disk, slices, _raw)) = parse_device_path(&path.to_string_lossy()) else {
        return Ok(());
    };
    let drives = list()?;
    let name = format!("disk{disk}");
    let Some(d) = drives.iter().find(|d| d.name == name) else {
        return Err(
            sparsekit_io::IoError::from_errno("open", sparsekit_io::errno::ENOENT)
                .with_path(path)
                .into(),
        );
    };
    let mounted = match top_slice(disk, &slices) {
        None => d.all_mountpoints(),
        Some(t) => d
            .partitions
            .iter()
            .filter(|p| p.name == t)
            .flat_map(|p| p.mountpoints.iter().cloned())
            .collect(),
    };
    decide(path, &[d], mounted, safety, Some(umount))
}

#[cfg(target_os = "macos")]
pub use live::{check_destination_here, list_drives, open_direct};

/// The listing, checks and raw opening of disks on macOS: the logic above fed with the OS
/// calls of `sys/macos_drives.rs`.
#[cfg(target_os = "macos")]
mod live {
    use std::fs::File;
    use std::io;
    use std::os::unix::fs::FileTypeExt;
    use std::path::Path;

    use super::{
        assemble, check_destination, parse_device_path, parse_disk_name, parse_nx_uuid, Disk,
        Mount, Slice,
    };
    use crate::error::{Error, Result};
    use crate::sys::{self, MAX_NODES};
    use crate::types::{Drive, Safety};

    /// The drive listing on macOS (see [`crate::list`]).
    pub fn list_drives() -> Result<Vec<Drive>> {
        let dev = Path::new("/dev");
        let rd = std::fs::read_dir(dev)
            .map_err(|e| sparsekit_io::IoError::new("opendir", e).with_path(dev))?;
        let mut disks = Vec::new();
        let mut slices = Vec::new();
        for e in rd.filter_map(|e| e.ok()).take(65536) {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('r') || disks.len() + slices.len() >= MAX_NODES {
                continue;
            }
            let Some((n, s)) = parse_disk_name(&name) else {
                continue;
            };
            let f = File::open(e.path()).ok();
            match s.len() {
                0 => {
                    let (size, block_sizes, writable, container) = match &f {
                        Some(f) => (
                            sparsekit_io::sys::block_device_size(f).ok(),
                            sparsekit_io::sys::block_sizes(f).ok(),
                            sys::is_writable(f),
                            sys::block0(f).as_deref().and_then(parse_nx_uuid),
                        ),
                        None => (None, None, None, None),
                    };
                    disks.push(Disk {
                        number: n,
                        size,
                        block_sizes,
                        writable,
                        read: f.is_some(),
                        container,
                    });
                }
                1 => slices.push(Slice {
                    name,
                    disk: n,
                    number: s[0],
                    start: f.as_ref().and_then(sys::slice_base),
                    size: f
                        .as_ref()
                        .and_then(|f| sparsekit_io::sys::block_device_size(f).ok()),
                    read: f.is_some(),
                    container: f
                        .as_ref()
                        .and_then(sys::block0)
                        .as_deref()
                        .and_then(parse_nx_uuid),
                }),
                _ => {}
            }
        }
        let mounts: Vec<Mount> = sys::fs_stats()
            .map_err(|e| sparsekit_io::IoError::new("getfsstat", e))?
            .into_iter()
            .map(|m| Mount {
                from: m.from,
                on: m.on,
                fstype: m.fstype,
            })
            .collect();
        Ok(assemble(&disks, &slices, &mounts))
    }

    /// The refusal checks on macOS: `/dev/diskN`, `/dev/rdiskN` and their slices through
    /// [`check_destination`] (unmounting with `unmount(2)`); any other block or character
    /// device is refused ([`Error::Unsupported`]); files pass.
    pub fn check_destination_here(path: &Path, safety: Safety) -> Result<()> {
        if parse_device_path(&path.to_string_lossy()).is_some() {
            return check_destination(path, safety, list_drives, &sys::umount);
        }
        match std::fs::metadata(path) {
            Ok(m) if m.file_type().is_block_device() || m.file_type().is_char_device() => {
                Err(Error::Unsupported {
                    what: format!(
                        "writing to the device '{}' (only /dev/diskN and /dev/rdiskN disks are recognised)",
                        path.display()
                    ),
                })
            }
            _ => Ok(()),
        }
    }

    /// Open `path` for the flash writer's aligned writes with the cache off: a
    /// `/dev/diskN` (or slice) is opened as its raw node `/dev/rdiskN` (the character
    /// device transfers straight between the buffer and the disk, much faster than the
    /// block node), anything else as itself ([`sparsekit_io::sys::open_direct`],
    /// `F_NOCACHE`).
    pub fn open_direct(path: &Path) -> io::Result<File> {
        let s = path.to_string_lossy();
        match parse_device_path(&s) {
            Some((_, _, false)) => {
                sys::open_direct(Path::new(&s.replacen("/dev/disk", "/dev/rdisk", 1)))
            }
            _ => sys::open_direct(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use sparsekit_io::ErrorInfo;

    #[test]
    fn names() {
        assert_eq!(parse_disk_name("disk2"), Some((2, vec![])));
        assert_eq!(parse_disk_name("disk2s1"), Some((2, vec![1])));
        assert_eq!(parse_disk_name("disk3s1s1"), Some((3, vec![1, 1])));
        assert_eq!(parse_disk_name("rdisk12s3"), Some((12, vec![3])));
        for bad in [
            "disk",
            "disks1",
            "disk2s",
            "disk2s1s",
            "disk-1",
            "diskette",
            "sda",
            "disk1s1s1s1s1s1",
            "disk9999999",
            "rrdisk1",
            "disk2 s1",
        ] {
            assert_eq!(parse_disk_name(bad), None, "{bad}");
        }
        assert_eq!(parse_device_path("/dev/rdisk4"), Some((4, vec![], true)));
        assert_eq!(parse_device_path("/dev/disk4s2"), Some((4, vec![2], false)));
        assert_eq!(parse_device_path("/dev/x/disk4"), None);
        assert_eq!(parse_device_path("/tmp/disk4"), None);
        assert_eq!(parse_device_path("map auto_home"), None);
    }

    fn nxsb(uuid: u8) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        b[32..36].copy_from_slice(b"NXSB");
        b[36..40].copy_from_slice(&4096u32.to_le_bytes());
        b[72..88].fill(uuid);
        b
    }

    #[test]
    fn container_superblocks() {
        assert_eq!(parse_nx_uuid(&nxsb(7)), Some([7; 16]));
        assert_eq!(parse_nx_uuid(&nxsb(7)[..87]), None, "truncated");
        assert_eq!(parse_nx_uuid(&[]), None);
        let mut b = nxsb(7);
        b[36..40].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(parse_nx_uuid(&b), None, "bad block size");
        let mut b = nxsb(7);
        b[32] = b'X';
        assert_eq!(parse_nx_uuid(&b), None, "bad magic");
    }

    fn m(from: &str, on: &str, fstype: &str) -> Mount {
        Mount {
            from: from.into(),
            on: on.into(),
            fstype: fstype.into(),
        }
    }

    fn slice(name: &str, read: bool, container: Option<u8>) -> Slice {
        let (disk, s) = parse_disk_name(name).unwrap();
        Slice {
            name: name.into(),
            disk,
            number: s[0],
            start: Some(1 << 20),
            size: Some(1 << 30),
            read,
            container: container.map(|u| [u; 16]),
        }
    }

    fn disk(n: u32, read: bool, container: Option<u8>) -> Disk {
        Disk {
            number: n,
            size: read.then_some(32 << 30),
            block_sizes: read.then_some((512, 4096)),
            writable: read.then_some(true),
            read,
            container: container.map(|u| [u; 16]),
        }
    }

    /// An Apple silicon Mac as root sees it: disk0 internal (disk0s2 the store of
    /// container disk3), disk3 the synthesized container, disk4 a USB stick (FAT), disk5
    /// an external APFS disk (store disk5s2 of container disk6).
    fn mounts() -> Vec<Mount> {
        vec![
            m("/dev/disk3s1s1", "/", "apfs"),
            m("devfs", "/dev", "devfs"),
            m("/dev/disk3s6", "/System/Volumes/VM", "apfs"),
            m("/dev/disk3s5", "/System/Volumes/Data", "apfs"),
            m("map auto_home", "/System/Volumes/Data/home", "autofs"),
            m("/dev/disk4s1", "/Volumes/STICK", "msdos"),
            m("/dev/disk6s1", "/Volumes/Backup", "apfs"),
        ]
    }

    #[test]
    fn as_root() {
        let disks = [
            disk(0, true, None),
            disk(3, true, Some(1)),
            disk(4, true, None),
            disk(5, true, None),
            disk(6, true, Some(2)),
        ];
        let slices = [
            slice("disk0s1", true, None),
            slice("disk0s2", true, Some(1)),
            slice("disk3s1", true, None),
            slice("disk3s5", true, None),
            slice("disk4s1", true, None),
            slice("disk5s2", true, Some(2)),
            slice("disk6s1", true, None),
        ];
        let drives = assemble(&disks, &slices, &mounts());
        let sys: Vec<(&str, bool)> = drives
            .iter()
            .map(|d| (d.name.as_str(), d.is_system))
            .collect();
        assert_eq!(
            sys,
            [
                ("disk0", true),
                ("disk3", true),
                ("disk4", false),
                ("disk5", false),
                ("disk6", false)
            ]
        );
        assert!(drives[0].system_reasons[0].starts_with("physical store of disk3 (root"));
        assert_eq!(
            drives[1].system_reasons,
            [
                "root filesystem (/)",
                "system volume (/System/Volumes/VM)",
                "system volume (/System/Volumes/Data)"
            ]
        );
        let d3 = &drives[1];
        // disk3s1s1's mount shows on disk3s1; disk3s6 had no /dev node read.
        assert_eq!(d3.partitions[0].name, "disk3s1");
        assert_eq!(d3.partitions[0].mountpoints, [PathBuf::from("/")]);
        assert!(d3.partitions.iter().any(|p| p.name == "disk3s6"));
        // disk5 is the store of container disk6: its volume's mount shows on disk5s2.
        assert_eq!(
            drives[3].all_mountpoints(),
            [PathBuf::from("/Volumes/Backup")]
        );
        let stick = &drives[2];
        assert_eq!(stick.path, PathBuf::from("/dev/disk4"));
        assert_eq!(stick.all_mountpoints(), [PathBuf::from("/Volumes/STICK")]);
        assert_eq!((stick.size, stick.logical_block_size), (32 << 30, 512));
        assert_eq!((stick.bus, stick.removable), (Bus::Unknown, false));
    }

    #[test]
    fn destination_checks() {
        use crate::types::Safety;
        use std::path::Path;
        use std::sync::Mutex;
        let disks = [
            disk(0, true, None),
            disk(3, true, Some(1)),
            disk(4, true, None),
            disk(5, true, None),
            disk(6, true, Some(2)),
        ];
        let slices = [
            slice("disk0s2", true, Some(1)),
            slice("disk4s1", true, None),
            slice("disk5s2", true, Some(2)),
        ];
        let drives = assemble(&disks, &slices, &mounts());
        let unmounted = Mutex::new(Vec::new());
        let umount = |p: &Path| -> std::io::Result<()> {
            unmounted.lock().unwrap().push(p.to_path_buf());
            Ok(())
        };
        let check =
            |p: &str, s: Safety| check_destination(Path::new(p), s, || Ok(drives.clone()), &umount);
        let none = Safety::default();
        let unmount = Safety {
            force: false,
            unmount: true,
            ..Safety::default()
        };
        for p in ["/dev/disk0", "/dev/rdisk0", "/dev/disk3", "/dev/rdisk3s1"] {
            assert_eq!(
                check(p, unmount).unwrap_err().code(),
                "ERR_SPARSEKIT_SYSTEM_DRIVE",
                "{p}"
            );
        }
        assert_eq!(
            check("/dev/rdisk4", none).unwrap_err().code(),
            "ERR_SPARSEKIT_DRIVE_BUSY"
        );
        assert_eq!(
            check("/dev/rdisk5", none).unwrap_err().code(),
            "ERR_SPARSEKIT_DRIVE_BUSY"
        );
        check("/dev/rdisk4", unmount).unwrap();
        check("/dev/disk5", unmount).unwrap();
        assert_eq!(
            *unmounted.lock().unwrap(),
            [
                PathBuf::from("/Volumes/STICK"),
                PathBuf::from("/Volumes/Backup")
            ]
        );
        assert_eq!(
            check("/dev/disk9", none).unwrap_err().raw_os_error(),
            Some(sparsekit_io::errno::ENOENT)
        );
        check("/Users/me/out.img", none).unwrap();
        let failing = || Err(Error::Unsupported { what: "x".into() });
        assert!(check_destination(Path::new("/dev/disk4"), none, failing, &umount).is_err());
    }

    #[test]
    fn not_root_marks_everything() {
        // Nothing could be opened: sizes unknown, containers unknown.
        let disks = [
            disk(0, false, None),
            disk(3, false, None),
            disk(4, false, None),
        ];
        let slices = [slice("disk0s2", false, None), slice("disk4s1", false, None)];
        let drives = assemble(&disks, &slices, &mounts());
        assert!(drives.iter().all(|d| d.is_system), "{drives:?}");
        assert!(drives[0].system_reasons[0].contains("may hold the APFS container"));
        assert!(drives[2].system_reasons[0].contains("disk3"));
        assert_eq!(drives[2].size, 0);
        // The container disk itself: its own mounts and the unresolved store.
        assert!(drives[1]
            .system_reasons
            .iter()
            .any(|r| r.contains("could not be resolved")));
    }

    #[test]
    fn store_not_found_marks_unread_disks_only() {
        // Root, but the store slice is not among those read (a disk that vanished):
        // disks read and cleared stay offered.
        let disks = [
            disk(0, false, None),
            disk(3, true, Some(1)),
            disk(4, true, None),
        ];
        let slices = [slice("disk4s1", true, None)];
        let drives = assemble(&disks, &slices, &mounts());
        assert!(drives[0].is_system, "unread disk0 may be the store");
        assert!(drives[1].is_system);
        assert!(!drives[2].is_system, "{:?}", drives[2].system_reasons);
    }

    #[test]
    fn hfs_root_needs_no_container() {
        // macOS before APFS: / on an HFS+ slice of disk0.
        let disks = [disk(0, false, None), disk(1, false, None)];
        let slices = [slice("disk0s2", false, None), slice("disk1s1", false, None)];
        let mounts = [
            m("/dev/disk0s2", "/", "hfs"),
            m("/dev/disk1s1", "/Volumes/USB", "msdos"),
        ];
        let drives = assemble(&disks, &slices, &mounts);
        assert!(drives[0].is_system && !drives[1].is_system);
        assert_eq!(
            drives[1].partitions[0].mountpoints,
            [PathBuf::from("/Volumes/USB")]
        );
    }
}
