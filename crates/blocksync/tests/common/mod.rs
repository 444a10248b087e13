//! Helpers shared by the integration tests (`mod common;` in each).
#![allow(dead_code)]

use std::path::Path;

use sparsekit_blocksync::{
    checksum, retrieve, BlockHeader, ChecksumInput, ChecksumOptions, RecordReader, ResumeState,
    RetrieveOptions, SaveOptions, Stream,
};
use sparsekit_io::{Control, Storage};

/// Incompressible bytes (xorshift64), reproducible and different per seed (the seed is
/// spread by a golden-ratio multiply first, so seeds 0 and 1 differ too).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Compressible bytes: text-like runs, different per block.
pub fn text(n: usize, seed: u64) -> Vec<u8> {
    let words: [&[u8]; 6] = [
        b"sparse ", b"block ", b"sync ", b"zstd ", b"hole ", b"image ",
    ];
    let mut out = Vec::with_capacity(n + 8);
    let mut x = seed | 1;
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 6) as usize]);
    }
    out.truncate(n);
    out
}

pub fn save_opts(r: &RetrieveOptions, journal: Option<&Path>) -> SaveOptions {
    SaveOptions {
        blake3: r.blake3,
        holes: r.holes.is_some(),
        zstd: r.zstd,
        truncate: r.truncate,
        resume: journal.map(Path::to_path_buf),
    }
}

/// checksum | retrieve in memory (`journal`: a resumable session's): (hash stream, block
/// stream).
pub fn streams(
    src: &dyn Storage,
    dst: &dyn Storage,
    r: &RetrieveOptions,
    journal: Option<&Path>,
) -> (Vec<u8>, Vec<u8>) {
    let mut hashes = Vec::new();
    checksum(
        ChecksumInput::Storage(dst),
        &mut hashes,
        &ChecksumOptions {
            blake3: r.blake3,
            resume: journal.map(|j| ResumeState::load(j).unwrap()),
            ..Default::default()
        },
        &mut Control::none(),
    )
    .unwrap();
    let mut blocks = Vec::new();
    retrieve(src, &hashes[..], &mut blocks, r, &mut Control::none()).unwrap();
    (hashes, blocks)
}

/// The records of an extended block stream: (first byte, end byte, header).
pub fn records(blocks: &[u8]) -> Vec<(u64, u64, BlockHeader)> {
    let mut rd = RecordReader::new(blocks, Stream::Blocks).with_extensions();
    rd.read_ext_header().unwrap();
    let mut out = Vec::new();
    let mut payload = Vec::new();
    loop {
        let (at, h) = rd.read_block_header().unwrap();
        let Some(h) = h else { break };
        rd.read_payload(&h, &mut payload).unwrap();
        out.push((at, rd.bytes(), h));
    }
    out
}

/// The plain hash stream of `dst` (checksum with default options).
pub fn hash_stream(dst: &dyn Storage) -> Vec<u8> {
    let mut hashes = Vec::new();
    checksum(
        ChecksumInput::Storage(dst),
        &mut hashes,
        &ChecksumOptions::default(),
        &mut Control::none(),
    )
    .unwrap();
    hashes
}
