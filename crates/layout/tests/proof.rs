//! The proof that free means free: real file systems made by the Debian tools in a GPT and
//! in an MBR image (with logical partitions), filled with files and some deleted; then
//! every range `layout` calls free is overwritten with random bytes, and each file
//! system's own checker must pass and every file must read back with the same SHA-256.
//! Also: each file system's used bytes are within 2% (+ 1 MiB of metadata slack) of what
//! the file system itself reports. Needs root and the tools; skips with a reason if not.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use common::{is_root, missing, must, sh, Loop, Mounted, Rng};
use sha2::{Digest, Sha256};
use sparsekit_io::{Control, FileStorage};
use sparsekit_layout::{layout, sparsify, Layout, SparsifyOptions, State, Table};

const MIB: u64 = 1 << 20;

/// One file system of the test: its kind, size, and the fs name layout must report.
struct Fs {
    kind: &'static str,
    mib: u64,
    gpt_type: &'static str,
    mbr_type: &'static str,
    reports: &'static str,
}

const FILESYSTEMS: &[Fs] = &[
    Fs {
        kind: "ext4",
        mib: 40,
        gpt_type: "L",
        mbr_type: "83",
        reports: "ext4",
    },
    Fs {
        kind: "fat16",
        mib: 32,
        gpt_type: "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
        mbr_type: "e",
        reports: "vfat",
    },
    Fs {
        kind: "xfs",
        mib: 64,
        gpt_type: "L",
        mbr_type: "83",
        reports: "xfs",
    },
    // MBR: from here on logical partitions (5, 6, ...).
    Fs {
        kind: "ext2",
        mib: 24,
        gpt_type: "L",
        mbr_type: "83",
        reports: "ext2",
    },
    Fs {
        kind: "fat32",
        mib: 40,
        gpt_type: "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
        mbr_type: "c",
        reports: "vfat",
    },
    Fs {
        kind: "exfat",
        mib: 32,
        gpt_type: "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
        mbr_type: "7",
        reports: "exfat",
    },
    Fs {
        kind: "ntfs",
        mib: 32,
        gpt_type: "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
        mbr_type: "7",
        reports: "ntfs",
    },
    Fs {
        kind: "btrfs",
        mib: 128,
        gpt_type: "L",
        mbr_type: "83",
        reports: "btrfs",
    },
    Fs {
        kind: "swap",
        mib: 8,
        gpt_type: "S",
        mbr_type: "82",
        reports: "swap",
    },
    // GPT only: the ext4 layouts with bigalloc and meta_bg.
    Fs {
        kind: "ext4-bigalloc",
        mib: 64,
        gpt_type: "L",
        mbr_type: "",
        reports: "ext4",
    },
    Fs {
        kind: "ext4-metabg",
        mib: 32,
        gpt_type: "L",
        mbr_type: "",
        reports: "ext4",
    },
];

const TOOLS: &[&str] = &[
    "sfdisk",
    "losetup",
    "mkfs.ext4",
    "e2fsck",
    "dumpe2fs",
    "mkfs.vfat",
    "fsck.fat",
    "mcopy",
    "mdir",
    "mdel",
    "mkfs.exfat",
    "fsck.exfat",
    "mount.exfat-fuse",
    "mkfs.ntfs",
    "ntfsfix",
    "mkfs.xfs",
    "xfs_repair",
    "xfs_db",
    "mkfs.btrfs",
    "btrfs",
    "mkswap",
    "blkid",
];

fn skip() -> Option<String> {
    if !is_root() {
        return Some("needs root (loop devices, mounts)".into());
    }
    missing(TOOLS).map(|t| format!("{t} is not installed (scripts/setup installs it)"))
}

/// Files written to every file system: (name, content seed, size).
fn files() -> Vec<(String, u64, usize)> {
    let mut rng = Rng(0x5eed);
    let mut v = Vec::new();
    for i in 0..18 {
        let size = match i % 4 {
            0 => 700 + (rng.next() % 3000) as usize,
            1 => 20_000 + (rng.next() % 60_000) as usize,
            2 => 200_000 + (rng.next() % 300_000) as usize,
            _ => 600_000 + (rng.next() % 600_000) as usize,
        };
        v.push((format!("f{i:02}.bin"), rng.next(), size));
    }
    v
}

fn content(seed: u64, size: usize) -> Vec<u8> {
    let mut b = vec![0u8; size];
    Rng(seed | 1).fill(&mut b);
    b
}

fn sha(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Write the staging trees: `early/` (copied first; every third file deleted again
/// afterwards) and `late/` (copied after the deletions, reusing freed space). Returns the
/// expected final files: name -> SHA-256.
fn stage(dir: &Path) -> (PathBuf, PathBuf, Vec<String>, BTreeMap<String, String>) {
    let early = dir.join("early");
    let late = dir.join("late");
    fs::create_dir_all(early.join("sub")).unwrap();
    fs::create_dir_all(&late).unwrap();
    let mut expect = BTreeMap::new();
    let mut deleted = Vec::new();
    for (i, (name, seed, size)) in files().into_iter().enumerate() {
        let data = content(seed, size);
        if i < 12 {
            let rel = if i % 5 == 4 {
                format!("sub/{name}")
            } else {
                name.clone()
            };
            fs::write(early.join(&rel), &data).unwrap();
            if i % 3 == 0 && !rel.starts_with("sub/") {
                deleted.push(rel);
            } else {
                expect.insert(rel, sha(&data));
            }
        } else {
            fs::write(late.join(&name), &data).unwrap();
            expect.insert(name, sha(&data));
        }
    }
    (early, late, deleted, expect)
}

fn mkfs(kind: &str, dev: &str) {
    let cmd = match kind {
        "ext4" => format!("mkfs.ext4 -q -F -L e4 {dev}"),
        "ext4-bigalloc" => format!("mkfs.ext4 -q -F -b 4096 -O bigalloc -C 16384 {dev}"),
        "ext4-metabg" => format!("mkfs.ext4 -q -F -b 1024 -O 64bit,meta_bg,^resize_inode {dev}"),
        "ext2" => format!("mkfs.ext2 -q -F {dev}"),
        "fat16" => format!("mkfs.vfat -F 16 -n F16 {dev}"),
        "fat32" => format!("mkfs.vfat -F 32 -s 1 -n F32 {dev}"),
        "exfat" => format!("mkfs.exfat -L exf {dev}"),
        "ntfs" => format!("mkfs.ntfs -Q -F -L nt {dev}"),
        "xfs" => format!("mkfs.xfs -q -f -L x {dev}"),
        "btrfs" => format!("mkfs.btrfs -q -f -L b {dev}"),
        "swap" => format!("mkswap -L sw {dev}"),
        k => panic!("{k}"),
    };
    must(&cmd);
}

fn is_fat(kind: &str) -> bool {
    kind.starts_with("fat")
}

fn mount_cmd(kind: &str, ro: bool) -> String {
    match (kind, ro) {
        ("exfat", false) => "mount.exfat-fuse".into(),
        ("exfat", true) => "mount.exfat-fuse -o ro".into(),
        ("ntfs", false) => "mount -t ntfs-3g".into(),
        ("ntfs", true) => "mount -t ntfs-3g -o ro".into(),
        ("xfs", true) => "mount -o ro,norecovery".into(),
        (k, true) if k.starts_with("ext4") => "mount -o ro,noload".into(),
        (_, true) => "mount -o ro".into(),
        (_, false) => "mount".into(),
    }
}

fn fill(kind: &str, dev: &str, dir: &Path, early: &Path, late: &Path, deleted: &[String]) {
    if kind == "swap" {
        return;
    }
    if is_fat(kind) {
        let m = |c: &str| must(&format!("mcopy -s -Q -i {dev} {c}"));
        m(&format!("'{}'/* ::/", early.display()));
        for d in deleted {
            must(&format!("mdel -i {dev} '::/{d}'"));
        }
        m(&format!("'{}'/* ::/", late.display()));
        return;
    }
    let mnt = Mounted::new(&mount_cmd(kind, false), dev, &dir.join("mnt"));
    must(&format!(
        "cp -r '{}'/. '{}'/",
        early.display(),
        mnt.0.display()
    ));
    must(&format!("sync -f '{}'", mnt.0.display()));
    for d in deleted {
        fs::remove_file(mnt.0.join(d)).unwrap();
    }
    must(&format!("sync -f '{}'", mnt.0.display()));
    must(&format!(
        "cp -r '{}'/. '{}'/",
        late.display(),
        mnt.0.display()
    ));
    must(&format!("sync -f '{}'", mnt.0.display()));
}

/// Every file under `root` -> SHA-256.
fn hash_tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                let n = p.file_name().unwrap().to_string_lossy().to_string();
                if n == "lost+found" || n == "System Volume Information" {
                    continue;
                }
                stack.push(p);
            } else if t.is_file() {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
                out.insert(rel, sha(&fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn digits(s: &str) -> u64 {
    s.chars()
        .filter(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

fn field(out: &str, key: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {out}"));
    digits(line.split(':').nth(1).unwrap())
}

/// Check one file system after the overwrite: its checker passes, its files are intact,
/// and `used` is close to what it reports. Returns what the file system reports used.
fn verify(kind: &str, dev: &str, len: u64, dir: &Path, expect: &BTreeMap<String, String>) -> u64 {
    let checker = match kind {
        k if k.starts_with("ext") => format!("e2fsck -fn {dev}"),
        k if is_fat(k) => format!("fsck.fat -n {dev}"),
        "exfat" => format!("fsck.exfat -n {dev}"),
        "ntfs" => format!("ntfsfix -n {dev}"),
        "xfs" => format!("xfs_repair -n {dev}"),
        "btrfs" => format!("btrfs check --readonly {dev}"),
        "swap" => format!("blkid -p -o value -s LABEL {dev} | grep -qx sw"),
        k => panic!("{k}"),
    };
    if let Err(e) = sh(&checker) {
        panic!("{kind}: the checker failed after free space was overwritten:\n{e}");
    }
    if kind == "swap" {
        return 4096;
    }
    let out = dir.join(format!("out-{kind}"));
    fs::create_dir_all(&out).unwrap();
    let (got, reported_used) = if is_fat(kind) {
        must(&format!("mcopy -s -Q -i {dev} '::/*' '{}'/", out.display()));
        let free = must(&format!("mdir -i {dev} ::/"));
        let line = free
            .lines()
            .find(|l| l.contains("bytes free"))
            .unwrap()
            .to_string();
        (hash_tree(&out), len - digits(&line))
    } else {
        let mnt = Mounted::new(&mount_cmd(kind, true), dev, &out);
        let used = match kind {
            k if k.starts_with("ext") => {
                let h = must(&format!("dumpe2fs -h {dev} 2>/dev/null"));
                len - field(&h, "Free blocks:") * field(&h, "Block size:")
            }
            "xfs" => {
                let f = must(&format!("xfs_db -r -c 'freesp -s' {dev}"));
                let free = f
                    .lines()
                    .find(|l| l.contains("total free blocks"))
                    .map(digits)
                    .unwrap();
                let bs = digits(&must(&format!(
                    "xfs_db -r -c 'sb 0' -c 'p blocksize' {dev}"
                )));
                len - free * bs
            }
            "btrfs" => {
                let u = must(&format!("btrfs filesystem usage -b '{}'", mnt.0.display()));
                // Allocated chunks + the first MiB btrfs never allocates.
                field(&u, "Device allocated:") + MIB
            }
            _ => {
                let s = must(&format!("stat -f -c '%S %f' '{}'", mnt.0.display()));
                let v: Vec<u64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
                len - v[0] * v[1]
            }
        };
        (hash_tree(&mnt.0), used)
    };
    assert_eq!(
        &got, expect,
        "{kind}: files differ after free space was overwritten"
    );
    reported_used
}

/// Overwrite every byte `l` does not call used with random bytes.
fn overwrite_free(img: &Path, l: &Layout) -> u64 {
    let mut f = fs::OpenOptions::new().write(true).open(img).unwrap();
    let mut rng = Rng(0xdead_beef);
    let mut buf = vec![0u8; MIB as usize];
    let mut pos = 0u64;
    let mut written = 0u64;
    let mut gaps: Vec<(u64, u64)> = Vec::new();
    for r in &l.used {
        assert!(r.offset >= pos, "used ranges must be sorted and disjoint");
        if r.offset > pos {
            gaps.push((pos, r.offset - pos));
        }
        pos = r.offset + r.length;
    }
    if pos < l.size {
        gaps.push((pos, l.size - pos));
    }
    for (mut o, len) in gaps {
        let end = o + len;
        f.seek(SeekFrom::Start(o)).unwrap();
        while o < end {
            let n = (end - o).min(MIB) as usize;
            rng.fill(&mut buf[..n]);
            f.write_all(&buf[..n]).unwrap();
            o += n as u64;
        }
        written += len;
    }
    f.sync_all().unwrap();
    written
}

fn proof(table: &str) {
    if let Some(why) = skip() {
        eprintln!("SKIP proof_{table}: {why}");
        return;
    }
    let t0 = std::time::Instant::now();
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    let dir = tmp.path();
    let (early, late, deleted, expect) = stage(dir);
    let list: Vec<&Fs> = FILESYSTEMS
        .iter()
        .filter(|f| table == "gpt" || !f.mbr_type.is_empty())
        .collect();
    let total: u64 = list.iter().map(|f| f.mib + 1).sum::<u64>() + 4;
    let img = dir.join("disk.img");
    must(&format!("truncate -s {}M '{}'", total, img.display()));
    let mut script = format!("label: {}\n", if table == "gpt" { "gpt" } else { "dos" });
    for (i, f) in list.iter().enumerate() {
        if table == "mbr" && i == 3 {
            script.push_str("type=5\n");
        }
        let ty = if table == "gpt" {
            f.gpt_type
        } else {
            f.mbr_type
        };
        script.push_str(&format!("size={}MiB, type={ty}\n", f.mib));
    }
    must(&format!(
        "sfdisk -q '{}' <<'EOS'\n{script}EOS",
        img.display()
    ));
    let j: serde_json::Value =
        serde_json::from_str(&must(&format!("sfdisk -J '{}'", img.display()))).unwrap();
    let parts: Vec<(u32, u64, u64)> = j["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !matches!(p["type"].as_str(), Some("5")))
        .map(|p| {
            let node = p["node"].as_str().unwrap();
            // "/tmp/x/disk.img10" -> 10: the digits at the end.
            let n: u32 = node
                .rsplit(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap();
            (
                n,
                p["start"].as_u64().unwrap() * 512,
                p["size"].as_u64().unwrap() * 512,
            )
        })
        .collect();
    assert_eq!(parts.len(), list.len(), "{j}");
    for (f, &(_, start, len)) in list.iter().zip(&parts) {
        let lo = Loop::new(&img, start, len);
        mkfs(f.kind, &lo.0);
        fill(f.kind, &lo.0, dir, &early, &late, &deleted);
    }
    let made = t0.elapsed();

    let s = FileStorage::open(&img).unwrap();
    let l = layout(&s, &mut Control::none()).unwrap();
    drop(s);
    assert_eq!(
        l.table,
        if table == "gpt" {
            Table::Gpt
        } else {
            Table::Mbr
        }
    );
    assert_eq!(l.partitions.len(), list.len());
    for (f, p) in list.iter().zip(&l.partitions) {
        assert_eq!(
            p.filesystem.map(|x| x.name()),
            Some(f.reports),
            "{}: {p:?}",
            f.kind
        );
        assert_eq!(p.state, State::Clean, "{}: {p:?}", f.kind);
    }
    if table == "mbr" {
        let numbers: Vec<u32> = l.partitions.iter().map(|p| p.number).collect();
        assert_eq!(numbers, vec![1, 2, 3, 5, 6, 7, 8, 9, 10]);
    }
    let free = overwrite_free(&img, &l);
    eprintln!(
        "{table}: {} of {} bytes overwritten with random bytes",
        free, l.size
    );
    assert!(free > l.size / 3, "most of the image should be free");

    for (f, p) in list.iter().zip(&l.partitions) {
        let lo = Loop::new(&img, p.start, p.length);
        let expect_files = if f.kind == "swap" {
            BTreeMap::new()
        } else {
            expect.clone()
        };
        let reported = verify(f.kind, &lo.0, p.length, dir, &expect_files);
        let slack = p.length / 50 + MIB;
        eprintln!(
            "{table} {}: layout used {} bytes, the file system reports {reported}",
            f.kind, p.used_bytes
        );
        assert!(
            p.used_bytes + slack >= reported && p.used_bytes <= reported + slack,
            "{table} {}: layout says {} bytes used, the file system {reported}",
            f.kind,
            p.used_bytes
        );
    }
    // sparsify: the free (now random) ranges are punched out; the image's allocation drops
    // to about the used bytes, and every file system still checks clean with its files.
    // A loop device whose last user (a FUSE daemon) has not closed it yet is detached
    // lazily: sparsify would rightly call the image busy until then.
    for _ in 0..100 {
        if must(&format!("losetup -j '{}'", img.display()))
            .trim()
            .is_empty()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let sp = sparsify(&img, &SparsifyOptions::default(), &mut Control::none()).unwrap();
    let (before, after) = (sp.allocated_before.unwrap(), sp.allocated_after.unwrap());
    eprintln!(
        "{table}: sparsify freed {} bytes: allocated {before} -> {after}, used {}",
        sp.freed_bytes, l.used_bytes
    );
    assert_eq!(sp.layout.used, l.used, "the layout did not change");
    assert!(
        after <= l.used_bytes + 4 * MIB,
        "{after} allocated for {} used",
        l.used_bytes
    );
    for (f, p) in list.iter().zip(&l.partitions) {
        let lo = Loop::new(&img, p.start, p.length);
        let expect_files = if f.kind == "swap" {
            BTreeMap::new()
        } else {
            expect.clone()
        };
        verify(f.kind, &lo.0, p.length, dir, &expect_files);
    }
    eprintln!(
        "{table}: built in {made:?}, proved in {:?}",
        t0.elapsed() - made
    );
}

#[test]
fn proof_gpt() {
    proof("gpt");
}

#[test]
fn proof_mbr() {
    proof("mbr");
}
