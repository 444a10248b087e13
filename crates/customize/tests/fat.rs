//! Customising the FAT32 boot partition of an MBR disk image (FAT32 + ext4, as Raspberry Pi
//! OS images are), checked by the tools of the FAT world: `fsck.fat -n` finds the
//! partition clean, `mtype` reads the files back, and the ext4 partition and the gap before
//! the first partition keep every byte.

use std::fs;
use std::path::Path;

use sparsekit_customize::{customize_fat, Customization};
use sparsekit_io::{ErrorInfo, FileStorage, Storage, Window};
use sparsekit_testfs::run;

const MIB: u64 = 1 << 20;
/// The boot partition: 1 MiB to 41 MiB (FAT32 needs at least ~33 MiB with 512 B clusters).
const BOOT: (u64, u64) = (MIB, 40 * MIB);
/// The root partition: 41 MiB to 63 MiB.
const ROOT: (u64, u64) = (41 * MIB, 22 * MIB);

/// `fsck.fat -n` of a partition image: `Err` with its whole output when it finds anything.
fn fsck_fat(p: &str) -> Result<(), String> {
    let o = std::process::Command::new("fsck.fat")
        .args(["-n", p])
        .output()
        .map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

fn tools() -> Option<&'static str> {
    for t in [
        "mkfs.vfat",
        "fsck.fat",
        "mcopy",
        "mtype",
        "mkfs.ext4",
        "sfdisk",
    ] {
        if run("sh", &["-c", &format!("command -v {t}")]).is_err() {
            return Some(t);
        }
    }
    None
}

/// A 64 MiB disk image: MBR, FAT32 boot with `cmdline.txt` and `config.txt`, ext4 root.
fn disk(dir: &Path) -> std::path::PathBuf {
    disk_with(dir, "dos", "c", "83", true)
}

/// The same with a `label` (`dos`, `gpt`) and the two partitions' types; `fat`: whether
/// the first partition is formatted FAT (else ext4 too).
fn disk_with(dir: &Path, label: &str, t1: &str, t2: &str, fat: bool) -> std::path::PathBuf {
    let img = dir.join("disk.img");
    let f = fs::File::create(&img).unwrap();
    f.set_len(64 * MIB).unwrap();
    drop(f);
    let table = format!(
        "label: {label}\nstart={}, size={}, type={t1}\nstart={}, size={}, type={t2}\n",
        BOOT.0 / 512,
        BOOT.1 / 512,
        ROOT.0 / 512,
        ROOT.1 / 512
    );
    run(
        "sh",
        &[
            "-c",
            &format!("printf '{table}' | sfdisk -q {}", img.display()),
        ],
    )
    .unwrap();
    let img_s = img.to_str().unwrap();
    let boot = dir.join("boot.img");
    let b = fs::File::create(&boot).unwrap();
    b.set_len(BOOT.1).unwrap();
    drop(b);
    let boot_s = boot.to_str().unwrap();
    if fat {
        run("mkfs.vfat", &["-F", "32", "-n", "BOOTFS", boot_s]).unwrap();
        fs::write(
            dir.join("cmdline.txt"),
            "console=serial0 root=PARTUUID=1-02 rootwait\n",
        )
        .unwrap();
        fs::write(dir.join("config.txt"), "dtparam=audio=on\n").unwrap();
        for f in ["cmdline.txt", "config.txt"] {
            run(
                "mcopy",
                &["-i", boot_s, dir.join(f).to_str().unwrap(), "::/"],
            )
            .unwrap();
        }
    } else {
        run("mkfs.ext4", &["-q", "-F", boot_s]).unwrap();
    }
    let root = dir.join("root.img");
    let r = fs::File::create(&root).unwrap();
    r.set_len(ROOT.1).unwrap();
    drop(r);
    run("mkfs.ext4", &["-q", "-F", root.to_str().unwrap()]).unwrap();
    for (part, (start, _)) in [(&boot, BOOT), (&root, ROOT)] {
        run(
            "dd",
            &[
                &format!("if={}", part.display()),
                &format!("of={img_s}"),
                "bs=1M",
                &format!("seek={}", start / MIB),
                "conv=notrunc",
                "status=none",
            ],
        )
        .unwrap();
    }
    img
}

fn bytes(img: &Path, (start, len): (u64, u64)) -> Vec<u8> {
    let s = FileStorage::open(img).unwrap();
    let mut v = vec![0u8; len as usize];
    s.read_exact_at(&mut v, start).unwrap();
    v
}

/// The boot partition copied out, for the FAT tools.
fn boot_copy(dir: &Path, img: &Path) -> String {
    let p = dir.join("boot-out.img");
    fs::write(&p, bytes(img, BOOT)).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn files_written_into_the_boot_partition_check_clean() {
    if let Some(t) = tools() {
        eprintln!("SKIP files_written_into_the_boot_partition_check_clean: {t} is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = disk(dir.path());
    let root_before = bytes(&img, ROOT);
    let gap_before = bytes(&img, (0, BOOT.0));

    let mut c = Customization::default();
    c.files.push((
        "firstrun.sh".into(),
        Some(b"#!/bin/bash\nhostnamectl set-hostname pi\n".to_vec()),
    ));
    c.files.push((
        "user-data".into(),
        Some(b"#cloud-config\nhostname: pi\n".to_vec()),
    ));
    c.files.push((
        "overlays/custom/A long name with spaces.dtbo".into(),
        Some(vec![0xA5; 300_000]),
    ));
    c.files.push(("config.txt".into(), None));
    c.append.push((
        "cmdline.txt".into(),
        " systemd.run=/boot/firstrun.sh".into(),
    ));
    for round in 0..2 {
        let disk = FileStorage::open_rw(&img).unwrap();
        let part = Window::new(&disk, BOOT.0, BOOT.1).unwrap();
        let r = customize_fat(&part, &c).unwrap();
        if round == 0 {
            assert_eq!(r.appended, ["cmdline.txt"]);
            assert_eq!(r.deleted, ["config.txt"]);
        } else {
            // Idempotent: appended once.
            assert_eq!(r.already, ["cmdline.txt"]);
            assert!(r.deleted.is_empty());
        }
    }

    let boot = boot_copy(dir.path(), &img);
    if let Err(e) = fsck_fat(&boot) {
        panic!("fsck.fat -n: {e}");
    }
    let mtype = |f: &str| run("mtype", &["-i", &boot, &format!("::/{f}")]).unwrap();
    assert_eq!(
        mtype("cmdline.txt"),
        "console=serial0 root=PARTUUID=1-02 rootwait systemd.run=/boot/firstrun.sh\n"
    );
    assert_eq!(mtype("user-data"), "#cloud-config\nhostname: pi\n");
    assert!(
        run("mtype", &["-i", &boot, "::/config.txt"]).is_err(),
        "deleted"
    );
    let long = dir.path().join("long.out");
    run(
        "mcopy",
        &[
            "-i",
            &boot,
            "::/overlays/custom/A long name with spaces.dtbo",
            long.to_str().unwrap(),
        ],
    )
    .unwrap();
    assert_eq!(fs::read(&long).unwrap(), vec![0xA5; 300_000]);
    assert!(
        bytes(&img, ROOT) == root_before,
        "the ext4 partition is unchanged"
    );
    assert!(
        bytes(&img, (0, BOOT.0)) == gap_before,
        "the MBR and gap are unchanged"
    );
    let e2 = dir.path().join("root-out.img");
    fs::write(&e2, bytes(&img, ROOT)).unwrap();
    run("e2fsck", &["-fn", e2.to_str().unwrap()]).unwrap();
}

#[test]
fn a_full_partition_is_refused_and_stays_clean() {
    if let Some(t) = tools() {
        eprintln!("SKIP a_full_partition_is_refused_and_stays_clean: {t} is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = disk(dir.path());
    // Fill the boot partition to a few hundred KiB of its end.
    let boot = boot_copy(dir.path(), &img);
    let free: u64 = {
        let disk = FileStorage::open(Path::new(&boot)).unwrap();
        let size = disk.size().unwrap();
        size - 2 * MIB
    };
    let filler = dir.path().join("filler.bin");
    fs::write(&filler, vec![1u8; free as usize]).unwrap();
    let _ = run("mcopy", &["-i", &boot, filler.to_str().unwrap(), "::/"]);
    run(
        "dd",
        &[
            &format!("if={boot}"),
            &format!("of={}", img.display()),
            "bs=1M",
            &format!("seek={}", BOOT.0 / MIB),
            "conv=notrunc",
            "status=none",
        ],
    )
    .unwrap();
    let before = bytes(&img, BOOT);
    let c = Customization {
        files: vec![("big.bin".into(), Some(vec![2u8; 8 << 20]))],
        ..Default::default()
    };
    let disk = FileStorage::open_rw(&img).unwrap();
    let part = Window::new(&disk, BOOT.0, BOOT.1).unwrap();
    let e = customize_fat(&part, &c).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(sparsekit_io::errno::ENOSPC), "{e}");
    assert!(e.to_string().contains("big.bin"), "{e}");
    assert!(bytes(&img, BOOT) == before, "nothing written");
    let out = boot_copy(dir.path(), &img);
    if let Err(e) = fsck_fat(&out) {
        panic!("fsck.fat -n: {e}");
    }
}

#[test]
fn the_fat_partition_is_found_in_mbr_and_gpt_and_none_is_refused() {
    if let Some(t) = tools() {
        eprintln!("SKIP the_fat_partition_is_found_in_mbr_and_gpt_and_none_is_refused: {t} is not installed");
        return;
    }
    use sparsekit_customize::customize_disk;
    use sparsekit_io::Control;
    let c = Customization {
        files: vec![("ssh".into(), Some(Vec::new()))],
        append: vec![("cmdline.txt".into(), " quiet".into())],
    };
    for (label, t1, t2) in [
        ("dos", "c", "83"),
        (
            "gpt",
            "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let img = disk_with(dir.path(), label, t1, t2, true);
        let root_before = bytes(&img, ROOT);
        let disk = FileStorage::open_rw(&img).unwrap();
        let (r, at) = customize_disk(&disk, None, &c, &mut Control::none()).unwrap();
        assert_eq!(at, BOOT, "{label}");
        assert_eq!(r.appended, ["cmdline.txt"], "{label}");
        let boot = boot_copy(dir.path(), &img);
        if let Err(e) = fsck_fat(&boot) {
            panic!("{label}: fsck.fat -n: {e}");
        }
        assert_eq!(run("mtype", &["-i", &boot, "::/ssh"]).unwrap(), "");
        assert!(bytes(&img, ROOT) == root_before, "{label}: ext4 unchanged");
        // Partition 2 is ext4: asked for by number, it is refused.
        let e = customize_disk(&disk, Some(2), &c, &mut Control::none()).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_CUSTOMIZE_NO_FAT", "{e}");
        assert!(e.to_string().contains("2 ext4"), "{e}");
    }
    // No FAT partition at all: refused before anything is written.
    let dir = tempfile::tempdir().unwrap();
    let img = disk_with(dir.path(), "dos", "83", "83", false);
    let before = fs::read(&img).unwrap();
    let disk = FileStorage::open_rw(&img).unwrap();
    let e = customize_disk(&disk, None, &c, &mut Control::none()).unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_CUSTOMIZE_NO_FAT", "{e}");
    assert!(fs::read(&img).unwrap() == before, "nothing written");
}
