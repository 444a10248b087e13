//! The flash writer through sector-aligned storage ([`sparsekit_drives::SectorAligned`]),
//! what a Windows disk opened `FILE_FLAG_NO_BUFFERING` is.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use sparsekit_drives::SectorAligned;
use sparsekit_flash::{flash_to, FlashOptions, Target};
use sparsekit_io::MemStorage;
use sparsekit_testfs::{pattern, sector::Strict};

/// The flash writer through a disk that takes only aligned transfers (what a Windows
/// disk opened `FILE_FLAG_NO_BUFFERING` is): an image whose size is no multiple of the
/// sector size is written (its last sector read, merged and rewritten), read back
/// through unaligned buffers, and the bytes after it on the disk are kept.
#[test]
fn flash_writer_through_an_aligned_only_disk() {
    use sparsekit_io::Control;
    let dir = tempfile::tempdir().unwrap();
    let data = pattern((3 << 20) + 777, 5);
    let src = dir.path().join("img");
    std::fs::write(&src, &data).unwrap();
    for sector in [512u32, 4096] {
        let mem = Arc::new(MemStorage::from_vec(vec![0xEE; 5 << 20]));
        let disk = SectorAligned::new(
            Strict {
                mem: mem.clone(),
                sector: sector as u64,
                calls: AtomicU64::new(0),
            },
            sector,
            true,
        );
        let targets = vec![Target {
            path: "disk".into(),
            dst: Ok(Box::new(disk)),
        }];
        let r = flash_to(
            src.to_str().unwrap(),
            targets,
            &FlashOptions::default(),
            None,
            &mut Control::none(),
        )
        .unwrap();
        let d = &r.destinations[0];
        assert!(d.error.is_none() && d.verified, "{:?}", d.error);
        let got = mem.to_vec();
        assert!(got[..data.len()] == data[..], "sector {sector}");
        assert!(
            got[data.len()..].iter().all(|&b| b == 0xEE),
            "sector {sector}"
        );
    }
}
