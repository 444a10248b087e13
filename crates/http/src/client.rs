//! HTTP(S) sources: a body read as a stream (never stored in a temporary file) that resumes
//! after a dropped connection with a range request (RFC 9110 §14.2) from the byte where it
//! stopped, guarded by `If-Range` so a changed file is never spliced onto the old one.
//!
//! Built on ureq (redirects, per-read time-outs; the proxy environment chosen per URL
//! scheme as curl does, see [`proxy_for`]) with rustls; trusted roots are the system's CA store
//! (rustls-native-certs: `/etc/ssl/certs`, `SSL_CERT_FILE`, `SSL_CERT_DIR`) plus any CA
//! the caller passes in PEM.

use std::cell::Cell;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sparsekit_io::Cancel;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, DefaultConnector, NextTimeout, Transport,
};
use ureq::Agent;

use crate::error::{Error, Result};

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
    /// Overall deadline for fetching `URL.bmap` (all attempts included): a server that
    /// trickles it in fails with [`Error::Http`] once it has passed.
    pub bmap_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            ca_pem: None,
            retries: 5,
            retry_delay: Duration::from_millis(500),
            timeout: Duration::from_secs(30),
            bmap_timeout: Duration::from_secs(60),
        }
    }
}

/// Whether `s` is an `http://` or `https://` URL.
pub fn is_url(s: &str) -> bool {
    let l = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

/// What identifies the version of a file an answer came from: its ETag and
/// Last-Modified.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

impl Validators {
    pub(crate) fn of(resp: &ureq::http::Response<ureq::Body>) -> Self {
        Validators {
            etag: header(resp, "etag"),
            last_modified: header(resp, "last-modified"),
        }
    }

    /// The `If-Range` validator: a strong ETag, else Last-Modified.
    pub(crate) fn if_range(&self) -> Option<&str> {
        self.etag
            .as_deref()
            .filter(|e| !e.starts_with("W/"))
            .or(self.last_modified.as_deref())
    }

    /// Whether there is anything to tell versions apart by.
    pub(crate) fn is_some(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }

    /// How `later` (a later answer for the same URL) shows another version of the file,
    /// if it does: an ETag or Last-Modified that differs from this one's (a validator an
    /// answer leaves out is not compared).
    pub(crate) fn changed(&self, later: &Validators) -> Option<String> {
        if let (Some(a), Some(b)) = (&self.etag, &later.etag) {
            if a != b {
                return Some(format!("its ETag changed from {a} to {b}"));
            }
        }
        if let (Some(a), Some(b)) = (&self.last_modified, &later.last_modified) {
            if a != b {
                return Some(format!("its Last-Modified changed from '{a}' to '{b}'"));
            }
        }
        None
    }
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`) as numbers.
pub(crate) fn content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let r = v.trim().strip_prefix("bytes ")?;
    let (span, total) = r.split_once('/')?;
    let (s, e) = span.split_once('-')?;
    let (s, e) = (s.trim().parse().ok()?, e.trim().parse().ok()?);
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (s <= e && total.is_none_or(|t| e < t)).then_some((s, e, total))
}

/// `bytes */TOTAL` of a 416 answer.
pub(crate) fn unsatisfied_total(v: &str) -> Option<u64> {
    v.trim().strip_prefix("bytes */")?.trim().parse().ok()
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

/// An HTTP(S) client for one operation: a ureq agent ([`client_for`]) whose connections
/// are shut down as soon as its [`Cancel`] token fires (a watcher thread looks every
/// [`ABORT_POLL`]), so an abort interrupts a stalled answer, a trickling body or a TLS
/// handshake at once instead of after the per-read time-out. Clones share the agent and
/// the watcher; the watcher stops when the last clone is dropped.
#[derive(Clone)]
pub struct Client {
    agent: Agent,
    cancel: Cancel,
    _watch: Arc<Watch>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// The ureq agent.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The cancellation token that interrupts it.
    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }
}

/// How often the abort watcher of a [`Client`] looks at its token.
pub const ABORT_POLL: Duration = Duration::from_millis(20);

struct Watch {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(agent: Agent, cancel: Cancel) -> Watch {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sparsekit-http-abort".into())
            .spawn(move || {
                let (m, cv) = &*s;
                let mut stopped = m.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if *stopped {
                        return;
                    }
                    if cancel.is_cancelled() {
                        drop(stopped);
                        agent.shutdown();
                        return;
                    }
                    stopped = cv
                        .wait_timeout(stopped, ABORT_POLL)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            })
            .ok();
        Watch { stop, thread }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let (m, cv) = &*self.stop;
        *m.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

thread_local! {
    /// Set when a read of a connection on this thread ended with a reset, an abort or
    /// (TLS) a close without `close_notify`: ureq reports those as the end of a body that
    /// has no Content-Length, which [`HttpReader`] must not take for the end of the file.
    static CUT: Cell<bool> = const { Cell::new(false) };
}

/// The last transport of our connector chain: records abnormal closes in [`CUT`].
#[derive(Debug)]
struct CutWatch;

impl Connector<Box<dyn Transport>> for CutWatch {
    type Out = CutTransport;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<Box<dyn Transport>>,
    ) -> std::result::Result<Option<CutTransport>, ureq::Error> {
        Ok(chained.map(CutTransport))
    }
}

#[derive(Debug)]
struct CutTransport(Box<dyn Transport>);

impl Transport for CutTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.0.buffers()
    }

    fn transmit_output(
        &mut self,
        amount: usize,
        timeout: NextTimeout,
    ) -> std::result::Result<(), ureq::Error> {
        self.0.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> std::result::Result<bool, ureq::Error> {
        let r = self.0.await_input(timeout);
        if let Err(ureq::Error::Io(e)) = &r {
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
            ) {
                CUT.with(|c| c.set(true));
            }
        }
        r
    }

    fn is_open(&mut self) -> bool {
        self.0.is_open()
    }

    fn is_tls(&self) -> bool {
        self.0.is_tls()
    }
}

/// The [`Client`] for fetching `url` with `opts`, interrupted by `cancel`: system roots
/// plus the caller's CA, redirects to http(s) followed (at most 10), statuses inspected
/// by us (not turned into errors), and the proxy of [`proxy_for`] (an HTTP proxy is
/// used with `CONNECT` for both schemes; SOCKS proxies are refused).
pub fn client_for(opts: &HttpOptions, url: &str, cancel: &Cancel) -> Result<Client> {
    let agent = build_agent(opts, proxy_for(url))?;
    Ok(Client {
        _watch: Arc::new(Watch::start(agent.clone(), cancel.clone())),
        agent,
        cancel: cancel.clone(),
    })
}

fn build_agent(opts: &HttpOptions, proxy: Option<String>) -> Result<Agent> {
    let proxy = match proxy {
        None => None,
        Some(p) => {
            let proxy = ureq::Proxy::new(&p).map_err(|e| Error::InvalidArg {
                name: "proxy",
                value: format!("{p}: {e}"),
            })?;
            if !matches!(
                proxy.protocol(),
                ureq::ProxyProtocol::Http | ureq::ProxyProtocol::Https
            ) {
                return Err(Error::Unsupported {
                    what: format!("SOCKS proxy '{p}' (only HTTP proxies are supported)"),
                });
            }
            Some(proxy)
        }
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
        // Redirects are followed by `get`, which refuses schemes other than http(s).
        .max_redirects(0)
        .user_agent(concat!("sparsekit/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(opts.timeout))
        .timeout_recv_response(Some(opts.timeout))
        .timeout_per_read(Some(opts.timeout))
        .proxy(proxy)
        .build();
    Ok(Agent::with_parts(
        config,
        DefaultConnector::new().chain(CutWatch),
        DefaultResolver::default(),
    ))
}

/// Redirects followed.
const MAX_REDIRECTS: u32 = 10;

/// `location` (a `Location` header) resolved against `base` (RFC 3986 §5.2, without
/// dot-segment removal, which servers do).
fn join(base: &str, location: &str) -> Option<String> {
    let loc = location.trim();
    if let Some((scheme, _)) = loc.split_once(':') {
        let mut chars = scheme.chars();
        if chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Some(loc.to_string());
        }
    }
    let (scheme, rest) = base.split_once("://")?;
    if loc.starts_with("//") {
        return Some(format!("{scheme}:{loc}"));
    }
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let origin = &base[..scheme.len() + 3 + auth_end];
    if loc.starts_with('/') {
        return Some(format!("{origin}{loc}"));
    }
    let path = rest[auth_end..].split(['?', '#']).next().unwrap_or("");
    if loc.is_empty() || loc.starts_with('#') {
        return Some(format!("{origin}{path}"));
    }
    if loc.starts_with('?') {
        return Some(format!("{origin}{path}{loc}"));
    }
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    Some(format!("{origin}{dir}{loc}"))
}

/// GET `url` with `headers`, following up to [`MAX_REDIRECTS`] redirects to http(s)
/// URLs (headers kept). A redirect that is not followed — to another scheme such as
/// `file://`, without a Location, or one too many — comes back as the 3xx answer, for
/// [`redirect_error`] to explain. `deadline` bounds the whole exchange, redirects and
/// body included.
pub(crate) fn get(
    client: &Client,
    url: &str,
    headers: &[(&str, &str)],
    deadline: Option<Instant>,
) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let mut at = url.to_string();
    let mut hops = 0;
    loop {
        let mut req = client.agent.get(&at);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = match deadline {
            Some(d) => req
                .config()
                .timeout_global(Some(d.saturating_duration_since(Instant::now())))
                .build()
                .call()?,
            None => req.call()?,
        };
        if !resp.status().is_redirection() || hops >= MAX_REDIRECTS {
            return Ok(resp);
        }
        let Some(next) = header(&resp, "location").and_then(|l| join(&at, &l)) else {
            return Ok(resp);
        };
        if !is_url(&next) {
            return Ok(resp);
        }
        at = next;
        hops += 1;
    }
}

/// Why a 3xx answer came back instead of being followed: a `Location` that is not
/// http(s) (`file://`, `ftp://`: refused), none, or too many redirects.
pub(crate) fn redirect_error(url: &str, resp: &ureq::http::Response<ureq::Body>) -> Error {
    let status = resp.status().as_u16();
    let message = match header(resp, "location") {
        None => "a redirect without a Location header".to_string(),
        Some(l) => {
            let scheme =
                join(url, &l).and_then(|u| u.split_once(':').map(|(s, _)| s.to_ascii_lowercase()));
            match scheme.as_deref() {
                Some(s) if s != "http" && s != "https" => {
                    format!(
                        "redirected to '{l}': the '{s}' scheme is refused (only http and https \
                         redirects are followed)"
                    )
                }
                _ => format!("more than {MAX_REDIRECTS} redirects (the last to '{l}')"),
            }
        }
    };
    Error::Http {
        url: url.into(),
        status: Some(status),
        message,
    }
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

/// Connection-level failures worth a retry (as opposed to a bad URL or a TLS refusal:
/// rustls reports an untrusted certificate as an `InvalidData` I/O error).
pub(crate) fn transient(e: &ureq::Error) -> bool {
    if let ureq::Error::Io(io) = e {
        return io.kind() != io::ErrorKind::InvalidData;
    }
    matches!(
        e,
        ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled
    )
}

/// Statuses worth a retry.
pub(crate) fn transient_status(s: u16) -> bool {
    s >= 500 || s == 408 || s == 429
}

/// The wait before retry number `n` (1-based): `retry_delay` doubled for each further
/// one, at most 5 s.
pub(crate) fn backoff(opts: &HttpOptions, n: u32) -> Duration {
    opts.retry_delay
        .saturating_mul(1 << n.saturating_sub(1).min(8))
        .min(Duration::from_secs(5))
}

/// Sleep `d`, waking for `cancel`: `Err(Aborted)` when cancelled.
pub(crate) fn pause(cancel: &Cancel, d: Duration) -> Result<()> {
    let step = Duration::from_millis(20);
    let end = Instant::now() + d;
    loop {
        cancel.check()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep(step.min(end - now));
    }
}

/// Bytes of a `URL.bmap` answer looked at before deciding it is not a bmap.
const SNIFF: usize = 512;

/// Fetch `URL.bmap`: `Ok(None)` when the server has none (404, 410 and the other 4xx
/// statuses: the image is flashed without a bmap).
///
/// Dropped connections, time-outs and 5xx/408/429 answers are retried under `opts`'
/// policy; the whole fetch has `opts.bmap_timeout` (60 s by default) and at most
/// `MAX_BMAP` (the bmap crate's `MAX_BMAP_SIZE`) bytes. A 200 answer that is not a bmap —
/// an HTML page (a "soft 404"), binary data such as the image itself, anything whose first byte is not `<` — is
/// [`sparsekit_bmap::Error::Invalid`] (`ERR_SPARSEKIT_BMAP_INVALID`) after reading at
/// most its first `SNIFF` (512) bytes: the flash fails rather than go on without the
/// checksums the server seemed to offer (pass no bmap to flash without it).
pub fn fetch_bmap(client: &Client, bmap_url: &str, opts: &HttpOptions) -> Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + opts.bmap_timeout;
    let late = || Error::Http {
        url: bmap_url.into(),
        status: None,
        message: format!(
            "the bmap did not arrive within {:?} (the deadline for fetching it)",
            opts.bmap_timeout
        ),
    };
    let mut failures = 0u32;
    loop {
        client.cancel.check()?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        let reason = match fetch_bmap_once(client, bmap_url, left) {
            Ok(v) => return Ok(v),
            Err(BmapAttempt::Fatal(e)) => return Err(e),
            Err(BmapAttempt::Late) => return Err(late()),
            Err(BmapAttempt::Retry(reason)) => reason,
        };
        if failures >= opts.retries {
            return Err(Error::HttpInterrupted {
                url: bmap_url.into(),
                offset: 0,
                attempts: failures,
                message: reason,
            });
        }
        failures += 1;
        pause(&client.cancel, backoff(opts, failures).min(left))?;
    }
}

enum BmapAttempt {
    Fatal(Error),
    Late,
    Retry(String),
}

fn fetch_bmap_once(
    client: &Client,
    url: &str,
    left: Duration,
) -> std::result::Result<Option<Vec<u8>>, BmapAttempt> {
    let classify = |e: ureq::Error| {
        if client.cancel.is_cancelled() {
            BmapAttempt::Fatal(Error::Aborted)
        } else if matches!(e, ureq::Error::Timeout(ureq::Timeout::Global)) {
            BmapAttempt::Late
        } else if transient(&e) {
            BmapAttempt::Retry(e.to_string())
        } else {
            BmapAttempt::Fatal(http_err(url, e))
        }
    };
    let resp = get(client, url, &[], Some(Instant::now() + left)).map_err(classify)?;
    let status = resp.status().as_u16();
    if transient_status(status) {
        return Err(BmapAttempt::Retry(format!("status {status}")));
    }
    if (400..500).contains(&status) {
        return Ok(None);
    }
    if resp.status().is_redirection() {
        return Err(BmapAttempt::Fatal(redirect_error(url, &resp)));
    }
    if status != 200 {
        return Err(BmapAttempt::Fatal(Error::Http {
            url: url.into(),
            status: Some(status),
            message: "unexpected status".into(),
        }));
    }
    let not_bmap = |what: String| {
        BmapAttempt::Fatal(Error::Bmap(sparsekit_bmap::Error::Invalid {
            path: Some(url.into()),
            line: 1,
            what: format!(
                "the server's answer for the bmap is not one: {what} (flash without a bmap \
                 to ignore it)"
            ),
        }))
    };
    let too_large =
        |n: String| not_bmap(format!("{n} bytes, more than a bmap may have ({MAX_BMAP})"));
    if let Some(n) = header(&resp, "content-length").and_then(|v| v.trim().parse::<u64>().ok()) {
        if n > MAX_BMAP {
            return Err(too_large(n.to_string()));
        }
    }
    let html_type = header(&resp, "content-type")
        .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("text/html"));
    let read_err = |e: io::Error| {
        if client.cancel.is_cancelled() {
            return BmapAttempt::Fatal(Error::Aborted);
        }
        match e.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>()) {
            Some(ureq::Error::Timeout(ureq::Timeout::Global)) => BmapAttempt::Late,
            _ => BmapAttempt::Retry(e.to_string()),
        }
    };
    let mut body = resp.into_body().into_reader();
    let mut out = Vec::new();
    (&mut body)
        .take(SNIFF as u64)
        .read_to_end(&mut out)
        .map_err(read_err)?;
    if client.cancel.is_cancelled() {
        return Err(BmapAttempt::Fatal(Error::Aborted));
    }
    let text = out.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&out);
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let text = &text[start..];
    let lower = String::from_utf8_lossy(&text[..text.len().min(64)]).to_ascii_lowercase();
    if text.first() != Some(&b'<') {
        let shown: String = String::from_utf8_lossy(&text[..text.len().min(16)])
            .chars()
            .map(|c| {
                if c.is_control() || c == '\u{fffd}' {
                    '.'
                } else {
                    c
                }
            })
            .collect();
        return Err(not_bmap(if text.is_empty() {
            "it is empty".into()
        } else {
            format!("it does not begin with '<' (it begins '{shown}'), so it is no XML")
        }));
    }
    if html_type || lower.starts_with("<!doctype html") || lower.starts_with("<html") {
        return Err(not_bmap("it is an HTML page".into()));
    }
    body.take(MAX_BMAP + 1 - out.len() as u64)
        .read_to_end(&mut out)
        .map_err(read_err)?;
    // An abort shuts the connection down, which may read as the end of the body.
    if client.cancel.is_cancelled() {
        return Err(BmapAttempt::Fatal(Error::Aborted));
    }
    if out.len() as u64 > MAX_BMAP {
        return Err(too_large("more than".into()));
    }
    Ok(Some(out))
}

/// The bmap at `URL.bmap`, when the server has one ([`fetch_bmap`]; its parsing stops
/// when the client's cancel token is cancelled).
pub fn find_bmap(
    client: &Client,
    url: &str,
    opts: &HttpOptions,
) -> Result<Option<(sparsekit_bmap::Bmap, String)>> {
    let bmap_url = format!("{url}.bmap");
    match fetch_bmap(client, &bmap_url, opts)? {
        None => Ok(None),
        Some(bytes) => Ok(Some((
            sparsekit_bmap::Bmap::parse_with(&bytes, client.cancel())
                .map_err(|e| Error::from(e.with_path(std::path::Path::new(&bmap_url))))?,
            bmap_url,
        ))),
    }
}

/// An HTTP(S) body as a [`Read`] that resumes after failures with range requests.
///
/// - The first request is retried like any other (a dropped connection, a time-out, a
///   5xx/408/429 status) under [`HttpOptions`]' bounded policy.
/// - A failure once data has arrived resumes with `Range: bytes=POS-`, guarded by
///   `If-Range`; every 206 answer must carry the first answer's ETag and Last-Modified
///   (when it sends them) and a `Content-Range` from POS with the same total, else the
///   file changed on the server: [`Error::HttpChanged`], nothing spliced.
/// - A body without Content-Length ends only with a clean close or the chunked
///   terminator: a reset (or a TLS close without `close_notify`) is an interruption,
///   resumed when the first answer had a validator to check the resumed one against.
///
/// Its read errors carry an [`Error`] inside the `io::Error`.
pub struct HttpReader {
    client: Client,
    url: String,
    body: Option<ureq::BodyReader<'static>>,
    pos: u64,
    len: Option<u64>,
    validators: Validators,
    opts: HttpOptions,
    resumes: u32,
    failures: u32,
    received: Arc<AtomicU64>,
}

/// What a request that did not work calls for.
enum Failed {
    /// Try again: the reason.
    Retry(String),
    /// Give up.
    Fatal(Error),
}

impl HttpReader {
    /// Send the first GET of `url` (retried under `opts`' policy); an answer other than
    /// 200 fails with [`Error::Http`].
    pub fn open(client: Client, url: &str, opts: &HttpOptions) -> Result<Self> {
        let mut r = HttpReader {
            client,
            url: url.to_string(),
            body: None,
            pos: 0,
            len: None,
            validators: Validators::default(),
            opts: opts.clone(),
            resumes: 0,
            failures: 0,
            received: Arc::new(AtomicU64::new(0)),
        };
        let mut failures = 0u32;
        loop {
            r.client.cancel.check()?;
            let reason = match r.first() {
                Ok(()) => return Ok(r),
                Err(Failed::Fatal(e)) => return Err(e),
                Err(Failed::Retry(reason)) => reason,
            };
            if failures >= r.opts.retries {
                return Err(Error::HttpInterrupted {
                    url: r.url.clone(),
                    offset: 0,
                    attempts: failures,
                    message: reason,
                });
            }
            failures += 1;
            pause(&r.client.cancel, backoff(&r.opts, failures))?;
        }
    }

    /// The first request.
    fn first(&mut self) -> std::result::Result<(), Failed> {
        let resp = match get(&self.client, &self.url, &[], None) {
            Ok(r) => r,
            Err(_) if self.client.cancel.is_cancelled() => {
                return Err(Failed::Fatal(Error::Aborted))
            }
            Err(e) if transient(&e) => return Err(Failed::Retry(e.to_string())),
            Err(e) => return Err(Failed::Fatal(http_err(&self.url, e))),
        };
        let status = resp.status().as_u16();
        if status == 200 {
            self.len = header(&resp, "content-length").and_then(|v| v.trim().parse().ok());
            self.validators = Validators::of(&resp);
            self.body = Some(resp.into_body().into_reader());
            return Ok(());
        }
        if transient_status(status) {
            return Err(Failed::Retry(format!("status {status}")));
        }
        if resp.status().is_redirection() {
            return Err(Failed::Fatal(redirect_error(&self.url, &resp)));
        }
        Err(Failed::Fatal(Error::Http {
            url: self.url.clone(),
            status: Some(status),
            message: resp
                .status()
                .canonical_reason()
                .unwrap_or("unexpected status")
                .into(),
        }))
    }

    /// The body's length, from `Content-Length` (or a resumed answer's `Content-Range`).
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

    fn changed(&self, message: String) -> Failed {
        Failed::Fatal(Error::HttpChanged {
            url: self.url.clone(),
            offset: self.pos,
            message,
        })
    }

    /// One request for the rest of the body from `self.pos`.
    fn resume_once(&mut self) -> std::result::Result<(), Failed> {
        let range = format!("bytes={}-", self.pos);
        let mut headers = Vec::new();
        if self.pos > 0 {
            headers.push(("Range", range.as_str()));
            if let Some(v) = self.validators.if_range() {
                headers.push(("If-Range", v));
            }
        }
        let resp = match get(&self.client, &self.url, &headers, None) {
            Ok(r) => r,
            Err(_) if self.client.cancel.is_cancelled() => {
                return Err(Failed::Fatal(Error::Aborted))
            }
            Err(e) => return Err(Failed::Retry(e.to_string())),
        };
        let status = resp.status().as_u16();
        let later = Validators::of(&resp);
        match status {
            206 if self.pos > 0 => {
                let cr = header(&resp, "content-range").unwrap_or_default();
                let Some((start, _, total)) = content_range(&cr) else {
                    return Err(Failed::Retry(format!(
                        "the server answered the range request from byte {} with \
                         Content-Range '{cr}'",
                        self.pos
                    )));
                };
                if start != self.pos {
                    return Err(Failed::Retry(format!(
                        "the server answered the range request from byte {} with '{cr}'",
                        self.pos
                    )));
                }
                if let Some(why) = self.validators.changed(&later) {
                    return Err(self.changed(format!(
                        "the file changed on the server while it was downloaded ({why}); \
                         the server ignored If-Range"
                    )));
                }
                match (self.len, total) {
                    (Some(l), Some(t)) if l != t => {
                        return Err(self.changed(format!(
                            "the file changed on the server while it was downloaded (its \
                             size is now {t} bytes, it was {l}: Content-Range '{cr}')"
                        )))
                    }
                    (None, Some(t)) => self.len = Some(t),
                    _ => {}
                }
                self.body = Some(resp.into_body().into_reader());
                Ok(())
            }
            200 => {
                if let Some(why) = self.validators.changed(&later) {
                    return Err(self.changed(format!(
                        "the file changed on the server while it was downloaded ({why})"
                    )));
                }
                if self.pos > 0 {
                    return Err(Failed::Retry(format!(
                        "the server does not support range requests (it answered \
                         'Range: bytes={}-' with the whole file, status 200), or the file \
                         changed",
                        self.pos
                    )));
                }
                let len = header(&resp, "content-length").and_then(|v| v.trim().parse().ok());
                if let (Some(a), Some(b)) = (self.len, len) {
                    if a != b {
                        return Err(self.changed(format!(
                            "the file changed on the server (its size is now {b} bytes, it \
                             was {a})"
                        )));
                    }
                }
                self.len = self.len.or(len);
                self.body = Some(resp.into_body().into_reader());
                Ok(())
            }
            416 if self.len.is_none() => {
                // The body had in fact ended where the connection was cut.
                let cr = header(&resp, "content-range").unwrap_or_default();
                if unsatisfied_total(&cr) == Some(self.pos)
                    && self.validators.changed(&later).is_none()
                {
                    self.len = Some(self.pos);
                    return Ok(());
                }
                Err(Failed::Retry(format!(
                    "range request answered with status 416 ('{cr}')"
                )))
            }
            _ if resp.status().is_redirection() => {
                Err(Failed::Fatal(redirect_error(&self.url, &resp)))
            }
            s => Err(Failed::Retry(format!(
                "range request answered with status {s}"
            ))),
        }
    }

    /// After a failure at `self.pos`: retry until a request works or `retries` attempts
    /// in a row brought no data.
    fn recover(&mut self, first: String) -> io::Result<()> {
        self.body = None;
        let wrap = |e: Error| e.into_io();
        if self.len.is_none() && self.pos > 0 && !self.validators.is_some() {
            // Nothing to check a resumed answer against: it could be another file.
            return Err(wrap(Error::HttpInterrupted {
                url: self.url.clone(),
                offset: self.pos,
                attempts: 0,
                message: format!(
                    "{first} (the answer had no Content-Length, ETag or Last-Modified, so a \
                     resumed download could not be checked to be the same file: no resume)"
                ),
            }));
        }
        let mut last = first;
        loop {
            if self.failures >= self.opts.retries || self.resumes >= MAX_RESUMES {
                return Err(wrap(Error::HttpInterrupted {
                    url: self.url.clone(),
                    offset: self.pos,
                    attempts: self.failures,
                    message: last,
                }));
            }
            let delay = backoff(&self.opts, self.failures + 1);
            pause(&self.client.cancel, delay).map_err(wrap)?;
            self.failures += 1;
            self.resumes += 1;
            match self.resume_once() {
                Ok(()) => return Ok(()),
                Err(Failed::Retry(e)) => last = e,
                Err(Failed::Fatal(e)) => return Err(wrap(e)),
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
            if self.client.cancel.is_cancelled() {
                return Err(Error::Aborted.into_io());
            }
            if self.len.is_some_and(|l| self.pos >= l) {
                return Ok(0);
            }
            CUT.with(|c| c.set(false));
            let r = match &mut self.body {
                Some(b) => b.read(buf),
                None => Err(io::Error::other("no connection")),
            };
            if self.client.cancel.is_cancelled() {
                // An abort shuts the connection down, which may read as its end.
                return Err(Error::Aborted.into_io());
            }
            let failure = match r {
                Ok(0) if self.len.is_none() && !CUT.with(Cell::get) => return Ok(0),
                Ok(0) if self.len.is_none() => format!(
                    "the connection was cut after {} bytes (reset, or closed without TLS \
                     close_notify): a body without Content-Length ends only with a clean \
                     close",
                    self.pos
                ),
                Ok(0) => format!(
                    "the connection closed after {} of {} bytes",
                    self.pos,
                    self.len.unwrap_or(0)
                ),
                Ok(n) => {
                    let n = match self.len {
                        Some(l) => n.min((l - self.pos) as usize),
                        None => n,
                    };
                    self.failures = 0;
                    self.pos += n as u64;
                    self.received.store(self.pos, Ordering::Relaxed);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) if self.client.cancel.is_cancelled() => return Err(Error::Aborted.into_io()),
                Err(e) => e.to_string(),
            };
            self.recover(failure)?;
        }
    }
}
