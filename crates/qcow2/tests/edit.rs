//! Editing against qemu-img as the oracle: after every operation `qemu-img check` finds no
//! errors and no leaks, `qemu-img info`/`map` show the change and `qemu-img compare`
//! confirms the guest data; and the fault matrix: for every N, the operation run over a
//! storage whose writes fail from the N-th on leaves an image `qemu-img check` accepts
//! (leaks allowed) that reads as the old or the new image. Each failing write runs
//! qemu-img up to three times, so an operation of many writes is checked at a sample of
//! its write numbers (the first and last 6 and 4 between) unless SPARSEKIT_LONG_TESTS=1.

mod common;

use sparsekit_io::ErrorInfo;
use std::path::Path;
use std::sync::Arc;

use common::{have_qemu, qemu_folder, sh, status};

use sparsekit_io::{Control, Fault, Faulty, IoError, MemStorage, Storage};
use sparsekit_qcow2::{CreateOptions, EditOptions, Editor, Error, Preallocation};

/// `qemu-img check` must exit 0: no corruption, no leak.
fn check_clean(dir: &Path, img: &str) {
    let (st, out) = status(dir, &format!("qemu-img check {img}"));
    assert_eq!(st, 0, "qemu-img check {img}: {out}");
}

/// A storage shared with the test, so its bytes can be looked at after the editor is gone.
struct Shared(Arc<Faulty<MemStorage>>);

impl Storage for Shared {
    fn size(&self) -> Result<u64, IoError> {
        self.0.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, IoError> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize, IoError> {
        self.0.write_at(buf, offset)
    }
    fn flush(&self) -> Result<(), IoError> {
        self.0.flush()
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), IoError> {
        self.0.write_zeroes(offset, len)
    }
    fn punch_hole(&self, offset: u64, len: u64) -> Result<(), IoError> {
        self.0.punch_hole(offset, len)
    }
    fn set_len(&self, len: u64) -> Result<(), IoError> {
        self.0.set_len(len)
    }
}

type Op = dyn Fn(&mut Editor) -> Result<(), Error>;

/// Run `op` over the bytes of `dir/t.qcow2` with writes failing from the `n`-th on
/// (`None`: never); returns the bytes after, the writes made and the result.
fn run_op(bytes: &[u8], n: Option<u64>, op: &Op) -> (Vec<u8>, u64, Result<(), Error>) {
    let f = Arc::new(Faulty::new(
        MemStorage::from_vec(bytes.to_vec()),
        Fault::FailWritesAfter {
            n: n.unwrap_or(u64::MAX),
            errno: libc::EIO,
        },
    ));
    let r = Editor::new(Box::new(Shared(f.clone()))).and_then(|mut ed| op(&mut ed));
    (f.inner().to_vec(), f.writes(), r)
}

/// The write numbers a fault matrix fails from, for an operation of `writes` writes: every
/// one with SPARSEKIT_LONG_TESTS=1 or up to 16 writes; otherwise the first 6 (the
/// header, table and refcount updates most operations begin with), the last 6 (the
/// commit), and 4 spread evenly between.
fn fault_points(writes: u64) -> Vec<u64> {
    if writes <= 16 || std::env::var_os("SPARSEKIT_LONG_TESTS").is_some() {
        return (0..writes).collect();
    }
    let mut v: Vec<u64> = (0..6).chain(writes - 6..writes).collect();
    v.extend((1..=4).map(|i| 6 + i * (writes - 12) / 5));
    v.sort_unstable();
    v.dedup();
    v
}

/// The whole matrix for one operation on the image `script` makes as `t.qcow2` in a
/// fresh folder. `verify` looks at the cleanly edited image (`new.qcow2`). Returns
/// (writes of the clean run, failing runs, runs that left leaks).
fn matrix(name: &str, script: &str, op: &Op, verify: &dyn Fn(&Path)) -> (u64, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sh(d, &format!("({script}) >/dev/null"));
    let old = std::fs::read(d.join("t.qcow2")).unwrap();
    matrix_on(name, d, &old, op, verify)
}

/// [`matrix`] over the image bytes `old`, in the folder `d`.
fn matrix_on(name: &str, d: &Path, old: &[u8], op: &Op, verify: &dyn Fn(&Path)) -> (u64, u64, u64) {
    std::fs::write(d.join("old.qcow2"), old).unwrap();
    let (new, writes, r) = run_op(old, None, op);
    r.unwrap_or_else(|e| panic!("{name}: {e}"));
    std::fs::write(d.join("new.qcow2"), &new).unwrap();
    check_clean(d, "new.qcow2");
    verify(d);
    let mut leaky = 0;
    let points = fault_points(writes);
    for &n in &points {
        let (after, _, r) = run_op(old, Some(n), op);
        assert!(
            r.is_err(),
            "{name}: write {n} failed but the operation succeeded"
        );
        std::fs::write(d.join("f.qcow2"), &after).unwrap();
        let (st, out) = status(d, "qemu-img check f.qcow2");
        assert!(
            st == 0 || st == 3,
            "{name}: writes failing from #{n}: qemu-img check exit {st}: {out}"
        );
        if st == 3 {
            leaky += 1;
        }
        let same_old = status(d, "qemu-img compare -q f.qcow2 old.qcow2").0 == 0;
        let same_new = status(d, "qemu-img compare -q f.qcow2 new.qcow2").0 == 0;
        assert!(
            same_old || same_new,
            "{name}: writes failing from #{n}: guest data is neither old nor new"
        );
    }
    let runs = points.len() as u64;
    println!(
        "fault matrix {name}: {writes} writes, {runs} failing runs, {leaky} left leaks, 0 invalid"
    );
    (writes, runs, leaky)
}

fn info(d: &Path, img: &str) -> serde_json::Value {
    serde_json::from_str(&sh(d, &format!("qemu-img info --output=json {img}"))).unwrap()
}

const KINDS: &[(&str, &str)] = &[
    ("v3", "qemu-img create -q -f qcow2 t.qcow2 4M && qemu-io -f qcow2 -c 'write -P 0xab 0 64k' -c 'write -z 128k 64k' -c 'write -P 1 1M 128k' t.qcow2"),
    ("v2", "qemu-img create -q -f qcow2 -o compat=0.10 t.qcow2 3M && qemu-io -f qcow2 -c 'write -P 0xab 0 64k' -c 'write -P 1 1M 1k' t.qcow2"),
    ("zstd", "yes sparsekit | head -c 300000 > r && truncate -s 1M r && qemu-img convert -c -O qcow2 -o compression_type=zstd r t.qcow2"),
    ("extl2", "qemu-img create -q -f qcow2 -o extended_l2=on t.qcow2 2M && qemu-io -f qcow2 -c 'write -P 1 2k 3k' -c 'write -z 40k 2k' t.qcow2"),
    ("c512", "qemu-img create -q -f qcow2 -o cluster_size=512 t.qcow2 1M && qemu-io -f qcow2 -c 'write -P 7 0 20k' -c 'write -P 8 900k 3k' t.qcow2"),
    ("rc1", "qemu-img create -q -f qcow2 -o refcount_bits=1 t.qcow2 1M && qemu-io -f qcow2 -c 'write -P 7 0 200k' t.qcow2"),
    ("rc64", "qemu-img create -q -f qcow2 -o refcount_bits=64 t.qcow2 1M && qemu-io -f qcow2 -c 'write -P 7 0 200k' t.qcow2"),
    ("snap", "qemu-img create -q -f qcow2 t.qcow2 2M && qemu-io -f qcow2 -c 'write -P 1 0 128k' t.qcow2 && qemu-img snapshot -c s1 t.qcow2 && qemu-io -f qcow2 -c 'write -P 2 64k 64k' t.qcow2"),
    ("chain", "qemu-img create -q -f qcow2 b.qcow2 2M && qemu-io -f qcow2 -c 'write -P 9 0 1M' b.qcow2 && qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 t.qcow2 && qemu-io -f qcow2 -c 'write -P 4 500k 100k' t.qcow2"),
];

const HIDDEN: u32 = 0x7661_7465;

#[test]
fn set_extension_every_kind_and_fault_matrix() {
    if !have_qemu() {
        return;
    }
    for (kind, script) in KINDS {
        let add: &Op = &|ed| ed.set_extension(HIDDEN, Some(&[1]));
        matrix(&format!("set-extension add {kind}"), script, add, &|d| {
            let raw = std::fs::read(d.join("new.qcow2")).unwrap();
            let old = std::fs::read(d.join("old.qcow2")).unwrap();
            // Extension found by the reader; the rest of the header read as before.
            let a = sparsekit_qcow2::Image::from_storage(
                Box::new(MemStorage::from_vec(raw)),
                &Default::default(),
            )
            .unwrap();
            let b = sparsekit_qcow2::Image::from_storage(
                Box::new(MemStorage::from_vec(old)),
                &Default::default(),
            )
            .unwrap();
            let e = a
                .header()
                .extensions
                .iter()
                .find(|e| e.kind == HIDDEN)
                .unwrap();
            assert_eq!(e.data, [1]);
            assert_eq!(a.header().backing_file, b.header().backing_file);
            let kept: Vec<_> = a
                .header()
                .extensions
                .iter()
                .filter(|e| e.kind != HIDDEN)
                .map(|e| (e.kind, e.data.clone()))
                .collect();
            let was: Vec<_> = b
                .header()
                .extensions
                .iter()
                .map(|e| (e.kind, e.data.clone()))
                .collect();
            assert_eq!(kept, was);
            assert_eq!(status(d, "qemu-img compare -q new.qcow2 old.qcow2").0, 0);
            assert_eq!(
                info(d, "new.qcow2")["backing-filename"],
                info(d, "old.qcow2")["backing-filename"]
            );
        });
    }
    // Replace and remove, on an image that has it.
    let script = "qemu-img create -q -f qcow2 -b b.raw -F raw t.qcow2 1M 2>/dev/null || (truncate -s 1M b.raw && qemu-img create -q -f qcow2 -b b.raw -F raw t.qcow2)";
    let with = |ed: &mut Editor| -> Result<(), Error> { ed.set_extension(HIDDEN, Some(&[1])) };
    let dir = tempfile::tempdir().unwrap();
    sh(dir.path(), script);
    let bytes = std::fs::read(dir.path().join("t.qcow2")).unwrap();
    let (bytes, _, r) = run_op(&bytes, None, &with);
    r.unwrap();
    std::fs::write(dir.path().join("t.qcow2"), &bytes).unwrap();
    let remove: &Op = &|ed| ed.set_extension(HIDDEN, None);
    matrix(
        "set-extension remove",
        &format!(
            "cp {}/t.qcow2 t.qcow2 && cp {}/b.raw b.raw",
            dir.path().display(),
            dir.path().display()
        ),
        remove,
        &|d| {
            let raw = std::fs::read(d.join("new.qcow2")).unwrap();
            let a = sparsekit_qcow2::Image::from_storage(
                Box::new(MemStorage::from_vec(raw)),
                &Default::default(),
            )
            .unwrap();
            assert!(a.header().extensions.iter().all(|e| e.kind != HIDDEN));
            assert_eq!(info(d, "new.qcow2")["backing-filename"], "b.raw");
        },
    );
    // Reserved types are refused.
    let (_, _, r) = run_op(&bytes, None, &|ed| {
        ed.set_extension(0xe279_2aca, Some(b"raw"))
    });
    assert_eq!(r.unwrap_err().code(), "ERR_SPARSEKIT_QCOW2_REFUSED");
}

#[test]
fn set_backing_fault_matrix() {
    if !have_qemu() {
        return;
    }
    let script = "qemu-img create -q -f qcow2 b.qcow2 2M && qemu-io -f qcow2 -c 'write -P 9 0 1M' b.qcow2 && qemu-img convert -O raw b.qcow2 b2.raw && qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 t.qcow2 && qemu-io -f qcow2 -c 'write -P 4 500k 100k' t.qcow2";
    let op: &Op = &|ed| ed.set_backing(Some("b2.raw"), Some("raw"));
    matrix("set-backing", script, op, &|d| {
        let i = info(d, "new.qcow2");
        assert_eq!(i["backing-filename"], "b2.raw");
        assert_eq!(i["backing-filename-format"], "raw");
        // Same guest data: b2.raw holds what b.qcow2 held.
        assert_eq!(status(d, "qemu-img compare -q new.qcow2 old.qcow2").0, 0);
        // qemu-img rebase -u writes the same header cluster.
        sh(
            d,
            "cp old.qcow2 q.qcow2 && qemu-img rebase -u -b b2.raw -F raw q.qcow2",
        );
        let a = std::fs::read(d.join("new.qcow2")).unwrap();
        let b = std::fs::read(d.join("q.qcow2")).unwrap();
        assert_eq!(a.len(), b.len());
        assert_eq!(
            a[..512],
            b[..512],
            "header bytes differ from qemu-img rebase -u"
        );
    });
    let op: &Op = &|ed| ed.set_backing(None, None);
    matrix("set-backing none", script, op, &|d| {
        let i = info(d, "new.qcow2");
        assert!(i.get("backing-filename").is_none());
        sh(
            d,
            "cp old.qcow2 q.qcow2 && qemu-img rebase -u -b '' q.qcow2",
        );
        assert_eq!(status(d, "qemu-img compare -q new.qcow2 q.qcow2").0, 0);
    });
}

#[test]
fn resize_fault_matrix() {
    if !have_qemu() {
        return;
    }
    for (kind, script) in KINDS {
        if *kind == "snap" {
            continue;
        }
        // Grow well past the L1 table (512-byte clusters: the L1 moves and the refcount
        // table grows).
        let op: &Op = &|ed| ed.resize(64 << 20);
        matrix(&format!("resize grow {kind}"), script, op, &|d| {
            assert_eq!(info(d, "new.qcow2")["virtual-size"], 64 << 20);
            // Guest data equal where both exist (compare -s is strict about size).
            assert_eq!(status(d, "qemu-img compare -q new.qcow2 old.qcow2").0, 0);
        });
    }
    // 512-byte clusters and 64-bit refcounts (64 per block, 4096 per table cluster)
    // grown to 8 GiB: an L1 table of 4 096 clusters needs 65 new refcount blocks and a
    // larger refcount table, which moves. (SPARSEKIT_LONG_TESTS: 16-bit refcounts to
    // 40 GiB, 80 new blocks.)
    let long = std::env::var_os("SPARSEKIT_LONG_TESTS").is_some();
    let (script, size) = if long {
        (KINDS[4].1, 40u64 << 30)
    } else {
        ("qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 t.qcow2 1M && qemu-io -f qcow2 -c 'write -P 7 0 20k' t.qcow2", 8u64 << 30)
    };
    let op: &Op = &move |ed| ed.resize(size);
    matrix("resize grow refcount table", script, op, &|d| {
        let i = info(d, "new.qcow2");
        assert_eq!(i["virtual-size"], size);
        let raw = std::fs::read(d.join("new.qcow2")).unwrap();
        let old = std::fs::read(d.join("old.qcow2")).unwrap();
        assert_ne!(raw[48..60], old[48..60], "the refcount table did not move");
    });
    // Shrink: refused over data, done over unallocated tail.
    let script = KINDS[0].1;
    let dir = tempfile::tempdir().unwrap();
    sh(dir.path(), script);
    let bytes = std::fs::read(dir.path().join("t.qcow2")).unwrap();
    let (_, _, r) = run_op(&bytes, None, &|ed| ed.resize(1 << 20));
    assert_eq!(r.unwrap_err().code(), "ERR_SPARSEKIT_QCOW2_REFUSED");
    let op: &Op = &|ed| ed.resize(2 << 20);
    matrix("resize shrink", script, op, &|d| {
        assert_eq!(info(d, "new.qcow2")["virtual-size"], 2 << 20);
    });
}

#[test]
fn discard_all_fault_matrix() {
    if !have_qemu() {
        return;
    }
    for (kind, script) in KINDS {
        let op: &Op = &|ed| ed.discard_all(&mut Control::none());
        matrix(&format!("discard {kind}"), script, op, &|d| {
            let m = sh(d, "qemu-img map --output=json new.qcow2");
            // Nothing of the image's own is left: every entry has depth > 0 or no data.
            let v: serde_json::Value = serde_json::from_str(&m).unwrap();
            for e in v.as_array().unwrap() {
                assert!(
                    e["depth"].as_u64().unwrap() > 0 || !e["present"].as_bool().unwrap(),
                    "{m}"
                );
            }
        });
    }
}

/// Leaky images made the way a crash makes them: resize with writes failing after the
/// new L1 table and refcounts are in, before the header points at it. Written to `d`.
fn leaky_images(d: &Path) -> Vec<Vec<u8>> {
    sh(d, "qemu-img create -q -f qcow2 -o cluster_size=512 t.qcow2 1M && qemu-io -f qcow2 -c 'write -P 7 0 20k' t.qcow2 >/dev/null");
    let bytes = std::fs::read(d.join("t.qcow2")).unwrap();
    let grow: &Op = &|ed| ed.resize(64 << 20);
    let (_, writes, _) = run_op(&bytes, None, grow);
    let mut leaky = Vec::new();
    for n in 0..writes {
        let (after, _, _) = run_op(&bytes, Some(n), grow);
        std::fs::write(d.join("f.qcow2"), &after).unwrap();
        if status(d, "qemu-img check f.qcow2").0 == 3 {
            leaky.push(after);
        }
    }
    assert!(!leaky.is_empty(), "no fault left a leak to repair");
    leaky
}

const REPAIR: &Op = &|ed| ed.repair_leaks(&mut Control::none()).map(|_| ());

#[test]
fn repair_fixes_leaks_left_by_faults() {
    let Some(dir) = qemu_folder() else {
        return;
    };
    let d = dir.path();
    for after in leaky_images(d) {
        std::fs::write(d.join("f.qcow2"), &after).unwrap();
        let (fixed, _, r) = run_op(&after, None, REPAIR);
        r.unwrap();
        std::fs::write(d.join("r.qcow2"), &fixed).unwrap();
        check_clean(d, "r.qcow2");
        assert_eq!(status(d, "qemu-img compare -q r.qcow2 f.qcow2").0, 0);
    }
}

#[test]
fn repair_fault_matrix() {
    let Some(dir) = qemu_folder() else {
        return;
    };
    let d = dir.path();
    let leaky = leaky_images(d);
    let (mut writes, mut leaks) = (0, 0);
    // The first and the last leaky image: the fewest and the most leaked clusters.
    for (i, old) in [&leaky[0], &leaky[leaky.len() - 1]].into_iter().enumerate() {
        let (w, _, l) = matrix_on(&format!("repair #{i}"), d, old, REPAIR, &|_| {});
        assert!(w > 0, "repair of a leaky image wrote nothing");
        writes += w;
        leaks += l;
    }
    println!("fault matrix repair: {writes} failing runs in all, {leaks} left leaks, 0 invalid");
}

/// `create_on` (and so `create` and `snapshot`, which write through it) with writes
/// failing from every N-th on: the storage holds the untouched old bytes or no qcow2
/// image at all (its first cluster zeroed), never a half-made image; the clean run gives
/// `qemu-img create`'s bytes (or, on a device, an image `qemu-img check` accepts).
#[test]
fn create_and_snapshot_fault_matrix() {
    let Some(dir) = qemu_folder() else {
        return;
    };
    let d = dir.path();
    sh(d, "qemu-img create -q -f qcow2 base.qcow2 64M && qemu-io -f qcow2 -c 'write -P 3 0 1M' base.qcow2 >/dev/null");
    // A device that held an older image with data.
    sh(d, "qemu-img create -q -f qcow2 olddev.qcow2 8M && qemu-io -f qcow2 -c 'write -P 0x11 0 4M' olddev.qcow2 >/dev/null && truncate -s 16M olddev.qcow2");
    let olddev = std::fs::read(d.join("olddev.qcow2")).unwrap();
    let base = CreateOptions {
        size: 64 << 20,
        ..Default::default()
    };
    let cases: Vec<(&str, &str, CreateOptions, bool)> = vec![
        ("create", "", base.clone(), false),
        (
            "create v2 preallocated",
            "-o compat=0.10,cluster_size=32k,preallocation=metadata",
            CreateOptions {
                size: 100 << 20,
                cluster_size: 32 << 10,
                compat_v2: true,
                preallocation: Preallocation::Metadata,
                ..Default::default()
            },
            false,
        ),
        (
            "snapshot",
            "-b base.qcow2 -F qcow2",
            CreateOptions {
                backing: Some("base.qcow2".into()),
                backing_format: Some("qcow2".into()),
                ..base.clone()
            },
            false,
        ),
        (
            "create on a device",
            "-o cluster_size=4k",
            CreateOptions {
                size: 8 << 20,
                cluster_size: 4096,
                ..Default::default()
            },
            true,
        ),
    ];
    let magic = b"QFI\xfb";
    for (name, qopts, o, block) in &cases {
        let initial = if *block { olddev.clone() } else { Vec::new() };
        let run = |n: Option<u64>| {
            let f = Faulty::new(
                MemStorage::from_vec(initial.clone()),
                Fault::FailWritesAfter {
                    n: n.unwrap_or(u64::MAX),
                    errno: libc::EIO,
                },
            );
            let r = sparsekit_qcow2::create_on(&f, o, *block);
            (f.inner().to_vec(), f.writes(), r)
        };
        let (new, writes, r) = run(None);
        r.unwrap_or_else(|e| panic!("{name}: {e}"));
        let size = if o.backing.is_some() {
            String::new()
        } else {
            o.size.to_string()
        };
        sh(
            d,
            &format!("qemu-img create -q -f qcow2 {qopts} q.qcow2 {size}"),
        );
        std::fs::write(d.join("new.qcow2"), &new).unwrap();
        if *block {
            assert_eq!(new.len(), olddev.len(), "{name}: the device size changed");
            check_clean(d, "new.qcow2");
            assert_eq!(info(d, "new.qcow2")["virtual-size"], o.size);
            assert_eq!(status(d, "qemu-img compare -q new.qcow2 q.qcow2").0, 0);
        } else {
            assert!(
                new == std::fs::read(d.join("q.qcow2")).unwrap(),
                "{name}: bytes differ from qemu-img create {qopts}"
            );
            check_clean(d, "new.qcow2");
        }
        let (mut untouched, mut no_image) = (0, 0);
        for n in 0..writes {
            let (after, _, r) = run(Some(n));
            assert!(r.is_err(), "{name}: write {n} failed but create succeeded");
            if after == initial {
                untouched += 1;
            } else {
                assert!(
                    after.len() < 4 || &after[..4] != magic,
                    "{name}: writes failing from #{n} left a qcow2 header over unfinished tables"
                );
                no_image += 1;
            }
        }
        assert!(writes > 1, "{name}: {writes} writes");
        println!("fault matrix {name}: {writes} writes, {writes} failing runs, {untouched} left the old bytes, {no_image} left no image, 0 invalid");
    }
}

/// A failed `create` over an existing file leaves that file as it was and no temporary
/// file behind: here it runs out of space on a 1 MiB tmpfs.
#[test]
fn failed_create_keeps_the_old_file() {
    let Some(m) = sparsekit_testfs::Mount::new(
        sparsekit_testfs::Fs::Tmpfs(1),
        "failed_create_keeps_the_old_file",
    ) else {
        return;
    };
    let img = m.join("img.qcow2");
    std::fs::write(&img, b"the old image").unwrap();
    let o = CreateOptions {
        size: 1 << 30,
        cluster_size: 2 << 20,
        ..Default::default()
    };
    let e = sparsekit_qcow2::create(&img, &o, &EditOptions::default()).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    assert_eq!(e.path(), Some(img.as_path()), "{e}");
    assert_eq!(std::fs::read(&img).unwrap(), b"the old image");
    let names: Vec<_> = std::fs::read_dir(&m.path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("img.qcow2")]);
    // And a create that fits replaces it whole, through a symbolic link too.
    let link = m.join("link.qcow2");
    std::os::unix::fs::symlink("img.qcow2", &link).unwrap();
    let small = CreateOptions {
        size: 1 << 20,
        cluster_size: 4096,
        ..Default::default()
    };
    sparsekit_qcow2::create(&link, &small, &EditOptions::default()).unwrap();
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(&std::fs::read(&img).unwrap()[..4], b"QFI\xfb");
}

#[test]
fn create_matches_qemu_img_create() {
    let Some(dir) = qemu_folder() else {
        return;
    };
    let d = dir.path();
    sh(d, "qemu-img create -q -f qcow2 base.qcow2 1G");
    let cases: Vec<(&str, CreateOptions)> = vec![
        (
            "",
            CreateOptions {
                size: 1 << 30,
                ..Default::default()
            },
        ),
        (
            "-o compat=0.10,cluster_size=4k",
            CreateOptions {
                size: 1 << 30,
                cluster_size: 4096,
                compat_v2: true,
                ..Default::default()
            },
        ),
        (
            "-o extended_l2=on,lazy_refcounts=on,cluster_size=128k",
            CreateOptions {
                size: 10 << 30,
                cluster_size: 128 << 10,
                extended_l2: true,
                lazy_refcounts: true,
                ..Default::default()
            },
        ),
        (
            "-o cluster_size=512",
            CreateOptions {
                size: 100 << 20,
                cluster_size: 512,
                ..Default::default()
            },
        ),
        (
            "-b base.qcow2 -F qcow2",
            CreateOptions {
                size: 1 << 30,
                backing: Some("base.qcow2".into()),
                backing_format: Some("qcow2".into()),
                ..Default::default()
            },
        ),
        (
            "-o preallocation=metadata",
            CreateOptions {
                size: 1 << 20,
                preallocation: Preallocation::Metadata,
                ..Default::default()
            },
        ),
        (
            "-o preallocation=metadata",
            CreateOptions {
                size: 1 << 30,
                preallocation: Preallocation::Metadata,
                ..Default::default()
            },
        ),
        (
            "-o preallocation=metadata,compat=0.10,cluster_size=32k",
            CreateOptions {
                size: 100 << 20,
                cluster_size: 32 << 10,
                compat_v2: true,
                preallocation: Preallocation::Metadata,
                ..Default::default()
            },
        ),
    ];
    for (i, (qopts, o)) in cases.iter().enumerate() {
        let ours = d.join(format!("o{i}.qcow2"));
        sparsekit_qcow2::create(&ours, o, &EditOptions::default()).unwrap();
        let size = if o.backing.is_some() {
            String::new()
        } else {
            o.size.to_string()
        };
        sh(
            d,
            &format!("qemu-img create -q -f qcow2 {qopts} q{i}.qcow2 {size}"),
        );
        let a = std::fs::read(&ours).unwrap();
        let b = std::fs::read(d.join(format!("q{i}.qcow2"))).unwrap();
        let first = a.iter().zip(&b).position(|(x, y)| x != y);
        assert!(a == b, "create {qopts}: bytes differ from qemu-img create ({} vs {} bytes, first at {first:?})", a.len(), b.len());
        check_clean(d, &format!("o{i}.qcow2"));
        // qemu-io writes and reads back.
        sh(d, &format!("qemu-io -f qcow2 -c 'write -P 0x5a 64k 64k' o{i}.qcow2 && qemu-io -f qcow2 -c 'read -P 0x5a 64k 64k' o{i}.qcow2"));
        check_clean(d, &format!("o{i}.qcow2"));
    }
    // snapshot: an overlay on base, the base's size and format.
    sparsekit_qcow2::snapshot(
        &d.join("base.qcow2"),
        &d.join("ov.qcow2"),
        &EditOptions::default(),
    )
    .unwrap();
    let i = info(d, "ov.qcow2");
    assert_eq!(i["backing-filename"], "base.qcow2");
    assert_eq!(i["backing-filename-format"], "qcow2");
    assert_eq!(i["virtual-size"], 1 << 30);
    check_clean(d, "ov.qcow2");
}

/// Counting the writes of create: one write, so a failed create leaves nothing to judge;
/// here only that the error is coded.
#[test]
fn edits_refuse_corrupt_images() {
    let mut b = sparsekit_qcow2::edit::create_bytes(&CreateOptions {
        size: 1 << 20,
        ..Default::default()
    })
    .unwrap();
    // Refcount table pointing past the end of the file.
    b[48..56].copy_from_slice(&(1u64 << 40).to_be_bytes());
    let (_, writes, r) = run_op(&b, None, &|ed| ed.set_extension(HIDDEN, Some(&[1])));
    assert_eq!(r.unwrap_err().code(), "ERR_SPARSEKIT_QCOW2_CORRUPT");
    assert_eq!(writes, 0);
}

#[test]
fn locks_against_a_live_qemu_io() {
    use sparsekit_qcow2::lock::{ImageLock, LockMode};
    use std::io::Write;
    let Some(dir) = qemu_folder() else {
        return;
    };
    let d = dir.path();
    sh(d, "qemu-img create -q -f qcow2 t.qcow2 1M");
    let img = d.join("t.qcow2");
    // A qemu-io session holding the image for writing (it waits for commands on stdin).
    let mut q = std::process::Command::new("qemu-io")
        .args(["-f", "qcow2"])
        .arg(&img)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut stdin = q.stdin.take().unwrap();
    let q = Kill(q);
    // Wait until qemu-io has taken its locks (bytes 101/201 show in /proc/locks).
    let mut seen = false;
    for _ in 0..500 {
        if matches!(
            ImageLock::acquire(&img, LockMode::Write, false),
            Err(Error::Locked { .. })
        ) {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(seen, "qemu-io's locks never showed");
    let e = sparsekit_qcow2::set_extension(&img, HIDDEN, Some(&[1]), &EditOptions::default())
        .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_LOCKED");
    assert!(e.to_string().contains("write"), "{e}");
    // Reading shares everything qemu-io needs.
    sparsekit_qcow2::get_extension(&img, HIDDEN).unwrap();
    // force overrides (documented as dangerous).
    sparsekit_qcow2::set_extension(&img, HIDDEN, Some(&[1]), &EditOptions { force: true }).unwrap();
    writeln!(stdin, "quit").unwrap();
    drop(stdin);
    drop(q);
    check_clean(d, "t.qcow2");
    // While we hold the write lock, qemu-io cannot open the image for writing.
    let held = ImageLock::acquire(&img, LockMode::Write, false).unwrap();
    let (st, out) = status(d, "qemu-io -f qcow2 -c 'write 0 4k' t.qcow2");
    assert_ne!(st, 0);
    assert!(out.contains("Failed to get \"write\" lock"), "{out}");
    drop(held);
    // A read lock lets qemu-io write.
    let held = ImageLock::acquire(&img, LockMode::Read, false).unwrap();
    let (st, out) = status(d, "qemu-io -f qcow2 -c 'write 0 4k' t.qcow2");
    assert_eq!(st, 0, "{out}");
    drop(held);
    assert_eq!(
        sparsekit_qcow2::get_extension(&img, HIDDEN).unwrap(),
        Some(vec![1])
    );
}

#[test]
fn path_edits_on_files_and_block_devices() {
    let Some(dir) = qemu_folder() else {
        return;
    };
    let d = dir.path();
    sh(d, "qemu-img create -q -f qcow2 t.qcow2 4M && qemu-io -f qcow2 -c 'write -P 3 0 1M' t.qcow2 >/dev/null && cp t.qcow2 old.qcow2");
    let img = d.join("t.qcow2");
    let o = EditOptions::default();
    sparsekit_qcow2::set_extension(&img, HIDDEN, Some(&[1]), &o).unwrap();
    sparsekit_qcow2::resize(&img, 1 << 30, &o).unwrap();
    check_clean(d, "t.qcow2");
    assert_eq!(info(d, "t.qcow2")["virtual-size"], 1 << 30);
    assert_eq!(status(d, "qemu-img compare -q t.qcow2 old.qcow2").0, 0);
    let before = std::fs::metadata(&img).unwrap();
    sparsekit_qcow2::discard_all(&img, &o, &mut Control::none()).unwrap();
    check_clean(d, "t.qcow2");
    let after = std::fs::metadata(&img).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert!(
        after.blocks() + 1024 < before.blocks(),
        "space returned: {} -> {} blocks",
        before.blocks(),
        after.blocks()
    );
    sh(d, "qemu-img create -q -f raw z.raw 1G");
    assert_eq!(status(d, "qemu-img compare -q t.qcow2 z.raw").0, 0);
    assert_eq!(
        sparsekit_qcow2::repair(&img, &o, &mut Control::none()).unwrap(),
        0
    );
    // On a loop block device: edited in place, never truncated.
    let Some(dev) =
        sparsekit_testfs::LoopDev::new(64 << 20, 0, "path_edits_on_files_and_block_devices")
    else {
        return;
    };
    let p = dev.dev.clone();
    sh(
        d,
        &format!(
            "qemu-img create -q -f qcow2 {} 16M && qemu-io -f qcow2 -c 'write -P 5 0 64k' {}",
            p.display(),
            p.display()
        ),
    );
    sparsekit_qcow2::resize(&p, 1 << 30, &o).unwrap();
    sparsekit_qcow2::set_extension(&p, HIDDEN, Some(&[1]), &o).unwrap();
    let (st, out) = status(d, &format!("qemu-img check {}", p.display()));
    assert_eq!(st, 0, "{out}");
    sparsekit_qcow2::discard_all(&p, &o, &mut Control::none()).unwrap();
    let (st, out) = status(d, &format!("qemu-img check {}", p.display()));
    assert_eq!(st, 0, "{out}");
}

/// Base kinds for commit (each makes base.qcow2 or base.raw) and the overlay writes.
const COMMIT_BASES: &[(&str, &str, &str)] = &[
    ("plain", "qcow2", "qemu-img create -q -f qcow2 base.qcow2 4M && qemu-io -f qcow2 -c 'write -P 1 0 1M' -c 'write -z 2M 64k' base.qcow2"),
    ("compressed", "qcow2", "yes base | head -c 2000000 > r && truncate -s 4M r && qemu-img convert -c -O qcow2 r base.qcow2"),
    ("extl2", "qcow2", "qemu-img create -q -f qcow2 -o extended_l2=on base.qcow2 4M && qemu-io -f qcow2 -c 'write -P 1 2k 3k' base.qcow2"),
    ("c512", "qcow2", "qemu-img create -q -f qcow2 -o cluster_size=512 base.qcow2 4M && qemu-io -f qcow2 -c 'write -P 1 0 100k' base.qcow2"),
    ("raw", "raw", "yes base | head -c 1000000 > base.raw && truncate -s 4M base.raw"),
];

const OVERLAY_WRITES: &str = "-c 'write -P 0xa1 0 64k' -c 'write -P 0xa2 100k 5k' -c 'write -z 1M 128k' -c 'write -P 0xa3 3M 1M'";

#[test]
fn commit_matches_qemu_img_commit_and_fault_matrix() {
    use sparsekit_qcow2::edit::{commit_into, Base};
    use sparsekit_qcow2::{Image, OpenOptions};
    if !have_qemu() {
        return;
    }
    for (kind, fmt, script) in COMMIT_BASES {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let base = format!("base.{fmt}");
        sh(d, &format!("({script}) >/dev/null && qemu-img create -q -f qcow2 -b {base} -F {fmt} ov.qcow2 && qemu-io -f qcow2 {OVERLAY_WRITES} ov.qcow2 >/dev/null && mkdir ref && cp {base} ov.qcow2 ref/ && cp ov.qcow2 ov.orig && cp {base} {base}.orig && qemu-img commit -q ref/ov.qcow2"));
        // Ours, on the files.
        let r = sparsekit_qcow2::commit(
            &d.join("ov.qcow2"),
            &EditOptions::default(),
            &mut Control::none(),
        )
        .unwrap();
        assert!(r.bytes > 0);
        if *fmt == "qcow2" {
            check_clean(d, &base);
        }
        check_clean(d, "ov.qcow2");
        let (st, out) = status(
            d,
            &format!("qemu-img compare -f {fmt} -F {fmt} {base} ref/{base}"),
        );
        assert_eq!(
            st, 0,
            "commit {kind}: base differs from qemu-img commit's: {out}"
        );
        // The overlay reads as before, through the new base, and owns nothing.
        sh(
            d,
            &format!(
                "cp ov.orig ovo.qcow2 && qemu-img rebase -u -b {base}.orig -F {fmt} ovo.qcow2"
            ),
        );
        assert_eq!(
            status(d, "qemu-img compare -q ov.qcow2 ovo.qcow2").0,
            0,
            "commit {kind}: overlay view changed"
        );
        let m: serde_json::Value =
            serde_json::from_str(&sh(d, "qemu-img map --output=json ov.qcow2")).unwrap();
        assert!(
            m.as_array()
                .unwrap()
                .iter()
                .all(|e| e["depth"].as_u64().unwrap() > 0),
            "commit {kind}: overlay not empty"
        );
        if *fmt != "qcow2" {
            continue;
        }
        // Fault matrix of the copy into a qcow2 base (the overlay is emptied by
        // discard_all, whose matrix is above).
        sh(d, "cp base.qcow2.orig base.qcow2 && cp ov.orig ov.qcow2");
        let overlay = Image::open(d.join("ov.qcow2"), &OpenOptions::default()).unwrap();
        let old = std::fs::read(d.join("base.qcow2")).unwrap();
        let op = |n: Option<u64>| {
            let f = Arc::new(Faulty::new(
                MemStorage::from_vec(old.clone()),
                Fault::FailWritesAfter {
                    n: n.unwrap_or(u64::MAX),
                    errno: libc::EIO,
                },
            ));
            let r = Editor::new(Box::new(Shared(f.clone()))).and_then(|mut ed| {
                commit_into(&overlay, Base::Qcow2(&mut ed), &mut Control::none()).map(|_| ())
            });
            (f.inner().to_vec(), f.writes(), r)
        };
        let (_, writes, r) = op(None);
        r.unwrap();
        let mut leaky = 0;
        let points = fault_points(writes);
        for &n in &points {
            let (after, _, r) = op(Some(n));
            assert!(r.is_err());
            std::fs::write(d.join("f.qcow2"), &after).unwrap();
            let (st, out) = status(d, "qemu-img check f.qcow2");
            assert!(
                st == 0 || st == 3,
                "commit {kind}: writes failing from #{n}: check exit {st}: {out}"
            );
            leaky += u64::from(st == 3);
            sh(
                d,
                "cp ov.orig ovf.qcow2 && qemu-img rebase -u -b f.qcow2 -F qcow2 ovf.qcow2",
            );
            assert_eq!(
                status(d, "qemu-img compare -q ovf.qcow2 ovo.qcow2").0,
                0,
                "commit {kind}: writes failing from #{n}: overlay view changed"
            );
        }
        let runs = points.len();
        println!("fault matrix commit into {kind}: {writes} writes, {runs} failing runs, {leaky} left leaks, 0 invalid");
    }
}

#[test]
fn an_open_image_holds_qemus_shared_read_lock() {
    use sparsekit_qcow2::{Image, OpenOptions};
    let Some(dir) = qemu_folder() else {
        return;
    };
    let d = dir.path();
    sh(d, "qemu-img create -q -f qcow2 t.qcow2 1M");
    let img = Image::open(d.join("t.qcow2"), &OpenOptions::default()).unwrap();
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(d.join("t.qcow2")).unwrap());
    let locks = std::fs::read_to_string("/proc/locks").unwrap();
    assert!(
        locks
            .lines()
            .any(|l| l.contains(&format!(":{ino} 100 100"))),
        "{locks}"
    );
    // qemu can still write while we read (write is shared).
    let (st, out) = status(d, "qemu-io -f qcow2 -c 'write 0 4k' t.qcow2");
    assert_eq!(st, 0, "{out}");
    drop(img);
}

#[test]
fn commit_aborted_midway_leaves_both_images_valid() {
    use sparsekit_io::Cancel;
    let Some(dir) = qemu_folder() else {
        return;
    };
    let d = dir.path();
    sh(d, &format!("qemu-img create -q -f qcow2 base.qcow2 8M && qemu-io -f qcow2 -c 'write -P 1 0 2M' base.qcow2 >/dev/null && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2 && qemu-io -f qcow2 {OVERLAY_WRITES} -c 'write -P 0xa4 5M 3M' ov.qcow2 >/dev/null && cp ov.qcow2 ov.orig && cp base.qcow2 base.orig && qemu-img rebase -u -b base.orig -F qcow2 ov.orig"));
    let cancel = Cancel::new();
    let c2 = cancel.clone();
    let mut reports = 0;
    let mut ctl = Control::new(cancel, move |_| {
        reports += 1;
        if reports == 2 {
            c2.cancel();
        }
    });
    let e = sparsekit_qcow2::commit(&d.join("ov.qcow2"), &EditOptions::default(), &mut ctl)
        .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_ABORTED");
    // Both valid, no leak even; the overlay reads as before (it was not emptied).
    check_clean(d, "base.qcow2");
    check_clean(d, "ov.qcow2");
    assert_eq!(status(d, "qemu-img compare -q ov.qcow2 ov.orig").0, 0);
}

/// Issue 27: an image `qemu-img` made, with one L2 entry set to `entry` (at guest cluster
/// 1 of the first L2 table). Returns the image's bytes and where that entry is.
fn with_bad_entry(good: &[u8], entry: u64) -> Vec<u8> {
    let at = bad_entry_at(good);
    let mut b = good.to_vec();
    b[at..at + 8].copy_from_slice(&entry.to_be_bytes());
    b
}

fn be64(b: &[u8], at: u64) -> u64 {
    u64::from_be_bytes(b[at as usize..at as usize + 8].try_into().unwrap())
}

fn bad_entry_at(good: &[u8]) -> usize {
    let l2 = be64(good, be64(good, 40)) & sparsekit_qcow2::table::L1E_OFFSET_MASK;
    l2 as usize + 8
}

/// An image with data in two L2 tables (64 KiB clusters, 1 GiB).
const TWO_TABLES: &str = "qemu-img create -q -f qcow2 t.qcow2 1G && qemu-io -f qcow2 -c 'write -P 0xab 0 256k' -c 'write -P 1 600M 128k' t.qcow2 >/dev/null";

/// discardAll on `bytes` (written to `d/c.qcow2`) must refuse with
/// ERR_SPARSEKIT_QCOW2_CORRUPT and leave the file byte-identical, `qemu-img check` saying
/// what it said before.
fn discard_refused_untouched(d: &Path, bytes: &[u8], what: &str) {
    let p = d.join("c.qcow2");
    std::fs::write(&p, bytes).unwrap();
    let before = common::status_stdout(d, "qemu-img check --output=json c.qcow2");
    let sha = sh(d, "sha256sum c.qcow2");
    let r = sparsekit_qcow2::discard_all(&p, &EditOptions::default(), &mut Control::none());
    let e = r.expect_err(what);
    assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_CORRUPT", "{what}: {e}");
    assert!(e.to_string().contains("nothing was changed"), "{what}: {e}");
    assert_eq!(
        sh(d, "sha256sum c.qcow2"),
        sha,
        "{what}: the file changed ({e})"
    );
    assert!(
        std::fs::read(&p).unwrap() == bytes,
        "{what}: the file changed"
    );
    let after = common::status_stdout(d, "qemu-img check --output=json c.qcow2");
    assert_eq!(after, before, "{what}: qemu-img check changed");
}

#[test]
fn discard_all_refuses_an_entry_pointing_at_metadata() {
    let Some(dir) = qemu_folder() else { return };
    let d = dir.path();
    sh(d, TWO_TABLES);
    let good = std::fs::read(d.join("t.qcow2")).unwrap();
    let mask = sparsekit_qcow2::table::L1E_OFFSET_MASK;
    let cs = 65536u64;
    let l1 = be64(&good, 40);
    let rt = be64(&good, 48);
    let rb = be64(&good, rt) & mask;
    let l2a = be64(&good, l1) & mask;
    let l2b = be64(&good, l1 + 8) & mask;
    assert!(l2b != 0 && l2b != l2a, "the image has two L2 tables");
    let at = bad_entry_at(&good);
    let data = be64(&good, at as u64) & mask;
    let eof = (good.len() as u64).div_ceil(cs) * cs;
    let copied = 1u64 << 63;
    let compressed = |off: u64| (1u64 << 62) | off; // one 512-byte sector at `off`
    let cases: Vec<(&str, u64)> = vec![
        ("header (unaligned)", 512 | copied),
        ("L1 table", l1 | copied),
        ("refcount table", rt | copied),
        ("refcount block", rb | copied),
        ("its own L2 table", l2a | copied),
        ("another L2 table", l2b | copied),
        ("past the end of the file", (eof + 16 * cs) | copied),
        ("just past the end", eof | copied),
        ("unaligned", (data + 512) | copied),
        ("zero flag over the L1 table", l1 | copied | 1),
        ("compressed in the header", compressed(512)),
        ("compressed in the refcount table", compressed(rt + 8)),
        ("compressed past the end", compressed(eof + 4096)),
        ("another guest cluster's data", (data + cs) | copied),
    ];
    for (what, entry) in cases {
        discard_refused_untouched(d, &with_bad_entry(&good, entry), what);
    }
    // An L1 entry pointing at the header or the refcount table.
    for (what, l2) in [
        ("L1 entry at the header", 0u64),
        ("L1 entry at the refcount table", rt),
    ] {
        let mut b = good.clone();
        // Entry 1 (guest 512 MiB..1 GiB); offset 0 is "unallocated", so the header is
        // reached through an unaligned offset inside it.
        let v = if l2 == 0 { 512 } else { l2 } | copied;
        b[(l1 + 8) as usize..(l1 + 16) as usize].copy_from_slice(&v.to_be_bytes());
        discard_refused_untouched(d, &b, what);
    }
    // The good image still discards.
    let p = d.join("t.qcow2");
    sparsekit_qcow2::discard_all(&p, &EditOptions::default(), &mut Control::none()).unwrap();
    check_clean(d, "t.qcow2");
}

/// Issue 27, randomized (fixed seed, bounded): one L2 entry set to a random value; a
/// discardAll that refuses leaves the file unchanged, one that succeeds leaves an image
/// `qemu-img check` finds clean.
#[test]
fn discard_all_random_bad_entry_refuses_or_stays_clean() {
    let Some(dir) = qemu_folder() else { return };
    let d = dir.path();
    sh(d, TWO_TABLES);
    let good = std::fs::read(d.join("t.qcow2")).unwrap();
    let len = good.len() as u64;
    let mut x: u64 = 0x2701_5eed;
    let mut next = move || {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let (mut refused, mut done) = (0, 0);
    for _ in 0..48 {
        let r = next();
        let copied = if r & 1 == 0 { 1u64 << 63 } else { 0 };
        let span = len + 8 * 65536;
        let entry = match (r >> 1) % 5 {
            0 => (next() % span) & !0xffff | copied,
            1 => (next() % span) & !0x1ff | copied,
            2 => (1u64 << 62) | (next() % span) | ((next() % 3) << 54),
            3 => (next() % span) & !0xffff | copied | 1,
            _ => {
                if r & 2 == 0 {
                    0
                } else {
                    1
                }
            }
        };
        let bytes = with_bad_entry(&good, entry);
        let p = d.join("c.qcow2");
        std::fs::write(&p, &bytes).unwrap();
        // Dropping a data cluster's entry (0, a zero flag) leaves it leaked: allowed after.
        let leaky = status(d, "qemu-img check c.qcow2").0 == 3;
        match sparsekit_qcow2::discard_all(&p, &EditOptions::default(), &mut Control::none()) {
            Err(e) => {
                refused += 1;
                assert!(
                    std::fs::read(&p).unwrap() == bytes,
                    "entry {entry:#x}: refused ({e}) but the file changed"
                );
            }
            Ok(()) => {
                done += 1;
                let (st, out) = status(d, "qemu-img check c.qcow2");
                assert!(
                    st == 0 || (leaky && st == 3),
                    "entry {entry:#x}: discarded, then qemu-img check: {out}"
                );
            }
        }
    }
    println!("random bad L2 entry: {refused} refused unchanged, {done} discarded clean");
    assert!(refused > 0 && done > 0);
}

/// Run `op` over `bytes` with writes ending past `limit` failing with ENOSPC (a full
/// disk); returns the bytes after and the result.
fn run_full_disk(bytes: &[u8], limit: u64, op: &Op) -> (Vec<u8>, Result<(), Error>) {
    let f = Arc::new(Faulty::new(
        MemStorage::from_vec(bytes.to_vec()),
        Fault::NoSpaceAfter(limit),
    ));
    let r = Editor::new(Box::new(Shared(f.clone()))).and_then(|mut ed| op(&mut ed));
    (f.inner().to_vec(), r)
}

/// Issue 27: resize failing with ENOSPC while growing the L1 table left a leaked cluster
/// (`qemu-img check` exit 3). For every place the disk can fill up during the growth
/// (including new refcount blocks and a moved refcount table), a failed resize leaves
/// the image byte for byte as it was (so `qemu-img check` says what it said before).
#[test]
fn resize_on_a_full_disk_leaves_the_image_as_it_was() {
    let Some(dir) = qemu_folder() else { return };
    let d = dir.path();
    let cases: Vec<(&str, &str, u64)> = KINDS
        .iter()
        .filter(|(k, _)| *k != "snap")
        .map(|(k, s)| (*k, *s, 4u64 << 30))
        .chain([(
            "new refcount blocks and table",
            "qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 t.qcow2 1M && qemu-io -f qcow2 -c 'write -P 7 0 20k' t.qcow2",
            8u64 << 30,
        )])
        .collect();
    for (kind, script, size) in cases {
        sh(d, &format!("rm -f t.qcow2 && ({script}) >/dev/null"));
        let old = std::fs::read(d.join("t.qcow2")).unwrap();
        let op: &Op = &move |ed| ed.resize(size);
        let (mut failures, mut step) = (0, 512u64);
        let mut limit = old.len() as u64;
        loop {
            let (after, r) = run_full_disk(&old, limit, op);
            match r {
                Ok(()) => break,
                Err(e) => {
                    failures += 1;
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{kind}: {e}");
                    // The same bytes, so `qemu-img check` says what it said before (no
                    // need to run it at each of the ~20 limits).
                    assert!(after == old, "{kind}: full at {limit}: the bytes changed");
                }
            }
            limit += step;
            if failures > 16 {
                step *= 2;
            }
        }
        assert!(failures > 0, "{kind}: never failed");
        println!("resize on a full disk {kind}: {failures} failures, image unchanged each time");
    }
}

/// The same on a real full file system: a tmpfs filled up to the last page.
#[test]
fn resize_on_a_full_tmpfs_leaves_the_image_as_it_was() {
    if !have_qemu() {
        return;
    }
    let Some(m) = sparsekit_testfs::Mount::new(sparsekit_testfs::Fs::Tmpfs(4), "resize_full_tmpfs")
    else {
        return;
    };
    let img = m.join("t.qcow2");
    let dir = img.parent().unwrap().to_path_buf();
    sh(&dir, "qemu-img create -q -f qcow2 -o cluster_size=4096 t.qcow2 1M && qemu-io -f qcow2 -c 'write -P 7 0 64k' t.qcow2 >/dev/null");
    let before = common::status_stdout(&dir, "qemu-img check --output=json t.qcow2");
    let old = std::fs::read(&img).unwrap();
    // Fill the file system.
    let _ = status(&dir, "dd if=/dev/zero of=fill bs=4k 2>/dev/null");
    let r = sparsekit_qcow2::resize(&img, 1 << 30, &EditOptions::default());
    let e = r.expect_err("resize on a full tmpfs");
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    assert_eq!(
        common::status_stdout(&dir, "qemu-img check --output=json t.qcow2"),
        before
    );
    let now = std::fs::read(&img).unwrap();
    assert_eq!(now.len(), old.len());
    let diff = now.iter().zip(&old).position(|(a, b)| a != b);
    assert!(diff.is_none(), "the image changed at byte {diff:?}");
    // With room again it grows.
    std::fs::remove_file(dir.join("fill")).unwrap();
    sparsekit_qcow2::resize(&img, 1 << 30, &EditOptions::default()).unwrap();
    check_clean(&dir, "t.qcow2");
}

/// Issue 27 (resize's allocate-then-fail leak, looked for in commit): committing into a
/// qcow2 base on a disk that fills up at any point fails with ENOSPC and leaves the base
/// without leaked clusters (`qemu-img check` exit 0), whatever part of the copy got in.
#[test]
fn commit_into_a_base_on_a_full_disk_leaks_nothing() {
    use sparsekit_qcow2::edit::{commit_into, Base};
    use sparsekit_qcow2::{Image, OpenOptions};
    let Some(dir) = qemu_folder() else { return };
    let d = dir.path();
    // A base smaller than the overlay (grown first) whose L2 tables must be added.
    sh(d, &format!("qemu-img create -q -f qcow2 base.qcow2 1M && qemu-io -f qcow2 -c 'write -P 1 0 64k' base.qcow2 >/dev/null && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2 1200M && qemu-io -f qcow2 {OVERLAY_WRITES} -c 'write -P 0xa4 1100M 64k' ov.qcow2 >/dev/null"));
    let overlay = Image::open(d.join("ov.qcow2"), &OpenOptions::default()).unwrap();
    let old = std::fs::read(d.join("base.qcow2")).unwrap();
    let mut limit = old.len() as u64;
    let mut failures = 0;
    loop {
        let f = Arc::new(Faulty::new(
            MemStorage::from_vec(old.clone()),
            Fault::NoSpaceAfter(limit),
        ));
        let r = Editor::new(Box::new(Shared(f.clone()))).and_then(|mut ed| {
            commit_into(&overlay, Base::Qcow2(&mut ed), &mut Control::none()).map(|_| ())
        });
        let Err(e) = r else { break };
        failures += 1;
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
        std::fs::write(d.join("f.qcow2"), f.inner().to_vec()).unwrap();
        let (st, out) = status(d, "qemu-img check f.qcow2");
        assert_eq!(st, 0, "commit on a disk full at {limit}: {e}: {out}");
        limit += 32 << 10;
    }
    assert!(failures > 0);
    println!("commit on a full disk: {failures} failures, no leak");
}

/// Issue 27: create and resize refusals read as sentences and say what the rule is.
#[test]
fn size_refusals_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.qcow2");
    let o = EditOptions::default();
    let create = |size: u64, cluster_size: u64| {
        sparsekit_qcow2::create(
            &p,
            &CreateOptions {
                size,
                cluster_size,
                ..Default::default()
            },
            &o,
        )
        .unwrap_err()
        .to_string()
    };
    let m = create(1000, 65536);
    assert!(
        m.contains("the size 1000 is not a multiple of 512 (the size must be a multiple of 512, at most 4 EiB)"),
        "{m}"
    );
    assert!(m.contains("x.qcow2"), "names the file: {m}");
    let m = create((1 << 62) + 512, 65536);
    assert!(m.contains("is more than 4 EiB"), "{m}");
    let m = create(1 << 20, 1000);
    assert!(
        m.contains("cluster size 1000 is not a power of two from 512 bytes to 2 MiB"),
        "{m}"
    );
    assert!(!p.exists());
    sparsekit_qcow2::create(
        &p,
        &CreateOptions {
            size: 1 << 20,
            ..Default::default()
        },
        &o,
    )
    .unwrap();
    let m = sparsekit_qcow2::resize(&p, 1000, &o)
        .unwrap_err()
        .to_string();
    assert!(
        m.contains("the new size 1000 is not a multiple of 512"),
        "{m}"
    );
}
