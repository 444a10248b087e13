//! `qemu-img compare`: whether two guest disks read the same, walked by block status as
//! qemu walks them, so the first differing offset reported is the one qemu reports.

use sparsekit_io::{is_zero, Control, Phase};

use crate::error::Result;
use crate::source::{BlockStatus, Source};

/// Bytes compared per read (qemu-img's `IO_BUF_SIZE`).
pub const COMPARE_CHUNK: u64 = 2 << 20;
/// qemu compares in 512-byte sectors.
const SECTOR: usize = 512;

/// The outcome of [`compare`], as `qemu-img compare` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// `Images are identical.` (`size_mismatch`: sizes differ but the larger one reads as
    /// zeros past the smaller, `Warning: Image size mismatch!`).
    Identical {
        /// The sizes differ.
        size_mismatch: bool,
    },
    /// `Content mismatch at offset N!`.
    ContentMismatch {
        /// The first differing offset (the start of the differing 512-byte sector, or of
        /// the block-status range it begins).
        offset: u64,
        /// The sizes differ and the difference is past the end of the smaller image
        /// (`Warning: Image size mismatch!` first).
        size_mismatch: bool,
    },
    /// Strict mode: `Strict mode: Image size mismatch!`.
    SizeMismatch,
    /// Strict mode: `Strict mode: Offset N block status mismatch!`.
    StatusMismatch {
        /// Where the allocation first differs.
        offset: u64,
    },
}

impl Comparison {
    /// Whether the images compare equal (exit code 0).
    pub fn is_identical(&self) -> bool {
        matches!(self, Comparison::Identical { .. })
    }

    /// What `qemu-img compare` prints.
    pub fn message(&self) -> String {
        match self {
            Comparison::Identical {
                size_mismatch: true,
            } => "Warning: Image size mismatch!\nImages are identical.".into(),
            Comparison::Identical { .. } => "Images are identical.".into(),
            Comparison::ContentMismatch {
                offset,
                size_mismatch,
            } => format!(
                "{}Content mismatch at offset {offset}!",
                if *size_mismatch {
                    "Warning: Image size mismatch!\n"
                } else {
                    ""
                }
            ),
            Comparison::SizeMismatch => "Strict mode: Image size mismatch!".into(),
            Comparison::StatusMismatch { offset } => {
                format!("Strict mode: Offset {offset} block status mismatch!")
            }
        }
    }

    /// The first differing offset, when the contents differ.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Comparison::ContentMismatch { offset, .. } | Comparison::StatusMismatch { offset } => {
                Some(*offset)
            }
            _ => None,
        }
    }
}

/// The status entry covering `off` and the bytes of it left from there.
fn at(list: &[BlockStatus], i: &mut usize, off: u64) -> (BlockStatus, u64) {
    while *i < list.len() && list[*i].start + list[*i].length <= off {
        *i += 1;
    }
    match list.get(*i) {
        Some(s) if s.start <= off => (*s, s.start + s.length - off),
        // A gap (never from our sources): unallocated zeros up to the next entry.
        Some(s) => (
            BlockStatus {
                start: off,
                length: s.start - off,
                allocated: false,
                zero: true,
                data: false,
                offset_valid: false,
            },
            s.start - off,
        ),
        None => (
            BlockStatus {
                start: off,
                length: u64::MAX - off,
                allocated: false,
                zero: true,
                data: false,
                offset_valid: false,
            },
            u64::MAX - off,
        ),
    }
}

/// qemu-img's `find_nonzero`: the start of the first sector (from the buffer's start)
/// holding a non-zero byte.
fn find_nonzero(b: &[u8]) -> Option<usize> {
    b.chunks(SECTOR)
        .position(|s| !is_zero(s))
        .map(|i| i * SECTOR)
}

/// qemu-img's `compare_buffers` with 512-byte chunks: whether the first sector differs,
/// and how many bytes from the start share that state.
fn compare_buffers(a: &[u8], b: &[u8]) -> (bool, usize) {
    let n = a.len();
    let first = SECTOR.min(n);
    let res = a[..first] != b[..first];
    let mut i = first;
    while i < n {
        let len = SECTOR.min(n - i);
        if (a[i..i + len] != b[i..i + len]) != res {
            break;
        }
        i += len;
    }
    (res, i)
}

/// Compare the guest disks of `a` and `b` as `qemu-img compare [-s] A B` does. Reports
/// [`Phase::Verify`] in bytes of the larger disk.
pub fn compare(
    a: &dyn Source,
    b: &dyn Source,
    strict: bool,
    ctl: &mut Control<'_>,
) -> Result<Comparison> {
    let (size1, size2) = (a.size(), b.size());
    if strict && size1 != size2 {
        return Ok(Comparison::SizeMismatch);
    }
    let quiet = &mut Control::with_cancel(ctl.cancel().clone());
    let s1 = a.block_status(quiet)?;
    let s2 = b.block_status(quiet)?;
    let total = size1.min(size2);
    let progress_total = size1.max(size2);
    let mut buf1 = vec![0u8; COMPARE_CHUNK as usize];
    let mut buf2 = vec![0u8; COMPARE_CHUNK as usize];
    let (mut i1, mut i2) = (0, 0);
    let mut off = 0u64;
    ctl.report(Phase::Verify, 0, Some(progress_total))?;
    while off < total {
        let (st1, p1) = at(&s1, &mut i1, off);
        let (st2, p2) = at(&s2, &mut i2, off);
        let mut chunk = p1.min(p2).min(total - off);
        // qemu compares the whole status word, `BDRV_BLOCK_EOF` (the range reaches the
        // end of the image) included.
        let flags = |s: &BlockStatus, size: u64| {
            (
                s.allocated,
                s.zero,
                s.data,
                s.offset_valid,
                s.start + s.length >= size,
            )
        };
        if strict && flags(&st1, size1) != flags(&st2, size2) {
            return Ok(Comparison::StatusMismatch { offset: off });
        }
        if st1.zero && st2.zero {
            // Nothing to read.
        } else if st1.allocated == st2.allocated {
            if st1.allocated {
                chunk = chunk.min(COMPARE_CHUNK);
                let n = chunk as usize;
                a.read_exact_at(&mut buf1[..n], off)?;
                b.read_exact_at(&mut buf2[..n], off)?;
                let (res, pnum) = compare_buffers(&buf1[..n], &buf2[..n]);
                if res || pnum != n {
                    let at = off + if res { 0 } else { pnum as u64 };
                    return Ok(Comparison::ContentMismatch {
                        offset: at,
                        size_mismatch: false,
                    });
                }
            }
        } else {
            chunk = chunk.min(COMPARE_CHUNK);
            let n = chunk as usize;
            let src = if st1.allocated { a } else { b };
            src.read_exact_at(&mut buf1[..n], off)?;
            if let Some(i) = find_nonzero(&buf1[..n]) {
                return Ok(Comparison::ContentMismatch {
                    offset: off + i as u64,
                    size_mismatch: false,
                });
            }
        }
        off += chunk;
        ctl.report(Phase::Verify, off, Some(progress_total))?;
    }
    if size1 != size2 {
        let (over, list) = if size1 > size2 { (a, &s1) } else { (b, &s2) };
        let mut i = 0;
        while off < progress_total {
            let (st, p) = at(list, &mut i, off);
            let mut chunk = p.min(progress_total - off);
            if st.allocated && !st.zero {
                chunk = chunk.min(COMPARE_CHUNK);
                let n = chunk as usize;
                over.read_exact_at(&mut buf1[..n], off)?;
                if let Some(i) = find_nonzero(&buf1[..n]) {
                    return Ok(Comparison::ContentMismatch {
                        offset: off + i as u64,
                        size_mismatch: true,
                    });
                }
            }
            off += chunk;
            ctl.report(Phase::Verify, off, Some(progress_total))?;
        }
    }
    if progress_total == 0 {
        ctl.report(Phase::Verify, 0, Some(0))?;
    }
    Ok(Comparison::Identical {
        size_mismatch: size1 != size2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_by_sector() {
        let a = vec![0u8; 2048];
        let mut b = a.clone();
        b[1500] = 1;
        assert_eq!(compare_buffers(&a, &b), (false, 1024));
        b[3] = 1;
        assert_eq!(compare_buffers(&a, &b), (true, 512));
        assert_eq!(find_nonzero(&b), Some(0));
        assert_eq!(find_nonzero(&a), None);
    }
}
