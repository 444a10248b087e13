//! The POSIX calls the Linux and macOS modules share (open(2) without blocking on FIFOs,
//! fcntl(2), poll(2), lseek(2) to data and holes); each re-exports them.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::Path;

/// Open `path` for reading (and writing, with `write`) without ever blocking in `open()`:
/// `O_NONBLOCK` makes opening a FIFO with no writer return at once instead of waiting for
/// one (fifo(7)). The flag is cleared again for regular files and block devices, where it
/// means nothing for reads and writes; FIFOs, sockets and character devices keep it and
/// are read with [`crate::read_stream`], which waits in `poll` and wakes on cancellation.
/// `create` adds `O_CREAT` (mode 0666 & umask); `excl_device` adds `O_EXCL`, which on a
/// block device means "fail with EBUSY when mounted or held" (open(2)).
pub fn open(path: &Path, write: bool, create: bool, excl_device: bool) -> io::Result<File> {
    let mut flags = if write { libc::O_RDWR } else { libc::O_RDONLY };
    if create {
        flags |= libc::O_CREAT;
    }
    if excl_device {
        flags |= libc::O_EXCL;
    }
    open_flags(path, flags)
}

/// [`open`] with the access mode and creation flags given as `open(2)` flags (e.g.
/// `O_WRONLY | O_CREAT`): `O_CLOEXEC | O_NONBLOCK | O_NOCTTY` are added, and `O_NONBLOCK`
/// is cleared again for regular files and block devices.
pub fn open_flags(path: &Path, flags: i32) -> io::Result<File> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = flags | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    let fd = loop {
        // SAFETY: plain syscall with a NUL-terminated path.
        let fd = unsafe { libc::open(c.as_ptr(), flags, 0o666 as libc::c_uint) };
        if fd >= 0 {
            break fd;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    // SAFETY: fd was just opened and is owned by nobody else.
    let file = unsafe { File::from_raw_fd(fd) };
    let meta = file.metadata()?;
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() || t.is_block_device() {
        set_nonblocking(&file, false)?;
    }
    Ok(file)
}

/// Set or clear `O_NONBLOCK`.
pub fn set_nonblocking(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a valid descriptor.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if fl < 0 {
        return Err(io::Error::last_os_error());
    }
    let new = if on {
        fl | libc::O_NONBLOCK
    } else {
        fl & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if new != fl && unsafe { libc::fcntl(fd, libc::F_SETFL, new) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Wait up to `timeout_ms` for `file` to be readable (or at end of file / hung up).
/// `Ok(false)` on time-out.
pub fn poll_readable(file: &File, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(r > 0)
}

/// `lseek(SEEK_DATA)` (`hole == false`) or `lseek(SEEK_HOLE)` from `offset`: Linux since
/// 3.1 (include/uapi/linux/fs.h: `SEEK_DATA` 3, `SEEK_HOLE` 4), macOS 10.12 on APFS and
/// HFS+ (unistd.h: `SEEK_HOLE` 3, `SEEK_DATA` 4). `Ok(None)` when there is no more data
/// (ENXIO: the offset is at or past the end, or only a hole follows). It moves the file
/// position, which the sparsekit crates never use (their I/O is positional).
pub fn seek(file: &File, offset: u64, hole: bool) -> io::Result<Option<u64>> {
    let whence = if hole {
        libc::SEEK_HOLE
    } else {
        libc::SEEK_DATA
    };
    let off = i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: lseek on a valid descriptor; changes only the file position.
    let r = unsafe { libc::lseek(file.as_raw_fd(), off, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as u64))
}

/// The machine's physical memory in bytes (`sysconf(_SC_PHYS_PAGES) * _SC_PAGESIZE`), for
/// sizing read-ahead budgets; `None` where unknown.
pub fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf takes no pointers.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && size > 0).then(|| pages as u64 * size as u64)
}
