//! Backups of MBR and GPT disk images with an ext4 partition full of files, checked by the
//! tools of each format: sfdisk --verify and sgdisk -v on the shrunk image, e2fsck -fn and
//! debugfs reading every file back from it, bmaptool copy restoring it.

use std::fs;
use std::path::{Path, PathBuf};

use sparsekit_backup::{backup, BackupOptions};
use sparsekit_io::{Cancel, Control, ErrorInfo, FileStorage, Storage};
use sparsekit_testfs::run;

const MIB: u64 = 1 << 20;
/// Partition 1 (ext4 with files) from 1 MiB to 41 MiB; the disk is 64 MiB.
const P1: (u64, u64) = (MIB, 40 * MIB);

fn tools() -> Option<&'static str> {
    ["sfdisk", "mkfs.ext4", "e2fsck", "debugfs"]
        .into_iter()
        .find(|t| run("sh", &["-c", &format!("command -v {t}")]).is_err())
}

/// A 64 MiB disk image with one ext4 partition holding files (some deleted again).
fn disk(dir: &Path, label: &str) -> (PathBuf, Vec<(String, Vec<u8>)>) {
    let img = dir.join("disk.img");
    fs::File::create(&img).unwrap().set_len(64 * MIB).unwrap();
    let t = if label == "gpt" {
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    } else {
        "83"
    };
    let table = format!(
        "label: {label}\nstart={}, size={}, type={t}\n",
        P1.0 / 512,
        P1.1 / 512
    );
    run(
        "sh",
        &[
            "-c",
            &format!("printf '{table}' | sfdisk -q {}", img.display()),
        ],
    )
    .unwrap();
    let files_dir = dir.join("files");
    fs::create_dir_all(&files_dir).unwrap();
    let mut files = Vec::new();
    for i in 0..20u32 {
        let data: Vec<u8> = (0..(i as usize * 37_000 + 100))
            .map(|j| (j as u32 * 31 + i) as u8)
            .collect();
        let name = format!("f{i}.bin");
        fs::write(files_dir.join(&name), &data).unwrap();
        files.push((name, data));
    }
    let part = dir.join("p1.img");
    fs::File::create(&part).unwrap().set_len(P1.1).unwrap();
    run(
        "mkfs.ext4",
        &[
            "-q",
            "-F",
            "-d",
            files_dir.to_str().unwrap(),
            part.to_str().unwrap(),
        ],
    )
    .unwrap();
    run(
        "dd",
        &[
            &format!("if={}", part.display()),
            &format!("of={}", img.display()),
            "bs=1M",
            "seek=1",
            "conv=notrunc",
            "status=none",
        ],
    )
    .unwrap();
    // Random bytes in the free space of the source disk (after the partition): a backup
    // that shrinks never carries them.
    let noise: Vec<u8> = (0..MIB as usize).map(|i| (i * 7 + 3) as u8).collect();
    FileStorage::open_rw(&img)
        .unwrap()
        .write_all_at(&noise, 50 * MIB)
        .unwrap();
    (img, files)
}

fn check_ext4(dir: &Path, img: &Path, files: &[(String, Vec<u8>)]) {
    let all = fs::read(img).unwrap();
    let part = dir.join("check-p1.img");
    fs::write(&part, &all[P1.0 as usize..(P1.0 + P1.1) as usize]).unwrap();
    let p = part.to_str().unwrap();
    run("e2fsck", &["-fn", p]).unwrap();
    for (name, data) in files {
        let out = dir.join("out.bin");
        run(
            "debugfs",
            &["-R", &format!("dump /{name} {}", out.display()), p],
        )
        .unwrap();
        assert!(fs::read(&out).unwrap() == *data, "{name} differs");
    }
}

#[test]
fn mbr_and_gpt_backups_shrink_check_clean_and_restore() {
    if let Some(t) = tools() {
        eprintln!("SKIP mbr_and_gpt_backups_shrink_check_clean_and_restore: {t} is not installed");
        return;
    }
    for label in ["dos", "gpt"] {
        let dir = tempfile::tempdir().unwrap();
        let (img, files) = disk(dir.path(), label);
        let out = dir.path().join("backup.img");
        let src = FileStorage::open(&img).unwrap();
        let r = backup(&src, &out, &BackupOptions::default(), &mut Control::none()).unwrap();
        assert!(r.verified);
        assert_eq!(r.source_size, 64 * MIB);
        let want = if label == "gpt" {
            P1.0 + P1.1 + 33 * 512
        } else {
            P1.0 + P1.1
        };
        assert_eq!(r.image_size, want, "{label}");
        assert_eq!(fs::metadata(&out).unwrap().len(), want);
        assert_eq!(r.cut_bytes, 64 * MIB - want);
        // Only what is used was copied: far less than the partition.
        assert!(
            r.bytes_copied < 24 * MIB,
            "{label}: copied {}",
            r.bytes_copied
        );
        let o = out.to_str().unwrap();
        run("sfdisk", &["--verify", o]).unwrap();
        if label == "gpt" && run("sh", &["-c", "command -v sgdisk"]).is_ok() {
            let v = run("sgdisk", &["-v", o]).unwrap_or_else(|e| e);
            assert!(v.contains("No problems found"), "sgdisk -v: {v}");
        }
        check_ext4(dir.path(), &out, &files);
        // The image's SHA-256 is the file's.
        let sum = run("sha256sum", &[o]).unwrap();
        assert!(sum.starts_with(&r.sha256), "{sum} vs {}", r.sha256);
        // The bmap: bmaptool copies it back to a 64 MiB "card" that then checks clean.
        let bmap = r.bmap.unwrap();
        assert!(fs::read_to_string(&bmap).unwrap().contains("<BlockMap>"));
        if run("sh", &["-c", "command -v bmaptool"]).is_ok() {
            let card = dir.path().join("card.img");
            fs::write(&card, vec![0xAAu8; 64 * MIB as usize]).unwrap();
            run(
                "bmaptool",
                &[
                    "copy",
                    "--bmap",
                    bmap.to_str().unwrap(),
                    o,
                    card.to_str().unwrap(),
                ],
            )
            .unwrap();
            check_ext4(dir.path(), &card, &files);
        }
        // The same backup as a compressed qcow2: qemu-img finds it clean and equal to the raw one.
        if run("sh", &["-c", "command -v qemu-img"]).is_ok() {
            let q = dir.path().join("backup.qcow2");
            let rq = backup(&src, &q, &BackupOptions::default(), &mut Control::none()).unwrap();
            assert_eq!(
                (rq.image_size, &rq.sha256),
                (r.image_size, &r.sha256),
                "{label}"
            );
            assert!(rq.bmap.is_none() && rq.verified);
            let qs = q.to_str().unwrap();
            run("qemu-img", &["check", qs]).unwrap();
            run("qemu-img", &["compare", "-f", "qcow2", "-F", "raw", qs, o]).unwrap();
            assert!(
                fs::metadata(&q).unwrap().len() < r.bytes_copied,
                "compressed"
            );
        }
        // Compressed: each decompresses to the raw backup's bytes, with the same bmap.
        if label == "dos" {
            for (ext, tool) in [("zst", "zstd"), ("xz", "xz"), ("gz", "gzip")] {
                if run("sh", &["-c", &format!("command -v {tool}")]).is_err() {
                    eprintln!("SKIP .img.{ext}: {tool} is not installed");
                    continue;
                }
                let z = dir.path().join(format!("backup.img.{ext}"));
                let rz = backup(&src, &z, &BackupOptions::default(), &mut Control::none()).unwrap();
                assert_eq!(rz.sha256, r.sha256, "{ext}");
                assert!(rz.verified);
                let d = run(
                    "sh",
                    &["-c", &format!("{tool} -dc '{}' | sha256sum", z.display())],
                )
                .unwrap();
                assert!(d.starts_with(&r.sha256), "{ext}: {d}");
                assert!(
                    fs::metadata(&z).unwrap().len() < r.bytes_copied / 2,
                    "{ext} compresses"
                );
                let zb = fs::read_to_string(rz.bmap.unwrap()).unwrap();
                assert_eq!(
                    zb,
                    fs::read_to_string(&bmap).unwrap(),
                    "{ext}: the raw image's bmap"
                );
            }
        }
        // No temporary file is left beside the output.
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".sparsekit-"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }
}

#[test]
fn abort_and_a_failing_read_leave_no_output() {
    if let Some(t) = tools() {
        eprintln!("SKIP abort_and_a_failing_read_leave_no_output: {t} is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = disk(dir.path(), "dos");
    let out = dir.path().join("backup.img");
    let cancel = Cancel::new();
    cancel.cancel();
    let src = FileStorage::open(&img).unwrap();
    let e = backup(
        &src,
        &out,
        &BackupOptions::default(),
        &mut Control::with_cancel(cancel),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_ABORTED", "{e}");
    assert!(!out.exists());
    // A read error in the middle of the partition: the error names where, no output.
    let faulty = sparsekit_io::Faulty::new(
        FileStorage::open(&img).unwrap(),
        sparsekit_io::Fault::ReadErrorAt(P1.0 + 20 * MIB),
    );
    match backup(
        &faulty,
        &out,
        &BackupOptions::default(),
        &mut Control::none(),
    ) {
        Err(e) => {
            // Coded, and it names the device and the failed read's place in it.
            assert_eq!(e.code(), "ERR_SPARSEKIT_IO", "{e}");
            assert_eq!(e.raw_os_error(), Some(sparsekit_io::errno::EIO), "{e}");
            assert_eq!(e.syscall(), Some("read"), "{e}");
            assert_eq!(e.offset(), Some(P1.0 + 20 * MIB), "{e}");
            assert_eq!(e.path(), Some(img.as_path()), "{e}");
        }
        Ok(r) => panic!("a failing read gave a backup: {r:?}"),
    }
    assert!(!out.exists());
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".sparsekit-")
        })
        .collect();
    assert!(left.is_empty());
}
