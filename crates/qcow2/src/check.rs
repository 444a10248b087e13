//! Read-only consistency check: refcounts computed from every reference compared with the
//! stored ones, as `qemu-img check` does (qemu's block/qcow2-refcount.c), in its counts.

use sparsekit_io::{Control, Phase};

use crate::bitmap::read_bitmaps;
use crate::error::{unsupported, Result};
use crate::image::Image;
use crate::refblock::{read_table, Stored};
use crate::table::{
    L1E_OFFSET_MASK, L2E_OFFSET_MASK, OFLAG_COMPRESSED, OFLAG_COPIED, OFLAG_ZERO, REFT_OFFSET_MASK,
};

/// Most host clusters checked (one 16-bit counter each: 128 MiB).
pub const MAX_CHECK_CLUSTERS: u64 = 64 << 20;

/// `qemu-img check --output=json` counts (a field qemu omits when 0 is 0 here).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckResult {
    /// References to clusters whose stored refcount is too low, and broken structures.
    pub corruptions: u64,
    /// Clusters whose stored refcount is higher than their references.
    pub leaks: u64,
    /// Structures that could not be read.
    pub check_errors: u64,
    /// End of the last cluster in use or with a refcount.
    pub image_end_offset: u64,
    /// Guest clusters.
    pub total_clusters: u64,
    /// Guest clusters with a host cluster.
    pub allocated_clusters: u64,
    /// Host clusters not following the previous one.
    pub fragmented_clusters: u64,
    /// Compressed guest clusters.
    pub compressed_clusters: u64,
}

struct Walk<'a> {
    img: &'a Image,
    refs: Vec<u16>,
    res: CheckResult,
}

impl Walk<'_> {
    fn inc(&mut self, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        let bits = self.img.header.cluster_bits;
        let first = off >> bits;
        let last = off.saturating_add(len - 1) >> bits;
        for c in first..=last {
            match self.refs.get_mut(c as usize) {
                Some(r) => *r = r.saturating_add(1),
                None => {
                    // A reference past the end of the file: qemu counts it when comparing.
                    self.res.corruptions += 1;
                    if c - first > 1024 {
                        break;
                    }
                }
            }
        }
    }

    fn read_table(&self, off: u64, entries: u64) -> Option<Vec<u64>> {
        read_table(self.img.storage(), self.img.file_size, off, entries)
    }

    fn l1(&mut self, off: u64, size: u32, active: bool) {
        let h = &self.img.header;
        let cs = h.cluster_size();
        self.inc(off, u64::from(size) * 8);
        let table = if active {
            Some(self.img.l1.clone())
        } else {
            self.read_table(off, u64::from(size))
        };
        let Some(table) = table else {
            self.res.check_errors += 1;
            return;
        };
        for e in table {
            let l2 = e & L1E_OFFSET_MASK;
            if l2 == 0 {
                continue;
            }
            self.inc(l2, cs);
            if l2 & (cs - 1) != 0 {
                self.res.corruptions += 1;
                continue;
            }
            let Some(t) = self.read_table(l2, cs / 8) else {
                self.res.check_errors += 1;
                continue;
            };
            // Fragmentation is counted within each L2 table (qemu's check_refcounts_l2).
            self.l2(&t, active, &mut 0);
        }
    }

    fn l2(&mut self, t: &[u64], active: bool, next_contiguous: &mut u64) {
        let h = self.img.header.clone();
        let cs = h.cluster_size();
        let ext = h.extended_l2();
        let step = if ext { 2 } else { 1 };
        for i in (0..t.len()).step_by(step) {
            let e = t[i];
            let bm = if ext { t[i + 1] } else { 0 };
            if e & OFLAG_COMPRESSED != 0 {
                if h.has_data_file() || (ext && bm != 0) {
                    self.res.corruptions += 1;
                    continue;
                }
                if active {
                    self.res.allocated_clusters += 1;
                    self.res.compressed_clusters += 1;
                    self.res.fragmented_clusters += 1;
                }
                let x = 62 - (h.cluster_bits - 8);
                let off = e & ((1u64 << x) - 1);
                let sectors = ((e >> x) & ((1u64 << (h.cluster_bits - 8)) - 1)) + 1;
                self.inc(off, sectors * 512 - (off & 511));
                continue;
            }
            let host = e & L2E_OFFSET_MASK;
            let zero_flag = !ext && e & OFLAG_ZERO != 0;
            let normal = host != 0 || (h.has_data_file() && e & OFLAG_COPIED != 0);
            if zero_flag && host == 0 {
                continue;
            }
            if !normal {
                if ext && bm & 0xffff_ffff != 0 {
                    self.res.corruptions += 1;
                }
                continue;
            }
            if (bm >> 32) & bm != 0 {
                self.res.corruptions += 1;
            }
            if host & (cs - 1) != 0 {
                self.res.corruptions += 1;
                continue;
            }
            if active {
                self.res.allocated_clusters += 1;
                if *next_contiguous != 0 && host != *next_contiguous {
                    self.res.fragmented_clusters += 1;
                }
                *next_contiguous = host + cs;
            }
            if !h.has_data_file() {
                self.inc(host, cs);
            }
        }
    }
}

impl Image {
    /// Check refcounts against references without writing anything, counting as
    /// `qemu-img check` does. Reports [`Phase::Verify`] in host clusters' bytes.
    pub fn check(&self, ctl: &mut Control<'_>) -> Result<CheckResult> {
        Ok(self.check_counts(ctl)?.0)
    }

    /// [`Image::check`] plus the reference count of every host cluster (saturated at
    /// `u16::MAX`), for repair.
    pub(crate) fn check_counts(&self, ctl: &mut Control<'_>) -> Result<(CheckResult, Vec<u16>)> {
        let h = &self.header;
        let cs = h.cluster_size();
        let nb = self.file_size.div_ceil(cs);
        if nb > MAX_CHECK_CLUSTERS {
            return Err(self.err(unsupported(format!(
                "checking {nb} host clusters (above {MAX_CHECK_CLUSTERS})"
            ))));
        }
        let mut w = Walk {
            img: self,
            refs: vec![0u16; nb as usize],
            res: CheckResult {
                total_clusters: h.size.div_ceil(cs),
                ..CheckResult::default()
            },
        };
        w.inc(0, cs);
        w.l1(h.l1_table_offset, h.l1_size, true);
        ctl.check()?;
        for sn in &self.snapshots {
            w.l1(sn.l1_table_offset, sn.l1_size, false);
            ctl.check()?;
        }
        w.inc(h.snapshots_offset, self.snapshots_size);
        let rt_entries = (u64::from(h.refcount_table_clusters) << h.cluster_bits) / 8;
        w.inc(h.refcount_table_offset, rt_entries * 8);
        if let Some((off, len)) = h.crypto_header {
            w.inc(off, len);
        }
        match read_bitmaps(self.storage(), h, self.file_size) {
            Ok((bitmaps, dir)) => {
                if let Some((off, size)) = dir {
                    w.inc(off, size);
                }
                for b in bitmaps {
                    w.inc(b.table_offset, u64::from(b.table_size) * 8);
                    match w.read_table(b.table_offset, u64::from(b.table_size)) {
                        Some(t) => {
                            for e in t {
                                let off = e & L2E_OFFSET_MASK;
                                if off != 0 {
                                    w.inc(off, cs);
                                }
                            }
                        }
                        None => w.res.check_errors += 1,
                    }
                }
            }
            Err(_) => w.res.corruptions += 1,
        }
        let table = w
            .read_table(h.refcount_table_offset, rt_entries)
            .unwrap_or_default();
        for &e in &table {
            let off = e & REFT_OFFSET_MASK;
            if off == 0 {
                continue;
            }
            if off & (cs - 1) != 0 || off >= self.file_size {
                w.res.corruptions += 1;
                continue;
            }
            w.inc(off, cs);
        }
        // Every refcount block is referenced exactly once (qemu's check_refblocks).
        for &e in &table {
            let off = e & REFT_OFFSET_MASK;
            if off != 0 && off & (cs - 1) == 0 && off < self.file_size {
                let c = (off >> h.cluster_bits) as usize;
                if w.refs.get(c).is_some_and(|&r| r != 1) {
                    w.res.corruptions += 1;
                }
            }
        }
        let mut stored = Stored::with_table(self.storage(), &self.header, self.file_size, table);
        let mut highest = None;
        for c in 0..nb {
            if c % 65536 == 0 {
                ctl.report(Phase::Verify, c * cs, Some(nb * cs))?;
            }
            let Some(s) = stored.get(c) else {
                w.res.corruptions += 1;
                continue;
            };
            let r = u64::from(w.refs[c as usize]);
            if r > 0 || s > 0 {
                highest = Some(c);
            }
            if r != s {
                if s < r {
                    w.res.corruptions += 1;
                } else {
                    w.res.leaks += 1;
                }
            }
        }
        // OFLAG_COPIED must be set exactly where the refcount is 1 (active tables only).
        for &e in &self.l1 {
            let l2 = e & L1E_OFFSET_MASK;
            if l2 == 0 {
                continue;
            }
            let Some(rc) = stored.get(l2 >> h.cluster_bits) else {
                continue;
            };
            if (rc == 1) != (e & OFLAG_COPIED != 0) {
                w.res.corruptions += 1;
            }
            if l2 & (cs - 1) != 0 {
                continue;
            }
            let Some(t) = w.read_table(l2, cs / 8) else {
                continue;
            };
            let step = if h.extended_l2() { 2 } else { 1 };
            for i in (0..t.len()).step_by(step) {
                let e = t[i];
                if e & OFLAG_COMPRESSED != 0 {
                    continue;
                }
                let host = e & L2E_OFFSET_MASK;
                let zero_plain = !h.extended_l2() && e & OFLAG_ZERO != 0 && host == 0;
                let normal = host != 0 || (h.has_data_file() && e & OFLAG_COPIED != 0);
                if zero_plain || !normal {
                    continue;
                }
                let rc = if h.has_data_file() {
                    1
                } else {
                    match stored.get(host >> h.cluster_bits) {
                        Some(rc) => rc,
                        None => continue,
                    }
                };
                if (rc == 1) != (e & OFLAG_COPIED != 0) {
                    w.res.corruptions += 1;
                }
            }
        }
        w.res.image_end_offset = highest.map_or(0, |c| (c + 1) * cs);
        ctl.report(Phase::Verify, nb * cs, Some(nb * cs))?;
        Ok((w.res, w.refs))
    }
}
