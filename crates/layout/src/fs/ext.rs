//! ext2/3/4: the block bitmap of each group (in clusters with bigalloc), groups with
//! `BLOCK_UNINIT` rebuilt from the layout rules, 64-bit descriptors, meta_bg and flex_bg
//! placement. Facts from the kernel's Documentation/filesystems/ext4 (ondisk) pages.

use super::{Opened, Walk};
use crate::dev::{bitmap_runs, count_bits, label, le16, le32, uuid_be, Dev, Emit};
use crate::error::{corrupt, unsupported, Error};
use crate::FileSystem;

const SB_OFFSET: u64 = 1024;
const MAGIC: u16 = 0xef53;

// s_feature_compat
const COMPAT_HAS_JOURNAL: u32 = 0x4;
const COMPAT_SPARSE_SUPER2: u32 = 0x200;
// s_feature_incompat
const INCOMPAT_COMPRESSION: u32 = 0x1;
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_JOURNAL_DEV: u32 = 0x8;
const INCOMPAT_META_BG: u32 = 0x10;
const INCOMPAT_EXTENTS: u32 = 0x40;
const INCOMPAT_64BIT: u32 = 0x80;
const INCOMPAT_MMP: u32 = 0x100;
const INCOMPAT_FLEX_BG: u32 = 0x200;
const INCOMPAT_EA_INODE: u32 = 0x400;
const INCOMPAT_DIRDATA: u32 = 0x1000;
const INCOMPAT_CSUM_SEED: u32 = 0x2000;
const INCOMPAT_LARGEDIR: u32 = 0x4000;
const INCOMPAT_INLINE_DATA: u32 = 0x8000;
const INCOMPAT_ENCRYPT: u32 = 0x10000;
const INCOMPAT_CASEFOLD: u32 = 0x20000;
/// Incompatible features whose meaning for block allocation is understood: none of them
/// changes what a block bitmap bit means. Anything else makes the file system all used.
const INCOMPAT_KNOWN: u32 = INCOMPAT_FILETYPE
    | INCOMPAT_RECOVER
    | INCOMPAT_META_BG
    | INCOMPAT_EXTENTS
    | INCOMPAT_64BIT
    | INCOMPAT_MMP
    | INCOMPAT_FLEX_BG
    | INCOMPAT_EA_INODE
    | INCOMPAT_DIRDATA
    | INCOMPAT_CSUM_SEED
    | INCOMPAT_LARGEDIR
    | INCOMPAT_INLINE_DATA
    | INCOMPAT_ENCRYPT
    | INCOMPAT_CASEFOLD;
const INCOMPAT_EXT4: u32 = INCOMPAT_EXTENTS
    | INCOMPAT_64BIT
    | INCOMPAT_FLEX_BG
    | INCOMPAT_META_BG
    | INCOMPAT_MMP
    | INCOMPAT_EA_INODE
    | INCOMPAT_INLINE_DATA
    | INCOMPAT_CSUM_SEED
    | INCOMPAT_LARGEDIR
    | INCOMPAT_ENCRYPT
    | INCOMPAT_CASEFOLD;
// s_feature_ro_compat
const RO_SPARSE_SUPER: u32 = 0x1;
const RO_LARGE_FILE: u32 = 0x2;
const RO_BTREE_DIR: u32 = 0x4;
const RO_HUGE_FILE: u32 = 0x8;
const RO_GDT_CSUM: u32 = 0x10;
const RO_DIR_NLINK: u32 = 0x20;
const RO_EXTRA_ISIZE: u32 = 0x40;
const RO_QUOTA: u32 = 0x100;
const RO_BIGALLOC: u32 = 0x200;
const RO_METADATA_CSUM: u32 = 0x400;
const RO_READONLY: u32 = 0x1000;
const RO_PROJECT: u32 = 0x2000;
const RO_VERITY: u32 = 0x8000;
const RO_ORPHAN_PRESENT: u32 = 0x10000;
/// Read-only-compatible features understood (snapshots, replicas and shared blocks are
/// not: they change what a bitmap bit means).
const RO_KNOWN: u32 = RO_SPARSE_SUPER
    | RO_LARGE_FILE
    | RO_BTREE_DIR
    | RO_HUGE_FILE
    | RO_GDT_CSUM
    | RO_DIR_NLINK
    | RO_EXTRA_ISIZE
    | RO_QUOTA
    | RO_BIGALLOC
    | RO_METADATA_CSUM
    | RO_READONLY
    | RO_PROJECT
    | RO_VERITY
    | RO_ORPHAN_PRESENT;
const RO_EXT4: u32 =
    RO_HUGE_FILE | RO_GDT_CSUM | RO_DIR_NLINK | RO_EXTRA_ISIZE | RO_METADATA_CSUM | RO_BIGALLOC;
// s_state
const STATE_VALID: u16 = 0x1;
const STATE_ERROR: u16 = 0x2;
const STATE_ORPHAN: u16 = 0x4;
// bg_flags
const BG_BLOCK_UNINIT: u16 = 0x2;

pub(crate) fn detect(head: &[u8]) -> bool {
    head.len() >= 2048 && le16(head, 1024 + 0x38) == MAGIC
}

#[derive(Clone, Copy)]
struct Group {
    block_bitmap: u64,
    inode_bitmap: u64,
    inode_table: u64,
    flags: u16,
    free: u64,
    /// bg_block_bitmap_csum (lo, and hi with 64-byte descriptors).
    bitmap_csum: u32,
}

struct Ext {
    bs: u64,
    ratio: u64,
    blocks: u64,
    first_data_block: u64,
    bpg: u64,
    cpg: u64,
    itable_blocks: u64,
    gdt_blocks: u64,
    reserved_gdt: u64,
    dpb: u64,
    meta_bg: Option<u64>,
    sparse_super: bool,
    backup_bgs: Option<[u64; 2]>,
    uninit_ok: bool,
    /// metadata_csum's seed and whether descriptors hold the high half of bitmap sums.
    csum: Option<(u32, bool)>,
    groups: Vec<Group>,
}

pub(crate) fn open(d: &Dev) -> Result<Opened, Error> {
    const S: &str = "ext superblock";
    let sb = d.read(S, SB_OFFSET, 1024)?;
    if le16(&sb, 0x38) != MAGIC {
        return Err(corrupt(S, SB_OFFSET, "no ext magic"));
    }
    let rev = le32(&sb, 0x4c);
    let (compat, incompat, ro) = if rev == 0 {
        (0, 0, 0)
    } else {
        (le32(&sb, 0x5c), le32(&sb, 0x60), le32(&sb, 0x64))
    };
    let fs = if incompat & INCOMPAT_EXT4 != 0 || ro & RO_EXT4 != 0 {
        FileSystem::Ext4
    } else if compat & COMPAT_HAS_JOURNAL != 0 {
        FileSystem::Ext3
    } else {
        FileSystem::Ext2
    };
    let lbl = label(&sb[0x78..0x88]);
    let uuid = uuid_be(&sb[0x68..0x78]);
    let fail = |e: Error| -> Result<Opened, Error> { Err(e) };

    if incompat & INCOMPAT_JOURNAL_DEV != 0 {
        let mut o = Opened::new(fs, lbl, uuid, Box::new(Nothing));
        o.opaque = Some("an external ext3/4 journal device".into());
        return Ok(o);
    }
    if incompat & !INCOMPAT_KNOWN != 0 || incompat & INCOMPAT_COMPRESSION != 0 {
        return fail(unsupported(
            S,
            SB_OFFSET,
            format!(
                "incompatible feature flags {:#x}",
                incompat & !INCOMPAT_KNOWN
            ),
        ));
    }
    if ro & !RO_KNOWN != 0 {
        return fail(unsupported(
            S,
            SB_OFFSET,
            format!("read-only-compatible feature flags {:#x}", ro & !RO_KNOWN),
        ));
    }
    if ro & RO_METADATA_CSUM != 0 {
        // crc32c of the superblock up to s_checksum, stored without the final inversion.
        let want = le32(&sb, 0x3fc);
        let got = !crc32c::crc32c(&sb[..0x3fc]);
        if want != got {
            return fail(corrupt(
                S,
                SB_OFFSET,
                format!("superblock checksum {want:#010x}, computed {got:#010x}"),
            ));
        }
    }
    let log_bs = le32(&sb, 0x18);
    if log_bs > 6 {
        return fail(corrupt(
            S,
            SB_OFFSET,
            format!("s_log_block_size {log_bs}: blocks over 64 KiB"),
        ));
    }
    let bs = 1024u64 << log_bs;
    let is64 = incompat & INCOMPAT_64BIT != 0;
    let hi = |o: usize| if is64 { (le32(&sb, o) as u64) << 32 } else { 0 };
    let blocks = le32(&sb, 0x4) as u64 | hi(0x150);
    let first_data_block = le32(&sb, 0x14) as u64;
    let bpg = le32(&sb, 0x20) as u64;
    let ipg = le32(&sb, 0x28) as u64;
    let inode_size = if rev == 0 {
        128
    } else {
        le16(&sb, 0x58) as u64
    };
    let (ratio, cpg) = if ro & RO_BIGALLOC != 0 {
        let log_cs = le32(&sb, 0x1c);
        if log_cs < log_bs || log_cs - log_bs > 16 {
            return fail(corrupt(
                S,
                SB_OFFSET,
                format!("s_log_cluster_size {log_cs} with s_log_block_size {log_bs}"),
            ));
        }
        (1u64 << (log_cs - log_bs), le32(&sb, 0x24) as u64)
    } else {
        (1, bpg)
    };
    let need = blocks.checked_mul(bs);
    if blocks == 0 || need.is_none_or(|n| n > d.len) {
        return fail(corrupt(
            S,
            SB_OFFSET,
            format!("{blocks} blocks of {bs} bytes do not fit the partition ({} bytes): truncated image?", d.len),
        ));
    }
    if first_data_block != (bs == 1024 && ratio == 1) as u64 {
        return fail(corrupt(
            S,
            SB_OFFSET,
            format!("s_first_data_block {first_data_block} with {bs}-byte blocks"),
        ));
    }
    if cpg == 0 || cpg > 8 * bs || bpg != cpg * ratio {
        return fail(corrupt(
            S,
            SB_OFFSET,
            format!("{bpg} blocks and {cpg} clusters per group with {bs}-byte blocks"),
        ));
    }
    if ipg == 0
        || ipg > 8 * bs
        || inode_size < 128
        || inode_size > bs
        || !inode_size.is_power_of_two()
    {
        return fail(corrupt(
            S,
            SB_OFFSET,
            format!("{ipg} inodes per group of {inode_size} bytes"),
        ));
    }
    if blocks <= first_data_block {
        return fail(corrupt(S, SB_OFFSET, "no blocks after s_first_data_block"));
    }
    let ngroups = (blocks - first_data_block).div_ceil(bpg);
    let desc_size = if is64 { le16(&sb, 0xfe) as u64 } else { 32 };
    if !(32..=1024).contains(&desc_size) || !desc_size.is_power_of_two() || (is64 && desc_size < 64)
    {
        return fail(corrupt(
            S,
            SB_OFFSET,
            format!("group descriptor size {desc_size}"),
        ));
    }
    let dpb = bs / desc_size;
    let gdt_blocks = ngroups.div_ceil(dpb);
    let reserved_gdt = le16(&sb, 0xce) as u64;
    let meta_bg = (incompat & INCOMPAT_META_BG != 0).then(|| le32(&sb, 0x104) as u64);
    if reserved_gdt > bs / 4 {
        return fail(corrupt(
            S,
            SB_OFFSET,
            format!("{reserved_gdt} reserved GDT blocks"),
        ));
    }

    // Dirty or in doubt: all used.
    let state = le16(&sb, 0x3a);
    let errors = le32(&sb, 0x194);
    let why_dirty = if incompat & INCOMPAT_RECOVER != 0 {
        Some(
            "the journal needs recovery (needs_recovery): mounted, or not cleanly unmounted"
                .to_string(),
        )
    } else if state & STATE_ERROR != 0 {
        Some("the file system is marked as having errors".into())
    } else if state & STATE_VALID == 0 {
        Some("the file system was not cleanly unmounted".into())
    } else if state & STATE_ORPHAN != 0 || ro & RO_ORPHAN_PRESENT != 0 {
        Some("orphan inodes are waiting to be processed".into())
    } else if errors != 0 && rev != 0 {
        Some(format!(
            "the superblock records {errors} errors since the last check"
        ))
    } else {
        None
    };
    if let Some(why) = why_dirty {
        let mut o = Opened::new(fs, lbl, uuid, Box::new(Nothing));
        o.dirty = Some(why);
        return Ok(o);
    }

    let mut ext = Ext {
        bs,
        ratio,
        blocks,
        first_data_block,
        bpg,
        cpg,
        itable_blocks: (ipg * inode_size).div_ceil(bs),
        gdt_blocks,
        reserved_gdt,
        dpb,
        meta_bg,
        sparse_super: ro & RO_SPARSE_SUPER != 0,
        backup_bgs: (compat & COMPAT_SPARSE_SUPER2 != 0)
            .then(|| [le32(&sb, 0x24c) as u64, le32(&sb, 0x250) as u64]),
        uninit_ok: ro & (RO_GDT_CSUM | RO_METADATA_CSUM) != 0,
        csum: None,
        groups: Vec::new(),
    };
    // The checksum seed of metadata_csum: s_checksum_seed, or crc32c(~0, s_uuid) (kept
    // without the final inversion, as the kernel's raw crc32c_le).
    let csum_seed = (ro & RO_METADATA_CSUM != 0).then(|| {
        if incompat & INCOMPAT_CSUM_SEED != 0 {
            le32(&sb, 0x270)
        } else {
            !crc32c::crc32c(&sb[0x68..0x78])
        }
    });
    // Group descriptors, one descriptor block at a time.
    let mut groups = Vec::with_capacity(ngroups.min(1 << 20) as usize);
    for i in 0..gdt_blocks {
        let blk = ext.desc_block(i);
        if blk >= blocks {
            return fail(corrupt(
                "ext group descriptors",
                blk * bs,
                format!("descriptor block {i} at block {blk} is past the end"),
            ));
        }
        let b = d.read("ext group descriptors", blk * bs, bs)?;
        for j in 0..dpb {
            let g = i * dpb + j;
            if g >= ngroups {
                break;
            }
            let e = &b[(j * desc_size) as usize..((j + 1) * desc_size) as usize];
            let h = |o: usize| if is64 { (le32(e, o) as u64) << 32 } else { 0 };
            let h16 = |o: usize| if is64 { (le16(e, o) as u64) << 16 } else { 0 };
            let gr = Group {
                block_bitmap: le32(e, 0x0) as u64 | h(0x20),
                inode_bitmap: le32(e, 0x4) as u64 | h(0x24),
                inode_table: le32(e, 0x8) as u64 | h(0x28),
                flags: le16(e, 0x12),
                free: le16(e, 0xc) as u64 | h16(0x2c),
                bitmap_csum: le16(e, 0x18) as u32
                    | if desc_size >= 64 {
                        (le16(e, 0x38) as u32) << 16
                    } else {
                        0
                    },
            };
            let at = blk * bs + j * desc_size;
            if let Some(seed) = csum_seed {
                // metadata_csum: the low 16 bits of crc32c(seed, group number, descriptor
                // with bg_checksum zeroed), as the kernel's ext4_group_desc_csum.
                let mut d = e.to_vec();
                d[0x1e..0x20].fill(0);
                let crc = crc32c::crc32c_append(!seed, &(g as u32).to_le_bytes());
                let crc = !crc32c::crc32c_append(crc, &d);
                if (crc & 0xffff) as u16 != le16(e, 0x1e) {
                    return fail(corrupt(
                        "ext group descriptor",
                        at,
                        format!(
                            "group {g}'s checksum is {:#06x}, computed {:#06x}",
                            le16(e, 0x1e),
                            crc & 0xffff
                        ),
                    ));
                }
            }
            for (what, b0, n) in [
                ("block bitmap", gr.block_bitmap, 1),
                ("inode bitmap", gr.inode_bitmap, 1),
                ("inode table", gr.inode_table, ext.itable_blocks),
            ] {
                if b0 < first_data_block || b0.saturating_add(n) > blocks {
                    return fail(corrupt(
                        "ext group descriptor",
                        at,
                        format!("group {g}'s {what} at block {b0} (+{n}) is outside the file system ({blocks} blocks)"),
                    ));
                }
            }
            if gr.free > cpg {
                return fail(corrupt(
                    "ext group descriptor",
                    at,
                    format!("group {g} has {} free clusters of {cpg}", gr.free),
                ));
            }
            groups.push(gr);
        }
    }
    ext.groups = groups;
    ext.csum = csum_seed.map(|s| (s, desc_size >= 64));
    Ok(Opened::new(fs, lbl, uuid, Box::new(ext)))
}

impl Ext {
    fn group_first_block(&self, g: u64) -> u64 {
        self.first_data_block + g * self.bpg
    }

    /// Whether group `g` holds a superblock backup (conservative: with sparse_super2 the
    /// usual sparse groups count too).
    fn has_super(&self, g: u64) -> bool {
        if g == 0 {
            return true;
        }
        if let Some(b) = self.backup_bgs {
            if g == b[0] || g == b[1] {
                return true;
            }
        }
        if g == 1 || !self.sparse_super {
            return true;
        }
        if g.is_multiple_of(2) {
            return false;
        }
        [3u64, 5, 7].iter().any(|&p| {
            let mut x = p;
            while x < g {
                x = x.saturating_mul(p);
            }
            x == g
        })
    }

    /// The block holding descriptor block `i` (meta_bg places them in their meta group).
    fn desc_block(&self, i: u64) -> u64 {
        let sb_block = if self.bs == 1024 { 1 } else { 0 };
        match self.meta_bg {
            Some(first) if i >= first => {
                let g = i * self.dpb;
                self.group_first_block(g) + self.has_super(g) as u64
            }
            _ => sb_block + 1 + i,
        }
    }

    /// Blocks at the start of group `g` taken by a superblock backup and descriptors
    /// (as the kernel's ext4_num_base_meta_clusters counts them).
    fn base_meta_blocks(&self, g: u64) -> u64 {
        let sup = self.has_super(g) as u64;
        match self.meta_bg {
            Some(first) if g >= first * self.dpb => {
                let i = g % self.dpb;
                sup + (i == 0 || i == 1 || i == self.dpb - 1) as u64
            }
            Some(first) => {
                if sup == 1 {
                    1 + first + self.reserved_gdt
                } else {
                    0
                }
            }
            None => {
                if sup == 1 {
                    1 + self.gdt_blocks + self.reserved_gdt
                } else {
                    0
                }
            }
        }
    }
}

impl Walk for Ext {
    fn walk(&self, d: &Dev, e: &mut Emit) -> Result<(), Error> {
        let bs = self.bs;
        let unit = bs * self.ratio;
        // Bitmaps and inode tables of all groups (flex_bg packs them anywhere): marked
        // used wherever they fall, whatever the bitmap says.
        let mut meta: Vec<(u64, u64)> = Vec::with_capacity(self.groups.len() * 3);
        for g in &self.groups {
            meta.push((g.block_bitmap, 1));
            meta.push((g.inode_bitmap, 1));
            meta.push((g.inode_table, self.itable_blocks));
        }
        meta.sort_unstable();
        let mut mi = 0usize;
        // Boot block of 1 KiB-block file systems (block 0, in no group).
        e.used(0, self.first_data_block * bs)?;
        let mut bits = vec![0u8; (self.cpg as usize).div_ceil(8)];
        for (gi, g) in self.groups.iter().enumerate() {
            let gi = gi as u64;
            let first = self.group_first_block(gi);
            let nblocks = self.bpg.min(self.blocks - first);
            let nclusters = nblocks.div_ceil(self.ratio);
            if g.flags & BG_BLOCK_UNINIT != 0 && self.uninit_ok {
                bits.fill(0);
                let base = self.base_meta_blocks(gi).min(nblocks);
                set_range(&mut bits, 0, base.div_ceil(self.ratio));
            } else {
                d.read_into("ext block bitmap", g.block_bitmap * bs, &mut bits)?;
                if let Some((seed, hi)) = self.csum {
                    // crc32c(seed, the group's cpg/8 bitmap bytes), as ext4_block_bitmap_csum_set.
                    let crc = !crc32c::crc32c_append(!seed, &bits[..(self.cpg / 8) as usize]);
                    let want = if hi { crc } else { crc & 0xffff };
                    if want != g.bitmap_csum {
                        return Err(corrupt(
                            "ext block bitmap",
                            g.block_bitmap * bs,
                            format!(
                                "group {gi}'s bitmap checksum is {:#010x}, computed {want:#010x}",
                                g.bitmap_csum
                            ),
                        ));
                    }
                }
                let free = nclusters - count_bits(&bits, nclusters, true);
                if free != g.free {
                    return Err(corrupt(
                        "ext block bitmap",
                        g.block_bitmap * bs,
                        format!(
                            "group {gi}'s bitmap has {free} free clusters, its descriptor says {}",
                            g.free
                        ),
                    ));
                }
            }
            // OR in the metadata inside this group.
            while mi < meta.len() && meta[mi].0 + meta[mi].1 <= first {
                mi += 1;
            }
            let mut k = mi;
            while k < meta.len() && meta[k].0 < first + nblocks {
                let (b, n) = meta[k];
                let s = b.max(first) - first;
                let t = (b + n).min(first + nblocks) - first;
                set_range(&mut bits, s / self.ratio, t.div_ceil(self.ratio));
                k += 1;
            }
            bitmap_runs(&bits, nclusters, true, first * bs, unit, e)?;
            if gi % 64 == 63 {
                e.progress(first * bs)?;
            }
        }
        // Past the last block: not the file system's.
        e.used(self.blocks * bs, u64::MAX)
    }
}

fn set_range(bits: &mut [u8], from: u64, to: u64) {
    let to = to.min(bits.len() as u64 * 8);
    for i in from..to {
        bits[(i / 8) as usize] |= 1 << (i % 8);
    }
}

/// The walker of a file system that is reported all used before walking.
struct Nothing;
impl Walk for Nothing {
    fn walk(&self, _: &Dev, e: &mut Emit) -> Result<(), Error> {
        e.used(0, u64::MAX)
    }
}
