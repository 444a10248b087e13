//! The macOS side of this crate's `sys` module (the Linux one is sys.rs): the same
//! functions, from Apple's headers.
//!
//! - reflink: macOS clones whole files only into a path that does not exist yet
//!   (`clonefile`/`fclonefileat`, sys/clonefile.h); this crate's copy opens (and may
//!   create) the destination before it copies, so [`ficlone`] and [`ficlonerange`] answer
//!   `ENOTSUP` and the copy falls back to read/write, saying so in its method.
//! - copy_file_range does not exist and sendfile(2) writes only to sockets: `ENOSYS`.
//! - holes: `fcntl(F_PUNCHHOLE)` (sys/fcntl.h) through `sparsekit_io::sys`.

use std::fs::File;
use std::io;

use sparsekit_io::sys::{fallocate, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE};

/// No clone into an open file on macOS: `ENOTSUP`.
pub fn ficlone(_src: &File, _dst: &File) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOTSUP))
}

/// No clone of a range on macOS: `ENOTSUP`.
pub fn ficlonerange(
    _src: &File,
    _src_offset: u64,
    _len: u64,
    _dst: &File,
    _dst_offset: u64,
) -> io::Result<()> {
    Err(io::Error::from_raw_os_error(libc::ENOTSUP))
}

#[path = "no_kernel_copy.rs"]
mod no_kernel_copy;
pub use no_kernel_copy::{copy_file_range, sendfile};

/// Deallocate `[offset, offset + len)` with `fcntl(F_PUNCHHOLE)`.
pub fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    fallocate(
        file,
        FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
        offset,
        len,
    )
}
