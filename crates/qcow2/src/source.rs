//! What the writer reads from: guest bytes of fixed size and, where the source can tell,
//! where its data is (the rest reads as zeros and is never read).
//!
//! [`Source`] is implemented by [`Image`] (a qcow2 guest through its backing chain, data
//! where `qemu-img map` says `data: true`) and by [`StorageSource`] over any
//! [`Storage`]: a regular file (data ranges from `SEEK_DATA`/`SEEK_HOLE`), a block device
//! or an HTTP range storage (all data; zero clusters are still found by reading).

use std::path::Path;

use sparsekit_io::{errno, Control, FileKind, FileStorage, IoError, Phase, Storage};

use crate::bitmap::Bitmap;
use crate::error::{Error, Result};
use crate::image::Image;

/// Guest bytes to convert, and where the data is.
pub trait Source: Send + Sync {
    /// Bytes of the guest disk.
    fn size(&self) -> u64;

    /// Fill `buf` with guest bytes at `offset` (inside [`Source::size`]).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;

    /// The ranges `(start, length)` that may hold data, sorted and disjoint; everything
    /// else reads as zeros. Sources that cannot tell return one range over everything.
    fn data_ranges(&self, ctl: &mut Control<'_>) -> Result<Vec<(u64, u64)>>;

    /// The file it reads, for messages.
    fn path(&self) -> Option<&Path> {
        None
    }

    /// What each range of the guest is, as qemu's block status through the whole chain
    /// reports it (what `qemu-img measure` and `compare` walk): covers `[0, size)` in
    /// order. By default from [`Source::data_ranges`] as a raw file reports it (every
    /// byte allocated; data ranges `data`, the rest `zero`).
    fn block_status(&self, ctl: &mut Control<'_>) -> Result<Vec<BlockStatus>> {
        let size = self.size();
        let mut out = Vec::new();
        let mut pos = 0;
        for (s, l) in self.data_ranges(ctl)? {
            if s > pos {
                out.push(BlockStatus::raw(pos, s - pos, false));
            }
            out.push(BlockStatus::raw(s, l, true));
            pos = s + l;
        }
        if pos < size {
            out.push(BlockStatus::raw(pos, size - pos, false));
        }
        Ok(out)
    }

    /// Persistent dirty bitmaps, for a source that can have them (a qcow2 image; `None`
    /// for the others).
    fn persistent_bitmaps(&self) -> Result<Option<Vec<Bitmap>>> {
        Ok(None)
    }

    /// Whether a read of a few KiB costs little more than a system call (a local file or
    /// block device, read through the page cache), so that telling all-zero clusters
    /// from data may read the first bytes of each cluster, and the rest only when those
    /// are zeros. `false` (the default) where each read is a request (HTTP) or
    /// decompresses a whole cluster (a qcow2 image's compressed clusters).
    fn small_reads_cheap(&self) -> bool {
        false
    }
}

/// The status of a range of guest bytes (qemu's `BDRV_BLOCK_*` flags that matter here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockStatus {
    /// Guest offset.
    pub start: u64,
    /// Bytes.
    pub length: u64,
    /// Allocated in some layer (a raw file: always).
    pub allocated: bool,
    /// Reads as zeros (known without reading).
    pub zero: bool,
    /// Has data.
    pub data: bool,
    /// Has a host offset (qemu's `OFFSET_VALID`: raw files always, qcow2 data not
    /// compressed).
    pub offset_valid: bool,
}

impl BlockStatus {
    fn raw(start: u64, length: u64, data: bool) -> BlockStatus {
        BlockStatus {
            start,
            length,
            allocated: true,
            zero: !data,
            data,
            offset_valid: true,
        }
    }
}

/// `&S` and `Box<S>` are sources too.
macro_rules! forward {
    ($($t:ty),*) => {$(
        impl<S: Source + ?Sized> Source for $t {
            fn size(&self) -> u64 {
                (**self).size()
            }
            fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
                (**self).read_exact_at(buf, offset)
            }
            fn data_ranges(&self, ctl: &mut Control<'_>) -> Result<Vec<(u64, u64)>> {
                (**self).data_ranges(ctl)
            }
            fn path(&self) -> Option<&Path> {
                (**self).path()
            }
            fn block_status(&self, ctl: &mut Control<'_>) -> Result<Vec<BlockStatus>> {
                (**self).block_status(ctl)
            }
            fn persistent_bitmaps(&self) -> Result<Option<Vec<Bitmap>>> {
                (**self).persistent_bitmaps()
            }
            fn small_reads_cheap(&self) -> bool {
                (**self).small_reads_cheap()
            }
        }
    )*};
}
forward!(&S, Box<S>);

impl Source for Image {
    fn size(&self) -> u64 {
        Image::size(self)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.read_at(buf, offset)
    }

    fn data_ranges(&self, ctl: &mut Control<'_>) -> Result<Vec<(u64, u64)>> {
        self.check_readable()?;
        let map = self.map(ctl)?;
        Ok(merge(
            map.iter()
                .filter(|e| e.data)
                .map(|e| (e.start, e.length))
                .collect(),
        ))
    }

    fn path(&self) -> Option<&Path> {
        Image::path(self)
    }

    fn block_status(&self, ctl: &mut Control<'_>) -> Result<Vec<BlockStatus>> {
        Ok(self
            .map(ctl)?
            .iter()
            .map(|e| BlockStatus {
                start: e.start,
                length: e.length,
                allocated: e.present,
                zero: e.zero,
                data: e.data,
                offset_valid: e.offset.is_some(),
            })
            .collect())
    }

    fn persistent_bitmaps(&self) -> Result<Option<Vec<Bitmap>>> {
        let (b, _) = crate::bitmap::read_bitmaps(self.storage(), &self.header, self.file_size)
            .map_err(|e| self.err(e))?;
        Ok(Some(b))
    }
}

/// Any [`Storage`] as a source. With a regular file's descriptor, data ranges come from
/// `SEEK_DATA`/`SEEK_HOLE`; otherwise the whole storage is data.
pub struct StorageSource {
    storage: Box<dyn Storage>,
    size: u64,
    seekable: Option<std::fs::File>,
    /// A local file or block device ([`Source::small_reads_cheap`]).
    local: bool,
}

impl std::fmt::Debug for StorageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageSource")
            .field("path", &self.storage.path())
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl StorageSource {
    /// A source over `storage`, all of it data (a block device, an HTTP storage, memory).
    pub fn new(storage: Box<dyn Storage>) -> Result<StorageSource> {
        let size = storage.size()?;
        Ok(StorageSource {
            storage,
            size,
            seekable: None,
            local: false,
        })
    }

    /// A raw file or block device at `path`; a regular file's holes are never read.
    pub fn open(path: &Path) -> Result<StorageSource> {
        let fs = FileStorage::open(path)?;
        Self::file(fs)
    }

    /// A raw file or block device already open.
    pub fn file(fs: FileStorage) -> Result<StorageSource> {
        let seekable = if fs.kind() == FileKind::Regular {
            fs.file().try_clone().ok()
        } else {
            None
        };
        let size = fs.size()?;
        Ok(StorageSource {
            storage: Box::new(fs),
            size,
            seekable,
            local: true,
        })
    }
}

impl Source for StorageSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.storage.read_exact_at(buf, offset)?;
        Ok(())
    }

    fn data_ranges(&self, ctl: &mut Control<'_>) -> Result<Vec<(u64, u64)>> {
        let all = if self.size == 0 {
            vec![]
        } else {
            vec![(0, self.size)]
        };
        let Some(f) = &self.seekable else {
            return Ok(all);
        };
        let io = |e: std::io::Error| {
            let e = IoError::new("lseek", e);
            Error::Io(match self.path() {
                Some(p) => e.with_path(p),
                None => e,
            })
        };
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < self.size {
            let data = match crate::sys::seek(f, pos, false) {
                Ok(Some(d)) => d,
                Ok(None) => break,
                // File systems without SEEK_DATA: all data.
                Err(e) if matches!(e.raw_os_error(), Some(errno::EINVAL | errno::EOPNOTSUPP)) => {
                    return Ok(all)
                }
                Err(e) => return Err(io(e)),
            };
            if data >= self.size {
                break;
            }
            let hole = match crate::sys::seek(f, data, true) {
                Ok(Some(h)) => h.min(self.size),
                Ok(None) => self.size,
                Err(e) => return Err(io(e)),
            };
            if hole <= data {
                break;
            }
            out.push((data, hole - data));
            pos = hole;
            ctl.report(Phase::Map, pos, Some(self.size))?;
        }
        ctl.report(Phase::Map, self.size, Some(self.size))?;
        Ok(out)
    }

    fn path(&self) -> Option<&Path> {
        self.storage.path()
    }

    fn small_reads_cheap(&self) -> bool {
        self.local
    }
}

/// Sort and merge touching ranges.
pub(crate) fn merge(mut r: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    r.retain(|&(_, l)| l > 0);
    r.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(r.len());
    for (s, l) in r {
        match out.last_mut() {
            Some((ls, ll)) if *ls + *ll >= s => *ll = (*ll).max(s + l - *ls),
            _ => out.push((s, l)),
        }
    }
    out
}

/// The clusters (of `1 << bits` bytes) that `ranges` touch, as a sorted list of
/// `(first, count)` runs.
pub(crate) fn cluster_runs(ranges: &[(u64, u64)], bits: u32) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(s, l) in ranges {
        if l == 0 {
            continue;
        }
        let first = s >> bits;
        let end = (s + l - 1) >> bits;
        match out.last_mut() {
            Some((f, n)) if *f + *n >= first => *n = (*n).max(end + 1 - *f),
            _ => out.push((first, end + 1 - first)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_rounds_to_clusters() {
        assert_eq!(merge(vec![(10, 5), (0, 10), (20, 0)]), vec![(0, 15)]);
        assert_eq!(
            cluster_runs(&[(0, 1), (511, 2), (4096, 512)], 9),
            vec![(0, 2), (8, 1)]
        );
    }

    #[test]
    fn sparse_file_ranges() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let s = FileStorage::open_rw(f.path()).unwrap();
        s.set_len(8 << 20).unwrap();
        s.write_all_at(&[1; 4096], 1 << 20).unwrap();
        let src = StorageSource::open(f.path()).unwrap();
        let r = src.data_ranges(&mut Control::none()).unwrap();
        // tmpfs or a real file system: the data block, not the holes.
        assert!(r
            .iter()
            .any(|&(s, l)| s <= 1 << 20 && s + l >= (1 << 20) + 4096));
        assert!(r.iter().map(|r| r.1).sum::<u64>() < 8 << 20);
    }
}
