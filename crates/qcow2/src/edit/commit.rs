//! `commit`: copy an overlay's own clusters into its backing image and empty the overlay,
//! as `qemu-img commit` does.
//!
//! Order: (1) the base is grown when the overlay is larger; (2) every base cluster under
//! the overlay's allocated ranges gets the overlay's guest view of it (whole base clusters:
//! where the overlay has nothing its view is the base's own, so nothing else changes). In
//! a qcow2 base a cluster it owns alone (`COPIED`) is written in place; any other (not
//! allocated, zero, compressed) gets a new cluster: data written into freshly counted
//! clusters, synced, then the L2 entries of the table changed in one write, synced, then
//! the old clusters freed. Missing L2 tables are written and synced before their L1 entry.
//! (3) The base is synced, then (4) the overlay is emptied with
//! [`Editor::discard_all`]. Until (4) the overlay still holds every byte it shadows, so
//! a stop anywhere leaves the overlay reading as before and both images valid (the base
//! may hold part of the new data: it is under the overlay, as in qemu).

use std::collections::HashMap;
use std::path::Path;

use sparsekit_io::{Control, FileStorage, Phase, Storage};

use super::ops::EditOptions;
use super::Editor;
use crate::error::{refused, Error, Result};
use crate::image::{path_combine, Image, OpenOptions};
use crate::lock::{ImageLock, LockMode};
use crate::table::{L1E_OFFSET_MASK, L2E_OFFSET_MASK, OFLAG_COMPRESSED, OFLAG_COPIED, OFLAG_ZERO};
use crate::BackingPolicy;

/// Guest bytes copied between two writes of the staged L2 entries (each preceded by one
/// sync): fewer syncs let the kernel write back while the copy goes on.
pub const COMMIT_CHUNK: u64 = 1 << 30;

/// What [`commit`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitResult {
    /// Guest bytes copied into the backing image.
    pub bytes: u64,
}

/// Where the overlay's data goes.
pub enum Base<'a> {
    /// A raw image.
    Raw(&'a dyn Storage),
    /// A qcow2 image, edited.
    Qcow2(&'a mut Editor),
}

/// The ranges `[start, end)` the overlay itself allocates (depth 0 in its map).
fn own_ranges(overlay: &Image, ctl: &mut Control<'_>) -> Result<Vec<(u64, u64)>> {
    let map = overlay.map(ctl)?;
    let mut out: Vec<(u64, u64)> = Vec::new();
    for e in map {
        if e.depth == 0 && e.present {
            match out.last_mut() {
                Some(l) if l.1 == e.start => l.1 = e.start + e.length,
                _ => out.push((e.start, e.start + e.length)),
            }
        }
    }
    Ok(out)
}

/// Steps (2) and (3): copy the overlay's own ranges (read through `overlay`, which must
/// follow its chain) into `base`. Reports [`Phase::Write`] in guest bytes.
pub fn commit_into(overlay: &Image, base: Base<'_>, ctl: &mut Control<'_>) -> Result<CommitResult> {
    let ranges = own_ranges(overlay, ctl)?;
    let total: u64 = ranges.iter().map(|r| r.1 - r.0).sum();
    let size = overlay.size();
    let mut done = 0;
    let mut tasks: Vec<Task> = Vec::new();
    match base {
        Base::Raw(s) => {
            if s.size()? < size {
                s.set_len(size)?;
            }
            for &(a, b) in &ranges {
                push_tasks(&mut tasks, a, a, b - a);
            }
            parallel_copy(overlay, s, &tasks, size, ctl, &mut done, total)?;
            s.flush()?;
        }
        Base::Qcow2(ed) => {
            let h = ed.header().clone();
            if h.has_data_file() || h.bitmaps.is_some() || h.crypt_method != 0 {
                return Err(refused("committing into an image with an external data file, persistent bitmaps or encryption"));
            }
            if !ed.image().snapshots().is_empty() {
                return Err(refused("committing into an image with internal snapshots"));
            }
            if h.size < size {
                ed.resize(size.div_ceil(512) * 512)?;
                // Parse again: the L1 table may have moved.
                ed.reload()?;
            }
            let cs = ed.header().cluster_size();
            let cov = ed.header().l2_coverage();
            let mut w = Writer::new(ed);
            // Per batch of COMMIT_CHUNK bytes: clusters chosen (and counted) here, data
            // copied by worker threads, then one sync and the staged L2 entries.
            let mut staged = 0u64;
            for &(a, b) in &ranges {
                let mut pos = a / cs * cs;
                let end = b.div_ceil(cs) * cs;
                while pos < end {
                    let n = (end - pos).min(cov - pos % cov);
                    // A failure planning (ENOSPC allocating) gives back what earlier
                    // plans of the batch counted: nothing references it yet.
                    let planned = match w.plan(pos, n) {
                        Ok(p) => p,
                        Err(e) => {
                            w.give_back();
                            return Err(e);
                        }
                    };
                    for (g, host, len) in planned {
                        push_tasks(&mut tasks, g, host, len);
                    }
                    staged += n;
                    pos += n;
                    if staged >= COMMIT_CHUNK {
                        {
                            let r = parallel_copy(
                                overlay,
                                w.ed.img.storage(),
                                &tasks,
                                size,
                                ctl,
                                &mut done,
                                total,
                            );
                            w.settle(r)?;
                        }
                        tasks.clear();
                        w.flush_entries()?;
                        staged = 0;
                    }
                }
            }
            let r = parallel_copy(
                overlay,
                w.ed.img.storage(),
                &tasks,
                size,
                ctl,
                &mut done,
                total,
            );
            w.settle(r)?;
            w.flush_entries()?;
            w.ed.sync()?;
        }
    }
    ctl.report(Phase::Write, total, Some(total))?;
    Ok(CommitResult { bytes: total })
}

/// One copy: guest bytes `[guest, guest + len)` of the overlay to `host` in the base.
type Task = (u64, u64, u64);

/// Copy steps of at most this many bytes (each step's bytes stay in the CPU cache between
/// the read and the write).
const STEP: u64 = 1 << 20;

/// Threads copying at once.
pub const COMMIT_THREADS: usize = 4;

fn push_tasks(tasks: &mut Vec<Task>, guest: u64, host: u64, len: u64) {
    let mut o = 0;
    while o < len {
        let n = (len - o).min(STEP);
        tasks.push((guest + o, host + o, n));
        o += n;
    }
}

/// Run `tasks` on [`COMMIT_THREADS`] threads (reads of the overlay overlap writes of the
/// base); the caller's thread reports progress (`done` of `total`, clamped) and watches
/// for cancellation. Bytes past the virtual size `size` are written as zeros.
fn parallel_copy(
    overlay: &Image,
    dst: &dyn Storage,
    tasks: &[Task],
    size: u64,
    ctl: &mut Control<'_>,
    done: &mut u64,
    total: u64,
) -> Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Mutex};
    if tasks.is_empty() {
        return Ok(());
    }
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    let cancel = ctl.cancel().clone();
    let (tx, rx) = mpsc::channel::<u64>();
    // Writeback of each written step is started at once (`sync_file_range`), so the disk
    // writes while the copy goes on and the sync that follows waits for less: below the
    // kernel's dirty thresholds nothing would be written back before that sync. Only a
    // hint, through a second read-only descriptor of the same file (it acts on the
    // inode's page cache); the order of syncs is unchanged.
    let hint = dst.path().and_then(|p| std::fs::File::open(p).ok());
    std::thread::scope(|sc| {
        for _ in 0..COMMIT_THREADS.min(tasks.len()) {
            let tx = tx.clone();
            let (next, failed, cancel, hint) = (&next, &failed, &cancel, &hint);
            sc.spawn(move || {
                // Page aligned: copies between the page cache and a buffer that is not
                // are markedly slower (malloc puts large blocks 16 bytes into a page).
                let mut raw = vec![0u8; STEP as usize + 4096];
                let at = raw.as_ptr().align_offset(4096);
                let buf = &mut raw[at..at + STEP as usize];
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&(g, host, n)) = tasks.get(k) else {
                        break;
                    };
                    if cancel.is_cancelled() || failed.lock().expect("lock").is_some() {
                        break;
                    }
                    let b = &mut buf[..n as usize];
                    let readable = n.min(size.saturating_sub(g)) as usize;
                    b[readable..].fill(0);
                    let r = overlay
                        .read_at(&mut b[..readable], g)
                        .and_then(|()| dst.write_all_at(b, host).map_err(Error::from));
                    match r {
                        Ok(()) => {
                            if let Some(f) = hint {
                                let _ = sparsekit_io::sys::start_writeback(f, host, n);
                            }
                            let _ = tx.send(n);
                        }
                        Err(e) => {
                            failed.lock().expect("lock").get_or_insert(e);
                            break;
                        }
                    }
                }
            });
        }
        drop(tx);
        for n in rx {
            *done += n;
            if let Err(a) = ctl.report(Phase::Write, (*done).min(total), Some(total)) {
                cancel.cancel();
                failed.lock().expect("lock").get_or_insert(a.into());
            }
        }
    });
    if let Some(e) = failed.into_inner().expect("lock") {
        return Err(e);
    }
    ctl.check()?;
    Ok(())
}

/// Full-cluster guest writes into a qcow2 image without snapshots.
struct Writer<'a> {
    ed: &'a mut Editor,
    l1: Vec<u64>,
    /// L2 tables as they will be (entries not yet written included).
    tables: HashMap<u64, Vec<u64>>,
    /// Entry ranges `[a, b)` (in words) of tables changed in memory, not yet written.
    dirty: HashMap<u64, (usize, usize)>,
    /// Entries replaced, to free once the new ones are on disk.
    replaced: Vec<u64>,
    /// Clusters counted for the staged entries, `(first cluster, count)`.
    fresh: Vec<(u64, u64)>,
}

impl<'a> Writer<'a> {
    fn new(ed: &'a mut Editor) -> Writer<'a> {
        let l1 = ed.image().l1_entries().to_vec();
        Writer {
            ed,
            l1,
            tables: HashMap::new(),
            dirty: HashMap::new(),
            replaced: Vec::new(),
            fresh: Vec::new(),
        }
    }

    /// The L2 table for L1 index `i`, allocated (zeros, synced, then the L1 entry) when
    /// missing.
    fn table(&mut self, i: usize) -> Result<u64> {
        let h = self.ed.header().clone();
        let cs = h.cluster_size();
        let e = *self
            .l1
            .get(i)
            .ok_or_else(|| refused(format!("L1 index {i} past the table")))?;
        let off = e & L1E_OFFSET_MASK;
        if off != 0 {
            if e & OFLAG_COPIED == 0 {
                return Err(refused(format!("L2 table at {off:#x} is shared")));
            }
            if !self.tables.contains_key(&off) {
                let t = self.ed.img.l2_table(off, i as u64)?;
                self.tables.insert(off, t.to_vec());
            }
            return Ok(off);
        }
        let mark = self.ed.rc.mark(self.ed.img.storage())?;
        let t = self.ed.rc.alloc(self.ed.img.storage(), 1)?;
        // Nothing references the new table until its L1 entry is written: a failure before
        // that (ENOSPC) takes the allocation back instead of leaking it.
        if let Err(e) = self
            .ed
            .write(&vec![0u8; cs as usize], t)
            .and_then(|()| self.ed.sync())
        {
            self.ed.rc.release(self.ed.img.storage(), &mark, t, 1);
            return Err(e);
        }
        let ne = t | OFLAG_COPIED;
        self.ed
            .write(&ne.to_be_bytes(), h.l1_table_offset + i as u64 * 8)?;
        self.ed.sync()?;
        self.l1[i] = ne;
        self.tables.insert(t, vec![0u64; (cs / 8) as usize]);
        Ok(t)
    }

    /// Choose the host clusters for whole guest clusters `[pos, pos + len)` (inside one L2
    /// table's coverage): clusters the image owns alone are written in place, the others
    /// go to newly counted clusters whose entries are staged in memory for
    /// [`Writer::flush_entries`]. Returns the copies to make, `(guest, host, len)`, one
    /// per run contiguous on both sides.
    fn plan(&mut self, pos: u64, len: u64) -> Result<Vec<Task>> {
        let h = self.ed.header().clone();
        let cs = h.cluster_size();
        let ext = h.extended_l2();
        let step = if ext { 2 } else { 1 };
        let per = h.l2_entries();
        let gi = pos / cs;
        let n = (len / cs) as usize;
        let t = self.table((gi / per) as usize)?;
        let first = (gi % per) as usize;
        let mut table = self.tables.remove(&t).expect("loaded");
        let mut hosts = vec![0u64; n];
        let mut fresh = Vec::new();
        for (k, host) in hosts.iter_mut().enumerate() {
            let e = table[(first + k) * step];
            let off = e & L2E_OFFSET_MASK;
            if e & OFLAG_COMPRESSED == 0 && off != 0 && e & OFLAG_COPIED != 0 {
                *host = off;
            } else {
                fresh.push(k);
            }
        }
        if !fresh.is_empty() {
            let r = self.ed.rc.alloc(self.ed.img.storage(), fresh.len() as u64);
            let at = match r {
                Ok(at) => at,
                Err(e) => {
                    self.tables.insert(t, table);
                    return Err(e);
                }
            };
            self.fresh.push((at / cs, fresh.len() as u64));
            for (j, &k) in fresh.iter().enumerate() {
                hosts[k] = at + j as u64 * cs;
                self.replaced.push(table[(first + k) * step]);
            }
        }
        let mut runs = Vec::new();
        let mut k = 0;
        while k < n {
            let mut e = k + 1;
            while e < n && hosts[e] == hosts[e - 1] + cs {
                e += 1;
            }
            runs.push((pos + k as u64 * cs, hosts[k], (e - k) as u64 * cs));
            k = e;
        }
        let mut changed = false;
        for (k, &host) in hosts.iter().enumerate() {
            let idx = (first + k) * step;
            let mut ne = host | OFLAG_COPIED;
            if ext {
                // Every subcluster allocated, none reading as zeros.
                if table[idx + 1] != 0xffff_ffff {
                    table[idx + 1] = 0xffff_ffff;
                    changed = true;
                }
            } else {
                ne &= !OFLAG_ZERO;
            }
            if table[idx] != ne {
                table[idx] = ne;
                changed = true;
            }
        }
        self.tables.insert(t, table);
        if changed {
            let r = self
                .dirty
                .entry(t)
                .or_insert((first * step, (first + n) * step));
            r.0 = r.0.min(first * step);
            r.1 = r.1.max((first + n) * step);
        }
        Ok(runs)
    }

    /// Sync (the new data and its refcounts reach the disk first), write the staged L2
    /// entries (one write per table), and free what they replaced after another sync.
    /// After a batch's copy: on failure or abort, give back the clusters counted for
    /// entries that will never be written (best effort: they are unreferenced, so a
    /// failure here only leaves leaks), then return the error.
    fn settle(&mut self, r: Result<()>) -> Result<()> {
        if r.is_err() {
            self.give_back();
        }
        r
    }

    /// Lower the refcounts of the clusters counted for staged entries (best effort).
    fn give_back(&mut self) {
        for (c, n) in std::mem::take(&mut self.fresh) {
            if self.ed.rc.add(self.ed.img.storage(), c, n, -1).is_err() {
                break;
            }
        }
        let _ = self.ed.sync();
    }

    fn flush_entries(&mut self) -> Result<()> {
        self.fresh.clear();
        if self.dirty.is_empty() {
            return Ok(());
        }
        self.ed.sync()?;
        let mut dirty: Vec<(u64, (usize, usize))> = self.dirty.drain().collect();
        dirty.sort_unstable();
        for (t, (a, b)) in dirty {
            let mut raw = Vec::with_capacity((b - a) * 8);
            for e in &self.tables[&t][a..b] {
                raw.extend_from_slice(&e.to_be_bytes());
            }
            self.ed.write(&raw, t + a as u64 * 8)?;
        }
        let replaced = std::mem::take(&mut self.replaced);
        if !replaced
            .iter()
            .any(|&e| e & !OFLAG_COPIED & !OFLAG_ZERO != 0)
        {
            return Ok(());
        }
        self.ed.sync()?;
        let bits = self.ed.header().cluster_bits;
        let s = self.ed.img.storage();
        for e in replaced {
            if e & OFLAG_COMPRESSED != 0 {
                let x = 62 - (bits - 8);
                let off = e & ((1u64 << x) - 1);
                let sectors = ((e >> x) & ((1u64 << (bits - 8)) - 1)) + 1;
                let len = sectors * 512 - (off & 511);
                let a = off >> bits;
                let b = (off + len - 1) >> bits;
                self.ed.rc.add(s, a, b - a + 1, -1)?;
            } else if e & L2E_OFFSET_MASK != 0 {
                self.ed.rc.add(s, (e & L2E_OFFSET_MASK) >> bits, 1, -1)?;
            }
        }
        Ok(())
    }
}

/// `qemu-img commit`: copy the overlay at `path`'s own clusters into its backing image
/// (qcow2 or raw, named in the overlay, locked for writing too), then empty the overlay.
/// Reports [`Phase::Write`] while copying.
pub fn commit(path: &Path, o: &EditOptions, ctl: &mut Control<'_>) -> Result<CommitResult> {
    let _lock = ImageLock::acquire(path, LockMode::Write, o.force)?;
    let r = (|| {
        let overlay = Image::open(
            path,
            &OpenOptions {
                backing: BackingPolicy::Follow,
                ..OpenOptions::default()
            },
        )?;
        let h = overlay.header();
        let (Some(name), Some(fmt)) = (h.backing_file.clone(), h.backing_format.clone()) else {
            return Err(refused("the image has no backing file to commit into"));
        };
        let base_path = path_combine(&path.to_string_lossy(), &name);
        let base_path = Path::new(&base_path);
        let _base_lock = ImageLock::acquire(base_path, LockMode::Write, o.force)?;
        let s = FileStorage::open_rw(base_path)?;
        let block = s.kind() == sparsekit_io::FileKind::BlockDevice;
        let r = match fmt.as_str() {
            "raw" => commit_into(&overlay, Base::Raw(&s), ctl),
            "qcow2" => {
                let mut ed = Editor::with_kind(Box::new(s), block)
                    .map_err(|e| e.with_path(Some(base_path)))?;
                commit_into(&overlay, Base::Qcow2(&mut ed), ctl)
                    .map_err(|e| e.with_path(Some(base_path)))
            }
            f => Err(refused(format!(
                "backing format {} (commit writes into qcow2 or raw)",
                crate::error::quoted(f)
            ))),
        }?;
        drop(overlay);
        let s = FileStorage::open_rw(path)?;
        let block = s.kind() == sparsekit_io::FileKind::BlockDevice;
        let mut ed = Editor::with_kind(Box::new(s), block)?;
        ed.discard_all(&mut Control::none())?;
        Ok(r)
    })();
    r.map_err(|e: Error| e.with_path(Some(path)))
}
