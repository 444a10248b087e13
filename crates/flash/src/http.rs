//! HTTP(S) sources: a body read as a stream (never stored in a temporary file) that resumes
//! after a dropped connection with a range request (RFC 9110 §14.2) from the byte where it
//! stopped, guarded by `If-Range` so a changed file is never spliced onto the old one.
//!
//! Built on ureq (redirects, per-read time-outs; the proxy environment chosen per URL
//! scheme as curl does, see [`proxy_for`]) with rustls; trusted roots are the system's CA store
//! (rustls-native-certs: `/etc/ssl/certs`, `SSL_CERT_FILE`, `SSL_CERT_DIR`) plus any CA
//! the caller passes in PEM.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sparsekit_io::Cancel;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::Agent;

use crate::{Error, Result};

/// Largest `URL.bmap` read (the bmap crate's own limit).
const MAX_BMAP: u64 = sparsekit_bmap::MAX_BMAP_SIZE;
/// Resumptions allowed over a whole download, however much progress each made: a bound
/// against a server that drops every connection after a few bytes.
const MAX_RESUMES: u32 = 1000;

/// How HTTP(S) sources are fetched.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Extra trusted CA certificates in PEM (a private CA, a test's self-signed one),
    /// added to the system's store.
    pub ca_pem: Option<Vec<u8>>,
    /// Attempts to resume after a failure before giving up with
    /// [`Error::HttpInterrupted`]; the count starts again whenever data arrives.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one, at most 5 s.
    pub retry_delay: Duration,
    /// Time-out for connecting and for each read of the socket (a stalled connection
    /// counts as dropped and is resumed).
    pub timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            ca_pem: None,
            retries: 5,
            retry_delay: Duration::from_millis(500),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Whether `s` is an `http://` or `https://` URL.
pub fn is_url(s: &str) -> bool {
    let l = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

/// The `If-Range` validator of an answer: a strong ETag, else Last-Modified.
pub(crate) fn validator(resp: &ureq::http::Response<ureq::Body>) -> Option<String> {
    header(resp, "etag")
        .filter(|e| !e.starts_with("W/"))
        .or_else(|| header(resp, "last-modified"))
}

/// The proxy for `url` from the environment, as curl chooses it: `https_proxy` (or
/// `HTTPS_PROXY`) for https URLs, `http_proxy` (or `HTTP_PROXY`) for http ones, else
/// `all_proxy` (`ALL_PROXY`); none when the host matches `no_proxy` (`NO_PROXY`: a
/// comma-separated list of host names, domain suffixes with or without a leading dot,
/// optional `:port`, or `*`). An empty variable counts as unset.
pub fn proxy_for(url: &str) -> Option<String> {
    let var = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
    };
    let lower = url.to_ascii_lowercase();
    let scheme_var = if lower.starts_with("https://") {
        var(&["https_proxy", "HTTPS_PROXY"])
    } else {
        var(&["http_proxy", "HTTP_PROXY"])
    };
    let proxy = scheme_var.or_else(|| var(&["all_proxy", "ALL_PROXY"]))?;
    let (host, port) = host_port(&lower)?;
    if let Some(list) = var(&["no_proxy", "NO_PROXY"]) {
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry == "*" {
                return None;
            }
            let (name, eport) = match entry.rsplit_once(':') {
                Some((n, p)) if !n.contains(':') || n.ends_with(']') => (n, p.parse().ok()),
                _ => (entry, None),
            };
            let name = name.trim_start_matches("*.").trim_start_matches('.');
            let name = name.trim_start_matches('[').trim_end_matches(']');
            let host_ok = host == name
                || (host.len() > name.len()
                    && host.ends_with(name)
                    && host.as_bytes()[host.len() - name.len() - 1] == b'.');
            if host_ok && eport.is_none_or(|p: u16| p == port) {
                return None;
            }
        }
    }
    Some(proxy)
}

/// The host (lower case, without brackets) and port of an http(s) URL.
fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let default = if scheme == "https" { 443 } else { 80 };
    if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(default);
        return Some((h.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default)),
    }
}

/// The ureq agent for fetching `url` with `opts`: system roots plus the caller's CA,
/// redirects followed, statuses inspected by us (not turned into errors), and the proxy
/// of [`proxy_for`] (an HTTP proxy is used with `CONNECT` for both schemes).
pub fn agent_for(opts: &HttpOptions, url: &str) -> Result<Agent> {
    build_agent(opts, proxy_for(url))
}

fn build_agent(opts: &HttpOptions, proxy: Option<String>) -> Result<Agent> {
    let proxy = match proxy {
        None => None,
        Some(p) => Some(ureq::Proxy::new(&p).map_err(|e| Error::InvalidArg {
            name: "proxy",
            value: format!("{p}: {e}"),
        })?),
    };
    let mut roots: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|der| Certificate::from_der(der).to_owned())
        .collect();
    if let Some(pem) = &opts.ca_pem {
        let before = roots.len();
        for item in ureq::tls::parse_pem(pem) {
            match item {
                Ok(PemItem::Certificate(c)) => roots.push(c),
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::InvalidArg {
                        name: "ca",
                        value: format!("not a PEM certificate: {e}"),
                    })
                }
            }
        }
        if roots.len() == before {
            return Err(Error::InvalidArg {
                name: "ca",
                value: "no PEM certificate in it".into(),
            });
        }
    }
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .build();
    let config = Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .max_redirects(10)
        .user_agent(concat!("sparsekit/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(opts.timeout))
        .timeout_recv_response(Some(opts.timeout))
        .timeout_per_read(Some(opts.timeout))
        .proxy(proxy)
        .build();
    Ok(config.new_agent())
}

pub(crate) fn http_err(url: &str, e: ureq::Error) -> Error {
    Error::Http {
        url: url.to_string(),
        status: None,
        message: e.to_string(),
    }
}

pub(crate) fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Fetch a small document (a bmap): `Ok(None)` for 404/410 and other 4xx statuses.
pub fn fetch_small(agent: &Agent, url: &str, max: u64) -> Result<Option<Vec<u8>>> {
    let resp = agent.get(url).call().map_err(|e| http_err(url, e))?;
    let status = resp.status().as_u16();
    if (400..500).contains(&status) {
        return Ok(None);
    }
    if status != 200 {
        return Err(Error::Http {
            url: url.into(),
            status: Some(status),
            message: "unexpected status".into(),
        });
    }
    let mut out = Vec::new();
    resp.into_body()
        .into_reader()
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Http {
            url: url.into(),
            status: None,
            message: e.to_string(),
        })?;
    if out.len() as u64 > max {
        return Err(Error::Http {
            url: url.into(),
            status: None,
            message: format!("larger than {max} bytes"),
        });
    }
    Ok(Some(out))
}

/// The bmap at `URL.bmap`, when the server has one (its parsing stops when `cancel` is).
pub fn find_bmap(
    agent: &Agent,
    url: &str,
    cancel: &Cancel,
) -> Result<Option<(sparsekit_bmap::Bmap, String)>> {
    let bmap_url = format!("{url}.bmap");
    match fetch_small(agent, &bmap_url, MAX_BMAP)? {
        None => Ok(None),
        Some(bytes) => Ok(Some((
            sparsekit_bmap::Bmap::parse_with(&bytes, cancel)?,
            bmap_url,
        ))),
    }
}

/// An HTTP(S) body as a [`Read`] that resumes after failures with range requests.
///
/// Its read errors carry an [`Error`] inside the `io::Error`.
pub struct HttpReader {
    agent: Agent,
    url: String,
    body: Option<ureq::BodyReader<'static>>,
    pos: u64,
    len: Option<u64>,
    /// `If-Range` validator: a strong ETag, else Last-Modified.
    validator: Option<String>,
    opts: HttpOptions,
    cancel: Cancel,
    resumes: u32,
    failures: u32,
    received: Arc<AtomicU64>,
}

impl HttpReader {
    /// Send the first GET of `url`; anything but 200 fails with [`Error::Http`].
    pub fn open(agent: Agent, url: &str, opts: &HttpOptions, cancel: Cancel) -> Result<Self> {
        let resp = agent.get(url).call().map_err(|e| http_err(url, e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(Error::Http {
                url: url.into(),
                status: Some(status),
                message: resp
                    .status()
                    .canonical_reason()
                    .unwrap_or("unexpected status")
                    .into(),
            });
        }
        let len = header(&resp, "content-length").and_then(|v| v.trim().parse().ok());
        let validator = validator(&resp);
        Ok(HttpReader {
            agent,
            url: url.to_string(),
            body: Some(resp.into_body().into_reader()),
            pos: 0,
            len,
            validator,
            opts: opts.clone(),
            cancel,
            resumes: 0,
            failures: 0,
            received: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The body's length, from `Content-Length`.
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// Whether the length is known to be 0.
    pub fn is_empty(&self) -> bool {
        self.len == Some(0)
    }

    /// Where the reader counts bytes received (for progress from another thread).
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.received.clone()
    }

    /// Resumptions made so far.
    pub fn resumes(&self) -> u32 {
        self.resumes
    }

    /// One range request from `self.pos`; `Err` with the reason when it cannot resume.
    fn resume_once(&mut self) -> std::result::Result<(), String> {
        let mut req = self
            .agent
            .get(&self.url)
            .header("Range", format!("bytes={}-", self.pos));
        if let Some(v) = &self.validator {
            req = req.header("If-Range", v);
        }
        let resp = req.call().map_err(|e| e.to_string())?;
        match resp.status().as_u16() {
            206 => {
                let cr = header(&resp, "content-range").unwrap_or_default();
                // "bytes START-END/TOTAL"
                let start = cr
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if start != Some(self.pos) {
                    return Err(format!(
                        "the server answered the range request from byte {} with '{cr}'",
                        self.pos
                    ));
                }
                self.body = Some(resp.into_body().into_reader());
                Ok(())
            }
            200 => Err(format!(
                "the server does not support range requests (it answered 'Range: bytes={}-' \
                 with the whole file, status 200), or the file changed",
                self.pos
            )),
            s => Err(format!("range request answered with status {s}")),
        }
    }

    fn sleep(&self, d: Duration) -> bool {
        let step = Duration::from_millis(25);
        let mut left = d;
        while !left.is_zero() {
            if self.cancel.is_cancelled() {
                return false;
            }
            let s = left.min(step);
            std::thread::sleep(s);
            left -= s;
        }
        !self.cancel.is_cancelled()
    }

    /// After a failure at `self.pos`: retry range requests until one works or
    /// `retries` attempts in a row brought no data.
    fn recover(&mut self, first: String) -> io::Result<()> {
        self.body = None;
        let mut last = first;
        loop {
            if self.failures >= self.opts.retries || self.resumes >= MAX_RESUMES {
                return Err(io::Error::other(crate::Wrapped(Error::HttpInterrupted {
                    url: self.url.clone(),
                    offset: self.pos,
                    attempts: self.failures,
                    message: last,
                })));
            }
            let delay = self
                .opts
                .retry_delay
                .saturating_mul(1 << self.failures.min(8))
                .min(Duration::from_secs(5));
            if !self.sleep(delay) {
                return Err(io::Error::other(crate::Wrapped(Error::Aborted)));
            }
            self.failures += 1;
            self.resumes += 1;
            match self.resume_once() {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
    }
}

impl Read for HttpReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.cancel.is_cancelled() {
                return Err(io::Error::other(crate::Wrapped(Error::Aborted)));
            }
            if self.len.is_some_and(|l| self.pos >= l) {
                return Ok(0);
            }
            let r = match &mut self.body {
                Some(b) => b.read(buf),
                None => Err(io::Error::other("no connection")),
            };
            let failure = match r {
                Ok(0) if self.len.is_none() => return Ok(0),
                Ok(0) => format!(
                    "the connection closed after {} of {} bytes",
                    self.pos,
                    self.len.unwrap_or(0)
                ),
                Ok(n) => {
                    self.failures = 0;
                    self.pos += n as u64;
                    self.received.store(self.pos, Ordering::Relaxed);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => e.to_string(),
            };
            if self.len.is_none() {
                // Without a length there is no telling how much is missing: no resume.
                return Err(io::Error::other(crate::Wrapped(Error::HttpInterrupted {
                    url: self.url.clone(),
                    offset: self.pos,
                    attempts: 0,
                    message: format!("{failure} (no Content-Length, so no resume)"),
                })));
            }
            self.recover(failure)?;
        }
    }
}
