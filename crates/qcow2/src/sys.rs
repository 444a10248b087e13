//! Every OS call of this crate that `std` does not wrap (Linux; other OSes: sys/macos.rs,
//! sys/windows.rs).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `lseek(SEEK_DATA / SEEK_HOLE)`: the POSIX call Linux and macOS share.
pub use sparsekit_io::sys::seek;

fn flock_at(kind: libc::c_short, byte: u64) -> libc::flock {
    // SAFETY: flock is plain old data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte as libc::off_t;
    fl.l_len = 1;
    fl
}

/// Read-lock one byte with an open-file-description lock (`F_OFD_SETLK`,
/// include/uapi/asm-generic/fcntl.h: 37), as qemu's `qemu_lock_fd` does.
pub fn ofd_read_lock(file: &File, byte: u64) -> io::Result<()> {
    let fl = flock_at(libc::F_RDLCK as libc::c_short, byte);
    // SAFETY: fcntl on a valid descriptor with a valid flock.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether another open file description holds a lock on `byte` (`F_OFD_GETLK` for a
/// write lock, include/uapi/asm-generic/fcntl.h: 36), as qemu's `qemu_lock_fd_test`.
pub fn ofd_locked(file: &File, byte: u64) -> io::Result<bool> {
    let mut fl = flock_at(libc::F_WRLCK as libc::c_short, byte);
    // SAFETY: fcntl on a valid descriptor with a valid, writable flock.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut fl) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// Allocate `len` bytes at `offset` of a new, empty file on ext4 (`fallocate` mode 0:
/// blocks allocated as unwritten extents, the size extended), so that the buffered writes
/// filling them find their blocks mapped: ext4 then skips its per-block delayed
/// allocation (reservation, quota, extent-status insert), about a quarter of the kernel
/// time of writing an uncompressed image (BENCHMARKS.md). Returns whether it did; on
/// other file systems (unmeasured; tmpfs would zero every page first) or when refused
/// (ENOSPC) nothing stays allocated: the file is truncated back to empty.
pub fn preallocate(file: &File, offset: u64, len: u64) -> bool {
    const EXT4_SUPER_MAGIC: i64 = 0xEF53;
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs on a valid descriptor with a valid, writable statfs.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0
        || st.f_type as i64 != EXT4_SUPER_MAGIC
    {
        return false;
    }
    let (Ok(off), Ok(n)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return false;
    };
    // SAFETY: fallocate on a valid descriptor.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, off, n) } == 0 {
        return true;
    }
    // A partial allocation would take space the image may need.
    let _ = file.set_len(0);
    false
}
