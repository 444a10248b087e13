//! Trimmed flashing ([`FlashOptions::trim`], issue 23): an MBR image with a FAT32 and an
//! ext4 partition (files, some deleted) and random bytes before the first partition,
//! built without root (mkfs on files, mtools, debugfs), flashed with trim from a plain
//! file, a URL with ranges and a stored zip entry; a compressed one refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use sparsekit_bmap::Destination;
use sparsekit_flash::{bmap_of_used, flash_to, FlashOptions, Target, TRIM_BLOCK};
use sparsekit_io::{Control, ErrorInfo, FileStorage, IoError, MemStorage, Storage};
use sparsekit_testfs::pattern;

const MIB: u64 = 1 << 20;
/// The boot loader's gap before the first partition.
const GAP: u64 = 4 * MIB;
const FAT: u64 = 40 * MIB;
const EXT: u64 = 24 * MIB;
const SIZE: u64 = GAP + FAT + EXT + MIB;
/// What the destination holds before: the free blocks must keep it.
const FILL: u8 = 0xA5;

fn sh(cmd: &str) -> Result<String, String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{cmd}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn must(cmd: &str) -> String {
    sh(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// The tools the image is built with, or why the test is skipped.
fn skip() -> Option<String> {
    for t in [
        "sfdisk",
        "mkfs.vfat",
        "mkfs.ext4",
        "mcopy",
        "mdel",
        "debugfs",
    ] {
        if sh(&format!("command -v {t}")).is_err() {
            return Some(format!("SKIP: {t} is not installed"));
        }
    }
    None
}

/// The image: MBR, random gap, FAT32 at 4 MiB, ext4 after it, both with files and a few
/// deleted ones (their blocks are free again but hold data).
fn image(dir: &Path) -> PathBuf {
    let img = dir.join("card.img");
    let mut gap = vec![0u8; GAP as usize];
    gap[512..].copy_from_slice(&pattern(GAP as usize - 512, 9)[..]);
    std::fs::write(&img, &gap).unwrap();
    must(&format!("truncate -s {SIZE} '{}'", img.display()));
    let s = GAP / 512;
    let e = (GAP + FAT) / 512;
    must(&format!(
        "sfdisk -q '{}' <<'EOS'\nlabel: dos\nstart={s}, size={}, type=c\nstart={e}, size={}, type=83\nEOS",
        img.display(),
        FAT / 512,
        EXT / 512
    ));
    let files = dir.join("files");
    std::fs::create_dir_all(&files).unwrap();
    for i in 0..6u64 {
        std::fs::write(
            files.join(format!("f{i}")),
            pattern((300 << 10) as usize + i as usize * 4321, 100 + i),
        )
        .unwrap();
    }
    let fat = dir.join("fat.img");
    must(&format!(
        "mkfs.vfat -C -F 32 -s 1 -n BOOT '{}' {}",
        fat.display(),
        FAT / 1024
    ));
    for i in 0..6 {
        must(&format!(
            "mcopy -i '{}' '{}' ::/f{i}",
            fat.display(),
            files.join(format!("f{i}")).display()
        ));
    }
    must(&format!("mdel -i '{}' ::/f1 ::/f4", fat.display()));
    let ext = dir.join("ext.img");
    must(&format!(
        "mkfs.ext4 -q -F -d '{}' '{}' {}K",
        files.display(),
        ext.display(),
        EXT / 1024
    ));
    must(&format!(
        "debugfs -w -R 'rm f2' '{}' && debugfs -w -R 'rm f5' '{}'",
        ext.display(),
        ext.display()
    ));
    must(&format!(
        "dd if='{}' of='{}' bs=1M seek={} conv=notrunc status=none && \
         dd if='{}' of='{}' bs=1M seek={} conv=notrunc status=none",
        fat.display(),
        img.display(),
        GAP / MIB,
        ext.display(),
        img.display(),
        (GAP + FAT) / MIB
    ));
    img
}

/// A memory disk the test keeps a handle on; a block device (never truncated).
struct Disk(Arc<MemStorage>);
impl Storage for Disk {
    fn size(&self) -> Result<u64, IoError> {
        self.0.size()
    }
    fn read_at(&self, b: &mut [u8], o: u64) -> Result<usize, IoError> {
        self.0.read_at(b, o)
    }
    fn write_at(&self, b: &[u8], o: u64) -> Result<usize, IoError> {
        self.0.write_at(b, o)
    }
    fn flush(&self) -> Result<(), IoError> {
        Ok(())
    }
}
impl Destination for Disk {
    fn is_block_device(&self) -> bool {
        true
    }
}

/// Flash `source` with trim to a disk filled with [`FILL`]; the report and the disk.
fn trimmed(source: &str) -> (sparsekit_flash::FlashReport, Vec<u8>) {
    let mem = Arc::new(MemStorage::from_vec(vec![FILL; (SIZE + MIB) as usize]));
    let opts = FlashOptions {
        trim: true,
        bmap: sparsekit_bmap::BmapChoice::None,
        ..Default::default()
    };
    let r = flash_to(
        source,
        vec![Target {
            path: "disk".into(),
            dst: Ok(Box::new(Disk(mem.clone()))),
        }],
        &opts,
        None,
        &mut Control::none(),
    )
    .unwrap();
    let d = &r.destinations[0];
    assert!(d.error.is_none() && d.verified, "{:?}", d.error);
    (r, mem.to_vec())
}

/// The layout's used ranges of the image, and checks of a trimmed disk against it:
/// every used byte equal, every whole free block still [`FILL`].
fn check(img: &[u8], disk: &[u8], r: &sparsekit_flash::FlashReport) {
    let l = sparsekit_layout::layout(&MemStorage::from_vec(img.to_vec()), &mut Control::none())
        .unwrap();
    let b = bmap_of_used(l.size, l.used.iter().map(|r| r.offset..r.offset + r.length));
    let t = r.trim.expect("a trim report");
    assert_eq!(t.used_bytes, b.mapped_bytes());
    assert_eq!(t.used_bytes + t.free_bytes, SIZE);
    assert!(t.free_bytes > 40 * MIB, "{t:?}");
    assert!(r.bmap.is_none(), "{:?}", r.bmap);
    let d = &r.destinations[0];
    // Written: the used blocks (the first MiB may be written twice: last, on its own).
    assert!(
        d.bytes_written >= t.used_bytes && d.bytes_written <= t.used_bytes + MIB,
        "{} written, {} used",
        d.bytes_written,
        t.used_bytes
    );
    for u in &l.used {
        let (s, e) = (u.offset as usize, (u.offset + u.length) as usize);
        assert!(disk[s..e] == img[s..e], "used range {s}..{e} differs");
    }
    // The gap (a boot loader) is used.
    assert!(disk[..GAP as usize] == img[..GAP as usize]);
    // Every block with no used byte was left as it was.
    let mut is_used = vec![false; SIZE.div_ceil(TRIM_BLOCK) as usize];
    for u in &l.used {
        for blk in u.offset / TRIM_BLOCK..=(u.offset + u.length - 1) / TRIM_BLOCK {
            is_used[blk as usize] = true;
        }
    }
    let mut free = 0;
    for (blk, used) in is_used.iter().enumerate() {
        let s = blk * TRIM_BLOCK as usize;
        let e = (s + TRIM_BLOCK as usize).min(SIZE as usize);
        if !used {
            free += 1;
            assert!(
                disk[s..e].iter().all(|&x| x == FILL),
                "free block {blk} was written"
            );
        }
    }
    assert_eq!(free * TRIM_BLOCK, t.free_bytes);
    // Past the image: untouched.
    assert!(disk[SIZE as usize..].iter().all(|&x| x == FILL));
}

/// A plain local image: only its used blocks are read and written; the synthesized map
/// covers every used range of the layout and no block that is wholly free.
#[test]
fn plain_file_trimmed() {
    if let Some(s) = skip() {
        eprintln!("{s}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let bytes = std::fs::read(&img).unwrap();
    let (r, disk) = trimmed(img.to_str().unwrap());
    check(&bytes, &disk, &r);
    // The map itself: every used byte inside a mapped range, no mapped block wholly free.
    let l =
        sparsekit_layout::layout(&FileStorage::open(&img).unwrap(), &mut Control::none()).unwrap();
    let b = bmap_of_used(l.size, l.used.iter().map(|r| r.offset..r.offset + r.length));
    for u in &l.used {
        assert!(
            b.ranges.iter().any(|m| {
                let (s, e) = m.bytes(b.block_size, b.image_size);
                s <= u.offset && u.offset + u.length <= e
            }),
            "{u:?} not mapped"
        );
    }
    for m in &b.ranges {
        for blk in m.first..=m.last {
            let (s, e) = (blk * TRIM_BLOCK, ((blk + 1) * TRIM_BLOCK).min(SIZE));
            assert!(
                l.used
                    .iter()
                    .any(|u| u.offset < e && s < u.offset + u.length),
                "block {blk} is mapped but free"
            );
        }
    }
}

/// A URL whose server takes range requests: the layout and the used blocks are fetched
/// with range requests; the result is the same.
#[test]
fn http_with_ranges_trimmed() {
    if let Some(s) = skip() {
        eprintln!("{s}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let bytes = std::fs::read(&img).unwrap();
    let server = sparsekit_testfs::http::Server::start(HashMap::from([(
        "card.img".to_string(),
        bytes.clone(),
    )]));
    let (r, disk) = trimmed(&server.url("card.img"));
    check(&bytes, &disk, &r);

    // Without ranges, the image can only be streamed: refused, nothing written.
    server
        .b
        .ranges
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let mem = Arc::new(MemStorage::from_vec(vec![FILL; (SIZE + MIB) as usize]));
    let e = flash_to(
        &server.url("card.img"),
        vec![Target {
            path: "disk".into(),
            dst: Ok(Box::new(Disk(mem.clone()))),
        }],
        &FlashOptions {
            trim: true,
            ..Default::default()
        },
        None,
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_TRIM_UNSUPPORTED", "{e}");
    assert!(e.to_string().contains("range requests"), "{e}");
    assert!(mem.to_vec().iter().all(|&x| x == FILL));
}

/// A zip archive's stored entry is read at offsets through a window; a deflated entry
/// and a compressed image are refused before anything is written.
#[test]
fn zip_entry_and_compressed_sources() {
    if let Some(s) = skip() {
        eprintln!("{s}");
        return;
    }
    if sh("command -v zip && command -v gzip").is_err() {
        eprintln!("SKIP: zip or gzip is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let bytes = std::fs::read(&img).unwrap();
    let d = dir.path().display();
    must(&format!(
        "cd '{d}' && echo hello > readme.txt && zip -q -0 stored.zip readme.txt card.img && \
         zip -q -6 deflated.zip card.img && gzip -k -1 card.img"
    ));
    let (r, disk) = trimmed(dir.path().join("stored.zip").to_str().unwrap());
    assert_eq!(r.zip_entry.as_deref(), Some("card.img"));
    check(&bytes, &disk, &r);

    for (name, why) in [
        ("deflated.zip", "compressed (Deflated)"),
        ("card.img.gz", "compressed stream"),
    ] {
        let mem = Arc::new(MemStorage::from_vec(vec![FILL; (SIZE + MIB) as usize]));
        let e = flash_to(
            dir.path().join(name).to_str().unwrap(),
            vec![Target {
                path: "disk".into(),
                dst: Ok(Box::new(Disk(mem.clone()))),
            }],
            &FlashOptions {
                trim: true,
                ..Default::default()
            },
            None,
            &mut Control::none(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_TRIM_UNSUPPORTED", "{name}: {e}");
        let m = e.to_string();
        assert!(m.contains(why) && m.contains("bmap"), "{name}: {m}");
        assert!(mem.to_vec().iter().all(|&x| x == FILL), "{name}");
    }

    // With a bmap beside the image, the bmap is followed: no trim report.
    must(&format!("cp '{d}/card.img' '{d}/b.img' && bmaptool -q create -o '{d}/b.img.bmap' '{d}/b.img' 2>/dev/null || true"));
    if dir.path().join("b.img.bmap").exists() {
        let mem = Arc::new(MemStorage::from_vec(vec![FILL; (SIZE + MIB) as usize]));
        let r = flash_to(
            dir.path().join("b.img").to_str().unwrap(),
            vec![Target {
                path: "disk".into(),
                dst: Ok(Box::new(Disk(mem.clone()))),
            }],
            &FlashOptions {
                trim: true,
                ..Default::default()
            },
            None,
            &mut Control::none(),
        )
        .unwrap();
        assert!(r.trim.is_none());
        assert!(r.bmap.as_deref().is_some_and(|b| b.ends_with("b.img.bmap")));
    }
}
