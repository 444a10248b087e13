//! The source's used ranges read with several reads in flight, handed out in order.
//!
//! A drive's used blocks come in many ranges; read one after another, each read waits for
//! the device's latency while nothing else happens. [`in_order`] gives each of
//! [`READERS`] threads every `READERS`-th piece, so that many reads are in flight while
//! the caller hashes and compresses the pieces before them; the caller still sees the
//! pieces strictly in image order. Buffers come from a [`Pool`] and go back to it when the
//! last holder of a [`Chunk`] (the caller, the image's hasher, a compressor) drops it, so
//! memory stays at a few dozen chunks whatever the image's size.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};

use sparsekit_io::{PageBuf, Storage};

use crate::{Error, Plan, Result};

/// Reads in flight at once (one thread each; they wait on the device, not the CPU).
pub(crate) const READERS: usize = 4;

/// Chunk buffers no one holds, for reuse.
pub(crate) struct Pool {
    free: Mutex<Vec<PageBuf>>,
    len: usize,
}

impl Pool {
    /// A pool of buffers of `len` bytes.
    pub(crate) fn new(len: usize) -> Pool {
        Pool {
            free: Mutex::new(Vec::new()),
            len,
        }
    }

    fn take(&self) -> PageBuf {
        let b = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        b.unwrap_or_else(|| PageBuf::new(self.len))
    }
}

/// Image bytes at [`Chunk::at`], as read (with the GPT rewrite laid over); the buffer
/// goes back to its pool on drop.
pub(crate) struct Chunk {
    /// Where in the image.
    pub(crate) at: u64,
    buf: Option<PageBuf>,
    len: usize,
    pool: Arc<Pool>,
}

impl std::ops::Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf.as_ref().expect("a chunk's buffer")[..self.len]
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.pool
                .free
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(b);
        }
    }
}

/// The pieces `(offset, length)` a plan's ranges are read in: each range cut into pieces
/// of at most `chunk` bytes.
pub(crate) fn pieces(ranges: &[(u64, u64)], chunk: usize) -> Vec<(u64, usize)> {
    let mut v = Vec::new();
    for &(s, e) in ranges {
        let mut at = s;
        while at < e {
            let n = ((e - at) as usize).min(chunk);
            v.push((at, n));
            at += n as u64;
        }
    }
    v
}

/// Read `pieces` of the image `plan` describes from `source`, [`READERS`] at a time, and
/// hand each to `f` in order. The first error (a read's or `f`'s) stops the reads and is
/// returned; reads already in flight finish and are dropped.
pub(crate) fn in_order(
    plan: &Plan,
    source: &dyn Storage,
    pieces: &[(u64, usize)],
    pool: &Arc<Pool>,
    mut f: impl FnMut(Chunk) -> Result<()>,
) -> Result<()> {
    let stop = AtomicBool::new(false);
    let threads = READERS.min(pieces.len()).max(1);
    std::thread::scope(|s| {
        let mut rxs = Vec::with_capacity(threads);
        for t in 0..threads {
            let (tx, rx) = sync_channel::<Result<Chunk>>(1);
            rxs.push(rx);
            let stop = &stop;
            s.spawn(move || {
                for &(at, n) in pieces.iter().skip(t).step_by(threads) {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let mut b = pool.take();
                    let r = plan.read(source, &mut b[..n], at).map(|()| Chunk {
                        at,
                        buf: Some(b),
                        len: n,
                        pool: pool.clone(),
                    });
                    let failed = r.is_err();
                    if tx.send(r).is_err() || failed {
                        break;
                    }
                }
            });
        }
        let r = (|| {
            for i in 0..pieces.len() {
                // A reader that ended without sending panicked: the scope re-raises it.
                let Ok(c) = rxs[i % threads].recv() else {
                    return Err(Error::Aborted);
                };
                f(c?)?;
            }
            Ok(())
        })();
        stop.store(true, Ordering::Relaxed);
        // Readers blocked on a full channel see it closed and end.
        drop(rxs);
        r
    })
}

/// A chunk holding `data` at `at`, for tests of what consumes chunks.
#[cfg(test)]
pub(crate) fn tests_chunk(pool: &Arc<Pool>, at: u64, data: &[u8]) -> Chunk {
    let mut b = pool.take();
    b.resize(data.len());
    b.copy_from_slice(data);
    Chunk {
        at,
        buf: Some(b),
        len: data.len(),
        pool: pool.clone(),
    }
}
