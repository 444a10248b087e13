//! Trimmed flashing ([`crate::FlashOptions::trim`]): without a bmap, the free blocks of a
//! random-access source, as its partition tables and file systems say
//! ([`sparsekit_layout::layout`]), are neither read nor written.
//!
//! The source's layout becomes a bmap ([`bmap_of_used`]: no checksums, 4 KiB blocks, every
//! used range rounded outward to whole blocks) and the engine's bmap path does the rest:
//! only mapped ranges are read, written and read back. Free means provably free: the
//! gap before the first partition, the tables, unknown or dirty file systems are all
//! used. Random-access sources are a plain local file, an HTTP(S) URL whose server takes
//! range requests, and a zip archive's *stored* entry (a window over the archive).
//! A compressed stream (gzip, xz, bzip2, zstd; a deflated zip entry; an HTTP server
//! without ranges) is refused with [`Error::TrimUnsupported`] before anything is written:
//! its free blocks are only known from metadata spread through the whole image.

use std::io::Read;
use std::ops::Range as StdRange;

use sparsekit_bmap::{Bmap, BmapRange, ChecksumType, Compression};
use sparsekit_io::{Control, Storage, Window};
use sparsekit_layout::Range;

use crate::error::{Error, Result};
use crate::source::{self, Input, Opened};

/// The block size of a trim's bmap: ranges are rounded outward to it.
pub const TRIM_BLOCK: u64 = 4096;

pub use crate::source::Trim;

/// A bmap (format 2.0, no checksums, [`TRIM_BLOCK`] blocks) mapping `used` (sorted,
/// disjoint byte ranges of an image of `size` bytes), each range rounded outward to
/// whole blocks so no used byte is left out; ranges that meet after rounding are merged.
pub fn bmap_of_used(size: u64, used: impl IntoIterator<Item = StdRange<u64>>) -> Bmap {
    let mut ranges: Vec<BmapRange> = Vec::new();
    for r in used {
        let end = r.end.min(size);
        if r.start >= end {
            continue;
        }
        let (first, last) = (r.start / TRIM_BLOCK, (end - 1) / TRIM_BLOCK);
        match ranges.last_mut() {
            Some(l) if first <= l.last + 1 => l.last = l.last.max(last),
            _ => ranges.push(BmapRange {
                first,
                last,
                checksum: None,
            }),
        }
    }
    Bmap {
        version: "2.0".into(),
        image_size: size,
        block_size: TRIM_BLOCK,
        blocks_count: size.div_ceil(TRIM_BLOCK),
        mapped_blocks_count: ranges.iter().map(|r| r.blocks()).sum(),
        checksum_type: ChecksumType::Sha256,
        file_checksum: None,
        ranges,
    }
}

/// The layout ranges as [`StdRange`]s.
fn std_ranges(used: &[Range]) -> impl Iterator<Item = StdRange<u64>> + '_ {
    used.iter().map(|r| r.offset..r.offset + r.length)
}

fn layout_error(e: sparsekit_layout::Error) -> Error {
    match e {
        sparsekit_layout::Error::Aborted => Error::Aborted,
        sparsekit_layout::Error::Io(io) => crate::error::error_of_io(io),
        e => Error::Layout(e),
    }
}

fn unsupported(opened: &Opened, why: impl Into<String>) -> Error {
    Error::TrimUnsupported {
        source_name: opened.label.display().to_string(),
        why: why.into(),
    }
}

/// The trim of `storage`: its layout as a bmap, and what it found.
fn trimmed(storage: &dyn Storage, ctl: &mut Control) -> Result<(Bmap, Trim)> {
    let l = sparsekit_layout::layout(storage, ctl).map_err(layout_error)?;
    let b = bmap_of_used(l.size, std_ranges(&l.used));
    Ok(trim_of(b))
}

fn trim_of(b: Bmap) -> (Bmap, Trim) {
    let used = b.mapped_bytes();
    let t = Trim {
        used_bytes: used,
        free_bytes: b.image_size - used,
    };
    (b, t)
}

/// Trim an opened source: with no bmap, read its layout and follow it as a bmap
/// ([`Opened::trim`] says what was found); with a bmap, nothing (the bmap says more).
/// A source that cannot be read at offsets is [`Error::TrimUnsupported`]. Reads the
/// source only (the layout's metadata); cancelled through `ctl`.
pub(crate) fn apply(mut opened: Opened, ctl: &mut Control) -> Result<Opened> {
    if opened.bmap.is_some() {
        opened.archive_bytes = None;
        return Ok(opened);
    }
    let input = std::mem::replace(
        &mut opened.input,
        Input::Stream {
            reader: Box::new(std::io::empty()),
            len: None,
            compressed: false,
        },
    );
    let (input, b, t) = match input {
        // Holes of a sparse image inside used ranges are read (as zeros) and written:
        // they are data (a FAT's empty clusters, zeroed tables), not provably free.
        Input::Plain(file) => {
            let (b, t) = trimmed(&file, ctl)?;
            (Input::Plain(file), b, t)
        }
        Input::Ranged(storage) => {
            let (b, t) = trimmed(&*storage, ctl)?;
            (Input::Ranged(storage), b, t)
        }
        Input::Zip { mut archive, index } => {
            let Some(bytes) = opened.archive_bytes.take() else {
                return Err(unsupported(
                    &opened,
                    "the zip archive cannot be read at offsets",
                ));
            };
            let window = stored_entry(&mut archive, index, bytes, &opened)?;
            let (b, t) = trimmed(&window, ctl)?;
            (Input::Ranged(Box::new(window)), b, t)
        }
        Input::Stream { compressed, .. } => {
            let why = if compressed {
                "it is a compressed stream"
            } else {
                "the server does not take range requests, so the image can only be streamed"
            };
            return Err(unsupported(&opened, why));
        }
    };
    opened.input = input;
    opened.bmap = Some(b);
    opened.trim = Some(t);
    Ok(opened)
}

/// The bytes of a zip archive's stored entry, read at offsets: a window over the
/// archive's bytes, checked to begin as the entry does. A deflated (or otherwise
/// compressed, or encrypted) entry, or a compressed image stored in one, is
/// [`Error::TrimUnsupported`].
fn stored_entry(
    archive: &mut source::ZipArchive,
    index: usize,
    bytes: Box<dyn Storage>,
    opened: &Opened,
) -> Result<Window<Box<dyn Storage>>> {
    let label = &opened.label;
    let (start, size) = {
        let f = archive
            .by_index_raw(index)
            .map_err(|e| source::zip_error(label, e))?;
        if f.encrypted() {
            return Err(unsupported(opened, "its zip entry is encrypted"));
        }
        if f.compression() != zip::CompressionMethod::Stored {
            return Err(unsupported(
                opened,
                format!(
                    "its zip entry is compressed ({}), a stream",
                    f.compression()
                ),
            ));
        }
        let Some(start) = f.data_start() else {
            return Err(Error::Zip {
                path: Some(label.clone()),
                message: "the entry's data offset is unknown".into(),
            });
        };
        (start, f.size())
    };
    let window = Window::new(bytes, start, size).map_err(|e| Error::Zip {
        path: Some(label.clone()),
        message: format!(
            "the stored entry ({size} bytes at offset {start}) ends past the archive: {e}"
        ),
    })?;
    // The entry's first bytes, through the zip reader and through the window: the same,
    // or the offset is not the data's.
    let n = size.min(4096) as usize;
    let mut want = vec![0u8; n];
    archive
        .by_index(index)
        .map_err(|e| source::zip_error(label, e))?
        .read_exact(&mut want)
        .map_err(|e| source::read_error(e, label))?;
    let mut got = vec![0u8; n];
    window
        .read_exact_at(&mut got, 0)
        .map_err(crate::error::error_of_io)?;
    if got != want {
        return Err(Error::Zip {
            path: Some(label.clone()),
            message: format!("the stored entry's data is not at offset {start}"),
        });
    }
    if Compression::detect(&got).is_some() {
        return Err(unsupported(
            opened,
            "its zip entry holds a compressed stream",
        ));
    }
    if source::is_zip(&got) {
        return Err(unsupported(opened, "its zip entry is another zip archive"));
    }
    Ok(window)
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_outward_and_merge() {
        let b = bmap_of_used(10 * 4096 + 100, [1..2, 4095..4097, 3 * 4096..3 * 4096 + 1]);
        let r: Vec<_> = b.ranges.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(r, vec![(0, 1), (3, 3)]);
        let b = bmap_of_used(10 * 4096 + 100, [10 * 4096..10 * 4096 + 100]);
        assert_eq!(
            b.ranges[0].bytes(b.block_size, b.image_size),
            (40960, 41060)
        );
        assert_eq!(b.blocks_count, 11);
        assert_eq!(b.mapped_blocks_count, 1);
        assert!(bmap_of_used(100, [200..300]).ranges.is_empty());
    }
}
