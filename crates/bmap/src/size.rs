//! The decompressed size of a compressed image, read from the container's own records
//! without decompressing anything, so that a destination too small for it is refused before
//! a single byte is written.
//!
//! - **xz** ([file format 1.2.1]): every stream ends with an index listing each block's
//!   uncompressed size and a footer giving the index's size. Walking the streams from the
//!   end of the file (stream padding, footer, index, then the stream's header) adds them up;
//!   the CRC32 of every footer and index is checked.
//! - **zstd** ([RFC 8878] section 3.1.1): a frame header may record the frame's content
//!   size. The frames are walked from the front (frame header, then each block header's
//!   size) and the sizes added; skippable frames count nothing. One frame without a recorded
//!   size makes the total unknown.
//! - **gzip** and **bzip2** record no trustworthy total (gzip's ISIZE is the size modulo
//!   2^32 of one member only): unknown.
//!
//! Every length read from the file is checked against the file's size before it is used;
//! a structure that does not fit is [`Error::Decompress`] naming its byte offset.
//!
//! [file format 1.2.1]: https://tukaani.org/xz/xz-file-format.txt
//! [RFC 8878]: https://www.rfc-editor.org/rfc/rfc8878#section-3.1.1

use sparsekit_io::Storage;

use crate::source::Compression;
use crate::zstd_frames::{zstd_content_size, zstd_header_fields};
use crate::{Error, Result};

/// Largest xz index read (each record takes at least 2 bytes, so this is over 8 million
/// blocks); a larger one makes the size unknown rather than allocating for it.
const MAX_XZ_INDEX: u64 = 16 << 20;
/// xz stream header and footer size.
const XZ_HF: u64 = 12;
const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];

/// The decompressed size of `src` (compressed as `format`) when its container records it,
/// `None` when it does not (gzip, bzip2, a zstd frame without a content size).
pub fn decompressed_size(src: &dyn Storage, format: Compression) -> Result<Option<u64>> {
    match format {
        Compression::Xz => xz_size(src).map(Some),
        Compression::Zstd => zstd_size(src),
        Compression::Gzip | Compression::Bzip2 => Ok(None),
    }
}

fn corrupt(format: Compression, at: u64, what: impl std::fmt::Display) -> Error {
    Error::Decompress {
        path: None,
        format: format.name(),
        offset: 0,
        message: format!("{what} (at compressed byte {at})"),
    }
}

fn read_exact(src: &dyn Storage, buf: &mut [u8], at: u64) -> Result<()> {
    src.read_exact_at(buf, at)?;
    Ok(())
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

/// An xz multibyte integer (at most 9 bytes, 7 bits each, least significant first) at
/// `buf[*i..]`.
fn xz_varint(buf: &[u8], i: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for k in 0..9 {
        let b = *buf.get(*i)?;
        *i += 1;
        v |= u64::from(b & 0x7f) << (7 * k);
        if b & 0x80 == 0 {
            // A multibyte integer never ends with a zero byte after the first one.
            if b == 0 && k > 0 {
                return None;
            }
            return Some(v);
        }
    }
    None
}

fn xz_size(src: &dyn Storage) -> Result<u64> {
    let f = Compression::Xz;
    let mut pos = src.size()?;
    let mut total: u64 = 0;
    let mut streams = 0u64;
    while pos > 0 {
        // Stream padding: null bytes in multiples of four.
        pos = skip_padding(src, pos)?;
        if pos == 0 && streams > 0 {
            break;
        }
        if pos < 2 * XZ_HF {
            return Err(corrupt(
                f,
                pos,
                "no room for an xz stream header and footer",
            ));
        }
        let mut foot = [0u8; 12];
        read_exact(src, &mut foot, pos - XZ_HF)?;
        let foot_at = pos - XZ_HF;
        if &foot[10..12] != b"YZ" {
            return Err(corrupt(f, foot_at, "no xz stream footer magic"));
        }
        if crc32(&foot[4..10]) != u32::from_le_bytes(foot[0..4].try_into().unwrap()) {
            return Err(corrupt(f, foot_at, "xz stream footer CRC32 mismatch"));
        }
        let index_size = (u64::from(u32::from_le_bytes(foot[4..8].try_into().unwrap())) + 1) * 4;
        if index_size > foot_at - XZ_HF {
            return Err(corrupt(f, foot_at, "xz index larger than its stream"));
        }
        if index_size > MAX_XZ_INDEX {
            return Err(corrupt(f, foot_at, "xz index over 16 MiB"));
        }
        let index_at = foot_at - index_size;
        let mut index = vec![0u8; index_size as usize];
        read_exact(src, &mut index, index_at)?;
        let (blocks, size) =
            xz_index(&index).ok_or_else(|| corrupt(f, index_at, "bad xz index"))?;
        let body = blocks
            .checked_add(index_size + 2 * XZ_HF)
            .filter(|&b| b <= pos)
            .ok_or_else(|| corrupt(f, index_at, "xz blocks larger than the file"))?;
        let head_at = pos - body;
        let mut head = [0u8; 12];
        read_exact(src, &mut head, head_at)?;
        if head[..6] != XZ_MAGIC {
            return Err(corrupt(
                f,
                head_at,
                "no xz stream header where the index says",
            ));
        }
        if head[6..8] != foot[8..10] {
            return Err(corrupt(
                f,
                head_at,
                "xz stream header and footer flags differ",
            ));
        }
        total = total
            .checked_add(size)
            .ok_or_else(|| corrupt(f, index_at, "xz sizes overflow"))?;
        streams += 1;
        pos = head_at;
    }
    Ok(total)
}

/// Back over stream padding (null bytes, a multiple of four) ending at `pos`.
fn skip_padding(src: &dyn Storage, mut pos: u64) -> Result<u64> {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = pos.min(buf.len() as u64) as usize & !3;
        if n == 0 {
            return Ok(pos);
        }
        read_exact(src, &mut buf[..n], pos - n as u64)?;
        let zeros = buf[..n].iter().rev().take_while(|&&b| b == 0).count() & !3;
        pos -= zeros as u64;
        if zeros < n {
            return Ok(pos);
        }
    }
}

/// Parse an xz index: (bytes its blocks take in the file, their uncompressed size).
fn xz_index(index: &[u8]) -> Option<(u64, u64)> {
    let (body, crc) = index.split_at(index.len().checked_sub(4)?);
    if crc32(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    if body.first() != Some(&0) {
        return None;
    }
    let mut i = 1;
    let records = xz_varint(body, &mut i)?;
    // Each record is at least two bytes.
    if records > (body.len() as u64) / 2 {
        return None;
    }
    let (mut blocks, mut size) = (0u64, 0u64);
    for _ in 0..records {
        let unpadded = xz_varint(body, &mut i)?;
        let uncompressed = xz_varint(body, &mut i)?;
        if unpadded == 0 {
            return None;
        }
        blocks = blocks.checked_add(unpadded.checked_add(3)? & !3)?;
        size = size.checked_add(uncompressed)?;
    }
    // Index padding up to a multiple of four, all zero.
    if (i + 3) & !3 != body.len() || body[i..].iter().any(|&b| b != 0) {
        return None;
    }
    Some((blocks, size))
}

/// Small reads at increasing offsets, served from one 64 KiB window.
struct Window<'a> {
    src: &'a dyn Storage,
    size: u64,
    at: u64,
    buf: Vec<u8>,
}

impl Window<'_> {
    fn get(&mut self, off: u64, len: usize) -> Result<Option<&[u8]>> {
        if off.checked_add(len as u64).is_none_or(|e| e > self.size) {
            return Ok(None);
        }
        let have = off >= self.at && off + len as u64 <= self.at + self.buf.len() as u64;
        if !have {
            let n = (self.size - off).min(64 << 10) as usize;
            self.buf.resize(n, 0);
            self.src.read_exact_at(&mut self.buf, off)?;
            self.at = off;
        }
        let s = (off - self.at) as usize;
        Ok(Some(&self.buf[s..s + len]))
    }
}

fn zstd_size(src: &dyn Storage) -> Result<Option<u64>> {
    let f = Compression::Zstd;
    let size = src.size()?;
    let mut w = Window {
        src,
        size,
        at: 0,
        buf: Vec::new(),
    };
    let mut pos = 0u64;
    let mut total = 0u64;
    while pos < size {
        let Some(m) = w.get(pos, 4)? else {
            return Err(corrupt(f, pos, "truncated zstd frame magic"));
        };
        let magic = u32::from_le_bytes(m.try_into().unwrap());
        if magic & 0xffff_fff0 == 0x184d_2a50 {
            // Skippable frame: magic, 4-byte length, that many bytes.
            let Some(l) = w.get(pos + 4, 4)? else {
                return Err(corrupt(f, pos, "truncated zstd skippable frame"));
            };
            let len = u64::from(u32::from_le_bytes(l.try_into().unwrap()));
            pos = pos + 8 + len;
            if pos > size {
                return Err(corrupt(f, pos, "zstd skippable frame past the end"));
            }
            continue;
        }
        if magic != 0xfd2f_b528 {
            return Err(corrupt(f, pos, "no zstd frame magic"));
        }
        let Some(&[fhd]) = w.get(pos + 4, 1)? else {
            return Err(corrupt(f, pos, "truncated zstd frame header"));
        };
        if fhd & 0x08 != 0 {
            return Err(corrupt(f, pos + 4, "zstd frame header reserved bit set"));
        }
        let (fields, fcs_len) = zstd_header_fields(fhd);
        let fcs_at = pos + 5 + (fields - fcs_len) as u64;
        if fcs_len == 0 {
            // No content size recorded: the total is unknown.
            return Ok(None);
        }
        let Some(b) = w.get(fcs_at, fcs_len)? else {
            return Err(corrupt(f, pos, "truncated zstd frame header"));
        };
        let content = zstd_content_size(b);
        total = total
            .checked_add(content)
            .ok_or_else(|| corrupt(f, pos, "zstd content sizes overflow"))?;
        // Blocks: 3-byte header (last flag, type, size), then the block's bytes.
        let mut b = fcs_at + fcs_len as u64;
        loop {
            let Some(h) = w.get(b, 3)? else {
                return Err(corrupt(f, b, "truncated zstd block header"));
            };
            let h = u32::from(h[0]) | u32::from(h[1]) << 8 | u32::from(h[2]) << 16;
            let last = h & 1 != 0;
            let len = match (h >> 1) & 3 {
                0 | 2 => u64::from(h >> 3),
                1 => 1,
                _ => return Err(corrupt(f, b, "reserved zstd block type")),
            };
            b += 3 + len;
            if b > size {
                return Err(corrupt(f, b, "zstd block past the end of the file"));
            }
            if last {
                break;
            }
        }
        if fhd & 0x04 != 0 {
            b += 4;
            if b > size {
                return Err(corrupt(f, b, "truncated zstd content checksum"));
            }
        }
        pos = b;
    }
    Ok(Some(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsekit_io::ErrorInfo;
    use sparsekit_io::MemStorage;
    use std::io::Write;

    fn data(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| ((i * 7919) >> 5) as u8 ^ (i as u8))
            .collect()
    }

    fn xz(d: &[u8]) -> Vec<u8> {
        let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
        e.write_all(d).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn xz_single_and_multi_stream_with_padding() {
        let a = data(300_000);
        let b = data(70_001);
        let one = xz(&a);
        let m = MemStorage::from_vec(one.clone());
        assert_eq!(
            decompressed_size(&m, Compression::Xz).unwrap(),
            Some(300_000)
        );
        let mut two = one.clone();
        two.extend_from_slice(&[0u8; 8]); // stream padding
        two.extend_from_slice(&xz(&b));
        two.extend_from_slice(&[0u8; 4]);
        let m = MemStorage::from_vec(two);
        assert_eq!(
            decompressed_size(&m, Compression::Xz).unwrap(),
            Some(370_001)
        );
        let m = MemStorage::from_vec(xz(&[]));
        assert_eq!(decompressed_size(&m, Compression::Xz).unwrap(), Some(0));
    }

    #[test]
    fn xz_damage_is_a_coded_error_never_a_panic() {
        let good = xz(&data(200_000));
        // Every truncation and a flipped byte at every position in the trailer.
        for cut in 0..good.len().min(64) {
            let m = MemStorage::from_vec(good[..good.len() - 1 - cut].to_vec());
            if let Err(e) = decompressed_size(&m, Compression::Xz) {
                assert_eq!(e.code(), "ERR_SPARSEKIT_DECOMPRESS", "{e}");
            }
        }
        for i in good.len().saturating_sub(80)..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x41;
            let m = MemStorage::from_vec(bad);
            match decompressed_size(&m, Compression::Xz) {
                Err(e) => assert_eq!(e.code(), "ERR_SPARSEKIT_DECOMPRESS", "{e}"),
                // A flip the CRCs do not cover (block data) leaves the size readable.
                Ok(s) => assert_eq!(s, Some(200_000), "flip at {i}"),
            }
        }
        let m = MemStorage::from_vec(vec![0u8; 4096]);
        assert!(decompressed_size(&m, Compression::Xz).is_err());
    }

    #[test]
    fn zstd_frames_with_and_without_sizes() {
        let a = data(500_000);
        let one = zstd::bulk::compress(&a, 3).unwrap();
        let m = MemStorage::from_vec(one.clone());
        assert_eq!(
            decompressed_size(&m, Compression::Zstd).unwrap(),
            Some(500_000)
        );
        // Two frames and a skippable frame between them.
        let mut two = one.clone();
        two.extend_from_slice(&0x184d_2a53u32.to_le_bytes());
        two.extend_from_slice(&5u32.to_le_bytes());
        two.extend_from_slice(b"hello");
        two.extend_from_slice(&zstd::bulk::compress(&a[..1000], 19).unwrap());
        let m = MemStorage::from_vec(two);
        assert_eq!(
            decompressed_size(&m, Compression::Zstd).unwrap(),
            Some(501_000)
        );
        // A streamed frame records no size.
        let mut e = zstd::Encoder::new(Vec::new(), 3).unwrap();
        e.include_contentsize(false).unwrap();
        e.write_all(&a).unwrap();
        let m = MemStorage::from_vec(e.finish().unwrap());
        assert_eq!(decompressed_size(&m, Compression::Zstd).unwrap(), None);
        for cut in 1..40 {
            let m = MemStorage::from_vec(one[..one.len() - cut].to_vec());
            let e = decompressed_size(&m, Compression::Zstd).unwrap_err();
            assert_eq!(e.code(), "ERR_SPARSEKIT_DECOMPRESS", "{e}");
        }
    }

    #[test]
    fn gzip_and_bzip2_are_unknown() {
        let m = MemStorage::from_vec(vec![0x1f, 0x8b, 8, 0]);
        assert_eq!(decompressed_size(&m, Compression::Gzip).unwrap(), None);
        assert_eq!(decompressed_size(&m, Compression::Bzip2).unwrap(), None);
    }
}
