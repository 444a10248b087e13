//! Flashing to real block devices (loop devices; needs root, else prints SKIP).

use sparsekit_io::ErrorInfo;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sparsekit_bmap::{copy, create, BmapChoice, CopyOptions, CreateOptions, Error};
use sparsekit_io::{Control, Phase};
use sparsekit_testfs::{pattern, run, Fs, LoopDev, Mount};

const MIB: u64 = 1 << 20;

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sparsekit-bmap-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

/// 24 MiB + 512 bytes image: data at 0, 3 MiB and the end, holes between.
fn image(dir: &Path) -> PathBuf {
    let p = dir.join("disk.img");
    let f = File::create(&p).unwrap();
    f.set_len(24 * MIB + 512).unwrap();
    f.write_all_at(&pattern(100_000, 1), 0).unwrap();
    f.write_all_at(&pattern(2 * MIB as usize, 2), 3 * MIB)
        .unwrap();
    f.write_all_at(&pattern(512, 3), 24 * MIB).unwrap();
    f.sync_all().unwrap();
    p
}

fn read(p: &Path, off: u64, len: u64) -> Vec<u8> {
    let mut b = vec![0u8; len as usize];
    File::open(p).unwrap().read_exact_at(&mut b, off).unwrap();
    b
}

#[test]
fn flash_to_loop_device() {
    let Some(dev) = LoopDev::new(32 * MIB, 0xaa, "flash_to_loop_device") else {
        return;
    };
    let d = tmp();
    let img = image(d.path());
    let bmap = create(&img, &CreateOptions::default(), &mut Control::none()).unwrap();
    fs::write(d.path().join("disk.img.bmap"), bmap.to_xml()).unwrap();
    let opts = CopyOptions {
        read_back: true,
        ..Default::default()
    };
    let r = copy(&img, &dev.dev, &opts, &mut Control::none()).unwrap();
    assert!(r.used_bmap);
    assert_eq!(r.ranges_read_back, bmap.ranges.len() as u64);
    // Mapped ranges hold the image; unmapped blocks keep the device's old bytes (bmaptool
    // does the same: a bmap says those blocks do not matter); the device is not truncated.
    let image = fs::read(&img).unwrap();
    let devb = read(&dev.dev, 0, 32 * MIB);
    for rg in &bmap.ranges {
        let (s, e) = rg.bytes(bmap.block_size, bmap.image_size);
        assert!(image[s as usize..e as usize] == devb[s as usize..e as usize]);
    }
    assert!(devb[(10 * MIB) as usize..(11 * MIB) as usize]
        .iter()
        .all(|&b| b == 0xaa));
    assert!(devb[(25 * MIB) as usize..].iter().all(|&b| b == 0xaa));
    assert_eq!(fs::metadata(&dev.backing).unwrap().len(), 32 * MIB);

    // Without a bmap, a compressed image is written whole to a device (zeros included).
    let z = d.path().join("disk.gz");
    run(
        "sh",
        &[
            "-c",
            &format!("gzip -1 -c '{}' > '{}'", img.display(), z.display()),
        ],
    )
    .unwrap();
    let opts = CopyOptions {
        bmap: BmapChoice::None,
        verify: true,
        read_back: true,
        create_files: true,
    };
    let r = copy(&z, &dev.dev, &opts, &mut Control::none()).unwrap();
    assert_eq!(r.bytes_written, image.len() as u64);
    assert!(read(&dev.dev, 0, image.len() as u64) == image);
}

#[test]
fn too_small_device_refused_untouched() {
    let Some(dev) = LoopDev::new(16 * MIB, 0x5a, "too_small_device_refused_untouched") else {
        return;
    };
    let d = tmp();
    let img = image(d.path());
    let bmap = create(&img, &CreateOptions::default(), &mut Control::none()).unwrap();
    let opts = CopyOptions {
        bmap: BmapChoice::Given(Box::new(bmap)),
        ..Default::default()
    };
    let e = copy(&img, &dev.dev, &opts, &mut Control::none()).unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_DEST_TOO_SMALL", "{e}");
    assert!(
        matches!(e, Error::DestinationTooSmall { image_size, dest_size, .. }
            if image_size == 24 * MIB + 512 && dest_size == 16 * MIB)
    );
    assert_eq!(e.path(), Some(dev.dev.as_path()));
    let all = fs::read(&dev.backing).unwrap();
    assert!(all.iter().all(|&b| b == 0x5a), "the device was written");
}

/// No bmap and a compressed image: xz and zstd (from a file) record the decompressed size,
/// so a device too small is refused before anything is written, as with a bmap.
#[test]
fn compressed_without_bmap_too_big_refused_untouched() {
    let Some(dev) = LoopDev::new(16 * MIB, 0x5a, "compressed_without_bmap_too_big_refused") else {
        return;
    };
    let d = tmp();
    let img = image(d.path());
    for (tool, out) in [("xz", "disk.img.xz"), ("zstd", "disk.img.zst")] {
        let out = d.path().join(out);
        let cmd = match tool {
            "xz" => format!(
                "xz -0 -T2 --block-size=1MiB -c '{}' > '{}'",
                img.display(),
                out.display()
            ),
            _ => format!("zstd -q -1 '{}' -o '{}'", img.display(), out.display()),
        };
        if run("sh", &["-c", &cmd]).is_err() {
            println!("SKIP part of compressed_without_bmap_too_big_refused: {tool} failed");
            continue;
        }
        let opts = CopyOptions {
            bmap: BmapChoice::None,
            ..Default::default()
        };
        let e = copy(&out, &dev.dev, &opts, &mut Control::none()).unwrap_err();
        assert!(
            matches!(e, Error::DestinationTooSmall { image_size, dest_size, .. }
                if image_size == 24 * MIB + 512 && dest_size == 16 * MIB),
            "{tool}: {e}"
        );
        assert_eq!(e.path(), Some(dev.dev.as_path()));
        let all = fs::read(&dev.backing).unwrap();
        assert!(
            all.iter().all(|&b| b == 0x5a),
            "{tool}: the device was written"
        );
    }
}

/// The backing file of the loop device is overwritten after our fsync: the device's own
/// page cache still holds what we wrote, so only a read-back that drops that cache sees
/// the change.
#[test]
fn read_back_bypasses_page_cache() {
    let Some(dev) = LoopDev::new(32 * MIB, 0, "read_back_bypasses_page_cache") else {
        return;
    };
    let d = tmp();
    let img = image(d.path());
    let bmap = create(&img, &CreateOptions::default(), &mut Control::none()).unwrap();
    let backing = dev.backing.clone();
    let corrupt = move |p: sparsekit_io::Progress| {
        if p.phase == Phase::Sync && Some(p.done) == p.total {
            let f = File::options().write(true).open(&backing).unwrap();
            f.write_all_at(b"garbage", 4 * MIB).unwrap();
            f.sync_all().unwrap();
        }
    };
    let opts = CopyOptions {
        bmap: BmapChoice::Given(Box::new(bmap.clone())),
        verify: true,
        read_back: true,
        create_files: true,
    };
    let e = copy(
        &img,
        &dev.dev,
        &opts,
        &mut Control::new(Default::default(), corrupt),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_CHECKSUM_MISMATCH", "{e}");
    let bad = bmap
        .ranges
        .iter()
        .find(|r| r.first <= 1024 && 1024 <= r.last)
        .unwrap();
    assert!(
        matches!(e, Error::ReadBackMismatch { first, last, .. } if first == bad.first && last == bad.last),
        "{e}"
    );
    assert_eq!(e.path(), Some(dev.dev.as_path()));
}

#[test]
fn mounted_device_is_busy() {
    let Some(m) = Mount::new(Fs::Ext4, "mounted_device_is_busy") else {
        return;
    };
    let d = tmp();
    let img = image(d.path());
    let dev = m.loopdev.clone().unwrap();
    let e = copy(&img, Path::new(&dev), &files_ok(), &mut Control::none()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EBUSY), "{e}");
}

/// A block device is written with O_DIRECT where the data is page-aligned: a device that
/// fails mid-way (a loop device over a file on a full 8 MiB tmpfs) fails at the write
/// that hit the fault, named by its offset, not at the final fsync; and a healthy device
/// gets every byte (checked above by the other tests, which now write the same way).
#[test]
fn failing_device_fails_at_the_write() {
    let t = "failing_device_fails_at_the_write";
    let Some(m) = Mount::new(Fs::Tmpfs(8), t) else {
        return;
    };
    let backing = m.join("dev.img");
    File::create(&backing).unwrap().set_len(32 * MIB).unwrap();
    let dev = match run("losetup", &["-f", "--show", backing.to_str().unwrap()]) {
        Ok(d) => PathBuf::from(d.trim()),
        Err(e) => {
            eprintln!("SKIP {t}: losetup: {e}");
            return;
        }
    };
    struct Detach(PathBuf);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = run("losetup", &["-d", self.0.to_str().unwrap()]);
        }
    }
    let _detach = Detach(dev.clone());
    let d = tmp();
    let img = d.path().join("full.img");
    fs::write(&img, pattern(24 * MIB as usize, 9)).unwrap();
    let e = copy(
        &img,
        &dev,
        &CopyOptions {
            bmap: BmapChoice::None,
            ..files_ok()
        },
        &mut Control::none(),
    )
    .unwrap_err();
    eprintln!("{t}: {e}");
    assert_eq!(e.code(), "ERR_SPARSEKIT_IO", "{e}");
    assert!(
        matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::ENOSPC)),
        "{e}"
    );
    assert_eq!(
        e.syscall(),
        Some("pwrite"),
        "a buffered write fails only at fsync: {e}"
    );
    let at = e.offset().unwrap_or_else(|| panic!("no offset: {e}"));
    // The failing write holds the fault: tmpfs filled at about 8 MiB (its own metadata
    // takes a little), and a write is at most one 1 MiB chunk.
    assert!((6 * MIB..=8 * MIB).contains(&at), "{e}");
    drop(_detach);
    drop(m);
}

/// Copy options for tests that write into new files in a temp folder (a missing
/// destination is refused without `create_files`).
fn files_ok() -> CopyOptions {
    CopyOptions {
        create_files: true,
        ..CopyOptions::default()
    }
}
