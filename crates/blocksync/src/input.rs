//! What `checksum` reads when it is given a path: a file or block device (read at
//! offsets, `rest` sent), or a stream such as a pipe named by a path (`/dev/stdin` on a
//! pipe, a FIFO, a process substitution `/dev/fd/N`), read once in order, as blockcopy
//! does.

use std::fs::File;
use std::io;
use std::path::Path;

use sparsekit_io::{FileKind, FileStorage, IoError};

use crate::error::Error;

/// A destination opened for [`checksum`](crate::checksum) by
/// [`open_checksum_input`].
#[derive(Debug)]
pub enum OpenedInput {
    /// A regular file or block device: positional reads on every core; `rest` is sent.
    Storage(FileStorage),
    /// A pipe, FIFO, socket or character device: read once, in order (through
    /// [`sys::StreamReader`](crate::sys::StreamReader), which waits in `poll` and wakes on
    /// cancellation); no `rest`, and the total is unknown until the end.
    Stream(File),
}

/// Open `path` for reading as `checksum`'s destination, never blocking in `open()` (a
/// FIFO with no writer yet is opened at once; reading it waits for one, wakes on
/// cancellation). A directory is EISDIR. On Linux, a `/dev/stdin`, `/dev/fd/N` or
/// `/proc/self/fd/N` that cannot be opened again (a socket: ENXIO) is read through the
/// descriptor itself.
pub fn open_checksum_input(path: &Path) -> Result<OpenedInput, Error> {
    let io = |op, e: io::Error| Error::Io(IoError::new(op, e).with_path(path));
    let file = match sparsekit_io::sys::open(path, false, false, false) {
        Ok(f) => f,
        Err(e) => match own_descriptor(path, &e) {
            Some(fd) => crate::sys::dup_fd(fd).map_err(|e| io("open", e))?,
            None => return Err(io("open", e)),
        },
    };
    let meta = file.metadata().map_err(|e| io("fstat", e))?;
    match FileKind::of(&meta) {
        k if k.is_positional() => Ok(OpenedInput::Storage(FileStorage::from_file(file, path)?)),
        FileKind::Directory => Err(Error::Io(
            IoError::from_errno("open", sparsekit_io::errno::EISDIR).with_path(path),
        )),
        _ => Ok(OpenedInput::Stream(file)),
    }
}

/// The descriptor a path such as `/dev/stdin` or `/dev/fd/3` names, when reopening it
/// failed with ENXIO (Linux cannot reopen a socket through /proc).
#[cfg(unix)]
fn own_descriptor(path: &Path, e: &io::Error) -> Option<i32> {
    if e.raw_os_error() != Some(libc::ENXIO) {
        return None;
    }
    let s = path.to_str()?;
    if s == "/dev/stdin" {
        return Some(0);
    }
    let n = s
        .strip_prefix("/dev/fd/")
        .or_else(|| s.strip_prefix("/proc/self/fd/"))?;
    n.parse::<i32>().ok().filter(|&fd| fd >= 0)
}

#[cfg(not(unix))]
fn own_descriptor(_path: &Path, _e: &io::Error) -> Option<i32> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use sparsekit_io::ErrorInfo;
    use std::io::{Read, Write};

    #[test]
    fn files_are_storage_fifos_are_streams() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"abc").unwrap();
        assert!(matches!(
            open_checksum_input(&f).unwrap(),
            OpenedInput::Storage(_)
        ));
        let e = open_checksum_input(dir.path()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EISDIR));
        let e = open_checksum_input(&dir.path().join("none")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(e.path(), Some(dir.path().join("none").as_path()));
        // A FIFO with no writer yet: opened at once, read as a stream.
        let fifo = dir.path().join("p");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: plain syscall on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let OpenedInput::Stream(r) = open_checksum_input(&fifo).unwrap() else {
            panic!("a FIFO is a stream")
        };
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        w.write_all(b"xyz").unwrap();
        drop(w);
        let mut got = Vec::new();
        let mut rd = crate::sys::StreamReader::new(r, sparsekit_io::Cancel::new());
        rd.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"xyz");
    }

    #[test]
    fn own_descriptor_paths() {
        let enxio = io::Error::from_raw_os_error(libc::ENXIO);
        assert_eq!(own_descriptor(Path::new("/dev/stdin"), &enxio), Some(0));
        assert_eq!(own_descriptor(Path::new("/dev/fd/7"), &enxio), Some(7));
        assert_eq!(
            own_descriptor(Path::new("/proc/self/fd/3"), &enxio),
            Some(3)
        );
        assert_eq!(own_descriptor(Path::new("/dev/fd/x"), &enxio), None);
        assert_eq!(own_descriptor(Path::new("/tmp/x"), &enxio), None);
        let enoent = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(own_descriptor(Path::new("/dev/stdin"), &enoent), None);
    }
}
