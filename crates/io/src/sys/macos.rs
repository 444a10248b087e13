//! The macOS side of [`crate::sys`]: the same functions as the Linux module. The POSIX
//! calls (open without blocking on FIFOs, fcntl, poll) are sys/posix.rs, shared with Linux; the rest
//! follows Apple's headers (cited per call, from the macOS SDK):
//!
//! - raw disks (`/dev/rdiskN`, `/dev/diskN`): size by `DKIOCGETBLOCKCOUNT` x
//!   `DKIOCGETBLOCKSIZE` (sys/disk.h);
//! - holes: `fcntl(F_PUNCHHOLE)` (sys/fcntl.h, APFS; macOS 10.12);
//! - no `FALLOC_FL_ZERO_RANGE`, zeroing command, loop devices or procfs: those answer
//!   `ENOTSUP` / `None` / false, and callers take their fallback (writing zeros).

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;

pub use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};

/// `DKIOCGETBLOCKSIZE = _IOR('d', 24, uint32_t)` (sys/disk.h): the logical block size.
const DKIOCGETBLOCKSIZE: libc::c_ulong = 0x4004_6418;
/// `DKIOCGETBLOCKCOUNT = _IOR('d', 25, uint64_t)` (sys/disk.h): the number of blocks.
const DKIOCGETBLOCKCOUNT: libc::c_ulong = 0x4008_6419;
/// `DKIOCGETPHYSICALBLOCKSIZE = _IOR('d', 77, uint32_t)` (sys/disk.h).
const DKIOCGETPHYSICALBLOCKSIZE: libc::c_ulong = 0x4004_644D;
/// `F_PUNCHHOLE` (sys/fcntl.h): deallocate a range of a file (APFS), size unchanged.
const F_PUNCHHOLE: libc::c_int = 99;

/// `struct fpunchhole` (sys/fcntl.h).
#[repr(C)]
struct FPunchHole {
    fp_flags: libc::c_uint,
    reserved: libc::c_uint,
    fp_offset: libc::off_t,
    fp_length: libc::off_t,
}

/// `FALLOC_FL_KEEP_SIZE`: every mode here keeps the size.
pub const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
/// Punch a hole: `fcntl(F_PUNCHHOLE)`.
pub const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;
/// Zero a range: no such call on macOS (`ENOTSUP`; callers write zeros).
pub const FALLOC_FL_ZERO_RANGE: i32 = 0x10;

#[path = "posix.rs"]
mod posix;
pub use posix::{open, open_flags, physical_memory, poll_readable, seek, set_nonblocking};

/// The size in bytes of a disk: `DKIOCGETBLOCKCOUNT` x `DKIOCGETBLOCKSIZE` (sys/disk.h).
pub fn block_device_size(file: &File) -> io::Result<u64> {
    let mut count: u64 = 0;
    let mut size: u32 = 0;
    // SAFETY: each ioctl writes one integer of the named width.
    unsafe {
        if libc::ioctl(file.as_raw_fd(), DKIOCGETBLOCKCOUNT, &mut count) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::ioctl(file.as_raw_fd(), DKIOCGETBLOCKSIZE, &mut size) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    count
        .checked_mul(u64::from(size))
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EOVERFLOW))
}

/// A disk's logical and physical block sizes (`DKIOCGETBLOCKSIZE`,
/// `DKIOCGETPHYSICALBLOCKSIZE`, sys/disk.h).
pub fn block_sizes(file: &File) -> io::Result<(u32, u32)> {
    let mut logical: u32 = 0;
    let mut physical: u32 = 0;
    // SAFETY: each ioctl writes one uint32_t.
    unsafe {
        if libc::ioctl(file.as_raw_fd(), DKIOCGETBLOCKSIZE, &mut logical) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::ioctl(file.as_raw_fd(), DKIOCGETPHYSICALBLOCKSIZE, &mut physical) != 0 {
            physical = logical;
        }
    }
    Ok((logical, physical))
}

/// `fallocate` modes on macOS: `FALLOC_FL_PUNCH_HOLE` is `fcntl(F_PUNCHHOLE)` (the range
/// is cut at the end of the file; APFS wants it aligned to its block size, else EINVAL);
/// anything else is `ENOTSUP`.
pub fn fallocate(file: &File, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    if mode & FALLOC_FL_PUNCH_HOLE == 0 {
        return Err(io::Error::from_raw_os_error(libc::ENOTSUP));
    }
    let size = file.metadata()?.len();
    let len = len.min(size.saturating_sub(offset));
    if len == 0 {
        return Ok(());
    }
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    let p = FPunchHole {
        fp_flags: 0,
        reserved: 0,
        fp_offset: off,
        fp_length: len,
    };
    loop {
        // SAFETY: F_PUNCHHOLE reads one struct fpunchhole.
        if unsafe { libc::fcntl(file.as_raw_fd(), F_PUNCHHOLE, &p) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// No zeroing command for disks: `ENOTSUP`, and the caller writes zeros.
pub fn blk_zeroout(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOTSUP))
}

/// No loop devices on macOS: `Ok(None)`.
pub fn loop_backing(_file: &File) -> io::Result<Option<(u64, u64, u64)>> {
    Ok(None)
}

/// No procfs or sysfs on macOS: false.
pub fn is_synthetic_fs(_file: &File) -> bool {
    false
}

/// Open `path` for writing with the cache off (`fcntl(F_NOCACHE, 1)`, sys/fcntl.h: macOS's
/// counterpart of `O_DIRECT`; aligned transfers bypass the unified buffer cache).
pub fn open_direct(path: &Path) -> io::Result<File> {
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    // SAFETY: fcntl with an integer argument on a descriptor we own.
    if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_NOCACHE, 1) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(f)
}

/// Open `path` for reading with the cache off (`fcntl(F_NOCACHE, 1)`, as [`open_direct`]).
pub fn open_direct_read(path: &Path) -> io::Result<File> {
    let f = File::open(path)?;
    fcntl_int(&f, libc::F_NOCACHE, 1)?;
    Ok(f)
}

fn fcntl_int(file: &File, cmd: libc::c_int, arg: libc::c_int) -> io::Result<()> {
    // SAFETY: fcntl with an integer argument on a valid descriptor.
    if unsafe { libc::fcntl(file.as_raw_fd(), cmd, arg) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Page-cache hint: `fcntl(F_NOCACHE, 1)` (sys/fcntl.h): from now on reads of this
/// descriptor bypass the unified buffer cache, so a read-back reads the device. macOS has
/// no call that evicts a range; the whole descriptor is switched, whatever `offset` and
/// `len` say.
pub fn drop_cache(file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    fcntl_int(file, libc::F_NOCACHE, 1)
}

/// Page-cache hint: `fcntl(F_RDAHEAD, 1)` (sys/fcntl.h): read-ahead on.
pub fn sequential(file: &File) -> io::Result<()> {
    fcntl_int(file, libc::F_RDAHEAD, 1)
}

/// Page-cache hint: `fcntl(F_RDADVISE)` (sys/fcntl.h, `struct radvisory`): start reading
/// `[offset, offset + len)` into the cache without waiting.
pub fn will_need(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(count)) = (libc::off_t::try_from(offset), libc::c_int::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    let ra = libc::radvisory {
        ra_offset: off,
        ra_count: count,
    };
    // SAFETY: F_RDADVISE reads one struct radvisory.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_RDADVISE, &ra) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Page-cache hint: no asynchronous writeback start on macOS (no `sync_file_range`):
/// `ENOTSUP`; callers ignore it.
pub fn start_writeback(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOTSUP))
}

/// Write the file's dirty data and wait (`fsync`, unistd.h, through std's `sync_data`):
/// macOS has no ranged writeback wait; the error of any part of the file is reported.
pub fn wait_writeback(file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    file.sync_data()
}

/// Thread priority: left as it is on macOS (its scheduler has no per-thread nice; QoS
/// classes would be the counterpart).
pub fn lower_thread_priority(_by: i32) -> io::Result<()> {
    Ok(())
}
