//! Reading the protocol's streams on every OS: a cancelled read is an `io::Error`
//! carrying [`Aborted`]. The OS-specific side (writing, pipes, descriptors) is in `sys`.

use std::fs::File;
use std::io::{self, Read};

use sparsekit_io::{read_stream, Aborted, Cancel};

/// `io::Error` carrying [`Aborted`]: what a cancelled stream read or write returns, and what
/// the record reader and writer turn into [`crate::Error::Aborted`].
pub(crate) fn aborted_io() -> io::Error {
    io::Error::other(Aborted)
}

/// Whether `e` is [`aborted_io`].
pub(crate) fn is_aborted_io(e: &io::Error) -> bool {
    sparsekit_io::carries::<Aborted>(e)
}

/// A stream (pipe, socket, FIFO, stdin) read so that it wakes on cancellation (see
/// [`sparsekit_io::read_stream`]: `poll` on POSIX, `PeekNamedPipe` on Windows); works on
/// blocking and non-blocking descriptors.
pub struct StreamReader {
    file: File,
    cancel: Cancel,
}

impl StreamReader {
    /// Read `file`, stopping with an aborted error once `cancel` is set.
    pub fn new(file: File, cancel: Cancel) -> Self {
        StreamReader { file, cancel }
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match read_stream(&self.file, buf, &self.cancel)? {
            Some(n) => Ok(n),
            None => Err(aborted_io()),
        }
    }
}
