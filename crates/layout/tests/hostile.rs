//! Dirty file systems, broken and hostile tables, truncated images: all used or a coded
//! error, never a wrong "free".

mod common;

use std::fs;
use std::path::Path;

use common::{is_root, missing, must, sh, Loop, Mounted};
use sparsekit_io::{Control, FileStorage, MemStorage, Storage};
use sparsekit_layout::{layout, FileSystem, Layout, State, Table};

const MIB: u64 = 1 << 20;

fn lay(s: &dyn Storage) -> Result<Layout, sparsekit_layout::Error> {
    layout(s, &mut Control::none())
}

fn lay_file(p: &Path) -> Result<Layout, sparsekit_layout::Error> {
    lay(&FileStorage::open(p).unwrap())
}

fn skip(tools: &[&str], test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIP {test}: needs root");
        return true;
    }
    if let Some(t) = missing(tools) {
        eprintln!("SKIP {test}: {t} is not installed");
        return true;
    }
    false
}

fn put_entry(b: &mut [u8], sector: usize, i: usize, kind: u8, lba: u32, n: u32) {
    let o = sector * 512 + 446 + 16 * i;
    b[o + 4] = kind;
    b[o + 8..o + 12].copy_from_slice(&lba.to_le_bytes());
    b[o + 12..o + 16].copy_from_slice(&n.to_le_bytes());
    b[sector * 512 + 510] = 0x55;
    b[sector * 512 + 511] = 0xaa;
}

fn assert_code(r: Result<Layout, sparsekit_layout::Error>, code: &str, what: &str) {
    match r {
        Ok(l) => panic!("{what}: expected {code}, got a layout {l:?}"),
        Err(e) => {
            assert_eq!(e.code(), code, "{what}: {e}");
            eprintln!("{what}: {e}");
        }
    }
}

#[test]
fn zeros_are_all_used() {
    let l = lay(&MemStorage::from_vec(vec![0; 4 << 20])).unwrap();
    assert_eq!(l.table, Table::None);
    assert_eq!(l.used_bytes, 4 << 20);
    assert_eq!(l.partitions[0].state, State::Unknown);
    let l = lay(&MemStorage::from_vec(Vec::new())).unwrap();
    assert_eq!((l.used_bytes, l.partitions.len()), (0, 0));
    let l = lay(&MemStorage::from_vec(vec![7; 300])).unwrap();
    assert_eq!(l.used_bytes, 300);
}

#[test]
fn ebr_loop_is_corrupt() {
    let mut b = vec![0u8; 16 * MIB as usize];
    put_entry(&mut b, 0, 0, 0x05, 2048, 20000);
    // EBR 1 at the extended start: a logical partition and a link to EBR 2 ...
    put_entry(&mut b, 2048, 0, 0x83, 63, 100);
    put_entry(&mut b, 2048, 1, 0x05, 1000, 1000);
    // ... whose link points back at itself.
    put_entry(&mut b, 3048, 0, 0x83, 63, 100);
    put_entry(&mut b, 3048, 1, 0x05, 1000, 1000);
    assert_code(
        lay(&MemStorage::from_vec(b.clone())),
        "ERR_SPARSEKIT_LAYOUT_CORRUPT",
        "EBR loop",
    );
    // Broken back to a chain that ends: two logical partitions, 5 and 6.
    let o = 3048 * 512 + 446 + 16;
    b[o + 4] = 0;
    let l = lay(&MemStorage::from_vec(b)).unwrap();
    assert_eq!(l.table, Table::Mbr);
    let n: Vec<u32> = l.partitions.iter().map(|p| p.number).collect();
    assert_eq!(n, vec![5, 6]);
    assert_eq!(l.used_bytes, 16 * MIB, "no file system: all used");
}

#[test]
fn bad_mbr_tables_are_corrupt() {
    // Overlapping primaries.
    let mut b = vec![0u8; 8 * MIB as usize];
    put_entry(&mut b, 0, 0, 0x83, 2048, 4096);
    put_entry(&mut b, 0, 1, 0x83, 4000, 4096);
    assert_code(
        lay(&MemStorage::from_vec(b)),
        "ERR_SPARSEKIT_LAYOUT_CORRUPT",
        "overlap",
    );
    // A partition past the end of the device (a truncated image).
    let mut b = vec![0u8; 8 * MIB as usize];
    put_entry(&mut b, 0, 0, 0x83, 2048, 40960);
    assert_code(
        lay(&MemStorage::from_vec(b)),
        "ERR_SPARSEKIT_LAYOUT_CORRUPT",
        "past the end",
    );
    // A logical partition outside its extended partition.
    let mut b = vec![0u8; 8 * MIB as usize];
    put_entry(&mut b, 0, 0, 0x05, 2048, 4096);
    put_entry(&mut b, 2048, 0, 0x83, 63, 9000);
    assert_code(
        lay(&MemStorage::from_vec(b)),
        "ERR_SPARSEKIT_LAYOUT_CORRUPT",
        "logical outside",
    );
    // A protective MBR without a GPT.
    let mut b = vec![0u8; 8 * MIB as usize];
    put_entry(&mut b, 0, 0, 0xee, 1, 16383);
    assert_code(
        lay(&MemStorage::from_vec(b)),
        "ERR_SPARSEKIT_LAYOUT_CORRUPT",
        "protective without GPT",
    );
}

#[test]
fn luks_and_lvm_are_all_used() {
    let mut b = vec![0u8; 8 * MIB as usize];
    put_entry(&mut b, 0, 0, 0x83, 2048, 4096);
    put_entry(&mut b, 0, 1, 0x8e, 8192, 4096);
    b[MIB as usize..MIB as usize + 6].copy_from_slice(b"LUKS\xba\xbe");
    let lvm = 4 * MIB as usize + 512;
    b[lvm..lvm + 8].copy_from_slice(b"LABELONE");
    b[lvm + 24..lvm + 32].copy_from_slice(b"LVM2 001");
    let l = lay(&MemStorage::from_vec(b)).unwrap();
    assert_eq!(l.partitions[0].filesystem, Some(FileSystem::CryptoLuks));
    assert_eq!(l.partitions[1].filesystem, Some(FileSystem::Lvm2Member));
    assert_eq!(l.used_bytes, 8 * MIB);
}

/// An ext4 image of `mib` MiB made by mkfs.ext4 with `opts`.
fn ext4(dir: &Path, mib: u64, opts: &str) -> std::path::PathBuf {
    let p = dir.join("e.img");
    must(&format!(
        "truncate -s {mib}M '{0}' && mkfs.ext4 -q -F {opts} '{0}'",
        p.display()
    ));
    p
}

#[test]
fn dirty_ext4_is_all_used() {
    if skip(&["mkfs.ext4", "debugfs"], "dirty_ext4_is_all_used") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let p = ext4(t.path(), 32, "");
    let clean = lay_file(&p).unwrap();
    assert_eq!(clean.partitions[0].state, State::Clean);
    assert!(clean.used_bytes < 16 * MIB);
    for (cmd, what) in [
        ("feature needs_recovery", "needs_recovery"),
        ("ssv state 2", "errors"),
        ("ssv state 0", "not clean"),
    ] {
        let p = ext4(t.path(), 32, "");
        must(&format!("debugfs -w -R '{cmd}' '{}'", p.display()));
        let l = lay_file(&p).unwrap();
        let part = &l.partitions[0];
        assert_eq!(part.state, State::Dirty, "{what}: {part:?}");
        assert_eq!(l.used_bytes, 32 * MIB, "{what}");
        eprintln!("{what}: {}", part.reason.as_deref().unwrap());
    }
}

#[test]
fn unknown_ext4_feature_is_all_used() {
    if skip(&["mkfs.ext4"], "unknown_ext4_feature_is_all_used") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let p = ext4(t.path(), 16, "-O ^metadata_csum");
    let mut b = fs::read(&p).unwrap();
    let o = 1024 + 0x60;
    let v = u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) | 0x0100_0000;
    b[o..o + 4].copy_from_slice(&v.to_le_bytes());
    let l = lay(&MemStorage::from_vec(b.clone())).unwrap();
    assert_eq!(l.partitions[0].state, State::Unknown);
    assert!(
        l.partitions[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("incompatible feature"),
        "{:?}",
        l.partitions[0]
    );
    assert_eq!(l.used_bytes, 16 * MIB);
    // A block bitmap that disagrees with its group's free count: all used.
    let mut b = fs::read(&p).unwrap();
    let bitmap_block = u32::from_le_bytes(b[2048..2052].try_into().unwrap()) as usize; // group 0 (1 KiB blocks)
    b[bitmap_block * 1024 + 1000] ^= 0x10;
    let l = lay(&MemStorage::from_vec(b)).unwrap();
    assert_eq!(
        l.partitions[0].state,
        State::Unknown,
        "{:?}",
        l.partitions[0]
    );
    assert_eq!(l.used_bytes, 16 * MIB);
}

#[test]
fn truncated_images() {
    if skip(&["mkfs.ext4", "sfdisk"], "truncated_images") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    // A whole-disk ext4 cut short: the file system does not fit, all used.
    let p = ext4(t.path(), 32, "");
    must(&format!("truncate -s 20M '{}'", p.display()));
    let l = lay_file(&p).unwrap();
    assert_eq!(l.partitions[0].state, State::Unknown);
    assert_eq!(l.used_bytes, 20 * MIB);
    // A GPT image cut short: the partition runs past the end.
    let g = t.path().join("g.img");
    must(&format!("truncate -s 32M '{0}' && printf 'label: gpt\\nsize=16MiB\\nsize=8MiB\\n' | sfdisk -q '{0}' && truncate -s 20M '{0}'", g.display()));
    assert_code(
        lay_file(&g),
        "ERR_SPARSEKIT_LAYOUT_CORRUPT",
        "truncated GPT",
    );
    // Cut after the last partition: readable, with a warning about the backup header.
    must(&format!("truncate -s 32M '{0}' && printf 'label: gpt\\nsize=16MiB\\nsize=8MiB\\n' | sfdisk -q '{0}' && truncate -s 26M '{0}'", g.display()));
    let l = lay_file(&g).unwrap();
    assert_eq!(l.table, Table::Gpt);
    assert!(
        l.warnings.iter().any(|w| w.contains("truncated")),
        "{:?}",
        l.warnings
    );
    assert_eq!(l.used_bytes, 26 * MIB);
}

#[test]
fn gpt_crc_and_backup() {
    if skip(&["sfdisk"], "gpt_crc_and_backup") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let g = t.path().join("g.img");
    must(&format!(
        "truncate -s 16M '{0}' && printf 'label: gpt\\nsize=4MiB\\nsize=4MiB\\n' | sfdisk -q '{0}'",
        g.display()
    ));
    let good = fs::read(&g).unwrap();
    assert_eq!(
        lay(&MemStorage::from_vec(good.clone()))
            .unwrap()
            .partitions
            .len(),
        2
    );
    // Primary entries damaged: the backup (own CRCs) is used, with a warning.
    let mut b = good.clone();
    b[1024 + 40] ^= 1;
    let l = lay(&MemStorage::from_vec(b.clone())).unwrap();
    assert_eq!(l.partitions.len(), 2);
    assert!(
        l.warnings.iter().any(|w| w.contains("backup")),
        "{:?}",
        l.warnings
    );
    // A primary header whose usable area covers the backup GPT (CRC recomputed): the
    // backup copy is used instead, whose own usable area is fine.
    let mut c = good.clone();
    let last = u64::from_le_bytes(c[512 + 48..512 + 56].try_into().unwrap());
    c[512 + 48..512 + 56].copy_from_slice(&(last + 33).to_le_bytes());
    c[512 + 16..512 + 20].fill(0);
    let crc = crc32fast::hash(&c[512..512 + 92]);
    c[512 + 16..512 + 20].copy_from_slice(&crc.to_le_bytes());
    let l = lay(&MemStorage::from_vec(c)).unwrap();
    assert!(
        l.warnings
            .iter()
            .any(|w| w.contains("reach the other GPT header")),
        "{:?}",
        l.warnings
    );
    // Both damaged: corrupt.
    let n = b.len();
    b[n - 512 + 20] ^= 1; // backup header's reserved field, under its CRC
    assert_code(
        lay(&MemStorage::from_vec(b)),
        "ERR_SPARSEKIT_LAYOUT_CORRUPT",
        "both GPT headers bad",
    );
}

#[test]
fn hybrid_mbr() {
    if skip(&["sgdisk"], "hybrid_mbr") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let g = t.path().join("h.img");
    must(&format!("truncate -s 16M '{0}' && sgdisk -n 1:2048:+4M -n 2:0:+4M '{0}' >/dev/null && sgdisk -h 1 '{0}' >/dev/null", g.display()));
    let b = fs::read(&g).unwrap();
    let l = lay(&MemStorage::from_vec(b.clone())).unwrap();
    assert_eq!(l.table, Table::Gpt);
    assert!(l.hybrid_mbr);
    assert_eq!(l.partitions.len(), 2);
    assert_eq!(l.used_bytes, 16 * MIB);
    // A hybrid entry that cuts through a GPT partition contradicts it.
    let mut b = b;
    let e = (0..4)
        .find(|i| b[446 + 16 * i + 4] == 0x83 || b[446 + 16 * i + 4] == 0x07)
        .unwrap_or(0);
    let o = 446 + 16 * e + 12;
    let n = u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) + 2048;
    b[o..o + 4].copy_from_slice(&n.to_le_bytes());
    assert_code(
        lay(&MemStorage::from_vec(b)),
        "ERR_SPARSEKIT_LAYOUT_CORRUPT",
        "hybrid MBR against GPT",
    );
}

/// Copies of file systems taken while mounted (after writes): the copy is not clean.
#[test]
fn copies_taken_while_mounted_are_dirty() {
    if skip(
        &[
            "mkfs.ext4",
            "mkfs.xfs",
            "mkfs.ntfs",
            "mkfs.exfat",
            "mount.exfat-fuse",
        ],
        "copies_taken_while_mounted_are_dirty",
    ) {
        return;
    }
    let t = tempfile::tempdir_in("/tmp").unwrap();
    for (kind, mkfs, mount, mib) in [
        ("ext4", "mkfs.ext4 -q -F", "mount", 32),
        ("xfs", "mkfs.xfs -q -f", "mount", 64),
        ("exfat", "mkfs.exfat", "mount.exfat-fuse", 16),
    ] {
        let img = t.path().join(format!("{kind}.img"));
        let copy = t.path().join(format!("{kind}-copy.img"));
        must(&format!(
            "truncate -s {mib}M '{0}' && {mkfs} '{0}' >/dev/null 2>&1",
            img.display()
        ));
        {
            let lo = Loop::new(&img, 0, mib * MIB);
            let m = Mounted::new(mount, &lo.0, &t.path().join(format!("m-{kind}")));
            must(&format!(
                "head -c 3000000 /dev/urandom > '{0}/a' && sync -f '{0}/a'",
                m.0.display()
            ));
            must(&format!("cp '{}' '{}'", img.display(), copy.display()));
        }
        let l = lay_file(&copy).unwrap();
        let p = &l.partitions[0];
        eprintln!(
            "{kind} copied while mounted: {:?} {}",
            p.state,
            p.reason.as_deref().unwrap_or("")
        );
        assert_ne!(p.state, State::Clean, "{kind}");
        assert_eq!(l.used_bytes, mib * MIB, "{kind}");
        // And after the unmount, the image itself is clean again.
        let l = lay_file(&img).unwrap();
        assert_eq!(
            l.partitions[0].state,
            State::Clean,
            "{kind} after umount: {:?}",
            l.partitions[0]
        );
    }
    let _ = sh("true");
}

/// NTFS with the volume dirty flag set in $Volume (record 3's $VOLUME_INFORMATION), as
/// Windows leaves it when chkdsk is due: all used. (ntfs-3g sets no flag while mounted and
/// keeps no journal, so a copy taken while mounted cannot be told from a clean one.)
#[test]
fn dirty_ntfs_is_all_used() {
    if skip(&["mkfs.ntfs"], "dirty_ntfs_is_all_used") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("n.img");
    must(&format!(
        "truncate -s 16M '{0}' && mkfs.ntfs -Q -F '{0}' >/dev/null 2>&1",
        p.display()
    ));
    let mut b = fs::read(&p).unwrap();
    assert_eq!(
        lay(&MemStorage::from_vec(b.clone())).unwrap().partitions[0].state,
        State::Clean
    );
    let le16 = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let cluster = le16(&b, 0x0b) * b[0x0d] as usize;
    let mft = u64::from_le_bytes(b[0x30..0x38].try_into().unwrap()) as usize * cluster;
    let rec = mft + 3 * 1024;
    assert_eq!(&b[rec..rec + 4], b"FILE");
    let mut a = rec + le16(&b, rec + 0x14);
    loop {
        let ty = u32::from_le_bytes(b[a..a + 4].try_into().unwrap());
        assert_ne!(ty, 0xffff_ffff, "no $VOLUME_INFORMATION");
        if ty == 0x70 {
            let v = a + le16(&b, a + 0x14);
            b[v + 10] |= 1;
            break;
        }
        a += u32::from_le_bytes(b[a + 4..a + 8].try_into().unwrap()) as usize;
    }
    let l = lay(&MemStorage::from_vec(b)).unwrap();
    assert_eq!(l.partitions[0].state, State::Dirty, "{:?}", l.partitions[0]);
    assert_eq!(l.used_bytes, 16 * MIB);
}

/// A boot sector with a FAT BPB that also carries a sane partition table (as MBRs made for
/// USB-FDD/USB-HDD booting do): the table wins, as in Linux, so the BPB cannot make the
/// partitions' contents look like free FAT clusters.
#[test]
fn bpb_with_a_partition_table_is_a_table() {
    if skip(&["mkfs.vfat"], "bpb_with_a_partition_table_is_a_table") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("f.img");
    must(&format!(
        "truncate -s 16M '{0}' && mkfs.vfat -F 16 '{0}' >/dev/null",
        p.display()
    ));
    let mut b = fs::read(&p).unwrap();
    let fat = lay(&MemStorage::from_vec(b.clone())).unwrap();
    assert_eq!(fat.partitions[0].filesystem, Some(FileSystem::Vfat));
    assert!(fat.used_bytes < MIB);
    b[446..510].fill(0);
    put_entry(&mut b, 0, 0, 0x83, 8192, 8192);
    let l = lay(&MemStorage::from_vec(b.clone())).unwrap();
    assert_eq!(l.table, Table::Mbr);
    assert_eq!(l.used_bytes, 16 * MIB, "{l:?}");
    // Entries that cannot fit this device: the boot sector's, so the FAT is read.
    put_entry(&mut b, 0, 0, 0x83, 8192, 1 << 30);
    let l = lay(&MemStorage::from_vec(b)).unwrap();
    assert_eq!(l.table, Table::None);
    assert_eq!(l.partitions[0].filesystem, Some(FileSystem::Vfat));
}

/// metadata_csum: a group descriptor whose checksum does not match (a flag flipped) makes
/// the file system all used.
#[test]
fn ext4_descriptor_checksum() {
    if skip(&["mkfs.ext4"], "ext4_descriptor_checksum") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let p = ext4(t.path(), 40, "-O metadata_csum");
    let mut b = fs::read(&p).unwrap();
    assert_eq!(
        lay(&MemStorage::from_vec(b.clone())).unwrap().partitions[0].state,
        State::Clean
    );
    // 1 KiB blocks: descriptors at block 2, 64 bytes each; group 1's bg_flags.
    let d = 2048 + 64 + 0x12;
    b[d] ^= 0x2;
    let l = lay(&MemStorage::from_vec(b)).unwrap();
    assert_eq!(
        l.partitions[0].state,
        State::Unknown,
        "{:?}",
        l.partitions[0]
    );
    assert!(l.partitions[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("checksum"));
    assert_eq!(l.used_bytes, 40 * MIB);
}
