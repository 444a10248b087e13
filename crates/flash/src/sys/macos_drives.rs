//! The OS calls of the macOS drive listing; the logic, and what cannot be known without
//! IOKit, is [`crate::drives::macos`] (tested on every OS). Calls cite the macOS SDK's
//! headers.
//!
//! - disks and slices: the `/dev` directory (`diskN`, `diskNsM` block nodes);
//! - sizes: `DKIOCGETBLOCKCOUNT` x `DKIOCGETBLOCKSIZE` and `DKIOCGETPHYSICALBLOCKSIZE`
//!   (sys/disk.h) through [`sparsekit_io::sys::block_device_size`] and
//!   [`sparsekit_io::sys::block_sizes`]; a slice's offset by `DKIOCGETBASE`; write
//!   protection by `DKIOCISWRITABLE` (sys/disk.h);
//! - APFS containers: the first 4 KiB of each disk and slice (`nx_superblock_t`);
//! - mounts: `getfsstat(2)` (sys/mount.h, `MNT_NOWAIT`).
//!
//! Opening the nodes needs root (they are `root:operator`, mode 0640): as another user
//! every disk is listed with size 0 and, as nothing can be resolved, marked as a possible
//! system disk.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::drives::macos::{self as logic, parse_disk_name, parse_nx_uuid, Disk, Mount, Slice};
use crate::drives::{Drive, Safety};
use crate::{Error, Result};

/// `DKIOCISWRITABLE = _IOR('d', 29, uint32_t)` (sys/disk.h): 0 when the medium is
/// write-protected.
const DKIOCISWRITABLE: libc::c_ulong = 0x4004_641D;
/// `DKIOCGETBASE = _IOR('d', 73, uint64_t)`: a slice's byte offset on its disk. In the
/// kernel-only part of sys/disk.h; Apple's own newfs_msdos defines it the same way to call
/// it from user space. A failure leaves the start unknown (0).
const DKIOCGETBASE: libc::c_ulong = 0x4008_6449;
/// Most `/dev` disk nodes and mounts read.
const MAX_NODES: usize = 4096;

/// The first 4 KiB of an open disk node (where an APFS container superblock is).
fn block0(f: &File) -> Option<Vec<u8>> {
    let mut b = vec![0u8; 4096];
    f.read_exact_at(&mut b, 0).ok()?;
    Some(b)
}

fn ioctl_u32(f: &File, req: libc::c_ulong) -> Option<u32> {
    let mut v: u32 = 0;
    // SAFETY: the request writes one uint32_t.
    (unsafe { libc::ioctl(f.as_raw_fd(), req, &mut v) } == 0).then_some(v)
}

fn ioctl_u64(f: &File, req: libc::c_ulong) -> Option<u64> {
    let mut v: u64 = 0;
    // SAFETY: the request writes one uint64_t.
    (unsafe { libc::ioctl(f.as_raw_fd(), req, &mut v) } == 0).then_some(v)
}

/// Every mounted file system: `getfsstat(2)` (sys/mount.h), `MNT_NOWAIT` (no waiting on
/// unresponsive network mounts).
pub fn mounts() -> io::Result<Vec<Mount>> {
    // SAFETY: a NULL buffer asks for the count.
    let n = unsafe { libc::getfsstat(std::ptr::null_mut(), 0, libc::MNT_NOWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let cap = (n as usize + 8).min(MAX_NODES);
    // SAFETY: statfs is plain data; zeroed is a valid value.
    let mut v: Vec<libc::statfs> = vec![unsafe { std::mem::zeroed() }; cap];
    let bytes = (cap * std::mem::size_of::<libc::statfs>()) as libc::c_int;
    // SAFETY: the buffer holds `cap` structs, `bytes` bytes.
    let got = unsafe { libc::getfsstat(v.as_mut_ptr(), bytes, libc::MNT_NOWAIT) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let s = |a: &[libc::c_char]| {
        // SAFETY: reinterpreting c_char as u8 of the same size.
        let b: &[u8] = unsafe { std::slice::from_raw_parts(a.as_ptr().cast(), a.len()) };
        CStr::from_bytes_until_nul(b)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_else(|_| String::from_utf8_lossy(b).into_owned())
    };
    Ok(v[..(got as usize).min(cap)]
        .iter()
        .map(|m| Mount {
            from: s(&m.f_mntfromname),
            on: s(&m.f_mntonname),
            fstype: s(&m.f_fstypename),
        })
        .collect())
}

/// The drive listing on macOS (see [`crate::drives::list`]).
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
                        ioctl_u32(f, DKIOCISWRITABLE).map(|w| w != 0),
                        block0(f).as_deref().and_then(parse_nx_uuid),
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
                start: f.as_ref().and_then(|f| ioctl_u64(f, DKIOCGETBASE)),
                size: f
                    .as_ref()
                    .and_then(|f| sparsekit_io::sys::block_device_size(f).ok()),
                read: f.is_some(),
                container: f
                    .as_ref()
                    .and_then(block0)
                    .as_deref()
                    .and_then(parse_nx_uuid),
            }),
            _ => {}
        }
    }
    let mounts = mounts().map_err(|e| sparsekit_io::IoError::new("getfsstat", e))?;
    Ok(logic::assemble(&disks, &slices, &mounts))
}

/// The refusal checks on macOS: `/dev/diskN`, `/dev/rdiskN` and their slices through
/// [`logic::check_destination`] (unmounting with `unmount(2)`); any other block or
/// character device is refused ([`Error::Unsupported`]); files pass.
pub fn check_destination(path: &Path, safety: Safety) -> Result<()> {
    if logic::parse_device_path(&path.to_string_lossy()).is_some() {
        return logic::check_destination(path, safety, list_drives, &super::umount);
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

/// Open `path` for the flash writer's aligned writes with the cache off: a `/dev/diskN`
/// (or slice) is opened as its raw node `/dev/rdiskN` (the character device transfers
/// straight between the buffer and the disk, much faster than the block node), anything
/// else as itself ([`sparsekit_io::sys::open_direct`], `F_NOCACHE`).
pub fn open_direct(path: &Path) -> io::Result<File> {
    let s = path.to_string_lossy();
    match logic::parse_device_path(&s) {
        Some((_, _, false)) => {
            sparsekit_io::sys::open_direct(Path::new(&s.replacen("/dev/disk", "/dev/rdisk", 1)))
        }
        _ => sparsekit_io::sys::open_direct(path),
    }
}
