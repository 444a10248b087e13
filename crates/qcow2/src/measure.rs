//! `qemu-img measure -O qcow2`: the bytes a qcow2 image of a source needs, by qemu's own
//! formulas (block/qcow2.c `qcow2_measure`, `qcow2_calc_prealloc_size`,
//! `qcow2_refcount_metadata_size`), so the numbers are the same.

use sparsekit_io::Control;

use crate::error::{refused, Result};
use crate::header::{
    MAX_CLUSTER_BITS, MAX_L1_TABLE_BYTES, MIN_CLUSTER_BITS, MIN_CLUSTER_BITS_EXTENDED_L2,
};
use crate::source::Source;

/// Options of [`measure`]: the target image's, named as `qemu-img measure -o` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeasureOptions {
    /// Cluster size (default 64 KiB).
    pub cluster_size: u64,
    /// `compat=0.10` (version 2: no bitmaps).
    pub compat_v2: bool,
    /// Extended L2 entries.
    pub extended_l2: bool,
    /// The image will have a backing file: every cluster may be needed.
    pub backing: bool,
}

impl Default for MeasureOptions {
    fn default() -> Self {
        MeasureOptions {
            cluster_size: 65536,
            compat_v2: false,
            extended_l2: false,
            backing: false,
        }
    }
}

/// `qemu-img measure --output=json` of a qcow2 target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measure {
    /// Bytes the image needs for the source's data (`required`).
    pub required: u64,
    /// Bytes of the image fully allocated (`fully-allocated`).
    pub fully_allocated: u64,
    /// Bytes the source's persistent bitmaps need (`bitmaps`), when both sides can have
    /// them (a qcow2 source, a version 3 target).
    pub bitmaps: Option<u64>,
}

impl Measure {
    /// The JSON `qemu-img measure --output=json` prints.
    pub fn to_json(&self) -> String {
        let mut s = String::from("{\n");
        if let Some(b) = self.bitmaps {
            s.push_str(&format!("    \"bitmaps\": {b},\n"));
        }
        s.push_str(&format!(
            "    \"required\": {},\n    \"fully-allocated\": {}\n}}\n",
            self.required, self.fully_allocated
        ));
        s
    }
}

/// qemu's `qcow2_refcount_metadata_size` (16-bit refcounts unless `refcount_order` says).
pub(crate) fn refcount_metadata_size(clusters: u64, cs: u64, refcount_order: u32) -> u64 {
    let per_table_cluster = cs / 8;
    let per_block = cs * 8 / (1 << refcount_order);
    let (mut table, mut blocks, mut n) = (0u64, 0u64, 0u64);
    loop {
        let last = n;
        blocks = (clusters + table + blocks).div_ceil(per_block);
        table = blocks.div_ceil(per_table_cluster);
        n = clusters + blocks + table;
        if n == last {
            break;
        }
    }
    (blocks + table) * cs
}

/// qemu's `qcow2_calc_prealloc_size`.
pub(crate) fn prealloc_size(total: u64, cs: u64, refcount_order: u32, ext: bool) -> u64 {
    let l2e: u64 = if ext { 16 } else { 8 };
    let aligned = total.div_ceil(cs) * cs;
    let mut meta = cs;
    let nl2e = (aligned / cs).div_ceil(cs / l2e) * (cs / l2e);
    meta += nl2e * l2e;
    let nl1e = (nl2e * l2e / cs).div_ceil(cs / 8) * (cs / 8);
    meta += nl1e * 8;
    meta += refcount_metadata_size((meta + aligned) / cs, cs, refcount_order);
    meta + aligned
}

/// What a qcow2 image of `src` needs, as `qemu-img measure --output=json -O qcow2` says.
pub fn measure(src: &dyn Source, o: &MeasureOptions, ctl: &mut Control<'_>) -> Result<Measure> {
    let cs = o.cluster_size;
    if !cs.is_power_of_two() || !(1 << MIN_CLUSTER_BITS..=1 << MAX_CLUSTER_BITS).contains(&cs) {
        return Err(refused(format!(
            "cluster size {cs} is not a power of two from 512 bytes to 2 MiB"
        )));
    }
    if o.extended_l2 && (o.compat_v2 || cs < 1 << MIN_CLUSTER_BITS_EXTENDED_L2) {
        return Err(refused(
            "extended L2 needs compat 1.1 and clusters of 16 KiB or more",
        ));
    }
    let l2e: u64 = if o.extended_l2 { 16 } else { 8 };
    let size = src.size();
    let virtual_size = size.div_ceil(cs) * cs;
    let l2_tables = (virtual_size / cs).div_ceil(cs / l2e);
    if l2_tables * l2e > MAX_L1_TABLE_BYTES {
        return Err(refused(format!(
            "a virtual size of {size} bytes needs too large an L1 table; use larger clusters"
        )));
    }
    let required = if o.backing {
        virtual_size
    } else {
        // Whole clusters under allocated data (zero ranges skipped).
        let mut n = 0u64;
        let mut counted_to = 0u64;
        for s in src.block_status(ctl)? {
            if s.zero || !(s.allocated && s.data) || s.length == 0 {
                continue;
            }
            let first = (s.start / cs).max(counted_to);
            let end = (s.start + s.length).div_ceil(cs);
            if end > first {
                n += end - first;
                counted_to = end;
            }
        }
        n * cs
    };
    let fully_allocated = prealloc_size(virtual_size, cs, 4, o.extended_l2);
    let bitmaps = match src.persistent_bitmaps()? {
        Some(list) if !o.compat_v2 => {
            let mut total = 0u64;
            let mut dir = 0u64;
            for b in &list {
                let bytes = size.div_ceil(b.granularity.max(1)).div_ceil(8);
                let clusters = bytes.div_ceil(cs);
                total += clusters * cs;
                total += (clusters * 8).div_ceil(cs) * cs;
                dir += (24 + b.name.len() as u64).div_ceil(8) * 8;
            }
            Some(total + dir.div_ceil(cs) * cs)
        }
        _ => None,
    };
    Ok(Measure {
        required: fully_allocated - virtual_size + required,
        fully_allocated,
        bitmaps,
    })
}
