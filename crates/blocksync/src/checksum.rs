//! `checksum`: the destination side hashes its blocks and sends `Hash` records, then `rest`
//! and `done`.

use std::io::{self, Read, Write};

use rayon::prelude::*;
use sparsekit_io::{Control, Phase, Storage};

use crate::error::{Error, Stream};
use crate::hash::{hash_group, hash_one, in_hole, with_scratch, BATCH_BLOCKS};
use crate::record::{
    HashRecord, RecordWriter, BLAKE3_LEN, BLOCK_SIZE, EXT_BLAKE3, EXT_HOLES, EXT_RESUME,
    HASH_RECORD_LEN,
};
use crate::resume::ResumeState;

/// What `checksum` reads: a file or device (positional, seekable: `rest` is sent), or a
/// stream such as a pipe on stdin (no `rest`, as blockcopy does when `tell()` fails).
pub enum ChecksumInput<'a> {
    /// A regular file or block device.
    Storage(&'a dyn Storage),
    /// A pipe or other unseekable stream, read once from its current position.
    Stream(&'a mut dyn Read),
}

/// Options of [`checksum`], named after blockcopy's flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChecksumOptions {
    /// `--start`: first byte hashed.
    pub start: u64,
    /// `--end`: hash up to here (exclusive); the input must be at least this long. When
    /// set, no `rest` is sent.
    pub end: Option<u64>,
    /// sparsekit extension `--blake3` (retrieve and save must opt in too): the stream opens
    /// with `SKx1` and carries `HshB` (BLAKE3) records instead of `Hash`.
    pub blake3: bool,
    /// sparsekit extension hole awareness (retrieve and save must opt in too): the input's
    /// holes (sorted byte ranges, e.g. from [`hole_map`](crate::hole_map)); blocks inside
    /// one are not read and go as `Hole` records. `Some(vec![])` opts in with no holes.
    pub holes: Option<Vec<std::ops::Range<u64>>>,
    /// sparsekit extension `--resume` (retrieve and save must opt in too): the state of
    /// the session (from [`ResumeState::load`] on `save`'s journal; the default for a new
    /// one). The stream says where it resumes (`Resm`) and hashing starts at the
    /// checkpoint (or `start`, whichever is larger).
    pub resume: Option<ResumeState>,
}

/// What [`checksum`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChecksumSummary {
    /// `Hash` records sent.
    pub blocks: u64,
    /// Bytes hashed.
    pub bytes_hashed: u64,
    /// The offset sent in `rest`, if one was.
    pub rest: Option<u64>,
    /// Bytes written to the stream.
    pub stream_bytes: u64,
}

/// Hash the destination in 128 KiB blocks on every core and write the hash stream to
/// `out`, in order: `Hash` records, `rest` (unless `end` is set or the input is a stream),
/// `done`. Reports [`Phase::Hash`].
///
/// Memory stays bounded: a batch of [`BATCH_BLOCKS`](crate) blocks is hashed at a time,
/// and from a file each worker reads its own block.
pub fn checksum<W: Write>(
    input: ChecksumInput<'_>,
    out: W,
    opts: &ChecksumOptions,
    ctl: &mut Control<'_>,
) -> Result<ChecksumSummary, Error> {
    if let Some(end) = opts.end {
        if opts.start >= end {
            return Err(Error::InvalidArg {
                name: "start",
                reason: format!("--start {} is not below --end {end}", opts.start),
            });
        }
    }
    let mut w = RecordWriter::new(out, Stream::Hashes);
    let mut sum = ChecksumSummary::default();
    let flags = ext_flags(opts.blake3, opts.holes.is_some())
        | if opts.resume.is_some() { EXT_RESUME } else { 0 };
    if flags != 0 {
        let mut h = Vec::new();
        HashRecord::Ext { flags }.encode(&mut h);
        if let Some(r) = opts.resume {
            HashRecord::Resume {
                from: r.checkpoint,
                source_size: r.source_size,
            }
            .encode(&mut h);
        }
        w.write_all(&h)?;
    }
    // Resumed: what the cut session landed below its checkpoint is not hashed again.
    let resumed;
    let opts = match opts.resume {
        Some(r) if r.checkpoint > opts.start => {
            resumed = ChecksumOptions {
                start: r.checkpoint,
                ..opts.clone()
            };
            &resumed
        }
        _ => opts,
    };
    let past_end = opts.end.is_some_and(|e| opts.start >= e);
    match input {
        // The cut session got past `--end`: nothing is left to hash.
        _ if past_end => ctl.report(Phase::Hash, 0, Some(0))?,
        ChecksumInput::Storage(s) => from_storage(s, &mut w, opts, ctl, &mut sum)?,
        ChecksumInput::Stream(r) => from_stream(r, &mut w, opts, ctl, &mut sum)?,
    }
    let mut tail = Vec::with_capacity(12 + 4);
    if let Some(offset) = sum.rest {
        HashRecord::Rest { offset }.encode(&mut tail);
    }
    HashRecord::Done.encode(&mut tail);
    w.write_all(&tail)?;
    w.flush()?;
    sum.stream_bytes = w.bytes();
    Ok(sum)
}

/// The extension flags of the `SKx1` header (0: plain blockcopy protocol, no header).
pub(crate) fn ext_flags(blake3: bool, holes: bool) -> u32 {
    (if blake3 { EXT_BLAKE3 } else { 0 }) | (if holes { EXT_HOLES } else { 0 })
}

fn emit<W: Write>(
    w: &mut RecordWriter<W>,
    digests: &[(u64, u32, Option<[u8; 64]>)],
    sum: &mut ChecksumSummary,
    blake3: bool,
) -> Result<(), Error> {
    let mut buf = Vec::with_capacity(digests.len() * HASH_RECORD_LEN);
    for &(position, length, digest) in digests {
        let Some(digest) = digest else {
            HashRecord::Hole { position, length }.encode(&mut buf);
            sum.blocks += 1;
            continue;
        };
        if blake3 {
            HashRecord::HashB3 {
                position,
                length,
                digest: digest[..BLAKE3_LEN].try_into().expect("32 bytes"),
            }
            .encode(&mut buf);
        } else {
            HashRecord::Hash {
                position,
                length,
                digest,
            }
            .encode(&mut buf);
        }
        sum.blocks += 1;
        sum.bytes_hashed += u64::from(length);
    }
    w.write_all(&buf)
}

fn from_storage<W: Write>(
    s: &dyn Storage,
    w: &mut RecordWriter<W>,
    opts: &ChecksumOptions,
    ctl: &mut Control<'_>,
    sum: &mut ChecksumSummary,
) -> Result<(), Error> {
    let size = s.size()?;
    let limit = match opts.end {
        Some(end) if end > size => {
            return Err(Error::EndPastSize {
                path: s.path().map(|p| p.to_path_buf()),
                end,
                size,
            })
        }
        Some(end) => end,
        None => size,
    };
    let total = limit.saturating_sub(opts.start);
    let cancel = ctl.cancel().clone();
    let bs = u64::from(BLOCK_SIZE);
    let mut pos = opts.start;
    ctl.report(Phase::Hash, 0, Some(total))?;
    while pos < limit {
        let mut batch = Vec::with_capacity(BATCH_BLOCKS);
        while pos < limit && batch.len() < BATCH_BLOCKS {
            let len = (limit - pos).min(bs) as u32;
            batch.push((pos, len));
            pos += u64::from(len);
        }
        // Four blocks per task: read by the worker, hashed by one 4-way Keccak call.
        let digests = batch
            .par_chunks(4)
            .map(|group| {
                with_scratch(|bufs| {
                    if cancel.is_cancelled() {
                        return Err(Error::Aborted);
                    }
                    if let Some(holes) = &opts.holes {
                        // Hole aware: blocks inside a hole are neither read nor hashed.
                        let mut out = Vec::with_capacity(group.len());
                        for &(p, len) in group {
                            if in_hole(holes, p, len.into()) {
                                out.push((p, len, None));
                            } else {
                                let b = &mut bufs[0];
                                b.resize(len as usize);
                                s.read_exact_at(b, p)?;
                                out.push((p, len, Some(hash_one(b, opts.blake3))));
                            }
                        }
                        return Ok(out);
                    }
                    for (buf, &(p, len)) in bufs.iter_mut().zip(group) {
                        buf.resize(len as usize);
                        s.read_exact_at(buf, p)?;
                    }
                    let slices: Vec<&[u8]> = bufs
                        .iter()
                        .zip(group)
                        .map(|(b, &(_, len))| &b[..len as usize])
                        .collect();
                    let d = hash_group(&slices, opts.blake3);
                    Ok(group
                        .iter()
                        .zip(d)
                        .map(|(&(p, len), d)| (p, len, Some(d)))
                        .collect::<Vec<_>>())
                })
            })
            .collect::<Result<Vec<_>, Error>>()?
            .concat();
        emit(w, &digests, sum, opts.blake3)?;
        // Hand each batch's records on at once: retrieve compares while this side hashes
        // the next batch (a 64 KiB buffer would hold back 100 MiB worth of records).
        w.flush()?;
        ctl.report(Phase::Hash, pos - opts.start, Some(total))?;
    }
    // blockcopy sends where its read ended: the size, or `start` when that lies past it.
    if opts.end.is_none() {
        sum.rest = Some(size.max(opts.start));
    }
    Ok(())
}

/// Read until `buf` is full or the stream ends; the bytes read.
fn fill(r: &mut dyn Read, buf: &mut [u8], offset: u64) -> Result<usize, Error> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if crate::sys::is_aborted_io(&e) => return Err(Error::Aborted),
            Err(e) => {
                return Err(Error::Io(
                    sparsekit_io::IoError::new("read", e).at(offset + got as u64),
                ))
            }
        }
    }
    Ok(got)
}

/// A block's position, length and digest (`None`: a hole, not hashed).
type Digested = (u64, u32, Option<[u8; 64]>);
/// One batch's block buffers.
type Buffers = Vec<Vec<u8>>;

/// Read up to [`BATCH_BLOCKS`] blocks of the stream into `bufs` (grown as needed), their
/// `(position, length)` into `batch`; whether the stream (or `end`) was reached.
fn read_batch(
    r: &mut dyn Read,
    bufs: &mut Vec<Vec<u8>>,
    batch: &mut Vec<(u64, usize)>,
    pos: &mut u64,
    end: Option<u64>,
) -> Result<bool, Error> {
    let bs = BLOCK_SIZE as usize;
    while batch.len() < BATCH_BLOCKS {
        let want = match end {
            Some(end) if *pos >= end => return Ok(true),
            Some(end) => (end - *pos).min(bs as u64) as usize,
            None => bs,
        };
        if bufs.len() <= batch.len() {
            bufs.push(vec![0u8; bs]);
        }
        let got = fill(r, &mut bufs[batch.len()][..want], *pos)?;
        if got == 0 {
            return Ok(true);
        }
        batch.push((*pos, got));
        *pos += got as u64;
        if got < want {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The digests of a batch read by [`read_batch`], hashed four blocks per task on the pool.
fn hash_batch(
    batch: &[(u64, usize)],
    bufs: &[Vec<u8>],
    blake3: bool,
    cancel: &sparsekit_io::Cancel,
) -> Result<Vec<Digested>, Error> {
    let slices: Vec<&[u8]> = batch
        .iter()
        .zip(bufs)
        .map(|(&(_, len), b)| &b[..len])
        .collect();
    Ok(slices
        .par_chunks(4)
        .zip(batch.par_chunks(4))
        .map(|(group, pos)| {
            if cancel.is_cancelled() {
                return Err(Error::Aborted);
            }
            Ok(pos
                .iter()
                .zip(hash_group(group, blake3))
                .map(|(&(p, len), d)| (p, len as u32, Some(d)))
                .collect::<Vec<_>>())
        })
        .collect::<Result<Vec<_>, Error>>()?
        .concat())
}

fn from_stream<W: Write>(
    r: &mut dyn Read,
    w: &mut RecordWriter<W>,
    opts: &ChecksumOptions,
    ctl: &mut Control<'_>,
    sum: &mut ChecksumSummary,
) -> Result<(), Error> {
    let total = opts.end.map(|e| e - opts.start);
    let cancel = ctl.cancel().clone();
    let bs = BLOCK_SIZE as usize;
    // A pipe cannot seek: skip to `start` by reading.
    let mut pos = 0u64;
    let mut scratch = vec![0u8; bs];
    while pos < opts.start {
        ctl.check()?;
        let n = (opts.start - pos).min(bs as u64) as usize;
        let got = fill(r, &mut scratch[..n], pos)?;
        pos += got as u64;
        if got < n {
            break;
        }
    }
    drop(scratch);
    let mut eof = pos < opts.start;
    ctl.report(Phase::Hash, 0, total)?;
    // Two sets of block buffers: the pool hashes one batch while this thread reads the next
    // from the stream (a pipe is read in order by one reader; hashing after each batch was
    // read would leave the cores idle while the stream is read, and the stream waiting
    // while they hash).
    let mut reading: Vec<Vec<u8>> = Vec::new();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut hashing: Option<(Vec<(u64, usize)>, Buffers)> = None;
    loop {
        let (read, digests) = std::thread::scope(|sc| {
            let job = hashing
                .as_ref()
                .map(|(batch, bufs)| sc.spawn(|| hash_batch(batch, bufs, opts.blake3, &cancel)));
            let mut batch = Vec::with_capacity(BATCH_BLOCKS);
            let read = if eof {
                Ok(())
            } else {
                read_batch(r, &mut reading, &mut batch, &mut pos, opts.end).map(|e| eof = e)
            };
            let digests = job.map(|j| j.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            (read.map(|()| batch), digests)
        });
        // The batch hashed meanwhile goes out first, even when reading the next one failed:
        // its blocks were read before the failure, as they would have been one by one.
        if let Some(digests) = digests {
            let digests = digests?;
            let (batch, bufs) = hashing.take().expect("a batch was being hashed");
            emit(w, &digests, sum, opts.blake3)?;
            w.flush()?;
            let to = batch.last().map_or(0, |&(p, len)| p + len as u64);
            ctl.report(Phase::Hash, to.saturating_sub(opts.start), total)?;
            spare = bufs;
        }
        let batch = read?;
        if batch.is_empty() {
            break;
        }
        // The buffers just read are hashed next; the next batch is read into the other set.
        let bufs = std::mem::replace(&mut reading, std::mem::take(&mut spare));
        hashing = Some((batch, bufs));
    }
    if let Some(end) = opts.end {
        if pos < end {
            return Err(Error::EndPastSize {
                path: None,
                end,
                size: pos,
            });
        }
    }
    let done = pos.saturating_sub(opts.start);
    ctl.report(Phase::Hash, done, Some(done))?;
    Ok(())
}
