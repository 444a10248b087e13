//! Work over many ranges on rayon's pool while the calling thread reports progress: the
//! [`Control`] is not `Sync`, so workers send byte counts through a channel and the caller
//! forwards them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use rayon::prelude::*;
use sparsekit_io::{Cancel, Control, Phase};

use crate::{Error, Result};

/// What a worker gets: a way to report bytes done and to learn that it should stop (the
/// operation was cancelled, or another range failed).
pub(crate) struct Worker<'a> {
    tx: mpsc::Sender<u64>,
    cancel: &'a Cancel,
    failed: &'a AtomicBool,
}

impl Worker<'_> {
    /// Count `n` bytes done; `Err(Aborted)` when the worker should stop.
    pub(crate) fn done(&self, n: u64) -> Result<()> {
        let _ = self.tx.send(n);
        self.check()
    }

    /// `Err(Aborted)` when the worker should stop.
    pub(crate) fn check(&self) -> Result<()> {
        if self.cancel.is_cancelled() || self.failed.load(Ordering::Relaxed) {
            return Err(Error::Aborted);
        }
        Ok(())
    }
}

/// Run `f` on every item in parallel, reporting `phase` progress up to `total` bytes.
/// On failure the error of the first failing item (in item order) is returned, not an
/// [`Error::Aborted`] of a worker that merely stopped because another failed.
pub(crate) fn for_each<T: Sync, R: Send>(
    items: &[T],
    total: u64,
    phase: Phase,
    ctl: &mut Control<'_>,
    f: impl Fn(&T, &Worker<'_>) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    ctl.report(phase, 0, Some(total))?;
    let cancel = ctl.cancel().clone();
    let failed = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<u64>();
    let results = std::thread::scope(|s| {
        let work = s.spawn(|| {
            items
                .par_iter()
                .map_with(tx, |tx, item| {
                    let w = Worker {
                        tx: tx.clone(),
                        cancel: &cancel,
                        failed: &failed,
                    };
                    let r = f(item, &w);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    r
                })
                .collect::<Vec<Result<R>>>()
        });
        let mut done = 0u64;
        // Ends when every sender (one per rayon split, and the original) is dropped.
        for n in rx {
            done += n;
            if ctl.report(phase, done.min(total), Some(total)).is_err() {
                // Cancelled: workers see the same token and stop.
            }
        }
        work.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    let mut first_abort = false;
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(v) => out.push(v),
            Err(Error::Aborted) => first_abort = true,
            Err(e) => return Err(e),
        }
    }
    if first_abort || cancel.is_cancelled() {
        return Err(Error::Aborted);
    }
    ctl.report(phase, total, Some(total))?;
    Ok(out)
}
