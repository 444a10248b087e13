//! Block hashing: SHA3-512 of one block, and the batch size the pipelines hash in parallel.

use crate::keccak4::{sha3_512, sha3_512_x4};
use crate::record::DIGEST_LEN;

/// Blocks per batch handed to the rayon pool: enough to keep every core busy, few enough
/// that a batch's buffers stay small (64 x 128 KiB = 8 MiB).
pub(crate) const BATCH_BLOCKS: usize = 64;
/// Payload bytes a batch may hold before it is processed, whatever the record lengths.
pub(crate) const BATCH_BYTES: u64 = 8 << 20;

/// BLAKE3 of `data` in the first 32 bytes of a 64-byte digest (the rest zero), so both
/// algorithms share one digest type inside the pipelines.
pub(crate) fn blake3_padded(data: &[u8]) -> [u8; DIGEST_LEN] {
    let mut out = [0u8; DIGEST_LEN];
    out[..32].copy_from_slice(blake3::hash(data).as_bytes());
    out
}

/// The digests of up to four blocks. SHA3-512: one 4-way call when all four have the same
/// length (the usual case: 128 KiB each), one by one otherwise. BLAKE3 (`blake3`): padded
/// to 64 bytes, see [`blake3_padded`].
pub(crate) fn hash_group(blocks: &[&[u8]], blake3: bool) -> Vec<[u8; DIGEST_LEN]> {
    if blake3 {
        return blocks.iter().map(|b| blake3_padded(b)).collect();
    }
    if blocks.len() == 4 {
        sha3_512_x4([blocks[0], blocks[1], blocks[2], blocks[3]]).to_vec()
    } else {
        blocks.iter().map(|b| sha3_512(b)).collect()
    }
}

/// Whether `[pos, pos + len)` lies inside one of `holes` (sorted, non-overlapping).
pub(crate) fn in_hole(holes: &[std::ops::Range<u64>], pos: u64, len: u64) -> bool {
    let i = holes.partition_point(|h| h.end <= pos);
    holes
        .get(i)
        .is_some_and(|h| h.start <= pos && pos + len <= h.end)
}

/// The digest of one block by the negotiated algorithm.
pub(crate) fn hash_one(b: &[u8], blake3: bool) -> [u8; DIGEST_LEN] {
    if blake3 {
        blake3_padded(b)
    } else {
        sha3_512(b)
    }
}

pub(crate) use sparsekit_io::PageBuf;

thread_local! {
    /// Four block buffers per worker thread, kept between tasks: fresh 128 KiB buffers
    /// would be fresh `mmap`s, page-faulted and zeroed for every block.
    static SCRATCH: std::cell::RefCell<Vec<PageBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f` with this thread's four page-aligned scratch buffers (their lengths are whatever
/// the last user left: resize before use). Buffers grown past 1 MiB are given back
/// afterwards.
pub(crate) fn with_scratch<T>(f: impl FnOnce(&mut [PageBuf]) -> T) -> T {
    SCRATCH.with(|cell| {
        let mut bufs = cell.borrow_mut();
        if bufs.len() < 4 {
            bufs.resize_with(4, PageBuf::default);
        }
        let r = f(&mut bufs[..4]);
        for b in bufs.iter_mut() {
            if b.capacity() > (1 << 20) {
                *b = PageBuf::default();
            }
        }
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_digest() {
        // FIPS 202 SHA3-512(""), as printed by `python3 -c 'import hashlib;
        // print(hashlib.sha3_512(b"").hexdigest())'`.
        let hex: String = sha3_512(b"").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "a69f73cca23a9ac5c8b567dc185a756e97c982164fe25859e0d1dcc1475c80a6\
             15b2123af1f5f94c11e3e9402c3ac558f500199d95b6d3e301758586281dcd26"
        );
    }
}
