//! Remote images read with range requests ([`HttpStorage`]): qcow2 convert (outputs
//! compared with `qemu-img convert` of the same file), bmap copy, zip archives over HTTP,
//! and hostile servers (no ranges, dropped connections, short Content-Length, a wrong
//! Content-Range).

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{allocated, cmd, image, Server};
use sparsekit_bmap::{BmapChoice, CopyOptions};
use sparsekit_flash::{remote, FlashOptions, HttpOptions, HttpStorage};
use sparsekit_io::{Cancel, Control, Storage};

fn http() -> HttpOptions {
    HttpOptions {
        retries: 3,
        retry_delay: Duration::from_millis(5),
        timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

#[test]
fn random_and_sequential_reads_are_exact_and_read_ahead() {
    let data = image(9 << 20 | 777, 3);
    let srv = Server::start(HashMap::from([("f".to_string(), data.clone())]));
    let s = HttpStorage::open(&srv.url("f"), &http(), Cancel::new()).unwrap();
    assert_eq!(s.size().unwrap(), data.len() as u64);
    // Sequential 64 KiB reads: read-ahead makes them few requests.
    let mut buf = vec![0u8; 65536];
    let mut off = 0u64;
    while off < data.len() as u64 {
        let n = s.read_at(&mut buf, off).unwrap();
        assert!(n > 0);
        assert!(buf[..n] == data[off as usize..off as usize + n], "at {off}");
        off += n as u64;
    }
    let reqs = s.requests();
    let blocks = (data.len() as u64).div_ceil(remote::BLOCK);
    assert!(
        reqs <= 2 + blocks / remote::READAHEAD,
        "{reqs} requests for {blocks} blocks"
    );
    // Random reads, across block edges and at the end, from 4 threads at once.
    std::thread::scope(|sc| {
        for t in 0..4u64 {
            let (s, data) = (&s, &data);
            sc.spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                for _ in 0..200 {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    let off = (x >> 20) % data.len() as u64;
                    let len = ((x >> 8) % 700_000) as usize;
                    let mut b = vec![0u8; len];
                    let n = s.read_at(&mut b, off).unwrap();
                    let want = len.min(data.len() - off as usize);
                    assert_eq!(n, want);
                    assert!(b[..n] == data[off as usize..off as usize + n]);
                }
            });
        }
    });
    assert_eq!(s.read_at(&mut buf, data.len() as u64).unwrap(), 0);
    assert_eq!(
        s.write_at(b"x", 0).unwrap_err().raw_os_error(),
        Some(libc::EROFS)
    );
}

#[test]
fn hostile_servers() {
    let data = image(3 << 20, 4);
    let srv = Server::start(HashMap::from([("f".to_string(), data.clone())]));
    let url = srv.url("f");
    // Dropped connections and short Content-Lengths: resumed from the byte they stopped.
    srv.b.drops.store(6, Ordering::SeqCst);
    srv.b.lies.store(4, Ordering::SeqCst);
    let s = HttpStorage::open(&url, &http(), Cancel::new()).unwrap();
    let mut all = vec![0u8; data.len()];
    s.read_exact_at(&mut all, 0).unwrap();
    assert!(all == data);
    assert_eq!(srv.b.drops.load(Ordering::SeqCst), 0);
    assert_eq!(srv.b.lies.load(Ordering::SeqCst), 0);
    // A server that drops every answer half-way still makes progress...
    srv.b.drops.store(u64::MAX, Ordering::SeqCst);
    let s = HttpStorage::open(&url, &http(), Cancel::new()).unwrap();
    s.read_exact_at(&mut all[..1 << 20], 1 << 20).unwrap();
    assert!(all[..1 << 20] == data[1 << 20..2 << 20]);
    srv.b.drops.store(0, Ordering::SeqCst);
    // ...a wrong Content-Range is refused, naming the URL and the offset.
    srv.b.bad_range.store(true, Ordering::SeqCst);
    let e = HttpStorage::open(&url, &http(), Cancel::new()).unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_HTTP", "{e}");
    assert!(e.to_string().contains("Content-Range"), "{e}");
    srv.b.bad_range.store(false, Ordering::SeqCst);
    let s = HttpStorage::open(&url, &http(), Cancel::new()).unwrap();
    srv.b.bad_range.store(true, Ordering::SeqCst);
    let e = s.read_at(&mut all[..100], 2 << 20).unwrap_err();
    assert_eq!(e.offset, Some(2 << 20), "{e}");
    assert_eq!(e.path.as_deref(), Some(Path::new(&url)));
    let e = remote::error_of_io(e);
    assert_eq!(e.code(), "ERR_SPARSEKIT_HTTP", "{e}");
    assert_eq!(e.url(), Some(url.as_str()));
    srv.b.bad_range.store(false, Ordering::SeqCst);
    drop(s);
    let s = HttpStorage::open(&url, &http(), Cancel::new()).unwrap();
    // No range support: refused with its own code.
    srv.b.ranges.store(false, Ordering::SeqCst);
    let e = HttpStorage::open(&url, &http(), Cancel::new()).unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_HTTP_NO_RANGES", "{e}");
    // An open storage whose server stops honouring ranges (or whose file changed).
    let e = remote::error_of_io(s.read_at(&mut all[..10], 3 << 19).unwrap_err());
    assert_eq!(e.code(), "ERR_SPARSEKIT_HTTP", "{e}");
    assert!(e.to_string().contains("status 200"), "{e}");
    // Nothing listening: bounded retries, then a coded error naming offset 0.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}/f", l.local_addr().unwrap().port())
    };
    let e = HttpStorage::open(&dead, &http(), Cancel::new()).unwrap_err();
    assert!(
        matches!(
            e.code(),
            "ERR_SPARSEKIT_HTTP_INTERRUPTED" | "ERR_SPARSEKIT_HTTP"
        ),
        "{e}"
    );
    assert_eq!(e.url(), Some(dead.as_str()));
    // 404.
    srv.b.ranges.store(true, Ordering::SeqCst);
    let e = HttpStorage::open(&srv.url("nope"), &http(), Cancel::new()).unwrap_err();
    assert!(
        matches!(
            e,
            sparsekit_flash::Error::Http {
                status: Some(404),
                ..
            }
        ),
        "{e:?}"
    );
}

/// A raw image with data, zeros and holes, its qcow2 forms by qemu-img, and qemu-img's
/// own raw conversion of each (the oracle).
type Fixture = (String, Vec<u8>, Vec<u8>);

fn qcow2_fixtures(dir: &Path) -> Option<Vec<Fixture>> {
    let raw = dir.join("disk.raw");
    let f = std::fs::File::create(&raw).unwrap();
    let size = 48u64 << 20;
    f.set_len(size).unwrap();
    let data = image(6 << 20, 11);
    use std::os::unix::fs::FileExt;
    f.write_all_at(&data, 1 << 20).unwrap();
    f.write_all_at(&data[..3 << 20], 30 << 20).unwrap();
    f.write_all_at(b"the end", size - 7).unwrap();
    drop(f);
    let mut out = Vec::new();
    for (name, extra) in [
        ("plain.qcow2", vec![]),
        ("zlib.qcow2", vec!["-c"]),
        ("small.qcow2", vec!["-o", "cluster_size=4096"]),
    ] {
        let q = dir.join(name);
        let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
        args.extend(extra);
        args.extend([raw.to_str().unwrap(), q.to_str().unwrap()]);
        cmd("qemu-img", &args)?;
        let oracle = dir.join(format!("{name}.oracle"));
        cmd(
            "qemu-img",
            &[
                "convert",
                "-f",
                "qcow2",
                "-O",
                "raw",
                q.to_str().unwrap(),
                oracle.to_str().unwrap(),
            ],
        )?;
        out.push((
            name.to_string(),
            std::fs::read(&q).unwrap(),
            std::fs::read(&oracle).unwrap(),
        ));
    }
    Some(out)
}

#[test]
fn qcow2_convert_of_a_remote_image_matches_qemu_img() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fx) = qcow2_fixtures(dir.path()) else {
        eprintln!("SKIP qcow2_convert_of_a_remote_image_matches_qemu_img: qemu-img missing");
        return;
    };
    let files: HashMap<String, Vec<u8>> =
        fx.iter().map(|(n, q, _)| (n.clone(), q.clone())).collect();
    let srv = Server::start(files);
    for (name, qcow, oracle) in &fx {
        // Drops on the way: resumed.
        srv.b.drops.store(3, Ordering::SeqCst);
        let dst = dir.path().join(format!("{name}.out"));
        let r = remote::qcow2_convert(
            &srv.url(name),
            &dst,
            &Default::default(),
            &http(),
            &mut Control::none(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = std::fs::read(&dst).unwrap();
        assert_eq!(got.len(), oracle.len(), "{name}");
        assert!(&got == oracle, "{name}: differs from qemu-img convert");
        assert_eq!(r.size, oracle.len() as u64);
        // Holes stay holes: far less allocated than the 48 MiB virtual size.
        assert!(allocated(&dst) < 16 << 20, "{name}: {}", allocated(&dst));
        // Only the image's bytes (and not many times over) were fetched.
        let fetched = srv.count(name);
        assert!(
            fetched < 200,
            "{name}: {fetched} requests for {}",
            qcow.len()
        );
    }
    // A server without ranges: a clear refusal, the destination untouched.
    srv.b.ranges.store(false, Ordering::SeqCst);
    let dst = dir.path().join("none.out");
    let e = remote::qcow2_convert(
        &srv.url("plain.qcow2"),
        &dst,
        &Default::default(),
        &http(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_HTTP_NO_RANGES", "{e}");
    assert!(!dst.exists());
    // Not a qcow2 image: the qcow2 crate's coded error.
    srv.b.ranges.store(true, Ordering::SeqCst);
    let srv2 = Server::start(HashMap::from([("x".to_string(), vec![0u8; 100_000])]));
    let e = remote::qcow2_convert(
        &srv2.url("x"),
        &dst,
        &Default::default(),
        &http(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(e.code().starts_with("ERR_SPARSEKIT_"), "{e}");
    assert!(matches!(e, sparsekit_flash::Error::Qcow2(_)), "{e:?}");
}

#[test]
fn bmap_copy_of_a_url_plain_with_bmap_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("os.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(20 << 20).unwrap();
    let data = image(4 << 20, 5);
    use std::os::unix::fs::FileExt;
    f.write_all_at(&data, 2 << 20).unwrap();
    f.write_all_at(&data[..1 << 20], 15 << 20).unwrap();
    drop(f);
    let bytes = std::fs::read(&img).unwrap();
    let bmap = sparsekit_bmap::create(&img, &Default::default(), &mut Control::none()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    let srv = Server::start(HashMap::from([
        ("os.img".to_string(), bytes.clone()),
        ("os.img.bmap".to_string(), bmap.to_xml().into_bytes()),
        ("os.img.gz".to_string(), gz.finish().unwrap()),
    ]));
    srv.b.drops.store(2, Ordering::SeqCst);
    let dst = dir.path().join("a");
    let opts = CopyOptions {
        read_back: true,
        create_files: true,
        ..Default::default()
    };
    let r = remote::bmap_copy(
        &srv.url("os.img"),
        &dst,
        &opts,
        &http(),
        &mut Control::none(),
    )
    .unwrap();
    assert!(r.used_bmap);
    assert_eq!(
        r.bmap_path.as_deref(),
        Some(Path::new(&srv.url("os.img.bmap")))
    );
    assert_eq!(r.bytes_written, bmap.mapped_bytes());
    assert_eq!(r.ranges_verified, bmap.ranges.len() as u64);
    assert!(r.ranges_read_back > 0);
    assert!(std::fs::read(&dst).unwrap() == bytes);
    assert!(allocated(&dst) <= bmap.mapped_bytes() + (1 << 20));
    // gzip without a bmap beside it: the whole stream, zero blocks left as holes.
    let dst = dir.path().join("b");
    let r = remote::bmap_copy(
        &srv.url("os.img.gz"),
        &dst,
        &files_ok(),
        &http(),
        &mut Control::none(),
    )
    .unwrap();
    assert!(!r.used_bmap);
    assert_eq!(r.compression, Some(sparsekit_bmap::Compression::Gzip));
    assert_eq!(r.image_size, bytes.len() as u64);
    assert!(std::fs::read(&dst).unwrap() == bytes);
    assert!(allocated(&dst) < 8 << 20, "{}", allocated(&dst));
    // A bad checksum in the bmap: the copy fails naming the range.
    let mut bad = bmap.clone();
    bad.ranges[0].checksum = Some("0".repeat(64));
    let e = remote::bmap_copy(
        &srv.url("os.img"),
        &dir.path().join("c"),
        &CopyOptions {
            bmap: BmapChoice::Given(Box::new(bad)),
            ..files_ok()
        },
        &http(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_CHECKSUM_MISMATCH", "{e}");
}

#[test]
fn zip_over_http_through_its_central_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = image(5 << 20, 8);
    std::fs::write(dir.path().join("os.img"), &data).unwrap();
    std::fs::write(dir.path().join("README"), b"hello").unwrap();
    let zip = |args: &[&str]| {
        std::process::Command::new("zip")
            .current_dir(dir.path())
            .arg("-q")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !zip(&["-6", "d.zip", "README", "os.img"]) || !zip(&["-0", "s.zip", "os.img", "README"]) {
        eprintln!("SKIP zip_over_http_through_its_central_directory: no zip command");
        return;
    }
    let rd = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
    let srv = Server::start(HashMap::from([
        ("d.zip".to_string(), rd("d.zip")),
        ("s.zip".to_string(), rd("s.zip")),
    ]));
    for z in ["d.zip", "s.zip"] {
        srv.b.drops.store(2, Ordering::SeqCst);
        let dst = dir.path().join(format!("{z}.out"));
        let r = sparsekit_flash::flash(
            &srv.url(z),
            std::slice::from_ref(&dst),
            &FlashOptions {
                http: http(),
                safety: sparsekit_flash::Safety {
                    create_files: true,
                    ..Default::default()
                },
                ..Default::default()
            },
            None,
            &mut Control::none(),
        )
        .unwrap_or_else(|e| panic!("{z}: {e}"));
        assert!(
            r.destinations[0].error.is_none(),
            "{z}: {:?}",
            r.destinations[0].error
        );
        assert_eq!(r.zip_entry.as_deref(), Some("os.img"));
        assert!(std::fs::read(&dst).unwrap() == data, "{z}");
        // bmap copy reads it the same way.
        let dst = dir.path().join(format!("{z}.copy"));
        remote::bmap_copy(
            &srv.url(z),
            &dst,
            &files_ok(),
            &http(),
            &mut Control::none(),
        )
        .unwrap();
        assert!(std::fs::read(&dst).unwrap() == data, "{z}");
    }
    // A named entry.
    let dst = dir.path().join("readme.out");
    let r = sparsekit_flash::flash(
        &srv.url("d.zip"),
        std::slice::from_ref(&dst),
        &FlashOptions {
            http: http(),
            zip_entry: Some("README".into()),
            safety: sparsekit_flash::Safety {
                create_files: true,
                ..Default::default()
            },
            ..Default::default()
        },
        None,
        &mut Control::none(),
    )
    .unwrap();
    assert!(r.destinations[0].error.is_none());
    assert_eq!(std::fs::read(&dst).unwrap(), b"hello");
    // Without range support a zip cannot be read: the clear refusal.
    srv.b.ranges.store(false, Ordering::SeqCst);
    let e = sparsekit_flash::flash(
        &srv.url("d.zip"),
        &[dir.path().join("x")],
        &FlashOptions {
            http: http(),
            ..Default::default()
        },
        None,
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_HTTP_NO_RANGES", "{e}");
}

/// Copy options for writing into new files in a temp folder.
fn files_ok() -> CopyOptions {
    CopyOptions {
        create_files: true,
        ..CopyOptions::default()
    }
}
