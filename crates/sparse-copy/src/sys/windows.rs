//! The Windows side of this crate's `sys` module (the Linux one is sys.rs): the same
//! functions, on Win32 (learn.microsoft.com, header in brackets).
//!
//! - reflink: `FSCTL_DUPLICATE_EXTENTS_TO_FILE` (winioctl.h; ReFS block cloning, Windows
//!   Server 2016 / Windows 11 Dev Drive). File systems without it (NTFS, FAT, wine) answer
//!   `ERROR_INVALID_FUNCTION` or `ERROR_NOT_SUPPORTED`, reported as `EOPNOTSUPP`, and the
//!   copy falls back to read/write, saying so in its method.
//! - copy_file_range and sendfile do not exist: `ENOSYS`, the copy falls back.
//! - holes: `FSCTL_SET_SPARSE` + `FSCTL_SET_ZERO_DATA` through `sparsekit_io::sys`.

use std::fs::File;
use std::io;
use std::os::windows::io::AsRawHandle;

use sparsekit_io::sys::{device_io_control, fallocate, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE};
use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::Ioctl::{DUPLICATE_EXTENTS_DATA, FSCTL_DUPLICATE_EXTENTS_TO_FILE};

/// Clone alignment: ReFS clones whole clusters (4 KiB or 64 KiB); a range ending at the
/// source's end of file may end anywhere, so only the start is checked by the file system.
fn off(v: u64) -> io::Result<i64> {
    i64::try_from(v).map_err(|_| io::Error::from_raw_os_error(sparsekit_io::errno::EFBIG))
}

fn unsupported_to_eopnotsupp(e: io::Error) -> io::Error {
    // ERROR_INVALID_FUNCTION (1), ERROR_NOT_SUPPORTED (50), ERROR_INVALID_PARAMETER (87,
    // misaligned or not the same volume), ERROR_NOT_SAME_DEVICE (17): no cloning here.
    match e.raw_os_error() {
        Some(1 | 17 | 50 | 87) => io::Error::from_raw_os_error(sparsekit_io::errno::EOPNOTSUPP),
        _ => e,
    }
}

/// Make `dst` share all of `src`'s clusters (`FSCTL_DUPLICATE_EXTENTS_TO_FILE` over the
/// whole file; `dst` is first given `src`'s size, as the call requires).
pub fn ficlone(src: &File, dst: &File) -> io::Result<()> {
    let len = src.metadata()?.len();
    dst.set_len(len)?;
    ficlonerange(src, 0, len, dst, 0)
}

/// `FSCTL_DUPLICATE_EXTENTS_TO_FILE` of `[src_offset, src_offset + len)` to `dst_offset`;
/// the destination must already be that long.
pub fn ficlonerange(
    src: &File,
    src_offset: u64,
    len: u64,
    dst: &File,
    dst_offset: u64,
) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let arg = DUPLICATE_EXTENTS_DATA {
        FileHandle: src.as_raw_handle() as HANDLE,
        SourceFileOffset: off(src_offset)?,
        TargetFileOffset: off(dst_offset)?,
        ByteCount: off(len)?,
    };
    // SAFETY: the ioctl reads one DUPLICATE_EXTENTS_DATA holding an open handle.
    unsafe {
        device_io_control(
            dst,
            FSCTL_DUPLICATE_EXTENTS_TO_FILE,
            (&arg as *const DUPLICATE_EXTENTS_DATA).cast(),
            std::mem::size_of::<DUPLICATE_EXTENTS_DATA>(),
            std::ptr::null_mut(),
            0,
        )
    }
    .map(drop)
    .map_err(unsupported_to_eopnotsupp)
}

#[path = "no_kernel_copy.rs"]
mod no_kernel_copy;
pub use no_kernel_copy::{copy_file_range, sendfile};

/// Deallocate `[offset, offset + len)` (`FSCTL_SET_SPARSE` + `FSCTL_SET_ZERO_DATA`); a file
/// system without sparse files answers `EOPNOTSUPP`.
pub fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    fallocate(
        file,
        FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
        offset,
        len,
    )
    .map_err(unsupported_to_eopnotsupp)
}
