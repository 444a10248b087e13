//! The error numbers sparsekit makes itself (an `io::Error` for "is a directory", "not
//! supported here", ...) and compares OS errors with, as one portable set.
//!
//! On Unix these are the `errno` values of libc (so a made-up error and the kernel's own
//! look the same). On Windows an `io::Error`'s raw code is a Win32 error (winerror.h), and
//! libc's numbers there are the C runtime's `errno` values, which are Win32 codes of
//! other meanings (`EIO` 5 is `ERROR_ACCESS_DENIED`, `ESPIPE` 29 `ERROR_WRITE_FAULT`, `EFBIG`
//! 27 `ERROR_SECTOR_NOT_FOUND`): an error made from them would be named and described as
//! that other failure. So on Windows each constant is the Win32 error of the same meaning,
//! the one Node (libuv's `uv_translate_sys_error`) names as the Unix errno where it names
//! one, e.g. `EINVAL` is `ERROR_INVALID_PARAMETER` (87).

#[cfg(unix)]
pub use libc::{
    EACCES, EBADF, EBUSY, EFBIG, EINVAL, EIO, EISDIR, EMFILE, ENOENT, ENOSPC, ENOSYS, EPERM, EROFS,
    ESPIPE,
};

/// "Not supported by this file or file system": `ENOTSUP`. Linux defines `EOPNOTSUPP` as
/// the same number (95); macOS keeps them apart (`ENOTSUP` 45, what its file systems,
/// `fcntl` and the crates' own stubs answer; `EOPNOTSUPP` 102 is for sockets), so one
/// comparison with this constant catches both OSes' answer.
#[cfg(unix)]
pub const EOPNOTSUPP: i32 = libc::ENOTSUP;

/// `ERROR_ACCESS_DENIED`: libuv's `EACCES`.
#[cfg(windows)]
pub const EACCES: i32 = 5;
/// `ERROR_PRIVILEGE_NOT_HELD` (libuv names it `EPERM`).
#[cfg(windows)]
pub const EPERM: i32 = 1314;
/// `ERROR_INVALID_HANDLE`: libuv's `EBADF`.
#[cfg(windows)]
pub const EBADF: i32 = 6;
/// `ERROR_SHARING_VIOLATION`: libuv's `EBUSY` (a drive another handle holds).
#[cfg(windows)]
pub const EBUSY: i32 = 32;
/// `ERROR_FILE_TOO_LARGE` (no libuv name: the addon names it `EFBIG`).
#[cfg(windows)]
pub const EFBIG: i32 = 223;
/// `ERROR_INVALID_PARAMETER`: libuv's `EINVAL`.
#[cfg(windows)]
pub const EINVAL: i32 = 87;
/// `ERROR_IO_DEVICE`: libuv's `EIO`.
#[cfg(windows)]
pub const EIO: i32 = 1117;
/// `ERROR_INVALID_FUNCTION`: libuv's `EISDIR` (what reading a directory handle gives).
#[cfg(windows)]
pub const EISDIR: i32 = 1;
/// `ERROR_TOO_MANY_OPEN_FILES`: libuv's `EMFILE`.
#[cfg(windows)]
pub const EMFILE: i32 = 4;
/// `ERROR_FILE_NOT_FOUND`: libuv's `ENOENT`.
#[cfg(windows)]
pub const ENOENT: i32 = 2;
/// `ERROR_DISK_FULL`: libuv's `ENOSPC`.
#[cfg(windows)]
pub const ENOSPC: i32 = 112;
/// `ERROR_CALL_NOT_IMPLEMENTED` (no libuv name: the addon names it `ENOSYS`).
#[cfg(windows)]
pub const ENOSYS: i32 = 120;
/// `ERROR_NOT_SUPPORTED`: libuv's `ENOTSUP`.
#[cfg(windows)]
pub const EOPNOTSUPP: i32 = 50;
/// `ERROR_WRITE_PROTECT`: libuv's `EROFS`.
#[cfg(windows)]
pub const EROFS: i32 = 19;
/// `ERROR_SEEK_ON_DEVICE` (no libuv name: the addon names it `ESPIPE`).
#[cfg(windows)]
pub const ESPIPE: i32 = 132;
