//! Capacity probe: does a drive hold what it claims? Counterfeit SD cards and USB sticks
//! report a size their flash does not have; writes past the real capacity wrap around onto
//! earlier blocks or vanish. [`probe_capacity`] writes a unique pattern at offsets spread
//! over the claimed size, reads them back past the cache, and restores the bytes that were
//! there, so a drive that is sound is left byte-identical.

use sparsekit_bmap::Destination;
use sparsekit_io::Cancel;

use crate::error::{Error, Result};

/// Bytes probed at each offset (one 4 KiB block: every device's logical block divides it).
pub const PROBE_BLOCK: u64 = 4096;
/// Offsets probed over the claimed size: at least this many (at most twice as many, and
/// the last block).
pub const PROBE_POINTS: u64 = 64;

/// What [`probe_capacity`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// The size the drive claims.
    pub claimed: u64,
    /// The size that really holds data: the first probed offset that did not read back
    /// what was written there (every probed offset below it did), or `claimed`.
    pub real: u64,
    /// Offsets probed.
    pub points: u64,
}

impl ProbeReport {
    /// Whether the drive holds less than it claims.
    pub fn counterfeit(&self) -> bool {
        self.real < self.claimed
    }
}

/// The block written at `off`: its offset and a per-run nonce, repeated, so a block read
/// from anywhere else (a wrap-around, an earlier run, zeros) never matches.
fn pattern(off: u64, nonce: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(PROBE_BLOCK as usize);
    let mut x = off ^ nonce ^ 0x9E37_79B9_7F4A_7C15;
    while b.len() < PROBE_BLOCK as usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.extend_from_slice(b"SKPROBE!");
        b.extend_from_slice(&off.to_le_bytes());
        b.extend_from_slice(&x.to_le_bytes());
        b.extend_from_slice(&nonce.to_le_bytes());
    }
    b.truncate(PROBE_BLOCK as usize);
    b
}

/// Probe `dst` (its claimed size: [`sparsekit_io::Storage::size`]): the bytes at
/// [`PROBE_POINTS`] offsets spread over it are saved, a unique pattern written at each
/// (highest offset first, so a wrap-around overwrites the higher offset's pattern with the
/// lower one's and the higher offset is the one that fails), synced, read back past the
/// cache, and the saved bytes written back (also when a step fails).
pub fn probe_capacity(dst: &dyn Destination, cancel: &Cancel) -> Result<ProbeReport> {
    let claimed = dst.size()?;
    let blocks = claimed / PROBE_BLOCK;
    if blocks == 0 {
        return Ok(ProbeReport {
            claimed,
            real: claimed,
            points: 0,
        });
    }
    // Multiples of a power of two G (at least PROBE_POINTS of them) and the last block: a
    // fake drive's real size is a multiple of a large power of two, and a write past it
    // lands at (offset mod real), which is then itself a probed offset, so the two collide.
    let mut g = PROBE_BLOCK;
    while claimed / (g * 2) >= PROBE_POINTS {
        g *= 2;
    }
    let mut offsets: Vec<u64> = (0..)
        .map(|k| k * g)
        .take_while(|&o| o + PROBE_BLOCK <= claimed)
        .collect();
    let last = (blocks - 1) * PROBE_BLOCK;
    if offsets.last() != Some(&last) {
        offsets.push(last);
    }
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()) << 32;
    let mut saved = Vec::with_capacity(offsets.len());
    for &o in &offsets {
        cancel.check()?;
        let mut b = vec![0u8; PROBE_BLOCK as usize];
        dst.read_exact_at(&mut b, o)?;
        saved.push(b);
    }
    let probe = || -> Result<Option<u64>> {
        for &o in offsets.iter().rev() {
            cancel.check()?;
            dst.write_all_at(&pattern(o, nonce), o)?;
        }
        dst.flush()?;
        dst.drop_cache(0, 0)?;
        let mut b = vec![0u8; PROBE_BLOCK as usize];
        for &o in &offsets {
            cancel.check()?;
            dst.read_exact_at(&mut b, o)?;
            if b != pattern(o, nonce) {
                return Ok(Some(o));
            }
        }
        Ok(None)
    };
    let found = probe();
    // Restore, lowest offset last: where offsets alias (a wrap-around), the lowest one's
    // bytes are the drive's real bytes there.
    let mut restored: Result<()> = Ok(());
    for (o, b) in offsets.iter().zip(&saved).rev() {
        if let Err(e) = dst.write_all_at(b, *o) {
            restored = Err(Error::Io(e));
            break;
        }
    }
    let flushed = dst.flush().map_err(Error::Io);
    let bad = found?;
    restored?;
    flushed?;
    Ok(ProbeReport {
        claimed,
        real: bad.unwrap_or(claimed),
        points: offsets.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsekit_io::{IoError, MemStorage, Storage};

    /// A counterfeit drive: claims `claimed` bytes, holds `mem`'s, and wraps around.
    struct Wrap {
        mem: MemStorage,
        real: u64,
        claimed: u64,
    }
    impl Storage for Wrap {
        fn size(&self) -> std::result::Result<u64, IoError> {
            Ok(self.claimed)
        }
        fn read_at(&self, b: &mut [u8], o: u64) -> std::result::Result<usize, IoError> {
            let n = b.len().min((self.real - o % self.real) as usize);
            self.mem.read_at(&mut b[..n], o % self.real)
        }
        fn write_at(&self, b: &[u8], o: u64) -> std::result::Result<usize, IoError> {
            let n = b.len().min((self.real - o % self.real) as usize);
            self.mem.write_at(&b[..n], o % self.real)
        }
        fn flush(&self) -> std::result::Result<(), IoError> {
            Ok(())
        }
    }
    impl Destination for Wrap {
        fn is_block_device(&self) -> bool {
            true
        }
    }

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 253) as u8).collect()
    }

    #[test]
    fn wrap_around_found_and_bytes_restored() {
        let real = 8u64 << 20;
        let before = bytes(real as usize);
        let w = Wrap {
            mem: MemStorage::from_vec(before.clone()),
            real,
            claimed: 32 << 20,
        };
        let r = probe_capacity(&w, &Cancel::new()).unwrap();
        assert!(r.counterfeit(), "{r:?}");
        assert!(r.real > real - (1 << 20) && r.real <= real, "{r:?}");
        assert_eq!(w.mem.to_vec(), before, "not restored");
    }

    #[test]
    fn sound_drive_left_unchanged() {
        let before = bytes(16 << 20);
        let m = MemStorage::from_vec(before.clone());
        let r = probe_capacity(&m, &Cancel::new()).unwrap();
        assert!(!r.counterfeit(), "{r:?}");
        assert_eq!(r.real, 16 << 20);
        assert!(
            r.points > PROBE_POINTS && r.points <= 2 * PROBE_POINTS + 1,
            "{r:?}"
        );
        assert_eq!(m.to_vec(), before);
    }
}
