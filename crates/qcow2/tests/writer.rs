//! The qcow2 writer against qemu-img: every image it writes is checked clean by
//! `qemu-img check`, equal to its source by `qemu-img compare`, and described as expected
//! by `qemu-img info`.

mod common;

use std::path::{Path, PathBuf};

use common::{qemu_folder, sh, status};
use sparsekit_io::{Cancel, Control, ErrorInfo, Fault, Faulty, FileStorage, MemStorage, Storage};
use sparsekit_qcow2::{
    export_stream, import_image, open_backing, write_image, BackingFile, CompressionType, Image,
    ImportOptions, OpenOptions, Source, StorageSource,
};

/// A 4 MiB sparse raw file: random data, compressible text, a zero block inside data, an
/// odd-sized tail, holes.
fn make_raw(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    let f = FileStorage::open_with(&p, true, true, false).unwrap();
    f.set_len((4 << 20) + 1000).unwrap();
    f.write_all_at(&sparsekit_testfs::pattern(300_000, 7), 4096)
        .unwrap();
    let text: Vec<u8> = b"sparsekit writes qcow2 images\n"
        .iter()
        .copied()
        .cycle()
        .take(500_000)
        .collect();
    f.write_all_at(&text, 1 << 20).unwrap();
    // Data that is zeros (allocated in the file, all-zero clusters in the guest).
    f.write_all_at(&vec![0u8; 200_000], 2 << 20).unwrap();
    f.write_all_at(b"tail", (4 << 20) + 900).unwrap();
    p
}

fn info(dir: &Path, name: &str) -> serde_json::Value {
    serde_json::from_str(&sh(dir, &format!("qemu-img info --output=json {name}"))).unwrap()
}

fn check_clean(dir: &Path, name: &str) {
    let (code, out) = status(dir, &format!("qemu-img check {name}"));
    assert_eq!(code, 0, "qemu-img check {name}: {out}");
}

fn compare_equal(dir: &Path, a: &str, fa: &str, b: &str) {
    let (code, out) = status(dir, &format!("qemu-img compare -f {fa} -F qcow2 {a} {b}"));
    assert_eq!(code, 0, "qemu-img compare {a} {b}: {out}");
}

fn opts(cs: u64, v2: bool, c: Option<CompressionType>) -> ImportOptions {
    ImportOptions {
        cluster_size: cs,
        compat_v2: v2,
        compression: c,
        ..ImportOptions::default()
    }
}

#[test]
fn raw_sparse_file_every_cluster_size_compression_and_version() {
    let Some(d) = qemu_folder() else { return };
    let dir = d.path();
    let raw = make_raw(dir, "src.raw");
    let src = StorageSource::open(&raw).unwrap();
    for cs in [512u64, 4096, 65536, 2 << 20] {
        for v2 in [false, true] {
            for c in [
                None,
                Some(CompressionType::Zlib),
                Some(CompressionType::Zstd),
            ] {
                if v2 && c == Some(CompressionType::Zstd) {
                    continue;
                }
                let name = format!(
                    "o-{cs}-{}-{}.qcow2",
                    if v2 { "v2" } else { "v3" },
                    c.map_or("none", |c| c.name())
                );
                let r = import_image(
                    &src,
                    &dir.join(&name),
                    &opts(cs, v2, c),
                    &mut Control::none(),
                )
                .unwrap();
                check_clean(dir, &name);
                compare_equal(dir, "src.raw", "raw", &name);
                let i = info(dir, &name);
                assert_eq!(i["virtual-size"], (4 << 20) + 1024, "{name}");
                assert_eq!(i["cluster-size"], cs, "{name}");
                let spec = &i["format-specific"]["data"];
                assert_eq!(spec["compat"], if v2 { "0.10" } else { "1.1" }, "{name}");
                if !v2 {
                    let ct = if c == Some(CompressionType::Zstd) {
                        "zstd"
                    } else {
                        "zlib"
                    };
                    assert_eq!(spec["compression-type"], ct, "{name}");
                }
                assert_eq!(
                    r.file_size,
                    std::fs::metadata(dir.join(&name)).unwrap().len()
                );
                // Holes and the zero block are not stored: far less than the 4 MiB.
                assert!(r.file_size < 3 << 20 || cs == 2 << 20, "{name}: {r:?}");
                if c.is_some() {
                    assert!(r.compressed_clusters > 0, "{name}: {r:?}");
                    let map = sh(dir, &format!("qemu-img map --output=json {name}"));
                    assert!(map.contains("\"compressed\": true"), "{name}");
                } else {
                    assert_eq!(r.compressed_clusters, 0);
                }
            }
        }
    }
}

#[test]
fn extended_l2() {
    let Some(d) = qemu_folder() else { return };
    let dir = d.path();
    let raw = make_raw(dir, "src.raw");
    let src = StorageSource::open(&raw).unwrap();
    for c in [None, Some(CompressionType::Zlib)] {
        let name = format!("ext-{}.qcow2", c.map_or("none", |c| c.name()));
        let o = ImportOptions {
            extended_l2: true,
            compression: c,
            ..ImportOptions::default()
        };
        import_image(&src, &dir.join(&name), &o, &mut Control::none()).unwrap();
        check_clean(dir, &name);
        compare_equal(dir, "src.raw", "raw", &name);
        assert_eq!(
            info(dir, &name)["format-specific"]["data"]["extended-l2"],
            true
        );
    }
}

#[test]
fn same_bytes_whatever_the_thread_count_and_run() {
    let Some(d) = qemu_folder() else { return };
    let dir = d.path();
    let raw = make_raw(dir, "src.raw");
    let src = StorageSource::open(&raw).unwrap();
    for c in [
        None,
        Some(CompressionType::Zlib),
        Some(CompressionType::Zstd),
    ] {
        let mut outs = Vec::new();
        for (i, threads) in [1usize, 2, 5, 1].into_iter().enumerate() {
            let o = ImportOptions {
                threads,
                cluster_size: 16384,
                compression: c,
                ..ImportOptions::default()
            };
            let p = dir.join(format!("t{i}.qcow2"));
            import_image(&src, &p, &o, &mut Control::none()).unwrap();
            outs.push(std::fs::read(&p).unwrap());
        }
        assert!(outs.windows(2).all(|w| w[0] == w[1]), "{c:?}");
    }
}

#[test]
fn qcow2_chain_flattened_and_recompressed() {
    let Some(d) = qemu_folder() else { return };
    let dir = d.path();
    sh(
        dir,
        "truncate -s 2M base.raw && printf hello | dd of=base.raw bs=1 seek=200000 conv=notrunc 2>/dev/null \
         && qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2 3M \
         && qemu-io -f qcow2 -c 'write -P 3 512k 4k' -c 'write -z 150k 64k' mid.qcow2 \
         && qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 \
         && qemu-io -f qcow2 -c 'write -P 4 500k 100k' -c 'write -z -u 0 64k' top.qcow2 \
         && qemu-img convert -c -O qcow2 top.qcow2 flat-c.qcow2",
    );
    for src_name in ["top.qcow2", "flat-c.qcow2"] {
        let img = Image::open(dir.join(src_name), &OpenOptions::default()).unwrap();
        for c in [None, Some(CompressionType::Zstd)] {
            let name = format!("{src_name}-{}.out", c.map_or("none", |c| c.name()));
            import_image(
                &img,
                &dir.join(&name),
                &opts(65536, false, c),
                &mut Control::none(),
            )
            .unwrap();
            check_clean(dir, &name);
            let (code, out) = status(dir, &format!("qemu-img compare {src_name} {name}"));
            assert_eq!(code, 0, "{out}");
            assert!(info(dir, &name).get("backing-filename").is_none());
        }
    }
}

#[test]
fn loop_block_device() {
    let Some(d) = qemu_folder() else { return };
    let dir = d.path();
    let Some(dev) = sparsekit_testfs::LoopDev::new(3 << 20, 0, "loop_block_device") else {
        return;
    };
    let f = FileStorage::open_rw(&dev.dev).unwrap();
    f.write_all_at(&sparsekit_testfs::pattern(100_000, 3), 1 << 20)
        .unwrap();
    f.flush().unwrap();
    drop(f);
    let src = StorageSource::open(&dev.dev).unwrap();
    let r = import_image(
        &src,
        &dir.join("dev.qcow2"),
        &ImportOptions::default(),
        &mut Control::none(),
    )
    .unwrap();
    // Two clusters of data; the zeros of the device are not stored.
    assert_eq!(r.data_clusters, 2);
    check_clean(dir, "dev.qcow2");
    let (code, out) = status(
        dir,
        &format!(
            "qemu-img compare -f raw -F qcow2 {} dev.qcow2",
            dev.dev.display()
        ),
    );
    assert_eq!(code, 0, "{out}");
}

#[test]
fn delta_overlay_holds_only_changed_clusters() {
    let Some(d) = qemu_folder() else { return };
    let dir = d.path();
    let raw = make_raw(dir, "base.raw");
    sh(
        dir,
        "qemu-img convert -O qcow2 base.raw base.qcow2 && cp base.raw new.raw",
    );
    // Change two clusters' worth of data, zero one cluster of data, add one in a hole.
    let f = FileStorage::open_rw(&dir.join("new.raw")).unwrap();
    f.write_all_at(b"changed", 70_000).unwrap();
    f.write_all_at(b"changed too", (1 << 20) + 65536 * 3 + 5)
        .unwrap();
    f.write_all_at(&vec![0u8; 65536], 65536 * 2).unwrap();
    f.write_all_at(b"new", 3 << 20).unwrap();
    drop(f);
    let _ = raw;
    let src = StorageSource::open(&dir.join("new.raw")).unwrap();
    for (fmt, base) in [("qcow2", "base.qcow2"), ("raw", "base.raw")] {
        for v2 in [false, true] {
            for c in [None, Some(CompressionType::Zlib)] {
                let name = format!("delta-{fmt}-{v2}-{}.qcow2", c.map_or("none", |c| c.name()));
                let o = ImportOptions {
                    compat_v2: v2,
                    compression: c,
                    backing: Some(BackingFile {
                        file: base.into(),
                        format: fmt.into(),
                    }),
                    ..ImportOptions::default()
                };
                let r = import_image(&src, &dir.join(&name), &o, &mut Control::none()).unwrap();
                check_clean(dir, &name);
                compare_equal(dir, "new.raw", "raw", &name);
                let i = info(dir, &name);
                assert_eq!(i["backing-filename"], base);
                assert_eq!(i["backing-filename-format"], fmt);
                // Clusters 1 (70 000), 2 (zeroed), 19 and 48: four, one of them zero.
                let stored = r.data_clusters + r.compressed_clusters + r.zero_clusters;
                assert_eq!(stored, 4, "{name}: {r:?}");
                assert_eq!(r.zero_clusters, if v2 { 0 } else { 1 }, "{name}: {r:?}");
            }
        }
    }
}

#[test]
fn export_stream_equals_import_and_its_length() {
    let Some(d) = qemu_folder() else { return };
    let dir = d.path();
    let raw = make_raw(dir, "src.raw");
    for cs in [512u64, 65536] {
        let o = opts(cs, false, None);
        let src = StorageSource::open(&raw).unwrap();
        import_image(&src, &dir.join("i.qcow2"), &o, &mut Control::none()).unwrap();
        let mut s = export_stream(Box::new(src), None, &o, &mut Control::none()).unwrap();
        let len = s.len();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut s, &mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, len);
        assert_eq!(bytes, std::fs::read(dir.join("i.qcow2")).unwrap());
        std::fs::write(dir.join("s.qcow2"), &bytes).unwrap();
        check_clean(dir, "s.qcow2");
        compare_equal(dir, "src.raw", "raw", "s.qcow2");
    }
    // With a backing file.
    sh(dir, "qemu-img convert -O qcow2 src.raw base.qcow2");
    let o = ImportOptions {
        backing: Some(BackingFile {
            file: "base.qcow2".into(),
            format: "qcow2".into(),
        }),
        ..ImportOptions::default()
    };
    let src = StorageSource::open(&raw).unwrap();
    let base = open_backing(&dir.join("x"), o.backing.as_ref().unwrap()).unwrap();
    let s = export_stream(Box::new(src), Some(&*base), &o, &mut Control::none()).unwrap();
    assert_eq!(s.layout().data_clusters(), 0);
}

#[test]
fn compressed_stream_refused() {
    let src = StorageSource::new(Box::new(MemStorage::from_vec(vec![1; 4096]))).unwrap();
    let o = opts(65536, false, Some(CompressionType::Zlib));
    let e = export_stream(Box::new(src), None, &o, &mut Control::none()).unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_REFUSED");
}

#[test]
fn bad_options_refused_before_writing() {
    let d = tempfile::tempdir().unwrap();
    let src = StorageSource::new(Box::new(MemStorage::from_vec(vec![1; 4096]))).unwrap();
    let dst = d.path().join("x.qcow2");
    for o in [
        opts(1000, false, None),
        opts(256, false, None),
        opts(4 << 20, false, None),
        opts(65536, true, Some(CompressionType::Zstd)),
        ImportOptions {
            extended_l2: true,
            cluster_size: 4096,
            ..ImportOptions::default()
        },
        ImportOptions {
            backing: Some(BackingFile {
                file: "b".into(),
                format: "vmdk".into(),
            }),
            ..ImportOptions::default()
        },
    ] {
        let e = import_image(&src, &dst, &o, &mut Control::none()).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_REFUSED", "{o:?}: {e}");
        assert!(!dst.exists());
    }
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
}

/// Only the temporary file could have been left: nothing at all must remain.
fn assert_nothing_left(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "src.raw")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn failing_source_read_leaves_no_image() {
    let d = tempfile::tempdir().unwrap();
    // Past the first windows of work: the scanning thread must stop, not hang, when the
    // writing side fails (a regression: it blocked on a full channel).
    let data = sparsekit_testfs::pattern(24 << 20, 5);
    for c in [None, Some(CompressionType::Zlib)] {
        let src = StorageSource::new(Box::new(Faulty::new(
            MemStorage::from_vec(data.clone()),
            Fault::ReadErrorAt(20 << 20),
        )))
        .unwrap();
        let dst = d.path().join("x.qcow2");
        let e = import_image(&src, &dst, &opts(65536, false, c), &mut Control::none()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
        assert!(!dst.exists());
        assert_nothing_left(d.path());
    }
}

#[test]
fn abort_leaves_no_image_and_keeps_the_old_one() {
    let d = tempfile::tempdir().unwrap();
    let data = sparsekit_testfs::pattern(16 << 20, 5);
    let dst = d.path().join("x.qcow2");
    std::fs::write(&dst, b"old").unwrap();
    for c in [None, Some(CompressionType::Zstd)] {
        let src = StorageSource::new(Box::new(MemStorage::from_vec(data.clone()))).unwrap();
        let cancel = Cancel::new();
        let c2 = cancel.clone();
        let mut ctl = Control::new(cancel, move |p| {
            if p.done > 0 && p.phase == sparsekit_io::Phase::Write {
                c2.cancel();
            }
        });
        let e = import_image(&src, &dst, &opts(65536, false, c), &mut ctl).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_ABORTED", "{e}");
        assert_eq!(std::fs::read(&dst).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}

#[test]
fn enospc_in_storage_leaves_no_valid_header() {
    let data = sparsekit_testfs::pattern(2 << 20, 9);
    for c in [None, Some(CompressionType::Zlib)] {
        let src = StorageSource::new(Box::new(MemStorage::from_vec(data.clone()))).unwrap();
        let out = Faulty::new(MemStorage::new(), Fault::NoSpaceAfter(1 << 20));
        let e = write_image(
            &src,
            None,
            &out,
            &opts(65536, false, c),
            &mut Control::none(),
        )
        .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
        // The header cluster is written last: what was written is not an image.
        let b = out.inner().to_vec();
        assert!(b.len() < 4 || &b[..4] != b"QFI\xfb");
    }
}

#[test]
fn enospc_on_a_small_tmpfs_leaves_no_file() {
    let Some(m) = sparsekit_testfs::Mount::new(sparsekit_testfs::Fs::Tmpfs(8), "enospc_tmpfs")
    else {
        return;
    };
    let data = sparsekit_testfs::pattern(12 << 20, 9);
    let src = StorageSource::new(Box::new(MemStorage::from_vec(data))).unwrap();
    let dst = m.join("x.qcow2");
    let e = import_image(&src, &dst, &ImportOptions::default(), &mut Control::none()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    assert!(!dst.exists());
    let left = std::fs::read_dir(m.join("")).unwrap().count();
    assert_eq!(left, 0);
}

#[test]
fn reads_back_through_our_reader() {
    let d = tempfile::tempdir().unwrap();
    let raw = make_raw(d.path(), "src.raw");
    let want = std::fs::read(&raw).unwrap();
    for c in [
        None,
        Some(CompressionType::Zlib),
        Some(CompressionType::Zstd),
    ] {
        let src = StorageSource::open(&raw).unwrap();
        let dst = d.path().join("r.qcow2");
        import_image(&src, &dst, &opts(4096, false, c), &mut Control::none()).unwrap();
        let img = Image::open(&dst, &OpenOptions::default()).unwrap();
        let mut got = vec![0u8; want.len()];
        img.read_exact_at(&mut got, 0).unwrap();
        assert!(got == want, "{c:?}");
        let chk = img.check(&mut Control::none()).unwrap();
        assert_eq!((chk.corruptions, chk.leaks), (0, 0), "{c:?}");
    }
}

/// A raw file whose clusters of 64 KiB hold their only non-zero byte at `at` (or are all
/// zeros: `None`), all of them allocated (written), the last one partial.
fn clusters_with_one_byte(dir: &Path, at: &[Option<usize>]) -> PathBuf {
    let p = dir.join("bytes.raw");
    let f = FileStorage::open_with(&p, true, true, false).unwrap();
    let cs = 65536;
    let len = (at.len() - 1) * cs + 5000;
    let mut b = vec![0u8; len];
    for (i, a) in at.iter().enumerate() {
        if let Some(a) = a {
            b[i * cs + a] = 0x5a;
        }
    }
    f.write_all_at(&b, 0).unwrap();
    p
}

#[test]
fn data_found_anywhere_in_a_cluster_by_the_export_and_the_import() {
    // The export's first pass reads the first 4 KiB of each cluster of a local file, and
    // the rest only when those are zeros: the byte just past the probe, its last byte,
    // the last byte of a cluster and of a partial cluster are all data.
    let d = tempfile::tempdir().unwrap();
    let at = [
        None,
        Some(65535),
        Some(0),
        Some(4096),
        Some(4095),
        None,
        Some(4500),
    ];
    let raw = clusters_with_one_byte(d.path(), &at);
    let want = std::fs::read(&raw).unwrap();
    let o = ImportOptions::default();
    let dst = d.path().join("i.qcow2");
    let r = import_image(
        &StorageSource::open(&raw).unwrap(),
        &dst,
        &o,
        &mut Control::none(),
    )
    .unwrap();
    assert_eq!(r.data_clusters, 5);
    let mut s = export_stream(
        Box::new(StorageSource::open(&raw).unwrap()),
        None,
        &o,
        &mut Control::none(),
    )
    .unwrap();
    assert_eq!(s.layout().data_clusters(), 5);
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut bytes).unwrap();
    assert!(bytes == std::fs::read(&dst).unwrap());
    // The same from a storage read whole (no probing).
    let mem = StorageSource::new(Box::new(MemStorage::from_vec(want.clone()))).unwrap();
    let s = export_stream(Box::new(mem), None, &o, &mut Control::none()).unwrap();
    assert_eq!(s.layout().data_clusters(), 5);
    let img = Image::open(&dst, &OpenOptions::default()).unwrap();
    let mut got = vec![0u8; want.len()];
    img.read_exact_at(&mut got, 0).unwrap();
    assert!(got == want);
}

#[test]
fn preallocated_data_area_cut_to_the_clusters_stored() {
    // 64 clusters written, the last 48 of them zeros: the uncompressed import allocates
    // room for all 64 first (on ext4), and keeps no block past the image's end.
    let d = tempfile::tempdir().unwrap();
    let mut at = vec![Some(7); 16];
    at.extend(std::iter::repeat_n(None, 48));
    let raw = clusters_with_one_byte(d.path(), &at);
    let dst = d.path().join("p.qcow2");
    let r = import_image(
        &StorageSource::open(&raw).unwrap(),
        &dst,
        &ImportOptions::default(),
        &mut Control::none(),
    )
    .unwrap();
    assert_eq!(r.data_clusters, 16);
    let m = std::fs::metadata(&dst).unwrap();
    assert_eq!(m.len(), r.file_size);
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        assert!(
            m.blocks() * 512 <= r.file_size,
            "{} bytes allocated for {} bytes",
            m.blocks() * 512,
            r.file_size
        );
    }
    let img = Image::open(&dst, &OpenOptions::default()).unwrap();
    let chk = img.check(&mut Control::none()).unwrap();
    assert_eq!((chk.corruptions, chk.leaks), (0, 0));
}

/// A raw file or a qcow2 image (with its chain) as a source.
fn open_source(dir: &Path, name: &str) -> Box<dyn Source> {
    let p = dir.join(name);
    match Image::open(&p, &OpenOptions::default()) {
        Ok(i) => Box::new(i),
        Err(_) => Box::new(StorageSource::open(&p).unwrap()),
    }
}

#[test]
fn measure_equals_qemu_img() {
    let Some(d) = qemu_folder() else { return };
    let dir = d.path();
    make_raw(dir, "src.raw");
    sh(
        dir,
        "truncate -s 10M a.raw && printf x | dd of=a.raw bs=1 seek=70005 conv=notrunc 2>/dev/null \
         && qemu-img convert -O qcow2 src.raw s.qcow2 \
         && qemu-img create -q -f qcow2 -b s.qcow2 -F qcow2 top.qcow2 6M \
         && qemu-io -f qcow2 -c 'write -P 4 5M 100k' -c 'write -z 0 1M' top.qcow2 \
         && qemu-img convert -c -O qcow2 src.raw c.qcow2 \
         && qemu-img bitmap --add c.qcow2 b0 && qemu-img bitmap --add -g 4096 c.qcow2 bitmap-long-name \
         && truncate -s 0 empty.raw",
    );
    let cases: &[(&str, &str, MeasureOptionsT)] = &[
        ("", "", (65536, false, false, false)),
        ("-o cluster_size=512", "", (512, false, false, false)),
        ("-o cluster_size=2M", "", (2 << 20, false, false, false)),
        ("-o compat=0.10", "", (65536, true, false, false)),
        (
            "-o extended_l2=on,cluster_size=1M",
            "",
            (1 << 20, false, true, false),
        ),
        (
            "-o backing_file=a.raw,backing_fmt=raw",
            "",
            (65536, false, false, true),
        ),
    ];
    for src in [
        "src.raw",
        "a.raw",
        "s.qcow2",
        "top.qcow2",
        "c.qcow2",
        "empty.raw",
    ] {
        for (qopts, _, (cs, v2, ext, backing)) in cases {
            let theirs = sh(
                dir,
                &format!("qemu-img measure --output=json -O qcow2 {qopts} {src}"),
            );
            let s = open_source(dir, src);
            let o = sparsekit_qcow2::MeasureOptions {
                cluster_size: *cs,
                compat_v2: *v2,
                extended_l2: *ext,
                backing: *backing,
            };
            let ours = sparsekit_qcow2::measure(&*s, &o, &mut Control::none()).unwrap();
            assert_eq!(ours.to_json(), theirs, "{src} {qopts}");
        }
    }
}

type MeasureOptionsT = (u64, bool, bool, bool);

#[test]
fn compare_agrees_with_qemu_img() {
    let Some(d) = qemu_folder() else { return };
    let dir = d.path();
    sh(
        dir,
        "truncate -s 10M a.raw && printf x | dd of=a.raw bs=1 seek=70005 conv=notrunc 2>/dev/null \
         && cp a.raw b.raw && printf y | dd of=b.raw bs=1 seek=3000000 conv=notrunc 2>/dev/null \
         && cp a.raw m.raw && printf y | dd of=m.raw bs=1 seek=71000 conv=notrunc 2>/dev/null \
         && truncate -s 10M e.raw && truncate -s 12M big0.raw \
         && cp a.raw bigz.raw && truncate -s 12M bigz.raw \
         && cp bigz.raw bignz.raw && printf z | dd of=bignz.raw bs=1 seek=11000001 conv=notrunc 2>/dev/null \
         && qemu-img convert -O qcow2 a.raw a.qcow2 && qemu-img convert -c -O qcow2 b.raw b.qcow2 \
         && qemu-img create -q -f qcow2 e.qcow2 10M \
         && qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 o.qcow2 \
         && qemu-io -f qcow2 -c 'write -P 0 1M 64k' -c 'write -P 7 5M 1000' o.qcow2",
    );
    let pairs = [
        ("a.raw", "b.raw"),
        ("b.raw", "a.raw"),
        ("a.raw", "m.raw"),
        ("a.raw", "a.raw"),
        ("a.raw", "e.raw"),
        ("e.raw", "a.raw"),
        ("a.raw", "big0.raw"),
        ("a.raw", "bigz.raw"),
        ("a.raw", "bignz.raw"),
        ("bignz.raw", "a.raw"),
        ("a.qcow2", "a.raw"),
        ("a.qcow2", "b.qcow2"),
        ("b.qcow2", "a.raw"),
        ("a.qcow2", "e.qcow2"),
        ("e.qcow2", "a.qcow2"),
        ("e.qcow2", "e.raw"),
        ("o.qcow2", "a.qcow2"),
        ("a.qcow2", "o.qcow2"),
    ];
    for (x, y) in pairs {
        for strict in [false, true] {
            let s = if strict { "-s " } else { "" };
            let (code, out) = status(dir, &format!("qemu-img compare {s}{x} {y}"));
            let a = open_source(dir, x);
            let b = open_source(dir, y);
            let ours = sparsekit_qcow2::compare(&*a, &*b, strict, &mut Control::none()).unwrap();
            assert_eq!(
                (
                    if ours.is_identical() { 0 } else { 1 },
                    ours.message() + "\n"
                ),
                (code, out.clone()),
                "compare {s}{x} {y}"
            );
        }
    }
}

/// Trim (`in_use`): clusters entirely outside the ranges in use are left unallocated; a
/// cluster partly in use is stored whole, every byte of it; the result is the same
/// compressed or not, imported or streamed, and qemu-img finds it clean.
#[test]
fn trim_leaves_out_clusters_not_in_use() {
    let d = tempfile::tempdir().unwrap();
    let cs = 4096u64;
    // Eight clusters of data, all different, none zero.
    let data = sparsekit_testfs::pattern(8 * cs as usize, 3);
    let raw = d.path().join("t.raw");
    std::fs::write(&raw, &data).unwrap();
    // In use: 10 bytes of cluster 2, all of cluster 5, the last byte of cluster 6 and
    // the first of cluster 7 (unsorted, and past the end).
    let in_use = vec![
        (5 * cs, cs),
        (2 * cs + 100, 10),
        (7 * cs - 1, 2),
        (100 * cs, cs),
    ];
    let kept = [2u64, 5, 6, 7];
    let mut want = vec![0u8; data.len()];
    for &c in &kept {
        let r = (c * cs) as usize..((c + 1) * cs) as usize;
        want[r.clone()].copy_from_slice(&data[r]);
    }
    for c in [
        None,
        Some(CompressionType::Zlib),
        Some(CompressionType::Zstd),
    ] {
        let o = ImportOptions {
            in_use: Some(in_use.clone()),
            ..opts(cs, false, c)
        };
        let src = StorageSource::open(&raw).unwrap();
        let dst = d.path().join("t.qcow2");
        let r = import_image(&src, &dst, &o, &mut Control::none()).unwrap();
        assert_eq!(r.data_clusters + r.compressed_clusters, 4, "{c:?}: {r:?}");
        let img = Image::open(&dst, &OpenOptions::default()).unwrap();
        let mut got = vec![0u8; want.len()];
        img.read_exact_at(&mut got, 0).unwrap();
        assert!(got == want, "{c:?}");
        let chk = img.check(&mut Control::none()).unwrap();
        assert_eq!((chk.corruptions, chk.leaks), (0, 0), "{c:?}");
        if c.is_none() {
            let file = std::fs::read(&dst).unwrap();
            let src = StorageSource::open(&raw).unwrap();
            let mut s = export_stream(Box::new(src), None, &o, &mut Control::none()).unwrap();
            let mut streamed = Vec::new();
            std::io::Read::read_to_end(&mut s, &mut streamed).unwrap();
            assert!(streamed == file, "the stream equals the import");
        }
        if let Some(q) = qemu_folder() {
            std::fs::copy(&dst, q.path().join("t.qcow2")).unwrap();
            check_clean(q.path(), "t.qcow2");
        }
    }
    // Nothing in use: no data cluster at all; everything in use: all eight.
    let src = StorageSource::open(&raw).unwrap();
    let dst = d.path().join("n.qcow2");
    for (used, n) in [(vec![], 0), (vec![(0, 8 * cs)], 8)] {
        let o = ImportOptions {
            in_use: Some(used),
            ..opts(cs, false, None)
        };
        let r = import_image(&src, &dst, &o, &mut Control::none()).unwrap();
        assert_eq!(r.data_clusters, n);
    }
}
