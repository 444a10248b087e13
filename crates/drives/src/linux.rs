//! Whole block devices of a Linux machine, from sysfs and `/proc/self/mountinfo` (no
//! `lsblk`):
//! size, block sizes, vendor and model, bus, partitions and their mount points, and whether
//! the drive holds the running system. Also the refusal checks on Linux.
//!
//! Sources (Documentation/ABI/stable/sysfs-block): `/sys/block/NAME/{dev,size,removable,ro}`
//! (`size` in 512-byte sectors whatever the logical block size),
//! `queue/{logical,physical}_block_size`, `device/{vendor,model,serial}`, partitions as
//! subdirectories holding a `partition` file (with `start`, in sectors), `holders/` (the
//! device-mapper or md devices built on a device) and `slaves/` (what a dm/md device is
//! built on). The bus is read from where the `/sys/block/NAME` link points in the device
//! tree (`.../usb1/...`, `.../ata2/...`, `.../nvme/...`, `.../virtual/...`).
//! Mounts come from `/proc/self/mountinfo` (proc(5)): its third field is the mounted
//! device's `major:minor`, so no device names need resolving; swap from `/proc/swaps`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use crate::decide::decide;
use crate::error::{Error, Result};
use crate::sys;
use crate::types::{Bus, DevNum, Drive, Partition, Safety};

/// The device number a block-device node names (Windows: a `\\.\PhysicalDriveN` path's
/// disk number, [`crate::windows::block_devnum`]).
#[cfg(windows)]
use crate::windows::block_devnum;
/// The device number a block-device node names.
#[cfg(not(windows))]
use sys::block_devnum;

/// Where drive information is read from; [`Roots::system`] on a real machine, a fake tree
/// in tests.
#[derive(Clone, Debug)]
pub struct Roots {
    /// sysfs (`/sys`).
    pub sys: PathBuf,
    /// `/proc/self/mountinfo`.
    pub mountinfo: PathBuf,
    /// `/proc/swaps`.
    pub swaps: PathBuf,
    /// Where device nodes are (`/dev`).
    pub dev: PathBuf,
}

impl Roots {
    /// This machine's `/sys`, `/proc` and `/dev`.
    pub fn system() -> Roots {
        Roots {
            sys: "/sys".into(),
            mountinfo: "/proc/self/mountinfo".into(),
            swaps: "/proc/swaps".into(),
            dev: "/dev".into(),
        }
    }
}

/// Mount points whose filesystem makes a drive a system drive.
const SYSTEM_MOUNTS: [&str; 5] = ["/", "/boot", "/boot/efi", "/efi", "/usr"];

/// Longest sysfs attribute read (they are single lines).
const MAX_ATTR: u64 = 4096;

fn attr(p: &Path) -> Option<String> {
    use std::io::Read;
    let f = fs::File::open(p).ok()?;
    let mut s = String::new();
    f.take(MAX_ATTR).read_to_string(&mut s).ok()?;
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn attr_u64(p: &Path) -> Option<u64> {
    attr(p)?.parse().ok()
}

fn parse_devnum(s: &str) -> Option<DevNum> {
    let (a, b) = s.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Undo the octal escapes (`\040` for a space) of mountinfo and swaps fields.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(c) = u8::try_from(v) {
                out.push(c);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One line of mountinfo: the device and where it is mounted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The mounted device (`major:minor` of the filesystem; for btrfs and other
    /// filesystems with anonymous device numbers, the source device node's number).
    pub devnum: DevNum,
    /// The mount point.
    pub mountpoint: PathBuf,
    /// The mount source (`/dev/sda1`, `tmpfs`).
    pub source: String,
    /// The filesystem type.
    pub fstype: String,
}

/// Parse `/proc/self/mountinfo` text (proc(5)). Malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|&x| x == "-") else {
            continue;
        };
        if f.len() < 5 || sep < 6 || f.len() < sep + 3 {
            continue;
        }
        let Some(mut devnum) = parse_devnum(f[2]) else {
            continue;
        };
        let source = unescape(f[sep + 2]);
        if devnum.0 == 0 && source.starts_with("/dev/") {
            // btrfs and other anonymous-device filesystems: the source names the device.
            if let Ok(Some(d)) = block_devnum(Path::new(&source)) {
                devnum = d;
            }
        }
        out.push(Mount {
            devnum,
            mountpoint: unescape(f[4]).into(),
            source,
            fstype: f[sep + 1].to_string(),
        });
    }
    out
}

/// Devices in use as swap (`/proc/swaps`): a swap partition's device, or the device
/// holding a swap file.
fn swap_devices(text: &str) -> Vec<(DevNum, String)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let mut f = line.split_whitespace();
        let (Some(name), Some(kind)) = (f.next(), f.next()) else {
            continue;
        };
        let name = unescape(name);
        let p = Path::new(&name);
        let d = if kind == "partition" {
            block_devnum(p).ok().flatten()
        } else {
            sys::file_devnum(p).ok()
        };
        if let Some(d) = d {
            out.push((d, name));
        }
    }
    out
}

fn bus_of(name: &str, target: &str) -> Bus {
    if name.starts_with("loop") {
        Bus::Loop
    } else if target.contains("/usb") {
        Bus::Usb
    } else if name.starts_with("mmcblk") || target.contains("/mmc") {
        Bus::Mmc
    } else if name.starts_with("nvme") || target.contains("/nvme") {
        Bus::Nvme
    } else if target.contains("/ata") {
        Bus::Sata
    } else if target.contains("/virtual/") {
        Bus::Virtual
    } else if target.contains("/virtio") {
        Bus::Virtio
    } else if target.contains("/host") && target.contains("/target") {
        Bus::Scsi
    } else {
        Bus::Unknown
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// [`crate::list`] reading from `roots`.
pub fn list_with(roots: &Roots) -> Result<Vec<Drive>> {
    let mountinfo = fs::read_to_string(&roots.mountinfo)
        .map_err(|e| sparsekit_io::IoError::new("read", e).with_path(&roots.mountinfo))?;
    let mounts = parse_mountinfo(&mountinfo);
    let swaps = swap_devices(&fs::read_to_string(&roots.swaps).unwrap_or_default());
    let block = roots.sys.join("block");
    let class = roots.sys.join("class/block");

    // Every block device's number and the devices it is built on (dm/md slaves).
    let mut slaves: HashMap<DevNum, Vec<DevNum>> = HashMap::new();
    let devnum_of = |name: &str| attr(&class.join(name).join("dev")).and_then(|s| parse_devnum(&s));
    for name in names_in(&block) {
        let Some(d) = devnum_of(&name) else { continue };
        let s: Vec<DevNum> = names_in(&block.join(&name).join("slaves"))
            .iter()
            .filter_map(|n| devnum_of(n))
            .collect();
        slaves.insert(d, s);
    }
    // Devices holding the system, with the reason, expanded through dm/md slaves.
    let mut system: HashMap<DevNum, String> = HashMap::new();
    for m in &mounts {
        let mp = m.mountpoint.to_string_lossy();
        if SYSTEM_MOUNTS.contains(&mp.as_ref()) {
            let why = if mp == "/" {
                "root filesystem (/)".to_string()
            } else {
                format!("system filesystem ({mp})")
            };
            system.entry(m.devnum).or_insert(why);
        }
    }
    for (d, name) in &swaps {
        system.entry(*d).or_insert(format!("swap ({name})"));
    }
    let mut stack: Vec<(DevNum, String)> = system.iter().map(|(d, w)| (*d, w.clone())).collect();
    let mut seen: HashSet<DevNum> = system.keys().copied().collect();
    while let Some((d, why)) = stack.pop() {
        for s in slaves.get(&d).into_iter().flatten() {
            if seen.insert(*s) {
                system.insert(*s, why.clone());
                stack.push((*s, why.clone()));
            }
        }
    }
    let mounts_of = |d: DevNum| -> Vec<PathBuf> {
        mounts
            .iter()
            .filter(|m| m.devnum == d)
            .map(|m| m.mountpoint.clone())
            .collect()
    };

    let mut drives = Vec::new();
    for name in names_in(&block) {
        let dir = block.join(&name);
        let Some(devnum) = attr(&dir.join("dev")).and_then(|s| parse_devnum(&s)) else {
            continue;
        };
        let size = attr_u64(&dir.join("size")).unwrap_or(0).saturating_mul(512);
        if size == 0 {
            continue;
        }
        let target = fs::canonicalize(&dir)
            .or_else(|_| fs::read_link(&dir))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut partitions = Vec::new();
        let mut holders = names_in(&dir.join("holders"));
        for sub in names_in(&dir) {
            let pdir = dir.join(&sub);
            if !pdir.join("partition").exists() {
                continue;
            }
            let Some(pd) = attr(&pdir.join("dev")).and_then(|s| parse_devnum(&s)) else {
                continue;
            };
            holders.extend(names_in(&pdir.join("holders")));
            partitions.push((
                pd,
                Partition {
                    path: roots.dev.join(&sub),
                    number: attr(&pdir.join("partition")).and_then(|s| s.parse().ok()),
                    start: attr_u64(&pdir.join("start"))
                        .unwrap_or(0)
                        .saturating_mul(512),
                    size: attr_u64(&pdir.join("size"))
                        .unwrap_or(0)
                        .saturating_mul(512),
                    mountpoints: mounts_of(pd),
                    name: sub,
                },
            ));
        }
        partitions.sort_by_key(|(_, p)| (p.number.unwrap_or(u32::MAX), p.name.clone()));
        let mut reasons = Vec::new();
        for d in std::iter::once(devnum).chain(partitions.iter().map(|(d, _)| *d)) {
            if let Some(w) = system.get(&d) {
                if !reasons.contains(w) {
                    reasons.push(w.clone());
                }
            }
        }
        for h in &holders {
            reasons.push(format!("held by {h}"));
        }
        let dev_attr = |a: &str| attr(&dir.join("device").join(a));
        let model = dev_attr("model").or_else(|| dev_attr("name"));
        drives.push(Drive {
            path: roots.dev.join(&name),
            devnum,
            size,
            logical_block_size: attr_u64(&dir.join("queue/logical_block_size")).unwrap_or(512)
                as u32,
            physical_block_size: attr_u64(&dir.join("queue/physical_block_size")).unwrap_or(512)
                as u32,
            // virtio and PCI devices give a numeric vendor id (`0x1af4`), no name.
            vendor: dev_attr("vendor").filter(|v| !v.starts_with("0x")),
            model,
            bus: bus_of(&name, &target),
            removable: attr(&dir.join("removable")).as_deref() == Some("1"),
            read_only: attr(&dir.join("ro")).as_deref() == Some("1"),
            mountpoints: mounts_of(devnum),
            partitions: partitions.into_iter().map(|(_, p)| p).collect(),
            holders,
            backing_file: attr(&dir.join("loop/backing_file")).map(PathBuf::from),
            is_system: !reasons.is_empty(),
            system_reasons: reasons,
            name,
        });
    }
    Ok(drives)
}

/// [`crate::check_destination`] reading from `roots`.
pub fn check_destination_with(path: &Path, safety: Safety, roots: &Roots) -> Result<()> {
    let devnum = match block_devnum(path) {
        Ok(d) => d,
        // A file to be created.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(sparsekit_io::IoError::new("stat", e).with_path(path).into()),
    };
    let Some(devnum) = devnum else {
        return Ok(());
    };
    if !cfg!(target_os = "linux") {
        // sysfs and procfs are Linux's: elsewhere nothing here says whether it holds the
        // system (Windows and macOS have their own checks in check_destination).
        return Err(Error::Unsupported {
            what: format!(
                "writing to a drive on {} (no drive listing for this OS)",
                std::env::consts::OS
            ),
        });
    }
    let drives = list_with(roots)?;
    let (drive, mounted) = match drives.iter().find(|d| d.devnum == devnum) {
        Some(d) => (d, d.all_mountpoints()),
        None => {
            // A partition given as destination: its drive's status, its own mounts.
            let Some((d, p)) = drives.iter().find_map(|d| {
                d.partitions
                    .iter()
                    .find(|p| block_devnum(&p.path).ok().flatten() == Some(devnum))
                    .map(|p| (d, p))
            }) else {
                return Ok(());
            };
            (d, p.mountpoints.clone())
        }
    };
    decide(
        path,
        &[drive],
        mounted,
        safety,
        Some(&|mp: &Path| sys::umount(mp)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsekit_io::ErrorInfo;

    #[test]
    fn mountinfo_lines() {
        let t = "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                 30 22 0:27 / /mnt/with\\040space rw - tmpfs tmpfs rw\n\
                 garbage line\n\
                 31 22 7:16 / /media/x rw master:2 - vfat /dev/loop1 rw\n";
        let m = parse_mountinfo(t);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].devnum, (254, 0));
        assert_eq!(m[0].mountpoint, Path::new("/"));
        assert_eq!(m[1].mountpoint, Path::new("/mnt/with space"));
        assert_eq!(
            (m[2].fstype.as_str(), m[2].source.as_str()),
            ("vfat", "/dev/loop1")
        );
    }

    #[test]
    fn buses() {
        let d = "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb";
        assert_eq!(bus_of("sdb", d), Bus::Usb);
        assert_eq!(
            bus_of(
                "sda",
                "/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda"
            ),
            Bus::Sata
        );
        assert_eq!(
            bus_of(
                "nvme0n1",
                "/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1"
            ),
            Bus::Nvme
        );
        assert_eq!(
            bus_of("mmcblk0", "/sys/devices/platform/mmc0/block/mmcblk0"),
            Bus::Mmc
        );
        assert_eq!(
            bus_of("loop3", "/sys/devices/virtual/block/loop3"),
            Bus::Loop
        );
        assert_eq!(
            bus_of("dm-0", "/sys/devices/virtual/block/dm-0"),
            Bus::Virtual
        );
        assert_eq!(
            bus_of(
                "vda",
                "/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda"
            ),
            Bus::Virtio
        );
    }

    /// A fake sysfs: a USB stick with two partitions (one mounted), a disk whose partition
    /// is an LVM member holding root, and a loop device used as swap.
    #[test]
    fn fake_tree() {
        let t = tempfile::tempdir().unwrap();
        let sys = t.path().join("sys");
        let mk = |dev: &str, attrs: &[(&str, &str)]| {
            let d = sys.join("devices").join(dev);
            fs::create_dir_all(&d).unwrap();
            for (k, v) in attrs {
                let p = d.join(k);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(p, format!("{v}\n")).unwrap();
            }
            d
        };
        fs::create_dir_all(sys.join("block")).unwrap();
        fs::create_dir_all(sys.join("class/block")).unwrap();
        let link = |dev: &str, name: &str, whole: bool| {
            let target = sys.join("devices").join(dev);
            if whole {
                std::os::unix::fs::symlink(&target, sys.join("block").join(name)).unwrap();
            }
            std::os::unix::fs::symlink(&target, sys.join("class/block").join(name)).unwrap();
        };
        let usb = "pci0/usb1/1-1/host6/target6/6:0:0:0/block/sdb";
        mk(
            usb,
            &[
                ("dev", "8:16"),
                ("size", "2048"),
                ("removable", "1"),
                ("ro", "0"),
                ("device/vendor", "SanDisk "),
                ("device/model", "Cruzer   "),
                ("queue/logical_block_size", "512"),
                ("queue/physical_block_size", "4096"),
            ],
        );
        mk(
            &format!("{usb}/sdb1"),
            &[
                ("dev", "8:17"),
                ("size", "1024"),
                ("partition", "1"),
                ("start", "2048"),
            ],
        );
        mk(
            &format!("{usb}/sdb2"),
            &[
                ("dev", "8:18"),
                ("size", "512"),
                ("partition", "2"),
                ("start", "4096"),
            ],
        );
        link(usb, "sdb", true);
        link(&format!("{usb}/sdb1"), "sdb1", false);
        link(&format!("{usb}/sdb2"), "sdb2", false);
        let sata = "pci0/ata1/host0/target0/0:0:0:0/block/sda";
        mk(
            sata,
            &[("dev", "8:0"), ("size", "4096"), ("removable", "0")],
        );
        mk(
            &format!("{sata}/sda1"),
            &[
                ("dev", "8:1"),
                ("size", "4000"),
                ("partition", "1"),
                ("holders/dm-0", ""),
            ],
        );
        link(sata, "sda", true);
        link(&format!("{sata}/sda1"), "sda1", false);
        let dm = "virtual/block/dm-0";
        let d = mk(dm, &[("dev", "253:0"), ("size", "4000")]);
        fs::create_dir_all(d.join("slaves")).unwrap();
        std::os::unix::fs::symlink(
            sys.join("devices").join(sata).join("sda1"),
            d.join("slaves/sda1"),
        )
        .unwrap();
        link(dm, "dm-0", true);
        let lp = "virtual/block/loop0";
        mk(
            lp,
            &[
                ("dev", "7:0"),
                ("size", "100"),
                ("loop/backing_file", "/var/tmp/x.img"),
            ],
        );
        link(lp, "loop0", true);
        let lp1 = "virtual/block/loop1";
        mk(lp1, &[("dev", "7:1"), ("size", "0")]);
        link(lp1, "loop1", true);
        let mi = t.path().join("mountinfo");
        fs::write(
            &mi,
            "1 0 253:0 / / rw - ext4 /dev/mapper/vg-root rw\n\
                        2 1 8:17 / /media/stick rw - vfat /dev/sdb1 rw\n",
        )
        .unwrap();
        let roots = Roots {
            sys: sys.clone(),
            mountinfo: mi,
            swaps: t.path().join("none"),
            dev: "/dev".into(),
        };
        let drives = list_with(&roots).unwrap();
        let names: Vec<&str> = drives.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["dm-0", "loop0", "sda", "sdb"], "loop1 has no size");
        let sdb = &drives[3];
        assert_eq!(
            (sdb.bus, sdb.removable, sdb.size),
            (Bus::Usb, true, 2048 * 512)
        );
        assert_eq!(
            (sdb.vendor.as_deref(), sdb.model.as_deref()),
            (Some("SanDisk"), Some("Cruzer"))
        );
        assert_eq!(
            (sdb.logical_block_size, sdb.physical_block_size),
            (512, 4096)
        );
        assert_eq!(sdb.partitions.len(), 2);
        assert_eq!(sdb.partitions[0].start, 2048 * 512);
        assert_eq!(
            sdb.partitions[0].mountpoints,
            [PathBuf::from("/media/stick")]
        );
        assert!(!sdb.is_system);
        let sda = &drives[2];
        assert_eq!(sda.bus, Bus::Sata);
        assert!(sda.is_system, "root is on LVM over sda1");
        assert!(
            sda.system_reasons.iter().any(|r| r.contains("root")),
            "{:?}",
            sda.system_reasons
        );
        assert!(sda.system_reasons.iter().any(|r| r == "held by dm-0"));
        assert!(drives[0].is_system && drives[0].bus == Bus::Virtual);
        assert_eq!(
            (drives[1].bus, drives[1].backing_file.as_deref()),
            (Bus::Loop, Some(Path::new("/var/tmp/x.img")))
        );
    }

    #[test]
    fn this_machine_root_disk_is_system() {
        let drives = list_with(&Roots::system()).unwrap();
        let root = std::fs::metadata("/").unwrap();
        use std::os::unix::fs::MetadataExt;
        let dev = (libc::major(root.dev()), libc::minor(root.dev()));
        if dev.0 == 0 {
            eprintln!("SKIP this_machine_root_disk_is_system: / is on an anonymous device ({dev:?}: overlay, tmpfs or btrfs)");
            return;
        }
        let holding: Vec<&Drive> = drives
            .iter()
            .filter(|d| {
                d.devnum == dev
                    || d.partitions
                        .iter()
                        .any(|p| sys::block_devnum(&p.path).ok().flatten() == Some(dev))
            })
            .collect();
        if holding.is_empty() {
            eprintln!("SKIP this_machine_root_disk_is_system: no listed drive holds {dev:?}");
            return;
        }
        for d in holding {
            assert!(d.is_system, "{d:?}");
            let e =
                check_destination_with(&d.path, Safety::default(), &Roots::system()).unwrap_err();
            assert_eq!(e.code(), "ERR_SPARSEKIT_SYSTEM_DRIVE", "{e}");
        }
    }
}
