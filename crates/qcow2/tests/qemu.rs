//! Images made by `qemu-img`/`qemu-io`, read by this crate and compared with qemu-img's
//! own `map`, `info`, `check` and `convert` output.

mod common;

use sparsekit_io::ErrorInfo;
use std::path::{Path, PathBuf};

use common::{have_qemu, sh, status_stdout as sh_status};

use sparsekit_io::Control;
use sparsekit_qcow2::{map_json, BackingPolicy, Image, OpenOptions};

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn sh(&self, cmd: &str) -> String {
        sh(self.dir.path(), cmd)
    }
    fn open(&self, name: &str) -> Image {
        Image::open(self.p(name), &OpenOptions::default()).unwrap()
    }
    /// Our map JSON equals qemu-img's byte for byte.
    fn check_map(&self, name: &str) {
        let img = self.open(name);
        let ours = map_json(&img.map(&mut Control::none()).unwrap());
        let theirs = self.sh(&format!("qemu-img map --output=json {name}"));
        assert_eq!(ours, theirs, "map of {name}");
    }
}

/// The image kinds of the "Must show", each made by qemu tools; the script runs in
/// the case folder and leaves `t.qcow2` (and whatever it is backed by).
const KINDS: &[(&str, &str)] = &[
    ("empty", "qemu-img create -q -f qcow2 t.qcow2 1M"),
    ("v2", "qemu-img create -q -f qcow2 -o compat=0.10 t.qcow2 3M && qemu-io -f qcow2 -c 'write -P 0xab 0 64k' -c 'write -P 1 1M 1k' -c 'write -z 2M 64k' t.qcow2"),
    ("v3-mixed", "qemu-img create -q -f qcow2 t.qcow2 4M && qemu-io -f qcow2 -c 'write -P 0xab 0 64k' -c 'write -z 128k 64k' -c 'write -P 1 256k 128k' -c 'write -z 256k 64k' -c 'write -z -u 320k 64k' -c 'write -P 2 3M 4k' t.qcow2"),
    ("c512", "qemu-img create -q -f qcow2 -o cluster_size=512 t.qcow2 1M && qemu-io -f qcow2 -c 'write -P 3 1000 5000' -c 'write -z 100k 2k' -c 'write -P 4 900k 100k' t.qcow2"),
    ("c2m", "qemu-img create -q -f qcow2 -o cluster_size=2M t.qcow2 9M && qemu-io -f qcow2 -c 'write -P 3 1000 5000' -c 'write -P 4 5M 100k' -c 'write -z -u 2M 2M' t.qcow2"),
    ("c4k-big", "qemu-img create -q -f qcow2 -o cluster_size=4k t.qcow2 64M && qemu-io -f qcow2 -c 'write -P 3 0 4k' -c 'write -P 4 2M 8k' -c 'write -P 5 40M 4k' -c 'write -P 6 63M 1M' t.qcow2"),
    ("zlib", "head -c 300000 /dev/urandom > r && yes hello | head -c 700000 >> r && truncate -s 2M r && qemu-img convert -c -O qcow2 r t.qcow2"),
    ("zstd", "yes sparsekit | head -c 900000 > r && head -c 70000 /dev/urandom >> r && truncate -s 3M r && qemu-img convert -c -O qcow2 -o compression_type=zstd r t.qcow2"),
    ("zlib-c4k", "yes abc | head -c 90000 > r && truncate -s 1M r && qemu-img convert -c -O qcow2 -o cluster_size=4k r t.qcow2"),
    ("zero-alloc", "qemu-img create -q -f qcow2 t.qcow2 1M && qemu-io -f qcow2 -c 'write -P 9 0 256k' -c 'write -z 64k 64k' -c 'write -z -u 128k 64k' t.qcow2"),
    ("ext-l2", "qemu-img create -q -f qcow2 -o extended_l2=on t.qcow2 2M && qemu-io -f qcow2 -c 'write -P 1 2k 3k' -c 'write -z 40k 2k' -c 'write -P 2 1M 64k' -c 'write -z 1M 4k' -c 'write -z -u 1100k 2k' t.qcow2"),
    ("ext-l2-c16k", "qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16k t.qcow2 1M && qemu-io -f qcow2 -c 'write -P 1 512 512' -c 'write -P 2 100k 20k' t.qcow2"),
    ("chain3-raw", "truncate -s 2M base.raw && printf hello | dd of=base.raw bs=1 seek=200000 conv=notrunc 2>/dev/null && printf x | dd of=base.raw bs=1 seek=1500000 conv=notrunc 2>/dev/null && qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2 3M && qemu-io -f qcow2 -c 'write -P 3 512k 4k' -c 'write -z 1400k 64k' mid.qcow2 && qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 t.qcow2 && qemu-io -f qcow2 -c 'write -P 4 500k 100k' -c 'write -z -u 0 64k' t.qcow2"),
    ("chain-short-base", "qemu-img create -q -f qcow2 base.qcow2 1M && qemu-io -f qcow2 -c 'write -P 1 0 1M' base.qcow2 && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 t.qcow2 4M && qemu-io -f qcow2 -c 'write -P 2 64k 64k' -c 'write -P 2 2M 64k' t.qcow2"),
    ("data-file", "qemu-img create -q -f qcow2 -o data_file=t.data t.qcow2 2M && qemu-io -f qcow2 -c 'write -P 5 64k 128k' -c 'write -z 1M 64k' t.qcow2"),
    ("data-file-raw", "qemu-img create -q -f qcow2 -o data_file=t.data,data_file_raw=on t.qcow2 2M && qemu-io -f qcow2 -c 'write -P 5 64k 128k' t.qcow2"),
    ("snapshots", "qemu-img create -q -f qcow2 t.qcow2 2M && qemu-io -f qcow2 -c 'write -P 1 0 128k' t.qcow2 && qemu-img snapshot -c s1 t.qcow2 && qemu-io -f qcow2 -c 'write -P 2 64k 128k' t.qcow2 && qemu-img snapshot -c second t.qcow2"),
    ("bitmaps", "qemu-img create -q -f qcow2 t.qcow2 2M && qemu-img bitmap --add t.qcow2 b0 && qemu-io -f qcow2 -c 'write -P 1 0 128k' t.qcow2 && qemu-img bitmap --add t.qcow2 b1"),
    ("refcount1", "qemu-img create -q -f qcow2 -o refcount_bits=1 t.qcow2 2M && qemu-io -f qcow2 -c 'write -P 1 0 128k' t.qcow2"),
    ("refcount64", "qemu-img create -q -f qcow2 -o refcount_bits=64 t.qcow2 2M && qemu-io -f qcow2 -c 'write -P 1 0 128k' -c 'write -P 2 1M 4k' t.qcow2"),
    ("prealloc-metadata", "qemu-img create -q -f qcow2 -o preallocation=metadata t.qcow2 1M && qemu-io -f qcow2 -c 'write -P 1 64k 4k' -c 'write -P 2 900k 8k' t.qcow2"),
    ("prealloc-metadata-c4k", "qemu-img create -q -f qcow2 -o preallocation=metadata,cluster_size=4k t.qcow2 3M && qemu-io -f qcow2 -c 'write -P 1 64k 4k' -c 'write -P 2 2M 64k' t.qcow2"),
    ("prealloc-falloc", "qemu-img create -q -f qcow2 -o preallocation=falloc t.qcow2 1M && qemu-io -f qcow2 -c 'write -P 1 64k 4k' t.qcow2"),
    ("prealloc-full", "qemu-img create -q -f qcow2 -o preallocation=full t.qcow2 1M && qemu-io -f qcow2 -c 'write -P 1 64k 4k' t.qcow2"),
];

fn make(kind: &str) -> Case {
    let script = KINDS.iter().find(|k| k.0 == kind).unwrap().1;
    let c = Case::new();
    c.sh(&format!("({script}) >/dev/null"));
    c
}

#[test]
fn map_equals_qemu_img() {
    if !have_qemu() {
        return;
    }
    for (kind, _) in KINDS {
        let c = make(kind);
        c.check_map("t.qcow2");
    }
}

#[test]
fn reads_equal_qemu_convert() {
    if !have_qemu() {
        return;
    }
    for (kind, _) in KINDS {
        let c = make(kind);
        c.sh("qemu-img convert -O raw t.qcow2 ref.raw");
        let want = std::fs::read(c.p("ref.raw")).unwrap();
        let img = c.open("t.qcow2");
        let mut got = vec![0u8; want.len()];
        img.read_at(&mut got, 0).unwrap();
        assert!(got == want, "{kind}: guest bytes differ");
        // Windows at odd offsets.
        for (off, len) in [(1u64, 1000usize), (65535, 70000), (511, 513)] {
            if off + len as u64 > want.len() as u64 {
                continue;
            }
            let mut b = vec![0u8; len];
            img.read_at(&mut b, off).unwrap();
            assert!(
                b[..] == want[off as usize..off as usize + len],
                "{kind} at {off}"
            );
        }
    }
}

#[test]
fn backing_none_reads_zeros_below() {
    if !have_qemu() {
        return;
    }
    let c = make("chain-short-base");
    let opts = OpenOptions {
        backing: BackingPolicy::None,
        ..OpenOptions::default()
    };
    let img = Image::open(c.p("t.qcow2"), &opts).unwrap();
    assert!(img.backing().is_none());
    let mut b = vec![1u8; 4096];
    img.read_at(&mut b, 0).unwrap();
    assert!(b.iter().all(|&x| x == 0));
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

/// Every field both report agrees with `qemu-img info --output=json --backing-chain`.
fn check_info(c: &Case, name: &str) {
    let img = c.open(name);
    let ours = img.chain_info().unwrap();
    let theirs = json(&c.sh(&format!(
        "qemu-img info --output=json --backing-chain {name}"
    )));
    let theirs = theirs.as_array().unwrap();
    assert_eq!(ours.len(), theirs.len(), "{name}: chain length");
    for (o, t) in ours.iter().zip(theirs) {
        let ctx = format!("{name}: {}", o.filename);
        // qemu names files as given; ours were opened by absolute path: compare the tail.
        assert!(
            o.filename.ends_with(t["filename"].as_str().unwrap()),
            "{ctx}"
        );
        assert_eq!(o.format, t["format"], "{ctx}");
        assert_eq!(o.virtual_size, t["virtual-size"], "{ctx}");
        if let Some(cs) = o.cluster_size {
            assert_eq!(cs, t["cluster-size"], "{ctx}");
        }
        assert_eq!(o.actual_size.unwrap(), t["actual-size"], "{ctx}");
        if let Some(d) = t.get("dirty-flag") {
            assert_eq!(o.dirty_flag, *d, "{ctx}");
        }
        assert_eq!(
            o.backing_filename.as_deref(),
            t.get("backing-filename").and_then(|v| v.as_str()),
            "{ctx}"
        );
        assert_eq!(
            o.backing_filename_format.as_deref(),
            t.get("backing-filename-format").and_then(|v| v.as_str()),
            "{ctx}"
        );
        if let Some(f) = t.get("full-backing-filename") {
            assert!(
                o.full_backing_filename
                    .as_deref()
                    .unwrap()
                    .ends_with(f.as_str().unwrap()),
                "{ctx}"
            );
        }
        let sn = t.get("snapshots").and_then(|v| v.as_array());
        assert_eq!(o.snapshots.len(), sn.map_or(0, |v| v.len()), "{ctx}");
        for (a, b) in o.snapshots.iter().zip(sn.into_iter().flatten()) {
            assert_eq!(a.name, b["name"], "{ctx}");
            assert_eq!(a.id, b["id"], "{ctx}");
            assert_eq!(a.date_sec, b["date-sec"], "{ctx}");
            assert_eq!(a.date_nsec, b["date-nsec"], "{ctx}");
            assert_eq!(a.vm_state_size, b["vm-state-size"], "{ctx}");
        }
        let Some(fs) = &o.format_specific else {
            continue;
        };
        let d = &t["format-specific"]["data"];
        assert_eq!(fs.compat, d["compat"], "{ctx}");
        assert_eq!(fs.compression_type, d["compression-type"], "{ctx}");
        assert_eq!(fs.refcount_bits, d["refcount-bits"], "{ctx}");
        let opt_b = |v: Option<bool>, k: &str| {
            assert_eq!(v, d.get(k).and_then(|x| x.as_bool()), "{ctx}: {k}");
        };
        opt_b(fs.lazy_refcounts, "lazy-refcounts");
        opt_b(fs.corrupt, "corrupt");
        opt_b(fs.extended_l2, "extended-l2");
        opt_b(fs.data_file_raw, "data-file-raw");
        assert_eq!(
            fs.data_file.as_deref(),
            d.get("data-file").and_then(|v| v.as_str()),
            "{ctx}"
        );
        let bm = d.get("bitmaps").and_then(|v| v.as_array());
        let ours_bm = fs.bitmaps.clone().unwrap_or_default();
        assert_eq!(ours_bm.len(), bm.map_or(0, |v| v.len()), "{ctx}: bitmaps");
        for (a, b) in ours_bm.iter().zip(bm.into_iter().flatten()) {
            assert_eq!(a.name, b["name"], "{ctx}");
            assert_eq!(a.granularity, b["granularity"], "{ctx}");
            let flags: Vec<&str> = b["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            assert_eq!(a.flag_names(), flags, "{ctx}");
        }
    }
}

/// Our check counts equal `qemu-img check --output=json` (fields qemu omits are 0).
fn check_check(c: &Case, name: &str) -> sparsekit_qcow2::CheckResult {
    let img = c.open(name);
    let ours = img.check(&mut Control::none()).unwrap();
    let (code, out) = sh_status(
        c.dir.path(),
        &format!("qemu-img check --output=json {name}"),
    );
    let t = json(&out);
    let f = |k: &str| t.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let ctx = format!("{name}: ours {ours:?}, qemu {out}");
    assert_eq!(ours.corruptions, f("corruptions"), "{ctx}");
    assert_eq!(ours.leaks, f("leaks"), "{ctx}");
    assert_eq!(ours.image_end_offset, f("image-end-offset"), "{ctx}");
    assert_eq!(ours.total_clusters, f("total-clusters"), "{ctx}");
    assert_eq!(ours.allocated_clusters, f("allocated-clusters"), "{ctx}");
    assert_eq!(ours.fragmented_clusters, f("fragmented-clusters"), "{ctx}");
    assert_eq!(ours.compressed_clusters, f("compressed-clusters"), "{ctx}");
    let want = if ours.corruptions > 0 {
        2
    } else if ours.leaks > 0 {
        3
    } else {
        0
    };
    assert_eq!(code, want, "{ctx}");
    // allocation() counts what check counts.
    let a = img.allocation().unwrap();
    assert_eq!(a.allocated_clusters, ours.allocated_clusters, "{ctx}");
    let ones: u64 = a.bitmap.iter().map(|b| u64::from(b.count_ones())).sum();
    assert_eq!(ones, a.allocated_clusters);
    ours
}

#[test]
fn info_and_check_equal_qemu_img() {
    if !have_qemu() {
        return;
    }
    for (kind, _) in KINDS {
        let c = make(kind);
        check_info(&c, "t.qcow2");
        let r = check_check(&c, "t.qcow2");
        assert_eq!((r.leaks, r.corruptions), (0, 0), "{kind}");
    }
}

#[test]
fn check_finds_leaks_and_corruptions() {
    if !have_qemu() {
        return;
    }
    // Lazy refcounts, killed before the refcounts were written: corruptions (refcount 0,
    // referenced) and OFLAG_COPIED mismatches, as qemu-img check counts them.
    let c = Case::new();
    c.sh("qemu-img create -q -f qcow2 -o lazy_refcounts=on t.qcow2 4M && (qemu-io -f qcow2 -c 'write -P 1 0 1M' -c 'sigraise 9' t.qcow2 >/dev/null 2>&1 || true)");
    let img = c.open("t.qcow2");
    assert!(img.header().dirty());
    check_info(&c, "t.qcow2");
    assert!(check_check(&c, "t.qcow2").corruptions > 0);
    // Refcount of the L1 table's cluster raised: a leak and an OFLAG_COPIED mismatch.
    let c = make("v3-mixed");
    let img = c.open("t.qcow2");
    let h = img.header().clone();
    let rt = h.refcount_table_offset;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(c.p("t.qcow2"))
        .unwrap();
    use std::os::unix::fs::FileExt;
    let mut e = [0u8; 8];
    f.read_exact_at(&mut e, rt).unwrap();
    let rb = u64::from_be_bytes(e);
    let l2 = img.l1_entries()[0] & sparsekit_qcow2::table::L1E_OFFSET_MASK;
    let idx = l2 >> h.cluster_bits;
    f.write_all_at(&5u16.to_be_bytes(), rb + idx * 2).unwrap();
    // And a data cluster's refcount dropped to 0: a corruption.
    let data = 5 * 65536u64;
    f.write_all_at(&0u16.to_be_bytes(), rb + (data >> 16) * 2)
        .unwrap();
    drop(f);
    let r = check_check(&c, "t.qcow2");
    assert!(r.leaks > 0 && r.corruptions > 0, "{r:?}");
}

fn md5(p: &Path) -> String {
    let o = std::process::Command::new("md5sum")
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8(o.stdout).unwrap()[..32].to_string()
}

fn blocks(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().blocks()
}

#[test]
fn convert_equals_qemu_convert_and_keeps_holes() {
    if !have_qemu() {
        return;
    }
    for (kind, _) in KINDS {
        let c = make(kind);
        c.sh("qemu-img convert -O raw t.qcow2 ref.raw");
        let img = c.open("t.qcow2");
        // A stale, larger file at the destination: it must be replaced, not patched.
        std::fs::write(c.p("out.raw"), vec![0x55u8; 5 << 20]).unwrap();
        let mut phases = Vec::new();
        let r = {
            let mut ctl = Control::new(sparsekit_io::Cancel::new(), |p| phases.push(p));
            sparsekit_qcow2::convert(
                &img,
                &c.p("out.raw"),
                &sparsekit_qcow2::ConvertOptions::default(),
                &mut ctl,
            )
            .unwrap()
        };
        assert_eq!(r.size, img.size());
        assert_eq!(md5(&c.p("out.raw")), md5(&c.p("ref.raw")), "{kind}");
        let (ours, theirs) = (blocks(&c.p("out.raw")), blocks(&c.p("ref.raw")));
        assert!(ours <= theirs + 8, "{kind}: {ours} blocks, qemu {theirs}");
        let (code, _) = sh_status(c.dir.path(), "qemu-img compare -q t.qcow2 out.raw");
        assert_eq!(code, 0, "{kind}: qemu-img compare");
        // Each phase ends with done == total; the file replaced is synced last.
        let last = phases.last().unwrap();
        assert_eq!(last.phase, sparsekit_io::Phase::Sync);
        assert_eq!(Some(last.done), last.total);
        for phase in [sparsekit_io::Phase::Map, sparsekit_io::Phase::Write] {
            assert!(phases
                .iter()
                .any(|p| p.phase == phase && Some(p.done) == p.total));
        }
    }
}

#[test]
fn convert_cancelled() {
    if !have_qemu() {
        return;
    }
    let c = make("v3-mixed");
    let img = c.open("t.qcow2");
    let cancel = sparsekit_io::Cancel::new();
    cancel.cancel();
    let mut ctl = Control::with_cancel(cancel);
    let e = sparsekit_qcow2::convert(
        &img,
        &c.p("out.raw"),
        &sparsekit_qcow2::ConvertOptions::default(),
        &mut ctl,
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_ABORTED");
}

#[test]
fn convert_to_full_storage_fails_with_enospc() {
    if !have_qemu() {
        return;
    }
    use sparsekit_io::{Fault, Faulty, MemStorage, Storage};
    let c = make("v3-mixed");
    let img = c.open("t.qcow2");
    let dst = Faulty::new(MemStorage::new(), Fault::NoSpaceAfter(100_000));
    dst.set_len(img.size()).unwrap();
    let e = img
        .convert_to(
            &dst,
            &sparsekit_qcow2::ConvertOptions::default(),
            &mut Control::none(),
        )
        .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_IO");
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
}

#[test]
fn read_error_in_image_is_io_error() {
    if !have_qemu() {
        return;
    }
    use sparsekit_io::{Fault, Faulty, MemStorage};
    let c = make("v3-mixed");
    let bytes = std::fs::read(c.p("t.qcow2")).unwrap();
    // The data cluster of guest offset 0 sits at 0x50000 in images qemu makes this way.
    let s = Faulty::new(MemStorage::from_vec(bytes), Fault::ReadErrorAt(0x50000));
    let img = Image::from_storage(Box::new(s), &OpenOptions::default()).unwrap();
    let mut b = vec![0u8; 65536];
    let e = img.read_at(&mut b, 0).unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_IO");
    assert_eq!(e.raw_os_error(), Some(libc::EIO));
}

/// An image kept on a block device (as XCP-ng keeps qcow2 on LVM volumes): sizes come from
/// the device; map, reads and check agree with qemu-img on the device; convert into a
/// second device writes zeros where asked.
#[test]
fn image_in_a_loop_block_device() {
    if !have_qemu() {
        return;
    }
    use sparsekit_testfs::LoopDev;
    let c = make("chain-short-base");
    // A standalone image: backing names would resolve against /dev.
    c.sh("qemu-img convert -O qcow2 -c t.qcow2 flat.qcow2 && qemu-img convert -O raw flat.qcow2 ref.raw");
    let bytes = std::fs::read(c.p("flat.qcow2")).unwrap();
    let size = (bytes.len() as u64).div_ceil(1 << 20) << 20;
    let Some(dev) = LoopDev::new(size + (1 << 20), 0, "image_in_a_loop_block_device") else {
        return;
    };
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&dev.dev)
            .unwrap();
        f.write_all_at(&bytes, 0).unwrap();
        f.sync_all().unwrap();
    }
    let d = dev.dev.to_str().unwrap();
    let img = Image::open(&dev.dev, &OpenOptions::default()).unwrap();
    assert_eq!(img.file_size(), size + (1 << 20));
    let ours = map_json(&img.map(&mut Control::none()).unwrap());
    assert_eq!(
        ours,
        c.sh(&format!("qemu-img map -f qcow2 --output=json {d}"))
    );
    let want = std::fs::read(c.p("ref.raw")).unwrap();
    let mut got = vec![0u8; want.len()];
    img.read_at(&mut got, 0).unwrap();
    assert!(got == want);
    let r = img.check(&mut Control::none()).unwrap();
    let t = json(&c.sh(&format!(
        "qemu-img check -f qcow2 --output=json {d} || true"
    )));
    let f = |k: &str| t.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    assert_eq!(
        (r.corruptions, r.allocated_clusters),
        (f("corruptions"), f("allocated-clusters"))
    );
    // Convert into another device filled with 0x55: with zero_holes the holes are zeroed.
    let Some(out) = LoopDev::new(img.size(), 0x55, "image_in_a_loop_block_device") else {
        return;
    };
    sparsekit_qcow2::convert(
        &img,
        &out.dev,
        &sparsekit_qcow2::ConvertOptions { zero_holes: true },
        &mut Control::none(),
    )
    .unwrap();
    let mut b = vec![0u8; want.len()];
    {
        use std::os::unix::fs::FileExt;
        std::fs::File::open(&out.dev)
            .unwrap()
            .read_exact_at(&mut b, 0)
            .unwrap();
    }
    assert!(b == want);
}

/// The names in the case folder, sorted (to see that no temporary file was left).
fn names(c: &Case) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(c.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Issue 27: a convert onto an existing file that failed (a source with one bad L2 entry)
/// or was aborted had already truncated the destination. Now the old file stays byte for
/// byte as it was and no temporary file is left; a complete convert replaces it (mode
/// kept, a symbolic link followed), and a block device is still written in place.
#[test]
fn failed_convert_keeps_the_old_destination() {
    use std::os::unix::fs::PermissionsExt;
    if !have_qemu() {
        return;
    }
    let c = make("v3-mixed");
    c.sh("qemu-img convert -O raw t.qcow2 ref.raw && cp t.qcow2 bad.qcow2");
    // bad.qcow2: the entry of guest cluster 0 points half a KiB into its cluster.
    let mut b = std::fs::read(c.p("bad.qcow2")).unwrap();
    let be = |b: &[u8], at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    let l2 = (be(&b, be(&b, 40) as usize) & sparsekit_qcow2::table::L1E_OFFSET_MASK) as usize;
    let e = be(&b, l2);
    assert_ne!(e & sparsekit_qcow2::table::L2E_OFFSET_MASK, 0);
    b[l2..l2 + 8].copy_from_slice(&(e + 512).to_be_bytes());
    std::fs::write(c.p("bad.qcow2"), &b).unwrap();
    let old: Vec<u8> = (0..5u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(c.p("out.raw"), &old).unwrap();
    std::fs::set_permissions(c.p("out.raw"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let listing = names(&c);
    let opts = sparsekit_qcow2::ConvertOptions::default();
    let bad = c.open("bad.qcow2");
    let e =
        sparsekit_qcow2::convert(&bad, &c.p("out.raw"), &opts, &mut Control::none()).unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_CORRUPT", "{e}");
    assert!(
        std::fs::read(c.p("out.raw")).unwrap() == old,
        "the old file changed"
    );
    assert_eq!(names(&c), listing, "a temporary file was left");
    // Into a new file: nothing is left at all.
    sparsekit_qcow2::convert(&bad, &c.p("new.raw"), &opts, &mut Control::none()).unwrap_err();
    assert_eq!(names(&c), listing);
    // Aborted half-way (at the first progress report).
    let img = c.open("t.qcow2");
    let cancel = sparsekit_io::Cancel::new();
    let k = cancel.clone();
    let mut ctl = Control::new(cancel, move |_| k.cancel());
    let e = sparsekit_qcow2::convert(&img, &c.p("out.raw"), &opts, &mut ctl).unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_ABORTED");
    assert!(
        std::fs::read(c.p("out.raw")).unwrap() == old,
        "the old file changed"
    );
    assert_eq!(names(&c), listing, "a temporary file was left");
    // Through a symbolic link: the target is replaced, the link and the mode stay.
    std::os::unix::fs::symlink("out.raw", c.p("link.raw")).unwrap();
    sparsekit_qcow2::convert(&img, &c.p("link.raw"), &opts, &mut Control::none()).unwrap();
    assert!(std::fs::symlink_metadata(c.p("link.raw"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(md5(&c.p("out.raw")), md5(&c.p("ref.raw")));
    let mode = std::fs::metadata(c.p("out.raw"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    assert!(blocks(&c.p("out.raw")) <= blocks(&c.p("ref.raw")) + 8);
    // A block device: written in place.
    let Some(dev) = sparsekit_testfs::LoopDev::new(8 << 20, 0x77, "failed_convert_keeps") else {
        return;
    };
    sparsekit_qcow2::convert(
        &img,
        &dev.dev,
        &sparsekit_qcow2::ConvertOptions { zero_holes: true },
        &mut Control::none(),
    )
    .unwrap();
    let got = std::fs::read(&dev.dev).unwrap();
    let want = std::fs::read(c.p("ref.raw")).unwrap();
    assert!(
        got[..want.len()] == want[..],
        "the device holds other bytes"
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&dev.dev)
        .unwrap()
        .file_type()
        .is_block_device());
}
