//! A small HTTP/1.1 file server on loopback for the remote-source tests: `Range:
//! bytes=A-B` and `bytes=A-` (when ranges are on), and hostile behaviours switched on per
//! test (connections dropped mid-body, a Content-Length larger than what is sent, a wrong
//! Content-Range).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Behaviour {
    /// Answer range requests with 206 (else 200 and the whole file).
    pub ranges: AtomicBool,
    /// Ranged answers still to cut after half their body (the connection is closed).
    pub drops: AtomicU64,
    /// Ranged answers still to announce a Content-Length of half the range (the whole
    /// range is sent anyway).
    pub lies: AtomicU64,
    /// Answer every range request with a Content-Range one byte off.
    pub bad_range: AtomicBool,
    /// Requests seen, as "PATH RANGE".
    pub requests: Mutex<Vec<String>>,
}

pub struct Server {
    pub port: u16,
    pub b: Arc<Behaviour>,
}

impl Server {
    pub fn start(files: HashMap<String, Vec<u8>>) -> Server {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let files = Arc::new(files);
        let b = Arc::new(Behaviour::default());
        b.ranges.store(true, Ordering::SeqCst);
        let bb = b.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let files = files.clone();
                let b = bb.clone();
                std::thread::spawn(move || {
                    let _ = handle(s, &files, &b);
                });
            }
        });
        Server { port, b }
    }

    pub fn url(&self, p: &str) -> String {
        format!("http://127.0.0.1:{}/{p}", self.port)
    }

    pub fn count(&self, path: &str) -> usize {
        self.b
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.split(' ').next() == Some(path))
            .count()
    }
}

fn take(c: &AtomicU64) -> bool {
    c.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
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
    let mut range: Option<(u64, Option<u64>)> = None;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        let l = h.to_ascii_lowercase();
        if let Some(v) = l.strip_prefix("range: bytes=") {
            let (a, e) = v.trim().split_once('-').unwrap_or((v.trim(), ""));
            if let Ok(a) = a.parse() {
                range = Some((a, e.parse().ok()));
            }
        }
    }
    b.requests.lock().unwrap().push(format!("{path} {range:?}"));
    let mut w = s;
    let Some(data) = files.get(&path) else {
        write!(
            w,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    };
    let len = data.len() as u64;
    let (start, end) = match range {
        Some((a, e)) if b.ranges.load(Ordering::SeqCst) && a < len => {
            let e = e.unwrap_or(len - 1).min(len - 1);
            let shown = if b.bad_range.load(Ordering::SeqCst) {
                a + 1
            } else {
                a
            };
            let cl = if take(&b.lies) {
                (e + 1 - a).div_ceil(2)
            } else {
                e + 1 - a
            };
            write!(
                w,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {shown}-{e}/{len}\r\nContent-Length: {cl}\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n"
            )?;
            (a, e + 1)
        }
        _ => {
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n"
            )?;
            (0, len)
        }
    };
    let stop = if range.is_some() && end - start > 1 && take(&b.drops) {
        start + (end - start) / 2
    } else {
        end
    };
    w.write_all(&data[start as usize..stop as usize])?;
    w.flush()?;
    w.shutdown(std::net::Shutdown::Both)
}

/// Data with runs of random bytes, zeros and holes: `len` bytes, 64 KiB runs.
pub fn image(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            if (i / 65536) % 3 == 1 {
                return 0;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Run a command; `None` (and a printed reason) when it is missing or fails.
pub fn cmd(prog: &str, args: &[&str]) -> Option<()> {
    match std::process::Command::new(prog).args(args).output() {
        Ok(o) if o.status.success() => Some(()),
        Ok(o) => {
            eprintln!(
                "{prog} {args:?} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("no {prog}: {e}");
            None
        }
    }
}

/// Allocated bytes of a file.
pub fn allocated(p: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().blocks() * 512
}
