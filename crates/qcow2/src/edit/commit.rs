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

/// Guest bytes copied per step at most.
pub const COMMIT_CHUNK: u64 = 8 << 20;

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
    match base {
        Base::Raw(s) => {
            if s.size()? < size {
                s.set_len(size)?;
            }
            let mut buf = Vec::new();
            for &(a, b) in &ranges {
                let mut pos = a;
                while pos < b {
                    let n = (b - pos).min(COMMIT_CHUNK);
                    buf.resize(n as usize, 0);
                    overlay.read_at(&mut buf, pos)?;
                    s.write_all_at(&buf, pos)?;
                    pos += n;
                    done += n;
                    ctl.report(Phase::Write, done, Some(total))?;
                }
            }
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
            let mut w = Writer::new(ed);
            let mut buf = Vec::new();
            for &(a, b) in &ranges {
                let mut pos = a / cs * cs;
                let end = b.div_ceil(cs) * cs;
                while pos < end {
                    let cov = w.ed.header().l2_coverage();
                    let n = (end - pos).min(COMMIT_CHUNK).min(cov - pos % cov);
                    buf.clear();
                    buf.resize(n as usize, 0);
                    let readable = n.min(size.saturating_sub(pos));
                    overlay.read_at(&mut buf[..readable as usize], pos)?;
                    w.write_clusters(pos, &buf)?;
                    done += n.min(b.saturating_sub(pos.max(a)));
                    pos += n;
                    ctl.report(Phase::Write, done.min(total), Some(total))?;
                }
            }
            w.ed.sync()?;
        }
    }
    ctl.report(Phase::Write, total, Some(total))?;
    Ok(CommitResult { bytes: total })
}

/// Full-cluster guest writes into a qcow2 image without snapshots.
struct Writer<'a> {
    ed: &'a mut Editor,
    l1: Vec<u64>,
    tables: HashMap<u64, Vec<u64>>,
}

impl<'a> Writer<'a> {
    fn new(ed: &'a mut Editor) -> Writer<'a> {
        let l1 = ed.image().l1_entries().to_vec();
        Writer {
            ed,
            l1,
            tables: HashMap::new(),
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
        let t = self.ed.rc.alloc(self.ed.img.storage(), 1)?;
        self.ed.write(&vec![0u8; cs as usize], t)?;
        self.ed.sync()?;
        let ne = t | OFLAG_COPIED;
        self.ed
            .write(&ne.to_be_bytes(), h.l1_table_offset + i as u64 * 8)?;
        self.ed.sync()?;
        self.l1[i] = ne;
        self.tables.insert(t, vec![0u64; (cs / 8) as usize]);
        Ok(t)
    }

    /// Write whole clusters at guest `pos` (inside one L2 table's coverage).
    fn write_clusters(&mut self, pos: u64, data: &[u8]) -> Result<()> {
        let h = self.ed.header().clone();
        let cs = h.cluster_size();
        let bits = h.cluster_bits;
        let ext = h.extended_l2();
        let step = if ext { 2 } else { 1 };
        let per = h.l2_entries();
        let gi = pos / cs;
        let n = data.len() as u64 / cs;
        let t = self.table((gi / per) as usize)?;
        let first = (gi % per) as usize;
        let table = self.tables[&t].clone();
        // Decide per cluster: in place, or new.
        let mut fresh = Vec::new();
        for k in 0..n as usize {
            let e = table[(first + k) * step];
            let host = e & L2E_OFFSET_MASK;
            let owned = e & OFLAG_COMPRESSED == 0 && host != 0 && e & OFLAG_COPIED != 0;
            let chunk = &data[k * cs as usize..(k + 1) * cs as usize];
            if owned {
                self.ed.write(chunk, host)?;
            } else {
                fresh.push(k);
            }
        }
        let mut newt = table.clone();
        let mut old = Vec::new();
        if !fresh.is_empty() {
            let at = self
                .ed
                .rc
                .alloc(self.ed.img.storage(), fresh.len() as u64)?;
            // Data into the new clusters, contiguous runs in one write each.
            let mut j = 0;
            while j < fresh.len() {
                let mut k = j + 1;
                while k < fresh.len() && fresh[k] == fresh[k - 1] + 1 {
                    k += 1;
                }
                let a = fresh[j] * cs as usize;
                let b = (fresh[k - 1] + 1) * cs as usize;
                self.ed.write(&data[a..b], at + j as u64 * cs)?;
                j = k;
            }
            for (j, &k) in fresh.iter().enumerate() {
                let idx = (first + k) * step;
                let e = table[idx];
                old.push(e);
                newt[idx] = (at + j as u64 * cs) | OFLAG_COPIED;
            }
        }
        for k in 0..n as usize {
            let idx = (first + k) * step;
            if newt[idx] & OFLAG_ZERO != 0 && !ext {
                newt[idx] &= !OFLAG_ZERO;
            }
            if ext {
                // Every subcluster allocated, none reading as zeros.
                newt[idx + 1] = 0xffff_ffff;
            }
        }
        self.ed.sync()?;
        if newt != table {
            let a = first * step;
            let b = (first + n as usize) * step;
            let mut raw = Vec::with_capacity((b - a) * 8);
            for e in &newt[a..b] {
                raw.extend_from_slice(&e.to_be_bytes());
            }
            self.ed.write(&raw, t + a as u64 * 8)?;
            self.ed.sync()?;
        }
        self.tables.insert(t, newt);
        // Free what the new clusters replaced.
        let s = self.ed.img.storage();
        for e in old {
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
            f => Err(refused(format!("backing format '{f}'"))),
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
