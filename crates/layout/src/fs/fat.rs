//! FAT12/16/32: a cluster is free when its entry is 0 in every copy of the FAT (Microsoft's
//! FAT specification, "FAT Type Determination" and "FAT Data Structure").

use super::{Opened, Walk};
use crate::dev::{le16, le32, Dev, Emit};
use crate::error::{corrupt, Error};
use crate::FileSystem;

/// FAT bytes read at a time.
const CHUNK: u64 = 1 << 20;

/// A plausible BIOS parameter block with a FAT's shape at the start of `s`.
pub(crate) fn detect(s: &[u8]) -> bool {
    if s.len() < 512 || s[510..512] != [0x55, 0xaa] || !(s[0] == 0xeb || s[0] == 0xe9) {
        return false;
    }
    let bps = le16(s, 0x0b);
    let spc = s[0x0d];
    let reserved = le16(s, 0x0e);
    let nfats = s[0x10];
    let media = s[0x15];
    let fat16 = le16(s, 0x16);
    let fat32 = le32(s, 0x24);
    (512..=4096).contains(&bps)
        && bps.is_power_of_two()
        && spc != 0
        && spc.is_power_of_two()
        && reserved != 0
        && (1..=4).contains(&nfats)
        && (media == 0xf0 || media >= 0xf8)
        && (fat16 != 0 || fat32 != 0)
        && &s[3..11] != b"NTFS    "
        && &s[3..11] != b"EXFAT   "
}

#[derive(Clone, Copy, PartialEq)]
enum Bits {
    B12,
    B16,
    B32,
}

struct Fat {
    bps: u64,
    spc: u64,
    fat_start: u64,
    fat_bytes: u64,
    nfats: u64,
    data_start: u64,
    clusters: u64,
    total_bytes: u64,
    bits: Bits,
}

pub(crate) fn open(d: &Dev) -> Result<Opened, Error> {
    const S: &str = "FAT boot sector";
    let s = d.read(S, 0, 512)?;
    if !detect(&s) {
        return Err(corrupt(S, 0, "not a FAT boot sector"));
    }
    let bps = le16(&s, 0x0b) as u64;
    let spc = s[0x0d] as u64;
    let reserved = le16(&s, 0x0e) as u64;
    let nfats = s[0x10] as u64;
    let root_entries = le16(&s, 0x11) as u64;
    let total = match le16(&s, 0x13) {
        0 => le32(&s, 0x20) as u64,
        n => n as u64,
    };
    let fat_sectors = match le16(&s, 0x16) {
        0 => le32(&s, 0x24) as u64,
        n => n as u64,
    };
    let root_sectors = (root_entries * 32).div_ceil(bps);
    let data_start = reserved + nfats * fat_sectors + root_sectors;
    if total * bps > d.len {
        return Err(corrupt(S, 0, format!("{total} sectors of {bps} bytes do not fit the partition ({} bytes): truncated image?", d.len)));
    }
    if data_start >= total {
        return Err(corrupt(
            S,
            0,
            format!("the data area starts at sector {data_start}, past the {total} sectors"),
        ));
    }
    let clusters = (total - data_start) / spc;
    let bits = if clusters < 4085 {
        Bits::B12
    } else if clusters < 65525 {
        Bits::B16
    } else {
        Bits::B32
    };
    if bits == Bits::B32 && (root_entries != 0 || le16(&s, 0x16) != 0) {
        return Err(corrupt(
            S,
            0,
            "a FAT32 volume with a FAT16 root directory or FAT size",
        ));
    }
    let fat_bytes = fat_sectors * bps;
    let entry_bits = match bits {
        Bits::B12 => 12,
        Bits::B16 => 16,
        Bits::B32 => 32,
    };
    if fat_bytes * 8 / entry_bits < clusters + 2 {
        return Err(corrupt(
            S,
            0,
            format!(
                "a FAT of {fat_bytes} bytes cannot hold {} entries",
                clusters + 2
            ),
        ));
    }
    let (label, serial, dirty_byte) = if bits == Bits::B32 {
        (&s[0x47..0x52], le32(&s, 0x43), s[0x41])
    } else {
        (&s[0x2b..0x36], le32(&s, 0x27), s[0x25])
    };
    let ext_sig = if bits == Bits::B32 { s[0x42] } else { s[0x26] };
    let (label, uuid) = if ext_sig == 0x29 || ext_sig == 0x28 {
        let l = crate::dev::label(label).filter(|l| l != "NO NAME");
        (
            l,
            Some(format!("{:04X}-{:04X}", serial >> 16, serial & 0xffff)),
        )
    } else {
        (None, None)
    };
    let fat = Fat {
        bps,
        spc,
        fat_start: reserved * bps,
        fat_bytes,
        nfats,
        data_start: data_start * bps,
        clusters,
        total_bytes: total * bps,
        bits,
    };
    // Entry 1 of the FAT: the clean-shutdown and no-error bits (FAT16, FAT32); the boot
    // sector's reserved byte is Linux's and Windows' "dirty" mark.
    let head = d.read("FAT", fat.fat_start, 8)?;
    if head[0] != s[0x15] {
        return Err(corrupt(
            "FAT",
            fat.fat_start,
            format!(
                "FAT[0] {:#04x} does not match the media byte {:#04x}",
                head[0], s[0x15]
            ),
        ));
    }
    let mut why_dirty = None;
    match bits {
        Bits::B16 => {
            let e1 = le16(&head, 2);
            if e1 & 0x8000 == 0 {
                why_dirty = Some(
                    "the FAT's clean-shutdown bit is clear: not cleanly unmounted".to_string(),
                );
            } else if e1 & 0x4000 == 0 {
                why_dirty = Some("the FAT's hard-error bit is set".into());
            }
        }
        Bits::B32 => {
            let e1 = le32(&head, 4);
            if e1 & 0x0800_0000 == 0 {
                why_dirty =
                    Some("the FAT's clean-shutdown bit is clear: not cleanly unmounted".into());
            } else if e1 & 0x0400_0000 == 0 {
                why_dirty = Some("the FAT's hard-error bit is set".into());
            }
        }
        Bits::B12 => {}
    }
    if why_dirty.is_none() && dirty_byte & 1 != 0 {
        why_dirty = Some("the boot sector's dirty flag is set: not cleanly unmounted".into());
    }
    let mut o = Opened::new(FileSystem::Vfat, label, uuid, Box::new(fat));
    o.dirty = why_dirty;
    Ok(o)
}

impl Fat {
    /// Whether FAT entry `i` of `fat` (bytes from the start of the FAT) is free.
    fn entry(&self, fat: &[u8], base: u64, i: u64) -> u32 {
        match self.bits {
            Bits::B32 => le32(fat, (i * 4 - base) as usize) & 0x0fff_ffff,
            Bits::B16 => le16(fat, (i * 2 - base) as usize) as u32,
            Bits::B12 => {
                let o = (i * 3 / 2 - base) as usize;
                let v = le16(fat, o) as u32;
                if i.is_multiple_of(2) {
                    v & 0xfff
                } else {
                    v >> 4
                }
            }
        }
    }
}

impl Walk for Fat {
    fn walk(&self, d: &Dev, e: &mut Emit) -> Result<(), Error> {
        // Boot region, FATs and the FAT12/16 root directory.
        e.used(0, self.data_start)?;
        let cluster = self.bps * self.spc;
        let entries = self.clusters + 2;
        let entry_bytes = |i: u64| match self.bits {
            Bits::B32 => i * 4,
            Bits::B16 => i * 2,
            Bits::B12 => i * 3 / 2,
        };
        // Walk the FAT in chunks of whole entries; a cluster is free only when it is 0 in
        // every copy (copies that disagree are for the checker to settle, not us).
        let per_chunk = (CHUNK * 8 / 32).max(2) & !1; // even, so FAT12 pairs stay whole
        let mut first = 2u64;
        let mut run_start: Option<u64> = None;
        while first < entries {
            let last = (first + per_chunk).min(entries);
            let base = entry_bytes(first);
            let len = entry_bytes(last) + 2 - base;
            let len = len.min(self.fat_bytes - base);
            let mut copies = Vec::with_capacity(self.nfats as usize);
            for c in 0..self.nfats {
                let mut b = vec![0u8; len as usize + 2];
                d.read_into(
                    "FAT",
                    self.fat_start + c * self.fat_bytes + base,
                    &mut b[..len as usize],
                )?;
                copies.push(b);
            }
            for i in first..last {
                let free = copies.iter().all(|f| self.entry(f, base, i) == 0);
                match (free, run_start) {
                    (false, None) => run_start = Some(i),
                    (true, Some(s)) => {
                        e.used(self.data_start + (s - 2) * cluster, (i - s) * cluster)?;
                        run_start = None;
                    }
                    _ => {}
                }
            }
            first = last;
            e.progress(self.data_start + (first - 2) * cluster)?;
        }
        if let Some(s) = run_start {
            e.used(self.data_start + (s - 2) * cluster, (entries - s) * cluster)?;
        }
        // The sectors after the last whole cluster, and anything past the volume.
        e.used(self.data_start + self.clusters * cluster, u64::MAX)?;
        let _ = self.total_bytes;
        Ok(())
    }
}
