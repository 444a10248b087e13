use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// An OS call that failed, with what it was about: the one I/O error of sparsekit's crates.
///
/// `Display` reads `write 'disk.img' at offset 4096: No space left on device (os error 28)`.
#[derive(Debug)]
pub struct IoError {
    /// What was being done, named after the call: `open`, `read`, `write`, `fsync`,
    /// `fallocate`, `ioctl(FS_IOC_FIEMAP)`, ...
    pub op: &'static str,
    /// The file the call was about, when known.
    pub path: Option<PathBuf>,
    /// The byte offset the call was about, when it was a transfer.
    pub offset: Option<u64>,
    /// The OS error; `raw_os_error()` holds the errno.
    pub source: io::Error,
    /// What the user can do about it, when sparsekit knows (`raw drives need root ...`);
    /// shown after the OS's message.
    pub hint: Option<&'static str>,
}

impl IoError {
    /// A failed `op` with no path or offset yet.
    pub fn new(op: &'static str, source: io::Error) -> Self {
        IoError {
            op,
            path: None,
            offset: None,
            source,
            hint: None,
        }
    }

    /// A failed `op` from an errno value.
    pub fn from_errno(op: &'static str, errno: i32) -> Self {
        IoError::new(op, io::Error::from_raw_os_error(errno))
    }

    /// Attach the path (kept if one is already set).
    pub fn with_path(mut self, path: &Path) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_path_buf());
        }
        self
    }

    /// Attach advice shown after the OS's message (replaces an earlier one).
    pub fn with_hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }

    /// Attach the byte offset.
    pub fn at(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    /// The errno, when the OS gave one.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }

    /// The system call that failed, as Node reports it in `err.syscall` (`ioctl` for
    /// `ioctl(FS_IOC_FIEMAP)`); `None` for failures that were no OS call (a short read).
    pub fn syscall(&self) -> Option<&'static str> {
        self.source.raw_os_error()?;
        Some(match self.op.find('(') {
            Some(i) => &self.op[..i],
            None => self.op,
        })
    }

    /// Whether this is a read that found end of file early (`UnexpectedEof`).
    pub fn is_eof(&self) -> bool {
        self.source.kind() == io::ErrorKind::UnexpectedEof
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, Quoted(&self.path))?;
        if let Some(o) = self.offset {
            write!(f, " at offset {o}")?;
        }
        write!(f, ": {}", self.source)?;
        if let Some(h) = &self.hint {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for IoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// What every sparsekit error tells besides its message: the one contract between the
/// core crates' errors and the Node addon, which builds a JavaScript `Error` from it (its
/// `code`, `errno`, `syscall`, `path`, `offset` and `range`). Each crate's `Error`
/// implements it, as does [`IoError`].
pub trait ErrorInfo: fmt::Display {
    /// The stable code: `ERR_SPARSEKIT_IO` for an OS failure (the addon then reports the
    /// errno's name, such as `ENOENT`), else the crate's own `ERR_SPARSEKIT_*` code.
    fn code(&self) -> &'static str;
    /// The errno, when an OS error is at the root.
    fn raw_os_error(&self) -> Option<i32> {
        None
    }
    /// The file the failure is about, when known.
    fn path(&self) -> Option<&Path> {
        None
    }
    /// The byte offset the failure is about, when known.
    fn offset(&self) -> Option<u64> {
        None
    }
    /// The OS call that failed (`open`, `read`, `ioctl`), when one did.
    fn syscall(&self) -> Option<&'static str> {
        None
    }
    /// The byte range at fault as `(start, length)`, when there is one.
    fn range(&self) -> Option<(u64, u64)> {
        None
    }
}

impl ErrorInfo for IoError {
    fn code(&self) -> &'static str {
        "ERR_SPARSEKIT_IO"
    }
    fn raw_os_error(&self) -> Option<i32> {
        IoError::raw_os_error(self)
    }
    fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
    fn offset(&self) -> Option<u64> {
        self.offset
    }
    fn syscall(&self) -> Option<&'static str> {
        IoError::syscall(self)
    }
}

/// An optional path in a message: `'/x/disk.img'` quoted, or `the file` when unknown.
pub struct Quoted<'a>(pub &'a Option<PathBuf>);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, "'{}'", p.display()),
            None => f.write_str("the file"),
        }
    }
}

/// Attach context to a plain `io::Result`: `file.sync_all().op("fsync", path)?`.
pub trait Context<T> {
    /// The failed call and its path.
    fn op(self, op: &'static str, path: &Path) -> Result<T, IoError>;
    /// The failed call, its path and the byte offset.
    fn op_at(self, op: &'static str, path: &Path, offset: u64) -> Result<T, IoError>;
}

impl<T> Context<T> for io::Result<T> {
    fn op(self, op: &'static str, path: &Path) -> Result<T, IoError> {
        self.map_err(|e| IoError::new(op, e).with_path(path))
    }
    fn op_at(self, op: &'static str, path: &Path, offset: u64) -> Result<T, IoError> {
        self.map_err(|e| IoError::new(op, e).with_path(path).at(offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_op_path_offset() {
        let e = IoError::from_errno("write", libc::ENOSPC)
            .with_path(Path::new("/x/disk.img"))
            .at(4096);
        let s = e.to_string();
        assert!(
            s.starts_with("write '/x/disk.img' at offset 4096: No space left"),
            "{s}"
        );
        assert_eq!(e.syscall(), Some("write"));
        let f = IoError::from_errno("ioctl(FS_IOC_FIEMAP)", libc::ENOTTY);
        assert_eq!(f.syscall(), Some("ioctl"));
        assert_eq!(
            f.to_string().split(':').next(),
            Some("ioctl(FS_IOC_FIEMAP) the file")
        );
    }

    #[test]
    fn error_info_of_io_error() {
        let e = IoError::from_errno("open", libc::ENOENT).with_path(Path::new("/nope"));
        let info: &dyn ErrorInfo = &e;
        assert_eq!(info.code(), "ERR_SPARSEKIT_IO");
        assert_eq!(info.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(info.path(), Some(Path::new("/nope")));
        assert_eq!(
            (info.offset(), info.syscall(), info.range()),
            (None, Some("open"), None)
        );
        assert_eq!(Quoted(&None).to_string(), "the file");
        assert_eq!(Quoted(&Some("/a b".into())).to_string(), "'/a b'");
    }

    #[test]
    fn eof_has_no_syscall() {
        let e = IoError::new("read", io::ErrorKind::UnexpectedEof.into());
        assert!(e.is_eof());
        assert_eq!(e.syscall(), None);
    }
}
