//! The editing operations. Each documents its order of writes; the common rules are in the
//! module documentation of [`crate::edit`].

use std::path::Path;

use sparsekit_io::{Control, FileStorage, Phase, Storage};

use super::Editor;
use crate::error::{refused, Error, Result};
use crate::header::{
    EXT_BACKING_FORMAT, EXT_BITMAPS, EXT_CRYPTO, EXT_DATA_FILE, EXT_END, EXT_FEATURE_NAMES,
    MAX_BACKING_NAME, MAX_CLUSTER_BITS, MAX_L1_TABLE_BYTES, MAX_VIRTUAL_SIZE, MIN_CLUSTER_BITS,
    MIN_CLUSTER_BITS_EXTENDED_L2,
};
use crate::image::{Image, OpenOptions};
use crate::lock::{ImageLock, LockMode};
use crate::table::{
    COMPRESSED_SECTOR, L1E_OFFSET_MASK, L2E_OFFSET_MASK, OFLAG_COMPRESSED, OFLAG_COPIED,
};
use crate::BackingPolicy;

/// Extension types the format itself manages; [`set_extension`] refuses them.
pub const RESERVED_EXTENSIONS: [u32; 6] = [
    EXT_END,
    EXT_BACKING_FORMAT,
    EXT_FEATURE_NAMES,
    EXT_BITMAPS,
    EXT_CRYPTO,
    EXT_DATA_FILE,
];

/// Why `size` cannot be a virtual size, as the end of a sentence starting "the size".
fn size_problem(size: u64) -> Option<String> {
    const RULE: &str = "the size must be a multiple of 512, at most 4 EiB";
    if !size.is_multiple_of(512) {
        Some(format!("{size} is not a multiple of 512 ({RULE})"))
    } else if size > MAX_VIRTUAL_SIZE {
        Some(format!("{size} is more than 4 EiB ({RULE})"))
    } else {
        None
    }
}

/// Why a backing file name cannot be stored, if it cannot (empty, too long, a NUL byte).
fn backing_name_problem(name: &str) -> String {
    if name.is_empty() {
        "the backing file name is empty".into()
    } else if name.contains('\0') {
        format!(
            "the backing file name {} contains a NUL byte",
            crate::error::quoted(name)
        )
    } else {
        format!(
            "the backing file name is {} bytes long, more than {MAX_BACKING_NAME}",
            name.len()
        )
    }
}

/// Options shared by the path-based edits.
#[derive(Clone, Copy, Debug, Default)]
pub struct EditOptions {
    /// Edit even when another process (a running qemu) holds the image: DANGEROUS, a VM
    /// writing the image at the same time corrupts it.
    pub force: bool,
}

/// Lock, open read-write and parse `path`, then run `f`.
fn edit_path<T>(
    path: &Path,
    o: &EditOptions,
    f: impl FnOnce(&mut Editor) -> Result<T>,
) -> Result<T> {
    let _lock = ImageLock::acquire(path, LockMode::Write, o.force)?;
    let s = FileStorage::open_rw(path)?;
    let is_block = s.kind() == sparsekit_io::FileKind::BlockDevice;
    let ed = Editor::with_kind(Box::new(s), is_block).map_err(|e| e.with_path(Some(path)));
    f(&mut ed?).map_err(|e| e.with_path(Some(path)))
}

impl Editor {
    /// Rewrite the header cluster: the fixed header as stored, `exts` (type, data) each
    /// padded to 8 bytes, the end marker, then the backing file name. One write of the
    /// whole first cluster, then a sync.
    fn write_header_area(&self, exts: &[(u32, Vec<u8>)], backing: Option<&str>) -> Result<()> {
        let h = self.header();
        let cs = h.cluster_size() as usize;
        let mut buf = vec![0u8; h.header_length as usize];
        self.s().read_exact_at(&mut buf, 0)?;
        for (kind, data) in exts {
            buf.extend_from_slice(&kind.to_be_bytes());
            buf.extend_from_slice(&(data.len() as u32).to_be_bytes());
            buf.extend_from_slice(data);
            buf.resize(buf.len().div_ceil(8) * 8, 0);
        }
        buf.extend_from_slice(&[0u8; 8]);
        let (boff, bsize) = match backing {
            Some(name) => {
                let at = buf.len() as u64;
                buf.extend_from_slice(name.as_bytes());
                (at, name.len() as u32)
            }
            None => (0, 0),
        };
        if buf.len() > cs {
            return Err(refused(format!(
                "the header, its extensions and the backing file name need {} bytes, more than the first cluster ({cs} bytes)",
                buf.len()
            )));
        }
        buf[8..16].copy_from_slice(&boff.to_be_bytes());
        buf[16..20].copy_from_slice(&bsize.to_be_bytes());
        buf.resize(cs, 0);
        self.write(&buf, 0)?;
        self.sync()
    }

    fn exts(&self) -> Vec<(u32, Vec<u8>)> {
        self.header()
            .extensions
            .iter()
            .map(|e| (e.kind, e.data.clone()))
            .collect()
    }

    /// Add, replace (`Some`) or remove (`None`) header extension `kind`; every other
    /// extension is kept byte for byte and the backing file name moves after them. One
    /// write of the header cluster.
    pub fn set_extension(&mut self, kind: u32, data: Option<&[u8]>) -> Result<()> {
        if RESERVED_EXTENSIONS.contains(&kind) {
            return Err(refused(format!(
                "header extension {kind:#010x} is managed by the qcow2 format itself"
            )));
        }
        let mut exts = self.exts();
        let pos = exts.iter().position(|e| e.0 == kind);
        exts.retain(|e| e.0 != kind);
        if let Some(d) = data {
            let at = pos.unwrap_or(exts.len()).min(exts.len());
            exts.insert(at, (kind, d.to_vec()));
        }
        let backing = self.header().backing_file.clone();
        self.write_header_area(&exts, backing.as_deref())
    }

    /// Point the image at another backing file (`None`: none), data untouched, as
    /// `qemu-img rebase -u`. One write of the header cluster.
    pub fn set_backing(&mut self, name: Option<&str>, format: Option<&str>) -> Result<()> {
        let mut exts = self.exts();
        exts.retain(|e| e.0 != EXT_BACKING_FORMAT);
        if let Some(n) = name {
            if n.is_empty() || n.len() > MAX_BACKING_NAME as usize || n.contains('\0') {
                return Err(refused(backing_name_problem(n)));
            }
            let f = format
                .ok_or_else(|| refused("a backing file needs its format (qcow2, raw, ...)"))?;
            if f.is_empty()
                || f.len() > 32
                || !f
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(refused(format!(
                    "the backing format {} is not a format name (letters, digits, '_' and '-', at most 32)",
                    crate::error::quoted(f)
                )));
            }
            if self.header().has_data_file() && self.header().data_file_raw() {
                return Err(refused(
                    "an image whose external data file is raw cannot have a backing file",
                ));
            }
            exts.insert(0, (EXT_BACKING_FORMAT, f.as_bytes().to_vec()));
        }
        self.write_header_area(&exts, name)
    }

    /// Change the virtual size. Growing writes a larger L1 table elsewhere first when
    /// needed (written and synced, then size, L1 size and offset change in one 24-byte
    /// header write, then the old table is freed); otherwise only the size field (one
    /// write). Shrinking is refused when any guest cluster at or past `new_size` is
    /// allocated (data or zero flag), with snapshots, bitmaps or an external data file.
    pub fn resize(&mut self, new_size: u64) -> Result<()> {
        let h = self.header().clone();
        if let Some(why) = size_problem(new_size) {
            return Err(refused(format!("the new size {why}")));
        }
        if h.bitmaps.is_some() {
            return Err(refused(
                "the image has persistent bitmaps, which resizing would invalidate (qemu-img refuses too)",
            ));
        }
        if h.has_data_file() {
            return Err(refused(
                "resizing an image with an external data file is not supported",
            ));
        }
        let cov = h.l2_coverage();
        if new_size < h.size {
            if !self.img.snapshots().is_empty() {
                return Err(refused(
                    "an image with internal snapshots cannot be shrunk (the snapshots would lose data)",
                ));
            }
            self.check_unallocated_from(new_size)?;
            self.write(&new_size.to_be_bytes(), 24)?;
            return self.sync();
        }
        let need = new_size.div_ceil(cov);
        if need <= u64::from(h.l1_size) {
            self.write(&new_size.to_be_bytes(), 24)?;
            return self.sync();
        }
        if need * 8 > MAX_L1_TABLE_BYTES {
            return Err(refused(format!(
                "the new size {new_size} needs an L1 table of {need} entries, more than the limit of {} MiB",
                MAX_L1_TABLE_BYTES >> 20
            )));
        }
        let cs = h.cluster_size();
        let clusters = (need * 8).div_ceil(cs);
        let mark = self.rc.mark(self.img.storage())?;
        let at = self.rc.alloc(self.img.storage(), clusters)?;
        let mut raw = vec![0u8; (clusters * cs) as usize];
        for (i, e) in self.img.l1_entries().iter().enumerate() {
            raw[i * 8..i * 8 + 8].copy_from_slice(&e.to_be_bytes());
        }
        // Until the header points at the new table nothing references it: a failure (ENOSPC
        // on a full disk) takes the allocation back, leaving no leaked cluster.
        if let Err(e) = self.write(&raw, at).and_then(|()| self.sync()) {
            self.rc.release(self.img.storage(), &mark, at, clusters);
            return Err(e);
        }
        let mut hdr = [0u8; 24];
        hdr[..8].copy_from_slice(&new_size.to_be_bytes());
        hdr[8..12].copy_from_slice(&h.crypt_method.to_be_bytes());
        hdr[12..16].copy_from_slice(&(need as u32).to_be_bytes());
        hdr[16..24].copy_from_slice(&at.to_be_bytes());
        self.write(&hdr, 24)?;
        self.sync()?;
        if h.l1_size > 0 {
            let old = (u64::from(h.l1_size) * 8).div_ceil(cs);
            let freed = self
                .rc
                .add(self.img.storage(), h.l1_table_offset / cs, old, -1)?;
            self.punch(&freed);
        }
        self.sync()
    }

    fn check_unallocated_from(&self, new_size: u64) -> Result<()> {
        let h = self.header();
        let cov = h.l2_coverage();
        let per = h.l2_entries();
        let step = if h.extended_l2() { 2 } else { 1 };
        for (i, &e) in self.img.l1_entries().iter().enumerate() {
            let l2 = e & L1E_OFFSET_MASK;
            let base = i as u64 * cov;
            if l2 == 0 || base + cov <= new_size {
                continue;
            }
            let t = self.img.l2_table(l2, i as u64)?;
            for j in 0..per {
                let g = base + j * h.cluster_size();
                let k = (j * step) as usize;
                let used = t[k] != 0 || (step == 2 && t[k + 1] != 0);
                if used && g + h.cluster_size() > new_size {
                    return Err(refused(format!(
                        "guest cluster at {g} is allocated past the new size {new_size}"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Lower the refcount of each cluster in `drop` by one per occurrence, one write per
    /// run of equal counts in a refcount block; `drop` is emptied. Returns the clusters
    /// that reached 0, sorted (and punches nothing itself).
    fn lower(&mut self, drop: &mut Vec<u64>) -> Result<Vec<u64>> {
        drop.sort_unstable();
        let mut freed = Vec::new();
        let mut i = 0;
        while i < drop.len() {
            // A run of distinct consecutive clusters, each once.
            let mut j = i + 1;
            while j < drop.len() && drop[j] == drop[j - 1] + 1 {
                j += 1;
            }
            freed.extend(
                self.rc
                    .add(self.img.storage(), drop[i], (j - i) as u64, -1)?,
            );
            // Repeats of the last cluster of the run (shared compressed clusters).
            while j < drop.len() && drop[j] == drop[j - 1] {
                freed.extend(self.rc.add(self.img.storage(), drop[j], 1, -1)?);
                j += 1;
            }
            i = j;
        }
        drop.clear();
        freed.sort_unstable();
        freed.dedup();
        Ok(freed)
    }

    /// Return freed clusters to the filesystem (best effort: a device without discard
    /// keeps them, which is harmless).
    fn punch(&self, clusters: &[u64]) {
        let cs = self.header().cluster_size();
        let mut i = 0;
        while i < clusters.len() {
            let mut j = i + 1;
            while j < clusters.len() && clusters[j] == clusters[j - 1] + 1 {
                j += 1;
            }
            let _ = self.s().punch_hole(clusters[i] * cs, (j - i) as u64 * cs);
            i = j;
        }
    }

    /// Unallocate every guest cluster (XCP-ng's killData): the whole active L1 table is
    /// zeroed in one write (each 8-byte entry changes atomically; any mix of old and zero
    /// entries is a valid image), synced, and only then are the L2 tables' and data
    /// clusters' refcounts lowered and the freed clusters punched. Reports
    /// [`Phase::Write`] in L1 entries.
    pub fn discard_all(&mut self, ctl: &mut Control<'_>) -> Result<()> {
        let h = self.header().clone();
        if h.has_data_file() {
            return Err(refused("discarding an image with an external data file"));
        }
        let l1: Vec<u64> = self.img.l1_entries().to_vec();
        let total = l1.len() as u64;
        if l1.iter().all(|&e| e == 0) {
            ctl.report(Phase::Write, total, Some(total))?;
            return Ok(());
        }
        // Everything this edit will lower or free is checked before the first write: a bad
        // entry found half-way would leave guest data changed and clusters leaked, and an
        // entry pointing at metadata would free (and truncate away) the header or a table.
        self.validate_for_discard(ctl)
            .map_err(|e| e.with_detail_suffix("; nothing was changed"))?;
        self.write(&vec![0u8; l1.len() * 8], h.l1_table_offset)?;
        self.sync()?;
        let bits = h.cluster_bits;
        let step = if h.extended_l2() { 2 } else { 1 };
        // Every host cluster losing a reference, once per reference; lowered in runs.
        let mut drop: Vec<u64> = Vec::new();
        let mut freed = Vec::new();
        for (i, &e) in l1.iter().enumerate() {
            ctl.report(Phase::Write, i as u64, Some(total))?;
            let l2 = e & L1E_OFFSET_MASK;
            if l2 == 0 {
                continue;
            }
            let t = self.img.l2_table(l2, i as u64)?;
            drop.push(l2 >> bits);
            for k in (0..t.len()).step_by(step) {
                let e = t[k];
                if e & OFLAG_COMPRESSED != 0 {
                    let x = 62 - (bits - 8);
                    let off = e & ((1u64 << x) - 1);
                    let sectors = ((e >> x) & ((1u64 << (bits - 8)) - 1)) + 1;
                    let len = sectors * COMPRESSED_SECTOR - (off & 511);
                    drop.extend((off >> bits)..=((off + len - 1) >> bits));
                    continue;
                }
                let host = e & L2E_OFFSET_MASK;
                if host != 0 {
                    drop.push(host >> bits);
                }
            }
            if drop.len() > 1 << 20 {
                freed.extend(self.lower(&mut drop)?);
            }
        }
        freed.extend(self.lower(&mut drop)?);
        freed.sort_unstable();
        self.sync()?;
        // Freed clusters at the end of a regular file are cut off (one truncation is much
        // cheaper than punching them), the others punched.
        let cs = h.cluster_size();
        if !self.img.is_block_device {
            let used = self.rc.used_end(self.img.storage())?;
            if used < self.s().size()? {
                self.s().set_len(used)?;
                self.rc.end = used.div_ceil(cs) * cs;
                freed.retain(|&c| (c + 1) * cs <= used);
            }
        }
        self.punch(&freed);
        ctl.report(Phase::Write, total, Some(total))?;
        Ok(())
    }
}

/// The image's own structures by host cluster, to name what a bad reference points at.
struct MetadataMap {
    /// Single-cluster structures (refcount blocks, L2 tables) by cluster.
    single: std::collections::HashMap<u64, &'static str>,
    /// Larger ones (header, L1 tables, refcount table, snapshot table): `[first, end)`.
    ranges: Vec<(u64, u64, &'static str)>,
}

impl MetadataMap {
    fn new() -> MetadataMap {
        MetadataMap {
            single: std::collections::HashMap::new(),
            ranges: Vec::new(),
        }
    }

    fn add(&mut self, cluster_bits: u32, off: u64, len: u64, what: &'static str) {
        if len == 0 {
            return;
        }
        let first = off >> cluster_bits;
        let end = (off.saturating_add(len - 1) >> cluster_bits) + 1;
        if end == first + 1 && what != "the image header" {
            self.single.entry(first).or_insert(what);
        } else {
            self.ranges.push((first, end, what));
        }
    }

    /// What of the metadata overlaps clusters `[first, end)` (a cluster or two), if any.
    fn find(&self, first: u64, end: u64) -> Option<&'static str> {
        if let Some(what) = (first..end.min(first + 4)).find_map(|c| self.single.get(&c)) {
            return Some(what);
        }
        self.ranges
            .iter()
            .find(|r| r.0 < end && r.1 > first)
            .map(|r| r.2)
    }
}

impl Editor {
    /// Check every reference [`Editor::discard_all`] will drop, before it writes anything:
    /// each L2 table and each host cluster an L2 entry names must be cluster aligned
    /// (compressed clusters excepted), inside the file, and not the header, an L1 table,
    /// the refcount table, a refcount block, the snapshot table or another L2 table; then
    /// every stored refcount must cover its references (as `qemu-img check` counts them:
    /// no corruption, no unreadable structure; leaks are harmless here).
    fn validate_for_discard(&mut self, ctl: &mut Control<'_>) -> Result<()> {
        let h = self.header().clone();
        let cs = h.cluster_size();
        let bits = h.cluster_bits;
        let file_size = self.img.file_size();
        let mut meta = MetadataMap::new();
        meta.add(bits, 0, cs, "the image header");
        meta.add(
            bits,
            h.l1_table_offset,
            u64::from(h.l1_size) * 8,
            "the L1 table",
        );
        meta.add(
            bits,
            h.refcount_table_offset,
            u64::from(h.refcount_table_clusters) << bits,
            "the refcount table",
        );
        for &e in &self.rc.table {
            let off = e & crate::table::REFT_OFFSET_MASK;
            if off != 0 {
                meta.add(bits, off, cs, "a refcount block");
            }
        }
        if h.nb_snapshots > 0 {
            meta.add(
                bits,
                h.snapshots_offset,
                self.img.snapshots_size,
                "the snapshot table",
            );
        }
        for sn in self.img.snapshots() {
            meta.add(
                bits,
                sn.l1_table_offset,
                u64::from(sn.l1_size) * 8,
                "a snapshot's L1 table",
            );
        }
        if let Some((off, len)) = h.crypto_header {
            meta.add(bits, off, len, "the encryption header");
        }
        // The active L2 tables: each inside the file, aligned and not over other metadata.
        let l1: Vec<u64> = self.img.l1_entries().to_vec();
        let mut l2s: Vec<(u64, usize)> = Vec::new();
        for (i, &e) in l1.iter().enumerate() {
            let l2 = e & L1E_OFFSET_MASK;
            if l2 == 0 {
                continue;
            }
            let at = h.l1_table_offset + i as u64 * 8;
            let bad = |d: String| Err(crate::error::corrupt("L1 entry", at, d));
            if l2 & (cs - 1) != 0 {
                return bad(format!(
                    "L2 table offset {l2:#x} (L1 entry {i}) is not cluster aligned"
                ));
            }
            if l2.checked_add(cs).is_none_or(|end| end > file_size) {
                return bad(format!(
                    "L2 table offset {l2:#x} (L1 entry {i}) lies past the end of the file ({file_size} bytes)"
                ));
            }
            if let Some(what) = meta.find(l2 >> bits, (l2 >> bits) + 1) {
                return bad(format!(
                    "L2 table offset {l2:#x} (L1 entry {i}) points into {what}"
                ));
            }
            l2s.push((l2, i));
        }
        for &(l2, _) in &l2s {
            meta.add(bits, l2, cs, "an L2 table");
        }
        let step = if h.extended_l2() { 2 } else { 1 };
        let esize = h.l2_entry_size();
        for &(l2, i) in &l2s {
            ctl.check()?;
            let t = self.img.l2_table(l2, i as u64)?;
            for k in (0..t.len()).step_by(step) {
                let e = t[k];
                let at = l2 + (k / step) as u64 * esize;
                let guest = i as u64 * h.l2_coverage() + (k / step) as u64 * cs;
                let bad = |d: String| {
                    Err(crate::error::corrupt(
                        "L2 entry",
                        at,
                        format!("guest offset {guest:#x} (L1 entry {i}): {d}"),
                    ))
                };
                let (host, len) = if e & OFLAG_COMPRESSED != 0 {
                    let x = 62 - (bits - 8);
                    let off = e & ((1u64 << x) - 1);
                    let sectors = ((e >> x) & ((1u64 << (bits - 8)) - 1)) + 1;
                    let len = sectors * COMPRESSED_SECTOR - (off & 511);
                    if off == 0 {
                        return bad("compressed cluster at host offset 0".into());
                    }
                    (off, len)
                } else {
                    let host = e & L2E_OFFSET_MASK;
                    if host == 0 {
                        continue;
                    }
                    if host & (cs - 1) != 0 {
                        return bad(format!(
                            "host cluster offset {host:#x} is not cluster aligned"
                        ));
                    }
                    (host, cs)
                };
                // Counted as `qemu-img check` counts: the file's last cluster may be short
                // (qemu writes only the subclusters or sectors it needs).
                let first = host >> bits;
                let end = (host.saturating_add(len - 1) >> bits) + 1;
                if end > file_size.div_ceil(cs) {
                    return bad(format!(
                        "host data at {host:#x} ({len} bytes) lies past the end of the file ({file_size} bytes)"
                    ));
                }
                if let Some(what) = meta.find(first, end) {
                    return bad(format!("host data at {host:#x} points into {what}"));
                }
            }
        }
        // Refcounts: every reference counted. The full count needs two bytes per host
        // cluster; past MAX_CHECK_CLUSTERS each referenced cluster is only checked for a
        // refcount of at least one.
        let nb = file_size.div_ceil(cs);
        if nb <= crate::MAX_CHECK_CLUSTERS {
            let mut quiet = Control::with_cancel(ctl.cancel().clone());
            let (res, refs) = self.img.check_counts(&mut quiet)?;
            if res.corruptions == 0 && res.check_errors == 0 {
                return Ok(());
            }
            for (c, &r) in refs.iter().enumerate() {
                let stored = self.rc.get(self.img.storage(), c as u64)?;
                if stored < u64::from(r) {
                    return Err(crate::error::corrupt_range(
                        "host cluster",
                        c as u64 * cs,
                        cs,
                        format!("{r} references but a refcount of {stored}"),
                    ));
                }
            }
            return Err(crate::error::corrupt(
                "image",
                0,
                format!(
                    "qemu-img check would find {} corruptions and {} unreadable structures",
                    res.corruptions, res.check_errors
                ),
            ));
        }
        for &(l2, i) in &l2s {
            ctl.check()?;
            let mut clusters = vec![l2 >> bits];
            let t = self.img.l2_table(l2, i as u64)?;
            for k in (0..t.len()).step_by(step) {
                let host = t[k] & L2E_OFFSET_MASK;
                if t[k] & OFLAG_COMPRESSED == 0 && host != 0 {
                    clusters.push(host >> bits);
                }
            }
            for c in clusters {
                if self.rc.get(self.img.storage(), c)? == 0 {
                    return Err(crate::error::corrupt_range(
                        "host cluster",
                        c * cs,
                        cs,
                        "in use by the active L1 table but its refcount is 0",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Editor {
    /// Lower every leaked refcount (stored above the references found) to the references
    /// found, one aligned write per cluster, then sync; returns how many were fixed.
    /// Refuses an image with corruptions or unreadable structures (only leaks are safe
    /// to fix). Reports [`Phase::Verify`] while checking.
    pub fn repair_leaks(&mut self, ctl: &mut Control<'_>) -> Result<u64> {
        let (res, refs) = self.img.check_counts(ctl)?;
        if res.corruptions > 0 || res.check_errors > 0 {
            return Err(refused(format!(
                "the image has {} corruptions and {} unreadable structures; only leaks are repaired",
                res.corruptions, res.check_errors
            )));
        }
        let mut fixed = 0;
        for (c, &r) in refs.iter().enumerate() {
            let c = c as u64;
            let stored = self.rc.get(self.img.storage(), c)?;
            if stored > u64::from(r) {
                let freed =
                    self.rc
                        .add(self.img.storage(), c, 1, -((stored - u64::from(r)) as i64))?;
                self.punch(&freed);
                fixed += 1;
            }
        }
        self.sync()?;
        Ok(fixed)
    }
}

/// `getExtension`: the data of header extension `kind`, if the image has one.
pub fn get_extension(path: &Path, kind: u32) -> Result<Option<Vec<u8>>> {
    let _lock = ImageLock::acquire(path, LockMode::Read, false)?;
    let img = Image::open(
        path,
        &OpenOptions {
            backing: BackingPolicy::None,
            ..OpenOptions::default()
        },
    )?;
    Ok(img
        .header()
        .extensions
        .iter()
        .find(|e| e.kind == kind)
        .map(|e| e.data.clone()))
}

/// [`Editor::set_extension`] on the image at `path`, under qemu's write lock.
pub fn set_extension(path: &Path, kind: u32, data: Option<&[u8]>, o: &EditOptions) -> Result<()> {
    edit_path(path, o, |ed| ed.set_extension(kind, data))
}

/// [`Editor::set_backing`] on the image at `path` (`qemu-img rebase -u`).
pub fn set_backing(
    path: &Path,
    name: Option<&str>,
    format: Option<&str>,
    o: &EditOptions,
) -> Result<()> {
    edit_path(path, o, |ed| ed.set_backing(name, format))
}

/// [`Editor::resize`] on the image at `path`.
pub fn resize(path: &Path, new_size: u64, o: &EditOptions) -> Result<()> {
    edit_path(path, o, |ed| ed.resize(new_size))
}

/// [`Editor::discard_all`] on the image at `path`.
pub fn discard_all(path: &Path, o: &EditOptions, ctl: &mut Control<'_>) -> Result<()> {
    edit_path(path, o, |ed| ed.discard_all(ctl))
}

/// [`Editor::repair_leaks`] on the image at `path`; returns the leaks fixed.
pub fn repair(path: &Path, o: &EditOptions, ctl: &mut Control<'_>) -> Result<u64> {
    edit_path(path, o, |ed| ed.repair_leaks(ctl))
}

/// `preallocation` of [`create`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Preallocation {
    /// Nothing allocated.
    #[default]
    Off,
    /// Every L2 table and data cluster allocated (data clusters left as holes), laid out
    /// as qemu lays it out: each L2 table followed by its data clusters. Regular files
    /// only, without extended L2, and only while one refcount block counts every cluster
    /// (2 GiB of image with 64 KiB clusters).
    Metadata,
}

/// Options of [`create`], named as `qemu-img create -o` names them.
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Virtual size in bytes (a multiple of 512).
    pub size: u64,
    /// Cluster size, a power of two from 512 to 2 MiB (default 64 KiB).
    pub cluster_size: u64,
    /// Backing file name, stored as given (relative names are relative to the image).
    pub backing: Option<String>,
    /// Backing format (required with `backing`).
    pub backing_format: Option<String>,
    /// `1.1` (version 3, default) or `0.10` (version 2).
    pub compat_v2: bool,
    /// Extended L2 entries (version 3, clusters of 16 KiB or more).
    pub extended_l2: bool,
    /// Lazy refcounts (version 3).
    pub lazy_refcounts: bool,
    /// Preallocation.
    pub preallocation: Preallocation,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            size: 0,
            cluster_size: 65536,
            backing: None,
            backing_format: None,
            compat_v2: false,
            extended_l2: false,
            lazy_refcounts: false,
            preallocation: Preallocation::Off,
        }
    }
}

/// qemu's feature-name table (block/qcow2.c, `qcow2_update_header`).
pub(crate) const FEATURE_NAMES: [(u8, u8, &str); 8] = [
    (0, 0, "dirty bit"),
    (0, 1, "corrupt bit"),
    (0, 2, "external data file"),
    (0, 3, "compression type"),
    (0, 4, "extended L2 entries"),
    (1, 0, "lazy refcounts"),
    (2, 0, "bitmaps"),
    (2, 1, "raw external data"),
];

/// The bytes of a new, empty image laid out as `qemu-img create` lays it out: header
/// cluster, refcount table, one refcount block, L1 table.
pub fn create_bytes(o: &CreateOptions) -> Result<Vec<u8>> {
    let cs = o.cluster_size;
    if !cs.is_power_of_two() || !(1 << MIN_CLUSTER_BITS..=1 << MAX_CLUSTER_BITS).contains(&cs) {
        return Err(refused(format!(
            "cluster size {cs} is not a power of two from 512 bytes to 2 MiB"
        )));
    }
    let bits = cs.trailing_zeros();
    if let Some(why) = size_problem(o.size) {
        return Err(refused(format!("the size {why}")));
    }
    if o.compat_v2 && (o.extended_l2 || o.lazy_refcounts) {
        return Err(refused(
            "extended L2 entries and lazy refcounts need compat 1.1 (version 3)",
        ));
    }
    if o.extended_l2 && bits < MIN_CLUSTER_BITS_EXTENDED_L2 {
        return Err(refused("extended L2 needs clusters of 16 KiB or more"));
    }
    if o.backing.is_some() != o.backing_format.is_some() {
        return Err(refused(
            "a backing file needs its format, and a format its backing file",
        ));
    }
    let entry = if o.extended_l2 { 16 } else { 8 };
    let cov = (cs / entry) * cs;
    let l1_size = o.size.div_ceil(cov);
    if l1_size * 8 > MAX_L1_TABLE_BYTES {
        return Err(refused(format!(
            "the size {} needs an L1 table of {l1_size} entries, more than the limit of {} MiB; use larger clusters",
            o.size,
            MAX_L1_TABLE_BYTES >> 20
        )));
    }
    let l1_clusters = (l1_size * 8).div_ceil(cs).max(1);
    let meta = o.preallocation == Preallocation::Metadata;
    if meta && o.extended_l2 {
        return Err(refused(
            "preallocation=metadata with extended L2 is not supported",
        ));
    }
    // Metadata preallocation: L2 table i, then its data clusters.
    let mut tables = Vec::new();
    let mut clusters = 3 + l1_clusters;
    if meta {
        for i in 0..l1_size {
            let k = (o.size - i * cov).min(cov).div_ceil(cs);
            tables.push((clusters, k));
            clusters += 1 + k;
        }
    }
    // One refcount block (16-bit entries) must count them all.
    if clusters > cs / 2 {
        return Err(refused(
            "the image's metadata does not fit the first refcount block; use larger clusters (or no preallocation)",
        ));
    }
    let v3 = !o.compat_v2;
    let hlen: usize = if v3 { 112 } else { 72 };
    let mut b = vec![0u8; hlen];
    b[0..4].copy_from_slice(b"QFI\xfb");
    b[4..8].copy_from_slice(&(if v3 { 3u32 } else { 2 }).to_be_bytes());
    b[20..24].copy_from_slice(&bits.to_be_bytes());
    b[24..32].copy_from_slice(&o.size.to_be_bytes());
    b[36..40].copy_from_slice(&(l1_size as u32).to_be_bytes());
    b[40..48].copy_from_slice(&(3 * cs).to_be_bytes());
    b[48..56].copy_from_slice(&cs.to_be_bytes());
    b[56..60].copy_from_slice(&1u32.to_be_bytes());
    if v3 {
        let incompat: u64 = if o.extended_l2 { 1 << 4 } else { 0 };
        b[72..80].copy_from_slice(&incompat.to_be_bytes());
        b[80..88].copy_from_slice(&u64::from(o.lazy_refcounts).to_be_bytes());
        b[96..100].copy_from_slice(&4u32.to_be_bytes());
        b[100..104].copy_from_slice(&112u32.to_be_bytes());
    }
    let ext = |b: &mut Vec<u8>, kind: u32, data: &[u8]| {
        b.extend_from_slice(&kind.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        b.resize(b.len().div_ceil(8) * 8, 0);
    };
    if let Some(f) = &o.backing_format {
        ext(&mut b, EXT_BACKING_FORMAT, f.as_bytes());
    }
    // qemu leaves the feature-name table out with clusters of 4 KiB and below (room for the
    // backing file name).
    if v3 && cs > 4096 {
        let mut t = Vec::new();
        for (kind, bit, name) in FEATURE_NAMES {
            let mut e = [0u8; 48];
            e[0] = kind;
            e[1] = bit;
            e[2..2 + name.len()].copy_from_slice(name.as_bytes());
            t.extend_from_slice(&e);
        }
        ext(&mut b, EXT_FEATURE_NAMES, &t);
    }
    b.extend_from_slice(&[0u8; 8]);
    if let Some(n) = &o.backing {
        if n.is_empty() || n.len() > MAX_BACKING_NAME as usize {
            return Err(refused(backing_name_problem(n)));
        }
        let at = b.len() as u64;
        b.extend_from_slice(n.as_bytes());
        b[8..16].copy_from_slice(&at.to_be_bytes());
        b[16..20].copy_from_slice(&(n.len() as u32).to_be_bytes());
    }
    if b.len() as u64 > cs {
        return Err(refused(
            "the header and backing file name do not fit in one cluster",
        ));
    }
    let mut out = vec![0u8; (3 * cs + l1_size * 8) as usize];
    out[..b.len()].copy_from_slice(&b);
    out[cs as usize..cs as usize + 8].copy_from_slice(&(2 * cs).to_be_bytes());
    let used = if l1_size == 0 { 3 } else { clusters };
    for c in 0..used {
        let at = (2 * cs + c * 2) as usize;
        out[at..at + 2].copy_from_slice(&1u16.to_be_bytes());
    }
    for (i, &(t, _)) in tables.iter().enumerate() {
        let at = (3 * cs) as usize + i * 8;
        out[at..at + 8].copy_from_slice(&((t * cs) | OFLAG_COPIED).to_be_bytes());
    }
    Ok(out)
}

/// Bytes to write at an offset.
pub type Piece = (u64, Vec<u8>);

/// A new image as pieces to write and the file's length: the header area, then (with
/// metadata preallocation) each L2 table; data clusters stay holes.
pub fn create_layout(o: &CreateOptions) -> Result<(Vec<Piece>, u64)> {
    let head = create_bytes(o)?;
    if o.preallocation == Preallocation::Off {
        let len = head.len() as u64;
        return Ok((vec![(0, head)], len));
    }
    let cs = o.cluster_size;
    let l1_size = u32::from_be_bytes(head[36..40].try_into().expect("4")) as usize;
    let mut pieces = Vec::new();
    let mut end = 0;
    for i in 0..l1_size {
        let at = (3 * cs) as usize + i * 8;
        let t = u64::from_be_bytes(head[at..at + 8].try_into().expect("8")) & L1E_OFFSET_MASK;
        let covered = (o.size - i as u64 * (cs / 8) * cs)
            .min((cs / 8) * cs)
            .div_ceil(cs);
        let mut table = vec![0u8; cs as usize];
        for k in 0..covered {
            let host = (t + (1 + k) * cs) | OFLAG_COPIED;
            table[(k * 8) as usize..(k * 8 + 8) as usize].copy_from_slice(&host.to_be_bytes());
        }
        end = t + (1 + covered) * cs;
        pieces.push((t, table));
    }
    let len = end.max(head.len() as u64);
    let mut out = vec![(0, head)];
    out.extend(pieces);
    Ok((out, len))
}

/// Write a new image onto `s`, which is emptied first (`block`: a block device, whose
/// old bytes are zeroed over the metadata area instead and whose size is kept).
///
/// Crash order: first the header cluster is zeroed (from then on the storage is not a
/// qcow2 image, so no half-written table is ever read as one), then everything but the
/// header cluster is written and synced, and last the header cluster, in one write, then
/// a sync. A failure at any step leaves either no image or the whole new one.
pub fn create_on(s: &dyn Storage, o: &CreateOptions, block: bool) -> Result<()> {
    let (pieces, len) = create_layout(o)?;
    let head = &pieces[0].1;
    let cs = o.cluster_size as usize;
    if block {
        if o.preallocation != Preallocation::Off {
            return Err(refused(
                "preallocation on a block device (its old bytes would show)",
            ));
        }
        let size = s.size()?;
        if size < len {
            return Err(refused(format!(
                "the block device ({size} bytes) is too small"
            )));
        }
        // Whatever was there before must not read as tables.
        s.write_zeroes(0, (head.len() as u64).max(4 * o.cluster_size).min(size))?;
    } else {
        s.set_len(0)?;
    }
    s.write_all_at(&head[cs..], cs as u64)?;
    for (at, b) in &pieces[1..] {
        s.write_all_at(b, *at)?;
    }
    if !block && s.size()? < len {
        s.set_len(len)?;
    }
    s.flush()?;
    s.write_all_at(&head[..cs], 0)?;
    s.flush()?;
    Ok(())
}

/// Create a new image at `path`, laid out as `qemu-img create` lays it out. A regular
/// file (new, or replacing one there, which must not be in use by qemu) is written as a
/// temporary file beside it, synced and renamed over it, so a failure leaves the old file
/// (or none). A block device gets the image at its start, in [`create_on`]'s order.
pub fn create(path: &Path, o: &CreateOptions, e: &EditOptions) -> Result<()> {
    // Bad options are refused before anything is touched.
    create_layout(o).map_err(|e| e.with_path(Some(path)))?;
    let meta = match std::fs::metadata(path) {
        Ok(m) => Some(m),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            return Err(Error::Io(
                sparsekit_io::IoError::new("stat", err).with_path(path),
            ))
        }
    };
    let _lock = match &meta {
        Some(_) => ImageLock::acquire(path, LockMode::Write, e.force)?,
        None => None,
    };
    let with_path = |err: Error| err.with_path(Some(path));
    if meta.as_ref().is_some_and(|m| !m.is_file()) {
        // A block device (or a directory, which open refuses with EISDIR).
        let s = FileStorage::open_with(path, true, false, false)?;
        let block = s.kind() == sparsekit_io::FileKind::BlockDevice;
        return create_on(&s, o, block).map_err(with_path);
    }
    // A symbolic link is followed: its target is replaced, the link stays.
    let target = match &meta {
        Some(_) => std::fs::canonicalize(path).map_err(|err| {
            Error::Io(sparsekit_io::IoError::new("realpath", err).with_path(path))
        })?,
        None => path.to_path_buf(),
    };
    let mut tmp = sparsekit_io::TempBeside::new(&target)?;
    let file = tmp.take_file().expect("a new temporary file is open");
    let s = FileStorage::from_file(file, path)?;
    create_on(&s, o, false).map_err(with_path)?;
    drop(s);
    tmp.persist(&target, meta.as_ref())?;
    Ok(())
}

/// A new overlay at `overlay` on `base` (`qemu-img create -b base -F fmt overlay`): the
/// base's virtual size and format, its name stored relative to the overlay's folder when
/// both are in the same folder.
pub fn snapshot(base: &Path, overlay: &Path, e: &EditOptions) -> Result<()> {
    let img = Image::open(
        base,
        &OpenOptions {
            backing: BackingPolicy::None,
            ..OpenOptions::default()
        },
    );
    let (size, format) = match img {
        Ok(i) => (i.size(), "qcow2"),
        Err(Error::NotQcow2 { .. }) => {
            let s = FileStorage::open(base)?;
            (s.size()?, "raw")
        }
        Err(err) => return Err(err),
    };
    let name = match (base.parent(), overlay.parent()) {
        (Some(a), Some(b)) if a == b => base
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        _ => std::path::absolute(base)
            .map_err(|err| Error::Io(sparsekit_io::IoError::new("realpath", err).with_path(base)))?
            .to_string_lossy()
            .into_owned(),
    };
    create(
        overlay,
        &CreateOptions {
            size: size.div_ceil(512) * 512,
            backing: Some(name),
            backing_format: Some(format.into()),
            ..CreateOptions::default()
        },
        e,
    )
}
