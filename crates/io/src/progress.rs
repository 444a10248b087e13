use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How often a blocking wait looks at its [`Cancel`] token.
const WAKE_MS: i32 = 25;

/// The phase an operation is in; each phase has its own `done`/`total` and ends with one
/// report where `done == total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Finding where the data is (extent maps, qcow2 tables).
    Map,
    /// Reading and hashing.
    Hash,
    /// Copying data to the destination.
    Copy,
    /// Writing data to the destination.
    Write,
    /// Decompressing a source.
    Decompress,
    /// Checking written data against checksums, or reading it back.
    Verify,
    /// Flushing the destination to stable storage (`fsync`).
    Sync,
    /// Receiving data from a stream.
    Receive,
    /// Sending data to a stream.
    Send,
}

impl Phase {
    /// The name JS sees: `map`, `hash`, `copy`, `write`, `decompress`, `verify`, `sync`,
    /// `receive`, `send`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Map => "map",
            Phase::Hash => "hash",
            Phase::Copy => "copy",
            Phase::Write => "write",
            Phase::Decompress => "decompress",
            Phase::Verify => "verify",
            Phase::Sync => "sync",
            Phase::Receive => "receive",
            Phase::Send => "send",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One progress report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// What is being done.
    pub phase: Phase,
    /// Bytes (or, for [`Phase::Map`], bytes of the file covered) done in this phase.
    pub done: u64,
    /// Bytes this phase will do; `None` when unknown (a stream).
    pub total: Option<u64>,
}

/// The operation was cancelled through its [`Cancel`] token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aborted;

impl fmt::Display for Aborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the operation was aborted")
    }
}

impl std::error::Error for Aborted {}

/// A cancellation flag shared by the caller and any number of worker threads.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A token nobody has cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask every holder to stop at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(Aborted)` once cancelled.
    pub fn check(&self) -> Result<(), Aborted> {
        if self.is_cancelled() {
            Err(Aborted)
        } else {
            Ok(())
        }
    }
}

type Sink<'a> = Box<dyn FnMut(Progress) + Send + 'a>;

/// What a long operation gets from its caller: a [`Cancel`] token and a progress sink.
///
/// The core reports as often as it likes (every chunk) and always reports `done == total`
/// when a phase ends; throttling is the caller's business.
pub struct Control<'a> {
    cancel: Cancel,
    sink: Option<Sink<'a>>,
}

impl Default for Control<'_> {
    fn default() -> Self {
        Control::none()
    }
}

impl<'a> Control<'a> {
    /// No progress, never cancelled.
    pub fn none() -> Self {
        Control {
            cancel: Cancel::new(),
            sink: None,
        }
    }

    /// Cancelled through `cancel`, reporting to `sink`.
    pub fn new(cancel: Cancel, sink: impl FnMut(Progress) + Send + 'a) -> Self {
        Control {
            cancel,
            sink: Some(Box::new(sink)),
        }
    }

    /// Cancelled through `cancel`, no progress.
    pub fn with_cancel(cancel: Cancel) -> Self {
        Control { cancel, sink: None }
    }

    /// The token, for worker threads and blocking waits.
    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// `Err(Aborted)` once cancelled.
    pub fn check(&self) -> Result<(), Aborted> {
        self.cancel.check()
    }

    /// Report progress of `phase`, then check for cancellation.
    pub fn report(&mut self, phase: Phase, done: u64, total: Option<u64>) -> Result<(), Aborted> {
        if let Some(sink) = &mut self.sink {
            sink(Progress { phase, done, total });
        }
        self.check()
    }
}

/// Read from a stream (pipe, FIFO, socket, character device) opened with `O_NONBLOCK`
/// (as [`crate::sys::open`] leaves them), waiting in `poll` for data and waking every few
/// milliseconds to look at `cancel`. `Ok(Some(0))` is end of file; `Ok(None)` means it
/// was cancelled.
///
/// It polls before reading because a FIFO opened `O_NONBLOCK` that never had a writer reads
/// as end of file at once, where a blocking reader would wait for one; `poll` reports
/// neither `POLLIN` nor `POLLHUP` until a writer came (Linux `pipe_poll` compares the
/// writer counter seen at open), so waiting in `poll` is what a blocking `read` would do.
pub fn read_stream(mut file: &File, buf: &mut [u8], cancel: &Cancel) -> io::Result<Option<usize>> {
    loop {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        if !crate::sys::poll_readable(file, WAKE_MS)? {
            continue;
        }
        match file.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn reports_reach_sink_and_cancel_stops() {
        let mut seen = Vec::new();
        let cancel = Cancel::new();
        {
            let mut c = Control::new(cancel.clone(), |p| seen.push(p));
            c.report(Phase::Hash, 1, Some(2)).unwrap();
            cancel.cancel();
            assert_eq!(c.report(Phase::Hash, 2, Some(2)), Err(Aborted));
        }
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].done, 2);
    }

    #[test]
    fn fifo_read_wakes_on_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: plain syscall.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let f = crate::sys::open(&p, false, false, false).unwrap();
        let cancel = Cancel::new();
        let c2 = cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            c2.cancel();
        });
        let start = Instant::now();
        // A FIFO that never had a writer: we wait (as a blocking read would) until cancelled.
        let mut buf = [0u8; 16];
        let r = read_stream(&f, &mut buf, &cancel).unwrap();
        t.join().unwrap();
        assert_eq!(r, None);
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn fifo_reads_data_then_eof() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: plain syscall.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let f = crate::sys::open(&p, false, false, false).unwrap();
        let p2 = p.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut w = std::fs::OpenOptions::new().write(true).open(p2).unwrap();
            w.write_all(b"hello").unwrap();
        });
        let cancel = Cancel::new();
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        while let Some(n) = read_stream(&f, &mut buf, &cancel).unwrap() {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        t.join().unwrap();
        assert_eq!(got, b"hello");
    }
}
