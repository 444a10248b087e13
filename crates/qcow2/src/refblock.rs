//! Stored refcounts (qcow2 spec, "Host cluster management"): the one decoding of a
//! refcount block, used by the read-only check, by block status under metadata
//! preallocation and by the editor's allocator. Entries are `refcount_bits` wide (1 to 64,
//! a power of two), big-endian; entries narrower than a byte are packed least significant
//! first within each byte.

use std::collections::HashMap;

use sparsekit_io::Storage;

use crate::header::Header;
use crate::table::REFT_OFFSET_MASK;

/// One refcount block's bytes, read as entries of `bits` bits.
pub(crate) struct RefBlock<B> {
    bytes: B,
    bits: u64,
}

impl<B: AsRef<[u8]>> RefBlock<B> {
    /// The block `bytes` with entries of `bits` bits (1, 2, 4, 8, 16, 32 or 64).
    pub(crate) fn new(bytes: B, bits: u64) -> Self {
        debug_assert!(bits.is_power_of_two() && bits <= 64, "refcount bits {bits}");
        RefBlock { bytes, bits }
    }

    /// Entry `i` (below the block's cluster size * 8 / bits).
    pub(crate) fn get(&self, i: u64) -> u64 {
        let b = self.bytes.as_ref();
        let i = i as usize;
        match self.bits {
            64 => u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().expect("8")),
            32 => u64::from(u32::from_be_bytes(
                b[i * 4..i * 4 + 4].try_into().expect("4"),
            )),
            16 => u64::from(u16::from_be_bytes(
                b[i * 2..i * 2 + 2].try_into().expect("2"),
            )),
            8 => u64::from(b[i]),
            bits => {
                let bit = i as u64 * bits;
                u64::from((b[(bit / 8) as usize] >> (bit % 8)) & ((1u8 << bits) - 1))
            }
        }
    }
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> RefBlock<B> {
    /// Set entry `i` to `v` (truncated to the entry width; callers check the maximum).
    pub(crate) fn set(&mut self, i: u64, v: u64) {
        let b = self.bytes.as_mut();
        let i = i as usize;
        match self.bits {
            64 => b[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes()),
            32 => b[i * 4..i * 4 + 4].copy_from_slice(&(v as u32).to_be_bytes()),
            16 => b[i * 2..i * 2 + 2].copy_from_slice(&(v as u16).to_be_bytes()),
            8 => b[i] = v as u8,
            bits => {
                let bit = i as u64 * bits;
                let mask = ((1u8 << bits) - 1) << (bit % 8);
                let byte = &mut b[(bit / 8) as usize];
                *byte = (*byte & !mask) | (((v as u8) << (bit % 8)) & mask);
            }
        }
    }
}

/// `entries` big-endian u64 table entries at `off`; `None` when they lie past
/// `file_size` or cannot be read.
pub(crate) fn read_table(
    s: &dyn Storage,
    file_size: u64,
    off: u64,
    entries: u64,
) -> Option<Vec<u64>> {
    let bytes = entries.checked_mul(8)?;
    if off.checked_add(bytes)? > file_size {
        return None;
    }
    let mut raw = vec![0u8; usize::try_from(bytes).ok()?];
    s.read_exact_at(&mut raw, off).ok()?;
    Some(
        raw.chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8")))
            .collect(),
    )
}

/// Stored refcounts read without changing anything, one refcount block in memory at a
/// time.
pub(crate) struct Stored<'a> {
    storage: &'a dyn Storage,
    header: &'a Header,
    file_size: u64,
    table: Vec<u64>,
    block: HashMap<u64, Vec<u8>>,
}

impl<'a> Stored<'a> {
    /// The stored refcounts of the image in `storage` (an unreadable table reads as all
    /// zeros).
    pub(crate) fn new(storage: &'a dyn Storage, header: &'a Header, file_size: u64) -> Self {
        let entries = (u64::from(header.refcount_table_clusters) << header.cluster_bits) / 8;
        let table = read_table(storage, file_size, header.refcount_table_offset, entries)
            .unwrap_or_default();
        Stored::with_table(storage, header, file_size, table)
    }

    /// The same with the refcount table already read.
    pub(crate) fn with_table(
        storage: &'a dyn Storage,
        header: &'a Header,
        file_size: u64,
        table: Vec<u64>,
    ) -> Self {
        Stored {
            storage,
            header,
            file_size,
            table,
            block: HashMap::new(),
        }
    }

    /// The stored refcount of host cluster `c`; `None` when its block cannot be read.
    pub(crate) fn get(&mut self, c: u64) -> Option<u64> {
        let h = self.header;
        let per_block_bits = h.cluster_bits + 3 - h.refcount_order;
        let bi = c >> per_block_bits;
        let Some(&e) = self.table.get(bi as usize) else {
            return Some(0);
        };
        let off = e & REFT_OFFSET_MASK;
        if off == 0 {
            return Some(0);
        }
        let cs = h.cluster_size();
        if off & (cs - 1) != 0 || off.checked_add(cs)? > self.file_size {
            return None;
        }
        if !self.block.contains_key(&off) {
            let mut b = vec![0u8; cs as usize];
            self.storage.read_exact_at(&mut b, off).ok()?;
            self.block.clear();
            self.block.insert(off, b);
        }
        let i = c & ((1 << per_block_bits) - 1);
        Some(RefBlock::new(&self.block[&off][..], u64::from(h.refcount_bits())).get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_width_round_trips() {
        for bits in [1u64, 2, 4, 8, 16, 32, 64] {
            let mut b = RefBlock::new(vec![0u8; 64], bits);
            let n = 64 * 8 / bits;
            let max = if bits == 64 {
                u64::MAX
            } else {
                (1 << bits) - 1
            };
            for i in 0..n {
                b.set(i, (i * 7 + 1) & max);
            }
            for i in 0..n {
                assert_eq!(b.get(i), (i * 7 + 1) & max, "bits {bits} entry {i}");
            }
        }
    }

    #[test]
    fn narrow_entries_pack_least_significant_first() {
        let b = RefBlock::new([0b1110_0100u8], 2);
        assert_eq!((b.get(0), b.get(1), b.get(2), b.get(3)), (0, 1, 2, 3));
        let b = RefBlock::new([0x00, 0x02, 0x00, 0x01], 16);
        assert_eq!((b.get(0), b.get(1)), (2, 1));
    }
}
