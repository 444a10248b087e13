//! Random access to an HTTP(S) file through range requests (RFC 9110 §14): an
//! [`HttpStorage`] is a read-only [`Storage`], so a qcow2 image, a zip archive's central
//! directory or a plain image's mapped ranges are read where they are, never downloaded
//! whole.
//!
//! - The size comes from the first answer's `Content-Range` (`bytes 0-N/SIZE`); a server
//!   that answers a range request with the whole file (200) is refused with
//!   [`Error::HttpNoRanges`] (`ERR_SPARSEKIT_HTTP_NO_RANGES`).
//! - Reads go through a bounded cache of [`BLOCK`]-sized blocks ([`CACHE_BLOCKS`] of
//!   them); a read that continues where an earlier one ended fetches [`READAHEAD`] blocks
//!   in one request. Threads reading at once fetch different blocks (a block being
//!   fetched is waited for, not fetched twice).
//! - Each request is guarded by `If-Range` (a changed file is an error, never spliced),
//!   its `Content-Range` must name the bytes asked for, and a short or failed answer is
//!   retried from the byte where it stopped under [`HttpOptions`]' bounded policy; then
//!   [`Error::HttpInterrupted`] names the URL and offset.
//!
//! Read errors are [`IoError`]s (path: the URL, offset: where the read failed) carrying
//! the [`Error`] inside; [`Error::from_io_error`] gets it back.

use sparsekit_io::ErrorInfo;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use sparsekit_io::{Cancel, IoError, Storage};

use crate::client::{
    self as http, content_range, transient, unsatisfied_total, Client, HttpOptions, Validators,
};
use crate::error::{Error, Result};

/// Bytes per cached block (and the alignment of every range request).
pub const BLOCK: u64 = 256 * 1024;
/// Blocks kept in the cache (16 MiB).
pub const CACHE_BLOCKS: usize = 64;
/// Blocks fetched in one request when reads are sequential (2 MiB).
pub const READAHEAD: u64 = 8;
/// Requests allowed over the storage's life that brought no data: a bound against a
/// server that answers every request with nothing.
const MAX_EMPTY: u64 = 10_000;

struct Cache {
    blocks: HashMap<u64, Arc<Vec<u8>>>,
    /// Insertion order, for eviction.
    order: VecDeque<u64>,
    /// Blocks some thread is fetching now.
    inflight: HashSet<u64>,
    /// The blocks after the last blocks read (where a sequential reader goes next).
    next: VecDeque<u64>,
}

/// A read-only [`Storage`] over an HTTP(S) URL, read with range requests.
pub struct HttpStorage {
    client: Client,
    url: String,
    label: PathBuf,
    size: u64,
    validators: Validators,
    opts: HttpOptions,
    cancel: Cancel,
    cache: Mutex<Cache>,
    fetched: Condvar,
    received: Arc<AtomicU64>,
    requests: AtomicU64,
    empty: AtomicU64,
}

impl std::fmt::Debug for HttpStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpStorage")
            .field("url", &self.url)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

enum Attempt {
    /// Bytes appended (maybe fewer than asked); a failure after some data is `Short`.
    Data,
    /// Retry: the reason.
    Retry(String),
}

impl HttpStorage {
    /// Open `url`: one range request for the first block gives the size (and fills the
    /// cache with the first block). Fails with [`Error::HttpNoRanges`] when the server
    /// answers with the whole file, [`Error::Http`] for other statuses.
    pub fn open(url: &str, opts: &HttpOptions, cancel: Cancel) -> Result<Self> {
        let client = http::client_for(opts, url, &cancel)?;
        Self::open_with(client, url, opts)
    }

    /// [`HttpStorage::open`] with a client made by the caller (its token cancels).
    pub fn open_with(client: Client, url: &str, opts: &HttpOptions) -> Result<Self> {
        let cancel = client.cancel().clone();
        let mut s = HttpStorage {
            client,
            url: url.to_string(),
            label: PathBuf::from(url),
            size: 0,
            validators: Validators::default(),
            opts: opts.clone(),
            cancel,
            cache: Mutex::new(Cache {
                blocks: HashMap::new(),
                order: VecDeque::new(),
                inflight: HashSet::new(),
                next: VecDeque::new(),
            }),
            fetched: Condvar::new(),
            received: Arc::new(AtomicU64::new(0)),
            requests: AtomicU64::new(0),
            empty: AtomicU64::new(0),
        };
        let mut failures = 0u32;
        let first = loop {
            s.cancel.check()?;
            match s.probe() {
                Ok(v) => break v,
                Err(Err(e)) => return Err(e),
                Err(Ok(reason)) => {
                    if failures >= s.opts.retries {
                        return Err(Error::HttpInterrupted {
                            url: s.url.clone(),
                            offset: 0,
                            attempts: failures,
                            message: reason,
                        });
                    }
                    failures += 1;
                    s.pause(failures)?;
                }
            }
        };
        if !first.is_empty() {
            s.insert(0, Arc::new(first));
        }
        Ok(s)
    }

    /// The first request: `Ok(first block)`, `Err(Ok(reason))` to retry, `Err(Err(e))`
    /// to give up.
    fn probe(&mut self) -> std::result::Result<Vec<u8>, std::result::Result<String, Error>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let range = format!("bytes=0-{}", BLOCK - 1);
        let resp = match http::get(&self.client, &self.url, &[("Range", &range)], None) {
            Ok(r) => r,
            Err(_) if self.cancel.is_cancelled() => return Err(Err(Error::Aborted)),
            Err(e) if transient(&e) => return Err(Ok(e.to_string())),
            Err(e) => return Err(Err(http::http_err(&self.url, e))),
        };
        let status = resp.status().as_u16();
        let cr = http::header(&resp, "content-range");
        match status {
            206 => {
                let Some((0, e, Some(total))) = cr.as_deref().and_then(content_range) else {
                    return Err(Err(self.bad(format!(
                        "the answer to 'Range: bytes=0-{}' has Content-Range '{}'",
                        BLOCK - 1,
                        cr.unwrap_or_default()
                    ))));
                };
                if e >= BLOCK {
                    return Err(Err(self.bad(format!(
                        "Content-Range 'bytes 0-{e}/{total}' does not fit the request"
                    ))));
                }
                self.size = total;
                self.validators = Validators::of(&resp);
                let want = e + 1;
                let mut out = Vec::with_capacity(want as usize);
                let got = resp
                    .into_body()
                    .into_reader()
                    .take(want)
                    .read_to_end(&mut out);
                // The size is known: a first answer that is not the whole first block (a
                // server may send fewer bytes than asked, or be cut) is not cached, and
                // the block is fetched (and resumed) like any other when read.
                match got {
                    Ok(_) if out.len() as u64 == want && want == BLOCK.min(total) => Ok(out),
                    _ => Ok(Vec::new()),
                }
            }
            416 => match cr.as_deref().and_then(unsatisfied_total) {
                Some(0) => {
                    self.validators = Validators::of(&resp);
                    Ok(Vec::new())
                }
                _ => Err(Err(self.bad(
                    "the server refused 'Range: bytes=0-' (status 416) for a file that is not \
                     empty"
                        .into(),
                ))),
            },
            200 => Err(Err(Error::HttpNoRanges {
                url: self.url.clone(),
            })),
            s if http::transient_status(s) => Err(Ok(format!("status {s}"))),
            _ if resp.status().is_redirection() => Err(Err(http::redirect_error(&self.url, &resp))),
            s => Err(Err(Error::Http {
                url: self.url.clone(),
                status: Some(s),
                message: resp
                    .status()
                    .canonical_reason()
                    .unwrap_or("unexpected status")
                    .into(),
            })),
        }
    }

    fn bad(&self, message: String) -> Error {
        Error::Http {
            url: self.url.clone(),
            status: None,
            message,
        }
    }

    /// The file's size.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Range requests sent so far (the first one included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Where body bytes received are counted (for progress).
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.received.clone()
    }

    /// Sleep before retry number `n` (1-based); `Err(Aborted)` when cancelled meanwhile.
    fn pause(&self, n: u32) -> Result<()> {
        http::pause(&self.cancel, http::backoff(&self.opts, n))
    }

    /// One range request for `[pos, end)`, appending to `out`.
    fn attempt(
        &self,
        pos: u64,
        end: u64,
        out: &mut Vec<u8>,
    ) -> std::result::Result<Attempt, Error> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let range = format!("bytes={pos}-{}", end - 1);
        let mut headers = vec![("Range", range.as_str())];
        if let Some(v) = self.validators.if_range() {
            headers.push(("If-Range", v));
        }
        let resp = match http::get(&self.client, &self.url, &headers, None) {
            Ok(r) => r,
            Err(_) if self.cancel.is_cancelled() => return Err(Error::Aborted),
            Err(e) if transient(&e) => return Ok(Attempt::Retry(e.to_string())),
            Err(e) => return Err(http::http_err(&self.url, e)),
        };
        let later = Validators::of(&resp);
        if let Some(why) = self.validators.changed(&later) {
            return Err(Error::HttpChanged {
                url: self.url.clone(),
                offset: pos,
                message: format!("the file changed on the server since it was opened ({why})"),
            });
        }
        match resp.status().as_u16() {
            206 => {}
            200 => {
                return Err(self.bad(format!(
                    "the server answered 'Range: bytes={pos}-{}' with the whole file \
                     (status 200): the file changed since it was opened, or the server \
                     stopped honouring range requests",
                    end - 1
                )))
            }
            s if http::transient_status(s) => return Ok(Attempt::Retry(format!("status {s}"))),
            _ if resp.status().is_redirection() => {
                return Err(http::redirect_error(&self.url, &resp))
            }
            s => {
                return Err(Error::Http {
                    url: self.url.clone(),
                    status: Some(s),
                    message: format!("range request 'bytes={pos}-{}'", end - 1),
                })
            }
        }
        let cr = http::header(&resp, "content-range").unwrap_or_default();
        match content_range(&cr) {
            Some((_, _, Some(t))) if t != self.size => Err(Error::HttpChanged {
                url: self.url.clone(),
                offset: pos,
                message: format!(
                    "the file changed on the server since it was opened (its size is now {t} \
                     bytes, it was {}: Content-Range '{cr}')",
                    self.size
                ),
            }),
            Some((s, e, _)) if s == pos && e < end => {
                let want = e + 1 - s;
                let before = out.len();
                let r = resp.into_body().into_reader().take(want).read_to_end(out);
                let got = (out.len() - before) as u64;
                self.received.fetch_add(got, Ordering::Relaxed);
                if got > 0 {
                    return Ok(Attempt::Data);
                }
                Ok(Attempt::Retry(match r {
                    Ok(_) => format!("the answer to 'bytes={pos}-{}' held no data", end - 1),
                    Err(e) => e.to_string(),
                }))
            }
            _ => Err(self.bad(format!(
                "the answer to 'Range: bytes={pos}-{}' has Content-Range '{cr}' (file size {})",
                end - 1,
                self.size
            ))),
        }
    }

    /// Fetch `[start, end)` whole, resuming short answers; bounded retries in a row.
    fn fetch(&self, start: u64, end: u64) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity((end - start) as usize);
        let mut failures = 0u32;
        while (out.len() as u64) < end - start {
            self.cancel.check()?;
            let pos = start + out.len() as u64;
            let last = match self.attempt(pos, end, &mut out)? {
                Attempt::Data => {
                    failures = 0;
                    continue;
                }
                Attempt::Retry(reason) => reason,
            };
            if failures >= self.opts.retries
                || self.empty.fetch_add(1, Ordering::Relaxed) >= MAX_EMPTY
            {
                return Err(Error::HttpInterrupted {
                    url: self.url.clone(),
                    offset: start + out.len() as u64,
                    attempts: failures,
                    message: last,
                });
            }
            failures += 1;
            self.pause(failures)?;
        }
        Ok(out)
    }

    fn insert(&self, block: u64, data: Arc<Vec<u8>>) {
        let mut c = self.cache.lock().expect("cache lock");
        if c.blocks.insert(block, data).is_none() {
            c.order.push_back(block);
        }
        while c.order.len() > CACHE_BLOCKS {
            if let Some(old) = c.order.pop_front() {
                c.blocks.remove(&old);
            }
        }
    }

    /// The data of `block`, fetching it (and, for a sequential reader, the blocks after
    /// it) when not cached.
    fn block(&self, block: u64, need_until: u64) -> Result<Arc<Vec<u8>>> {
        let blocks = self.size.div_ceil(BLOCK);
        let (first, count) = {
            let mut c = self.cache.lock().expect("cache lock");
            loop {
                if let Some(b) = c.blocks.get(&block) {
                    let b = b.clone();
                    if c.next.len() >= 8 {
                        c.next.pop_front();
                    }
                    c.next.push_back(block + 1);
                    return Ok(b);
                }
                if !c.inflight.contains(&block) {
                    break;
                }
                c = self.fetched.wait(c).expect("cache lock");
                self.cancel.check()?;
            }
            // A sequential reader (this block follows one read before) gets readahead.
            let sequential = c.next.contains(&block);
            let mut want = need_until.div_ceil(BLOCK).max(block + 1) - block;
            if sequential {
                want = want.max(READAHEAD);
            }
            let mut n = 0;
            while n < want
                && block + n < blocks
                && (n == 0
                    || !(c.blocks.contains_key(&(block + n)) || c.inflight.contains(&(block + n))))
            {
                c.inflight.insert(block + n);
                n += 1;
            }
            if c.next.len() >= 8 {
                c.next.pop_front();
            }
            c.next.push_back(block + n);
            (block, n)
        };
        let start = first * BLOCK;
        let end = ((first + count) * BLOCK).min(self.size);
        let r = self.fetch(start, end);
        let mut mine = None;
        if let Ok(data) = &r {
            for (i, chunk) in data.chunks(BLOCK as usize).enumerate() {
                let b = Arc::new(chunk.to_vec());
                if i == 0 {
                    mine = Some(b.clone());
                }
                self.insert(first + i as u64, b);
            }
        }
        {
            let mut c = self.cache.lock().expect("cache lock");
            for b in first..first + count {
                c.inflight.remove(&b);
            }
        }
        self.fetched.notify_all();
        r?;
        Ok(mine.expect("at least one block fetched"))
    }

    fn io_error(&self, e: Error, offset: u64) -> IoError {
        let at = e.offset().unwrap_or(offset);
        IoError::new("read", e.into_io())
            .with_path(&self.label)
            .at(at)
    }
}

impl Storage for HttpStorage {
    fn size(&self) -> std::result::Result<u64, IoError> {
        Ok(self.size)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::result::Result<usize, IoError> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let end = (offset + buf.len() as u64).min(self.size);
        let mut pos = offset;
        while pos < end {
            let b = pos / BLOCK;
            let data = self.block(b, end).map_err(|e| self.io_error(e, pos))?;
            let within = (pos - b * BLOCK) as usize;
            let n = (data.len().saturating_sub(within)).min((end - pos) as usize);
            if n == 0 {
                // A block shorter than the size says: only a server that changed its mind.
                return Err(self.io_error(
                    self.bad(format!("block at byte {} came back short", b * BLOCK)),
                    pos,
                ));
            }
            let at = (pos - offset) as usize;
            buf[at..at + n].copy_from_slice(&data[within..within + n]);
            pos += n as u64;
        }
        Ok((end - offset) as usize)
    }

    fn write_at(&self, _buf: &[u8], offset: u64) -> std::result::Result<usize, IoError> {
        Err(IoError::from_errno("write", sparsekit_io::errno::EROFS)
            .with_path(&self.label)
            .at(offset))
    }

    fn flush(&self) -> std::result::Result<(), IoError> {
        Ok(())
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.label)
    }
}
