//! btrfs on one device: the device ranges of every chunk (the chunk tree, bootstrapped
//! from the superblock's system chunk array) are used, with the first MiB and every
//! superblock copy; the rest of the device is unallocated. Facts from the btrfs
//! documentation's on-disk format pages (btrfs.readthedocs.io, "On-disk format").

use super::{Opened, Walk};
use crate::dev::{label, le16, le32, le64, uuid_be, Dev, Emit};
use crate::error::{corrupt, unsupported, Error};
use crate::FileSystem;

const SB_OFFSET: u64 = 64 << 10;
const SB_SIZE: u64 = 4096;
/// Superblock copies (the primary and its mirrors at 64 MiB and 256 GiB).
const SB_MIRRORS: [u64; 3] = [64 << 10, 64 << 20, 256 << 30];
const MAGIC: &[u8; 8] = b"_BHRfS_M";
const CHUNK_ITEM_KEY: u8 = 228;
const FIRST_CHUNK_TREE_OBJECTID: u64 = 256;
const HEADER: usize = 101;
/// Block group profile bits: anything but DUP (or none = single) spans devices.
const BLOCK_GROUP_DUP: u64 = 1 << 5;
const BLOCK_GROUP_PROFILES: u64 = 0x7f8;
// incompat flags understood for chunk-level allocation.
const INCOMPAT_KNOWN: u64 =
    0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800 | 0x10000;
const SUPER_FLAG_ERROR: u64 = 1 << 2;
const SUPER_FLAG_SEEDING: u64 = 1 << 32;
const SUPER_FLAG_METADUMP: u64 = 1 << 33;
const SUPER_FLAG_CHANGING: u64 = (1 << 34) | (1 << 35) | (1 << 36);
/// Most nodes read from the chunk tree.
const MAX_NODES: usize = 1 << 16;

pub(crate) fn detect(head: &[u8]) -> bool {
    head.len() as u64 >= SB_OFFSET + 0x48
        && &head[SB_OFFSET as usize + 0x40..SB_OFFSET as usize + 0x48] == MAGIC
}

#[derive(Clone, Debug)]
struct Chunk {
    logical: u64,
    length: u64,
    /// (physical offset on this device, length) per stripe.
    stripes: Vec<u64>,
}

struct Btrfs {
    used: Vec<(u64, u64)>,
    total: u64,
}

fn parse_chunk(b: &[u8], logical: u64, devid: u64, at: u64) -> Result<Chunk, Error> {
    if b.len() < 48 {
        return Err(corrupt("btrfs chunk item", at, "truncated"));
    }
    let length = le64(b, 0);
    let ty = le64(b, 24);
    let num = le16(b, 44) as usize;
    if num == 0 || b.len() < 48 + 32 * num || length == 0 {
        return Err(corrupt(
            "btrfs chunk item",
            at,
            format!("{num} stripes, length {length}"),
        ));
    }
    let profile = ty & BLOCK_GROUP_PROFILES;
    if profile != 0 && profile != BLOCK_GROUP_DUP {
        return Err(unsupported(
            "btrfs chunk item",
            at,
            format!("block group profile {profile:#x} (spans devices)"),
        ));
    }
    let mut stripes = Vec::with_capacity(num);
    for i in 0..num {
        let s = &b[48 + 32 * i..];
        if le64(s, 0) != devid {
            return Err(unsupported(
                "btrfs chunk item",
                at,
                "a stripe on another device",
            ));
        }
        stripes.push(le64(s, 8));
    }
    Ok(Chunk {
        logical,
        length,
        stripes,
    })
}

pub(crate) fn open(d: &Dev) -> Result<Opened, Error> {
    const S: &str = "btrfs superblock";
    let sb = d.read(S, SB_OFFSET, SB_SIZE)?;
    if &sb[0x40..0x48] != MAGIC {
        return Err(corrupt(S, SB_OFFSET, "no btrfs magic"));
    }
    let csum_type = le16(&sb, 0xc4);
    if csum_type != 0 {
        return Err(unsupported(
            S,
            SB_OFFSET + 0xc4,
            format!("checksum type {csum_type} (only crc32c is read)"),
        ));
    }
    let csum = |b: &[u8]| crc32c::crc32c(&b[0x20..]);
    if csum(&sb) != le32(&sb, 0) {
        return Err(corrupt(S, SB_OFFSET, "superblock checksum mismatch"));
    }
    let fsid: [u8; 16] = sb[0x20..0x30].try_into().unwrap();
    let flags = le64(&sb, 0x38);
    let chunk_root = le64(&sb, 0x58);
    let log_root = le64(&sb, 0x60);
    let total = le64(&sb, 0x70);
    let num_devices = le64(&sb, 0x88);
    let sectorsize = le32(&sb, 0x90) as u64;
    let nodesize = le32(&sb, 0x94) as u64;
    let sys_size = le32(&sb, 0xa0) as usize;
    let incompat = le64(&sb, 0xbc);
    let chunk_level = sb[0xc7];
    let devid = le64(&sb, 0xc9);
    let dev_total = le64(&sb, 0xc9 + 8);
    let lbl = label(&sb[0x12b..0x12b + 256]);
    let uuid = uuid_be(&fsid);
    // METADATA_UUID: tree blocks carry the metadata UUID instead of the fsid.
    let tree_fsid: [u8; 16] = if incompat & 0x400 != 0 {
        sb[0x23b..0x24b].try_into().unwrap()
    } else {
        fsid
    };
    if incompat & !INCOMPAT_KNOWN != 0 {
        return Err(unsupported(
            S,
            SB_OFFSET + 0xbc,
            format!(
                "incompatible feature flags {:#x}",
                incompat & !INCOMPAT_KNOWN
            ),
        ));
    }
    if num_devices != 1 {
        return Err(unsupported(
            S,
            SB_OFFSET + 0x88,
            format!("{num_devices} devices: only single-device file systems are read"),
        ));
    }
    if !(4096..=65536).contains(&nodesize)
        || !nodesize.is_power_of_two()
        || !(4096..=65536).contains(&sectorsize)
    {
        return Err(corrupt(
            S,
            SB_OFFSET + 0x94,
            format!("node size {nodesize}, sector size {sectorsize}"),
        ));
    }
    if dev_total > d.len || dev_total < SB_OFFSET + SB_SIZE {
        return Err(corrupt(
            S,
            SB_OFFSET + 0xd1,
            format!(
                "the device is {dev_total} bytes, the partition {} bytes: truncated image?",
                d.len
            ),
        ));
    }
    if sys_size > 2048 {
        return Err(corrupt(
            S,
            SB_OFFSET + 0xa0,
            format!("system chunk array of {sys_size} bytes"),
        ));
    }
    // The system chunk array: (key, chunk item) pairs.
    let mut chunks: Vec<Chunk> = Vec::new();
    let arr = &sb[0x32b..0x32b + sys_size];
    let mut p = 0;
    while p < arr.len() {
        if p + 17 > arr.len() || arr[p + 8] != CHUNK_ITEM_KEY {
            return Err(corrupt(
                "btrfs system chunk array",
                SB_OFFSET + 0x32b + p as u64,
                "not a chunk item key",
            ));
        }
        let logical = le64(arr, p + 9);
        let item = &arr[p + 17..];
        if item.len() < 48 {
            return Err(corrupt(
                "btrfs system chunk array",
                SB_OFFSET + 0x32b + p as u64,
                "truncated",
            ));
        }
        let n = le16(item, 44) as usize;
        let c = parse_chunk(
            &item[..(48 + 32 * n).min(item.len())],
            logical,
            devid,
            SB_OFFSET + 0x32b + p as u64,
        )?;
        chunks.push(c);
        p += 17 + 48 + 32 * n;
    }
    // Walk the chunk tree.
    let map = |chunks: &[Chunk], l: u64| -> Option<u64> {
        chunks
            .iter()
            .find(|c| l >= c.logical && l + nodesize <= c.logical + c.length)
            .map(|c| c.stripes[0] + (l - c.logical))
    };
    let mut from_tree: Vec<Chunk> = Vec::new();
    let mut stack = vec![(chunk_root, chunk_level)];
    let mut nodes = 0usize;
    let mut seen = std::collections::HashSet::new();
    while let Some((l, level)) = stack.pop() {
        nodes += 1;
        if !seen.insert(l) {
            return Err(corrupt(
                "btrfs chunk tree",
                0,
                format!("node at logical {l} is reached twice"),
            ));
        }
        if nodes > MAX_NODES {
            return Err(corrupt("btrfs chunk tree", 0, "too many nodes (a loop?)"));
        }
        let Some(phys) = map(&chunks, l) else {
            return Err(corrupt(
                "btrfs chunk tree",
                0,
                format!("node at logical {l} is in no system chunk"),
            ));
        };
        let b = d.read("btrfs chunk tree node", phys, nodesize)?;
        if crc32c::crc32c(&b[0x20..]) != le32(&b, 0) {
            return Err(corrupt("btrfs chunk tree node", phys, "checksum mismatch"));
        }
        if b[0x20..0x30] != tree_fsid || le64(&b, 0x30) != l || b[0x64] != level {
            return Err(corrupt(
                "btrfs chunk tree node",
                phys,
                "wrong fsid, address or level",
            ));
        }
        let n = le32(&b, 0x60) as usize;
        if level == 0 {
            if HEADER + n * 25 > b.len() {
                return Err(corrupt("btrfs chunk tree node", phys, format!("{n} items")));
            }
            for i in 0..n {
                let it = HEADER + i * 25;
                if le64(&b, it) != FIRST_CHUNK_TREE_OBJECTID || b[it + 8] != CHUNK_ITEM_KEY {
                    continue;
                }
                let logical = le64(&b, it + 9);
                let off = le32(&b, it + 17) as usize + HEADER;
                let size = le32(&b, it + 21) as usize;
                let Some(item) = b.get(off..off + size) else {
                    return Err(corrupt(
                        "btrfs chunk tree node",
                        phys,
                        "item data outside the node",
                    ));
                };
                from_tree.push(parse_chunk(item, logical, devid, phys + off as u64)?);
            }
        } else {
            if HEADER + n * 33 > b.len() || n == 0 {
                return Err(corrupt(
                    "btrfs chunk tree node",
                    phys,
                    format!("{n} key pointers"),
                ));
            }
            for i in (0..n).rev() {
                let kp = HEADER + i * 33;
                stack.push((le64(&b, kp + 17), level - 1));
            }
        }
    }
    // The tree is the truth; the bootstrap array must be part of it.
    for c in &chunks {
        if !from_tree
            .iter()
            .any(|t| t.logical == c.logical && t.length == c.length && t.stripes == c.stripes)
        {
            return Err(corrupt(
                "btrfs chunk tree",
                0,
                format!(
                    "system chunk at logical {} is missing from the chunk tree",
                    c.logical
                ),
            ));
        }
    }
    let mut used: Vec<(u64, u64)> = vec![(0, 1 << 20)];
    for m in SB_MIRRORS {
        if m + SB_SIZE <= dev_total {
            used.push((m, SB_SIZE));
        }
    }
    for c in &from_tree {
        for &s in &c.stripes {
            if s.checked_add(c.length).is_none_or(|e| e > dev_total) {
                return Err(corrupt(
                    "btrfs chunk item",
                    0,
                    format!("chunk at logical {} lies past the device end", c.logical),
                ));
            }
            used.push((s, c.length));
        }
    }
    used.sort_unstable();
    let mut o = Opened::new(
        FileSystem::Btrfs,
        lbl,
        uuid,
        Box::new(Btrfs {
            used,
            total: dev_total,
        }),
    );
    if log_root != 0 {
        o.dirty = Some("the tree log needs replay: mounted or not cleanly unmounted".into());
    } else if flags & SUPER_FLAG_ERROR != 0 {
        o.dirty = Some("the superblock's error flag is set".into());
    } else if flags & (SUPER_FLAG_METADUMP | SUPER_FLAG_CHANGING) != 0 {
        o.dirty = Some(format!(
            "superblock flags {flags:#x}: a metadump or an unfinished fsid change"
        ));
    }
    let _ = (total, SUPER_FLAG_SEEDING);
    Ok(o)
}

impl Walk for Btrfs {
    fn walk(&self, _d: &Dev, e: &mut Emit) -> Result<(), Error> {
        for &(s, l) in &self.used {
            e.used(s, l)?;
        }
        e.used(self.total, u64::MAX)
    }
}
