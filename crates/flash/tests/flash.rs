//! Integration tests with real loop devices, device-mapper targets, mounted partitions and
//! a local HTTP server. Tests that need root print `SKIP <test>: <reason>` without it.

use sparsekit_io::ErrorInfo;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sparsekit_bmap::BmapChoice;
use sparsekit_drives as drives;
use sparsekit_drives::Safety;
use sparsekit_flash::{flash, Error, FlashOptions, FlashStatus, HttpOptions, Opener};
use sparsekit_io::Control;
use sparsekit_testfs::{is_root, pattern, run};

/// A loop device over a sparse file, detached on drop.
struct Loop {
    dev: PathBuf,
    _dir: tempfile::TempDir,
    backing: PathBuf,
}

impl Loop {
    fn new(size: u64, fill: Option<u8>, partitioned: bool, test: &str) -> Option<Loop> {
        if !is_root() {
            eprintln!("SKIP {test}: not root (losetup needs root)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("sparsekit-flash-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let backing = dir.path().join("dev.img");
        let f = File::create(&backing).unwrap();
        f.set_len(size).unwrap();
        if let Some(b) = fill {
            let chunk = vec![b; 1 << 20];
            let mut off = 0;
            while off < size {
                let n = (size - off).min(chunk.len() as u64) as usize;
                f.write_all_at(&chunk[..n], off).unwrap();
                off += n as u64;
            }
        }
        if partitioned {
            // An MBR with one Linux partition from sector 2048 to the end.
            let mut mbr = [0u8; 512];
            let start: u32 = 2048;
            let count = (size / 512) as u32 - start;
            let e = &mut mbr[446..462];
            e[4] = 0x83;
            e[8..12].copy_from_slice(&start.to_le_bytes());
            e[12..16].copy_from_slice(&count.to_le_bytes());
            mbr[510] = 0x55;
            mbr[511] = 0xaa;
            f.write_all_at(&mbr, 0).unwrap();
        }
        drop(f);
        let args: Vec<&str> = if partitioned {
            vec!["-f", "-P", "--show", backing.to_str().unwrap()]
        } else {
            vec!["-f", "--show", backing.to_str().unwrap()]
        };
        match run("losetup", &args) {
            Ok(dev) => Some(Loop {
                dev: PathBuf::from(dev.trim()),
                _dir: dir,
                backing,
            }),
            Err(e) => {
                eprintln!("SKIP {test}: {e}");
                None
            }
        }
    }

    fn read(&self, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        File::open(&self.backing)
            .unwrap()
            .read_exact_at(&mut v, 0)
            .unwrap();
        v
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = run("losetup", &["-d", self.dev.to_str().unwrap()]);
    }
}

/// A device-mapper device, removed on drop.
struct Dm(String);

impl Drop for Dm {
    fn drop(&mut self) {
        for _ in 0..20 {
            if run("dmsetup", &["remove", &self.0]).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// An image with data in some 64 KiB blocks and holes between.
fn image(len: usize, seed: u64) -> Vec<u8> {
    let mut v = pattern(len, seed);
    for (i, c) in v.chunks_mut(65536).enumerate() {
        if i % 3 == 1 {
            c.fill(0);
        }
    }
    v
}

/// Destinations through sparsekit-drives' checks, as the Node addon opens them.
#[derive(Debug)]
struct Drives(Safety);

impl Opener for Drives {
    fn open(&self, p: &Path) -> sparsekit_flash::Result<Box<dyn sparsekit_bmap::Destination>> {
        drives::open_destination(p, self.0).map_err(|e| match e {
            drives::Error::Io(io) => Error::Io(io),
            e => Error::Refused(Box::new(e)),
        })
    }
}

fn opts() -> FlashOptions {
    FlashOptions {
        bmap: BmapChoice::None,
        http: HttpOptions {
            retry_delay: Duration::from_millis(10),
            ..HttpOptions::default()
        },
        // The drive checks as the addon makes them: the system disk is never written.
        opener: std::sync::Arc::new(Drives(Safety {
            create_files: true,
            ..Safety::default()
        })),
        ..FlashOptions::default()
    }
}

fn ok(r: &sparsekit_flash::DestinationReport) {
    assert!(
        r.error.is_none() && r.verified,
        "{}: {:?}",
        r.path.display(),
        r.error
    );
}

#[test]
fn one_image_to_three_loop_devices() {
    let data = image(24 << 20, 1);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("os.img");
    std::fs::write(&src, &data).unwrap();
    let loops: Vec<Loop> = (0..3)
        .filter_map(|_| {
            Loop::new(
                32 << 20,
                Some(0xee),
                false,
                "one_image_to_three_loop_devices",
            )
        })
        .collect();
    if loops.len() < 3 {
        return;
    }
    let dsts: Vec<PathBuf> = loops.iter().map(|l| l.dev.clone()).collect();
    let status = FlashStatus::new(3);
    let r = flash(
        src.to_str().unwrap(),
        &dsts,
        &opts(),
        Some(&status),
        &mut Control::none(),
    )
    .unwrap();
    for (d, l) in r.destinations.iter().zip(&loops) {
        ok(d);
        // Holes of a plain image are skipped (as bmaptool does): compare the data.
        let got = l.read(data.len());
        for (i, (a, b)) in got.chunks(65536).zip(data.chunks(65536)).enumerate() {
            if i % 3 != 1 {
                assert_eq!(a, b, "block {i} of {}", d.path.display());
            }
        }
    }
    // The same through gzip: the whole stream is written, zeros included.
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&data).unwrap();
    let gz = dir.path().join("os.img.gz");
    std::fs::write(&gz, e.finish().unwrap()).unwrap();
    let r = flash(
        gz.to_str().unwrap(),
        &dsts,
        &opts(),
        None,
        &mut Control::none(),
    )
    .unwrap();
    for (d, l) in r.destinations.iter().zip(&loops) {
        ok(d);
        assert_eq!(d.bytes_written, data.len() as u64);
        assert!(l.read(data.len()) == data, "{}", d.path.display());
    }
    assert_eq!(status.snapshot()[0].verified, status.total().unwrap());
}

#[test]
fn failing_destination_is_dropped_others_finish() {
    let t = "failing_destination_is_dropped_others_finish";
    let data = image(24 << 20, 2);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("os.img.gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&data).unwrap();
    std::fs::write(&src, e.finish().unwrap()).unwrap();
    let (Some(a), Some(b), Some(c)) = (
        Loop::new(32 << 20, None, false, t),
        Loop::new(32 << 20, None, false, t),
        Loop::new(32 << 20, None, false, t),
    ) else {
        return;
    };
    // The third drive: its first 8 MiB work, the rest fails: a dm-error target where
    // the kernel has device-mapper, else a loop device over a file on an 8 MiB tmpfs
    // (writes past 8 MiB fail with ENOSPC in the loop driver).
    let name = format!("sparsekit-flash-err-{}", std::process::id());
    let table = format!("0 16384 linear {} 0\n16384 49152 error\n", c.dev.display());
    let mut _dm = None;
    let mut _tmpfs = None;
    let mut _tmploop = None;
    let bad = match run("dmsetup", &["create", &name, "--table", &table]) {
        Ok(_) => {
            _dm = Some(Dm(name.clone()));
            PathBuf::from(format!("/dev/mapper/{name}"))
        }
        Err(e) => {
            eprintln!("{t}: no device-mapper ({e}); using a loop device on a full tmpfs");
            let Some(m) = sparsekit_testfs::Mount::new(sparsekit_testfs::Fs::Tmpfs(8), t) else {
                return;
            };
            let backing = m.join("dev.img");
            File::create(&backing).unwrap().set_len(32 << 20).unwrap();
            let dev = run("losetup", &["-f", "--show", backing.to_str().unwrap()]).unwrap();
            let dev = PathBuf::from(dev.trim());
            struct Detach(PathBuf);
            impl Drop for Detach {
                fn drop(&mut self) {
                    let _ = run("losetup", &["-d", self.0.to_str().unwrap()]);
                }
            }
            _tmploop = Some(Detach(dev.clone()));
            _tmpfs = Some(m);
            dev
        }
    };
    let dsts = vec![a.dev.clone(), bad.clone(), b.dev.clone()];
    let r = flash(
        src.to_str().unwrap(),
        &dsts,
        &opts(),
        None,
        &mut Control::none(),
    )
    .unwrap();
    ok(&r.destinations[0]);
    ok(&r.destinations[2]);
    let e = r.destinations[1]
        .error
        .as_ref()
        .expect("the failing drive fails");
    assert_eq!(e.code(), "ERR_SPARSEKIT_IO", "{e}");
    assert!(
        matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::ENOSPC)),
        "{e}"
    );
    assert_eq!(e.path(), Some(bad.as_path()));
    // The error surfaces at the fault (8 MiB), not at the final fsync: an O_DIRECT write
    // fails at its own offset (the chunk holding the fault); a buffered one is caught by
    // a write-back check naming a range of a few MiB holding it. The writer stopped
    // before the end.
    eprintln!("{t}: {e}");
    // On the full tmpfs the fault is where its pages run out: 1 MiB later, as the first
    // MiB (HEAD) is written only at the end.
    let fault = if _dm.is_some() {
        8u64 << 20
    } else {
        (8u64 << 20) + sparsekit_flash::HEAD
    };
    let at = e.offset().unwrap_or_else(|| panic!("no offset: {e}"));
    let (start, end) = match e.syscall() {
        Some("write") | Some("pwrite64") => (at, at + sparsekit_flash::CHUNK as u64),
        Some("sync_file_range") => e.range().unwrap_or_else(|| panic!("no range: {e}")),
        s => panic!("failed in {s:?}: {e}"),
    };
    assert_eq!(start, at);
    assert!(start <= fault && fault < end, "{e}");
    let bound = (sparsekit_flash::CHECK_LAG as u64 + 2) * sparsekit_flash::CHECK_WINDOW + (1 << 20);
    assert!(end - start <= bound, "{e}");
    assert!(
        r.destinations[1].bytes_written < data.len() as u64,
        "{}",
        r.destinations[1].bytes_written
    );
    assert!(a.read(data.len()) == data);
    assert!(b.read(data.len()) == data);
    // The loop device first, then the tmpfs under it.
    drop(_tmploop);
    drop(_tmpfs);
}

#[test]
fn too_small_device_refused_before_writing() {
    let t = "too_small_device_refused_before_writing";
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("os.img");
    std::fs::write(&src, image(8 << 20, 3)).unwrap();
    let (Some(small), Some(big)) = (
        Loop::new(4 << 20, Some(0xab), false, t),
        Loop::new(8 << 20, Some(0xab), false, t),
    ) else {
        return;
    };
    let r = flash(
        src.to_str().unwrap(),
        &[small.dev.clone(), big.dev.clone()],
        &opts(),
        None,
        &mut Control::none(),
    )
    .unwrap();
    let e = r.destinations[0].error.as_ref().unwrap();
    assert_eq!(e.code(), "ERR_SPARSEKIT_DEST_TOO_SMALL", "{e}");
    assert_eq!(r.destinations[0].bytes_written, 0);
    assert!(small.read(4 << 20).iter().all(|&b| b == 0xab), "untouched");
    ok(&r.destinations[1]);
}

#[test]
fn mounted_partition_refused_unless_unmounted_or_forced() {
    let t = "mounted_partition_refused_unless_unmounted_or_forced";
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("os.img");
    std::fs::write(&src, image(4 << 20, 4)).unwrap();
    let Some(l) = Loop::new(64 << 20, None, true, t) else {
        return;
    };
    let part = PathBuf::from(format!("{}p1", l.dev.display()));
    for i in 0..50 {
        if part.exists() {
            break;
        }
        if i == 10 {
            // Kernels without the MBR parser (CONFIG_MSDOS_PARTITION) scan nothing:
            // partx reads the table itself and adds the partition (BLKPG).
            let _ = run("partx", &["-a", l.dev.to_str().unwrap()]);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Err(e) = run("mkfs.ext4", &["-q", "-F", part.to_str().unwrap()]) {
        eprintln!("SKIP {t}: {e}");
        return;
    }
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    run("mount", &[part.to_str().unwrap(), mnt.to_str().unwrap()]).unwrap();
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = run("umount", &[self.0.to_str().unwrap()]);
        }
    }
    let _guard = Unmount(mnt.clone());
    let listed = drives::list().unwrap();
    let d = listed.iter().find(|d| d.path == l.dev).expect("listed");
    assert_eq!(d.partitions.len(), 1);
    assert_eq!(d.partitions[0].mountpoints, std::slice::from_ref(&mnt));
    assert_eq!(d.partitions[0].start, 2048 * 512);
    assert!(!d.is_system);

    let r = flash(
        src.to_str().unwrap(),
        std::slice::from_ref(&l.dev),
        &opts(),
        None,
        &mut Control::none(),
    )
    .unwrap();
    let e = r.destinations[0].error.as_ref().unwrap();
    assert_eq!(e.code(), "ERR_SPARSEKIT_DRIVE_BUSY", "{e}");
    assert!(e.to_string().contains(mnt.to_str().unwrap()), "{e}");
    // force passes the checks (no write here: it would write under a mounted fs).
    drives::check_destination(
        &l.dev,
        Safety {
            force: true,
            unmount: false,
            ..Safety::default()
        },
    )
    .unwrap();
    let o = FlashOptions {
        opener: std::sync::Arc::new(Drives(Safety {
            force: false,
            unmount: true,
            ..Safety::default()
        })),
        ..opts()
    };
    let r = flash(
        src.to_str().unwrap(),
        std::slice::from_ref(&l.dev),
        &o,
        None,
        &mut Control::none(),
    )
    .unwrap();
    ok(&r.destinations[0]);
    let listed = drives::list().unwrap();
    let d = listed.iter().find(|d| d.path == l.dev).unwrap();
    assert!(d.all_mountpoints().is_empty());
}

#[test]
fn root_disk_is_system_and_refused() {
    let root = std::fs::metadata("/").unwrap();
    use std::os::unix::fs::MetadataExt;
    let dev = (libc::major(root.dev()), libc::minor(root.dev()));
    let listed = drives::list().unwrap();
    let Some(d) = listed.iter().find(|d| {
        d.devnum == dev
            || d.partitions
                .iter()
                .any(|p| sparsekit_drives::sys::block_devnum(&p.path).ok().flatten() == Some(dev))
    }) else {
        eprintln!("SKIP root_disk_is_system_and_refused: no whole disk holds / ({dev:?})");
        return;
    };
    assert!(d.is_system, "{d:?}");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("os.img");
    std::fs::write(&src, [1u8; 4096]).unwrap();
    let r = flash(
        src.to_str().unwrap(),
        std::slice::from_ref(&d.path),
        &opts(),
        None,
        &mut Control::none(),
    )
    .unwrap();
    let e = r.destinations[0].error.as_ref().unwrap();
    assert_eq!(e.code(), "ERR_SPARSEKIT_SYSTEM_DRIVE", "{e}");
}

/// A minimal HTTP/1.1 server on loopback: files by path, `Range: bytes=N-` when
/// `ranges`, redirects from `/r/NAME`, and connections dropped at the given absolute body
/// offsets (one per response, in order).
struct Server {
    port: u16,
}

#[derive(Clone)]
struct Behaviour {
    ranges: bool,
    drops: Arc<Mutex<Vec<u64>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(files: HashMap<String, Vec<u8>>, b: Behaviour) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let files = Arc::new(files);
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let files = files.clone();
                let b = b.clone();
                std::thread::spawn(move || {
                    let _ = handle(s, &files, &b);
                });
            }
        });
        Server { port }
    }

    fn url(&self, p: &str) -> String {
        format!("http://127.0.0.1:{}/{p}", self.port)
    }
}

fn handle(s: TcpStream, files: &HashMap<String, Vec<u8>>, b: &Behaviour) -> std::io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let path = line
        .split(' ')
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        let l = h.to_ascii_lowercase();
        if let Some(v) = l.strip_prefix("range: bytes=") {
            range = v.trim().trim_end_matches('-').parse::<u64>().ok();
        }
    }
    b.requests.lock().unwrap().push(format!("{path} {range:?}"));
    let mut w = s;
    if let Some(to) = path.strip_prefix("r/") {
        write!(w, "HTTP/1.1 302 Found\r\nLocation: /{to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
        return Ok(());
    }
    let Some(data) = files.get(&path) else {
        write!(
            w,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    };
    let start = match range {
        Some(n) if b.ranges && n < data.len() as u64 => {
            write!(
                w,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {n}-{}/{}\r\nContent-Length: {}\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n",
                data.len() - 1,
                data.len(),
                data.len() as u64 - n
            )?;
            n
        }
        _ => {
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n",
                data.len()
            )?;
            0
        }
    };
    let stop = {
        let mut d = b.drops.lock().unwrap();
        if !d.is_empty() && d[0] > start {
            Some(d.remove(0))
        } else {
            None
        }
    };
    let end = stop.unwrap_or(data.len() as u64).min(data.len() as u64);
    w.write_all(&data[start as usize..end as usize])?;
    w.flush()?;
    w.shutdown(std::net::Shutdown::Both)
}

fn compress(cmd: &str, data: &[u8]) -> Option<Vec<u8>> {
    let mut c = std::process::Command::new(cmd)
        .args(["-c", "-1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    let mut i = c.stdin.take().unwrap();
    let d = data.to_vec();
    let t = std::thread::spawn(move || i.write_all(&d));
    let mut out = Vec::new();
    c.stdout.take().unwrap().read_to_end(&mut out).ok()?;
    t.join().unwrap().ok()?;
    c.wait().ok()?.success().then_some(out)
}

fn files_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn http_plain_gzip_xz_with_drops_and_redirect() {
    let data = image(6 << 20, 5);
    let mut files = HashMap::new();
    files.insert("os.img".to_string(), data.clone());
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&data).unwrap();
    files.insert("os.img.gz".to_string(), e.finish().unwrap());
    let xz = compress("xz", &data);
    if let Some(x) = &xz {
        files.insert("os.img.xz".to_string(), x.clone());
    } else {
        eprintln!("no xz command: the xz case is skipped");
    }
    let b = Behaviour {
        ranges: true,
        drops: Arc::default(),
        requests: Arc::default(),
    };
    let srv = Server::start(files.clone(), b.clone());
    let dir = files_dir();
    let mut names = vec!["os.img", "os.img.gz", "r/os.img"];
    if xz.is_some() {
        names.push("os.img.xz");
    }
    for name in names {
        // Five drops at pseudo-random offsets of the transferred body.
        let len = files[name.trim_start_matches("r/")].len() as u64;
        let mut x = len ^ 0x9e37_79b9;
        let mut offs: Vec<u64> = (0..5)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                1 + (x >> 33) % (len - 1)
            })
            .collect();
        offs.sort();
        offs.dedup();
        *b.drops.lock().unwrap() = offs.clone();
        b.requests.lock().unwrap().clear();
        let dst = dir.path().join(format!("{}.out", name.replace('/', "_")));
        let r = flash(
            &srv.url(name),
            std::slice::from_ref(&dst),
            &opts(),
            None,
            &mut Control::none(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        ok(&r.destinations[0]);
        assert!(std::fs::read(&dst).unwrap() == data, "{name}");
        assert!(
            b.drops.lock().unwrap().is_empty(),
            "{name}: every drop happened"
        );
        let reqs = b.requests.lock().unwrap().clone();
        // Redirected requests keep their Range header: count those of the image itself.
        let ranged = reqs
            .iter()
            .filter(|r| !r.starts_with("r/") && r.contains("Some("))
            .count();
        assert_eq!(ranged, offs.len(), "{name}: {reqs:?}");
    }
}

#[test]
fn http_without_ranges_fails_with_offset() {
    let data = image(2 << 20, 6);
    let mut files = HashMap::new();
    files.insert("os.img".to_string(), data.clone());
    let drops: Vec<u64> = vec![1 << 20; 50];
    let b = Behaviour {
        ranges: false,
        drops: Arc::new(Mutex::new(drops)),
        requests: Arc::default(),
    };
    let srv = Server::start(files, b.clone());
    let dir = files_dir();
    let dst = dir.path().join("out");
    let e = flash(
        &srv.url("os.img"),
        &[dst],
        &opts(),
        None,
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_HTTP_INTERRUPTED", "{e}");
    assert_eq!(e.offset(), Some(1 << 20), "{e}");
    assert!(e.to_string().contains("range requests"), "{e}");
    assert!(
        matches!(
            e,
            Error::Http(sparsekit_http::Error::HttpInterrupted { attempts: 5, .. })
        ),
        "{e:?}"
    );
    // And a missing file is a plain HTTP error with its status.
    let e = flash(
        &srv.url("nope"),
        &[dir.path().join("x")],
        &opts(),
        None,
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Http(sparsekit_http::Error::Http {
                status: Some(404),
                ..
            })
        ),
        "{e:?}"
    );
    assert!(
        !dir.path().join("x").exists(),
        "no destination touched when the source fails"
    );
}

#[test]
fn http_bmap_beside_the_url() {
    let data = image(4 << 20, 7);
    let dir = files_dir();
    let img = dir.path().join("os.img");
    std::fs::write(&img, &data).unwrap();
    let bmap = sparsekit_bmap::create(&img, &Default::default(), &mut Control::none()).unwrap();
    let mut files = HashMap::new();
    files.insert("os.img".to_string(), data.clone());
    files.insert("os.img.bmap".to_string(), bmap.to_xml().into_bytes());
    let b = Behaviour {
        ranges: true,
        drops: Arc::default(),
        requests: Arc::default(),
    };
    let srv = Server::start(files, b);
    let dst = dir.path().join("out");
    let o = FlashOptions {
        bmap: BmapChoice::Auto,
        ..opts()
    };
    let r = flash(
        &srv.url("os.img"),
        std::slice::from_ref(&dst),
        &o,
        None,
        &mut Control::none(),
    )
    .unwrap();
    ok(&r.destinations[0]);
    assert_eq!(r.bmap.as_deref(), Some(srv.url("os.img.bmap").as_str()));
    assert_eq!(r.destinations[0].bytes_written, bmap.mapped_bytes());
    assert!(std::fs::read(&dst).unwrap() == data);
}

/// The bmap is parsed with the caller's cancel token, beside a local image and at
/// `URL.bmap` (flash and remote `bmap copy`): with a token cancelled before the call, a
/// bmap that does not parse gives `Aborted`, not its parse error (a large bmap takes a
/// second or more to parse).
#[test]
fn bmap_parse_honours_abort() {
    let dir = files_dir();
    let img = dir.path().join("os.img");
    std::fs::write(&img, image(1 << 20, 3)).unwrap();
    let bad = b"<bmap version=\"2.0\"><ImageSize>x</ImageSize></bmap>".to_vec();
    std::fs::write(dir.path().join("os.img.bmap"), &bad).unwrap();
    let mut files = HashMap::new();
    files.insert("os.img".to_string(), image(1 << 20, 3));
    files.insert("os.img.bmap".to_string(), bad);
    let b = Behaviour {
        ranges: true,
        drops: Arc::default(),
        requests: Arc::default(),
    };
    let srv = Server::start(files, b);
    // An existing destination (flash may refuse to create files), left as it was.
    let dst = dir.path().join("out");
    std::fs::write(&dst, b"keep").unwrap();
    let o = FlashOptions {
        bmap: BmapChoice::Auto,
        ..opts()
    };
    let cancelled = || {
        let c = sparsekit_io::Cancel::new();
        c.cancel();
        Control::with_cancel(c)
    };
    for src in [img.to_str().unwrap().to_string(), srv.url("os.img")] {
        let dsts = std::slice::from_ref(&dst);
        let e = flash(&src, dsts, &o, None, &mut Control::none()).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_BMAP_INVALID", "{src}: {e}");
        let e = flash(&src, dsts, &o, None, &mut cancelled()).unwrap_err();
        assert!(matches!(e, Error::Aborted), "{src}: {e}");
    }
    let copts = sparsekit_bmap::CopyOptions {
        bmap: BmapChoice::Auto,
        ..Default::default()
    };
    let url = srv.url("os.img");
    let e = sparsekit_flash::bmap_copy(&url, &dst, &copts, &o.http, &o.opener, &mut cancelled())
        .unwrap_err();
    assert!(matches!(e, Error::Aborted), "{e}");
    assert_eq!(std::fs::read(&dst).unwrap(), b"keep");
}

fn zip_cmd(dir: &Path, args: &[&str]) -> bool {
    match std::process::Command::new("zip")
        .current_dir(dir)
        .args(args)
        .output()
    {
        Ok(o) if o.status.success() => true,
        Ok(o) => panic!("zip {args:?}: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            eprintln!("SKIP zip tests: no zip command ({e})");
            false
        }
    }
}

#[test]
fn zip_deflate_stored_and_xz_inside() {
    let data = image(5 << 20, 8);
    let dir = files_dir();
    std::fs::write(dir.path().join("os.img"), &data).unwrap();
    std::fs::write(dir.path().join("README.txt"), b"small").unwrap();
    if !zip_cmd(
        dir.path(),
        &["-q", "-6", "deflate.zip", "os.img", "README.txt"],
    ) {
        return;
    }
    zip_cmd(
        dir.path(),
        &["-q", "-0", "stored.zip", "README.txt", "os.img"],
    );
    let mut cases = vec![
        ("deflate.zip", None),
        ("stored.zip", None),
        ("deflate.zip", Some("os.img")),
    ];
    if let Some(x) = compress("xz", &data) {
        std::fs::write(dir.path().join("os.img.xz"), x).unwrap();
        zip_cmd(dir.path(), &["-q", "-0", "xz.zip", "os.img.xz"]);
        cases.push(("xz.zip", None));
    }
    for (z, entry) in cases {
        let dst = dir.path().join(format!("{z}.out"));
        let o = FlashOptions {
            zip_entry: entry.map(String::from),
            ..opts()
        };
        let r = flash(
            dir.path().join(z).to_str().unwrap(),
            std::slice::from_ref(&dst),
            &o,
            None,
            &mut Control::none(),
        )
        .unwrap_or_else(|e| panic!("{z}: {e}"));
        ok(&r.destinations[0]);
        assert!(r.zip_entry.as_deref().unwrap().starts_with("os.img"), "{z}");
        assert!(std::fs::read(&dst).unwrap() == data, "{z}");
    }
    let o = FlashOptions {
        zip_entry: Some("missing".into()),
        ..opts()
    };
    let e = flash(
        dir.path().join("deflate.zip").to_str().unwrap(),
        &[dir.path().join("m")],
        &o,
        None,
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_ZIP", "{e}");
    // A truncated archive: a coded error, no panic.
    let z = std::fs::read(dir.path().join("deflate.zip")).unwrap();
    for cut in [10, z.len() / 2, z.len() - 10] {
        let p = dir.path().join("cut.zip");
        std::fs::write(&p, &z[..cut]).unwrap();
        let e = flash(
            p.to_str().unwrap(),
            &[dir.path().join("c")],
            &opts(),
            None,
            &mut Control::none(),
        )
        .unwrap_err();
        assert!(e.code().starts_with("ERR_SPARSEKIT_"), "{e}");
    }
}

/// Only-changed re-flash with the destination read ahead past the page cache (`O_DIRECT`
/// on a loop device and on a file on disk): only the differing 4 KiB blocks are written
/// (changes in the first MiB, which is written last, across a chunk boundary and in the
/// image's last, partial block), the destination then equals the image, the bytes past it
/// are untouched, and `verify` (the same read-ahead) agrees and names the first difference.
#[test]
fn only_changed_reads_ahead_and_writes_only_differing_blocks() {
    const MIB: usize = 1 << 20;
    let Some(l) = Loop::new(
        8 * MIB as u64,
        Some(0xAA),
        false,
        "only_changed_reads_ahead_and_writes_only_differing_blocks",
    ) else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("sparsekit-flash-oc-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let size = 5 * MIB + 1234;
    let a = pattern(size, 41);
    let img_a = dir.path().join("a.img");
    std::fs::write(&img_a, &a).unwrap();
    let file = dir.path().join("dest.img");
    let dsts = vec![l.dev.clone(), file.clone()];
    let r = flash(
        img_a.to_str().unwrap(),
        &dsts,
        &opts(),
        None,
        &mut Control::none(),
    )
    .unwrap();
    r.destinations.iter().for_each(ok);

    let mut b = a.clone();
    // (offset, bytes changed): in the first MiB twice, just past it, across the 3 MiB
    // chunk boundary, and the last byte of the partial last block.
    for (at, n) in [
        (100, 1),
        (600_000, 3),
        (MIB + 5, 1),
        (3 * MIB - 2, 4),
        (size - 1, 1),
    ] {
        for x in &mut b[at..at + n] {
            *x ^= 0x5a;
        }
    }
    let img_b = dir.path().join("b.img");
    std::fs::write(&img_b, &b).unwrap();
    let changed = FlashOptions {
        only_changed: true,
        ..opts()
    };
    let r = flash(
        img_b.to_str().unwrap(),
        &dsts,
        &changed,
        None,
        &mut Control::none(),
    )
    .unwrap();
    // Blocks 0, 146 and 256, 767 and 768, and the last partial block's 1234 bytes.
    let expect = 5 * 4096 + 1234;
    for d in &r.destinations {
        ok(d);
        assert_eq!(d.bytes_written, expect, "{}", d.path.display());
        assert_eq!(
            d.bytes_skipped,
            size as u64 - expect,
            "{}",
            d.path.display()
        );
    }
    let dev = l.read(8 * MIB);
    assert!(dev[..size] == b[..], "the device differs from the image");
    assert!(
        dev[size..].iter().all(|&x| x == 0xAA),
        "bytes past the image"
    );
    assert!(
        std::fs::read(&file).unwrap() == b,
        "the file differs from the image"
    );

    // Flashed again with the same image: nothing written.
    let r = flash(
        img_b.to_str().unwrap(),
        &dsts,
        &changed,
        None,
        &mut Control::none(),
    )
    .unwrap();
    for d in &r.destinations {
        ok(d);
        assert_eq!(d.bytes_written, 0, "{}", d.path.display());
    }

    // verify compares through the same read-ahead.
    for d in &dsts {
        sparsekit_flash::verify(img_b.to_str().unwrap(), d, &opts(), &mut Control::none()).unwrap();
        match sparsekit_flash::verify(img_a.to_str().unwrap(), d, &opts(), &mut Control::none()) {
            Err(Error::Differs { start, end, .. }) => assert_eq!((start, end), (0, 4096)),
            other => panic!("{}: {other:?}", d.display()),
        }
    }
}
