//! Refcounts for the editor: read, raise and lower them exactly, allocating refcount blocks
//! and growing (moving) the refcount table when new clusters need them.
//!
//! Allocation appends at the end of the file. Order of [`Refcounts::alloc`]: (1) the file
//! is extended; (2) new refcount blocks are written whole, already counting every cluster
//! of the new region they cover (themselves included), and entries of existing blocks for
//! the rest of the region are raised; sync; (3a) without a new table: each new block's
//! table entry is written (one aligned 8-byte write each); sync; or (3b) a new, larger
//! table holding the old entries and the new blocks is written; sync; the header's
//! `refcount_table_offset`/`refcount_table_clusters` change in one 12-byte write; sync;
//! the old table's clusters are freed. A stop before (3) leaves only unreferenced,
//! uncounted clusters past the old end; after it, at most leaks.

use std::collections::HashMap;

use sparsekit_io::Storage;

use crate::error::{corrupt, refused, Result};
use crate::header::MAX_REFCOUNT_TABLE_BYTES;
use crate::image::Image;
use crate::refblock::RefBlock;
use crate::table::REFT_OFFSET_MASK;

/// Refcount blocks kept in memory at most (bytes); the cache is dropped past it.
const MAX_CACHED_BLOCK_BYTES: usize = 64 << 20;

/// The image's refcount structures.
#[derive(Debug)]
pub struct Refcounts {
    cs: u64,
    cluster_bits: u32,
    bits: u64,
    per_block_bits: u32,
    pub(crate) table: Vec<u64>,
    pub(crate) table_offset: u64,
    pub(crate) table_clusters: u64,
    /// Where the next allocation goes (cluster aligned, at or past the end of the file).
    pub(crate) end: u64,
    /// Bytes the storage can hold at most (block devices); `None` for growable files.
    limit: Option<u64>,
    blocks: HashMap<u64, Vec<u8>>,
    /// Refcount table indices linked to new blocks by [`Refcounts::alloc`], so an
    /// allocation can be taken back ([`Refcounts::release`]).
    linked: Vec<u64>,
}

/// The allocation state before an edit allocates, to take the allocation back when the
/// edit fails before anything references the new clusters ([`Refcounts::release`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark {
    end: u64,
    file_size: u64,
    table_offset: u64,
    linked: usize,
}

impl Refcounts {
    pub(crate) fn load(img: &Image) -> Result<Refcounts> {
        let h = img.header();
        let cs = h.cluster_size();
        let bytes = u64::from(h.refcount_table_clusters) << h.cluster_bits;
        let mut raw = vec![0u8; bytes as usize];
        img.storage()
            .read_exact_at(&mut raw, h.refcount_table_offset)?;
        let table = raw
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8")))
            .collect();
        let file_size = img.file_size();
        let mut rc = Refcounts {
            cs,
            cluster_bits: h.cluster_bits,
            bits: u64::from(h.refcount_bits()),
            per_block_bits: h.cluster_bits + 3 - h.refcount_order,
            table,
            table_offset: h.refcount_table_offset,
            table_clusters: u64::from(h.refcount_table_clusters),
            end: file_size.div_ceil(cs) * cs,
            limit: img.is_block_device.then_some(file_size),
            blocks: HashMap::new(),
            linked: Vec::new(),
        };
        // Past the last cluster with a refcount: a block device is larger than its image,
        // and a file may end before clusters it counts.
        let used = rc.used_end(img.storage())?;
        rc.end = if img.is_block_device {
            used
        } else {
            rc.end.max(used)
        };
        Ok(rc)
    }

    /// End of the last cluster whose refcount is not 0.
    pub(crate) fn used_end(&mut self, s: &dyn Storage) -> Result<u64> {
        for bi in (0..self.table.len() as u64).rev() {
            let Some(off) = self.block(s, bi)? else {
                continue;
            };
            let b = RefBlock::new(&self.blocks[&off][..], self.bits);
            let per = 1u64 << self.per_block_bits;
            if let Some(i) = (0..per).rev().find(|&i| b.get(i) != 0) {
                return Ok(((bi << self.per_block_bits) + i + 1) * self.cs);
            }
        }
        Ok(0)
    }

    fn block_of(&self, c: u64) -> (u64, u64) {
        (
            c >> self.per_block_bits,
            c & ((1 << self.per_block_bits) - 1),
        )
    }

    /// The refcount block at table index `bi` (`None`: not allocated), read and checked.
    fn block(&mut self, s: &dyn Storage, bi: u64) -> Result<Option<u64>> {
        let Some(&e) = self.table.get(bi as usize) else {
            return Ok(None);
        };
        let off = e & REFT_OFFSET_MASK;
        if off == 0 {
            return Ok(None);
        }
        if !self.blocks.contains_key(&off) {
            let at = self.table_offset + bi * 8;
            if off & (self.cs - 1) != 0 {
                return Err(corrupt(
                    "refcount table entry",
                    at,
                    format!("refcount block offset {off:#x} is not cluster aligned"),
                ));
            }
            let size = s.size()?;
            if off.checked_add(self.cs).is_none_or(|e| e > size) {
                return Err(corrupt(
                    "refcount table entry",
                    at,
                    format!(
                        "refcount block at {off:#x} lies past the end of the file ({size} bytes)"
                    ),
                ));
            }
            let mut b = vec![0u8; self.cs as usize];
            s.read_exact_at(&mut b, off)?;
            if self.blocks.len() * self.cs as usize >= MAX_CACHED_BLOCK_BYTES {
                self.blocks.clear();
            }
            self.blocks.insert(off, b);
        }
        Ok(Some(off))
    }

    fn entry(&self, b: &[u8], i: u64) -> u64 {
        RefBlock::new(b, self.bits).get(i)
    }

    /// The refcount of host cluster `c`.
    pub(crate) fn get(&mut self, s: &dyn Storage, c: u64) -> Result<u64> {
        let (bi, i) = self.block_of(c);
        match self.block(s, bi)? {
            None => Ok(0),
            Some(off) => Ok(self.entry(&self.blocks[&off], i)),
        }
    }

    /// Add `delta` to the refcounts of clusters `[first, first + count)`, one write per
    /// refcount block touched. Returns the clusters whose refcount dropped to 0.
    pub(crate) fn add(
        &mut self,
        s: &dyn Storage,
        first: u64,
        count: u64,
        delta: i64,
    ) -> Result<Vec<u64>> {
        let mut freed = Vec::new();
        let mut c = first;
        let end = first + count;
        let max = if self.bits == 64 {
            u64::MAX
        } else {
            (1u64 << self.bits) - 1
        };
        while c < end {
            let (bi, i0) = self.block_of(c);
            let n = ((1u64 << self.per_block_bits) - i0).min(end - c);
            let Some(off) = self.block(s, bi)? else {
                return Err(corrupt(
                    "refcount table",
                    self.table_offset + bi * 8,
                    format!("no refcount block for host cluster {c} whose refcount must change"),
                ));
            };
            let bits = self.bits;
            let b = self.blocks.get_mut(&off).expect("cached");
            let mut block = RefBlock::new(&mut b[..], bits);
            for i in i0..i0 + n {
                let v = block.get(i);
                let nv = if delta < 0 {
                    v.checked_sub(delta.unsigned_abs()).ok_or_else(|| {
                        corrupt(
                            "refcount block",
                            off,
                            format!(
                                "refcount of host cluster {} is {v}, cannot lower it",
                                c + i - i0
                            ),
                        )
                    })?
                } else {
                    v.checked_add(delta as u64)
                        .filter(|&x| x <= max)
                        .ok_or_else(|| {
                            refused(format!(
                                "refcount of host cluster {} would overflow {bits} bits",
                                c + i - i0
                            ))
                        })?
                };
                if nv == 0 {
                    freed.push(c + i - i0);
                }
                block.set(i, nv);
            }
            let lo = i0 * bits / 8;
            let hi = ((i0 + n) * bits).div_ceil(8);
            s.write_all_at(&b[lo as usize..hi as usize], off + lo)?;
            c += n;
        }
        Ok(freed)
    }

    /// The state to come back to if what is allocated next is never referenced.
    pub(crate) fn mark(&self, s: &dyn Storage) -> Result<Mark> {
        Ok(Mark {
            end: self.end,
            file_size: s.size()?,
            table_offset: self.table_offset,
            linked: self.linked.len(),
        })
    }

    /// Take back everything allocated since `m` (`n` clusters at `start` for the caller),
    /// when the edit failed before writing any reference to them: a failed edit leaves
    /// the image as `qemu-img check` found it, not with leaked clusters. Every refcount
    /// raised since `m` is set back to 0 (they were past the end, so 0 before), new
    /// refcount blocks are unlinked, then the file is cut back to its old length. When
    /// the refcount table moved meanwhile (its new place is referenced from the header),
    /// only the caller's clusters are lowered. Best effort: a write failing here leaves
    /// at most leaks, which `qemu-img check` accepts.
    pub(crate) fn release(&mut self, s: &dyn Storage, m: &Mark, start: u64, n: u64) {
        if self.table_offset != m.table_offset {
            let _ = self.add(s, start >> self.cluster_bits, n, -1);
            let _ = s.flush();
            return;
        }
        let end = self.end.max(start + n * self.cs);
        let _ = self.undo(s, m, end);
    }

    /// [`Refcounts::release`] for an unmoved table: clusters `[m.end, end)` back to 0.
    fn undo(&mut self, s: &dyn Storage, m: &Mark, end: u64) -> Result<()> {
        // A failed write may have left a cached block ahead of the disk: read them again.
        self.blocks.clear();
        let new_blocks: Vec<u64> = self.linked.drain(m.linked..).collect();
        let pb = self.per_block_bits;
        let mut c = m.end >> self.cluster_bits;
        let last = end.div_ceil(self.cs) >> self.cluster_bits;
        let last = if end.is_multiple_of(self.cs) {
            end >> self.cluster_bits
        } else {
            last + 1
        };
        while c < last {
            let bi = c >> pb;
            let hi = ((bi + 1) << pb).min(last);
            if !new_blocks.contains(&bi) {
                if let Some(off) = self.block(s, bi)? {
                    let bits = self.bits;
                    let b = self.blocks.get_mut(&off).expect("cached");
                    let i0 = c & ((1 << pb) - 1);
                    let i1 = i0 + (hi - c);
                    let mut block = RefBlock::new(&mut b[..], bits);
                    if (i0..i1).any(|i| block.get(i) != 0) {
                        for i in i0..i1 {
                            block.set(i, 0);
                        }
                        let lo = i0 * bits / 8;
                        let up = (i1 * bits).div_ceil(8);
                        s.write_all_at(&b[lo as usize..up as usize], off + lo)?;
                    }
                }
            }
            c = hi;
        }
        if !new_blocks.is_empty() {
            s.flush()?;
            for &bi in &new_blocks {
                s.write_all_at(&[0u8; 8], self.table_offset + bi * 8)?;
                if let Some(e) = self.table.get_mut(bi as usize) {
                    *e = 0;
                }
            }
        }
        s.flush()?;
        if self.limit.is_none() && s.size()? > m.file_size {
            s.set_len(m.file_size)?;
        }
        self.end = m.end;
        Ok(())
    }

    /// Allocate `n` contiguous new clusters (refcount 1) and return the offset of the first.
    /// See the module documentation for the order of writes; the caller syncs before it
    /// writes a reference to the new clusters. A failure before the new clusters count
    /// (ENOSPC writing a new refcount block or table, say) takes back what was done.
    pub(crate) fn alloc(&mut self, s: &dyn Storage, n: u64) -> Result<u64> {
        let m = self.mark(s)?;
        let table_offset = self.table_offset;
        let mut new_end = self.end;
        match self.alloc_inner(s, n, &mut new_end) {
            Ok(at) => Ok(at),
            Err(e) => {
                if self.table_offset == table_offset {
                    let _ = self.undo(s, &m, new_end);
                }
                Err(e)
            }
        }
    }

    /// [`Refcounts::alloc`]; `new_end` is set to the end of the region as soon as it is
    /// known (what a failure must take back).
    fn alloc_inner(&mut self, s: &dyn Storage, n: u64, new_end_out: &mut u64) -> Result<u64> {
        let cs = self.cs;
        let start = self.end;
        let first_c = start >> self.cluster_bits;
        let pb = self.per_block_bits;
        let mut k = 0u64;
        let mut t_new: Option<u64> = None;
        let mut missing;
        loop {
            let total = n + k + t_new.unwrap_or(0);
            let last_c = first_c + total - 1;
            missing = (first_c >> pb..=last_c >> pb)
                .filter(|&bi| {
                    self.table
                        .get(bi as usize)
                        .is_none_or(|&e| e & REFT_OFFSET_MASK == 0)
                })
                .collect::<Vec<u64>>();
            let need = (last_c >> pb) + 1;
            let t_needed = (need > self.table.len() as u64).then(|| (need * 8).div_ceil(cs) + 1);
            if missing.len() as u64 == k && t_needed == t_new {
                break;
            }
            k = missing.len() as u64;
            t_new = t_needed;
        }
        if let Some(t) = t_new {
            if t * cs > MAX_REFCOUNT_TABLE_BYTES {
                return Err(refused(format!(
                    "the refcount table would grow past {MAX_REFCOUNT_TABLE_BYTES} bytes"
                )));
            }
        }
        let total = n + k + t_new.unwrap_or(0);
        let new_end = start + total * cs;
        *new_end_out = new_end;
        let size = s.size()?;
        match self.limit {
            Some(l) if new_end > l => {
                return Err(refused(format!(
                    "the block device ({l} bytes) has no room for {total} more clusters at {start}"
                )))
            }
            Some(_) => {}
            None if size < new_end => s.set_len(new_end)?,
            None => {}
        }
        let last_c = first_c + total - 1;
        // (2) New blocks, counting what they cover of the region; raise the rest.
        let block_at = |j: u64| start + (n + j) * cs;
        for (j, &bi) in missing.iter().enumerate() {
            let mut b = vec![0u8; cs as usize];
            let lo = (bi << pb).max(first_c);
            let hi = ((bi + 1) << pb).min(last_c + 1);
            let mut block = RefBlock::new(&mut b[..], self.bits);
            for c in lo..hi {
                block.set(c & ((1 << pb) - 1), 1);
            }
            s.write_all_at(&b, block_at(j as u64))?;
        }
        let mut c = first_c;
        while c <= last_c {
            let bi = c >> pb;
            let hi = ((bi + 1) << pb).min(last_c + 1);
            if !missing.contains(&bi) {
                self.add(s, c, hi - c, 1)?;
            }
            c = hi;
        }
        // Only new blocks must be on disk before (3) links them; raised entries of existing
        // blocks are ordered before the caller's reference by the caller's own sync.
        if !missing.is_empty() {
            s.flush()?;
        }
        // (3) Link the new blocks.
        match t_new {
            None => {
                for (j, &bi) in missing.iter().enumerate() {
                    let off = block_at(j as u64);
                    self.linked.push(bi);
                    s.write_all_at(&off.to_be_bytes(), self.table_offset + bi * 8)?;
                    self.table[bi as usize] = off;
                }
                if !missing.is_empty() {
                    s.flush()?;
                }
            }
            Some(t) => {
                let mut table = self.table.clone();
                table.resize((t * cs / 8) as usize, 0);
                for (j, &bi) in missing.iter().enumerate() {
                    table[bi as usize] = block_at(j as u64);
                }
                let mut raw = Vec::with_capacity((t * cs) as usize);
                for e in &table {
                    raw.extend_from_slice(&e.to_be_bytes());
                }
                let at = start + (n + k) * cs;
                s.write_all_at(&raw, at)?;
                s.flush()?;
                let mut hdr = [0u8; 12];
                hdr[..8].copy_from_slice(&at.to_be_bytes());
                hdr[8..].copy_from_slice(&(t as u32).to_be_bytes());
                // From the header write on, the new table may be the one in use: the state
                // moves first, so a failure from here on is never undone by cutting the
                // file (which would cut the table off).
                let (old_off, old_t) = (self.table_offset, self.table_clusters);
                self.table = table;
                self.table_offset = at;
                self.table_clusters = t;
                self.end = new_end;
                s.write_all_at(&hdr, 48)?;
                s.flush()?;
                self.add(s, old_off >> self.cluster_bits, old_t, -1)?;
            }
        }
        self.end = new_end;
        Ok(start)
    }
}
