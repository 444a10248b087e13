//! NTFS: `$Bitmap` (MFT record 6), whose data runs are found through `$MFT`'s own data
//! runs (record 0); `$Volume` (record 3) says whether the volume is dirty, and `$LogFile`'s
//! restart area whether the journal is clean. Facts from the NTFS documentation of the
//! Linux-NTFS project (ntfsdoc) and ntfs-3g's layout.h.

use super::{Opened, Walk};
use crate::dev::{bitmap_runs, count_bits, le16, le32, le64, Dev, Emit};
use crate::error::{corrupt, unsupported, Error};
use crate::FileSystem;

const AT_VOLUME_NAME: u32 = 0x60;
const AT_VOLUME_INFORMATION: u32 = 0x70;
const AT_DATA: u32 = 0x80;
const AT_ATTRIBUTE_LIST: u32 = 0x20;
const AT_END: u32 = 0xffff_ffff;
const VOLUME_IS_DIRTY: u16 = 0x0001;
/// Restart area flag: the volume was cleanly unmounted (ntfs-3g layout.h).
const RESTART_VOLUME_IS_CLEAN: u16 = 0x0002;
const LOGFILE_NO_CLIENT: u16 = 0xffff;
/// Bitmap bytes read at a time.
const CHUNK: u64 = 1 << 20;
/// At most this many data runs in one attribute.
const MAX_RUNS: usize = 1 << 16;

pub(crate) fn detect(s: &[u8]) -> bool {
    s.len() >= 512 && &s[3..11] == b"NTFS    "
}

/// A data run: `lcn` None for a sparse run.
#[derive(Clone, Copy, Debug)]
struct Run {
    vcn: u64,
    lcn: Option<u64>,
    len: u64,
}

struct Ntfs {
    cluster: u64,
    clusters: u64,
    mft_lcn: u64,
    bitmap_runs: Vec<Run>,
}

struct Vol<'a> {
    d: &'a Dev<'a>,
    cluster: u64,
    clusters: u64,
    record: u64,
    mft_runs: Vec<Run>,
}

pub(crate) fn open(d: &Dev) -> Result<Opened, Error> {
    const S: &str = "NTFS boot sector";
    let b = d.read(S, 0, 512)?;
    if !detect(&b) || b[510..512] != [0x55, 0xaa] {
        return Err(corrupt(S, 0, "no NTFS signature"));
    }
    let bps = le16(&b, 0x0b) as u64;
    if !(256..=4096).contains(&bps) || !bps.is_power_of_two() {
        return Err(corrupt(S, 0x0b, format!("{bps} bytes per sector")));
    }
    let spc_raw = b[0x0d];
    let spc = if spc_raw <= 0x80 {
        spc_raw as u64
    } else {
        1u64.checked_shl(256 - spc_raw as u32).unwrap_or(0)
    };
    if spc == 0 || !spc.is_power_of_two() || spc * bps > 2 << 20 {
        return Err(corrupt(
            S,
            0x0d,
            format!("sectors per cluster byte {spc_raw:#04x}"),
        ));
    }
    let cluster = spc * bps;
    let total_sectors = le64(&b, 0x28);
    if total_sectors.checked_mul(bps).is_none_or(|n| n > d.len) {
        return Err(corrupt(
            S,
            0x28,
            format!(
                "{total_sectors} sectors do not fit the partition ({} bytes): truncated image?",
                d.len
            ),
        ));
    }
    let clusters = total_sectors * bps / cluster;
    let mft_lcn = le64(&b, 0x30);
    let cpr = b[0x40] as i8;
    let record = if cpr > 0 {
        cpr as u64 * cluster
    } else if (-31..0).contains(&cpr) {
        1u64 << (-cpr as u32)
    } else {
        0
    };
    if !(512..=65536).contains(&record) || !record.is_power_of_two() || mft_lcn >= clusters {
        return Err(corrupt(
            S,
            0x30,
            format!("MFT at cluster {mft_lcn}, records of {record} bytes"),
        ));
    }
    let serial = le64(&b, 0x48);
    let mut v = Vol {
        d,
        cluster,
        clusters,
        record,
        mft_runs: Vec::new(),
    };
    // Record 0 ($MFT) from the boot sector's MFT cluster, then its data runs.
    let r0 = v.read_record_at(mft_lcn * cluster, 0)?;
    let (mft_runs, _) = v.data_runs(&r0, 0, mft_lcn * cluster)?;
    v.mft_runs = mft_runs;
    let r6 = v.record(6)?;
    let (bitmap_runs, bitmap_size) = v.data_runs(&r6, 6, 0)?;
    if bitmap_size < clusters.div_ceil(8) {
        return Err(corrupt(
            "NTFS $Bitmap",
            0,
            format!("{bitmap_size} bytes for {clusters} clusters"),
        ));
    }
    // $Volume: name and the dirty flag.
    let r3 = v.record(3)?;
    let mut label = None;
    let mut dirty = None;
    for (ty, a) in attributes(&r3, 3)? {
        if a[8] != 0 {
            continue;
        }
        let vlen = le32(a, 0x10) as usize;
        let voff = le16(a, 0x14) as usize;
        let Some(val) = a.get(voff..voff + vlen) else {
            return Err(corrupt(
                "NTFS $Volume",
                0,
                "resident value outside its attribute",
            ));
        };
        match ty {
            AT_VOLUME_NAME => label = crate::dev::label16(val),
            AT_VOLUME_INFORMATION if val.len() >= 12 => {
                let flags = le16(val, 10);
                if flags & VOLUME_IS_DIRTY != 0 {
                    dirty = Some(
                        "the volume's dirty flag is set: check it with chkdsk or ntfsfix"
                            .to_string(),
                    );
                }
            }
            _ => {}
        }
    }
    if dirty.is_none() {
        dirty = v.logfile_unclean()?;
    }
    let n = Ntfs {
        cluster,
        clusters,
        mft_lcn,
        bitmap_runs,
    };
    let mut o = Opened::new(
        FileSystem::Ntfs,
        label,
        Some(format!("{serial:016X}")),
        Box::new(n),
    );
    o.dirty = dirty;
    Ok(o)
}

/// The attributes of a fixed-up MFT record: (type, bytes).
fn attributes(r: &[u8], no: u64) -> Result<Vec<(u32, &[u8])>, Error> {
    let mut out = Vec::new();
    let mut o = le16(r, 0x14) as usize;
    let used = (le32(r, 0x18) as usize).min(r.len());
    while o + 8 <= used {
        let ty = le32(r, o);
        if ty == AT_END {
            return Ok(out);
        }
        let len = le32(r, o + 4) as usize;
        if len < 24 || o + len > used || !len.is_multiple_of(8) {
            return Err(corrupt(
                "NTFS MFT record",
                0,
                format!("record {no}: attribute {ty:#x} at {o} has length {len}"),
            ));
        }
        out.push((ty, &r[o..o + len]));
        o += len;
    }
    Err(corrupt(
        "NTFS MFT record",
        0,
        format!("record {no}: no end marker"),
    ))
}

impl Vol<'_> {
    /// The MFT record at byte `off`, its update sequence applied.
    fn read_record_at(&self, off: u64, no: u64) -> Result<Vec<u8>, Error> {
        let mut r = self.d.read("NTFS MFT record", off, self.record)?;
        if &r[..4] != b"FILE" {
            return Err(corrupt(
                "NTFS MFT record",
                off,
                format!("record {no} has no FILE magic"),
            ));
        }
        let usa = le16(&r, 4) as usize;
        let count = le16(&r, 6) as usize;
        if count != (self.record / 512) as usize + 1 || usa + 2 * count > 512 {
            return Err(corrupt(
                "NTFS MFT record",
                off,
                format!("record {no}: update sequence of {count} at {usa}"),
            ));
        }
        let usn = [r[usa], r[usa + 1]];
        for i in 1..count {
            let end = i * 512 - 2;
            if r[end..end + 2] != usn {
                return Err(corrupt(
                    "NTFS MFT record",
                    off,
                    format!("record {no}: torn write (update sequence mismatch in sector {i})"),
                ));
            }
            r[end] = r[usa + 2 * i];
            r[end + 1] = r[usa + 2 * i + 1];
        }
        if le16(&r, 0x16) & 1 == 0 {
            return Err(corrupt(
                "NTFS MFT record",
                off,
                format!("record {no} is not in use"),
            ));
        }
        if (le16(&r, 0x14) as u64) < 0x18 || le32(&r, 0x18) as u64 > self.record {
            return Err(corrupt(
                "NTFS MFT record",
                off,
                format!("record {no}: bad attribute offset or size"),
            ));
        }
        Ok(r)
    }

    /// MFT record `no`, located through `$MFT`'s data runs.
    fn record(&self, no: u64) -> Result<Vec<u8>, Error> {
        let byte = no * self.record;
        let vcn = byte / self.cluster;
        for r in &self.mft_runs {
            if vcn >= r.vcn && vcn < r.vcn + r.len {
                let Some(lcn) = r.lcn else { break };
                let off = (lcn + vcn - r.vcn) * self.cluster + byte % self.cluster;
                // A record larger than a cluster must not straddle two runs.
                if self.record > self.cluster
                    && (byte + self.record).div_ceil(self.cluster) > r.vcn + r.len
                {
                    return Err(unsupported(
                        "NTFS $MFT",
                        off,
                        format!("record {no} spans two data runs"),
                    ));
                }
                return self.read_record_at(off, no);
            }
        }
        Err(corrupt(
            "NTFS $MFT",
            0,
            format!("record {no} is not in $MFT's data runs"),
        ))
    }

    /// The unnamed $DATA attribute's runs and data size (no attribute list: we do not follow one).
    fn data_runs(&self, r: &[u8], no: u64, off: u64) -> Result<(Vec<Run>, u64), Error> {
        let attrs = attributes(r, no)?;
        if attrs.iter().any(|(t, _)| *t == AT_ATTRIBUTE_LIST) && no != 0 {
            return Err(unsupported(
                "NTFS MFT record",
                off,
                format!("record {no} has an attribute list"),
            ));
        }
        for (ty, a) in attrs {
            if ty != AT_DATA || a[9] != 0 {
                continue;
            }
            if a[8] == 0 {
                return Err(unsupported(
                    "NTFS MFT record",
                    off,
                    format!("record {no}'s data is resident"),
                ));
            }
            let flags = le16(a, 0x0c);
            if flags & 0x00ff != 0 || flags & 0x4000 != 0 {
                return Err(unsupported(
                    "NTFS MFT record",
                    off,
                    format!("record {no}'s data is compressed or encrypted"),
                ));
            }
            if le64(a, 0x10) != 0 {
                return Err(unsupported(
                    "NTFS MFT record",
                    off,
                    format!("record {no}'s data starts in an extension record"),
                ));
            }
            let mp = le16(a, 0x20) as usize;
            let data_size = le64(a, 0x30);
            let runs = self.decode_runs(a.get(mp..).unwrap_or(&[]), no)?;
            let covered: u64 = runs.iter().map(|r| r.len).sum::<u64>() * self.cluster;
            if no != 0 && covered < data_size {
                return Err(corrupt(
                    "NTFS MFT record",
                    off,
                    format!("record {no}: runs cover {covered} bytes of {data_size}"),
                ));
            }
            return Ok((runs, data_size));
        }
        Err(corrupt(
            "NTFS MFT record",
            off,
            format!("record {no} has no data attribute"),
        ))
    }

    fn decode_runs(&self, mut p: &[u8], no: u64) -> Result<Vec<Run>, Error> {
        let bad = |why: &str| corrupt("NTFS data runs", 0, format!("record {no}: {why}"));
        let mut out = Vec::new();
        let mut vcn = 0u64;
        let mut lcn: i64 = 0;
        loop {
            let Some(&h) = p.first() else {
                return Err(bad("no end of the run list"));
            };
            if h == 0 {
                return Ok(out);
            }
            let (nl, no_) = ((h & 0xf) as usize, (h >> 4) as usize);
            if nl == 0 || nl > 8 || no_ > 8 || p.len() < 1 + nl + no_ {
                return Err(bad("malformed run header"));
            }
            let mut len = 0u64;
            for i in 0..nl {
                len |= (p[1 + i] as u64) << (8 * i);
            }
            let sparse = no_ == 0;
            if !sparse {
                let mut delta: i64 = 0;
                for i in 0..no_ {
                    delta |= (p[1 + nl + i] as i64) << (8 * i);
                }
                let shift = 64 - 8 * no_ as u32;
                if shift < 64 {
                    delta = (delta << shift) >> shift;
                }
                lcn = lcn.checked_add(delta).ok_or_else(|| bad("LCN overflow"))?;
            }
            if len == 0
                || (!sparse && (lcn < 0 || (lcn as u64).saturating_add(len) > self.clusters))
            {
                return Err(bad(&format!(
                    "run of {len} clusters at LCN {lcn} is outside the volume"
                )));
            }
            if out.len() >= MAX_RUNS {
                return Err(bad("too many runs"));
            }
            out.push(Run {
                vcn,
                lcn: (!sparse).then_some(lcn as u64),
                len,
            });
            vcn = vcn.checked_add(len).ok_or_else(|| bad("VCN overflow"))?;
            p = &p[1 + nl + no_..];
        }
    }

    /// Why `$LogFile` (record 2) does not prove the journal clean, if it does not: its
    /// first restart page must show no client in use or the clean flag (as ntfs-3g's
    /// ntfs_check_logfile decides).
    fn logfile_unclean(&self) -> Result<Option<String>, Error> {
        let r2 = self.record(2)?;
        let (runs, size) = self.data_runs(&r2, 2, 0)?;
        let Some(first) = runs.first().and_then(|r| r.lcn) else {
            return Ok(Some("$LogFile has no data".into()));
        };
        if size < 4096 {
            return Ok(Some("$LogFile is too small".into()));
        }
        let off = first * self.cluster;
        let contiguous = runs[0].len * self.cluster >= 8192;
        let two = self
            .d
            .read("NTFS $LogFile", off, if contiguous { 8192 } else { 4096 })?;
        let page = &two[..4096];
        if &page[..4] != b"RSTR" && &page[..4] != b"CHKD" {
            // An emptied log (all 0xff, as mkfs.ntfs and ntfs-3g leave it) has nothing to
            // replay; anything else without a restart page is not understood.
            if two.iter().all(|&b| b == 0xff) {
                return Ok(None);
            }
            return Ok(Some(
                "$LogFile has no restart page: the journal may need replay".into(),
            ));
        }
        // Restart page header: usa_ofs u16 @4, usa_count @6, chkdsk_lsn @8, system_page_size
        // u32 @16, log_page_size @20, restart_area_offset u16 @24.
        let ra = le16(page, 24) as usize;
        if ra + 24 > 512 - 2 {
            return Ok(Some(
                "$LogFile restart area is outside the first sector".into(),
            ));
        }
        // Restart area: current_lsn u64 @0, log_clients u16 @8, client_free_list @10,
        // client_in_use_list @12, flags @14.
        let in_use = le16(page, ra + 12);
        let flags = le16(page, ra + 14);
        if in_use != LOGFILE_NO_CLIENT && flags & RESTART_VOLUME_IS_CLEAN == 0 {
            return Ok(Some("$LogFile is not clean: the journal needs replay (hibernated or not cleanly unmounted)".into()));
        }
        Ok(None)
    }
}

impl Walk for Ntfs {
    fn walk(&self, d: &Dev, e: &mut Emit) -> Result<(), Error> {
        let mut bit = 0u64;
        let mut checked = false;
        for r in &self.bitmap_runs {
            if bit >= self.clusters {
                break;
            }
            let Some(lcn) = r.lcn else {
                return Err(corrupt("NTFS $Bitmap", 0, "the bitmap has a sparse run"));
            };
            let bytes = r.len * self.cluster;
            let mut o = 0;
            while o < bytes && bit < self.clusters {
                let n = (bytes - o)
                    .min(CHUNK)
                    .min((self.clusters - bit).div_ceil(8));
                let b = d.read("NTFS $Bitmap", lcn * self.cluster + o, n)?;
                if !checked {
                    checked = true;
                    // The boot sector's cluster is always in use.
                    if count_bits(&b, 1, true) == 0 {
                        return Err(corrupt(
                            "NTFS $Bitmap",
                            lcn * self.cluster,
                            "cluster 0 (the boot sector) is marked free",
                        ));
                    }
                }
                let nbits = (n * 8).min(self.clusters - bit);
                if (bit..bit + nbits).contains(&self.mft_lcn) {
                    let i = self.mft_lcn - bit;
                    if (b[(i / 8) as usize] >> (i % 8)) & 1 == 0 {
                        return Err(corrupt(
                            "NTFS $Bitmap",
                            lcn * self.cluster,
                            "the MFT's first cluster is marked free",
                        ));
                    }
                }
                bitmap_runs(&b, nbits, true, bit * self.cluster, self.cluster, e)?;
                bit += nbits;
                o += n;
                e.progress(bit * self.cluster)?;
            }
        }
        if bit < self.clusters {
            return Err(corrupt(
                "NTFS $Bitmap",
                0,
                "the bitmap's runs end before the last cluster",
            ));
        }
        // The backup boot sector and anything past the last cluster.
        e.used(self.clusters * self.cluster, u64::MAX)
    }
}
