//! The macOS side of this crate's `sys` module (the Linux one is sys.rs): SEEK_DATA and
//! SEEK_HOLE as on Linux, POSIX record locks where Linux uses open-file-description locks
//! (as qemu does on macOS). The page-cache hints are `sparsekit_io::sys`'s.

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

/// Read-lock one byte with a POSIX record lock (`F_SETLK`, sys/fcntl.h): what qemu's
/// `qemu_lock_fd` uses where the SDK exposes no `F_OFD_SETLK` (macOS). Such locks belong
/// to the process and end when any of its descriptors of the file closes.
pub fn ofd_read_lock(file: &File, byte: u64) -> io::Result<()> {
    let fl = flock_at(libc::F_RDLCK as libc::c_short, byte);
    // SAFETY: fcntl on a valid descriptor with a valid flock.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLK, &fl) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether another process holds a lock on `byte` (`F_GETLK` for a write lock,
/// sys/fcntl.h), as qemu's `qemu_lock_fd_test` on macOS.
pub fn ofd_locked(file: &File, byte: u64) -> io::Result<bool> {
    let mut fl = flock_at(libc::F_WRLCK as libc::c_short, byte);
    // SAFETY: fcntl on a valid descriptor with a valid, writable flock.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut fl) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// Preallocation is measured on Linux's ext4 only (sys.rs): nothing here.
pub fn preallocate(_file: &File, _offset: u64, _len: u64) -> bool {
    false
}
