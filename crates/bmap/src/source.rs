//! Compressed images, decompressed as a stream on a thread of their own: gzip (also
//! concatenated members), xz (also multi-stream), bzip2 (also concatenated streams) and
//! zstd (any number of frames), recognised by their magic numbers.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use sparsekit_io::IoError;

use crate::create::CHUNK;
use crate::{Error, Result};

/// Bytes of compressed input read per call.
const INPUT_BUFFER: usize = 256 * 1024;
/// Decompressed chunks in flight between the decoder thread and the writer.
const QUEUE: usize = 4;

/// A compression format of an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// gzip (RFC 1952), magic `1f 8b`.
    Gzip,
    /// xz (the .xz container of LZMA2), magic `fd 37 7a 58 5a 00`.
    Xz,
    /// bzip2, magic `BZh` and a block size digit.
    Bzip2,
    /// Zstandard (RFC 8878), frame magic `28 b5 2f fd`.
    Zstd,
}

impl Compression {
    /// `gzip`, `xz`, `bzip2`, `zstd`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
            Compression::Zstd => "zstd",
        }
    }

    /// The format whose magic number `head` (the first 6 bytes or more) starts with.
    pub fn detect(head: &[u8]) -> Option<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Compression::Xz)
        } else if head.len() >= 4 && head.starts_with(b"BZh") && (b'1'..=b'9').contains(&head[3]) {
            Some(Compression::Bzip2)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else {
            None
        }
    }

    /// The decoder of this format over `r`, accepting concatenated members/streams/frames.
    pub fn decoder<'a, R: BufRead + Send + 'a>(
        self,
        r: R,
    ) -> io::Result<Box<dyn Read + Send + 'a>> {
        Ok(match self {
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
            Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(r)),
            Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
            Compression::Zstd => Box::new(crate::zstd_frames::Frames::new(r)),
        })
    }
}

/// Decompressed bytes, produced by a thread, consumed front to back.
pub(crate) struct Stream {
    rx: Option<Receiver<Result<Vec<u8>>>>,
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    chunk: Vec<u8>,
    at: usize,
    eof: bool,
    /// Decompressed bytes handed out or skipped so far.
    pub(crate) pos: u64,
    /// Compressed bytes the decoder consumed so far.
    pub(crate) consumed: Arc<AtomicU64>,
}

impl Stream {
    /// Start decompressing `input` (compressed bytes, read front to back) as `format`.
    /// `consumed` is what `input` counts its bytes into, for progress.
    pub(crate) fn spawn(
        input: Box<dyn Read + Send>,
        format: Compression,
        consumed: Arc<AtomicU64>,
    ) -> Stream {
        let (tx, rx) = sync_channel::<Result<Vec<u8>>>(QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sparsekit-decompress".into())
            .spawn(move || {
                let mut produced = 0u64;
                let mut dec = match format.decoder(BufReader::with_capacity(INPUT_BUFFER, input)) {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = tx.send(Err(decode_error(e, format, 0)));
                        return;
                    }
                };
                loop {
                    if stop2.load(Ordering::Relaxed) {
                        return;
                    }
                    let mut buf = vec![0u8; CHUNK];
                    let mut n = 0;
                    let mut fail = None;
                    while n < buf.len() {
                        match dec.read(&mut buf[n..]) {
                            Ok(0) => break,
                            Ok(k) => n += k,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                fail = Some(decode_error(e, format, produced + n as u64));
                                break;
                            }
                        }
                    }
                    produced += n as u64;
                    buf.truncate(n);
                    let last = n < CHUNK || fail.is_some();
                    if n > 0 && tx.send(Ok(buf)).is_err() {
                        return;
                    }
                    if let Some(e) = fail {
                        let _ = tx.send(Err(e));
                        return;
                    }
                    if last {
                        let _ = tx.send(Ok(Vec::new()));
                        return;
                    }
                }
            })
            .expect("spawn decompression thread");
        Stream {
            rx: Some(rx),
            thread: Some(thread),
            stop,
            chunk: Vec::new(),
            at: 0,
            eof: false,
            pos: 0,
            consumed,
        }
    }

    /// The next decompressed bytes (at most `max`), empty at the end of the stream.
    pub(crate) fn next(&mut self, max: usize) -> Result<&[u8]> {
        if self.at == self.chunk.len() && !self.eof {
            let rx = self.rx.as_ref().expect("stream open");
            match rx.recv() {
                Ok(Ok(c)) if c.is_empty() => self.eof = true,
                Ok(Ok(c)) => {
                    self.chunk = c;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The thread ended without its end marker: it panicked.
                Err(_) => {
                    return Err(Error::Decompress {
                        path: None,
                        format: "decoder",
                        offset: self.pos,
                        message: "the decompression thread died".into(),
                    })
                }
            }
        }
        if self.eof {
            return Ok(&[]);
        }
        let n = (self.chunk.len() - self.at).min(max);
        let s = &self.chunk[self.at..self.at + n];
        self.at += n;
        self.pos += n as u64;
        Ok(s)
    }

    /// Skip forward to decompressed offset `to`; `Ok(false)` when the stream ends first.
    pub(crate) fn skip_to(&mut self, to: u64) -> Result<bool> {
        while self.pos < to {
            let want = (to - self.pos).min(usize::MAX as u64) as usize;
            if self.next(want)?.is_empty() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver makes the thread's next send fail, so it ends.
        self.rx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn decode_error(e: io::Error, format: Compression, offset: u64) -> Error {
    let e = match IoError::recover(e) {
        Ok(io) => return Error::Io(io),
        Err(e) => e,
    };
    let message = if e.kind() == io::ErrorKind::UnexpectedEof {
        format!("the compressed stream is truncated ({e})")
    } else {
        e.to_string()
    };
    Error::Decompress {
        path: None,
        format: format.name(),
        offset,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsekit_io::ErrorInfo;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn drain(mut s: Stream) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let c = s.next(usize::MAX)?;
            if c.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(c);
        }
    }

    #[test]
    fn concatenated_gzip_members() {
        let a = vec![1u8; 3 * CHUNK + 5];
        let b = vec![2u8; 1000];
        let mut z = gz(&a);
        z.extend(gz(&b));
        assert_eq!(Compression::detect(&z), Some(Compression::Gzip));
        let c = Arc::new(AtomicU64::new(0));
        let s = Stream::spawn(
            Box::new(io::Cursor::new(z.clone())),
            Compression::Gzip,
            c.clone(),
        );
        let out = drain(s).unwrap();
        assert_eq!(out.len(), a.len() + b.len());
        assert_eq!(&out[a.len()..], &b[..]);
        assert_eq!(c.load(Ordering::Relaxed), 0, "a Cursor does not count");
    }

    #[test]
    fn truncated_and_corrupt_streams() {
        let z = gz(&vec![7u8; 100_000]);
        let s = Stream::spawn(
            Box::new(io::Cursor::new(z[..z.len() - 10].to_vec())),
            Compression::Gzip,
            Arc::default(),
        );
        let e = drain(s).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_DECOMPRESS", "{e}");
        let mut bad = z.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        bad[mid + 1] ^= 0xff;
        let s = Stream::spawn(
            Box::new(io::Cursor::new(bad)),
            Compression::Gzip,
            Arc::default(),
        );
        assert!(drain(s).is_err());
    }

    #[test]
    fn stopping_early_ends_the_thread() {
        let z = gz(&vec![0u8; 64 * CHUNK]);
        let mut s = Stream::spawn(
            Box::new(io::Cursor::new(z)),
            Compression::Gzip,
            Arc::default(),
        );
        assert_eq!(s.next(10).unwrap().len(), 10);
        drop(s); // joins the thread, which must not wait forever on a full queue
    }
}
