//! `retrieve`: the source side reads the hash stream, compares its own blocks and sends
//! the ones that differ.

use sparsekit_io::ErrorInfo;
use std::io::{Read, Write};

use rayon::prelude::*;
use sparsekit_io::{Control, Phase, Storage};

use crate::ahead::{look_group, Ahead, Grid, Look, StopOnDrop};
use crate::checksum::ext_flags;
use crate::error::{Error, Stream};
use crate::hash::{in_hole, with_scratch, PageBuf, BATCH_BLOCKS, BATCH_BYTES};
use crate::record::{
    BlockHeader, BlockKind, HashRecord, RecordReader, RecordWriter, BLAKE3_LEN, BLOCK_SIZE,
    DIGEST_LEN, EXT_RESUME, EXT_TRUNCATE, EXT_ZSTD, HASH_STREAM_FLAGS, TAG_DONE, TAG_EXT,
    TAG_RESUME,
};
use sparsekit_io::is_zero;

/// Options of [`retrieve`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetrieveOptions {
    /// `--lzma`: send a compared block as `dlzm` (xz, preset 6, CRC64, as Python's
    /// `lzma.compress`) when that is smaller than the block. Blocks after `rest` go raw,
    /// as blockcopy sends them.
    pub lzma: bool,
    /// sparsekit extension `--blake3` (checksum and save must opt in too): expect the
    /// `SKx1` header and `HshB` records, and open the block stream with `SKx1`.
    pub blake3: bool,
    /// sparsekit extension hole awareness (checksum and save must opt in too): the
    /// source's holes (sorted byte ranges, e.g. from [`hole_map`](crate::hole_map)).
    /// Blocks inside one are not read; blocks of zeros go as `zero` records.
    /// `Some(vec![])` opts in with no holes.
    pub holes: Option<Vec<std::ops::Range<u64>>>,
    /// For [`sync_files`](crate::sync_files) with `holes`: the destination's holes.
    pub dst_holes: Vec<std::ops::Range<u64>>,
    /// sparsekit extension `--zstd` (save must opt in too): send a block as a zstd frame
    /// (`dzst`, level 3) when that is smaller, blocks after `rest` included. Not with `lzma`.
    pub zstd: bool,
    /// sparsekit extension `--truncate` (save must opt in too): the block stream says the
    /// source's size, and `save` makes the destination exactly that long.
    pub truncate: bool,
    /// sparsekit extension `--resume` (checksum and save must opt in too): expect the
    /// `Resm` record, refuse a source whose size changed since the cut session, and send
    /// checkpoints for `save`'s journal.
    pub resume: bool,
}

impl RetrieveOptions {
    /// Every extension flag of the block stream's `SKx1` header (0: plain protocol).
    pub(crate) fn flags(&self) -> u32 {
        ext_flags(self.blake3, self.holes.is_some())
            | if self.zstd { EXT_ZSTD } else { 0 }
            | if self.truncate { EXT_TRUNCATE } else { 0 }
            | if self.resume { EXT_RESUME } else { 0 }
    }
}

/// Where the checkpoints of a resumable session stand in `retrieve`.
struct Checkpoints {
    on: bool,
    /// Every destination block below this was dealt with.
    mark: u64,
    /// The last checkpoint sent.
    sent: u64,
}

impl Checkpoints {
    fn emit<W: Write>(&mut self, w: &mut RecordWriter<W>) -> Result<(), Error> {
        if self.on && self.mark > self.sent {
            w.write_block(
                BlockHeader {
                    kind: BlockKind::Checkpoint,
                    position: self.mark,
                    length: 0,
                },
                &[],
            )?;
            self.sent = self.mark;
        }
        Ok(())
    }
}

/// What [`retrieve`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetrieveSummary {
    /// Blocks compared by digest.
    pub blocks_compared: u64,
    /// `data`/`dlzm` records sent.
    pub blocks_sent: u64,
    /// Source bytes sent (before compression).
    pub bytes_sent: u64,
    /// Bytes of the hash stream read.
    pub hash_stream_bytes: u64,
    /// Bytes written to the block stream.
    pub stream_bytes: u64,
}

/// blockcopy's retrieve hashes in batches of 16 blocks; its output order depends on them.
const REF_BATCH: u64 = 16;
/// The most payload a batch may hold while it waits for a batch boundary (16 blocks of
/// the largest record length would be 256 MiB).
const MAX_BATCH_BYTES: u64 = 64 << 20;

/// One block to look at.
struct Item {
    position: u64,
    /// Source bytes at `position` (the record's length, or fewer at the source's end).
    length: u32,
    /// The destination's digest; `None` when the source ends inside the block, which is
    /// then sent unconditionally.
    digest: Option<[u8; DIGEST_LEN]>,
    /// Hole awareness: the destination's block is a hole (zeros), not hashed.
    dst_zero: bool,
}

/// Read the hash stream from `hashes`, compare `src`'s blocks with it on every core, and
/// write the block stream to `out`: the differing blocks in the order of the hash stream,
/// everything from `rest` on, then `done` once the hash stream's `done` arrived. A hash
/// stream without `done` is an error, after the blocks its whole records call for were
/// sent as blockcopy 0.0.2 sends them (all of them when it ends at a record boundary; when
/// it ends inside a record, not those of blockcopy's unfinished batch of 16), and then no
/// `done` is sent. Reports [`Phase::Send`]
/// (source bytes dealt with; the total is known at the end).
pub fn retrieve<S: Storage + ?Sized, R: Read, W: Write>(
    src: &S,
    hashes: R,
    out: W,
    opts: &RetrieveOptions,
    ctl: &mut Control<'_>,
) -> Result<RetrieveSummary, Error> {
    if opts.lzma && opts.zstd {
        return Err(Error::InvalidArg {
            name: "zstd",
            reason: "--zstd and --lzma exclude each other".into(),
        });
    }
    let size = src.size()?;
    let mut rd = RecordReader::new(hashes, Stream::Hashes);
    let mut w = RecordWriter::new(out, Stream::Blocks);
    let flags = opts.flags();
    let hash_flags = flags & HASH_STREAM_FLAGS;
    if hash_flags != 0 {
        rd = rd.with_extensions();
        let at = rd.bytes();
        if rd.read_ext_header()? != hash_flags {
            return Err(Error::NotNegotiated {
                stream: Stream::Hashes,
                offset: at,
                tag: TAG_EXT,
            });
        }
    }
    let mut ckpt = Checkpoints {
        on: opts.resume,
        mark: 0,
        sent: 0,
    };
    if opts.resume {
        let at = rd.bytes();
        match rd.read_hash_record()?.1 {
            HashRecord::Resume { from, source_size } => {
                if source_size != u64::MAX && source_size != size {
                    return Err(Error::ResumeMismatch {
                        recorded: source_size,
                        size,
                    });
                }
                ckpt.mark = from;
                ckpt.sent = from;
            }
            other => {
                let mut b = Vec::new();
                other.encode(&mut b);
                return Err(Error::Unexpected {
                    stream: Stream::Hashes,
                    offset: at,
                    expected: "the Resm record of a resumable session",
                    tag: b[..4].try_into().expect("a tag"),
                });
            }
        }
    }
    if flags != 0 {
        let mut h = Vec::new();
        HashRecord::Ext { flags }.encode(&mut h);
        w.write_all(&h)?;
    }
    if opts.truncate || opts.resume {
        w.write_block(
            BlockHeader {
                kind: BlockKind::SourceSize,
                position: size,
                length: 0,
            },
            &[],
        )?;
    }
    // The comparison runs here, the hashing ahead of it on a thread of this scope.
    let ahead = Ahead::new();
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&ahead);
        let mut started = false;
        let mut sum = RetrieveSummary::default();
        let mut batch: Vec<Item> = Vec::with_capacity(BATCH_BLOCKS);
        let mut batch_bytes = 0u64;
        // Blocks queued for comparison so far, counted as blockcopy counts its batches.
        let mut queued = 0u64;
        // Where the previous block ended in the source: the position of a deprecated `hash`.
        let mut cursor = 0u64;
        let mut covered = 0u64;
        ctl.report(Phase::Send, 0, None)?;
        loop {
            let at = rd.bytes();
            let rec = match rd.read_hash_record() {
                Ok((_, rec)) => rec,
                Err(e) if e.is_truncated() => {
                    // The hash stream ended without `done` (the checksum side died): send
                    // what the hashes received call for, as blockcopy does, then fail
                    // without `done` (so `save` fails too, keeping what it got). Cut at a
                    // record boundary or inside a tag, blockcopy flushes its batch: every
                    // block whose hash arrived goes out. Cut inside a record, it fails
                    // before flushing: its unfinished batch of 16 is not sent. A resumable
                    // session sends them all (its checkpoint covers every record read).
                    if e.offset().is_some_and(|o| o > at) && !opts.resume {
                        let tail = ((queued % REF_BATCH) as usize).min(batch.len());
                        batch.truncate(batch.len() - tail);
                    }
                    flush_batch(src, &mut batch, &mut w, opts, ctl, &mut sum, &ahead)?;
                    ckpt.emit(&mut w)?;
                    w.flush()?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            let mut dst_zero = false;
            let (position, length, digest) = match rec {
                HashRecord::Hole { position, length } => {
                    dst_zero = true;
                    (position, length, [0u8; DIGEST_LEN])
                }
                HashRecord::Hash {
                    position,
                    length,
                    digest,
                } => (position, length, digest),
                HashRecord::HashSeq { length, digest } => (cursor, length, digest),
                HashRecord::HashB3 {
                    position,
                    length,
                    digest,
                } => {
                    let mut d = [0u8; DIGEST_LEN];
                    d[..BLAKE3_LEN].copy_from_slice(&digest);
                    (position, length, d)
                }
                HashRecord::Ext { .. } => {
                    return Err(Error::UnknownTag {
                        stream: Stream::Hashes,
                        offset: rd.bytes() - 8,
                        tag: TAG_EXT,
                    })
                }
                HashRecord::Resume { .. } => {
                    return Err(Error::UnknownTag {
                        stream: Stream::Hashes,
                        offset: rd.bytes() - 20,
                        tag: TAG_RESUME,
                    })
                }
                HashRecord::Rest { offset } => {
                    // The destination ends here: hashing further ahead would be wasted
                    // (what was hashed stays usable).
                    ahead.stop();
                    // blockcopy sends the rest before the blocks of its unfinished batch of 16
                    // (those go out at `done`): keep them back so the streams stay identical.
                    // A resumable session sends them first (its checkpoints must only grow).
                    let tail = if opts.resume {
                        0
                    } else {
                        ((queued % REF_BATCH) as usize).min(batch.len())
                    };
                    let kept = batch.split_off(batch.len() - tail);
                    flush_batch(src, &mut batch, &mut w, opts, ctl, &mut sum, &ahead)?;
                    ckpt.emit(&mut w)?;
                    covered += send_rest(
                        src, size, offset, &mut w, ctl, &mut sum, covered, opts, &mut ckpt,
                    )?;
                    batch_bytes = kept.iter().map(|i| u64::from(i.length)).sum();
                    batch = kept;
                    cursor = size.max(offset);
                    continue;
                }
                HashRecord::Done => break,
            };
            let n = u64::from(length).min(size.saturating_sub(position));
            cursor = position + n;
            ckpt.mark = ckpt.mark.max(position + u64::from(length));
            if n == 0 {
                // Past the source's end (the destination is larger): nothing to send.
                continue;
            }
            if !started {
                // Hash the source ahead on this record's grid (see crate::ahead).
                started = true;
                ahead.arm(position);
                let grid = Grid {
                    src,
                    first: position,
                    step: length,
                    size,
                    holes: opts.holes.as_deref(),
                    blake3: opts.blake3,
                };
                let cancel = ctl.cancel().clone();
                let a = &ahead;
                scope.spawn(move || a.run(&grid, &cancel));
            }
            ahead.saw(position);
            batch.push(Item {
                position,
                length: n as u32,
                digest: (n == u64::from(length) && !dst_zero).then_some(digest),
                dst_zero: dst_zero && n == u64::from(length),
            });
            batch_bytes += n;
            covered += n;
            queued += 1;
            // Flush on blockcopy's batch boundaries (see `Rest` above), or at the memory cap.
            let boundary = queued.is_multiple_of(REF_BATCH);
            if (boundary && (batch.len() >= BATCH_BLOCKS || batch_bytes >= BATCH_BYTES))
                || batch_bytes >= MAX_BATCH_BYTES
            {
                flush_batch(src, &mut batch, &mut w, opts, ctl, &mut sum, &ahead)?;
                ckpt.emit(&mut w)?;
                batch_bytes = 0;
                ctl.report(Phase::Send, covered, None)?;
            }
        }
        flush_batch(src, &mut batch, &mut w, opts, ctl, &mut sum, &ahead)?;
        w.write_all(&TAG_DONE)?;
        w.flush()?;
        sum.hash_stream_bytes = rd.bytes();
        sum.stream_bytes = w.bytes();
        ctl.report(Phase::Send, covered, Some(covered))?;
        Ok(sum)
    })
}

#[allow(clippy::too_many_arguments)]
fn flush_batch<S: Storage + ?Sized, W: Write>(
    src: &S,
    batch: &mut Vec<Item>,
    w: &mut RecordWriter<W>,
    opts: &RetrieveOptions,
    ctl: &Control<'_>,
    sum: &mut RetrieveSummary,
    ahead: &Ahead,
) -> Result<(), Error> {
    if batch.is_empty() {
        return Ok(());
    }
    let cancel = ctl.cancel().clone();
    // What was hashed ahead; the rest is read and hashed here.
    let pre: Vec<Option<Look>> = batch
        .iter()
        .map(|i| ahead.take(i.position, i.length))
        .collect();
    // Four blocks per task: read by the worker, hashed by one 4-way Keccak call.
    let results = batch
        .par_chunks(4)
        .zip(pre.par_chunks(4))
        .map(|(group, pre)| {
            with_scratch(|bufs| {
                if cancel.is_cancelled() {
                    return Err(Error::Aborted);
                }
                // `bufs` hold the blocks when they were read here.
                let (looks, in_bufs) = match pre.iter().copied().collect::<Option<Vec<_>>>() {
                    Some(looks) => (looks, false),
                    None => {
                        let g: Vec<(u64, u32)> =
                            group.iter().map(|i| (i.position, i.length)).collect();
                        let looks = look_group(src, &g, bufs, opts.holes.as_deref(), opts.blake3)?;
                        (looks, true)
                    }
                };
                let mut out = Vec::with_capacity(group.len());
                for ((item, look), buf) in group.iter().zip(looks).zip(bufs.iter_mut()) {
                    out.push(match decide(item, look, opts.holes.is_some()) {
                        Decision::Skip => None,
                        Decision::Zero => Some((BlockKind::Zero, item.position, Vec::new())),
                        Decision::Send => {
                            if !in_bufs {
                                buf.resize(item.length as usize);
                                src.read_exact_at(buf, item.position)?;
                            }
                            Some(encode(buf, item.position, opts)?)
                        }
                    });
                }
                Ok(out)
            })
        })
        .collect::<Result<Vec<_>, Error>>()?
        .concat();
    sum.blocks_compared += batch.iter().filter(|i| i.digest.is_some()).count() as u64;
    for (item, r) in batch.iter().zip(results) {
        if let Some((kind, position, payload)) = r {
            let length = if kind == BlockKind::Zero {
                item.length
            } else {
                payload.len() as u32
            };
            w.write_block(
                BlockHeader {
                    kind,
                    position,
                    length,
                },
                &payload,
            )?;
            sum.blocks_sent += 1;
            sum.bytes_sent += u64::from(item.length);
        }
    }
    batch.clear();
    Ok(())
}

/// What to do with a block.
enum Decision {
    /// Equal on both sides: nothing to send.
    Skip,
    /// Hole aware: send a `zero` record.
    Zero,
    /// Send the block.
    Send,
}

/// Compare `item` (the destination's side) with `look` (the source's). Plain: send what
/// differs (a block without a digest always). Hole aware: nothing when both sides read as
/// zeros or the digests match, `zero` for a block of zeros (a source hole is not even
/// read), else the block.
fn decide(item: &Item, look: Look, holes: bool) -> Decision {
    match look {
        Look::Hole if item.dst_zero => Decision::Skip,
        Look::Hole => Decision::Zero,
        Look::Read { zeros, .. } if holes && item.dst_zero && zeros => Decision::Skip,
        Look::Read { digest, .. } if item.digest == Some(digest) => Decision::Skip,
        Look::Read { zeros: true, .. } if holes => Decision::Zero,
        Look::Read { .. } => Decision::Send,
    }
}

/// The record of a block to send: `dlzm` (`--lzma`, not hole aware) or `dzst` (`--zstd`)
/// when that is smaller, else `data`.
fn encode(
    buf: &[u8],
    position: u64,
    opts: &RetrieveOptions,
) -> Result<(BlockKind, u64, Vec<u8>), Error> {
    if opts.lzma && opts.holes.is_none() {
        let z = xz_compress(buf)?;
        if z.len() < buf.len() {
            return Ok((BlockKind::Dlzm, position, z));
        }
    }
    if opts.zstd {
        let z = zstd_compress(buf)?;
        if z.len() < buf.len() {
            return Ok((BlockKind::Zstd, position, z));
        }
    }
    Ok((BlockKind::Data, position, buf.to_vec()))
}

/// Blocks after `rest` between two checkpoints of a resumable session (8 MiB, as a batch).
const REST_CKPT_BLOCKS: u64 = 64;

/// Send `[offset, size)` of the source as raw `data` records of 128 KiB (`dzst` where
/// smaller with `zstd`); the bytes sent.
#[allow(clippy::too_many_arguments)]
fn send_rest<S: Storage + ?Sized, W: Write>(
    src: &S,
    size: u64,
    offset: u64,
    w: &mut RecordWriter<W>,
    ctl: &mut Control<'_>,
    sum: &mut RetrieveSummary,
    covered: u64,
    opts: &RetrieveOptions,
    ckpt: &mut Checkpoints,
) -> Result<u64, Error> {
    let holes = opts.holes.as_deref();
    let bs = u64::from(BLOCK_SIZE);
    let mut buf = PageBuf::default();
    buf.resize(BLOCK_SIZE as usize);
    let mut pos = offset;
    let mut z: Vec<u8>;
    let mut blocks = 0u64;
    while pos < size {
        let n = (size - pos).min(bs) as usize;
        // Hole aware: holes are not read, and zeros travel as `zero` records.
        let mut kind = BlockKind::Data;
        if let Some(h) = holes {
            if in_hole(h, pos, n as u64) {
                kind = BlockKind::Zero;
            }
        }
        if kind == BlockKind::Data {
            src.read_exact_at(&mut buf[..n], pos)?;
            if holes.is_some() && is_zero(&buf[..n]) {
                kind = BlockKind::Zero;
            }
        }
        let mut payload = if kind == BlockKind::Zero {
            &[][..]
        } else {
            &buf[..n]
        };
        if opts.zstd && kind == BlockKind::Data {
            z = zstd_compress(payload)?;
            if z.len() < n {
                kind = BlockKind::Zstd;
                payload = &z;
            }
        }
        w.write_block(
            BlockHeader {
                kind,
                position: pos,
                length: if kind == BlockKind::Zero {
                    n as u32
                } else {
                    payload.len() as u32
                },
            },
            payload,
        )?;
        sum.blocks_sent += 1;
        sum.bytes_sent += n as u64;
        pos += n as u64;
        blocks += 1;
        ckpt.mark = ckpt.mark.max(pos);
        if blocks.is_multiple_of(REST_CKPT_BLOCKS) {
            ckpt.emit(w)?;
        }
        ctl.report(Phase::Send, covered + (pos - offset), None)?;
    }
    ckpt.mark = ckpt.mark.max(size.max(offset));
    ckpt.emit(w)?;
    Ok(size.saturating_sub(offset))
}

thread_local! {
    /// One zstd compression context per worker thread (a fresh one per block would cost
    /// more than compressing a block).
    static ZSTD: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// One zstd frame of `data`: level 3, the content size and a content checksum in the frame
/// (so `save` detects a corrupted payload).
pub(crate) fn zstd_compress(data: &[u8]) -> Result<Vec<u8>, Error> {
    let err = |e: std::io::Error| Error::InvalidArg {
        name: "zstd",
        reason: e.to_string(),
    };
    ZSTD.with(|cell| {
        let mut c = cell.borrow_mut();
        if c.is_none() {
            let mut z = zstd::bulk::Compressor::new(3).map_err(err)?;
            z.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                .map_err(err)?;
            *c = Some(z);
        }
        c.as_mut().expect("set above").compress(data).map_err(err)
    })
}

/// xz with the settings of Python's `lzma.compress(data)`: `.xz` container, preset 6,
/// CRC64 check.
pub(crate) fn xz_compress(data: &[u8]) -> Result<Vec<u8>, Error> {
    use liblzma::stream::{Action, Check, Status, Stream as XzStream};
    let mut s = XzStream::new_easy_encoder(6, Check::Crc64).map_err(|e| Error::InvalidArg {
        name: "lzma",
        reason: e.to_string(),
    })?;
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let mut input = data;
    loop {
        if out.capacity() - out.len() < 4096 {
            out.reserve(64 * 1024);
        }
        let before = s.total_in();
        let status = s
            .process_vec(input, &mut out, Action::Finish)
            .map_err(|e| Error::InvalidArg {
                name: "lzma",
                reason: e.to_string(),
            })?;
        input = &input[(s.total_in() - before) as usize..];
        if status == Status::StreamEnd {
            return Ok(out);
        }
    }
}
