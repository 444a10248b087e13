//! exFAT: the allocation bitmap named by the root directory's bitmap entry (Microsoft's
//! exFAT file system specification, sections 3 (boot region), 4 (FAT) and 7.1).

use super::{Opened, Walk};
use crate::dev::{bitmap_runs, count_bits, le16, le32, le64, Dev, Emit};
use crate::error::{corrupt, unsupported, Error};
use crate::FileSystem;

const BITMAP_ENTRY: u8 = 0x81;
const LABEL_ENTRY: u8 = 0x83;
/// Bitmap bytes read at a time.
const CHUNK: u64 = 1 << 20;

pub(crate) fn detect(s: &[u8]) -> bool {
    s.len() >= 512 && &s[3..11] == b"EXFAT   "
}

struct Exfat {
    sector: u64,
    heap: u64,
    cluster: u64,
    clusters: u64,
    bitmap: Vec<(u64, u64)>,
}

pub(crate) fn open(d: &Dev) -> Result<Opened, Error> {
    const S: &str = "exFAT boot sector";
    let b = d.read(S, 0, 512)?;
    if !detect(&b) || b[510..512] != [0x55, 0xaa] {
        return Err(corrupt(S, 0, "no exFAT signature"));
    }
    if b[11..64].iter().any(|&x| x != 0) {
        return Err(corrupt(S, 11, "MustBeZero bytes are not zero"));
    }
    let bps_shift = b[0x6c] as u32;
    let spc_shift = b[0x6d] as u32;
    if !(9..=12).contains(&bps_shift) || bps_shift + spc_shift > 25 {
        return Err(corrupt(
            S,
            0x6c,
            format!("BytesPerSectorShift {bps_shift}, SectorsPerClusterShift {spc_shift}"),
        ));
    }
    let sector = 1u64 << bps_shift;
    let cluster = sector << spc_shift;
    let volume_len = le64(&b, 0x48);
    let fat_off = le32(&b, 0x50) as u64;
    let fat_len = le32(&b, 0x54) as u64;
    let heap_off = le32(&b, 0x58) as u64;
    let clusters = le32(&b, 0x5c) as u64;
    let root = le32(&b, 0x60) as u64;
    let serial = le32(&b, 0x64);
    let flags = le16(&b, 0x6a);
    let nfats = b[0x6e];
    let vol_bytes = volume_len.saturating_mul(sector);
    if vol_bytes > d.len {
        return Err(corrupt(S, 0x48, format!("VolumeLength {volume_len} sectors does not fit the partition ({} bytes): truncated image?", d.len)));
    }
    if fat_off < 24
        || fat_len * sector < (clusters + 2) * 4
        || heap_off < fat_off + fat_len * nfats as u64
    {
        return Err(corrupt(
            S,
            0x50,
            format!("FAT at sector {fat_off} ({fat_len} sectors), heap at {heap_off}"),
        ));
    }
    if heap_off * sector + clusters * cluster > vol_bytes || root < 2 || root >= clusters + 2 {
        return Err(corrupt(
            S,
            0x58,
            format!("{clusters} clusters from sector {heap_off}, root directory at cluster {root}"),
        ));
    }
    // The boot checksum (sector 11) over sectors 0..11, skipping VolumeFlags and
    // PercentInUse (spec 3.4).
    let region = d.read("exFAT boot region", 0, 12 * sector)?;
    let mut sum: u32 = 0;
    for (i, &x) in region[..11 * sector as usize].iter().enumerate() {
        if i == 106 || i == 107 || i == 112 {
            continue;
        }
        sum = sum.rotate_right(1).wrapping_add(x as u32);
    }
    if le32(&region, 11 * sector as usize) != sum {
        return Err(corrupt(
            "exFAT boot checksum",
            11 * sector,
            format!(
                "stored {:#010x}, computed {sum:#010x}",
                le32(&region, 11 * sector as usize)
            ),
        ));
    }
    let uuid = Some(format!("{:04X}-{:04X}", serial >> 16, serial & 0xffff));
    if nfats != 1 {
        return Err(unsupported(S, 0x6e, format!("{nfats} FATs (TexFAT)")));
    }
    let heap = heap_off * sector;
    let fat = fat_off * sector;
    let next = |c: u64| -> Result<u64, Error> {
        let v = d.read("exFAT FAT", fat + c * 4, 4)?;
        Ok(le32(&v, 0) as u64)
    };
    // Follow a cluster chain (bounded by the cluster count: a loop is corruption).
    let chain = |start: u64, max: u64| -> Result<Vec<u64>, Error> {
        let mut out = Vec::new();
        let mut c = start;
        loop {
            if c < 2 || c >= clusters + 2 || out.len() as u64 > max {
                return Err(corrupt(
                    "exFAT FAT",
                    fat + c.min(clusters + 2) * 4,
                    format!("cluster chain from {start} breaks or loops at {c}"),
                ));
            }
            out.push(c);
            let n = next(c)?;
            if n == 0xffff_ffff {
                return Ok(out);
            }
            c = n;
        }
    };
    let mut bitmap_entry = None;
    let mut label = None;
    'dir: for c in chain(root, 4096)? {
        let data = d.read("exFAT root directory", heap + (c - 2) * cluster, cluster)?;
        for ent in data.chunks_exact(32) {
            match ent[0] {
                0 => break 'dir,
                BITMAP_ENTRY => {
                    if ent[1] & 1 != 0 {
                        continue;
                    }
                    if bitmap_entry.is_some() {
                        return Err(corrupt(
                            "exFAT root directory",
                            heap + (c - 2) * cluster,
                            "two allocation bitmaps",
                        ));
                    }
                    bitmap_entry = Some((le32(ent, 20) as u64, le64(ent, 24)));
                }
                LABEL_ENTRY => {
                    let n = (ent[1] as usize).min(11);
                    label = crate::dev::label16(&ent[2..2 + 2 * n]);
                }
                _ => {}
            }
        }
    }
    let Some((first, len)) = bitmap_entry else {
        return Err(corrupt(
            "exFAT root directory",
            heap + (root - 2) * cluster,
            "no allocation bitmap entry",
        ));
    };
    if len < clusters.div_ceil(8) || len > clusters.div_ceil(8) + cluster {
        return Err(corrupt(
            "exFAT allocation bitmap",
            heap,
            format!("DataLength {len} for {clusters} clusters"),
        ));
    }
    let need = len.div_ceil(cluster);
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for c in chain(first, need)?.into_iter().take(need as usize) {
        let off = heap + (c - 2) * cluster;
        match runs.last_mut() {
            Some((s, l)) if *s + *l == off => *l += cluster,
            _ => runs.push((off, cluster)),
        }
    }
    let ex = Exfat {
        sector,
        heap,
        cluster,
        clusters,
        bitmap: runs,
    };
    let mut o = Opened::new(FileSystem::Exfat, label, uuid, Box::new(ex));
    if flags & 0x2 != 0 {
        o.dirty = Some("VolumeDirty is set: not cleanly unmounted".into());
    } else if flags & 0x4 != 0 {
        o.dirty = Some("MediaFailure is set".into());
    }
    Ok(o)
}

impl Walk for Exfat {
    fn walk(&self, d: &Dev, e: &mut Emit) -> Result<(), Error> {
        e.used(0, self.heap)?;
        let mut bit = 0u64;
        let mut first_byte_checked = false;
        for &(off, len) in &self.bitmap {
            let mut o = 0;
            while o < len && bit < self.clusters {
                let n = (len - o).min(CHUNK).min((self.clusters - bit).div_ceil(8));
                let bytes = d.read("exFAT allocation bitmap", off + o, n)?;
                if !first_byte_checked {
                    // The bitmap's own first cluster must be marked used.
                    first_byte_checked = true;
                    if count_bits(&bytes, 1, true) == 0 && off == self.heap {
                        return Err(corrupt(
                            "exFAT allocation bitmap",
                            off,
                            "the bitmap's own cluster is marked free",
                        ));
                    }
                }
                let nbits = (n * 8).min(self.clusters - bit);
                bitmap_runs(
                    &bytes,
                    nbits,
                    true,
                    self.heap + bit * self.cluster,
                    self.cluster,
                    e,
                )?;
                bit += nbits;
                o += n;
                e.progress(self.heap + bit * self.cluster)?;
            }
        }
        let _ = self.sector;
        e.used(self.heap + self.clusters * self.cluster, u64::MAX)
    }
}
