//! Every Linux-specific call of this crate: FICLONE/FICLONERANGE, copy_file_range,
//! sendfile, fallocate(PUNCH_HOLE), (opening and fsync are in `ends`, through `sparsekit_io::sys`). Other OSes:
//! sys/macos.rs, sys/windows.rs.
//!
//! Each function makes one attempt and retries only EINTR; short transfers are returned to
//! the caller, which tracks its own offsets.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

fn retry<T: Copy + PartialOrd + Default>(mut f: impl FnMut() -> T) -> io::Result<T> {
    loop {
        let r = f();
        if r >= T::default() {
            return Ok(r);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn off(v: u64) -> io::Result<i64> {
    i64::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))
}

/// `ioctl(dst, FICLONE, src)`: make `dst` share all of `src`'s blocks.
pub fn ficlone(src: &File, dst: &File) -> io::Result<()> {
    // SAFETY: FICLONE takes the source descriptor as its argument.
    retry(|| unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) }).map(|_| ())
}

/// `ioctl(dst, FICLONERANGE, {src, src_offset, len, dst_offset})`.
pub fn ficlonerange(
    src: &File,
    src_offset: u64,
    len: u64,
    dst: &File,
    dst_offset: u64,
) -> io::Result<()> {
    let arg = libc::file_clone_range {
        src_fd: src.as_raw_fd() as i64,
        src_offset,
        src_length: len,
        dest_offset: dst_offset,
    };
    // SAFETY: the argument is a valid struct file_clone_range.
    retry(|| unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONERANGE, &arg) }).map(|_| ())
}

/// One `copy_file_range` call with explicit offsets (the file positions are not used).
pub fn copy_file_range(
    src: &File,
    src_offset: u64,
    dst: &File,
    dst_offset: u64,
    len: usize,
) -> io::Result<usize> {
    let (mut si, mut di) = (off(src_offset)?, off(dst_offset)?);
    // SAFETY: both offsets point to live i64s; no buffers are involved.
    retry(|| unsafe {
        libc::copy_file_range(src.as_raw_fd(), &mut si, dst.as_raw_fd(), &mut di, len, 0)
    })
    .map(|n| n as usize)
}

/// One `sendfile` call writing at `dst_offset`. sendfile writes at the output's file
/// position, so the position is set first with `lseek`.
pub fn sendfile(
    src: &File,
    src_offset: u64,
    dst: &File,
    dst_offset: u64,
    len: usize,
) -> io::Result<usize> {
    let d = off(dst_offset)?;
    // SAFETY: plain syscall.
    retry(|| unsafe { libc::lseek(dst.as_raw_fd(), d, libc::SEEK_SET) })?;
    let mut si = off(src_offset)?;
    // SAFETY: the offset points to a live i64.
    retry(|| unsafe { libc::sendfile(dst.as_raw_fd(), src.as_raw_fd(), &mut si, len) })
        .map(|n| n as usize)
}

/// `fallocate(PUNCH_HOLE | KEEP_SIZE)`: deallocate `[offset, offset + len)`; it reads as
/// zeros afterwards and the file size does not change.
pub fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (o, l) = (off(offset)?, off(len)?);
    // SAFETY: plain syscall.
    retry(|| unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            o,
            l,
        )
    })
    .map(|_| ())
}
