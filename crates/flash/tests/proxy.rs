//! The proxy environment: a CONNECT proxy on loopback, started here, counts the tunnels it
//! opens; `http_proxy`/`https_proxy`/`all_proxy` route through it and `no_proxy` keeps
//! hosts off it, as curl does. One test in its own binary: it sets process-wide variables.

use sparsekit_testfs::http as common;

use sparsekit_io::ErrorInfo;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{image, Server};
use sparsekit_flash::{flash, FlashOptions, HttpOptions};
use sparsekit_http::proxy_for;
use sparsekit_http::HttpStorage;
use sparsekit_io::{Cancel, Control, Storage};

/// A CONNECT-only proxy: records each target and tunnels bytes both ways.
fn proxy() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let seen = s2.clone();
            std::thread::spawn(move || tunnel(c, &seen));
        }
    });
    (port, seen)
}

fn tunnel(c: TcpStream, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut r = BufReader::new(c.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
    }
    let mut w = c.try_clone()?;
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    seen.lock().unwrap().push(format!("{method} {target}"));
    if method != "CONNECT" {
        write!(
            w,
            "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    }
    let up = TcpStream::connect(target)?;
    write!(w, "HTTP/1.1 200 Connection established\r\n\r\n")?;
    let (mut up_r, mut up_w) = (up.try_clone()?, up);
    let buffered = r.buffer().to_vec();
    up_w.write_all(&buffered)?;
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut r.into_inner(), &mut up_w);
        let _ = up_w.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut up_r, &mut w);
    let _ = w.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
    Ok(())
}

fn clear() {
    for v in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        // SAFETY: this binary's only test; nothing else reads the environment meanwhile.
        unsafe { std::env::remove_var(v) };
    }
}

fn set(k: &str, v: &str) {
    // SAFETY: as in `clear`.
    unsafe { std::env::set_var(k, v) };
}

#[test]
fn proxy_environment_is_honoured() {
    clear();
    let data = image(3 << 20, 21);
    let srv = Server::start(HashMap::from([("os.img".to_string(), data.clone())]));
    let (pport, seen) = proxy();
    let purl = format!("http://127.0.0.1:{pport}");
    let url = srv.url("os.img");
    let dir = tempfile::tempdir().unwrap();
    let http = HttpOptions {
        retries: 2,
        retry_delay: Duration::from_millis(5),
        ..Default::default()
    };
    let opts = FlashOptions {
        http: http.clone(),
        opener: std::sync::Arc::new(sparsekit_flash::Files { create_files: true }),
        ..Default::default()
    };
    let fetch = |name: &str| {
        let dst = dir.path().join(name);
        let r = flash(
            &url,
            std::slice::from_ref(&dst),
            &opts,
            None,
            &mut Control::none(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(r.destinations[0].error.is_none(), "{name}");
        assert!(std::fs::read(&dst).unwrap() == data, "{name}");
    };
    let tunnels = || seen.lock().unwrap().len();
    let target = format!("CONNECT 127.0.0.1:{}", srv.port);

    // No variables: direct.
    fetch("direct");
    assert_eq!(tunnels(), 0);

    // http_proxy for an http URL: every request (the image and its URL.bmap probe) goes
    // through the proxy, to the right target.
    set("http_proxy", &purl);
    fetch("via-http-proxy");
    let n = tunnels();
    assert!(n >= 2, "{:?}", seen.lock().unwrap());
    assert!(seen.lock().unwrap().iter().all(|s| s == &target));
    // Range reads too.
    let s = HttpStorage::open(&url, &http, Cancel::new()).unwrap();
    let mut b = vec![0u8; 1 << 20];
    s.read_exact_at(&mut b, 1 << 20).unwrap();
    assert!(b == data[1 << 20..2 << 20]);
    assert!(tunnels() > n);

    // no_proxy naming the host (among others, with spaces) keeps it direct.
    set("no_proxy", "example.com, 127.0.0.1");
    let n = tunnels();
    fetch("no-proxy-host");
    assert_eq!(tunnels(), n);
    // ...as does the host with its port, or `*`; another port or host does not.
    set("no_proxy", &format!("127.0.0.1:{}", srv.port));
    fetch("no-proxy-port");
    assert_eq!(tunnels(), n);
    set("no_proxy", "*");
    fetch("no-proxy-star");
    assert_eq!(tunnels(), n);
    set("no_proxy", "127.0.0.1:1,.example.com");
    fetch("no-proxy-other");
    assert!(tunnels() > n);

    // https_proxy is for https URLs only (curl's rule): an http URL goes direct...
    clear();
    set("https_proxy", &purl);
    let n = tunnels();
    fetch("https-proxy-only");
    assert_eq!(tunnels(), n);
    // ...and all_proxy covers both.
    set("all_proxy", &purl);
    fetch("all-proxy");
    assert!(tunnels() > n);

    // The choice itself.
    clear();
    set("https_proxy", "http://p:3128");
    set("HTTP_PROXY", "http://q:8080");
    assert_eq!(
        proxy_for("https://a.example/x").as_deref(),
        Some("http://p:3128")
    );
    assert_eq!(
        proxy_for("http://a.example/x").as_deref(),
        Some("http://q:8080")
    );
    set("no_proxy", ".example.org");
    assert_eq!(proxy_for("https://a.example.org/x"), None);
    assert_eq!(proxy_for("https://example.org/x"), None);
    assert!(proxy_for("https://badexample.org/x").is_some());
    set("no_proxy", "[::1]");
    assert_eq!(proxy_for("https://[::1]:8443/x"), None);
    clear();
    assert_eq!(proxy_for("https://a.example/x"), None);

    // A proxy that is not there: the coded HTTP error names the URL.
    set("http_proxy", "http://127.0.0.1:1");
    let e = flash(
        &url,
        &[dir.path().join("x")],
        &opts,
        None,
        &mut Control::none(),
    )
    .unwrap_err();
    assert!(e.code().starts_with("ERR_SPARSEKIT_HTTP"), "{e}");
    clear();
}
