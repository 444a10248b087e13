//! `bmaptool create`: the mapped blocks of an image (from its extent map) and the checksum
//! of each range, hashed in parallel.

use std::ops::Range;
use std::path::Path;

use sparsekit_extents::{map_file, MapOptions};
use sparsekit_io::{Control, FileStorage, Phase, Storage};

use crate::format::{Bmap, BmapRange, ChecksumType, WRITE_VERSION};
use crate::{par, Error, Result};

/// Bytes read per call while hashing or copying a range.
pub(crate) const CHUNK: usize = 1 << 20;

/// The largest block size [`create`] picks on its own: bmaptool's blocks are the
/// filesystem's (`FIGETBSZ`), which is 4 KiB on ext4, XFS and btrfs.
pub const DEFAULT_BLOCK_SIZE: u64 = 4096;

/// What [`create`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreateOptions {
    /// The checksum of each range (`Some(Sha256)`, the default, as bmaptool; `Some(Sha1)`
    /// for old consumers; `None` for no range checksums, like `bmaptool create
    /// --no-checksum`, whose file checksum is still SHA-256).
    pub checksum: Option<ChecksumType>,
    /// Block size; `None` takes the filesystem's block size capped at
    /// [`DEFAULT_BLOCK_SIZE`]. Must be a power of two of at least 512.
    pub block_size: Option<u64>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            checksum: Some(ChecksumType::Sha256),
            block_size: None,
        }
    }
}

/// Create the bmap of the image at `path` (a regular file or a block device): its data
/// extents (FIEMAP with writeback first, else SEEK_DATA/SEEK_HOLE) rounded out to blocks,
/// and each range's checksum computed on rayon's thread pool. Progress: [`Phase::Map`],
/// then [`Phase::Hash`] over the mapped bytes.
///
/// Unwritten (preallocated) extents read as zeros and are left out, where bmaptool 3.6
/// lists them as mapped: both bmaps copy the same bytes.
pub fn create(path: &Path, opts: &CreateOptions, ctl: &mut Control<'_>) -> Result<Bmap> {
    let storage = FileStorage::open(path)?;
    ctl.report(Phase::Map, 0, None)?;
    let map = map_file(storage.file(), &MapOptions::default()).map_err(|e| e.with_path(path))?;
    ctl.report(Phase::Map, map.size, Some(map.size))?;
    let block_size = match opts.block_size {
        Some(b) => b,
        None => map.block_size.clamp(512, DEFAULT_BLOCK_SIZE),
    };
    create_from(
        &storage,
        map.size,
        &map.data_ranges(),
        block_size,
        opts.checksum,
        ctl,
    )
}

/// Create a bmap from any storage, given its size and its data byte ranges (sorted,
/// disjoint): what [`create`] does after mapping.
pub fn create_from<S: Storage + ?Sized>(
    image: &S,
    image_size: u64,
    data: &[Range<u64>],
    block_size: u64,
    checksum: Option<ChecksumType>,
    ctl: &mut Control<'_>,
) -> Result<Bmap> {
    if !block_size.is_power_of_two() || !(512..=crate::MAX_BLOCK_SIZE).contains(&block_size) {
        return Err(Error::InvalidArg {
            name: "block size",
            value: block_size.to_string(),
        });
    }
    let mut ranges: Vec<BmapRange> = Vec::new();
    for r in data.iter().filter(|r| !r.is_empty()) {
        let end = r.end.min(image_size);
        if r.start >= end {
            continue;
        }
        let (first, last) = (r.start / block_size, (end - 1) / block_size);
        match ranges.last_mut() {
            Some(p) if p.last + 1 >= first => p.last = p.last.max(last),
            _ => ranges.push(BmapRange {
                first,
                last,
                checksum: None,
            }),
        }
    }
    let mut bmap = Bmap {
        version: WRITE_VERSION.into(),
        image_size,
        block_size,
        blocks_count: image_size.div_ceil(block_size),
        mapped_blocks_count: ranges.iter().map(|r| r.blocks()).sum(),
        checksum_type: checksum.unwrap_or(ChecksumType::Sha256),
        file_checksum: None,
        ranges,
    };
    if let Some(cs) = checksum {
        let total = bmap.mapped_bytes();
        let sums = par::for_each(&bmap.ranges, total, Phase::Hash, ctl, |r, w| {
            let (start, end) = r.bytes(block_size, image_size);
            hash_range(image, start, end, cs, w)
        })?;
        for (r, s) in bmap.ranges.iter_mut().zip(sums) {
            r.checksum = Some(s);
        }
    }
    Ok(bmap)
}

/// The digest of `[start, end)` of `s`.
pub(crate) fn hash_range<S: Storage + ?Sized>(
    s: &S,
    start: u64,
    end: u64,
    cs: ChecksumType,
    w: &par::Worker<'_>,
) -> Result<String> {
    let mut h = cs.hasher();
    let mut buf = sparsekit_io::PageBuf::new(CHUNK.min((end - start) as usize));
    let mut off = start;
    while off < end {
        let n = ((end - off) as usize).min(buf.len());
        s.read_exact_at(&mut buf[..n], off)?;
        h.update(&buf[..n]);
        off += n as u64;
        w.done(n as u64)?;
    }
    Ok(h.finish_hex())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsekit_io::ErrorInfo;
    use sparsekit_io::{Fault, Faulty, MemStorage};

    #[test]
    fn ranges_round_to_blocks_and_hash() {
        let mut data = vec![0u8; 10 * 4096 + 10];
        data[100] = 1;
        data[4096 * 3 + 5] = 2;
        data[4096 * 10 + 3] = 3;
        let m = MemStorage::from_vec(data.clone());
        let ext = [100..101, 4096 * 3..4096 * 4 + 1, 4096 * 10..4096 * 10 + 10];
        let b = create_from(
            &m,
            data.len() as u64,
            &ext,
            4096,
            Some(ChecksumType::Sha256),
            &mut Control::none(),
        )
        .unwrap();
        let got: Vec<_> = b.ranges.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(got, vec![(0, 0), (3, 4), (10, 10)]);
        assert_eq!(b.mapped_blocks_count, 4);
        assert_eq!(b.blocks_count, 11);
        // The partial last block is hashed only up to the image's end.
        let want = ChecksumType::Sha256.digest_hex(&data[40960..]);
        assert_eq!(b.ranges[2].checksum.as_deref(), Some(want.as_str()));
        let again = Bmap::parse(b.to_xml().as_bytes()).unwrap();
        assert_eq!(again.ranges, b.ranges);
    }

    #[test]
    fn read_error_is_reported() {
        let m = Faulty::new(
            MemStorage::from_vec(vec![1u8; 65536]),
            Fault::ReadErrorAt(40000),
        );
        let e = create_from(
            &m,
            65536,
            std::slice::from_ref(&(0..65536)),
            4096,
            Some(ChecksumType::Sha1),
            &mut Control::none(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_IO");
        assert_eq!(e.raw_os_error(), Some(libc::EIO));
    }

    #[test]
    fn bad_block_size() {
        let m = MemStorage::new();
        for bs in [0, 1000, 256] {
            let e = create_from(&m, 0, &[], bs, None, &mut Control::none()).unwrap_err();
            assert_eq!(e.code(), "ERR_SPARSEKIT_INVALID_ARG");
        }
    }
}
