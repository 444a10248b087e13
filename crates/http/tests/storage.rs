//! Remote files read with range requests ([`HttpStorage`]): exact reads with read-ahead,
//! hostile servers (no ranges, dropped connections, short Content-Length, a wrong
//! Content-Range), and a remote qcow2 image converted through `Image::from_storage` over
//! an `HttpStorage` (outputs compared with `qemu-img convert` of the same file), as the
//! addon composes it.

use sparsekit_testfs::http as common;

use sparsekit_io::ErrorInfo;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{allocated, cmd, image, Server};
use sparsekit_http::{Error, HttpOptions, HttpStorage, BLOCK, READAHEAD};
use sparsekit_io::{Cancel, Control, Storage};

fn http() -> HttpOptions {
    HttpOptions {
        retries: 3,
        retry_delay: Duration::from_millis(5),
        timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

/// A remote qcow2 failure: of HTTP (also when carried inside a qcow2 read error), or of
/// qcow2.
#[derive(Debug)]
enum Remote {
    Http(Error),
    Qcow2(sparsekit_qcow2::Error),
}

impl Remote {
    fn code(&self) -> &'static str {
        match self {
            Remote::Http(e) => e.code(),
            Remote::Qcow2(e) => e.code(),
        }
    }
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Remote::Http(e) => e.fmt(f),
            Remote::Qcow2(e) => e.fmt(f),
        }
    }
}

impl From<sparsekit_qcow2::Error> for Remote {
    fn from(e: sparsekit_qcow2::Error) -> Self {
        match e {
            sparsekit_qcow2::Error::Io(io) => match Error::from_io_error(io) {
                Ok(h) => Remote::Http(h),
                Err(io) => Remote::Qcow2(sparsekit_qcow2::Error::Io(io)),
            },
            e => Remote::Qcow2(e),
        }
    }
}

/// `qcow2 convert` of the image at `url`: `Image::from_storage` over an [`HttpStorage`]
/// (what the addon's `remoteQcow2Convert` does).
fn qcow2_convert(
    url: &str,
    dst: &Path,
    opts: &sparsekit_qcow2::ConvertOptions,
    http: &HttpOptions,
    ctl: &mut Control<'_>,
) -> Result<sparsekit_qcow2::ConvertResult, Remote> {
    let storage = HttpStorage::open(url, http, ctl.cancel().clone()).map_err(Remote::Http)?;
    let opts_open = sparsekit_qcow2::OpenOptions {
        backing: sparsekit_qcow2::BackingPolicy::None,
        ..Default::default()
    };
    let img = sparsekit_qcow2::Image::from_storage(Box::new(storage), &opts_open)?;
    Ok(sparsekit_qcow2::convert(&img, dst, opts, ctl)?)
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
    let blocks = (data.len() as u64).div_ceil(BLOCK);
    assert!(
        reqs <= 2 + blocks / READAHEAD,
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
    let e = Error::from_io_error(e).unwrap();
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
    let e = Error::from_io_error(s.read_at(&mut all[..10], 3 << 19).unwrap_err()).unwrap();
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
            Error::Http {
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
        let r = qcow2_convert(
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
    let e = qcow2_convert(
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
    let e = qcow2_convert(
        &srv2.url("x"),
        &dst,
        &Default::default(),
        &http(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(e.code().starts_with("ERR_SPARSEKIT_"), "{e}");
    assert!(matches!(e, Remote::Qcow2(_)), "{e:?}");
}
