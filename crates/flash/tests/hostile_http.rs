//! HTTP sources against hostile servers on loopback, each connection scripted by the test:
//! a first request dropped, `URL.bmap` dropped / HTML / endless binary / trickling, a body
//! without Content-Length reset half-way or never ending, a server that ignores
//! `If-Range`, a server that stalls (abort), redirects to `file://`, short 206 answers,
//! empty zips and zips inside gzip. Every server loop is bounded (connection count and a
//! timer), so no test can run away.

use sparsekit_testfs::http as common;

use sparsekit_io::ErrorInfo;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::image;
use sparsekit_bmap::BmapChoice;
use sparsekit_flash::{flash, Error, FlashOptions, FlashReport, HttpOptions};
use sparsekit_http::HttpStorage;
use sparsekit_io::{Cancel, Control, Storage};

/// The most any scripted connection streams for (a bound on every endless answer).
const SERVER_LIMIT: Duration = Duration::from_secs(20);

/// A request as the server saw it: its path and its headers (names lower case).
#[derive(Clone, Debug)]
struct Req {
    path: String,
    headers: HashMap<String, String>,
}

impl Req {
    /// The start of `Range: bytes=N-`.
    fn range_start(&self) -> Option<u64> {
        let v = self.headers.get("range")?;
        v.strip_prefix("bytes=")?.split('-').next()?.parse().ok()
    }

    /// `Range: bytes=A-B` or `bytes=A-` within a file of `len` bytes, as `[a, b]`.
    fn range(&self, len: u64) -> Option<(u64, u64)> {
        let v = self.headers.get("range")?;
        let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
        let a: u64 = a.parse().ok()?;
        let b = b.parse::<u64>().unwrap_or(len - 1).min(len - 1);
        (a <= b).then_some((a, b))
    }
}

/// A loopback server: connection number `n` (from 0, counted per path) is handed to
/// `f(n, request, stream)`. It stops accepting after `max` connections.
struct Raw {
    port: u16,
    seen: Arc<std::sync::Mutex<Vec<Req>>>,
}

type Handler = dyn Fn(usize, &Req, TcpStream) + Send + Sync;

fn raw(max: usize, f: impl Fn(usize, &Req, TcpStream) + Send + Sync + 'static) -> Raw {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let f: Arc<Handler> = Arc::new(f);
    let seen: Arc<std::sync::Mutex<Vec<Req>>> = Arc::default();
    let counts: Arc<std::sync::Mutex<HashMap<String, usize>>> = Arc::default();
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().take(max).flatten() {
            let (f, seen, counts) = (f.clone(), s2.clone(), counts.clone());
            std::thread::spawn(move || {
                let Some(req) = read_request(&s) else { return };
                seen.lock().unwrap().push(req.clone());
                let n = {
                    let mut c = counts.lock().unwrap();
                    let e = c.entry(req.path.clone()).or_default();
                    *e += 1;
                    *e - 1
                };
                f(n, &req, s);
            });
        }
    });
    Raw { port, seen }
}

impl Raw {
    fn url(&self, p: &str) -> String {
        format!("http://127.0.0.1:{}/{p}", self.port)
    }

    fn count(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }
}

fn read_request(s: &TcpStream) -> Option<Req> {
    s.set_read_timeout(Some(SERVER_LIMIT)).ok()?;
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split(' ').nth(1)?.trim_start_matches('/').to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    Some(Req { path, headers })
}

/// Close `s` with a TCP reset (SO_LINGER 0) instead of a clean close.
fn reset(s: TcpStream) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

/// A full answer for `data` honouring `Range: bytes=N-` (206), with `extra` headers.
fn serve(req: &Req, mut s: TcpStream, data: &[u8], extra: &str) {
    let len = data.len() as u64;
    let _ = match req.range(len) {
        Some((a, b)) => write!(
            s,
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{len}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
            b + 1 - a
        )
        .and_then(|_| s.write_all(&data[a as usize..=b as usize])),
        _ => write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n{extra}Connection: close\r\n\r\n"
        )
        .and_then(|_| s.write_all(data)),
    };
    let _ = s.flush();
}

fn not_found(mut s: TcpStream) {
    let _ = write!(
        s,
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

fn http() -> HttpOptions {
    HttpOptions {
        retries: 3,
        retry_delay: Duration::from_millis(5),
        timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

/// A destination file that exists (empty), in `dir`.
fn dest(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, b"").unwrap();
    p
}

fn flash1(
    url: &str,
    dst: &Path,
    bmap: BmapChoice,
    http: HttpOptions,
) -> sparsekit_flash::Result<FlashReport> {
    flash(
        url,
        &[dst.to_path_buf()],
        &FlashOptions {
            bmap,
            http,
            // New files in a temp folder.
            opener: std::sync::Arc::new(sparsekit_flash::Files { create_files: true }),
            ..Default::default()
        },
        None,
        &mut Control::none(),
    )
}

fn assert_ok(r: &FlashReport) {
    let d = &r.destinations[0];
    assert!(d.error.is_none() && d.verified, "{:?}", d.error);
}

// 1. The first request is retried like the others.
#[test]
fn first_request_dropped_is_retried_and_resumed() {
    let data = Arc::new(image(3 << 20, 21));
    let d = data.clone();
    let srv = raw(50, move |n, req, mut s| {
        if req.path != "os.img" {
            return not_found(s);
        }
        match n {
            // Closed before any answer.
            0 => drop(s),
            // Reset half-way through the headers.
            1 => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Le");
                reset(s)
            }
            // A 503.
            2 => {
                let _ = write!(
                    s,
                    "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
            // The body cut after 1 MiB: resumed with a range request.
            3 => {
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"a\"\r\nConnection: close\r\n\r\n",
                    d.len()
                );
                let _ = s.write_all(&d[..1 << 20]);
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            _ => serve(req, s, &d, "ETag: \"a\"\r\n"),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let dst = dest(dir.path(), "out");
    let r = flash1(&srv.url("os.img"), &dst, BmapChoice::Auto, http())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ok(&r);
    assert!(std::fs::read(&dst).unwrap() == *data);
    let seen = srv.seen.lock().unwrap().clone();
    let resumed: Vec<_> = seen
        .iter()
        .filter(|r| r.path == "os.img")
        .filter_map(Req::range_start)
        .collect();
    assert_eq!(resumed, vec![1 << 20], "{seen:?}");
    // Retries are bounded: a server that always drops fails with a coded error.
    let srv = raw(50, |_, _, s| drop(s));
    let e = flash1(
        &srv.url("os.img"),
        &dest(dir.path(), "x"),
        BmapChoice::None,
        http(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_HTTP_INTERRUPTED", "{e}");
    assert_eq!(srv.count("os.img"), 4);
}

fn bmap_for(data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("i");
    std::fs::write(&p, data).unwrap();
    sparsekit_bmap::create(&p, &Default::default(), &mut Control::none())
        .unwrap()
        .to_xml()
}

// 2. URL.bmap: a drop is retried; 404 falls back; what is not a bmap fails, bounded.
#[test]
fn bmap_beside_the_url_dropped_missing_html_binary_and_slow() {
    let data = Arc::new(image(2 << 20, 22));
    let xml = Arc::new(bmap_for(&data));
    let (d, x) = (data.clone(), xml.clone());
    let srv = raw(200, move |n, req, mut s| match req.path.as_str() {
        "a/os.img" | "b/os.img" | "c/os.img" | "d/os.img" | "e/os.img" => serve(req, s, &d, ""),
        // Dropped once, then there.
        "a/os.img.bmap" if n == 0 => reset(s),
        "a/os.img.bmap" => serve(req, s, x.as_bytes(), ""),
        // None.
        "b/os.img.bmap" => not_found(s),
        // A "soft 404": an HTML page with status 200.
        "c/os.img.bmap" => serve(
            req,
            s,
            b"<!DOCTYPE html><html><body>Not here</body></html>",
            "Content-Type: text/html\r\n",
        ),
        // Binary without end (the image itself, say).
        "d/os.img.bmap" => {
            let _ = write!(s, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let t = Instant::now();
            let chunk = vec![0xa5u8; 65536];
            while t.elapsed() < SERVER_LIMIT && s.write_all(&chunk).is_ok() {}
        }
        // XML that trickles in: one byte every 200 ms.
        "e/os.img.bmap" => {
            let _ = write!(s, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let t = Instant::now();
            for b in x.bytes() {
                if t.elapsed() > SERVER_LIMIT || s.write_all(&[b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        _ => not_found(s),
    });
    let dir = tempfile::tempdir().unwrap();
    let r = flash1(
        &srv.url("a/os.img"),
        &dest(dir.path(), "a"),
        BmapChoice::Auto,
        http(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_ok(&r);
    assert_eq!(r.bmap.as_deref(), Some(srv.url("a/os.img.bmap").as_str()));
    assert_eq!(srv.count("a/os.img.bmap"), 2);
    let r = flash1(
        &srv.url("b/os.img"),
        &dest(dir.path(), "b"),
        BmapChoice::Auto,
        http(),
    )
    .unwrap();
    assert_ok(&r);
    assert_eq!(r.bmap, None);
    for (p, what) in [("c", "HTML"), ("d", "no XML")] {
        let t = Instant::now();
        let dst = dest(dir.path(), p);
        let e = flash1(
            &srv.url(&format!("{p}/os.img")),
            &dst,
            BmapChoice::Auto,
            http(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_BMAP_INVALID", "{p}: {e}");
        assert!(e.to_string().contains(what), "{p}: {e}");
        assert!(
            e.to_string().contains(&format!("{p}/os.img.bmap")),
            "{p}: {e}"
        );
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "{p}: {:?}",
            t.elapsed()
        );
        assert_eq!(
            std::fs::metadata(&dst).unwrap().len(),
            0,
            "{p}: destination untouched"
        );
        assert_eq!(
            srv.count(&format!("{p}/os.img")),
            0,
            "{p}: image never fetched"
        );
    }
    // The deadline of a bmap download.
    let t = Instant::now();
    let e = flash1(
        &srv.url("e/os.img"),
        &dest(dir.path(), "e"),
        BmapChoice::Auto,
        HttpOptions {
            bmap_timeout: Duration::from_secs(1),
            ..http()
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_HTTP", "{e}");
    assert!(e.to_string().contains("did not arrive within"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
}

// 3. A body without Content-Length reset half-way is an interruption.
#[test]
fn body_without_length_reset_half_way_is_interrupted() {
    let data = Arc::new(image(4 << 20, 23));
    let d = data.clone();
    let srv = raw(100, move |n, req, mut s| {
        let etag = req.path.starts_with("etag/");
        let chunked = req.path.starts_with("chunked/");
        if !req.path.ends_with("os.img") {
            return not_found(s);
        }
        if n > 0 && etag {
            return serve(req, s, &d, "ETag: \"e1\"\r\n");
        }
        if chunked {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            );
            let _ = write!(s, "{:x}\r\n", 2 << 20);
            let _ = s.write_all(&d[..2 << 20]);
            let _ = write!(s, "\r\n");
            // No terminating chunk: a clean close.
            return;
        }
        let v = if etag { "ETag: \"e1\"\r\n" } else { "" };
        let _ = write!(s, "HTTP/1.1 200 OK\r\n{v}Connection: close\r\n\r\n");
        let _ = s.write_all(&d[..2 << 20]);
        let _ = s.flush();
        std::thread::sleep(Duration::from_millis(50));
        reset(s)
    });
    let dir = tempfile::tempdir().unwrap();
    for p in ["plain/os.img", "chunked/os.img"] {
        let dst = dest(dir.path(), "x");
        let e = flash1(&srv.url(p), &dst, BmapChoice::None, http()).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_HTTP_INTERRUPTED", "{p}: {e}");
    }
    // With an ETag to check the resumed answer against, it resumes.
    let dst = dest(dir.path(), "y");
    let r = flash1(&srv.url("etag/os.img"), &dst, BmapChoice::None, http())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ok(&r);
    assert!(std::fs::read(&dst).unwrap() == *data);
}

// 4. A server that ignores If-Range and resumes with another file.
#[test]
fn resume_answered_with_another_file_is_refused() {
    let old = Arc::new(image(4 << 20, 24));
    let new = Arc::new(image(4 << 20, 25));
    let bigger = Arc::new(image(5 << 20, 25));
    let (o, nw, bg) = (old.clone(), new.clone(), bigger.clone());
    let srv = raw(100, move |n, req, mut s| {
        let (first, later, v1, v2): (&[u8], &[u8], &str, &str) = match req.path.as_str() {
            "etag" => (&o, &nw, "ETag: \"v1\"\r\n", "ETag: \"v2\"\r\n"),
            "lm" => (
                &o,
                &nw,
                "Last-Modified: Mon, 07 Dec 2026 09:00:00 GMT\r\n",
                "Last-Modified: Mon, 07 Dec 2026 10:00:00 GMT\r\n",
            ),
            "size" => (&o, &bg, "ETag: \"v1\"\r\n", ""),
            _ => return not_found(s),
        };
        if n == 0 {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{v1}Connection: close\r\n\r\n",
                first.len()
            );
            let _ = s.write_all(&first[..1 << 20]);
            let _ = s.shutdown(std::net::Shutdown::Both);
            return;
        }
        serve(req, s, later, v2)
    });
    let dir = tempfile::tempdir().unwrap();
    for p in ["etag", "lm", "size"] {
        let dst = dest(dir.path(), p);
        let e = flash1(&srv.url(p), &dst, BmapChoice::None, http()).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_HTTP_CHANGED", "{p}: {e}");
        assert_eq!(e.offset(), Some(1 << 20), "{p}: {e}");
    }
    // Random access: an HttpStorage whose file changes under it.
    let srv = raw(100, move |n, req, s| {
        let (data, v) = if n == 0 {
            (&old, "ETag: \"v1\"\r\n")
        } else {
            (&new, "ETag: \"v2\"\r\n")
        };
        let len = data.len() as u64;
        let h = &req.headers["range"];
        let (a, b) = h.strip_prefix("bytes=").unwrap().split_once('-').unwrap();
        let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse::<u64>().unwrap().min(len - 1));
        let mut s = s;
        let _ = write!(
            s,
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{len}\r\nContent-Length: {}\r\n{v}Connection: close\r\n\r\n",
            b + 1 - a
        );
        let _ = s.write_all(&data[a as usize..=b as usize]);
    });
    let st = HttpStorage::open(&srv.url("f"), &http(), Cancel::new()).unwrap();
    let mut buf = vec![0u8; 1000];
    let e = st.read_at(&mut buf, 3 << 20).unwrap_err();
    let e = sparsekit_flash::error_of_io(e);
    assert_eq!(e.code(), "ERR_SPARSEKIT_HTTP_CHANGED", "{e}");
}

/// Run `f` with a token cancelled after 200 ms; how long it took, and its error.
fn aborted_after_200ms(f: impl FnOnce(&mut Control<'_>) -> Error) -> (Duration, Error) {
    let cancel = Cancel::new();
    let c = cancel.clone();
    let t = Instant::now();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        c.cancel();
    });
    let mut ctl = Control::new(cancel, |_| {});
    let e = f(&mut ctl);
    canceller.join().unwrap();
    (t.elapsed(), e)
}

// 5. Abort while the server stalls, and while URL.bmap trickles in.
#[test]
fn abort_is_prompt_whatever_the_server_does() {
    let srv = raw(50, |_, req, mut s| {
        let t = Instant::now();
        match req.path.as_str() {
            // Accepts, reads the request, never answers.
            "stall" | "stall.bmap" => {
                while t.elapsed() < SERVER_LIMIT {
                    std::thread::sleep(Duration::from_millis(50));
                    if s.peek(&mut [0u8; 1]).is_ok_and(|n| n == 0) {
                        break;
                    }
                }
            }
            "trickle.bmap" => {
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n<?xml version=\"1.0\"?><bmap>"
                );
                while t.elapsed() < SERVER_LIMIT && s.write_all(b" ").is_ok() {
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
            _ => not_found(s),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, BmapChoice); 3] = [
        ("stall", BmapChoice::None),
        ("stall", BmapChoice::Auto),
        ("trickle", BmapChoice::Auto),
    ];
    for (p, bmap) in cases {
        let dst = dest(dir.path(), "x");
        let url = srv.url(p);
        let (took, e) = aborted_after_200ms(|ctl| {
            flash(
                &url,
                std::slice::from_ref(&dst),
                &FlashOptions {
                    bmap: bmap.clone(),
                    http: http(),
                    opener: std::sync::Arc::new(sparsekit_flash::Files { create_files: true }),
                    ..Default::default()
                },
                None,
                ctl,
            )
            .unwrap_err()
        });
        assert_eq!(e.code(), "ERR_SPARSEKIT_ABORTED", "{p}: {e}");
        assert!(took < Duration::from_secs(10), "{p}: {took:?}");
    }
    // Random access too.
    let url = srv.url("stall");
    let (took, e) = aborted_after_200ms(|ctl| {
        HttpStorage::open(&url, &http(), ctl.cancel().clone())
            .unwrap_err()
            .into()
    });
    assert_eq!(e.code(), "ERR_SPARSEKIT_ABORTED", "{e}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let o = std::process::Command::new(cmd).args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

// 6. A body without Content-Length that never ends is bounded by the destination.
#[test]
fn endless_body_is_bounded_by_the_destination() {
    if !is_root() {
        eprintln!(
            "SKIP endless_body_is_bounded_by_the_destination: needs root (tmpfs, loop device)"
        );
        return;
    }
    let data = Arc::new(image(1 << 20, 26));
    let d = data.clone();
    let srv = raw(20, move |_, _, mut s| {
        let _ = write!(s, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let _ = s.write_all(&d);
        let zeros = vec![0u8; 1 << 20];
        let t = Instant::now();
        while t.elapsed() < SERVER_LIMIT && s.write_all(&zeros).is_ok() {}
    });
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    if run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=24m",
            "tmpfs",
            mnt.to_str().unwrap(),
        ],
    )
    .is_none()
    {
        eprintln!("SKIP endless_body_is_bounded_by_the_destination: no tmpfs mount");
        return;
    }
    struct Umount(PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = run("umount", &[self.0.to_str().unwrap()]);
        }
    }
    let _m = Umount(mnt.clone());
    let t = Instant::now();
    let dst = dest(&mnt, "out");
    let r = flash1(&srv.url("os.img"), &dst, BmapChoice::None, http())
        .unwrap_or_else(|e| panic!("{e}"));
    let e = r.destinations[0]
        .error
        .as_ref()
        .expect("the file destination fails");
    assert_eq!(e.code(), "ERR_SPARSEKIT_DEST_TOO_SMALL", "{e}");
    assert!(e.to_string().contains("free"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    // A block device: its size.
    let img = dir.path().join("loop.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let Some(dev) = run("losetup", &["-f", "--show", img.to_str().unwrap()]) else {
        eprintln!("SKIP endless_body_is_bounded_by_the_destination (device part): no loop device");
        return;
    };
    struct Detach(String);
    impl Drop for Detach {
        fn drop(&mut self) {
            let _ = run("losetup", &["-d", &self.0]);
        }
    }
    let _d = Detach(dev.clone());
    let r = flash1(
        &srv.url("os.img"),
        Path::new(&dev),
        BmapChoice::None,
        http(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let e = r.destinations[0]
        .error
        .as_ref()
        .expect("the device destination fails");
    assert_eq!(e.code(), "ERR_SPARSEKIT_DEST_TOO_SMALL", "{e}");
}

// 7. Smaller ones.
#[test]
fn redirect_to_file_scheme_is_refused_by_name() {
    let srv = raw(10, |_, _, mut s| {
        let _ = write!(s, "HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    });
    let dir = tempfile::tempdir().unwrap();
    let e = flash1(
        &srv.url("os.img"),
        &dest(dir.path(), "x"),
        BmapChoice::None,
        http(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_HTTP", "{e}");
    assert!(e.to_string().contains("'file' scheme is refused"), "{e}");
    let e = HttpStorage::open(&srv.url("os.img"), &http(), Cancel::new()).unwrap_err();
    assert!(e.to_string().contains("'file' scheme is refused"), "{e}");
}

/// Ranged answers of at most `most` bytes (a legal 206 with fewer bytes than asked).
fn short_ranges(data: Arc<Vec<u8>>, most: u64) -> Raw {
    raw(10_000, move |_, req, mut s| {
        let len = data.len() as u64;
        let Some(h) = req.headers.get("range") else {
            return serve(req, s, &data, "");
        };
        let (a, b) = h.strip_prefix("bytes=").unwrap().split_once('-').unwrap();
        let a: u64 = a.parse().unwrap();
        let b = b
            .parse::<u64>()
            .unwrap_or(len - 1)
            .min(len - 1)
            .min(a + most - 1);
        let _ = write!(
            s,
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            b + 1 - a
        );
        let _ = s.write_all(&data[a as usize..=b as usize]);
    })
}

#[test]
fn short_first_range_answer_is_accepted() {
    let data = Arc::new(image(700_000, 27));
    let srv = short_ranges(data.clone(), 100_000);
    let st = HttpStorage::open(&srv.url("f"), &http(), Cancel::new()).unwrap();
    assert_eq!(st.size().unwrap(), data.len() as u64);
    let mut all = vec![0u8; data.len()];
    st.read_exact_at(&mut all, 0).unwrap();
    assert!(all == *data);
}

fn zip_cmd(dir: &Path, args: &[&str]) -> bool {
    std::process::Command::new("zip")
        .current_dir(dir)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn remote_zip_network_failure_is_an_http_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("os.img"), image(3 << 20, 28)).unwrap();
    if !zip_cmd(dir.path(), &["-q", "-6", "d.zip", "os.img"]) {
        eprintln!("SKIP remote_zip_network_failure_is_an_http_error: no zip command");
        return;
    }
    let z = Arc::new(std::fs::read(dir.path().join("d.zip")).unwrap());
    // The first two answers (the sniffing GET and the probe) are whole; every later one
    // is cut at once.
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let srv = raw(1000, move |_, req, s| {
        if req.path.ends_with(".bmap") {
            return not_found(s);
        }
        if h.fetch_add(1, Ordering::SeqCst) < 2 {
            let len = z.len() as u64;
            match req.headers.get("range") {
                Some(r) => {
                    let (a, b) = r.strip_prefix("bytes=").unwrap().split_once('-').unwrap();
                    let a: u64 = a.parse().unwrap();
                    let b = b.parse::<u64>().unwrap_or(len - 1).min(len - 1);
                    let mut s = s;
                    let _ = write!(
                        s,
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        b + 1 - a
                    );
                    let _ = s.write_all(&z[a as usize..=b as usize]);
                }
                None => serve(req, s, &z, ""),
            }
        } else {
            reset(s)
        }
    });
    let e = flash1(
        &srv.url("d.zip"),
        &dest(dir.path(), "x"),
        BmapChoice::Auto,
        http(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_HTTP_INTERRUPTED", "{e}");
}

#[test]
fn empty_zip_and_zip_inside_gzip_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // An empty archive: only the end of central directory record.
    let mut empty = b"PK\x05\x06".to_vec();
    empty.extend_from_slice(&[0u8; 18]);
    std::fs::write(dir.path().join("empty.zip"), &empty).unwrap();
    let dst = dest(dir.path(), "x");
    let e = flash1(
        dir.path().join("empty.zip").to_str().unwrap(),
        &dst,
        BmapChoice::Auto,
        http(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_ZIP", "{e}");
    assert!(e.to_string().contains("no file"), "{e}");
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), 0);
    // A zip archive inside gzip, local and remote (as .zip.gz, and as a .zip served with
    // Content-Encoding: gzip).
    std::fs::write(dir.path().join("os.img"), image(1 << 20, 29)).unwrap();
    let have_zip = zip_cmd(dir.path(), &["-q", "-6", "d.zip", "os.img"]);
    let zip = if have_zip {
        std::fs::read(dir.path().join("d.zip")).unwrap()
    } else {
        empty.clone()
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&zip).unwrap();
    let gz = Arc::new(gz.finish().unwrap());
    std::fs::write(dir.path().join("d.zip.gz"), &*gz).unwrap();
    let e = flash1(
        dir.path().join("d.zip.gz").to_str().unwrap(),
        &dst,
        BmapChoice::Auto,
        http(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_UNSUPPORTED", "{e}");
    assert!(
        e.to_string().contains("zip archive inside a gzip stream"),
        "{e}"
    );
    let (g, em) = (gz.clone(), empty.clone());
    let srv = raw(50, move |_, req, s| match req.path.as_str() {
        "d.zip" => serve(req, s, &g, "Content-Encoding: gzip\r\n"),
        "d.zip.gz" => serve(req, s, &g, ""),
        "empty.zip" => serve(req, s, &em, ""),
        _ => not_found(s),
    });
    for p in ["d.zip", "d.zip.gz"] {
        let e = flash1(&srv.url(p), &dst, BmapChoice::Auto, http()).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_UNSUPPORTED", "{p}: {e}");
    }
    let e = flash1(&srv.url("empty.zip"), &dst, BmapChoice::Auto, http()).unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_ZIP", "{e}");
    assert_eq!(std::fs::metadata(&dst).unwrap().len(), 0);
}
