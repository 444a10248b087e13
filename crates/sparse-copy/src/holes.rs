//! Holes in the destination: zeros written over source holes (`zero_holes`, block devices)
//! and holes punched where a regular destination still holds old or preallocated blocks.
//! One zero writer serves both.

use sparsekit_io::errno;
use sparsekit_io::sys::FileExt;
use std::ops::Range;

use sparsekit_extents::{map_file_nosync, MapOptions, Method};

use crate::copy::{Job, BUF_SIZE};
use crate::{sys, Error, Result};

impl Job<'_, '_> {
    /// Write zeros over source range `h` (in destination coordinates), reporting progress.
    pub(crate) fn zero(&mut self, h: Range<u64>) -> Result<()> {
        let (s, e) = (self.dst_pos(h.start), self.dst_pos(h.end));
        self.write_zeros(s, e, true)
    }

    /// The one zero writer: zeros over destination range `[s, e)`, in buffers of at most
    /// [`BUF_SIZE`] (small holes cost small allocations). With `report`, the zeros count
    /// as progress.
    fn write_zeros(&mut self, s: u64, e: u64, report: bool) -> Result<()> {
        let zeros = vec![0u8; (e - s).min(BUF_SIZE as u64) as usize];
        let mut pos = s;
        while pos < e {
            let n = (e - pos).min(zeros.len() as u64) as usize;
            self.dst_file
                .write_all_at(&zeros[..n], pos)
                .map_err(self.io(false, "write", pos))?;
            self.zeroed += n as u64;
            pos += n as u64;
            if report {
                self.report()?;
            }
        }
        Ok(())
    }

    /// Make the destination's ranges under source holes read as zeros and hold no blocks:
    /// old data of an existing destination (notrunc), and blocks XFS speculative
    /// preallocation left inside the file. Only ranges the destination map shows as
    /// allocated are punched, so a fresh copy costs one mapping call.
    pub(crate) fn clear_holes(&mut self, holes: &[Range<u64>]) -> Result<()> {
        let start = self.dst_pos(self.opts.skip);
        // No FIEMAP_FLAG_SYNC: delayed allocations show up as extents anyway, and forcing
        // the whole copy to disk here would cost more than the copy itself.
        let dmap = map_file_nosync(
            self.dst_file,
            &MapOptions {
                start,
                length: Some(self.len),
                method: Method::Auto,
            },
        )
        .map_err(|e| Error::Extents(e.with_path(self.dst)))?;
        let mut allocated = dmap.extents.iter().map(|e| e.offset..e.end()).peekable();
        for h in holes {
            let (hs, he) = (self.dst_pos(h.start), self.dst_pos(h.end));
            while let Some(a) = allocated.peek() {
                if a.end <= hs {
                    allocated.next();
                    continue;
                }
                if a.start >= he {
                    break;
                }
                let (s, e) = (a.start.max(hs), a.end.min(he));
                self.punch(s, e)?;
                if a.end <= he {
                    allocated.next();
                } else {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Deallocate `[s, e)` of the destination; where the filesystem cannot punch holes
    /// (EOPNOTSUPP: e.g. older filesystems; ENOSYS), write zeros instead.
    fn punch(&mut self, s: u64, e: u64) -> Result<()> {
        match sys::punch_hole(self.dst_file, s, e - s) {
            Ok(()) => Ok(()),
            Err(err) if matches!(err.raw_os_error(), Some(errno::EOPNOTSUPP | errno::ENOSYS)) => {
                self.write_zeros(s, e, false)
            }
            Err(err) => Err(self.io(false, "fallocate(PUNCH_HOLE)", s)(err)),
        }
    }
}
