//! zstd streams of several frames decoded on every core (as `pzstd` does).
//!
//! A zstd stream is one or more frames (RFC 8878 section 3.1). A frame whose header
//! records its content size (at most [`MAX_FRAME`]) is read whole (its blocks walked by
//! their headers) and handed to a worker thread that decodes it on its own, so that the
//! frames after it decode at the same time on other cores; a frame of RLE blocks of one
//! byte and no checksum (what a `.img.zst` backup writes for free space) is not decoded at
//! all, its bytes are filled in. Any other frame (no content size, a larger one, a
//! dictionary) is decoded here as it streams, as libzstd's streaming decoder does, so any
//! zstd stream reads as before: `zstd -T0` writes one frame without a size.
//!
//! Up to [`AHEAD`] frames are in flight; the caller reads the bytes in order.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

/// The largest content size of a frame decoded by a worker (the size the frame's output
/// buffer is allocated at).
pub(crate) const MAX_FRAME: u64 = 16 << 20;
/// Frames read ahead of the caller (at most `AHEAD * MAX_FRAME` bytes of memory).
const AHEAD: usize = 4;
/// zstd's frame magic.
const MAGIC: u32 = 0xFD2F_B528;

/// A frame for a worker: its bytes, its content size, where to send the content.
type Task = (Vec<u8>, usize, SyncSender<io::Result<Vec<u8>>>);

/// What comes next in the stream.
enum Next {
    /// A frame being decoded by a worker.
    Decoded(Receiver<io::Result<Vec<u8>>>),
    /// `n` copies of a byte.
    Fill(u8, u64),
    /// A frame decoded here as it streams; its first bytes (already taken from the input)
    /// in `carry`.
    Inline,
}

/// What is being handed out.
enum Out {
    None,
    Bytes(Vec<u8>, usize),
    Fill(u8, u64),
    Inline,
}

fn truncated(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("zstd: truncated {what}"),
    )
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {what}"))
}

/// A reader of the decoded bytes of a zstd stream (see the module docs).
pub(crate) struct Frames<R> {
    input: R,
    next: VecDeque<Next>,
    out: Out,
    /// The input ended (between frames).
    eof: bool,
    /// Bytes of an inline frame taken from the input to read its header.
    carry: Vec<u8>,
    carry_pos: usize,
    dctx: Option<zstd::zstd_safe::DCtx<'static>>,
    tasks: Option<Sender<Task>>,
}

impl<R: BufRead> Frames<R> {
    pub(crate) fn new(input: R) -> Frames<R> {
        Frames {
            input,
            next: VecDeque::new(),
            out: Out::None,
            eof: false,
            carry: Vec::new(),
            carry_pos: 0,
            dctx: None,
            tasks: None,
        }
    }

    /// Read exactly `n` more bytes of the input onto `v`; `false` when the input ends
    /// first (what was there is on `v`).
    fn take(&mut self, v: &mut Vec<u8>, n: usize) -> io::Result<bool> {
        let want = v.len() + n;
        while v.len() < want {
            let b = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if b.is_empty() {
                return Ok(false);
            }
            let k = b.len().min(want - v.len());
            v.extend_from_slice(&b[..k]);
            self.input.consume(k);
        }
        Ok(true)
    }

    /// The workers' queue, started on first use (one worker per core).
    fn tasks(&mut self) -> &Sender<Task> {
        self.tasks.get_or_insert_with(|| {
            let (tx, rx) = channel::<Task>();
            let rx = Arc::new(Mutex::new(rx));
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            for _ in 0..n {
                let rx = rx.clone();
                let _ = std::thread::Builder::new()
                    .name("sparsekit-zstd".into())
                    .spawn(move || {
                        let mut d = zstd::bulk::Decompressor::new().ok();
                        loop {
                            let task = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                            let Ok((frame, size, tx)) = task else { return };
                            let r = match d.as_mut() {
                                None => Err(io::Error::other("zstd: no decompression context")),
                                Some(d) => {
                                    let mut out = Vec::with_capacity(size);
                                    match d.decompress_to_buffer(&frame[..], &mut out) {
                                        Ok(n) if n == size => Ok(out),
                                        Ok(_) => Err(corrupt(
                                            "a frame's content differs from its recorded size",
                                        )),
                                        Err(e) => Err(e),
                                    }
                                }
                            };
                            let _ = tx.send(r);
                        }
                    });
            }
            tx
        })
    }

    /// Read frames ahead until [`AHEAD`] are queued, the input ends, or an inline frame
    /// comes (nothing after it can be read before it is decoded).
    fn read_ahead(&mut self) -> io::Result<()> {
        while self.next.len() < AHEAD
            && !self.eof
            && !matches!(self.next.back(), Some(Next::Inline))
        {
            let mut h = Vec::with_capacity(18);
            if !self.take(&mut h, 4)? {
                if h.is_empty() {
                    self.eof = true;
                    return Ok(());
                }
                return Err(truncated("frame magic"));
            }
            let magic = u32::from_le_bytes(h[..4].try_into().expect("4 bytes"));
            if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
                // A skippable frame: its length, then that many bytes.
                let mut l = Vec::with_capacity(4);
                if !self.take(&mut l, 4)? {
                    return Err(truncated("skippable frame"));
                }
                let mut left = u64::from(u32::from_le_bytes(l[..4].try_into().expect("4")));
                while left > 0 {
                    let b = self.input.fill_buf()?;
                    if b.is_empty() {
                        return Err(truncated("skippable frame"));
                    }
                    let k = (b.len() as u64).min(left) as usize;
                    self.input.consume(k);
                    left -= k as u64;
                }
                continue;
            }
            if magic != MAGIC {
                return Err(corrupt("unknown frame magic"));
            }
            if !self.take(&mut h, 1)? {
                return Err(truncated("frame header"));
            }
            let fhd = h[4];
            let (rest, fcs_len) = zstd_header_fields(fhd);
            if !self.take(&mut h, rest)? {
                return Err(truncated("frame header"));
            }
            let size = if fcs_len == 0 {
                None
            } else {
                Some(zstd_content_size(&h[h.len() - fcs_len..]))
            };
            let size = match size {
                // No dictionary ID (fhd & 3) and the reserved bit clear.
                Some(s) if s <= MAX_FRAME && fhd & 3 == 0 && fhd & 0x08 == 0 => s,
                // Decoded as it streams, by libzstd (which also rejects what is invalid).
                _ => {
                    self.carry = h;
                    self.carry_pos = 0;
                    self.next.push_back(Next::Inline);
                    return Ok(());
                }
            };
            // The blocks, walked by their headers: the whole frame is read.
            let mut frame = h;
            let mut rle: Option<u8> = None;
            let mut all_rle = true;
            let mut content = 0u64;
            loop {
                let at = frame.len();
                if !self.take(&mut frame, 3)? {
                    return Err(truncated("block header"));
                }
                let bh = u32::from(frame[at])
                    | u32::from(frame[at + 1]) << 8
                    | u32::from(frame[at + 2]) << 16;
                let last = bh & 1 != 0;
                let bsize = (bh >> 3) as usize;
                let (len, is_rle) = match (bh >> 1) & 3 {
                    0 => (bsize, false),
                    1 => (1, true),
                    2 => (bsize, false),
                    _ => return Err(corrupt("reserved block type")),
                };
                if bsize > 128 << 10 {
                    return Err(corrupt("block larger than 128 KiB"));
                }
                let at = frame.len();
                if !self.take(&mut frame, len)? {
                    return Err(truncated("block"));
                }
                if is_rle {
                    let b = frame[at];
                    if rle.is_some_and(|r| r != b) {
                        all_rle = false;
                    }
                    rle = Some(b);
                    content += bsize as u64;
                } else {
                    all_rle = false;
                }
                if frame.len() as u64 > 2 * MAX_FRAME {
                    return Err(corrupt("frame larger than its content size"));
                }
                if last {
                    break;
                }
            }
            let checksum = fhd & 0x04 != 0;
            if checksum && !self.take(&mut frame, 4)? {
                return Err(truncated("content checksum"));
            }
            match rle {
                Some(b) if all_rle && !checksum && content == size => {
                    self.next.push_back(Next::Fill(b, size));
                }
                _ => {
                    let (tx, rx) = sync_channel(1);
                    self.tasks()
                        .send((frame, size as usize, tx))
                        .map_err(|_| io::Error::other("zstd: the decoding threads ended"))?;
                    self.next.push_back(Next::Decoded(rx));
                }
            }
        }
        Ok(())
    }

    /// Decode the inline frame into `buf`: bytes decoded, 0 when the frame ended.
    fn inline(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use zstd::zstd_safe::{DCtx, InBuffer, OutBuffer};
        let dctx = self.dctx.get_or_insert_with(DCtx::create);
        let err = |c: usize| corrupt(zstd::zstd_safe::get_error_name(c));
        loop {
            let mut out = OutBuffer::around(&mut *buf);
            let (consumed, ended, from_carry) = if self.carry_pos < self.carry.len() {
                let mut inb = InBuffer::around(&self.carry[self.carry_pos..]);
                let r = dctx.decompress_stream(&mut out, &mut inb).map_err(err)?;
                (inb.pos(), r == 0, true)
            } else {
                let b = self.input.fill_buf()?;
                if b.is_empty() {
                    // A frame needs more input: let libzstd flush what it holds, else the
                    // stream is truncated.
                    let mut inb = InBuffer::around(&[]);
                    let r = dctx.decompress_stream(&mut out, &mut inb).map_err(err)?;
                    if out.pos() == 0 && r != 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "zstd: the stream ends inside a frame",
                        ));
                    }
                    (0, r == 0, false)
                } else {
                    let mut inb = InBuffer::around(b);
                    let r = dctx.decompress_stream(&mut out, &mut inb).map_err(err)?;
                    (inb.pos(), r == 0, false)
                }
            };
            let n = out.pos();
            if from_carry {
                self.carry_pos += consumed;
            } else {
                self.input.consume(consumed);
            }
            if ended {
                // The frame is complete and flushed (libzstd starts the next one fresh);
                // the next read moves on to the next frame.
                self.carry.clear();
                self.carry_pos = 0;
                self.out = Out::None;
                return Ok(n);
            }
            if n > 0 {
                return Ok(n);
            }
        }
    }
}

impl<R: BufRead> Read for Frames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if matches!(self.out, Out::Inline) {
                let n = self.inline(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                // Ended without more bytes: on to the next frame.
                self.out = Out::None;
            }
            match &mut self.out {
                Out::Bytes(v, pos) if *pos < v.len() => {
                    let n = (v.len() - *pos).min(buf.len());
                    buf[..n].copy_from_slice(&v[*pos..*pos + n]);
                    *pos += n;
                    return Ok(n);
                }
                Out::Fill(b, left) if *left > 0 => {
                    let n = (*left).min(buf.len() as u64) as usize;
                    buf[..n].fill(*b);
                    *left -= n as u64;
                    return Ok(n);
                }
                _ => self.out = Out::None,
            }
            self.read_ahead()?;
            self.out = match self.next.pop_front() {
                None => return Ok(0),
                Some(Next::Fill(b, n)) => Out::Fill(b, n),
                Some(Next::Inline) => Out::Inline,
                Some(Next::Decoded(rx)) => {
                    let v = rx
                        .recv()
                        .map_err(|_| io::Error::other("zstd: a decoding thread ended"))??;
                    Out::Bytes(v, 0)
                }
            };
        }
    }
}

/// The optional fields of a zstd frame header after its descriptor byte `fhd` (RFC 8878
/// 3.1.1.1): how many bytes they take in all (window descriptor, dictionary ID, frame
/// content size), and how many of them are the content size (0: not recorded).
pub(crate) fn zstd_header_fields(fhd: u8) -> (usize, usize) {
    let single = fhd & 0x20 != 0;
    let fcs_len = match fhd >> 6 {
        0 => usize::from(single),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let did_len = [0usize, 1, 2, 4][usize::from(fhd & 3)];
    (usize::from(!single) + did_len + fcs_len, fcs_len)
}

/// The frame content size from its 1, 2, 4 or 8 little-endian bytes (the 2-byte form
/// counts from 256).
pub(crate) fn zstd_content_size(b: &[u8]) -> u64 {
    let mut v = [0u8; 8];
    v[..b.len()].copy_from_slice(b);
    let s = u64::from_le_bytes(v);
    if b.len() == 2 {
        s + 256
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn data(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| ((i * 7919) >> 7) as u8 ^ seed ^ (i as u8 & 3))
            .collect()
    }

    /// A frame of RLE blocks of `b` (as a `.img.zst` backup writes free space).
    fn rle_frame(b: u8, len: u64) -> Vec<u8> {
        let mut v = MAGIC.to_le_bytes().to_vec();
        v.push(0xC0);
        v.push(7 << 3);
        v.extend_from_slice(&len.to_le_bytes());
        let mut left = len;
        while left > 0 {
            let n = left.min(128 << 10);
            left -= n;
            let h = u32::from(left == 0) | 1 << 1 | (n as u32) << 3;
            v.extend_from_slice(&h.to_le_bytes()[..3]);
            v.push(b);
        }
        v
    }

    /// Every kind of frame in one stream, and the bytes it decodes to.
    fn stream() -> (Vec<u8>, Vec<u8>) {
        let (mut z, mut want) = (Vec::new(), Vec::new());
        let a = data(3 << 20, 1);
        z.extend(zstd::bulk::compress(&a, 3).unwrap());
        want.extend(&a);
        z.extend(rle_frame(0, (5 << 20) + 3));
        want.resize(want.len() + (5 << 20) + 3, 0);
        // Streamed: no content size, decoded inline.
        let b = data(700_000, 2);
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
        e.write_all(&b).unwrap();
        z.extend(e.finish().unwrap());
        want.extend(&b);
        // A skippable frame, then a frame with a checksum and one of RLE blocks of 0xAA.
        z.extend(0x184D_2A53u32.to_le_bytes());
        z.extend(5u32.to_le_bytes());
        z.extend(b"skip!");
        let c = data(1 << 20, 3);
        let mut cz = zstd::bulk::Compressor::new(5).unwrap();
        cz.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .unwrap();
        z.extend(cz.compress(&c).unwrap());
        want.extend(&c);
        z.extend(rle_frame(0xAA, 1000));
        want.resize(want.len() + 1000, 0xAA);
        // Larger than MAX_FRAME: decoded inline too.
        let d = vec![7u8; MAX_FRAME as usize + 10];
        z.extend(zstd::bulk::compress(&d, 1).unwrap());
        want.extend(&d);
        (z, want)
    }

    fn read_all(z: &[u8], step: usize) -> io::Result<Vec<u8>> {
        let mut f = Frames::new(std::io::BufReader::with_capacity(4096, z));
        let mut out = Vec::new();
        let mut buf = vec![0u8; step];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn every_kind_of_frame_decodes_in_order() {
        let (z, want) = stream();
        // libzstd agrees on what the stream holds.
        assert!(zstd::stream::decode_all(&z[..]).unwrap() == want);
        for step in [1000, 64 << 10, 5 << 20] {
            assert!(read_all(&z, step).unwrap() == want, "reads of {step}");
        }
    }

    #[test]
    fn truncated_and_corrupt_streams_fail() {
        let (z, _) = stream();
        for cut in [2, 10, 100, z.len() / 2, z.len() - 1] {
            let e = read_all(&z[..cut], 64 << 10).unwrap_err();
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
                ),
                "cut at {cut}: {e}"
            );
        }
        // A changed byte inside the checksummed frame.
        let c = data(1 << 20, 3);
        let mut cz = zstd::bulk::Compressor::new(5).unwrap();
        cz.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .unwrap();
        let mut f = cz.compress(&c).unwrap();
        let n = f.len();
        f[n - 2] ^= 1;
        assert!(read_all(&f, 64 << 10).is_err());
        // Garbage after the frames.
        let mut g = zstd::bulk::compress(&c, 3).unwrap();
        g.extend(b"not a frame");
        assert!(read_all(&g, 64 << 10).is_err());
    }
}
