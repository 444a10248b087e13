//! Block status through the chain, as `qemu-img map --output=json` reports it, and the
//! per-cluster allocation bitmap.

use std::fmt::Write as _;

use sparsekit_io::{Control, Phase};

use crate::error::{unsupported, Result};
use crate::header::CryptMethod;
use crate::image::{raw_run, Image, Layer, Run};

/// Most bytes of an allocation bitmap (one bit per cluster): 64 MiB.
pub const MAX_ALLOCATION_BITMAP_BYTES: u64 = 64 << 20;

/// One entry of `qemu-img map --output=json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapEntry {
    /// Guest offset.
    pub start: u64,
    /// Bytes.
    pub length: u64,
    /// Layer of the chain the status comes from (0 = the image itself).
    pub depth: u32,
    /// Allocated in that layer (data or zero flag), not merely "nothing below".
    pub present: bool,
    /// Reads as zeros.
    pub zero: bool,
    /// Has data (compressed or not).
    pub data: bool,
    /// Compressed.
    pub compressed: bool,
    /// Host offset in that layer's file (data file for external data files), when valid.
    pub offset: Option<u64>,
}

impl MapEntry {
    fn mergeable(&self, next: &MapEntry) -> bool {
        if self.length == 0 {
            return false;
        }
        if self.zero != next.zero
            || self.data != next.data
            || self.compressed != next.compressed
            || self.depth != next.depth
            || self.present != next.present
        {
            return false;
        }
        match (self.offset, next.offset) {
            (None, None) => true,
            (Some(a), Some(b)) => a + self.length == b,
            _ => false,
        }
    }
}

fn layer_run(layer: &Layer, off: u64, max: u64) -> Result<(Run, u64)> {
    match layer {
        Layer::Qcow2(i) => i.run(off, max),
        Layer::Raw(r) => raw_run(r, off, max),
    }
}

/// The status of guest bytes at `off` (at most `max`) through the chain below `top`.
pub(crate) fn chain_entry(top: &Image, off: u64, max: u64) -> Result<MapEntry> {
    let mut depth = 0u32;
    let mut max = max;
    let mut layer_img: Option<&Image> = Some(top);
    let mut layer_raw = None;
    loop {
        let (run, n) = match (layer_img, layer_raw) {
            (Some(i), _) => i.run(off, max)?,
            (None, Some(r)) => layer_run(r, off, max)?,
            _ => unreachable!("one layer is set"),
        };
        max = n;
        let hide = layer_img.is_some_and(|i| i.header.crypt() != CryptMethod::None);
        let offs = |o: Option<u64>| if hide { None } else { o };
        let e = |present, zero, data, compressed, offset| MapEntry {
            start: off,
            length: max,
            depth,
            present,
            zero,
            data,
            compressed,
            offset,
        };
        return Ok(match run {
            Run::Data(h) => match layer_img {
                Some(i) if !hide => {
                    let (zero, n) = i.host_status(h, max)?;
                    MapEntry {
                        length: n,
                        ..e(true, zero, true, false, Some(h))
                    }
                }
                _ => e(true, false, true, false, offs(Some(h))),
            },
            Run::Compressed { .. } => e(true, false, true, true, None),
            Run::Zero(o) => e(true, true, false, false, offs(o)),
            Run::RawData => e(true, false, true, false, Some(off)),
            Run::RawHole => e(true, true, false, false, Some(off)),
            Run::Unallocated(o) => {
                let backing = layer_img.and_then(|i| i.backing.as_deref());
                match backing {
                    Some(b) if off < b.size() => {
                        max = max.min(b.size() - off);
                        depth += 1;
                        match b {
                            Layer::Qcow2(i) => {
                                layer_img = Some(i);
                                layer_raw = None;
                            }
                            Layer::Raw(_) => {
                                layer_img = None;
                                layer_raw = Some(b);
                            }
                        }
                        continue;
                    }
                    _ => e(false, true, false, false, offs(o)),
                }
            }
        });
    }
}

impl Image {
    /// The map of the whole virtual disk, entries merged exactly as `qemu-img map` merges
    /// them. Reports [`Phase::Map`] progress in guest bytes.
    pub fn map(&self, ctl: &mut Control<'_>) -> Result<Vec<MapEntry>> {
        self.map_range(0, self.size(), ctl)
    }

    /// The map of `[start, start + length)` (clipped to the virtual size).
    pub fn map_range(
        &self,
        start: u64,
        length: u64,
        ctl: &mut Control<'_>,
    ) -> Result<Vec<MapEntry>> {
        let end = start.saturating_add(length).min(self.size());
        let mut out: Vec<MapEntry> = Vec::new();
        let mut pos = start;
        let mut steps = 0u32;
        while pos < end {
            let e = chain_entry(self, pos, end - pos)?;
            pos += e.length;
            match out.last_mut() {
                Some(last) if last.mergeable(&e) => last.length += e.length,
                _ => out.push(e),
            }
            steps += 1;
            if steps.is_multiple_of(4096) {
                ctl.report(Phase::Map, pos - start, Some(end.saturating_sub(start)))?;
            }
        }
        ctl.report(
            Phase::Map,
            end.saturating_sub(start),
            Some(end.saturating_sub(start)),
        )?;
        Ok(out)
    }

    /// Clusters of this image (not its backing files) holding a host cluster: data,
    /// compressed, or zero with a preallocated offset, as `qemu-img check` counts
    /// `allocated-clusters`. Returns the count and a bitmap, one bit per guest cluster,
    /// least significant bit first in each byte.
    pub fn allocation(&self) -> Result<Allocation> {
        let h = &self.header;
        let clusters = h.size.div_ceil(h.cluster_size());
        let bytes = clusters.div_ceil(8);
        if bytes > MAX_ALLOCATION_BITMAP_BYTES {
            return Err(self.err(unsupported(format!(
                "an allocation bitmap of {bytes} bytes (above {MAX_ALLOCATION_BITMAP_BYTES})"
            ))));
        }
        let mut bitmap = vec![0u8; bytes as usize];
        let mut count = 0u64;
        let per_l2 = h.l2_entries();
        for (l1_index, &e) in self.l1.iter().enumerate() {
            let first = l1_index as u64 * per_l2;
            if first >= clusters {
                break;
            }
            let l1_at = h.l1_table_offset + l1_index as u64 * 8;
            let Some(l2) = crate::table::l1_entry_offset(h, e, l1_at).map_err(|e| self.err(e))?
            else {
                continue;
            };
            let t = self.l2_table(l2, l1_index as u64)?;
            for i in 0..per_l2.min(clusters - first) {
                let (entry, bm) = if h.extended_l2() {
                    (t[2 * i as usize], t[2 * i as usize + 1])
                } else {
                    (t[i as usize], 0)
                };
                let at = l2 + i * h.l2_entry_size();
                let s = crate::table::decode(h, entry, bm, 0, at).map_err(|e| self.err(e))?;
                use crate::table::Sub;
                let allocated = match s {
                    Sub::Data(_) | Sub::ZeroAlloc(_) | Sub::Compressed { .. } => true,
                    Sub::UnallocatedAlloc(_) => true,
                    Sub::Zero | Sub::Unallocated => false,
                };
                if allocated {
                    let c = first + i;
                    bitmap[(c / 8) as usize] |= 1 << (c % 8);
                    count += 1;
                }
            }
        }
        Ok(Allocation {
            cluster_size: h.cluster_size(),
            clusters,
            allocated_clusters: count,
            bitmap,
        })
    }
}

/// Which guest clusters an image allocates itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// Bytes per cluster.
    pub cluster_size: u64,
    /// Guest clusters (virtual size / cluster size, rounded up).
    pub clusters: u64,
    /// Clusters with a host cluster (bits set in `bitmap`).
    pub allocated_clusters: u64,
    /// One bit per guest cluster, least significant bit first in each byte.
    pub bitmap: Vec<u8>,
}

/// `entries` printed exactly as `qemu-img map --output=json` prints them.
pub fn map_json(entries: &[MapEntry]) -> String {
    let mut s = String::from("[");
    for (i, e) in entries.iter().enumerate() {
        let _ = write!(
            s,
            "{{ \"start\": {}, \"length\": {}, \"depth\": {}, \"present\": {}, \"zero\": {}, \"data\": {}, \"compressed\": {}",
            e.start, e.length, e.depth, e.present, e.zero, e.data, e.compressed
        );
        if let Some(o) = e.offset {
            let _ = write!(s, ", \"offset\": {o}");
        }
        s.push('}');
        if i + 1 < entries.len() {
            s.push_str(",\n");
        }
    }
    s.push_str("]\n");
    s
}
