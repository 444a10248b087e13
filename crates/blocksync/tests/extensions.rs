//! The opt-in extensions `zstd`, `truncate` and `resume`: round trips, negotiation (a side
//! that did not opt in refuses), and cut streams (what landed stays, nothing past the cut is
//! written, a cut resumable session continues without re-sending what landed).

use sparsekit_blocksync::{
    checksum, retrieve, save, sync_files, BlockKind, ChecksumInput, ChecksumOptions, Error,
    HashRecord, RecordReader, ResumeState, RetrieveOptions, SaveOptions, Stream, BLOCK_SIZE,
};
use sparsekit_io::ErrorInfo;
use sparsekit_io::{Control, Fault, Faulty, MemStorage, Storage};

mod common;
use common::{noise, records, save_opts, streams, text};

const BS: usize = BLOCK_SIZE as usize;

#[test]
fn zstd_round_trip_negotiation_and_cut_streams() {
    let src = text(6 * BS + 1000, 1);
    // Destination: blocks 1 and 3 differ, and it ends after 4 blocks (the rest travels too).
    let mut old = src[..4 * BS].to_vec();
    for b in [1, 3] {
        old[b * BS + 10] ^= 0x55;
    }
    let s = MemStorage::from_vec(src.clone());
    let r = RetrieveOptions {
        zstd: true,
        ..Default::default()
    };
    let (hashes, blocks) = streams(&s, &MemStorage::from_vec(old.clone()), &r, None);
    assert_eq!(&blocks[..8], b"SKx1\0\0\0\x04");
    let recs = records(&blocks);
    // (In blockcopy's order: the rest goes before the unfinished batch of 16.)
    let kinds: Vec<_> = recs.iter().map(|r| (r.2.kind, r.2.position)).collect();
    let want: Vec<_> = [4, 5, 6, 1, 3]
        .iter()
        .map(|&b| (BlockKind::Zstd, (b * BS) as u64))
        .collect();
    assert_eq!(kinds, want);
    assert!(blocks.len() < 2 * BS / 3, "{} bytes", blocks.len());
    let d = MemStorage::from_vec(old.clone());
    let sum = save(&d, &blocks[..], &save_opts(&r, None), &mut Control::none()).unwrap();
    assert_eq!(sum.bytes_written, (4 * BS + 1000) as u64);
    assert!(d.to_vec() == src);

    // Negotiation: a plain save (as blockcopy's) stops at SKx1; a zstd save refuses a plain
    // stream; --lzma and --zstd exclude each other.
    let e = save(
        &MemStorage::from_vec(old.clone()),
        &blocks[..],
        &SaveOptions::default(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::UnknownTag { offset: 0, .. }), "{e}");
    let mut plain = Vec::new();
    retrieve(
        &s,
        &hashes[..],
        &mut plain,
        &RetrieveOptions::default(),
        &mut Control::none(),
    )
    .unwrap();
    let e = save(
        &MemStorage::from_vec(old.clone()),
        &plain[..],
        &save_opts(&r, None),
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::NotNegotiated { .. }), "{e}");
    let e = retrieve(
        &s,
        &hashes[..],
        &mut Vec::new(),
        &RetrieveOptions {
            zstd: true,
            lzma: true,
            ..Default::default()
        },
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_INVALID_ARG");

    // Cut at every byte of every field (headers, record starts and ends) and every 61st
    // byte inside payloads: the records that arrived whole are written, nothing else.
    let mut cuts: Vec<usize> = (0..40).chain((0..blocks.len()).step_by(61)).collect();
    for &(at, end, _) in &recs {
        cuts.extend(at as usize..at as usize + 20);
        cuts.extend(end as usize - 3..end as usize + 3);
    }
    cuts.retain(|&c| c < blocks.len());
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts {
        let d = MemStorage::from_vec(old.clone());
        let e = save(
            &d,
            &blocks[..cut],
            &save_opts(&r, None),
            &mut Control::none(),
        )
        .unwrap_err();
        assert!(e.is_truncated(), "cut {cut}: {e}");
        let mut want = old.clone();
        for &(_, end, h) in &recs {
            if end <= cut as u64 {
                let p = h.position as usize;
                let n = BS.min(src.len() - p);
                if want.len() < p + n {
                    want.resize(p + n, 0);
                }
                want[p..p + n].copy_from_slice(&src[p..p + n]);
            }
        }
        assert!(d.to_vec() == want, "cut at byte {cut}");
    }

    // A corrupted frame is refused (content checksum), and so is one that expands past the
    // record limit.
    let (first, end, _) = recs[0];
    let mut bad = blocks.clone();
    bad[(first + end) as usize / 2] ^= 0x40;
    let e = save(
        &MemStorage::from_vec(old.clone()),
        &bad[..],
        &save_opts(&r, None),
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::BadCompressed { .. }), "{e}");
    let bomb = zstd::bulk::compress(&vec![0u8; 17 << 20], 3).unwrap();
    let mut s2 = b"SKx1\0\0\0\x04dzst".to_vec();
    s2.extend_from_slice(&0u64.to_be_bytes());
    s2.extend_from_slice(&(bomb.len() as u32).to_be_bytes());
    s2.extend_from_slice(&bomb);
    s2.extend_from_slice(b"done");
    let e = save(
        &MemStorage::from_vec(vec![]),
        &s2[..],
        &save_opts(&r, None),
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("expands past"), "{e}");
}

#[test]
fn truncate_to_the_source_size() {
    let src = noise(3 * BS + 500, 3);
    for dst_len in [6 * BS, 3 * BS + 501, 2 * BS, 0] {
        let mut old = noise(dst_len, 4);
        old[..dst_len.min(BS)].copy_from_slice(&src[..dst_len.min(BS)]);
        let r = RetrieveOptions {
            truncate: true,
            ..Default::default()
        };
        let s = MemStorage::from_vec(src.clone());
        let (_, blocks) = streams(&s, &MemStorage::from_vec(old.clone()), &r, None);
        assert_eq!(&blocks[..8], b"SKx1\0\0\0\x08");
        assert_eq!(&blocks[8..12], b"size");
        assert_eq!(&blocks[12..20], &(src.len() as u64).to_be_bytes());
        assert_eq!(&blocks[20..24], &[0; 4]);
        let d = MemStorage::from_vec(old.clone());
        save(&d, &blocks[..], &save_opts(&r, None), &mut Control::none()).unwrap();
        assert!(d.to_vec() == src, "dst {dst_len}");
        // Cut before `done`: no truncation, the destination keeps its length.
        let d = MemStorage::from_vec(old.clone());
        let cut = &blocks[..blocks.len() - 4];
        assert!(save(&d, cut, &save_opts(&r, None), &mut Control::none())
            .unwrap_err()
            .is_truncated());
        assert_eq!(d.size().unwrap(), dst_len.max(src.len()) as u64);
        // A plain save refuses the extended stream.
        assert!(save(
            &MemStorage::from_vec(old.clone()),
            &blocks[..],
            &SaveOptions::default(),
            &mut Control::none()
        )
        .is_err());
    }
    // The size record must come first.
    let e = save(
        &MemStorage::from_vec(vec![1; 10]),
        &b"SKx1\0\0\0\x08done"[..],
        &SaveOptions {
            truncate: true,
            ..Default::default()
        },
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::Unexpected { offset: 8, .. }) && e.code() == "ERR_SPARSEKIT_PROTOCOL",
        "{e}"
    );
    // A destination whose flush after the truncation fails: an I/O error, not success.
    let d = Faulty::new(MemStorage::from_vec(noise(6 * BS, 5)), Fault::FlushFails);
    let r = RetrieveOptions {
        truncate: true,
        ..Default::default()
    };
    let e = sync_files(
        &MemStorage::from_vec(src.clone()),
        &d,
        &r,
        &mut Control::none(),
    );
    assert_eq!(e.unwrap_err().code(), "ERR_SPARSEKIT_IO");
    // sync_files with truncate.
    let d = MemStorage::from_vec(noise(6 * BS, 5));
    sync_files(
        &MemStorage::from_vec(src.clone()),
        &d,
        &r,
        &mut Control::none(),
    )
    .unwrap();
    assert!(d.to_vec() == src);
}

#[test]
fn resume_a_cut_session_without_resending_what_landed() {
    // Source: 250 blocks. Destination: its first 100 blocks with 4 of them changed, so the
    // session compares 100 blocks (checkpoints after 64 and 100) and sends 150 after `rest`
    // (checkpoints every 64 blocks).
    let src = noise(250 * BS + 77, 7);
    let mut old = src[..100 * BS].to_vec();
    for b in [3, 40, 70, 90] {
        old[b * BS + 1] ^= 1;
    }
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("dst.sksync-resume");
    let r = RetrieveOptions {
        blake3: true,
        resume: true,
        ..Default::default()
    };
    let s = MemStorage::from_vec(src.clone());
    let (hashes, blocks) = streams(&s, &MemStorage::from_vec(old.clone()), &r, Some(&journal));
    // A new session: Resm from 0, source size unknown.
    assert_eq!(&hashes[..8], b"SKx1\0\0\0\x11");
    assert_eq!(
        RecordReader::new(&hashes[8..], Stream::Hashes)
            .with_extensions()
            .read_hash_record()
            .unwrap()
            .1,
        HashRecord::Resume {
            from: 0,
            source_size: u64::MAX
        }
    );
    let recs = records(&blocks);
    let ckpts: Vec<u64> = recs
        .iter()
        .filter(|r| r.2.kind == BlockKind::Checkpoint)
        .map(|r| r.2.position)
        .collect();
    let b = BS as u64;
    assert_eq!(
        ckpts,
        [64 * b, 100 * b, 164 * b, 228 * b, src.len() as u64],
        "checkpoints"
    );
    assert_eq!(recs[0].2.kind, BlockKind::SourceSize);
    assert_eq!(recs[0].2.position, src.len() as u64);

    // Cut at every checkpoint boundary and inside data records around them.
    let mut cuts = vec![8, 30];
    for (i, &(at, end, h)) in recs.iter().enumerate() {
        if h.kind == BlockKind::Checkpoint {
            cuts.extend([at, end, end + 7]);
            if let Some(&(a2, e2, _)) = recs.get(i + 1) {
                cuts.push((a2 + e2) / 2);
            }
        }
    }
    cuts.push(blocks.len() as u64 - 4);
    cuts.retain(|&c| c < blocks.len() as u64);
    for cut in cuts {
        let cut = cut as usize;
        let _ = std::fs::remove_file(&journal);
        let d = MemStorage::from_vec(old.clone());
        let e = save(
            &d,
            &blocks[..cut],
            &save_opts(&r, Some(&journal)),
            &mut Control::none(),
        )
        .unwrap_err();
        assert!(e.is_truncated(), "cut {cut}: {e}");
        // The journal holds the last checkpoint that arrived whole.
        let landed = recs
            .iter()
            .rev()
            .find(|r| r.2.kind == BlockKind::Checkpoint && r.1 <= cut as u64)
            .map(|r| r.2.position);
        let state = ResumeState::load(&journal).unwrap();
        match landed {
            Some(c) => assert_eq!(
                state,
                ResumeState {
                    checkpoint: c,
                    source_size: src.len() as u64
                },
                "cut {cut}"
            ),
            None => assert_eq!(state, ResumeState::default(), "cut {cut}"),
        }
        // The second run starts at the checkpoint: no hash, no block below it.
        let (hashes2, blocks2) = streams(&s, &d, &r, Some(&journal));
        let mut rd = RecordReader::new(&hashes2[8..], Stream::Hashes).with_extensions();
        assert_eq!(
            rd.read_hash_record().unwrap().1,
            HashRecord::Resume {
                from: state.checkpoint,
                source_size: state.source_size
            }
        );
        match rd.read_hash_record().unwrap().1 {
            HashRecord::HashB3 { position, .. } => assert_eq!(position, state.checkpoint),
            HashRecord::Rest { offset } => {
                assert_eq!(offset, state.checkpoint.max(d.size().unwrap()))
            }
            other => panic!("cut {cut}: {other:?}"),
        }
        for (_, _, h) in records(&blocks2) {
            if matches!(h.kind, BlockKind::Data | BlockKind::Zero | BlockKind::Zstd) {
                assert!(h.position >= state.checkpoint, "cut {cut}: {h:?}");
            }
        }
        save(
            &d,
            &blocks2[..],
            &save_opts(&r, Some(&journal)),
            &mut Control::none(),
        )
        .unwrap();
        assert!(d.to_vec() == src, "cut {cut}");
        assert!(!journal.exists(), "the journal is removed at done");
    }

    // The source changed size since the cut session: refused.
    let d = MemStorage::from_vec(old.clone());
    let _ = save(
        &d,
        &blocks[..recs[2].1 as usize + 100],
        &save_opts(&r, Some(&journal)),
        &mut Control::none(),
    );
    let mut hashes3 = Vec::new();
    checksum(
        ChecksumInput::Storage(&d),
        &mut hashes3,
        &ChecksumOptions {
            blake3: true,
            resume: Some(ResumeState::load(&journal).unwrap()),
            ..Default::default()
        },
        &mut Control::none(),
    )
    .unwrap();
    let bigger = MemStorage::from_vec(noise(src.len() + 1, 8));
    let e = retrieve(
        &bigger,
        &hashes3[..],
        &mut Vec::new(),
        &r,
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_RESUME_MISMATCH", "{e}");
    // A retrieve that did not opt in refuses the resumed hash stream.
    let e = retrieve(
        &s,
        &hashes3[..],
        &mut Vec::new(),
        &RetrieveOptions {
            blake3: true,
            ..Default::default()
        },
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::NotNegotiated { .. }), "{e}");
    // A destination that cannot flush: the journal never claims a checkpoint whose blocks
    // did not reach the disk.
    let _ = std::fs::remove_file(&journal);
    let d = Faulty::new(MemStorage::from_vec(old.clone()), Fault::FlushFails);
    let e = save(
        &d,
        &blocks[..],
        &save_opts(&r, Some(&journal)),
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_IO", "{e}");
    assert!(!journal.exists());
    // A local sync has no journal.
    let e = sync_files(&s, &d, &r, &mut Control::none()).unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_INVALID_ARG");
}
