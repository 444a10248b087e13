//! Bounded reads of a window of the device (a partition), little/big-endian field access,
//! and the sink that merges used runs.

use sparsekit_io::{Control, Phase, Storage};

use crate::error::{corrupt, Error};

/// The largest single metadata read: anything bigger is read in pieces, so a hostile count
/// never makes an allocation of that size.
pub(crate) const MAX_READ: u64 = 16 << 20;

/// A window `[base, base + len)` of a storage: a partition or the whole device. Offsets
/// are relative to `base`; reads past `len` are corruption, never reads of a neighbour.
#[derive(Clone, Copy)]
pub(crate) struct Dev<'a> {
    pub s: &'a dyn Storage,
    pub base: u64,
    pub len: u64,
}

impl<'a> Dev<'a> {
    /// `n` bytes at `off`; `structure` names what is read for the error.
    pub fn read(&self, structure: &'static str, off: u64, n: u64) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0u8; self.check(structure, off, n)?];
        self.read_into(structure, off, &mut buf)?;
        Ok(buf)
    }

    /// Fill `buf` from `off`.
    pub fn read_into(
        &self,
        structure: &'static str,
        off: u64,
        buf: &mut [u8],
    ) -> Result<(), Error> {
        self.check(structure, off, buf.len() as u64)?;
        self.s.read_exact_at(buf, self.base + off)?;
        Ok(())
    }

    fn check(&self, structure: &'static str, off: u64, n: u64) -> Result<usize, Error> {
        if n > MAX_READ {
            return Err(corrupt(
                structure,
                off,
                format!("{n} bytes is more than a structure of this kind can hold"),
            ));
        }
        match off.checked_add(n) {
            Some(end) if end <= self.len => Ok(n as usize),
            _ => Err(corrupt(
                structure,
                off,
                format!(
                    "{n} bytes at offset {off} lie past the end of the partition ({} bytes)",
                    self.len
                ),
            )),
        }
    }
}

/// Little-endian fields.
pub(crate) fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
pub(crate) fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
pub(crate) fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}
/// Big-endian fields (XFS).
pub(crate) fn be16(b: &[u8], o: usize) -> u16 {
    u16::from_be_bytes([b[o], b[o + 1]])
}
pub(crate) fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes(b[o..o + 4].try_into().unwrap())
}
pub(crate) fn be64(b: &[u8], o: usize) -> u64 {
    u64::from_be_bytes(b[o..o + 8].try_into().unwrap())
}

/// A NUL- or space-padded label as text (lossy), `None` when empty.
pub(crate) fn label(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    let s = String::from_utf8_lossy(&b[..end]).trim_end().to_string();
    (!s.is_empty()).then_some(s)
}

/// A UTF-16LE label, `None` when empty.
pub(crate) fn label16(b: &[u8]) -> Option<String> {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    let s = String::from_utf16_lossy(&units).trim_end().to_string();
    (!s.is_empty()).then_some(s)
}

/// A big-endian-ordered 16-byte UUID as blkid prints it, `None` when all zero.
pub(crate) fn uuid_be(b: &[u8]) -> Option<String> {
    let a: [u8; 16] = b[..16].try_into().unwrap();
    (a != [0; 16]).then(|| uuid::Uuid::from_bytes(a).hyphenated().to_string())
}

/// Where the used runs of one file system go, in partition-relative byte offsets,
/// ascending. Adjacent and overlapping runs merge; a run past the partition is clipped
/// (the caller marks everything past the file system used anyway).
pub(crate) struct Emit<'a, 'c> {
    out: &'a mut dyn FnMut(u64, u64) -> Result<(), Error>,
    pending: Option<(u64, u64)>,
    limit: u64,
    pub used: u64,
    ctl: &'a mut Control<'c>,
    progress_base: u64,
    progress_total: u64,
    last_report: u64,
}

impl<'a, 'c> Emit<'a, 'c> {
    pub fn new(
        out: &'a mut dyn FnMut(u64, u64) -> Result<(), Error>,
        limit: u64,
        ctl: &'a mut Control<'c>,
        progress_base: u64,
        progress_total: u64,
    ) -> Self {
        Emit {
            out,
            pending: None,
            limit,
            used: 0,
            ctl,
            progress_base,
            progress_total,
            last_report: 0,
        }
    }

    /// `[start, start + len)` is used. Runs must come in ascending order of `start`.
    pub fn used(&mut self, start: u64, len: u64) -> Result<(), Error> {
        let end = start.saturating_add(len).min(self.limit);
        if end <= start {
            return Ok(());
        }
        match &mut self.pending {
            Some((s, e)) if start <= *e => {
                if start < *s {
                    return Err(corrupt(
                        "used-block walk",
                        start,
                        "runs out of order (internal error)",
                    ));
                }
                *e = (*e).max(end);
            }
            Some(_) => {
                let (s, e) = self.pending.take().unwrap();
                self.flush_run(s, e)?;
                self.pending = Some((start, end));
            }
            None => self.pending = Some((start, end)),
        }
        Ok(())
    }

    fn flush_run(&mut self, s: u64, e: u64) -> Result<(), Error> {
        self.used += e - s;
        (self.out)(s, e - s)?;
        // Progress every 64 MiB of the partition covered.
        if e - self.last_report >= 64 << 20 {
            self.last_report = e;
            self.progress(e)?;
        }
        Ok(())
    }

    /// Report that the walk has covered the partition up to `pos`, and check for
    /// cancellation.
    pub fn progress(&mut self, pos: u64) -> Result<(), Error> {
        let done = (self.progress_base + pos.min(self.limit)).min(self.progress_total);
        self.ctl
            .report(Phase::Map, done, Some(self.progress_total))?;
        Ok(())
    }

    /// Flush the last run.
    pub fn finish(&mut self) -> Result<(), Error> {
        if let Some((s, e)) = self.pending.take() {
            self.flush_run(s, e)?;
        }
        Ok(())
    }
}

/// Emit the runs of set (or clear, with `set_is_used = false`) bits of `bits[..nbits]`,
/// each bit standing for `unit` bytes from `origin`. Runs are emitted in order.
pub(crate) fn bitmap_runs(
    bits: &[u8],
    nbits: u64,
    set_is_used: bool,
    origin: u64,
    unit: u64,
    emit: &mut Emit,
) -> Result<(), Error> {
    let nbits = nbits.min(bits.len() as u64 * 8);
    let mut i = 0u64;
    let bit = |i: u64| ((bits[(i / 8) as usize] >> (i % 8)) & 1 == 1) == set_is_used;
    while i < nbits {
        // Skip whole bytes of free bits quickly.
        if i.is_multiple_of(8) && i + 8 <= nbits {
            let b = bits[(i / 8) as usize];
            let free_byte = if set_is_used { 0x00 } else { 0xff };
            if b == free_byte {
                i += 8;
                continue;
            }
        }
        if !bit(i) {
            i += 1;
            continue;
        }
        let start = i;
        while i < nbits {
            if i.is_multiple_of(8) && i + 8 <= nbits {
                let used_byte = if set_is_used { 0xff } else { 0x00 };
                if bits[(i / 8) as usize] == used_byte {
                    i += 8;
                    continue;
                }
            }
            if !bit(i) {
                break;
            }
            i += 1;
        }
        emit.used(origin + start * unit, (i - start) * unit)?;
    }
    Ok(())
}

/// The number of used bits in `bits[..nbits]`.
pub(crate) fn count_bits(bits: &[u8], nbits: u64, set_is_used: bool) -> u64 {
    let nbits = nbits.min(bits.len() as u64 * 8);
    let whole = (nbits / 8) as usize;
    let mut n: u64 = bits[..whole].iter().map(|b| b.count_ones() as u64).sum();
    for i in (whole as u64 * 8)..nbits {
        n += ((bits[(i / 8) as usize] >> (i % 8)) & 1) as u64;
    }
    if set_is_used {
        n
    } else {
        nbits - n
    }
}
