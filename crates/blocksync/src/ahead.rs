//! Hash-ahead for `retrieve`: the source's blocks are read and hashed before their records
//! arrive, on the grid the hash stream follows (the first record's position, then steps of
//! its length: what `checksum` sends), so that the source side hashes while the destination
//! side hashes instead of after it. Memory stays bounded: at most [`AHEAD_BLOCKS`] blocks
//! ahead of the last record read, and only their digests are kept (the few blocks that
//! differ are read again to be sent). A record off the grid is simply looked at when it
//! comes; results never change, only when the work is done.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Condvar, Mutex, MutexGuard};

use rayon::prelude::*;
use sparsekit_io::{Cancel, Storage};

use crate::error::Error;
use crate::hash::{hash_group, hash_one, in_hole, with_scratch, PageBuf};
use crate::record::DIGEST_LEN;
use sparsekit_io::is_zero;

/// How many blocks the source side may hash ahead of the last hash record it read
/// (256 blocks of 128 KiB: 32 MiB of reading, 16 KiB of digests).
const AHEAD_BLOCKS: u64 = 256;
/// Blocks hashed per step (one parallel batch).
const STEP_BLOCKS: u64 = 64;
/// Records in a row that found no hashed-ahead result before hashing ahead stops (the
/// stream does not follow the grid: the work would be wasted).
const MAX_MISSES: u32 = 2 * STEP_BLOCKS as u32;

/// What a source block is, as far as the comparison needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Look {
    /// Hole aware: the block lies in one of the source's holes (not read).
    Hole,
    /// The block was read: whether it is all zeros (hole aware only, else `false`) and
    /// its digest by the negotiated algorithm.
    Read {
        zeros: bool,
        digest: [u8; DIGEST_LEN],
    },
}

/// Look at up to four blocks `(position, length)` of `src`, reading them into `bufs` (a
/// block that lies in one of `holes` is not read). Four blocks of one length are hashed by
/// one 4-way call.
pub(crate) fn look_group<S: Storage + ?Sized>(
    src: &S,
    group: &[(u64, u32)],
    bufs: &mut [PageBuf],
    holes: Option<&[Range<u64>]>,
    blake3: bool,
) -> Result<Vec<Look>, Error> {
    let mut read = [false; 4];
    for ((&(p, len), b), r) in group.iter().zip(bufs.iter_mut()).zip(&mut read) {
        if holes.is_some_and(|h| in_hole(h, p, len.into())) {
            continue;
        }
        b.resize(len as usize);
        src.read_exact_at(b, p)?;
        *r = true;
    }
    let zeros = |b: &[u8]| holes.is_some() && is_zero(b);
    if group.len() == 4 && read.iter().all(|&r| r) {
        let slices: Vec<&[u8]> = bufs[..4].iter().map(|b| &b[..]).collect();
        return Ok(hash_group(&slices, blake3)
            .into_iter()
            .zip(&slices)
            .map(|(digest, b)| Look::Read {
                zeros: zeros(b),
                digest,
            })
            .collect());
    }
    Ok(group
        .iter()
        .zip(bufs.iter())
        .zip(read)
        .map(|((_, b), r)| {
            if r {
                Look::Read {
                    zeros: zeros(b),
                    digest: hash_one(b, blake3),
                }
            } else {
                Look::Hole
            }
        })
        .collect())
}

struct State {
    /// Results in position order: `(position, length, look)`.
    q: VecDeque<(u64, u32, Look)>,
    /// The first grid position whose result is not in `q` yet (the step being hashed).
    todo: u64,
    /// The largest position of a record read so far.
    want: u64,
    /// No more results will come (not started, source end, error, cancel or stop).
    finished: bool,
    stop: bool,
    /// The producer waits for `want` to grow.
    waiting: bool,
    /// Records in a row without a result.
    misses: u32,
}

/// The hashed-ahead results, shared by `retrieve`'s reader and the producer thread.
pub(crate) struct Ahead {
    st: Mutex<State>,
    cv: Condvar,
}

/// Source blocks and how to look at them.
pub(crate) struct Grid<'a, S: ?Sized> {
    pub src: &'a S,
    /// First position and step (the first record's).
    pub first: u64,
    pub step: u32,
    /// The source's size: the last block may be shorter.
    pub size: u64,
    pub holes: Option<&'a [Range<u64>]>,
    pub blake3: bool,
}

impl Ahead {
    pub(crate) fn new() -> Self {
        Ahead {
            st: Mutex::new(State {
                q: VecDeque::new(),
                todo: 0,
                want: 0,
                finished: true,
                stop: false,
                waiting: false,
                misses: 0,
            }),
            cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Arm before spawning [`Ahead::run`] (so that [`Ahead::take`] waits for it).
    pub(crate) fn arm(&self, first: u64) {
        let mut st = self.lock();
        st.finished = false;
        st.todo = first;
        st.want = first;
    }

    /// Stop the producer (at its next step) and wake everyone.
    pub(crate) fn stop(&self) {
        self.lock().stop = true;
        self.cv.notify_all();
    }

    /// The reader read a record at `position`.
    pub(crate) fn saw(&self, position: u64) {
        let mut st = self.lock();
        if position > st.want {
            st.want = position;
            if st.waiting {
                self.cv.notify_all();
            }
        }
    }

    /// The hashed-ahead result for the block `(position, length)`, waiting for the producer
    /// when it is still on its way there; `None` when there is none (look at it yourself).
    pub(crate) fn take(&self, position: u64, length: u32) -> Option<Look> {
        let mut st = self.lock();
        loop {
            while st.q.front().is_some_and(|f| f.0 < position) {
                st.q.pop_front();
            }
            if let Some(&(p, len, look)) = st.q.front() {
                let hit = p == position && len == length;
                if p == position {
                    st.q.pop_front();
                }
                if hit {
                    st.misses = 0;
                    return Some(look);
                }
                break;
            }
            if st.finished || st.stop || position < st.todo {
                break;
            }
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if !st.finished {
            st.misses += 1;
            if st.misses >= MAX_MISSES {
                st.stop = true;
                self.cv.notify_all();
            }
        }
        None
    }

    /// The producer: hash the grid's blocks step by step, at most [`AHEAD_BLOCKS`] ahead of
    /// the reader, until the source ends, [`Ahead::stop`], a cancel or a read error (the
    /// reader then meets the error itself, with its context).
    pub(crate) fn run<S: Storage + ?Sized>(&self, g: &Grid<'_, S>, cancel: &Cancel) {
        let step = u64::from(g.step);
        let lead = AHEAD_BLOCKS * step;
        let mut next = g.first;
        loop {
            let end;
            {
                let mut st = self.lock();
                loop {
                    if st.stop || next >= g.size {
                        st.finished = true;
                        self.cv.notify_all();
                        return;
                    }
                    // The reader went past (records off the grid): catch up with it.
                    if st.want > next.saturating_add(lead) {
                        next = g.first + (st.want - g.first).div_ceil(step) * step;
                        st.todo = next;
                        self.cv.notify_all();
                        continue;
                    }
                    if next <= st.want.saturating_add(lead) {
                        break;
                    }
                    st.waiting = true;
                    st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                    st.waiting = false;
                }
                st.todo = next;
                end = next.saturating_add(STEP_BLOCKS * step).min(g.size);
            }
            let mut blocks = Vec::with_capacity(STEP_BLOCKS as usize);
            let mut p = next;
            while p < end {
                let len = step.min(g.size - p);
                blocks.push((p, len as u32));
                p += len;
            }
            let looks = blocks
                .par_chunks(4)
                .map(|group| {
                    with_scratch(|bufs| {
                        if cancel.is_cancelled() {
                            return Err(Error::Aborted);
                        }
                        look_group(g.src, group, bufs, g.holes, g.blake3)
                    })
                })
                .collect::<Result<Vec<_>, Error>>();
            let mut st = self.lock();
            match looks {
                Ok(v) => {
                    st.q.extend(
                        blocks
                            .iter()
                            .zip(v.into_iter().flatten())
                            .map(|(&(p, len), l)| (p, len, l)),
                    );
                    next = end;
                    st.todo = end;
                    self.cv.notify_all();
                }
                Err(_) => {
                    st.finished = true;
                    self.cv.notify_all();
                    return;
                }
            }
        }
    }
}

/// Stops the producer when dropped, so that a scope's join never waits for it, whichever
/// way the reader leaves.
pub(crate) struct StopOnDrop<'a>(pub &'a Ahead);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}
