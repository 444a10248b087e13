//! Interop with the reference: `bmaptool` (Debian bmap-tools 3.6). Tests print
//! `SKIP <test>: <reason>` and return when it (or a compressor, or root) is missing.

use sparsekit_io::ErrorInfo;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sparsekit_bmap::{
    copy, copy_to, create, Bmap, BmapChoice, ChecksumType, CopyOptions, CreateOptions, Error,
    Source,
};
use sparsekit_io::{Control, Fault, Faulty, MemStorage, Phase, Storage};
use sparsekit_testfs::{pattern, run};

fn have(tool: &str, test: &str) -> bool {
    if run("sh", &["-c", &format!("command -v {tool}")]).is_ok() {
        return true;
    }
    eprintln!("SKIP {test}: `{tool}` is not installed (Debian: bmap-tools, xz-utils, zstd, bzip2)");
    false
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sparsekit-bmap-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

/// A sparse image: `runs` of pattern bytes at the given offsets (one of them explicit
/// zeros, which stay mapped), a size that is not a whole number of blocks.
fn image(dir: &Path, name: &str, size: u64, runs: &[(u64, usize)]) -> PathBuf {
    let p = dir.join(name);
    let f = File::create(&p).unwrap();
    f.set_len(size).unwrap();
    for (i, &(off, len)) in runs.iter().enumerate() {
        let data = if i == 1 {
            vec![0u8; len]
        } else {
            pattern(len, off + 1)
        };
        f.write_all_at(&data, off).unwrap();
    }
    f.sync_all().unwrap();
    p
}

fn standard(dir: &Path) -> PathBuf {
    image(
        dir,
        "disk.img",
        (48 << 20) + 1234,
        &[
            (0, 70_000),
            (1 << 20, 8192),
            (5 << 20, 3 << 20),
            (20 << 20, 4096),
            (20 << 20 | 8192, 100),
            (48 << 20, 1234),
        ],
    )
}

fn bmaptool_create(img: &Path, extra: &[&str]) -> PathBuf {
    let out = PathBuf::from(format!("{}.bt.bmap", img.display()));
    let mut args = vec!["create", "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(img.to_str().unwrap());
    run("bmaptool", &args).unwrap();
    out
}

/// `bmaptool copy --bmap BMAP IMG DST`: its output, or its error text.
fn bmaptool_copy(bmap: &Path, img: &Path, dst: &Path) -> Result<String, String> {
    run(
        "bmaptool",
        &[
            "copy",
            "--bmap",
            bmap.to_str().unwrap(),
            img.to_str().unwrap(),
            dst.to_str().unwrap(),
        ],
    )
}

fn same_bytes(a: &Path, b: &Path) {
    let (x, y) = (fs::read(a).unwrap(), fs::read(b).unwrap());
    assert_eq!(
        x.len(),
        y.len(),
        "{} vs {}: sizes",
        a.display(),
        b.display()
    );
    assert!(x == y, "{} and {} differ", a.display(), b.display());
}

#[test]
fn create_matches_bmaptool() {
    if !have("bmaptool", "create_matches_bmaptool") {
        return;
    }
    let d = tmp();
    let img = standard(d.path());
    for (flag, cs) in [
        (None, Some(ChecksumType::Sha256)),
        (Some("--no-checksum"), None),
    ] {
        let theirs = Bmap::read(&bmaptool_create(&img, flag.as_slice())).unwrap();
        let opts = CreateOptions {
            checksum: cs,
            block_size: None,
        };
        let ours = create(&img, &opts, &mut Control::none()).unwrap();
        assert_eq!(theirs.image_size, ours.image_size);
        assert_eq!(theirs.block_size, ours.block_size);
        assert_eq!(theirs.blocks_count, ours.blocks_count);
        assert_eq!(theirs.mapped_blocks_count, ours.mapped_blocks_count);
        assert_eq!(theirs.ranges, ours.ranges, "{flag:?}");
        assert_eq!(theirs.checksum_type, ours.checksum_type);
        assert!(ours.ranges.len() >= 5);
    }
}

#[test]
fn bmaptool_copies_our_bmap() {
    if !have("bmaptool", "bmaptool_copies_our_bmap") {
        return;
    }
    let d = tmp();
    let img = standard(d.path());
    for cs in [Some(ChecksumType::Sha256), Some(ChecksumType::Sha1), None] {
        let bmap = create(
            &img,
            &CreateOptions {
                checksum: cs,
                block_size: None,
            },
            &mut Control::none(),
        )
        .unwrap();
        let bp = d.path().join("ours.bmap");
        fs::write(&bp, bmap.to_xml()).unwrap();
        let dst = d.path().join("bt-out.img");
        let _ = fs::remove_file(&dst);
        bmaptool_copy(&bp, &img, &dst)
            .unwrap_or_else(|e| panic!("bmaptool refused our {cs:?} bmap: {e}"));
        same_bytes(&img, &dst);
        // bmaptool checks our range checksums: a corrupted image must fail there.
        if cs.is_some() {
            let bad = d.path().join("bad.img");
            fs::copy(&img, &bad).unwrap();
            File::options()
                .write(true)
                .open(&bad)
                .unwrap()
                .write_all_at(b"X", 5 << 20)
                .unwrap();
            let e = bmaptool_copy(&bp, &bad, &dst).unwrap_err();
            assert!(e.contains("checksum mismatch"), "{e}");
        }
    }
}

#[test]
fn we_copy_with_bmaptool_bmap() {
    if !have("bmaptool", "we_copy_with_bmaptool_bmap") {
        return;
    }
    let d = tmp();
    let img = standard(d.path());
    let bp = bmaptool_create(&img, &[]);
    let dst = d.path().join("out.img");
    // A destination with old contents: unmapped ranges must end up as holes (zeros).
    fs::write(&dst, vec![0xeeu8; 60 << 20]).unwrap();
    let opts = CopyOptions {
        bmap: BmapChoice::Path(bp.clone()),
        verify: true,
        read_back: true,
        create_files: true,
    };
    let mut phases = Vec::new();
    let r = copy(
        &img,
        &dst,
        &opts,
        &mut Control::new(Default::default(), |p| phases.push(p)),
    )
    .unwrap();
    same_bytes(&img, &dst);
    let b = Bmap::read(&bp).unwrap();
    assert_eq!(r.bytes_written, b.mapped_bytes());
    assert_eq!(r.ranges_verified, b.ranges.len() as u64);
    assert_eq!(r.ranges_read_back, b.ranges.len() as u64);
    // Stays sparse: about the mapped bytes are allocated.
    let alloc = sparsekit_testfs::blocks(&dst) * 512;
    assert!(alloc < b.mapped_bytes() + (1 << 20), "allocated {alloc}");
    for ph in [Phase::Write, Phase::Sync, Phase::Verify] {
        let last = phases.iter().rfind(|p| p.phase == ph).unwrap();
        assert_eq!(Some(last.done), last.total, "{ph}");
    }
    // Our own bmap of the copy is bmaptool's bmap of the original.
    let again = create(&dst, &CreateOptions::default(), &mut Control::none()).unwrap();
    assert_eq!(again.ranges, b.ranges);
}

#[test]
fn corrupted_image_names_range() {
    if !have("bmaptool", "corrupted_image_names_range") {
        return;
    }
    let d = tmp();
    let img = standard(d.path());
    let bp = bmaptool_create(&img, &[]);
    File::options()
        .write(true)
        .open(&img)
        .unwrap()
        .write_all_at(b"!", (5 << 20) + 77)
        .unwrap();
    let dst = d.path().join("out.img");
    let opts = CopyOptions {
        bmap: BmapChoice::Path(bp.clone()),
        ..files_ok()
    };
    let e = copy(&img, &dst, &opts, &mut Control::none()).unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_CHECKSUM_MISMATCH", "{e}");
    let b = Bmap::read(&bp).unwrap();
    let bad = b
        .ranges
        .iter()
        .find(|r| r.first <= 1280 && 1280 <= r.last)
        .unwrap();
    assert!(
        e.to_string()
            .contains(&format!("blocks range {}-{}", bad.first, bad.last)),
        "{e}"
    );
    let (s, end) = bad.bytes(4096, b.image_size);
    assert_eq!(e.range(), Some((s, end - s)));
    assert_eq!(e.path(), Some(img.as_path()));
    // --no-verify copies it anyway.
    let opts = CopyOptions {
        verify: false,
        ..opts
    };
    copy(&img, &dst, &opts, &mut Control::none()).unwrap();
    same_bytes(&img, &dst);
}

/// Bmap files of older versions, written here as the spec describes them.
#[test]
fn old_versions_parse_and_copy() {
    let d = tmp();
    let img = standard(d.path());
    let ours = create(&img, &CreateOptions::default(), &mut Control::none()).unwrap();
    let ranges_sha1: Vec<String> = ours
        .ranges
        .iter()
        .map(|r| {
            let (s, e) = r.bytes(ours.block_size, ours.image_size);
            let mut buf = vec![0u8; (e - s) as usize];
            File::open(&img)
                .unwrap()
                .read_exact_at(&mut buf, s)
                .unwrap();
            ChecksumType::Sha1.digest_hex(&buf)
        })
        .collect();
    let head = |v: &str| {
        format!(
            "<?xml version=\"1.0\" ?>\n<!-- old -->\n<bmap version=\"{v}\">\n    <ImageSize> {} </ImageSize>\n    \
             <BlockSize> {} </BlockSize>\n    <BlocksCount> {} </BlocksCount>\n    \
             <MappedBlocksCount> {} </MappedBlocksCount>\n",
            ours.image_size, ours.block_size, ours.blocks_count, ours.mapped_blocks_count
        )
    };
    let ranges = |attr: &str, sums: &[String]| {
        let mut s = String::from("    <BlockMap>\n");
        for (r, c) in ours.ranges.iter().zip(sums) {
            let a = if attr.is_empty() {
                String::new()
            } else {
                format!(" {attr}=\"{c}\"")
            };
            if r.first == r.last {
                s += &format!("        <Range{a}> {} </Range>\n", r.first);
            } else {
                s += &format!("        <Range{a}> {}-{} </Range>\n", r.first, r.last);
            }
        }
        s + "    </BlockMap>\n</bmap>\n"
    };
    let fill = |x: String, digits: usize, cs: ChecksumType| {
        let zeros = "0".repeat(digits);
        let sum = cs.digest_hex(x.as_bytes());
        x.replacen(&zeros, &sum, 1)
    };
    // 1.2: ranges only; an unused sha1= is ignored.
    let v12 = head("1.2") + &ranges("sha1", &vec!["junk".to_string(); ours.ranges.len()]);
    // 1.3: BmapFileSHA1 and per-range sha1=.
    let v13 = fill(
        head("1.3")
            + &format!("    <BmapFileSHA1> {} </BmapFileSHA1>\n", "0".repeat(40))
            + &ranges("sha1", &ranges_sha1),
        40,
        ChecksumType::Sha1,
    );
    // 1.4 == 2.0: ChecksumType, BmapFileChecksum, chksum=.
    let sums: Vec<String> = ours
        .ranges
        .iter()
        .map(|r| r.checksum.clone().unwrap())
        .collect();
    let v14 = fill(
        head("1.4")
            + "    <ChecksumType> sha256 </ChecksumType>\n"
            + &format!(
                "    <BmapFileChecksum> {} </BmapFileChecksum>\n",
                "0".repeat(64)
            )
            + &ranges("chksum", &sums),
        64,
        ChecksumType::Sha256,
    );
    for (v, x, verified) in [("1.2", v12, false), ("1.3", v13, true), ("1.4", v14, true)] {
        let b = Bmap::parse(x.as_bytes()).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(b.version, v);
        assert_eq!(
            b.ranges
                .iter()
                .map(|r| (r.first, r.last))
                .collect::<Vec<_>>(),
            ours.ranges
                .iter()
                .map(|r| (r.first, r.last))
                .collect::<Vec<_>>()
        );
        assert_eq!(b.has_checksums(), verified, "{v}");
        let bp = d.path().join(format!("v{v}.bmap"));
        fs::write(&bp, &x).unwrap();
        let dst = d.path().join("out.img");
        let opts = CopyOptions {
            bmap: BmapChoice::Path(bp.clone()),
            ..files_ok()
        };
        let r = copy(&img, &dst, &opts, &mut Control::none()).unwrap();
        assert_eq!(
            r.ranges_verified,
            if verified { b.ranges.len() as u64 } else { 0 }
        );
        same_bytes(&img, &dst);
        // bmaptool agrees these files are valid.
        if have("bmaptool", "old_versions_parse_and_copy") {
            let _ = fs::remove_file(&dst);
            bmaptool_copy(&bp, &img, &dst).unwrap_or_else(|e| panic!("bmaptool on {v}: {e}"));
            same_bytes(&img, &dst);
        }
        // A changed byte in the file breaks 1.3's and 1.4's file checksum.
        if verified {
            let bad = x.replacen("<!-- old -->", "<!-- olD -->", 1);
            let e = Bmap::parse(bad.as_bytes()).unwrap_err();
            assert!(matches!(e, Error::BmapChecksum { .. }), "{v}: {e}");
        }
    }
}

fn compress(tool: &str, args: &[&str], src: &Path, out: &Path) {
    let cmd = format!(
        "{tool} {} < '{}' > '{}'",
        args.join(" "),
        src.display(),
        out.display()
    );
    run("sh", &["-c", &cmd]).unwrap();
}

#[test]
fn compressed_images() {
    let d = tmp();
    // The standard image's runs in 20 MiB instead of 48: each of the 8 streams below is
    // decompressed twice and read back.
    let img = image(
        d.path(),
        "disk.img",
        (20 << 20) + 1234,
        &[
            (0, 70_000),
            (1 << 20, 8192),
            (5 << 20, 3 << 20),
            (12 << 20, 4096),
            (12 << 20 | 8192, 100),
            (20 << 20, 1234),
        ],
    );
    let bmap = create(&img, &CreateOptions::default(), &mut Control::none()).unwrap();
    let mut cases: Vec<(&str, PathBuf)> = Vec::new();
    for (tool, args, ext) in [
        ("gzip", vec!["-1", "-c"], "gz"),
        ("xz", vec!["-0", "-T1", "-c"], "xz"),
        ("bzip2", vec!["-1", "-c"], "bz2"),
        ("zstd", vec!["-1", "-q", "-c"], "zst"),
    ] {
        if !have(tool, "compressed_images") {
            continue;
        }
        let out = d.path().join(format!("disk.img.{ext}"));
        compress(tool, &args, &img, &out);
        cases.push((tool, out));
    }
    // Multi-stream xz and concatenated gzip members: the image cut in two, each half
    // compressed alone, the outputs concatenated.
    let half = d.path().join("half");
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    let size = fs::metadata(&img).unwrap().len();
    run(
        "sh",
        &[
            "-c",
            &format!(
                "head -c {} '{}' > '{}'",
                size / 2 + 3,
                img.display(),
                a.display()
            ),
        ],
    )
    .unwrap();
    run(
        "sh",
        &[
            "-c",
            &format!(
                "tail -c +{} '{}' > '{}'",
                size / 2 + 4,
                img.display(),
                b.display()
            ),
        ],
    )
    .unwrap();
    for (tool, args, ext) in [
        ("xz", vec!["-0", "-c"], "multi.xz"),
        ("gzip", vec!["-1", "-c"], "multi.gz"),
    ] {
        if !have(tool, "compressed_images") {
            continue;
        }
        let out = d.path().join(format!("disk.img.{ext}"));
        let (za, zb) = (half.with_extension("a"), half.with_extension("b"));
        compress(tool, &args, &a, &za);
        compress(tool, &args, &b, &zb);
        run(
            "sh",
            &[
                "-c",
                &format!(
                    "cat '{}' '{}' > '{}'",
                    za.display(),
                    zb.display(),
                    out.display()
                ),
            ],
        )
        .unwrap();
        cases.push((tool, out));
    }
    assert!(!cases.is_empty() || !have("gzip", "compressed_images"));
    // The container's own size records, as the system tools wrote them: xz (one stream,
    // two streams) always has them; zstd reading stdin records none; gzip/bzip2 never.
    for (tool, path) in &cases {
        let s = sparsekit_io::FileStorage::open(path).unwrap();
        let f = sparsekit_bmap::Compression::detect(&fs::read(path).unwrap()[..6]).unwrap();
        let got = sparsekit_bmap::decompressed_size(&s, f).unwrap();
        let want = (*tool == "xz").then_some(size);
        assert_eq!(got, want, "{}", path.display());
    }
    if have("zstd", "compressed_images") {
        let z = d.path().join("sized.zst");
        run(
            "zstd",
            &[
                "-q",
                "-1",
                &img.display().to_string(),
                "-o",
                &z.display().to_string(),
            ],
        )
        .unwrap();
        let s = sparsekit_io::FileStorage::open(&z).unwrap();
        let got = sparsekit_bmap::decompressed_size(&s, sparsekit_bmap::Compression::Zstd);
        assert_eq!(got.unwrap(), Some(size));
    }
    let bp = d.path().join("the.bmap");
    fs::write(&bp, bmap.to_xml()).unwrap();
    for (tool, z) in &cases {
        for with_bmap in [true, false] {
            let dst = d.path().join("out.img");
            let opts = CopyOptions {
                bmap: if with_bmap {
                    BmapChoice::Path(bp.clone())
                } else {
                    BmapChoice::None
                },
                verify: true,
                read_back: true,
                create_files: true,
            };
            let mut last = None;
            let r = copy(
                z,
                &dst,
                &opts,
                &mut Control::new(Default::default(), |p| {
                    if p.phase == Phase::Decompress {
                        last = Some(p)
                    }
                }),
            )
            .unwrap_or_else(|e| panic!("{}: {e}", z.display()));
            let last = last.unwrap();
            assert_eq!(Some(last.done), last.total, "{tool}");
            assert_eq!(r.compression.map(|c| c.name()), Some(*tool));
            same_bytes(&img, &dst);
            if with_bmap {
                assert_eq!(r.bytes_written, bmap.mapped_bytes());
                assert_eq!(r.ranges_verified, bmap.ranges.len() as u64);
            } else {
                // All-zero blocks stayed holes: the explicit zeros too.
                assert!(r.bytes_written < bmap.mapped_bytes(), "{tool}");
                assert!(sparsekit_testfs::blocks(&dst) * 512 < bmap.mapped_bytes() + (1 << 20));
            }
        }
    }
    // Found beside the image: disk.img.xz -> disk.img.bmap.
    if let Some((_, z)) = cases.iter().find(|(t, _)| *t == "xz") {
        fs::write(d.path().join("disk.img.bmap"), bmap.to_xml()).unwrap();
        assert_eq!(
            sparsekit_bmap::find_bmap(z),
            Some(d.path().join("disk.img.bmap"))
        );
        let dst = d.path().join("out2.img");
        let r = copy(z, &dst, &files_ok(), &mut Control::none()).unwrap();
        assert_eq!(r.bmap_path, Some(d.path().join("disk.img.bmap")));
        same_bytes(&img, &dst);
        // bmaptool flashes the same compressed image with our bmap.
        if have("bmaptool", "compressed_images") {
            let dst = d.path().join("out3.img");
            run(
                "bmaptool",
                &["copy", z.to_str().unwrap(), dst.to_str().unwrap()],
            )
            .unwrap();
            same_bytes(&img, &dst);
        }
    }
    // Truncated streams: a coded error, with and without a bmap.
    for (tool, z) in &cases {
        let data = fs::read(z).unwrap();
        let cut = d.path().join("cut");
        fs::write(&cut, &data[..data.len() * 2 / 3]).unwrap();
        for choice in [BmapChoice::None, BmapChoice::Path(bp.clone())] {
            let opts = CopyOptions {
                bmap: choice.clone(),
                ..files_ok()
            };
            let e = copy(&cut, &d.path().join("o"), &opts, &mut Control::none()).unwrap_err();
            assert!(
                matches!(
                    e.code(),
                    "ERR_SPARSEKIT_DECOMPRESS" | "ERR_SPARSEKIT_IMAGE_TRUNCATED"
                ),
                "{tool} {choice:?}: {e}"
            );
            assert_eq!(e.path(), Some(cut.as_path()), "{e}");
        }
    }
}

#[test]
fn faulty_destination() {
    let data = pattern(1 << 20, 9);
    let src = MemStorage::from_vec(data.clone());
    let b = sparsekit_bmap::create_from(
        &src,
        data.len() as u64,
        &[0..300_000, 600_000..1 << 20],
        4096,
        Some(ChecksumType::Sha256),
        &mut Control::none(),
    )
    .unwrap();
    for fault in [
        Fault::NoSpaceAfter(700_000),
        Fault::FailWritesAfter {
            n: 1,
            errno: libc::EIO,
        },
        Fault::FlushFails,
    ] {
        let dst = Faulty::new(MemStorage::new(), fault);
        let e = copy_to(
            Source::Plain(&src),
            Some(&b),
            &dst,
            &files_ok(),
            &mut Control::none(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_IO", "{fault:?}: {e}");
        let want = match fault {
            Fault::NoSpaceAfter(_) => libc::ENOSPC,
            _ => libc::EIO,
        };
        assert_eq!(e.raw_os_error(), Some(want), "{fault:?}");
    }
    // A clean run through the same code: bytes equal in the mapped ranges, zeros elsewhere.
    let dst = MemStorage::new();
    copy_to(
        Source::Plain(&src),
        Some(&b),
        &dst,
        &files_ok(),
        &mut Control::none(),
    )
    .unwrap();
    let got = dst.to_vec();
    assert_eq!(got.len(), data.len());
    assert_eq!(&got[..300_000], &data[..300_000]);
    assert!(got[303_104..598_016].iter().all(|&x| x == 0));
}

/// Storage that silently stores a wrong byte (a lying disk): only read-back catches it.
struct Lying(MemStorage, u64);

impl Storage for Lying {
    fn size(&self) -> Result<u64, sparsekit_io::IoError> {
        self.0.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, sparsekit_io::IoError> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize, sparsekit_io::IoError> {
        let n = self.0.write_at(buf, offset)?;
        if (offset..offset + n as u64).contains(&self.1) {
            self.0
                .write_at(&[buf[(self.1 - offset) as usize] ^ 1], self.1)?;
        }
        Ok(n)
    }
    fn flush(&self) -> Result<(), sparsekit_io::IoError> {
        Ok(())
    }
    fn set_len(&self, len: u64) -> Result<(), sparsekit_io::IoError> {
        self.0.set_len(len)
    }
}
impl sparsekit_bmap::Destination for Lying {}

#[test]
fn read_back_catches_lying_destination() {
    let data = pattern(1 << 20, 3);
    let src = MemStorage::from_vec(data.clone());
    for cs in [Some(ChecksumType::Sha256), None] {
        let b = sparsekit_bmap::create_from(
            &src,
            data.len() as u64,
            &[0..100_000, 400_000..500_000, 800_000..900_000],
            4096,
            cs,
            &mut Control::none(),
        )
        .unwrap();
        let dst = Lying(MemStorage::new(), 450_000);
        let opts = files_ok();
        copy_to(
            Source::Plain(&src),
            Some(&b),
            &dst,
            &opts,
            &mut Control::none(),
        )
        .unwrap();
        let opts = CopyOptions {
            read_back: true,
            ..opts
        };
        let e = copy_to(
            Source::Plain(&src),
            Some(&b),
            &dst,
            &opts,
            &mut Control::none(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_CHECKSUM_MISMATCH");
        assert!(
            matches!(
                e,
                Error::ReadBackMismatch {
                    first: 97,
                    last: 122,
                    ..
                }
            ),
            "{e}"
        );
    }
}

#[test]
fn cancel_stops_copy() {
    let d = tmp();
    let img = standard(d.path());
    let cancel = sparsekit_io::Cancel::new();
    let c2 = cancel.clone();
    let e = copy(
        &img,
        &d.path().join("out"),
        &files_ok(),
        &mut Control::new(cancel, move |p| {
            if p.done > 0 {
                c2.cancel()
            }
        }),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_ABORTED");
}

/// Copy options for tests that write into new files in a temp folder (a missing
/// destination is refused without `create_files`).
fn files_ok() -> CopyOptions {
    CopyOptions {
        create_files: true,
        ..CopyOptions::default()
    }
}
