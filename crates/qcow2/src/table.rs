//! L1 and L2 table entries (qcow2.txt "Cluster mapping", "Compressed Clusters Descriptor",
//! "Extended L2 Entries").

use crate::error::{corrupt, Result};
use crate::header::{Header, MAX_HOST_OFFSET};

/// Bits 9..55 of an L1 entry: the L2 table's offset.
pub const L1E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Bits 9..55 of a standard L2 entry: the host cluster's offset.
pub const L2E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Bit 63 of L1 and L2 entries: the refcount is exactly one.
pub const OFLAG_COPIED: u64 = 1 << 63;
/// Bit 62 of an L2 entry: the cluster is compressed.
pub const OFLAG_COMPRESSED: u64 = 1 << 62;
/// Bit 0 of a standard L2 entry: the cluster reads as zeros.
pub const OFLAG_ZERO: u64 = 1;
/// Bits 9..63 of a refcount table entry.
pub const REFT_OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;
/// Compressed data is counted in 512-byte sectors.
pub const COMPRESSED_SECTOR: u64 = 512;

/// What one subcluster (a cluster without extended L2) of one layer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sub {
    /// Not allocated: read from the backing file, or zeros.
    Unallocated,
    /// Extended L2: the cluster has a host cluster but this subcluster is not allocated;
    /// the offset is where it would be.
    UnallocatedAlloc(u64),
    /// Guest data at this host offset (in the data file if there is one).
    Data(u64),
    /// Reads as zeros, no host cluster.
    Zero,
    /// Reads as zeros; a host cluster is kept at this offset.
    ZeroAlloc(u64),
    /// The whole cluster is compressed: `len` bytes at `offset`.
    Compressed {
        /// Host byte offset of the compressed stream (not aligned).
        offset: u64,
        /// Bytes to read, up to two clusters.
        len: u64,
    },
}

/// The L2 table offset of an L1 entry (`None` when unallocated), checked for alignment.
pub fn l1_entry_offset(h: &Header, entry: u64, entry_at: u64) -> Result<Option<u64>> {
    let off = entry & L1E_OFFSET_MASK;
    if off == 0 {
        return Ok(None);
    }
    if off & (h.cluster_size() - 1) != 0 {
        return Err(corrupt(
            "L1 entry",
            entry_at,
            format!("L2 table offset {off:#x} is not cluster aligned"),
        ));
    }
    Ok(Some(off))
}

/// Decode subcluster `sc` of an L2 entry (`bitmap` is 0 without extended L2), as qemu's
/// `qcow2_get_subcluster_type` does; `entry_at` names the entry in errors.
pub fn decode(h: &Header, entry: u64, bitmap: u64, sc: u32, entry_at: u64) -> Result<Sub> {
    let ext = h.extended_l2();
    if entry & OFLAG_COMPRESSED != 0 {
        if h.has_data_file() {
            return Err(corrupt(
                "L2 entry",
                entry_at,
                "compressed cluster in an image with an external data file",
            ));
        }
        if ext && bitmap != 0 {
            return Err(corrupt(
                "L2 entry",
                entry_at,
                format!("compressed cluster with subcluster bitmap {bitmap:#018x}"),
            ));
        }
        let x = 62 - (h.cluster_bits - 8);
        let offset = entry & ((1u64 << x) - 1);
        let sectors = ((entry >> x) & ((1u64 << (h.cluster_bits - 8)) - 1)) + 1;
        let len = sectors * COMPRESSED_SECTOR - (offset & (COMPRESSED_SECTOR - 1));
        if offset == 0 || offset >= MAX_HOST_OFFSET {
            return Err(corrupt(
                "L2 entry",
                entry_at,
                format!("compressed cluster at host offset {offset:#x}"),
            ));
        }
        return Ok(Sub::Compressed { offset, len });
    }
    let host = entry & L2E_OFFSET_MASK;
    let sub_off = u64::from(sc) * h.subcluster_size();
    let check_aligned = |host: u64| -> Result<()> {
        if host & (h.cluster_size() - 1) != 0 {
            return Err(corrupt(
                "L2 entry",
                entry_at,
                format!("host cluster offset {host:#x} is not cluster aligned"),
            ));
        }
        Ok(())
    };
    if !ext {
        if entry & OFLAG_ZERO != 0 {
            if host != 0 {
                check_aligned(host)?;
                return Ok(Sub::ZeroAlloc(host));
            }
            return Ok(Sub::Zero);
        }
        if host == 0 && !(h.has_data_file() && entry & OFLAG_COPIED != 0) {
            return Ok(Sub::Unallocated);
        }
        check_aligned(host)?;
        return Ok(Sub::Data(host));
    }
    let alloc = bitmap & 0xffff_ffff;
    let zero = bitmap >> 32;
    let normal = host != 0 || (h.has_data_file() && entry & OFLAG_COPIED != 0);
    if normal {
        check_aligned(host)?;
        if alloc & zero != 0 {
            return Err(corrupt(
                "L2 entry",
                entry_at,
                format!("subcluster bitmap {bitmap:#018x} marks subclusters allocated and zero"),
            ));
        }
        let here = host + sub_off;
        Ok(if zero & (1 << sc) != 0 {
            Sub::ZeroAlloc(here)
        } else if alloc & (1 << sc) != 0 {
            Sub::Data(here)
        } else {
            Sub::UnallocatedAlloc(here)
        })
    } else {
        if alloc != 0 {
            return Err(corrupt(
                "L2 entry",
                entry_at,
                format!("unallocated cluster with allocated subclusters, bitmap {bitmap:#018x}"),
            ));
        }
        Ok(if zero & (1 << sc) != 0 {
            Sub::Zero
        } else {
            Sub::Unallocated
        })
    }
}
