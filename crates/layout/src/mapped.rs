//! What a bmap of an image should map: the image file's allocated extents that file
//! systems use (`bmap create --fs`), for images that have no holes.

use std::ops::Range as StdRange;

use sparsekit_extents::{map_file, MapOptions};
use sparsekit_io::{Control, FileStorage};

use crate::error::Error;
use crate::{layout, Layout, Range};

/// The result of [`mapped_ranges`].
#[derive(Clone, Debug)]
pub struct Mapped {
    /// The image size.
    pub size: u64,
    /// The block size of the file system holding the image.
    pub block_size: u64,
    /// Byte ranges that are both allocated in the image file and used by its layout:
    /// sorted, disjoint.
    pub ranges: Vec<StdRange<u64>>,
    /// The layout they come from.
    pub layout: Layout,
}

/// The ranges of `image` worth copying: allocated (FIEMAP or SEEK_DATA; everything on a
/// block device) and used by the image's partition tables and file systems (see
/// [`layout`]). A bmap made of them lets `bmaptool copy` skip free space even in an
/// image without holes.
pub fn mapped_ranges(image: &FileStorage, ctl: &mut Control) -> Result<Mapped, Error> {
    let map = map_file(image.file(), &MapOptions::default()).map_err(Error::Extents)?;
    let l = layout(image, ctl)?;
    Ok(Mapped {
        size: map.size,
        block_size: map.block_size,
        ranges: intersect(&l.used, &map.data_ranges()),
        layout: l,
    })
}

/// The intersection of two sorted lists of disjoint ranges.
pub fn intersect(used: &[Range], data: &[StdRange<u64>]) -> Vec<StdRange<u64>> {
    let mut out: Vec<StdRange<u64>> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < used.len() && j < data.len() {
        let (a0, a1) = (used[i].offset, used[i].offset + used[i].length);
        let (b0, b1) = (data[j].start, data[j].end);
        let (s, e) = (a0.max(b0), a1.min(b1));
        if s < e {
            match out.last_mut() {
                Some(l) if l.end == s => l.end = e,
                _ => out.push(s..e),
            }
        }
        if a1 <= b1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    fn r(offset: u64, length: u64) -> Range {
        Range { offset, length }
    }

    #[test]
    fn intersections() {
        assert_eq!(
            intersect(&[r(0, 10), r(20, 10)], &[5..25]),
            vec![5..10, 20..25]
        );
        assert_eq!(
            intersect(&[r(0, 100)], &[0..10, 50..60]),
            vec![0..10, 50..60]
        );
        assert_eq!(intersect(&[r(0, 10)], &[10..20]), vec![]);
        assert_eq!(intersect(&[], &[0..5]), vec![]);
        assert_eq!(intersect(&[r(0, 5), r(5, 5)], &[0..10]), vec![0..10]);
    }
}
