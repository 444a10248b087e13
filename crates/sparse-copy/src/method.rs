//! The byte-moving methods and when the kernel allows falling back from one to the next.

use sparsekit_io::errno;
use std::io;

/// How the bytes are moved. [`CopyMethod::Auto`] tries them in the order listed and falls
/// back only when the kernel says a method cannot work for these files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CopyMethod {
    /// Reflink when possible, then `copy_file_range`, `sendfile`, read/write.
    #[default]
    Auto,
    /// `FICLONE` (whole file) or `FICLONERANGE`: share the source's blocks (btrfs, XFS with
    /// reflink). Same filesystem and block-aligned ranges only.
    Reflink,
    /// `copy_file_range` per data extent (in-kernel; may reflink or offload by itself).
    CopyFileRange,
    /// `sendfile` per data extent.
    Sendfile,
    /// `pread`/`pwrite` per data extent.
    ReadWrite,
}

impl CopyMethod {
    /// The method's name as `str::parse` accepts it (`FromStr`, in copy.rs): `auto`,
    /// `reflink`, `copy_file_range`, `sendfile`, `readwrite`.
    pub fn name(self) -> &'static str {
        match self {
            CopyMethod::Auto => "auto",
            CopyMethod::Reflink => "reflink",
            CopyMethod::CopyFileRange => "copy_file_range",
            CopyMethod::Sendfile => "sendfile",
            CopyMethod::ReadWrite => "readwrite",
        }
    }

    /// Higher is more capable; used to report the best method that moved data.
    pub(crate) fn rank(self) -> u8 {
        match self {
            CopyMethod::Reflink => 4,
            CopyMethod::CopyFileRange => 3,
            CopyMethod::Sendfile => 2,
            CopyMethod::ReadWrite => 1,
            CopyMethod::Auto => 0,
        }
    }

    /// The next method of the byte-moving chain.
    pub(crate) fn next(self) -> Option<CopyMethod> {
        match self {
            CopyMethod::CopyFileRange => Some(CopyMethod::Sendfile),
            CopyMethod::Sendfile => Some(CopyMethod::ReadWrite),
            _ => None,
        }
    }

    pub(crate) fn op(self) -> &'static str {
        match self {
            CopyMethod::Reflink => "ioctl(FICLONERANGE)",
            CopyMethod::CopyFileRange => "copy_file_range",
            CopyMethod::Sendfile => "sendfile",
            _ => "write",
        }
    }
}

impl std::fmt::Display for CopyMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors after which another method may work (coreutils' `is_CopyFileRange_fallback_ok` and
/// `is_ENOTSUP`):
/// - ENOSYS: the syscall does not exist (copy_file_range before Linux 4.5, seccomp filters).
/// - EXDEV: source and destination on different filesystems (copy_file_range before 5.3
///   and again from 5.19, reflink always).
/// - EOPNOTSUPP/ENOTTY: the filesystem lacks the operation (reflink on ext4, tmpfs).
/// - EINVAL: unaligned reflink range, non-regular file (a block device destination of
///   copy_file_range), or a filesystem that rejects the flags.
/// - EBADF: the destination is opened O_APPEND, or the source cannot be read by this path.
/// - ETXTBSY: one of the files is an active swap file.
/// - EPERM/EACCES: some filesystems (and seccomp/LSM policies) deny the call itself; only a
///   fallback before any byte moved, as after that it is a real permission failure.
pub(crate) fn may_fall_back(e: &io::Error, nothing_copied: bool) -> bool {
    match e.raw_os_error() {
        Some(errno::ENOSYS | libc::EXDEV | errno::EOPNOTSUPP | libc::ENOTTY | errno::EINVAL)
        | Some(errno::EBADF | libc::ETXTBSY) => true,
        Some(libc::EPERM | libc::EACCES) => nothing_copied,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsekit_io::ErrorInfo;

    #[test]
    fn method_names_round_trip() {
        for m in [
            CopyMethod::Auto,
            CopyMethod::Reflink,
            CopyMethod::CopyFileRange,
            CopyMethod::Sendfile,
            CopyMethod::ReadWrite,
        ] {
            assert_eq!(m.name().parse::<CopyMethod>().unwrap(), m);
        }
        let e = "rsync".parse::<CopyMethod>().unwrap_err();
        assert_eq!(e.code(), "ERR_INVALID_ARG_VALUE");
        assert!(e.to_string().contains("'rsync'"), "{e}");
    }

    #[test]
    fn fallback_errnos() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert!(may_fall_back(&e(libc::EXDEV), false));
        assert!(may_fall_back(&e(libc::EPERM), true));
        assert!(!may_fall_back(&e(libc::EPERM), false));
        for fatal in [libc::EIO, libc::ENOSPC, libc::EDQUOT, libc::ENOMEM] {
            assert!(!may_fall_back(&e(fatal), true), "{fatal}");
        }
    }
}
