//! The OS calls of the macOS drive listing: each returns what the OS answered; the logic,
//! and what cannot be known without IOKit, is [`crate::macos`] (tested on every OS).
//! Nothing here imports the code above it. Calls cite the macOS SDK's headers.
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
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

/// `DKIOCISWRITABLE = _IOR('d', 29, uint32_t)` (sys/disk.h): 0 when the medium is
/// write-protected.
const DKIOCISWRITABLE: libc::c_ulong = 0x4004_641D;
/// `DKIOCGETBASE = _IOR('d', 73, uint64_t)`: a slice's byte offset on its disk. In the
/// kernel-only part of sys/disk.h; Apple's own newfs_msdos defines it the same way to call
/// it from user space. A failure leaves the start unknown (0).
const DKIOCGETBASE: libc::c_ulong = 0x4008_6449;
/// Most `/dev` disk nodes and mounts read.
pub const MAX_NODES: usize = 4096;

/// The first 4 KiB of an open disk node (where an APFS container superblock is).
pub fn block0(f: &File) -> Option<Vec<u8>> {
    let mut b = vec![0u8; 4096];
    f.read_exact_at(&mut b, 0).ok()?;
    Some(b)
}

/// `DKIOCISWRITABLE`: whether the medium may be written (`None`: the ioctl failed).
pub fn is_writable(f: &File) -> Option<bool> {
    ioctl_u32(f, DKIOCISWRITABLE).map(|w| w != 0)
}

/// `DKIOCGETBASE`: a slice's byte offset on its disk (`None`: the ioctl failed).
pub fn slice_base(f: &File) -> Option<u64> {
    ioctl_u64(f, DKIOCGETBASE)
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

/// One mounted file system as `getfsstat(2)` gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsStat {
    /// `f_mntfromname`: the device (`/dev/disk3s1s1`) or other source.
    pub from: String,
    /// `f_mntonname`: the mount point.
    pub on: String,
    /// `f_fstypename`: the file system type.
    pub fstype: String,
}

/// Every mounted file system: `getfsstat(2)` (sys/mount.h), `MNT_NOWAIT` (no waiting on
/// unresponsive network mounts).
pub fn fs_stats() -> io::Result<Vec<FsStat>> {
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
        .map(|m| FsStat {
            from: s(&m.f_mntfromname),
            on: s(&m.f_mntonname),
            fstype: s(&m.f_fstypename),
        })
        .collect())
}

/// `DKIOCSYNCHRONIZECACHE = _IO('d', 22)` (sys/disk.h): flush the drive's write cache.
const DKIOCSYNCHRONIZECACHE: libc::c_ulong = 0x2000_6416;
/// `DKIOCEJECT = _IO('d', 21)` (sys/disk.h): eject the medium.
const DKIOCEJECT: libc::c_ulong = 0x2000_6415;

/// Flush and eject the disk whose raw node is `raw` (`/dev/rdiskN`, after a flash):
/// `fsync`, `DKIOCSYNCHRONIZECACHE` (a drive without a cache to flush refuses it, which is
/// ignored), then `DKIOCEJECT`. The failed call's name with the error.
pub fn eject_disk(raw: &std::path::Path) -> Result<(), (&'static str, io::Error)> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .open(raw)
        .map_err(|e| ("open", e))?;
    f.sync_all().map_err(|e| ("fsync", e))?;
    // SAFETY: requests without an argument on an open descriptor.
    unsafe {
        let _ = libc::ioctl(f.as_raw_fd(), DKIOCSYNCHRONIZECACHE);
        if libc::ioctl(f.as_raw_fd(), DKIOCEJECT) != 0 {
            return Err(("ioctl(DKIOCEJECT)", io::Error::last_os_error()));
        }
    }
    Ok(())
}
