//! End-to-end syncs (files and memory), cut and corrupt streams, failing destinations,
//! cancellation and progress.

use sparsekit_io::ErrorInfo;
use std::process::Command;

use sparsekit_blocksync::{
    checksum, retrieve, save, sync_files, ChecksumInput, ChecksumOptions, Error, RetrieveOptions,
    SaveOptions, BLOCK_SIZE,
};
use sparsekit_io::{Cancel, Control, Fault, Faulty, FileStorage, MemStorage, Phase, Storage};

mod common;
use common::{hash_stream, noise, streams};

const BS: usize = BLOCK_SIZE as usize;

/// checksum | retrieve | save in memory; returns the block stream.
fn pipeline(src: &dyn Storage, dst: &dyn Storage) -> Vec<u8> {
    let (_, blocks) = streams(src, dst, &RetrieveOptions::default(), None);
    save(
        dst,
        &blocks[..],
        &SaveOptions::default(),
        &mut Control::none(),
    )
    .unwrap();
    blocks
}

#[test]
fn destination_smaller_larger_equal_empty() {
    let src = noise(5 * BS + 777, 1);
    for dst_len in [0, 100, BS, 3 * BS + 5, 5 * BS + 777, 7 * BS + 3] {
        let mut old = noise(dst_len, 2);
        // Keep some blocks equal so that not everything travels.
        let same = dst_len.min(src.len()).min(2 * BS);
        old[..same].copy_from_slice(&src[..same]);
        let dst = MemStorage::from_vec(old.clone());
        pipeline(&MemStorage::from_vec(src.clone()), &dst);
        let got = dst.to_vec();
        assert_eq!(got.len(), dst_len.max(src.len()), "dst {dst_len}");
        assert!(
            got[..src.len()] == src[..],
            "dst {dst_len}: content differs"
        );
        // A larger destination keeps its tail.
        assert!(
            got[src.len()..] == old[src.len().min(dst_len)..],
            "dst {dst_len}: tail"
        );
    }
}

#[test]
fn only_changed_blocks_travel_between_files() {
    let dir = tempfile::tempdir().unwrap();
    let (sp, dp) = (dir.path().join("src"), dir.path().join("dst"));
    let src = noise(40 * BS + 1234, 3);
    let mut old = src.clone();
    let changed = [0usize, 7, 8, 39, 40];
    for &b in &changed {
        old[b * BS + 17] ^= 0xff;
    }
    std::fs::write(&sp, &src).unwrap();
    std::fs::write(&dp, &old).unwrap();
    let s = FileStorage::open(&sp).unwrap();
    let d = FileStorage::open_rw(&dp).unwrap();
    let sum = sync_files(&s, &d, &RetrieveOptions::default(), &mut Control::none()).unwrap();
    assert_eq!(sum.blocks_changed, 5);
    // Four full blocks and the 1234-byte last one, 16 header bytes each, and `done`.
    assert_eq!(sum.bytes_sent, (4 * (16 + BS) + 16 + 1234 + 4) as u64);
    assert_eq!(sum.hash_bytes, (41 * 80 + 12 + 4) as u64);
    assert_eq!(std::fs::read(&dp).unwrap(), src);
    match Command::new("md5sum").arg(&sp).arg(&dp).output() {
        Ok(o) if o.status.success() => {
            let out = String::from_utf8(o.stdout).unwrap();
            let sums: Vec<&str> = out.lines().map(|l| &l[..32]).collect();
            assert_eq!(sums[0], sums[1], "{out}");
        }
        _ => println!("md5sum not runnable: compared bytes only"),
    }
    // Synced again: nothing but `done` travels.
    let sum = sync_files(&s, &d, &RetrieveOptions::default(), &mut Control::none()).unwrap();
    assert_eq!((sum.blocks_changed, sum.bytes_sent), (0, 4));
}

/// Where a record ends in the stream, its position, its payload.
type Rec = (usize, u64, Vec<u8>);

/// A block stream of three records and `done`, with the byte where each record ends.
fn three_blocks() -> (Vec<u8>, Vec<Rec>) {
    let mut s = Vec::new();
    let mut recs = Vec::new();
    for (pos, len) in [(0u64, 10usize), (BS as u64, 300), (50, 5)] {
        let payload = noise(len, pos + 9);
        s.extend_from_slice(b"data");
        s.extend_from_slice(&pos.to_be_bytes());
        s.extend_from_slice(&(len as u32).to_be_bytes());
        s.extend_from_slice(&payload);
        recs.push((s.len(), pos, payload));
    }
    s.extend_from_slice(b"done");
    (s, recs)
}

#[test]
fn block_stream_cut_at_every_byte() {
    let (stream, recs) = three_blocks();
    let old = vec![0xaau8; 2 * BS];
    for cut in 0..stream.len() {
        let dst = MemStorage::from_vec(old.clone());
        let e = save(
            &dst,
            &stream[..cut],
            &SaveOptions::default(),
            &mut Control::none(),
        )
        .unwrap_err();
        let Error::Truncated {
            offset,
            got,
            expected,
            ..
        } = &e
        else {
            panic!("cut {cut}: {e}");
        };
        assert_eq!(offset + *got as u64, cut as u64, "cut {cut}: {e}");
        assert_eq!(e.code(), "ERR_SPARSEKIT_PROTOCOL");
        // The field named is the one the cut fell in.
        let in_rec = recs
            .iter()
            .rev()
            .find(|r| r.0 <= cut)
            .map_or(cut, |r| cut - r.0);
        let want = match in_rec {
            0..=3 => "record tag",
            4..=11 => "position",
            12..=15 => "length",
            _ => "bytes",
        };
        assert!(expected.contains(want), "cut {cut}: {e}");
        // Whole records before the cut are written, nothing else.
        let mut want_dst = old.clone();
        for (end, pos, payload) in &recs {
            if *end <= cut {
                want_dst[*pos as usize..*pos as usize + payload.len()].copy_from_slice(payload);
            }
        }
        assert!(dst.to_vec() == want_dst, "cut {cut}");
    }
    let dst = MemStorage::from_vec(old);
    save(
        &dst,
        &stream[..],
        &SaveOptions::default(),
        &mut Control::none(),
    )
    .unwrap();
}

#[test]
fn hash_stream_cut_at_every_byte() {
    let dst = MemStorage::from_vec(noise(2 * BS + 10, 20));
    let src = MemStorage::from_vec(noise(2 * BS + 10, 5));
    let hashes = hash_stream(&dst);
    for cut in 0..hashes.len() {
        let mut out = Vec::new();
        let e = retrieve(
            &src,
            &hashes[..cut],
            &mut out,
            &RetrieveOptions::default(),
            &mut Control::none(),
        )
        .unwrap_err();
        assert!(e.is_truncated(), "cut {cut}: {e}");
        assert!(e.offset().unwrap() as usize <= cut);
        assert!(!out.ends_with(b"done"), "cut {cut}: done sent");
    }
}

/// The block stream a complete run writes for the hash records `recs` (whole records of a
/// hash stream, without `done`), without its closing `done`.
fn complete_run(src: &MemStorage, recs: &[u8]) -> Vec<u8> {
    let mut hashes = recs.to_vec();
    hashes.extend_from_slice(b"done");
    let mut out = Vec::new();
    retrieve(
        src,
        &hashes[..],
        &mut out,
        &RetrieveOptions::default(),
        &mut Control::none(),
    )
    .unwrap();
    assert!(out.ends_with(b"done"));
    out.truncate(out.len() - 4);
    out
}

#[test]
fn hash_stream_cut_sends_the_blocks_received_as_blockcopy_does() {
    // blockcopy 0.0.2's retrieve on a hash stream without `done`: at a record boundary or
    // inside a tag it flushes its batch, so every block whose hash arrived goes out; inside
    // a record's payload it raises before flushing, so only its whole batches of 16 went
    // out. Then no `done`, and an error. Destination smaller (a `rest` follows) and larger.
    for (src_len, dst_len) in [(21 * BS + 9, 18 * BS + 5), (17 * BS + 3, 19 * BS)] {
        let src = MemStorage::from_vec(noise(src_len, 5));
        let mut old = noise(dst_len, 5);
        for b in (0..dst_len / BS).step_by(3) {
            old[b * BS + 7] ^= 1;
        }
        let dst = MemStorage::from_vec(old);
        let hashes = hash_stream(&dst);
        // Where each record ends, and its tag.
        let mut ends = Vec::new();
        let mut at = 0;
        while at < hashes.len() {
            let tag = &hashes[at..at + 4];
            at += match tag {
                b"Hash" => 80,
                b"rest" => 12,
                _ => 4,
            };
            ends.push((at, tag.to_vec()));
        }
        let mut cuts = vec![0, 2];
        for &(end, _) in &ends[..ends.len() - 1] {
            cuts.extend([end, end + 1, end + 3, end + 6, end + 14, end + 50]);
        }
        for cut in cuts.into_iter().filter(|&c| c < hashes.len()) {
            let mut out = Vec::new();
            let e = retrieve(
                &src,
                &hashes[..cut],
                &mut out,
                &RetrieveOptions::default(),
                &mut Control::none(),
            )
            .unwrap_err();
            assert!(e.is_truncated(), "cut {cut}: {e}");
            // The whole records received, and whether the cut fell inside a payload.
            let whole = ends.iter().take_while(|(end, _)| *end <= cut).count();
            let start = if whole == 0 { 0 } else { ends[whole - 1].0 };
            let mut keep = &hashes[..start];
            if cut - start >= 4 {
                // blockcopy's batch: the Hash records of blocks the source has, by 16.
                let queued: Vec<usize> = (0..whole)
                    .filter(|&i| {
                        let s = if i == 0 { 0 } else { ends[i - 1].0 };
                        ends[i].1 == b"Hash"
                            && u64::from_be_bytes(hashes[s + 4..s + 12].try_into().unwrap())
                                < src_len as u64
                    })
                    .collect();
                let sent = queued.len() / 16 * 16;
                keep = &hashes[..if sent == 0 {
                    0
                } else {
                    ends[queued[sent - 1]].0
                }];
            }
            let want = complete_run(&src, keep);
            assert!(
                out == want,
                "src {src_len} dst {dst_len} cut {cut}: {} bytes sent, {} expected ({e})",
                out.len(),
                want.len()
            );
        }
    }
}

#[test]
fn unknown_tags_and_bad_lengths() {
    let mut s = b"data".to_vec();
    s.extend_from_slice(&0u64.to_be_bytes());
    s.extend_from_slice(&1u32.to_be_bytes());
    s.push(b'x');
    s.extend_from_slice(b"Data");
    let e = save(
        &MemStorage::new(),
        &s[..],
        &SaveOptions::default(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::UnknownTag { offset: 17, tag, .. } if &tag == b"Data"),
        "{e}"
    );
    assert_eq!(e.code(), "ERR_SPARSEKIT_PROTOCOL");

    // A hash stream's tag in a block stream, and the reverse.
    let e = save(
        &MemStorage::new(),
        &b"rest\0\0\0\0\0\0\0\0done"[..],
        &SaveOptions::default(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::UnknownTag { offset: 0, .. }), "{e}");
    let mut out = Vec::new();
    let e = retrieve(
        &MemStorage::new(),
        &b"data"[..],
        &mut out,
        &RetrieveOptions::default(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::UnknownTag { offset: 0, .. }), "{e}");

    // Lengths past the limit are refused before anything is read or allocated.
    let mut h = b"Hash".to_vec();
    h.extend_from_slice(&0u64.to_be_bytes());
    h.extend_from_slice(&0x8000_0000u32.to_be_bytes());
    let e = retrieve(
        &MemStorage::new(),
        &h[..],
        &mut out,
        &RetrieveOptions::default(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadField {
                value: 0x8000_0000,
                ..
            }
        ),
        "{e}"
    );

    // A dlzm payload that is no xz.
    let mut z = b"dlzm".to_vec();
    z.extend_from_slice(&7u64.to_be_bytes());
    z.extend_from_slice(&3u32.to_be_bytes());
    z.extend_from_slice(b"abcdone");
    let dst = MemStorage::from_vec(vec![1; 20]);
    let e = save(&dst, &z[..], &SaveOptions::default(), &mut Control::none()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadCompressed {
                offset: 0,
                position: 7,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(dst.to_vec(), vec![1; 20]);
}

#[test]
fn enospc_mid_save_keeps_earlier_blocks() {
    let src = noise(8 * BS, 6);
    let mut old = src.clone();
    for b in [1usize, 3, 6] {
        old[b * BS] ^= 1;
    }
    // Writes ending past 5 blocks fail: blocks 1 and 3 land, block 6 does not.
    let dst = Faulty::new(
        MemStorage::from_vec(old.clone()),
        Fault::NoSpaceAfter(5 * BS as u64),
    );
    let hashes = hash_stream(&dst);
    let mut blocks = Vec::new();
    retrieve(
        &MemStorage::from_vec(src.clone()),
        &hashes[..],
        &mut blocks,
        &RetrieveOptions::default(),
        &mut Control::none(),
    )
    .unwrap();
    let e = save(
        &dst,
        &blocks[..],
        &SaveOptions::default(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    assert_eq!(e.code(), "ERR_SPARSEKIT_IO");
    assert_eq!(e.offset(), Some(6 * BS as u64));
    let got = dst.inner().to_vec();
    assert!(got[..6 * BS] == src[..6 * BS]);
    assert!(got[6 * BS..] == old[6 * BS..]);
}

#[test]
fn failing_destination_in_sync_files_names_the_cause() {
    let src = MemStorage::from_vec(noise(4 * BS, 7));
    let dst = Faulty::new(
        MemStorage::from_vec(vec![0; 4 * BS]),
        Fault::FailWritesAfter {
            n: 2,
            errno: libc::EIO,
        },
    );
    let e = sync_files(
        &src,
        &dst,
        &RetrieveOptions::default(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert!(dst.inner().to_vec()[..2 * BS] == src.to_vec()[..2 * BS]);
}

#[test]
fn cancelled_before_start() {
    let cancel = Cancel::new();
    cancel.cancel();
    let s = MemStorage::from_vec(vec![0; 3 * BS]);
    let mut out = Vec::new();
    let e = checksum(
        ChecksumInput::Storage(&s),
        &mut out,
        &ChecksumOptions::default(),
        &mut Control::with_cancel(cancel.clone()),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_ABORTED");
    let e = sync_files(
        &s,
        &s,
        &RetrieveOptions::default(),
        &mut Control::with_cancel(cancel),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Aborted), "{e}");
}

#[test]
fn cancelled_in_the_middle() {
    // The sink cancels after the first batch: the workers of the next batch stop.
    let s = MemStorage::from_vec(vec![0; 200 * BS]);
    let cancel = Cancel::new();
    let c2 = cancel.clone();
    let mut reports = 0;
    let mut out = Vec::new();
    let e = checksum(
        ChecksumInput::Storage(&s),
        &mut out,
        &ChecksumOptions::default(),
        &mut Control::new(cancel, |p| {
            reports += 1;
            if p.done > 0 {
                c2.cancel();
            }
        }),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Aborted));
    assert!(out.len() < 200 * 80, "stopped early");
}

#[test]
fn progress_ends_at_total_per_phase() {
    let src = MemStorage::from_vec(noise(3 * BS + 5, 10));
    let dst = MemStorage::from_vec(noise(2 * BS, 13));
    let mut seen = Vec::new();
    let mut hashes = Vec::new();
    checksum(
        ChecksumInput::Storage(&dst),
        &mut hashes,
        &ChecksumOptions::default(),
        &mut Control::new(Cancel::new(), |p| seen.push(p)),
    )
    .unwrap();
    let mut blocks = Vec::new();
    retrieve(
        &src,
        &hashes[..],
        &mut blocks,
        &RetrieveOptions::default(),
        &mut Control::new(Cancel::new(), |p| seen.push(p)),
    )
    .unwrap();
    save(
        &dst,
        &blocks[..],
        &SaveOptions::default(),
        &mut Control::new(Cancel::new(), |p| seen.push(p)),
    )
    .unwrap();
    for (phase, total) in [
        (Phase::Hash, 2 * BS as u64),
        (Phase::Send, 3 * BS as u64 + 5),
        (Phase::Write, 3 * BS as u64 + 5),
    ] {
        let last = seen.iter().rev().find(|p| p.phase == phase).unwrap();
        assert_eq!((last.done, last.total), (total, Some(total)), "{phase}");
        let finals = seen
            .iter()
            .filter(|p| p.phase == phase && p.total == Some(p.done) && p.done == total)
            .count();
        assert!(finals >= 1);
    }
}

#[test]
fn block_device_destination() {
    // A loop device of 3 MiB + 512 bytes (its size comes from BLKGETSIZE64, not st_size).
    let size = 3 * (1 << 20) + 512;
    let Some(dev) = sparsekit_testfs::LoopDev::new(size, 0x5a, "block_device_destination") else {
        return;
    };
    let src_bytes = noise(size as usize, 77);
    let mut dst_old = src_bytes.clone();
    for b in [0usize, 13, 24] {
        dst_old[b * BS + 1] ^= 0x33;
    }
    std::fs::write(&dev.backing, &dst_old).unwrap();
    let t = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(t.path(), &src_bytes).unwrap();
    let src = FileStorage::open(t.path()).unwrap();
    let d = FileStorage::open_rw(&dev.dev).unwrap();
    assert_eq!(d.size().unwrap(), size);
    let sum = sync_files(&src, &d, &RetrieveOptions::default(), &mut Control::none()).unwrap();
    assert_eq!(sum.blocks_changed, 3);
    drop(d);
    let mut got = vec![0u8; size as usize];
    FileStorage::open(&dev.dev)
        .unwrap()
        .read_exact_at(&mut got, 0)
        .unwrap();
    assert!(got == src_bytes);
}

#[test]
fn holes_extension_skips_holes_and_punches_zeros() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let (sp, dp) = (dir.path().join("src"), dir.path().join("dst"));
    // Source: 64 blocks, data only in blocks 0-1 and 40, holes elsewhere; block 50 is
    // written zeros (allocated, but all zero).
    let size = 64 * BS;
    let f = std::fs::File::create(&sp).unwrap();
    f.set_len(size as u64).unwrap();
    use std::os::unix::fs::FileExt;
    let data = noise(2 * BS, 31);
    f.write_all_at(&data, 0).unwrap();
    f.write_all_at(&noise(BS, 32), 40 * BS as u64).unwrap();
    f.write_all_at(&vec![0u8; BS], 50 * BS as u64).unwrap();
    f.sync_all().unwrap();
    // Destination: fully allocated old data, block 1 equal to the source's.
    let mut old = noise(size, 33);
    old[BS..2 * BS].copy_from_slice(&data[BS..]);
    std::fs::write(&dp, &old).unwrap();
    let before = std::fs::metadata(&dp).unwrap().blocks();

    let s = FileStorage::open(&sp).unwrap();
    let d = FileStorage::open_rw(&dp).unwrap();
    let src_holes = sparsekit_blocksync::hole_map(s.file());
    if src_holes.is_empty() {
        println!("SKIP holes_extension: the temp filesystem reports no holes");
        return;
    }
    let opts = RetrieveOptions {
        holes: Some(src_holes),
        dst_holes: sparsekit_blocksync::hole_map(d.file()),
        ..Default::default()
    };
    let sum = sync_files(&s, &d, &opts, &mut Control::none()).unwrap();
    assert_eq!(std::fs::read(&dp).unwrap(), std::fs::read(&sp).unwrap());
    // Blocks 0 and 40 as data, 61 zero blocks as 20-byte records (block 1 was equal).
    assert_eq!(sum.blocks_changed, 63);
    assert_eq!(
        sum.bytes_sent,
        8 + 2 * (16 + BS as u64) + 61 * 16 + 4,
        "SKx1 header, 2 data records, 61 zero records, done"
    );
    d.flush().unwrap();
    let after = std::fs::metadata(&dp).unwrap().blocks();
    assert!(
        after < before / 4,
        "holes punched: {before} -> {after} sectors"
    );

    // The other way round: a sparse destination is neither read nor hashed in its holes
    // (a read past block 41 would fail), and identical files send only the header and
    // `done`.
    let d2 = Faulty::new(
        MemStorage::from_vec(std::fs::read(&sp).unwrap()),
        // Reads at or past block 41 fail: all of it is in a hole.
        Fault::ReadErrorAt(41 * BS as u64),
    );
    let holes = vec![2 * BS as u64..40 * BS as u64, 41 * BS as u64..size as u64];
    let mut hashes = Vec::new();
    checksum(
        ChecksumInput::Storage(&d2),
        &mut hashes,
        &ChecksumOptions {
            holes: Some(holes.clone()),
            ..Default::default()
        },
        &mut Control::none(),
    )
    .unwrap();
    assert_eq!(&hashes[..8], b"SKx1\0\0\0\x02");
    assert_eq!(&hashes[8 + 2 * 80..8 + 2 * 80 + 4], b"Hole");
    let src_mem = MemStorage::from_vec(std::fs::read(&sp).unwrap());
    let mut blocks = Vec::new();
    retrieve(
        &src_mem,
        &hashes[..],
        &mut blocks,
        &RetrieveOptions {
            holes: Some(holes),
            ..Default::default()
        },
        &mut Control::none(),
    )
    .unwrap();
    assert_eq!(blocks, b"SKx1\0\0\0\x02done");
    // Without hole awareness the same destination fails at the bad sector in the hole.
    let e = checksum(
        ChecksumInput::Storage(&d2),
        &mut Vec::new(),
        &ChecksumOptions::default(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
}

#[test]
fn holes_extension_is_negotiated() {
    let dst = MemStorage::from_vec(noise(3 * BS, 41));
    let src = MemStorage::from_vec(noise(3 * BS, 43));
    let mut hashes = Vec::new();
    let holes = ChecksumOptions {
        holes: Some(vec![]),
        ..Default::default()
    };
    checksum(
        ChecksumInput::Storage(&dst),
        &mut hashes,
        &holes,
        &mut Control::none(),
    )
    .unwrap();
    for opts in [
        RetrieveOptions::default(),
        RetrieveOptions {
            blake3: true,
            ..Default::default()
        },
        RetrieveOptions {
            holes: Some(vec![]),
            blake3: true,
            ..Default::default()
        },
    ] {
        let e = retrieve(
            &src,
            &hashes[..],
            &mut Vec::new(),
            &opts,
            &mut Control::none(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_PROTOCOL", "{e}");
    }
    let mut blocks = Vec::new();
    let ok = RetrieveOptions {
        holes: Some(vec![]),
        ..Default::default()
    };
    retrieve(&src, &hashes[..], &mut blocks, &ok, &mut Control::none()).unwrap();
    let e = save(
        &dst,
        &blocks[..],
        &SaveOptions::default(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::UnknownTag { offset: 0, .. }), "{e}");
    let so = SaveOptions {
        holes: true,
        ..Default::default()
    };
    save(&dst, &blocks[..], &so, &mut Control::none()).unwrap();
    assert!(dst.to_vec() == src.to_vec());
}

/// The block stream retrieve must send when `recs` (position, length) are the blocks to
/// send, built from the spec: a `data` record each, in record order, cut at the source's end
/// (nothing past it), then `done`.
fn expected_blocks(src: &[u8], recs: &[(u64, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    for &(p, len) in recs {
        let (p, len) = (p as usize, len as usize);
        let n = len.min(src.len().saturating_sub(p));
        if n == 0 {
            continue;
        }
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(p as u64).to_be_bytes());
        out.extend_from_slice(&(n as u32).to_be_bytes());
        out.extend_from_slice(&src[p..p + n]);
    }
    out.extend_from_slice(b"done");
    out
}

#[test]
fn hash_streams_off_the_grid_give_the_same_answer() {
    // retrieve hashes the source ahead on the grid of the first record; records that leave
    // it (other lengths, jumps back and far ahead, repeats) are compared all the same.
    let src = noise(3 * BS + 5000, 31);
    let mut dst = src.clone();
    for p in [0usize, 4096 * 7 + 1, 4096 * 40, 2 * BS + 3, 3 * BS + 4000] {
        dst[p] ^= 0x5a;
    }
    let grid: Vec<(u64, u32)> = (0..100).map(|i| (i * 4096, 4096)).collect();
    let cases: Vec<Vec<(u64, u32)>> = vec![
        // On the grid of small blocks, past the source's end at the close.
        (0..(src.len() as u64 / 4096 + 3))
            .map(|i| (i * 4096, 4096))
            .collect(),
        // The grid, then lengths that change at every record.
        grid[..10]
            .iter()
            .copied()
            .chain([(40960, 1000), (41960, 131072), (173032, 77), (173109, 5000)])
            .collect(),
        // Backwards, repeated, and a jump past the lead before coming back.
        grid[..20]
            .iter()
            .copied()
            .chain([
                (0, 4096),
                (4096 * 7, 4096),
                (2 * BS as u64, 4096),
                (4096 * 40, 4096),
            ])
            .chain([(4096 * 7, 4096), (3 * BS as u64, 8192), (4096 * 41, 4096)])
            .collect(),
        // A first record of another length sets another grid.
        (0..60).map(|i| (i * 10_000 + 1, 10_000)).collect(),
        // Steps of 1 KiB: the jump lands past what may be hashed ahead (256 steps).
        (0..20)
            .map(|i| (i * 1024, 1024))
            .chain([
                (3 * BS as u64 + 3072, 1024),
                (28672, 1024),
                (3 * BS as u64, 1024),
            ])
            .collect(),
    ];
    for (k, recs) in cases.iter().enumerate() {
        let mut hashes = Vec::new();
        let mut want = Vec::new();
        for &(p, len) in recs {
            let (pu, n) = (p as usize, len as usize);
            let end = (pu + n).min(dst.len());
            hashes.extend_from_slice(b"Hash");
            hashes.extend_from_slice(&p.to_be_bytes());
            hashes.extend_from_slice(&len.to_be_bytes());
            hashes.extend_from_slice(&sparsekit_blocksync::sha3_512(&dst[pu.min(end)..end]));
            let sn = n.min(src.len().saturating_sub(pu));
            if sn < n || src[pu..pu + sn] != dst[pu..end] {
                want.push((p, len));
            }
        }
        hashes.extend_from_slice(b"done");
        assert!(!want.is_empty() && want.len() < recs.len(), "case {k}");
        let mut blocks = Vec::new();
        retrieve(
            &MemStorage::from_vec(src.clone()),
            &hashes[..],
            &mut blocks,
            &RetrieveOptions::default(),
            &mut Control::none(),
        )
        .unwrap();
        assert!(blocks == expected_blocks(&src, &want), "case {k}");
    }
}
