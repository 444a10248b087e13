//! Golden byte tests: streams built here from the spec's table (tags, big-endian fields),
//! with SHA3-512 digests and xz bytes computed outside this crate by Python's `hashlib`
//! and `lzma` (the modules blockcopy itself uses), so the encoder is checked byte for byte
//! against the protocol and not against itself.

use sparsekit_blocksync::{
    checksum, retrieve, save, BlockHeader, BlockKind, BlockRecord, ChecksumInput, ChecksumOptions,
    Error, HashRecord, RecordReader, RetrieveOptions, SaveOptions, Stream,
};
use sparsekit_io::ErrorInfo;
use sparsekit_io::{Control, FileStorage, MemStorage, Storage};

/// `((i * 7 + seed) % 251)`: the same bytes as Python's
/// `bytes(((i*7+seed)%251) for i in range(n))`.
fn pat(n: usize, seed: usize) -> Vec<u8> {
    (0..n).map(|i| ((i * 7 + seed) % 251) as u8).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `python3 -c 'import hashlib; print(hashlib.sha3_512(b", world").hexdigest())'`
const D_WORLD: &str = "a9dfdee8b746674ae7073ecb49fc9dc598341041631d4713deeb3976af2840d166100e45c18660144a4fd4c218209cc620993c6e229bc4d7de64b82aad4249eb";
/// SHA3-512 of `pat(300000, 3)[0:131072]`, `[131072:262144]`, `[262144:300000]`, by hashlib.
const D_P0: &str = "08efa5b60fefbec640a4db748005aa62e926425392aded48580277a0df4d3b151489638da4b8145096c76ea3c0ceacb34e38eb5b2cd4f149f878eef53816aa0d";
const D_P1: &str = "347115a2491d71b669a56f75aeed041e33e98a87f228a55711543ac59a5627b3d70496839bdac5c4bbcfdfbc2248acc9ff493aade1170a5f4fa151fed4ee3a99";
const D_P2: &str = "dc81f5053256c260c8f3bf0245e838f1627607c2a9d632e2d67c075905e0c02ba5067b9e5764d01955a1885b048e5a50599b357728767e9c2827488956de672d";
/// `python3 -c 'import lzma; print(lzma.compress(b"A"*1000).hex())'` (xz, preset 6, CRC64).
const XZ_A1000: &str = "fd377a585a000004e6d6b4460200210116000000742fe5a3e003e7000b5d0020effbbffea3b0b9a656000000683e883edcd64593000127e807000000f4558f5cb1c467fb020000000004595a";

/// The spec's `Hash` record, field by field.
fn hash_rec(pos: u64, len: u32, digest_hex: &str) -> Vec<u8> {
    let mut v = b"Hash".to_vec();
    v.extend_from_slice(&pos.to_be_bytes());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&unhex(digest_hex));
    assert_eq!(v.len(), 80);
    v
}

fn rest_rec(off: u64) -> Vec<u8> {
    let mut v = b"rest".to_vec();
    v.extend_from_slice(&off.to_be_bytes());
    v
}

fn block_rec(tag: &[u8; 4], pos: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = tag.to_vec();
    v.extend_from_slice(&pos.to_be_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn run_checksum(s: &dyn Storage, opts: &ChecksumOptions) -> Vec<u8> {
    let mut out = Vec::new();
    checksum(
        ChecksumInput::Storage(s),
        &mut out,
        opts,
        &mut Control::none(),
    )
    .unwrap();
    out
}

fn run_retrieve(src: &dyn Storage, hashes: &[u8], lzma: bool) -> Vec<u8> {
    let mut out = Vec::new();
    retrieve(
        src,
        hashes,
        &mut out,
        &RetrieveOptions {
            lzma,
            ..Default::default()
        },
        &mut Control::none(),
    )
    .unwrap();
    out
}

#[test]
fn checksum_partial_last_block_then_rest() {
    let s = MemStorage::from_vec(pat(300_000, 3));
    let mut want = hash_rec(0, 131_072, D_P0);
    want.extend(hash_rec(131_072, 131_072, D_P1));
    want.extend(hash_rec(262_144, 37_856, D_P2));
    want.extend(rest_rec(300_000));
    want.extend_from_slice(b"done");
    assert_eq!(run_checksum(&s, &ChecksumOptions::default()), want);
}

#[test]
fn checksum_start_alone_still_sends_rest() {
    // The spec's example: a 12-byte file with --start 5: Hash 5/7, rest 12, done.
    let s = MemStorage::from_vec(b"hello, world".to_vec());
    let mut want = hash_rec(5, 7, D_WORLD);
    want.extend(rest_rec(12));
    want.extend_from_slice(b"done");
    let opts = ChecksumOptions {
        start: 5,
        end: None,
        ..Default::default()
    };
    assert_eq!(run_checksum(&s, &opts), want);
}

#[test]
fn checksum_end_sends_no_rest() {
    let s = MemStorage::from_vec(pat(400_000, 3));
    let mut want = hash_rec(0, 131_072, D_P0);
    want.extend(hash_rec(131_072, 131_072, D_P1));
    want.extend_from_slice(b"done");
    let opts = ChecksumOptions {
        start: 0,
        end: Some(262_144),
        ..Default::default()
    };
    assert_eq!(run_checksum(&s, &opts), want);
}

#[test]
fn checksum_end_past_size_fails_before_sending() {
    let s = MemStorage::from_vec(vec![1; 100]);
    let mut out = Vec::new();
    let e = checksum(
        ChecksumInput::Storage(&s),
        &mut out,
        &ChecksumOptions {
            start: 0,
            end: Some(200),
            ..Default::default()
        },
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::EndPastSize {
                end: 200,
                size: 100,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.range(), Some((100, 200)));
    assert!(out.is_empty());
    let e = checksum(
        ChecksumInput::Storage(&s),
        &mut out,
        &ChecksumOptions {
            start: 50,
            end: Some(50),
            ..Default::default()
        },
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_INVALID_ARG");
}

#[test]
fn checksum_of_a_stream_sends_no_rest() {
    let data = pat(300_000, 3);
    let mut r = &data[..];
    let mut out = Vec::new();
    checksum(
        ChecksumInput::Stream(&mut r),
        &mut out,
        &ChecksumOptions::default(),
        &mut Control::none(),
    )
    .unwrap();
    let mut want = hash_rec(0, 131_072, D_P0);
    want.extend(hash_rec(131_072, 131_072, D_P1));
    want.extend(hash_rec(262_144, 37_856, D_P2));
    want.extend_from_slice(b"done");
    assert_eq!(out, want);
}

#[test]
fn checksum_of_empty_destination() {
    let s = MemStorage::new();
    let mut want = rest_rec(0);
    want.extend_from_slice(b"done");
    assert_eq!(run_checksum(&s, &ChecksumOptions::default()), want);
}

#[test]
fn checksum_of_a_real_file() {
    let t = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(t.path(), pat(300_000, 3)).unwrap();
    let f = FileStorage::open(t.path()).unwrap();
    let out = run_checksum(&f, &ChecksumOptions::default());
    assert_eq!(&out[80..160], &hash_rec(131_072, 131_072, D_P1)[..]);
    assert_eq!(out.len(), 3 * 80 + 12 + 4);
}

#[test]
fn retrieve_identical_sends_exactly_done() {
    let src = MemStorage::from_vec(pat(300_000, 3));
    let mut hashes = hash_rec(0, 131_072, D_P0);
    hashes.extend(hash_rec(131_072, 131_072, D_P1));
    hashes.extend(hash_rec(262_144, 37_856, D_P2));
    hashes.extend(rest_rec(300_000));
    hashes.extend_from_slice(b"done");
    assert_eq!(run_retrieve(&src, &hashes, false), b"done");
}

#[test]
fn retrieve_sends_only_the_differing_block() {
    let src_bytes = pat(300_000, 3);
    let src = MemStorage::from_vec(src_bytes.clone());
    // The destination's second block hashed differently (zeros: any other digest).
    let mut hashes = hash_rec(0, 131_072, D_P0);
    hashes.extend(hash_rec(131_072, 131_072, &"00".repeat(64)));
    hashes.extend(hash_rec(262_144, 37_856, D_P2));
    hashes.extend_from_slice(b"done");
    let mut want = block_rec(b"data", 131_072, &src_bytes[131_072..262_144]);
    want.extend_from_slice(b"done");
    assert_eq!(run_retrieve(&src, &hashes, false), want);
}

#[test]
fn retrieve_source_shorter_sends_partial_then_nothing() {
    // Destination 3 blocks; source ends 100 bytes into the second block.
    let src_bytes = pat(131_172, 3);
    let src = MemStorage::from_vec(src_bytes.clone());
    let mut hashes = hash_rec(0, 131_072, D_P0);
    hashes.extend(hash_rec(131_072, 131_072, D_P1));
    hashes.extend(hash_rec(262_144, 131_072, D_P2));
    hashes.extend(rest_rec(393_216));
    hashes.extend_from_slice(b"done");
    let mut want = block_rec(b"data", 131_072, &src_bytes[131_072..]);
    want.extend_from_slice(b"done");
    assert_eq!(run_retrieve(&src, &hashes, false), want);
}

#[test]
fn retrieve_source_longer_sends_rest_in_blocks() {
    let src_bytes = pat(300_000, 3);
    let src = MemStorage::from_vec(src_bytes.clone());
    let mut hashes = hash_rec(0, 131_072, D_P0);
    hashes.extend(rest_rec(131_072));
    hashes.extend_from_slice(b"done");
    let mut want = block_rec(b"data", 131_072, &src_bytes[131_072..262_144]);
    want.extend(block_rec(b"data", 262_144, &src_bytes[262_144..]));
    want.extend_from_slice(b"done");
    assert_eq!(run_retrieve(&src, &hashes, false), want);
}

#[test]
fn retrieve_empty_destination_sends_whole_source() {
    // blockcopy 0.0.2 crashes here (rest 0 before any Hash); the spec asks us not to.
    let src_bytes = pat(300_000, 3);
    let src = MemStorage::from_vec(src_bytes.clone());
    let mut hashes = rest_rec(0);
    hashes.extend_from_slice(b"done");
    let mut want = block_rec(b"data", 0, &src_bytes[..131_072]);
    want.extend(block_rec(b"data", 131_072, &src_bytes[131_072..262_144]));
    want.extend(block_rec(b"data", 262_144, &src_bytes[262_144..]));
    want.extend_from_slice(b"done");
    assert_eq!(run_retrieve(&src, &hashes, false), want);
}

#[test]
fn retrieve_accepts_deprecated_hash_records() {
    // `hash`: length u32, digest[64]; the position follows from the previous block.
    let src_bytes = pat(300_000, 3);
    let src = MemStorage::from_vec(src_bytes.clone());
    let mut hashes = Vec::new();
    for d in [D_P0, &"11".repeat(64), D_P2] {
        hashes.extend_from_slice(b"hash");
        let len: u32 = if d == D_P2 { 37_856 } else { 131_072 };
        hashes.extend_from_slice(&len.to_be_bytes());
        hashes.extend(unhex(d));
    }
    hashes.extend_from_slice(b"done");
    let mut want = block_rec(b"data", 131_072, &src_bytes[131_072..262_144]);
    want.extend_from_slice(b"done");
    assert_eq!(run_retrieve(&src, &hashes, false), want);
}

#[test]
fn retrieve_lzma_matches_python() {
    // A block that compresses goes as dlzm with exactly Python's lzma.compress bytes;
    // the rest goes raw.
    let src = MemStorage::from_vec(b"A".repeat(1000));
    let mut hashes = hash_rec(0, 1000, &"00".repeat(64));
    hashes.extend_from_slice(b"done");
    let mut want = block_rec(b"dlzm", 0, &unhex(XZ_A1000));
    want.extend_from_slice(b"done");
    assert_eq!(run_retrieve(&src, &hashes, true), want);

    // Incompressible bytes stay data even with --lzma.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let src = MemStorage::from_vec(noise.clone());
    let mut hashes = hash_rec(0, 4096, &"00".repeat(64));
    hashes.extend_from_slice(b"done");
    let out = run_retrieve(&src, &hashes, true);
    assert_eq!(&out[..4], b"data");
}

#[test]
fn save_decodes_golden_block_stream() {
    let dst = MemStorage::from_vec(vec![9u8; 5000]);
    let mut s = block_rec(b"data", 10, b"xyz");
    s.extend(block_rec(b"dlzm", 2000, &unhex(XZ_A1000)));
    s.extend(block_rec(b"data", 6000, b"tail"));
    s.extend_from_slice(b"done");
    s.extend_from_slice(b"garbage after done is never read");
    let sum = save(&dst, &s[..], &SaveOptions::default(), &mut Control::none()).unwrap();
    assert_eq!(sum.blocks_written, 3);
    assert_eq!(sum.bytes_written, 3 + 1000 + 4);
    assert_eq!(sum.stream_bytes, (s.len() - 32) as u64);
    let mut want = vec![9u8; 6004];
    want[10..13].copy_from_slice(b"xyz");
    want[2000..3000].fill(b'A');
    want[5000..6000].fill(0);
    want[6000..].copy_from_slice(b"tail");
    assert_eq!(dst.to_vec(), want);
}

#[test]
fn record_reader_decodes_every_record() {
    let mut s = hash_rec(7, 5, D_WORLD);
    s.extend_from_slice(b"hash");
    s.extend_from_slice(&3u32.to_be_bytes());
    s.extend(unhex(D_P0));
    s.extend(rest_rec(99));
    s.extend_from_slice(b"done");
    let mut r = RecordReader::new(&s[..], Stream::Hashes);
    let mut d = [0u8; 64];
    d.copy_from_slice(&unhex(D_WORLD));
    assert_eq!(
        r.read_hash_record().unwrap(),
        (
            0,
            HashRecord::Hash {
                position: 7,
                length: 5,
                digest: d
            }
        )
    );
    d.copy_from_slice(&unhex(D_P0));
    assert_eq!(
        r.read_hash_record().unwrap(),
        (
            80,
            HashRecord::HashSeq {
                length: 3,
                digest: d
            }
        )
    );
    assert_eq!(
        r.read_hash_record().unwrap(),
        (152, HashRecord::Rest { offset: 99 })
    );
    assert_eq!(r.read_hash_record().unwrap(), (164, HashRecord::Done));

    // And the encoder writes exactly these bytes back.
    let mut enc = Vec::new();
    HashRecord::Hash {
        position: 7,
        length: 5,
        digest: unhex(D_WORLD).try_into().unwrap(),
    }
    .encode(&mut enc);
    HashRecord::HashSeq {
        length: 3,
        digest: d,
    }
    .encode(&mut enc);
    HashRecord::Rest { offset: 99 }.encode(&mut enc);
    HashRecord::Done.encode(&mut enc);
    assert_eq!(enc, s);

    let mut b = block_rec(b"data", 1, b"ab");
    b.extend(block_rec(b"dlzm", 2, b"cd"));
    b.extend_from_slice(b"done");
    let mut r = RecordReader::new(&b[..], Stream::Blocks);
    let rec = |kind, position, p: &[u8]| BlockRecord::Block {
        header: BlockHeader {
            kind,
            position,
            length: p.len() as u32,
        },
        payload: p.to_vec(),
    };
    let recs = [
        rec(BlockKind::Data, 1, b"ab"),
        rec(BlockKind::Dlzm, 2, b"cd"),
        BlockRecord::Done,
    ];
    let mut enc = Vec::new();
    for want in &recs {
        assert_eq!(&r.read_block_record().unwrap().1, want);
        want.encode(&mut enc);
    }
    assert_eq!(enc, b);
}

/// The `--blake3` extension's checksum stream, from its definition: `SKx1` flags=1, then
/// `HshB` position u64, length u32, BLAKE3 digest[32] (the reference `blake3` crate).
#[test]
fn blake3_extension_stream_bytes() {
    let s = MemStorage::from_vec(b"hello, world".to_vec());
    let opts = ChecksumOptions {
        start: 5,
        blake3: true,
        ..Default::default()
    };
    let mut want = b"SKx1\0\0\0\x01HshB".to_vec();
    want.extend_from_slice(&5u64.to_be_bytes());
    want.extend_from_slice(&7u32.to_be_bytes());
    want.extend_from_slice(blake3::hash(b", world").as_bytes());
    want.extend(rest_rec(12));
    want.extend_from_slice(b"done");
    assert_eq!(run_checksum(&s, &opts), want);
}

fn b3_stream(dst: &MemStorage) -> Vec<u8> {
    run_checksum(
        dst,
        &ChecksumOptions {
            blake3: true,
            ..Default::default()
        },
    )
}

#[test]
fn blake3_extension_round_trip_and_negotiation() {
    let src_bytes = pat(300_000, 3);
    let src = MemStorage::from_vec(src_bytes.clone());
    let mut old = src_bytes.clone();
    old[140_000] ^= 1;
    let dst = MemStorage::from_vec(old);
    let b3 = RetrieveOptions {
        blake3: true,
        ..Default::default()
    };
    let hashes = b3_stream(&dst);
    let mut blocks = Vec::new();
    let r = retrieve(&src, &hashes[..], &mut blocks, &b3, &mut Control::none()).unwrap();
    assert_eq!(r.blocks_sent, 1);
    let mut want = b"SKx1\0\0\0\x01".to_vec();
    want.extend(block_rec(b"data", 131_072, &src_bytes[131_072..262_144]));
    want.extend_from_slice(b"done");
    assert_eq!(blocks, want);
    let so = SaveOptions {
        blake3: true,
        ..Default::default()
    };
    save(&dst, &blocks[..], &so, &mut Control::none()).unwrap();
    assert_eq!(dst.to_vec(), src_bytes);

    // A side that did not opt in never reads extension records as its own.
    let mut out = Vec::new();
    let e = retrieve(
        &src,
        &hashes[..],
        &mut out,
        &RetrieveOptions::default(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::UnknownTag { offset: 0, tag, .. } if &tag == b"SKx1"),
        "{e}"
    );
    let e = save(
        &dst,
        &blocks[..],
        &SaveOptions::default(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::UnknownTag { offset: 0, .. }), "{e}");
    // And a side that opted in refuses a plain peer.
    let plain = run_checksum(&dst, &ChecksumOptions::default());
    let e = retrieve(&src, &plain[..], &mut out, &b3, &mut Control::none()).unwrap_err();
    assert!(
        matches!(e, Error::NotNegotiated { tag, .. } if &tag == b"Hash"),
        "{e}"
    );
    assert_eq!(e.code(), "ERR_SPARSEKIT_PROTOCOL");
    let e = save(&dst, &b"done"[..], &so, &mut Control::none()).unwrap_err();
    assert!(matches!(e, Error::NotNegotiated { .. }), "{e}");
    // HshB in a plain stream (no header) is an unknown tag too.
    let e = retrieve(
        &src,
        &hashes[8..],
        &mut out,
        &RetrieveOptions::default(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::UnknownTag { tag, .. } if &tag == b"HshB"),
        "{e}"
    );
}

#[test]
fn retrieve_orders_rest_before_the_unfinished_batch_like_blockcopy() {
    // blockcopy hashes in batches of 16 and sends `rest` data before the blocks of its
    // unfinished batch (seen with blockcopy 0.0.2: a 10-block destination whose block 3
    // differs, synced from a longer source, gets blocks 10.. first, then block 3).
    let src_bytes = pat(5 * 131_072 + 9, 3);
    let src = MemStorage::from_vec(src_bytes.clone());
    let mut hashes = Vec::new();
    for b in 0..3u64 {
        let blk = &src_bytes[b as usize * 131_072..(b as usize + 1) * 131_072];
        let d = if b == 1 {
            "00".repeat(64)
        } else {
            sparsekit_blocksync::sha3_512(blk)
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect()
        };
        hashes.extend(hash_rec(b * 131_072, 131_072, &d));
    }
    hashes.extend(rest_rec(3 * 131_072));
    hashes.extend_from_slice(b"done");
    let mut want = block_rec(b"data", 3 * 131_072, &src_bytes[3 * 131_072..4 * 131_072]);
    want.extend(block_rec(
        b"data",
        4 * 131_072,
        &src_bytes[4 * 131_072..5 * 131_072],
    ));
    want.extend(block_rec(b"data", 5 * 131_072, &src_bytes[5 * 131_072..]));
    want.extend(block_rec(
        b"data",
        131_072,
        &src_bytes[131_072..2 * 131_072],
    ));
    want.extend_from_slice(b"done");
    assert_eq!(run_retrieve(&src, &hashes, false), want);
}

/// A reader that hands out at most `chunk` bytes per call and fails with EIO once `fail_at`
/// bytes were read.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
    fail_at: usize,
    read: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.read >= self.fail_at {
            return Err(std::io::Error::from_raw_os_error(libc_eio()));
        }
        let n = buf
            .len()
            .min(self.chunk)
            .min(self.data.len() - self.read)
            .min(self.fail_at - self.read);
        buf[..n].copy_from_slice(&self.data[self.read..self.read + n]);
        self.read += n;
        Ok(n)
    }
}

fn libc_eio() -> i32 {
    5 // EIO on Linux, macOS and Windows' CRT alike
}

#[test]
fn checksum_of_a_long_stream_equals_checksum_of_the_file() {
    // Three batches of 64 blocks and a part of a fourth (the stream side reads one batch
    // while the previous one hashes), read in uneven pieces, whole and with start/end.
    let data = pat(3 * 64 * 131_072 + 5 * 131_072 + 777, 9);
    let s = MemStorage::new();
    s.write_all_at(&data, 0).unwrap();
    for (start, end) in [(0, None), (1000, Some(2 * 64 * 131_072 + 4321))] {
        let opts = ChecksumOptions {
            start,
            end,
            ..Default::default()
        };
        let mut from_file = run_checksum(&s, &opts);
        if end.is_none() {
            // The file's stream ends with `rest`; a stream has none.
            let rest = rest_rec(data.len() as u64);
            let at = from_file.len() - 4 - rest.len();
            assert_eq!(&from_file[at..at + rest.len()], &rest[..]);
            from_file.drain(at..at + rest.len());
        }
        let mut r = Trickle {
            data: &data,
            chunk: 100_003,
            fail_at: usize::MAX,
            read: 0,
        };
        let mut out = Vec::new();
        checksum(
            ChecksumInput::Stream(&mut r),
            &mut out,
            &opts,
            &mut Control::none(),
        )
        .unwrap();
        assert!(out == from_file, "start {start}, end {end:?}");
    }
}

#[test]
fn checksum_of_a_failing_stream_sends_the_batches_read_before() {
    // EIO in the second batch: the first batch's 64 records are sent, then the error.
    let data = pat(3 * 64 * 131_072, 10);
    let mut r = Trickle {
        data: &data,
        chunk: 1 << 20,
        fail_at: 64 * 131_072 + 3000,
        read: 0,
    };
    let mut out = Vec::new();
    let e = checksum(
        ChecksumInput::Stream(&mut r),
        &mut out,
        &ChecksumOptions::default(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_IO", "{e}");
    let s = MemStorage::new();
    s.write_all_at(&data[..64 * 131_072], 0).unwrap();
    let want = run_checksum(&s, &ChecksumOptions::default());
    // The same 64 records, without the file's `rest` and `done`.
    assert_eq!(out.len(), 64 * (4 + 8 + 4 + 64));
    assert!(out[..] == want[..out.len()]);
}
