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
