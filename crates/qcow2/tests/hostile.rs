//! Crafted images, one per class of the spec's hostile-image list: each gives a coded error
//! naming the structure and offset, never a panic, and never a write to the image.

use sparsekit_io::ErrorInfo;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

mod common;

use common::{have_qemu, sh};
use sparsekit_io::Control;
use sparsekit_qcow2::table::{L1E_OFFSET_MASK, OFLAG_COMPRESSED};
use sparsekit_qcow2::{Error, Image, OpenOptions};

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    /// `script` run by `sh` in a fresh folder.
    fn new(script: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        sh(dir.path(), &format!("({script}) >/dev/null"));
        Case { dir }
    }
    fn p(&self, n: &str) -> PathBuf {
        self.dir.path().join(n)
    }
    fn open(&self, n: &str) -> sparsekit_qcow2::Result<Image> {
        Image::open(self.p(n), &OpenOptions::default())
    }
    fn poke(&self, n: &str, at: u64, bytes: &[u8]) {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.p(n))
            .unwrap();
        f.write_all_at(bytes, at).unwrap();
    }
    fn peek64(&self, n: &str, at: u64) -> u64 {
        let f = std::fs::File::open(self.p(n)).unwrap();
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, at).unwrap();
        u64::from_be_bytes(b)
    }
}

/// A 4 MiB image with data at 0 and at 1 MiB (64 KiB clusters).
fn base() -> Case {
    Case::new("qemu-img create -q -f qcow2 t.qcow2 4M && qemu-io -f qcow2 -c 'write -P 0xab 0 64k' -c 'write -P 1 1M 64k' t.qcow2")
}

/// Run every read-only operation; the first error is returned.
fn exercise(img: &Image) -> Result<(), Error> {
    img.map(&mut Control::none())?;
    img.allocation()?;
    let mut b = vec![0u8; (img.size().min(4 << 20)) as usize];
    img.read_at(&mut b, 0)?;
    Ok(())
}

fn expect(r: Result<(), Error>, code: &str, structure: &str) -> Error {
    let e = r.unwrap_err();
    assert_eq!(e.code(), code, "{e}");
    let s = e.to_string();
    assert!(s.contains(structure), "{s} should name {structure}");
    e
}

fn l1_offset(c: &Case) -> u64 {
    c.peek64("t.qcow2", 40)
}

fn l2_offset(c: &Case) -> u64 {
    c.peek64("t.qcow2", l1_offset(c)) & L1E_OFFSET_MASK
}

#[test]
fn l2_table_past_eof() {
    if !have_qemu() {
        return;
    }
    let c = base();
    let l1 = l1_offset(&c);
    c.poke("t.qcow2", l1, &(0x8000_0000_0100_0000u64).to_be_bytes());
    let img = c.open("t.qcow2").unwrap();
    let e = expect(exercise(&img), "ERR_SPARSEKIT_QCOW2_CORRUPT", "L2 table");
    assert_eq!(e.offset(), Some(0x100_0000));
    assert!(e.path().is_some());
}

#[test]
fn l2_table_unaligned() {
    if !have_qemu() {
        return;
    }
    let c = base();
    let l1 = l1_offset(&c);
    let l2 = l2_offset(&c);
    c.poke("t.qcow2", l1, &(l2 + 512).to_be_bytes());
    let img = c.open("t.qcow2").unwrap();
    let e = expect(exercise(&img), "ERR_SPARSEKIT_QCOW2_CORRUPT", "L1 entry");
    assert_eq!(e.offset(), Some(l1));
}

#[test]
fn data_cluster_unaligned() {
    if !have_qemu() {
        return;
    }
    let c = base();
    let l2 = l2_offset(&c);
    let e0 = c.peek64("t.qcow2", l2);
    c.poke("t.qcow2", l2, &(e0 + 4096).to_be_bytes());
    let img = c.open("t.qcow2").unwrap();
    let e = expect(exercise(&img), "ERR_SPARSEKIT_QCOW2_CORRUPT", "L2 entry");
    assert_eq!(e.offset(), Some(l2));
}

#[test]
fn data_cluster_past_eof_reads_zeros() {
    if !have_qemu() {
        return;
    }
    // qemu reads data past the end of the file as zeros; so do we, without looping.
    let c = base();
    let l2 = l2_offset(&c);
    c.poke("t.qcow2", l2, &(0x8000_0000_4000_0000u64).to_be_bytes());
    let img = c.open("t.qcow2").unwrap();
    let mut b = vec![1u8; 65536];
    img.read_at(&mut b, 0).unwrap();
    assert!(b.iter().all(|&x| x == 0));
}

fn compressed_entry(offset: u64, sectors: u64) -> u64 {
    // 64 KiB clusters: x = 62 - (16 - 8) = 54 bits of offset.
    OFLAG_COMPRESSED | ((sectors - 1) << 54) | offset
}

#[test]
fn compressed_past_eof() {
    if !have_qemu() {
        return;
    }
    let c = base();
    let l2 = l2_offset(&c);
    c.poke("t.qcow2", l2, &compressed_entry(1 << 40, 4).to_be_bytes());
    let img = c.open("t.qcow2").unwrap();
    let e = expect(
        exercise(&img),
        "ERR_SPARSEKIT_QCOW2_CORRUPT",
        "compressed cluster",
    );
    assert_eq!(e.offset(), Some(1 << 40));
}

#[test]
fn compressed_garbage_and_short_stream() {
    if !have_qemu() {
        return;
    }
    let c = base();
    let l2 = l2_offset(&c);
    let data = c.peek64("t.qcow2", l2) & L1E_OFFSET_MASK;
    // The data cluster holds 0xab bytes: not a deflate stream.
    c.poke("t.qcow2", l2, &compressed_entry(data + 7, 3).to_be_bytes());
    let img = c.open("t.qcow2").unwrap();
    let e = expect(
        exercise(&img),
        "ERR_SPARSEKIT_QCOW2_CORRUPT",
        "compressed cluster",
    );
    assert_eq!(e.range().unwrap().0, data + 7);
    // A valid stream of half a cluster.
    let half = miniz_oxide::deflate::compress_to_vec(&[5u8; 32768], 6);
    c.poke("t.qcow2", data, &half);
    c.poke("t.qcow2", l2, &compressed_entry(data, 1).to_be_bytes());
    let img = c.open("t.qcow2").unwrap();
    let e = expect(exercise(&img), "ERR_SPARSEKIT_QCOW2_CORRUPT", "ends after");
    assert_eq!(e.range().unwrap().0, data);
}

#[test]
fn compressed_stream_inflating_past_one_cluster() {
    if !have_qemu() {
        return;
    }
    let c = base();
    let l2 = l2_offset(&c);
    let data = c.peek64("t.qcow2", l2) & L1E_OFFSET_MASK;
    // 16 MiB of zeros deflate to a few KiB: a bomb if inflated without a limit.
    let bomb = miniz_oxide::deflate::compress_to_vec(&vec![0u8; 16 << 20], 9);
    assert!(bomb.len() < 65536);
    c.poke("t.qcow2", data, &bomb);
    let sectors = bomb.len().div_ceil(512) as u64;
    c.poke(
        "t.qcow2",
        l2,
        &compressed_entry(data, sectors).to_be_bytes(),
    );
    let img = c.open("t.qcow2").unwrap();
    expect(
        exercise(&img),
        "ERR_SPARSEKIT_QCOW2_CORRUPT",
        "past one cluster",
    );
}

#[test]
fn snapshot_table_bombs() {
    if !have_qemu() {
        return;
    }
    // 65536 snapshots claimed, table in a data cluster: runs past the end of the file.
    let c = base();
    let l2 = l2_offset(&c);
    let data = c.peek64("t.qcow2", l2) & L1E_OFFSET_MASK;
    c.poke("t.qcow2", 60, &65536u32.to_be_bytes());
    c.poke("t.qcow2", 64, &data.to_be_bytes());
    let e = c.open("t.qcow2").unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_CORRUPT", "{e}");
    assert!(e.to_string().contains("snapshot"), "{e}");
    // One snapshot with 4 GiB of extra data.
    let c = Case::new("qemu-img create -q -f qcow2 t.qcow2 1M && qemu-img snapshot -c s1 t.qcow2");
    let sn = c.peek64("t.qcow2", 64);
    c.poke("t.qcow2", sn + 36, &u32::MAX.to_be_bytes());
    let e = c.open("t.qcow2").unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_CORRUPT");
    assert_eq!(e.offset(), Some(sn + 36));
    // A name longer than the file.
    let c = Case::new("qemu-img create -q -f qcow2 t.qcow2 1M && qemu-img snapshot -c s1 t.qcow2");
    c.poke("t.qcow2", sn + 14, &u16::MAX.to_be_bytes());
    let size = std::fs::metadata(c.p("t.qcow2")).unwrap().len();
    let e = c.open("t.qcow2");
    // The name may still fit if the file is long enough: then it is read, bounded.
    if let Err(e) = e {
        assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_CORRUPT", "{e} (file {size})");
    }
}

#[test]
fn unknown_incompatible_bit() {
    if !have_qemu() {
        return;
    }
    let c = base();
    c.poke("t.qcow2", 72, &(1u64 << 40).to_be_bytes());
    let e = c.open("t.qcow2").unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_UNSUPPORTED");
    assert!(e.to_string().contains("bit 40"), "{e}");
}

#[test]
fn header_length_out_of_range() {
    if !have_qemu() {
        return;
    }
    for len in [96u32, 105, 1 << 20] {
        let c = base();
        c.poke("t.qcow2", 100, &len.to_be_bytes());
        let e = c.open("t.qcow2").unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_CORRUPT");
        assert_eq!(e.offset(), Some(100), "{e}");
    }
}

#[test]
fn refcount_table_pointing_at_itself() {
    if !have_qemu() {
        return;
    }
    let c = base();
    let rt = c.peek64("t.qcow2", 48);
    c.poke("t.qcow2", rt, &rt.to_be_bytes());
    let img = c.open("t.qcow2").unwrap();
    let r = img.check(&mut Control::none()).unwrap();
    assert!(r.corruptions > 0, "{r:?}");
    // The guest data is still readable.
    exercise(&img).unwrap();
}

#[test]
fn refcount_block_past_eof_and_unaligned() {
    if !have_qemu() {
        return;
    }
    let c = base();
    let rt = c.peek64("t.qcow2", 48);
    c.poke("t.qcow2", rt, &(1u64 << 50).to_be_bytes());
    c.poke("t.qcow2", rt + 8, &0x1234_5600u64.to_be_bytes());
    let img = c.open("t.qcow2").unwrap();
    let r = img.check(&mut Control::none()).unwrap();
    assert!(r.corruptions > 0, "{r:?}");
}

#[test]
fn backing_loop() {
    if !have_qemu() {
        return;
    }
    let c = Case::new(
        "qemu-img create -q -f qcow2 a.qcow2 1M && qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2 && qemu-img rebase -u -b b.qcow2 -F qcow2 a.qcow2",
    );
    let e = c.open("b.qcow2").unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_BACKING", "{e}");
    assert!(e.to_string().contains("loops"), "{e}");
    // Without following, both open.
    let opts = OpenOptions {
        backing: sparsekit_qcow2::BackingPolicy::None,
        ..OpenOptions::default()
    };
    Image::open(c.p("b.qcow2"), &opts).unwrap();
}

#[test]
fn protocol_backing_names_refused() {
    if !have_qemu() {
        return;
    }
    for name in [
        r#"json:{"file":{"driver":"file","filename":"/etc/passwd"}}"#,
        "nbd:localhost:10809",
        "http://example.com/x.qcow2",
    ] {
        let c = Case::new(&format!(
            "qemu-img create -q -f qcow2 t.qcow2 1M && qemu-img rebase -u -b '{name}' -F raw t.qcow2"
        ));
        let e = c.open("t.qcow2").unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_BACKING", "{name}: {e}");
        assert!(e.to_string().contains("protocol"), "{e}");
    }
}

#[test]
fn backing_format_required() {
    if !have_qemu() {
        return;
    }
    let c = Case::new(
        "qemu-img create -q -f qcow2 a.qcow2 1M && qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 t.qcow2",
    );
    // Rename the backing format extension to an unknown type: no format recorded.
    let first = std::fs::read(c.p("t.qcow2")).unwrap();
    let at = first
        .windows(4)
        .position(|w| w == 0xe279_2acau32.to_be_bytes())
        .unwrap();
    c.poke("t.qcow2", at as u64, &0x1234_5678u32.to_be_bytes());
    let e = c.open("t.qcow2").unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_BACKING");
    assert!(e.to_string().contains("no backing format"), "{e}");
}

#[test]
fn chain_deeper_than_30() {
    if !have_qemu() {
        return;
    }
    let mut script = String::from("qemu-img create -q -f qcow2 i0.qcow2 1M");
    for i in 1..=31 {
        script.push_str(&format!(
            " && qemu-img create -q -f qcow2 -b i{}.qcow2 -F qcow2 i{i}.qcow2",
            i - 1
        ));
    }
    let c = Case::new(&script);
    // 30 backing files below i30: allowed; 31 below i31: refused.
    c.open("i30.qcow2").unwrap();
    let e = c.open("i31.qcow2").unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_BACKING");
    assert!(e.to_string().contains("deeper than 30"), "{e}");
}

#[test]
fn luks_metadata_readable_data_refused() {
    if !have_qemu() {
        return;
    }
    let c = Case::new("qemu-img create -q -f qcow2 --object secret,id=s0,data=pw -o encrypt.format=luks,encrypt.key-secret=s0 t.qcow2 1M");
    let img = c.open("t.qcow2").unwrap();
    let info = img.info().unwrap();
    assert!(info.encrypted);
    assert_eq!(info.format_specific.unwrap().encrypt_format, Some("luks"));
    img.map(&mut Control::none()).unwrap();
    let mut b = [0u8; 512];
    // Nothing written yet reads as zeros; write through qemu to get data clusters.
    img.read_at(&mut b, 0).unwrap();
    let c = Case::new("qemu-img create -q -f qcow2 --object secret,id=s0,data=pw -o encrypt.format=luks,encrypt.key-secret=s0 t.qcow2 1M && qemu-io --object secret,id=s0,data=pw --image-opts -c 'write -P 1 0 64k' driver=qcow2,file.filename=t.qcow2,encrypt.key-secret=s0");
    let img = c.open("t.qcow2").unwrap();
    let e = img.read_at(&mut b, 0).unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_ENCRYPTED");
    let e = sparsekit_qcow2::convert(
        &img,
        &c.p("out.raw"),
        &Default::default(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_ENCRYPTED");
    // map never shows where encrypted data is.
    let m = img.map(&mut Control::none()).unwrap();
    assert!(m.iter().all(|e| e.offset.is_none()));
    assert!(m.iter().any(|e| e.data));
}

#[test]
fn extended_l2_bitmap_allocated_and_zero() {
    if !have_qemu() {
        return;
    }
    let c = Case::new("qemu-img create -q -f qcow2 -o extended_l2=on t.qcow2 1M && qemu-io -f qcow2 -c 'write -P 1 0 4k' t.qcow2");
    let l2 = l2_offset(&c);
    c.poke("t.qcow2", l2 + 8, &0x0000_0001_0000_0001u64.to_be_bytes());
    let img = c.open("t.qcow2").unwrap();
    let e = expect(exercise(&img), "ERR_SPARSEKIT_QCOW2_CORRUPT", "L2 entry");
    assert_eq!(e.offset(), Some(l2));
}

#[test]
fn truncated_images() {
    if !have_qemu() {
        return;
    }
    let c = base();
    let full = std::fs::read(c.p("t.qcow2")).unwrap();
    for cut in [
        0usize,
        50,
        104,
        4096,
        65536,
        0x30000 + 8,
        0x40000 + 100,
        0x50000 + 10,
    ] {
        let cut = cut.min(full.len());
        std::fs::write(c.p("cut.qcow2"), &full[..cut]).unwrap();
        match c.open("cut.qcow2") {
            Ok(img) => {
                let _ = exercise(&img);
                let _ = img.check(&mut Control::none());
            }
            Err(e) => assert!(e.code().starts_with("ERR_SPARSEKIT_"), "{e}"),
        }
    }
}

#[test]
fn never_writes() {
    if !have_qemu() {
        return;
    }
    let c = Case::new("qemu-img create -q -f qcow2 -o lazy_refcounts=on t.qcow2 4M && (qemu-io -f qcow2 -c 'write -P 1 0 1M' -c 'sigraise 9' t.qcow2 >/dev/null 2>&1 || true)");
    let p = c.p("t.qcow2");
    let before = (std::fs::read(&p).unwrap(), mtime(&p));
    let img = c.open("t.qcow2").unwrap();
    exercise(&img).unwrap();
    img.info().unwrap();
    img.check(&mut Control::none()).unwrap();
    sparsekit_qcow2::convert(
        &img,
        &c.p("o.raw"),
        &Default::default(),
        &mut Control::none(),
    )
    .unwrap();
    drop(img);
    assert_eq!((std::fs::read(&p).unwrap(), mtime(&p)), before);
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

/// Issue 27: a backing file name with a NUL byte (or other control characters) was
/// printed raw in messages. Messages escape it; the API value stays the exact string.
#[test]
fn backing_name_with_control_characters_is_escaped_in_messages() {
    use sparsekit_qcow2::{BackingPolicy, CreateOptions};
    let dir = tempfile::tempdir().unwrap();
    for (raw, shown) in [("ab\0d", "\"ab\\0d\""), ("a\u{1b}[2Jb", "\"a\\u{1b}[2Jb\"")] {
        let mut b = sparsekit_qcow2::edit::create_bytes(&CreateOptions {
            size: 1 << 20,
            backing: Some(raw.replace(['\0', '\u{1b}'], "_")),
            backing_format: Some("raw".into()),
            ..Default::default()
        })
        .unwrap();
        // Put the control character back into the stored name.
        let at = u64::from_be_bytes(b[8..16].try_into().unwrap()) as usize;
        b[at..at + raw.len()].copy_from_slice(raw.as_bytes());
        let p = dir.path().join("t.qcow2");
        std::fs::write(&p, &b).unwrap();
        let e = Image::open(&p, &OpenOptions::default()).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_BACKING", "{e}");
        let msg = e.to_string();
        assert!(msg.contains(shown), "{msg:?}");
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
        let img = Image::open(
            &p,
            &OpenOptions {
                backing: BackingPolicy::None,
                ..OpenOptions::default()
            },
        )
        .unwrap();
        assert_eq!(img.info().unwrap().backing_filename.as_deref(), Some(raw));
    }
    // Refusals that name a backing file escape it too.
    let p = dir.path().join("t.qcow2");
    let e = sparsekit_qcow2::set_backing(&p, Some("x\0y"), Some("raw"), &Default::default())
        .unwrap_err();
    assert!(e.to_string().contains("\"x\\0y\""), "{e}");
    let e = sparsekit_qcow2::set_backing(&p, Some("x"), Some("r\naw"), &Default::default())
        .unwrap_err();
    assert!(!e.to_string().contains('\n'), "{e}");
}
