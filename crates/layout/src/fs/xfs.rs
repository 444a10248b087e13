//! XFS: the free extents of each allocation group from its by-block-number free-space
//! B+tree (bnobt), checked against the AGF's free-block count; only with a log proven
//! clean (its last record before the head is an unmount record). Facts from the XFS
//! Algorithms & Data Structures book (xfs-documentation, "Allocation Groups", "Journaling
//! Log").

use super::{Opened, Walk};
use crate::dev::{be16, be32, be64, label, le32, uuid_be, Dev, Emit};
use crate::error::{corrupt, unsupported, Error};
use crate::FileSystem;

const SB_CRC: usize = 0xe0;
const AGF_CRC: usize = 0xd8;
const BTREE_V5_CRC: usize = 52;
const NULLAGBLOCK: u32 = 0xffff_ffff;
// sb_features_incompat (v5)
const INCOMPAT_FTYPE: u32 = 0x1;
const INCOMPAT_SPINODES: u32 = 0x2;
const INCOMPAT_META_UUID: u32 = 0x4;
const INCOMPAT_BIGTIME: u32 = 0x8;
const INCOMPAT_NEEDSREPAIR: u32 = 0x10;
const INCOMPAT_NREXT64: u32 = 0x20;
const INCOMPAT_KNOWN: u32 = INCOMPAT_FTYPE
    | INCOMPAT_SPINODES
    | INCOMPAT_META_UUID
    | INCOMPAT_BIGTIME
    | INCOMPAT_NEEDSREPAIR
    | INCOMPAT_NREXT64;
// sb_features_ro_compat (v5): finobt, rmapbt, reflink, inobtcount
const RO_KNOWN: u32 = 0x1 | 0x2 | 0x4 | 0x8;
const LOG_MAGIC: u32 = 0xfeed_babe;
const XLOG_UNMOUNT_TRANS: u8 = 0x20;
const BB: u64 = 512;
/// The most basic blocks a log record with its headers can take (256 KiB + headers).
const MAX_RECORD_BBS: u64 = (256 << 10) / BB + 16;

pub(crate) fn detect(head: &[u8]) -> bool {
    head.len() >= 512 && &head[..4] == b"XFSB"
}

struct Xfs {
    bs: u64,
    agblocks: u64,
    agcount: u64,
    dblocks: u64,
    sectsize: u64,
    v5: bool,
}

fn crc_ok(b: &[u8], at: usize) -> bool {
    let mut c = b.to_vec();
    c[at..at + 4].fill(0);
    crc32c::crc32c(&c) == le32(b, at)
}

pub(crate) fn open(d: &Dev) -> Result<Opened, Error> {
    const S: &str = "XFS superblock";
    let sb = d.read(S, 0, 512)?;
    if !detect(&sb) {
        return Err(corrupt(S, 0, "no XFSB magic"));
    }
    let bs = be32(&sb, 0x4) as u64;
    let dblocks = be64(&sb, 0x8);
    let logstart = be64(&sb, 0x30);
    let agblocks = be32(&sb, 0x54) as u64;
    let agcount = be32(&sb, 0x58) as u64;
    let logblocks = be32(&sb, 0x60) as u64;
    let version = be16(&sb, 0x64);
    let sectsize = be16(&sb, 0x66) as u64;
    let blocklog = sb[0x78] as u32;
    let agblklog = sb[0x7c] as u32;
    let inprogress = sb[0x7e];
    let lbl = label(&sb[0x6c..0x78]);
    let uuid = uuid_be(&sb[0x20..0x30]);
    if !(512..=65536).contains(&bs) || !bs.is_power_of_two() || 1u64 << blocklog != bs {
        return Err(corrupt(S, 4, format!("block size {bs} (log {blocklog})")));
    }
    if !(512..=32768).contains(&sectsize) || !sectsize.is_power_of_two() || sectsize > bs {
        return Err(corrupt(S, 0x66, format!("sector size {sectsize}")));
    }
    if agblocks < 16
        || agcount == 0
        || agblklog > 31
        || agblocks > 1u64 << agblklog
        || agblocks <= 1u64 << agblklog >> 1
    {
        return Err(corrupt(
            S,
            0x54,
            format!("{agcount} AGs of {agblocks} blocks (log {agblklog})"),
        ));
    }
    if dblocks > agcount * agblocks || dblocks <= (agcount - 1) * agblocks {
        return Err(corrupt(
            S,
            0x8,
            format!("{dblocks} blocks in {agcount} AGs of {agblocks}"),
        ));
    }
    if dblocks.checked_mul(bs).is_none_or(|n| n > d.len) {
        return Err(corrupt(S, 0x8, format!("{dblocks} blocks of {bs} bytes do not fit the partition ({} bytes): truncated image?", d.len)));
    }
    if inprogress != 0 {
        return Err(corrupt(S, 0x7e, "mkfs did not finish (sb_inprogress)"));
    }
    let v5 = match version & 0xf {
        5 => true,
        4 => false,
        v => return Err(unsupported(S, 0x64, format!("version {v}"))),
    };
    let mut why_dirty = None;
    if v5 {
        let full = d.read(S, 0, sectsize)?;
        if !crc_ok(&full, SB_CRC) {
            return Err(corrupt(S, SB_CRC as u64, "superblock CRC mismatch"));
        }
        let incompat = be32(&sb, 0xd8);
        let ro = be32(&sb, 0xd4);
        let log_incompat = be32(&sb, 0xdc);
        if incompat & !INCOMPAT_KNOWN != 0 {
            return Err(unsupported(
                S,
                0xd8,
                format!(
                    "incompatible feature flags {:#x}",
                    incompat & !INCOMPAT_KNOWN
                ),
            ));
        }
        if ro & !RO_KNOWN != 0 {
            return Err(unsupported(
                S,
                0xd4,
                format!("read-only-compatible feature flags {:#x}", ro & !RO_KNOWN),
            ));
        }
        if incompat & INCOMPAT_NEEDSREPAIR != 0 {
            why_dirty =
                Some("the file system is marked as needing repair (needsrepair)".to_string());
        } else if log_incompat != 0 {
            why_dirty = Some(format!("log-incompatible features {log_incompat:#x} are set: mounted or not cleanly unmounted"));
        }
    }
    let x = Xfs {
        bs,
        agblocks,
        agcount,
        dblocks,
        sectsize,
        v5,
    };
    if why_dirty.is_none() {
        why_dirty = if logstart == 0 {
            Some("the log is on an external device: it cannot be proven clean".into())
        } else {
            let agno = logstart >> agblklog;
            let agbno = logstart & ((1u64 << agblklog) - 1);
            let off = (agno * agblocks + agbno) * bs;
            let len = logblocks * bs;
            if agno >= agcount || off.saturating_add(len) > dblocks * bs || len < 64 * BB {
                return Err(corrupt(
                    S,
                    0x30,
                    format!(
                        "log at block {logstart} ({logblocks} blocks) is outside the file system"
                    ),
                ));
            }
            log_unclean(d, off, len / BB)?
        };
    }
    let mut o = Opened::new(FileSystem::Xfs, lbl, uuid, Box::new(x));
    o.dirty = why_dirty;
    Ok(o)
}

/// Why the internal log at `off` (`n` basic blocks) is not provably clean, if it is not.
/// Every basic block of the log starts with its cycle number; the head is where the
/// cycle drops; the last record before it must be a single-op unmount record ending
/// exactly at the head.
fn log_unclean(d: &Dev, off: u64, n: u64) -> Result<Option<String>, Error> {
    const S: &str = "XFS log";
    // A record header block keeps its cycle after the magic (the kernel's xlog_get_cycle).
    let cycle = |k: u64| -> Result<u32, Error> {
        let b = d.read(S, off + (k % n) * BB, 8)?;
        Ok(if be32(&b, 0) == LOG_MAGIC {
            be32(&b, 4)
        } else {
            be32(&b, 0)
        })
    };
    let c0 = cycle(0)?;
    let clast = cycle(n - 1)?;
    if c0 == 0 {
        return Ok(Some(
            "the log's first block has cycle 0: never written".into(),
        ));
    }
    // head = first block whose cycle is not c0 (n when the whole log has c0).
    let head = if clast == c0 {
        n
    } else {
        if clast.wrapping_add(1) != c0 && clast != 0 {
            return Ok(Some(format!(
                "log cycles {c0} and {clast} at its ends: a torn or unknown log"
            )));
        }
        let (mut lo, mut hi) = (0u64, n - 1); // cycle(lo) == c0, cycle(hi) != c0
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if cycle(mid)? == c0 {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    };
    // The last record header before the head.
    let mut k = head;
    let mut found = None;
    for _ in 0..MAX_RECORD_BBS.min(n) {
        k = (k + n - 1) % n;
        let b = d.read(S, off + k * BB, BB)?;
        let first = be32(&b, 0);
        if first == LOG_MAGIC {
            found = Some((k, b));
            break;
        }
        // Data blocks between the header and the head are stamped with the current cycle
        // (a record that wraps the log end from the previous cycle is not proven clean).
        if first != c0 {
            return Ok(Some(format!(
                "log block {k} has cycle {first}, expected {c0}: a torn write"
            )));
        }
    }
    let Some((rh, h)) = found else {
        return Ok(Some("no log record header before the head".into()));
    };
    let version = be32(&h, 8);
    let len = be32(&h, 12) as u64;
    let num_logops = be32(&h, 40);
    let size = be32(&h, 320) as u64;
    if be32(&h, 4) != c0 {
        return Ok(Some("the last log record has another cycle".into()));
    }
    let hblks = if version & 2 != 0 && size > 32768 {
        size.div_ceil(32768)
    } else {
        1
    };
    let data = (rh + hblks) % n;
    if (rh + hblks + len.div_ceil(BB)) % n != head % n {
        return Ok(Some(
            "the last log record does not end at the head: the log needs replay".into(),
        ));
    }
    if num_logops != 1 {
        return Ok(Some(
            "the last log record is not an unmount record: the log needs replay".into(),
        ));
    }
    let op = d.read(S, off + data * BB, 16)?;
    if op[9] & XLOG_UNMOUNT_TRANS == 0 {
        return Ok(Some(
            "the last log record is not an unmount record: the log needs replay".into(),
        ));
    }
    Ok(None)
}

impl Walk for Xfs {
    fn walk(&self, d: &Dev, e: &mut Emit) -> Result<(), Error> {
        let hdr: usize = if self.v5 { 56 } else { 16 };
        let magic: &[u8; 4] = if self.v5 { b"AB3B" } else { b"ABTB" };
        let maxrecs = (self.bs as usize - hdr) / 12;
        for ag in 0..self.agcount {
            let ag_off = ag * self.agblocks * self.bs;
            let len = self.agblocks.min(self.dblocks - ag * self.agblocks);
            let agf = d.read("XFS AGF", ag_off + self.sectsize, self.sectsize)?;
            let at = ag_off + self.sectsize;
            if &agf[..4] != b"XAGF" || be32(&agf, 8) as u64 != ag || be32(&agf, 0xc) as u64 != len {
                return Err(corrupt(
                    "XFS AGF",
                    at,
                    format!("AG {ag}: bad magic, number or length"),
                ));
            }
            if self.v5 && !crc_ok(&agf, AGF_CRC) {
                return Err(corrupt("XFS AGF", at, format!("AG {ag}: CRC mismatch")));
            }
            let root = be32(&agf, 0x10) as u64;
            let levels = be32(&agf, 0x1c);
            let freeblks = be32(&agf, 0x34) as u64;
            if root == 0 || root >= len || levels == 0 || levels > 8 {
                return Err(corrupt(
                    "XFS AGF",
                    at,
                    format!("AG {ag}: bnobt root {root}, {levels} levels"),
                ));
            }
            // Depth-first, pointers in key order: leaves come in block order.
            let mut stack: Vec<(u64, u32)> = vec![(root, levels - 1)];
            let mut visited = 0u64;
            let mut cursor = 0u64; // AG block up to which runs were emitted
            let mut total_free = 0u64;
            while let Some((blk, level)) = stack.pop() {
                visited += 1;
                if visited > len || blk >= len {
                    return Err(corrupt(
                        "XFS bnobt",
                        ag_off,
                        format!("AG {ag}: the tree loops or points outside the AG"),
                    ));
                }
                let boff = ag_off + blk * self.bs;
                let b = d.read("XFS bnobt block", boff, self.bs)?;
                if &b[..4] != magic || be16(&b, 4) as u32 != level {
                    return Err(corrupt(
                        "XFS bnobt block",
                        boff,
                        format!("AG {ag} block {blk}: bad magic or level"),
                    ));
                }
                // v5: CRC, and bb_blkno is the block's own address in 512-byte units.
                if self.v5 && (!crc_ok(&b, BTREE_V5_CRC) || be64(&b, 16) != boff / BB) {
                    return Err(corrupt(
                        "XFS bnobt block",
                        boff,
                        format!("AG {ag} block {blk}: CRC or self-address mismatch"),
                    ));
                }
                let nrecs = be16(&b, 6) as usize;
                // Only a root leaf may be empty (an AG without free space): every other
                // leaf visit must move the cursor, so a DAG of pointers cannot make us
                // read the same leaves over and over.
                if nrecs > maxrecs || (nrecs == 0 && (level > 0 || blk != root)) {
                    return Err(corrupt(
                        "XFS bnobt block",
                        boff,
                        format!("{nrecs} records (at most {maxrecs})"),
                    ));
                }
                if level == 0 {
                    for i in 0..nrecs {
                        let s = be32(&b, hdr + 8 * i) as u64;
                        let c = be32(&b, hdr + 8 * i + 4) as u64;
                        if c == 0 || s < cursor || s + c > len {
                            return Err(corrupt(
                                "XFS bnobt record",
                                boff,
                                format!("AG {ag}: free extent {s}+{c} is out of order or outside the AG ({len} blocks)"),
                            ));
                        }
                        e.used(ag_off + cursor * self.bs, (s - cursor) * self.bs)?;
                        cursor = s + c;
                        total_free += c;
                    }
                } else {
                    let ptrs = hdr + maxrecs * 8;
                    for i in (0..nrecs).rev() {
                        let p = be32(&b, ptrs + 4 * i);
                        if p == NULLAGBLOCK {
                            return Err(corrupt("XFS bnobt block", boff, "null child pointer"));
                        }
                        stack.push((p as u64, level - 1));
                    }
                }
            }
            if total_free != freeblks {
                return Err(corrupt("XFS AGF", at, format!("AG {ag}: the bnobt holds {total_free} free blocks, the AGF says {freeblks}")));
            }
            e.used(ag_off + cursor * self.bs, (len - cursor) * self.bs)?;
            e.progress(ag_off + len * self.bs)?;
        }
        e.used(self.dblocks * self.bs, u64::MAX)
    }
}
