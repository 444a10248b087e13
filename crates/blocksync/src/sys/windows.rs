//! The Windows side of this crate's `sys` module (the Linux one is sys.rs): the protocol's
//! streams over pipe handles, and the C runtime descriptors Node hands over.
//!
//! Node (libuv) names files and pipes by descriptors of the Universal C Runtime
//! (ucrtbase.dll, one per process): [`dup_fd`] turns one into a handle of our own with
//! `_get_osfhandle` (corecrt_io.h) and `DuplicateHandle` (handleapi.h), and [`into_fd`]
//! makes a descriptor for Node with `_open_osfhandle`. [`pipe`] is `CreatePipe`
//! (namedpipeapi.h). Reads wait in `PeekNamedPipe` (through `sparsekit_io::read_stream`)
//! and wake on cancellation; writes block in `WriteFile` until the reader takes the data.

use std::fs::File;
use std::io::{self, Write};
use std::os::windows::io::{FromRawHandle, IntoRawHandle, RawHandle};

use sparsekit_io::Cancel;
use windows_sys::Win32::Foundation::{DuplicateHandle, DUPLICATE_SAME_ACCESS, HANDLE};
use windows_sys::Win32::System::Pipes::CreatePipe;
use windows_sys::Win32::System::Threading::GetCurrentProcess;

// The C runtime Node itself uses (ucrtbase.dll ships with Windows 10 and later; the
// Universal CRT update brings it to 7 and 8.1).
#[link(name = "ucrtbase", kind = "raw-dylib")]
extern "C" {
    fn _get_osfhandle(fd: i32) -> isize;
    fn _open_osfhandle(handle: isize, flags: i32) -> i32;
}

pub use crate::stream::StreamReader;
pub(crate) use crate::stream::{aborted_io, is_aborted_io};

/// A stream written with blocking `WriteFile` calls, checking `cancel` before each.
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

impl Write for StreamWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            if self.cancel.is_cancelled() {
                return Err(aborted_io());
            }
            match (&self.file).write(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An anonymous pipe (`CreatePipe`, namedpipeapi.h), not inherited: `(read, write)`.
pub fn pipe() -> io::Result<(File, File)> {
    let (mut r, mut w): (HANDLE, HANDLE) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: CreatePipe writes two handles; no security attributes (not inheritable).
    if unsafe { CreatePipe(&mut r, &mut w, std::ptr::null(), 0) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both handles were just created and are owned by nobody else.
    Ok(unsafe {
        (
            File::from_raw_handle(r as RawHandle),
            File::from_raw_handle(w as RawHandle),
        )
    })
}

/// Our own handle for Node's descriptor `fd` (`_get_osfhandle` + `DuplicateHandle`), so
/// the caller keeps (and closes) its own.
pub fn dup_fd(fd: i32) -> io::Result<File> {
    // SAFETY: _get_osfhandle validates the descriptor (-1 and EBADF for a bad one).
    let h = unsafe { _get_osfhandle(fd) };
    if h == -1 || h == -2 {
        return Err(io::Error::from_raw_os_error(sparsekit_io::errno::EBADF));
    }
    let mut new: HANDLE = std::ptr::null_mut();
    // SAFETY: duplicating a live handle into this process.
    let ok = unsafe {
        let me = GetCurrentProcess();
        DuplicateHandle(me, h as HANDLE, me, &mut new, 0, 0, DUPLICATE_SAME_ACCESS)
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` was just created and is owned by nobody else.
    Ok(unsafe { File::from_raw_handle(new as RawHandle) })
}

/// How long [`open_pipe`] waits for a free instance of a busy named pipe.
const PIPE_BUSY_WAIT_MS: u32 = 5000;

/// Open the client end of the named pipe at `path` (`\\.\pipe\NAME`: Node's
/// `net.Server` listening there) for reading or for `write`: `CreateFileW` (fileapi.h,
/// through std's `OpenOptions`, synchronous I/O), and when every instance is taken
/// (`ERROR_PIPE_BUSY`), `WaitNamedPipeW` (namedpipeapi.h) for up to five seconds, then
/// once more. This is how Node streams reach a job on Windows: node.exe links its C
/// runtime statically, so its descriptors mean nothing to the addon's ucrtbase.dll
/// ([`dup_fd`] only serves descriptors the process's shared C runtime made, like the
/// CLI's stdin and stdout).
pub fn open_pipe(path: &std::path::Path, write: bool) -> io::Result<File> {
    use std::os::windows::ffi::OsStrExt;
    use windows_sys::Win32::Foundation::ERROR_PIPE_BUSY;
    use windows_sys::Win32::System::Pipes::WaitNamedPipeW;
    let open = || {
        std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .open(path)
    };
    match open() {
        Err(e) if e.raw_os_error() == Some(ERROR_PIPE_BUSY as i32) => {
            let wide: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
            // SAFETY: a NUL-terminated wide path; the call only waits.
            if unsafe { WaitNamedPipeW(wide.as_ptr(), PIPE_BUSY_WAIT_MS) } == 0 {
                return Err(io::Error::last_os_error());
            }
            open()
        }
        r => r,
    }
}

/// A C runtime descriptor for Node owning `file`'s handle (`_open_osfhandle`).
pub fn into_fd(file: File) -> io::Result<i32> {
    let h = file.into_raw_handle();
    // SAFETY: the CRT takes ownership of the handle when it succeeds.
    let fd = unsafe { _open_osfhandle(h as isize, 0) };
    if fd < 0 {
        // SAFETY: the handle is still ours: close it.
        drop(unsafe { File::from_raw_handle(h) });
        return Err(io::Error::from_raw_os_error(sparsekit_io::errno::EMFILE));
    }
    Ok(fd)
}

/// Whether `file` is a console (`GetConsoleMode` through std): binary streams are refused
/// there.
pub fn is_terminal(file: &File) -> bool {
    std::io::IsTerminal::is_terminal(file)
}
