//! The Linux-specific part of this crate: reading and writing the protocol's streams
//! through pipe or socket file descriptors, waking up when cancelled. Other OSes:
//! sys/windows.rs (macOS uses this module: it is POSIX only, except `pipe2`, see there).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;

use sparsekit_io::Cancel;

/// How often a wait for a pipe looks at its [`Cancel`] token.
const WAKE_MS: i32 = 25;

pub use crate::stream::StreamReader;
pub(crate) use crate::stream::{aborted_io, is_aborted_io};

/// A stream written with `poll` on `EAGAIN`, so a non-blocking descriptor (a pipe end Node
/// also holds) works and a wait for a slow reader wakes on cancellation. On a blocking
/// descriptor a write waits in the kernel as usual.
pub struct StreamWriter {
    file: File,
    cancel: Cancel,
}

impl StreamWriter {
    /// Write `file`, stopping with an aborted error once `cancel` is set.
    pub fn new(file: File, cancel: Cancel) -> Self {
        StreamWriter { file, cancel }
    }
}

/// Wait up to [`WAKE_MS`] for `file` to accept writes (or report an error/hang-up, which the
/// next write returns).
fn poll_writable(file: &File) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, WAKE_MS) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

impl Write for StreamWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            if self.cancel.is_cancelled() {
                return Err(aborted_io());
            }
            match (&self.file).write(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => poll_writable(&self.file)?,
                Err(e) => return Err(e),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A pipe whose ends are close-on-exec and non-blocking (`pipe2(2)`): `(read, write)`.
/// Node's `net.Socket` takes one end, a [`StreamReader`] or [`StreamWriter`] the other.
pub fn pipe() -> io::Result<(File, File)> {
    use std::os::unix::io::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    #[cfg(target_os = "linux")]
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // macOS has no pipe2: pipe(2), then FD_CLOEXEC and O_NONBLOCK on each end (fcntl.h).
    // SAFETY: pipe writes two descriptors into the array.
    #[cfg(not(target_os = "linux"))]
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (r, w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    #[cfg(not(target_os = "linux"))]
    for f in [&r, &w] {
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            if libc::fcntl(f.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        sparsekit_io::sys::set_nonblocking(f, true)?;
    }
    Ok((r, w))
}

/// A close-on-exec duplicate of descriptor `fd` (`F_DUPFD_CLOEXEC`), so the caller keeps
/// (and closes) its own.
pub fn dup_fd(fd: i32) -> io::Result<File> {
    use std::os::unix::io::FromRawFd;
    // SAFETY: fcntl on a caller-given descriptor; a bad one fails with EBADF.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` was just created and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(new) })
}

/// Open the pipe at `path` (a FIFO, or any path `open(2)` takes) for reading or for
/// `write`: close-on-exec, and non-blocking when it is a FIFO (through
/// `sparsekit_io::sys::open_flags`; the reader and writer here wait in `poll`). Opening a
/// FIFO for writing that nobody reads fails with ENXIO instead of blocking.
pub fn open_pipe(path: &std::path::Path, write: bool) -> io::Result<File> {
    let mode = if write {
        libc::O_WRONLY
    } else {
        libc::O_RDONLY
    };
    sparsekit_io::sys::open_flags(path, mode)
}

/// The descriptor of `file`, handed over to the caller (Node), who closes it.
pub fn into_fd(file: File) -> io::Result<i32> {
    use std::os::unix::io::IntoRawFd;
    Ok(file.into_raw_fd())
}

/// Whether descriptor `fd` is a terminal (`isatty(3)`): binary streams are refused there.
pub fn is_terminal(file: &File) -> bool {
    // SAFETY: plain call on a valid descriptor.
    unsafe { libc::isatty(file.as_raw_fd()) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn reader_wakes_on_cancel() {
        let (r, _w) = pipe().unwrap();
        let cancel = Cancel::new();
        let c2 = cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            c2.cancel();
        });
        let e = StreamReader::new(r, cancel)
            .read(&mut [0u8; 8])
            .unwrap_err();
        t.join().unwrap();
        assert!(is_aborted_io(&e));
    }

    #[test]
    fn writer_waits_on_full_pipe_and_wakes_on_cancel() {
        let (_r, w) = pipe().unwrap();
        let cancel = Cancel::new();
        let c2 = cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            c2.cancel();
        });
        let mut wr = StreamWriter::new(w, cancel);
        let e = loop {
            if let Err(e) = wr.write_all(&[0u8; 65536]) {
                break e;
            }
        };
        t.join().unwrap();
        assert!(is_aborted_io(&e), "{e}");
    }

    #[test]
    fn dup_keeps_the_original() {
        let (r, w) = pipe().unwrap();
        let d = dup_fd(w.as_raw_fd()).unwrap();
        drop(w);
        (&d).write_all(b"x").unwrap();
        drop(d);
        let mut s = Vec::new();
        sparsekit_io::sys::set_nonblocking(&r, false).unwrap();
        (&r).read_to_end(&mut s).unwrap();
        assert_eq!(s, b"x");
        assert!(!is_terminal(&r));
    }
}
