//! The resumable session (extension `--resume`): `save` records in a small journal file how
//! far the session got; `checksum` reads it and starts there. See the README's "Resumable
//! sessions".

use sparsekit_io::sys::FileExt;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sparsekit_io::IoError;

use crate::error::Error;

/// Journal magic: `SKr1`.
const MAGIC: [u8; 4] = *b"SKr1";
/// Journal size: magic, source size u64, checkpoint u64, check u32.
pub(crate) const JOURNAL_LEN: usize = 4 + 8 + 8 + 4;

/// Where a session stands: what `save` recorded in its journal, what `checksum` resumes
/// from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumeState {
    /// Every destination block below this byte was dealt with (written or found equal).
    pub checkpoint: u64,
    /// The source size of the session, `u64::MAX` when unknown (a new session).
    pub source_size: u64,
}

impl Default for ResumeState {
    /// A new session: from byte 0, any source size.
    fn default() -> Self {
        ResumeState {
            checkpoint: 0,
            source_size: u64::MAX,
        }
    }
}

fn check(b: &[u8]) -> u32 {
    let h = blake3::hash(b);
    u32::from_be_bytes(h.as_bytes()[..4].try_into().expect("4 bytes"))
}

fn io(op: &'static str, path: &Path, e: std::io::Error) -> Error {
    Error::Io(IoError::new(op, e).with_path(path))
}

impl ResumeState {
    /// The state recorded in `journal`, or a new session when the file does not exist.
    /// A file that is not a journal (wrong size, magic or check) is
    /// [`Error::BadJournal`]: delete it to start over.
    ///
    /// A path that names something else than a regular file (a FIFO, a device, a
    /// directory) is [`Error::BadJournal`] too, found without blocking: opening a FIFO
    /// would otherwise wait for a writer forever.
    pub fn load(journal: &Path) -> Result<ResumeState, Error> {
        // Non-blocking open (a FIFO with no writer returns at once), then fstat.
        let mut f = match sparsekit_io::sys::open(journal, false, false, false) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(ResumeState::default()),
            Err(e) => return Err(io("open", journal, e)),
        };
        let meta = f.metadata().map_err(|e| io("fstat", journal, e))?;
        check_regular(journal, &meta)?;
        let mut b = Vec::with_capacity(JOURNAL_LEN + 1);
        (&mut f)
            .take(JOURNAL_LEN as u64 + 1)
            .read_to_end(&mut b)
            .map_err(|e| io("read", journal, e))?;
        let bad = |reason: String| Error::BadJournal {
            path: journal.to_path_buf(),
            reason,
        };
        if b.len() != JOURNAL_LEN {
            return Err(bad(format!(
                "it holds {}{} bytes, a journal {JOURNAL_LEN}",
                b.len().min(JOURNAL_LEN),
                if b.len() > JOURNAL_LEN { "+" } else { "" }
            )));
        }
        if b[..4] != MAGIC {
            return Err(bad("it does not start with SKr1".into()));
        }
        let want = u32::from_be_bytes(b[20..24].try_into().expect("4 bytes"));
        if check(&b[..20]) != want {
            return Err(bad("its check value does not match (a torn write?)".into()));
        }
        Ok(ResumeState {
            source_size: u64::from_be_bytes(b[4..12].try_into().expect("8 bytes")),
            checkpoint: u64::from_be_bytes(b[12..20].try_into().expect("8 bytes")),
        })
    }

    fn encode(&self) -> [u8; JOURNAL_LEN] {
        let mut b = [0u8; JOURNAL_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4..12].copy_from_slice(&self.source_size.to_be_bytes());
        b[12..20].copy_from_slice(&self.checkpoint.to_be_bytes());
        let c = check(&b[..20]);
        b[20..].copy_from_slice(&c.to_be_bytes());
        b
    }
}

/// `save`'s open journal: rewritten in place (one 24-byte `pwrite` and `fdatasync`) at
/// every checkpoint, removed when the session completes.
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
}

/// A journal must be a regular file: anything else (a FIFO, a device, a directory, a
/// socket) is [`Error::BadJournal`] naming what it is.
fn check_regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), Error> {
    if meta.is_file() {
        return Ok(());
    }
    Err(Error::BadJournal {
        path: path.to_path_buf(),
        reason: format!(
            "it is a {}, not a regular file (give --journal a file path, or remove it)",
            sparsekit_io::FileKind::of(meta).name()
        ),
    })
}

/// Refuse a journal path that exists and is not a regular file, before anything is
/// written (`save` checks this first; a missing journal is fine, it is created later).
pub(crate) fn check_journal_path(path: &Path) -> Result<(), Error> {
    match std::fs::metadata(path) {
        Ok(meta) => check_regular(path, &meta),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("stat", path, e)),
    }
}

impl Journal {
    pub(crate) fn open(path: &Path) -> Result<Journal, Error> {
        check_journal_path(path)?;
        // Non-blocking open, so a FIFO put there since the check cannot block us; then the
        // same check on what was opened.
        let mut oo = OpenOptions::new();
        oo.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        oo.custom_flags(libc::O_NONBLOCK);
        let file = oo.open(path).map_err(|e| io("open", path, e))?;
        let meta = file.metadata().map_err(|e| io("fstat", path, e))?;
        check_regular(path, &meta)?;
        Ok(Journal {
            file,
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn record(&mut self, state: ResumeState) -> Result<(), Error> {
        self.file
            .write_all_at(&state.encode(), 0)
            .map_err(|e| io("write", &self.path, e))?;
        self.file
            .sync_data()
            .map_err(|e| io("fdatasync", &self.path, e))
    }
}

/// The session is complete: nothing to resume.
pub(crate) fn remove_journal(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io("unlink", path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsekit_io::ErrorInfo;

    /// Run `f` on a thread; its answer, or a failure when it blocks for 5 s.
    fn within_5s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("blocked for 5 s (opening a FIFO waits for a writer)")
    }

    #[cfg(unix)]
    #[test]
    fn journal_that_is_a_fifo_or_a_directory_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("dst.sksync-resume");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: plain syscall on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for p in [fifo.clone(), dir.path().to_path_buf()] {
            let q = p.clone();
            let e = within_5s(move || ResumeState::load(&q)).unwrap_err();
            assert_eq!(e.code(), "ERR_SPARSEKIT_BAD_JOURNAL", "{e}");
            assert_eq!(e.path(), Some(p.as_path()));
            assert!(e.to_string().contains("not a regular file"), "{e}");
            let q = p.clone();
            let e = within_5s(move || Journal::open(&q).map(|_| ())).unwrap_err();
            assert_eq!(e.code(), "ERR_SPARSEKIT_BAD_JOURNAL", "{e}");
            assert_eq!(
                check_journal_path(&p).unwrap_err().code(),
                "ERR_SPARSEKIT_BAD_JOURNAL"
            );
        }
        assert!(e_is_fifo(&fifo), "the FIFO is left as it was");
        assert!(check_journal_path(&dir.path().join("none")).is_ok());
    }

    #[cfg(unix)]
    fn e_is_fifo(p: &Path) -> bool {
        use std::os::unix::fs::FileTypeExt;
        std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_fifo())
    }

    #[test]
    fn journal_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        assert_eq!(ResumeState::load(&p).unwrap(), ResumeState::default());
        let mut j = Journal::open(&p).unwrap();
        let s = ResumeState {
            checkpoint: 1 << 20,
            source_size: 12345,
        };
        j.record(s).unwrap();
        assert_eq!(ResumeState::load(&p).unwrap(), s);
        let mut b = std::fs::read(&p).unwrap();
        b[13] ^= 1;
        std::fs::write(&p, &b).unwrap();
        let e = ResumeState::load(&p).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_BAD_JOURNAL");
        std::fs::write(&p, &b[..10]).unwrap();
        assert!(ResumeState::load(&p)
            .unwrap_err()
            .to_string()
            .contains("10 bytes"));
        drop(j);
        remove_journal(&p).unwrap();
        remove_journal(&p).unwrap();
        assert!(!p.exists());
    }
}
