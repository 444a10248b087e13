//! `save`: the destination side writes the received blocks at their positions.

use std::io::Read;

use sparsekit_io::{Control, Phase, Storage};

use std::path::PathBuf;

use crate::checksum::ext_flags;
use crate::error::{Error, Stream};
use crate::record::{
    BlockKind, RecordReader, EXT_RESUME, EXT_TRUNCATE, EXT_ZSTD, MAX_RECORD_LEN, TAG_EXT,
};
use crate::resume::{Journal, ResumeState};

/// Options of [`save`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SaveOptions {
    /// sparsekit extension `--blake3` (checksum and retrieve must opt in too): the block
    /// stream opens with the `SKx1` header.
    pub blake3: bool,
    /// sparsekit extension hole awareness (checksum and retrieve must opt in too): `zero`
    /// records become holes (or written zeros where the storage cannot punch).
    pub holes: bool,
    /// sparsekit extension `--zstd` (retrieve must opt in too): accept `dzst` records.
    pub zstd: bool,
    /// sparsekit extension `--truncate` (retrieve must opt in too): after `done`, make
    /// the destination exactly as long as the source (a block device must already be).
    pub truncate: bool,
    /// sparsekit extension `--resume` (checksum and retrieve must opt in too): the
    /// journal file. Every checkpoint of the stream is recorded there once the blocks
    /// before it are written (and the destination flushed); the journal is removed when
    /// `done` arrives. A cut session is continued by running the three sides again with
    /// the same journal ([`ResumeState::load`] for `checksum`).
    pub resume: Option<PathBuf>,
}

impl SaveOptions {
    fn flags(&self) -> u32 {
        ext_flags(self.blake3, self.holes)
            | if self.zstd { EXT_ZSTD } else { 0 }
            | if self.truncate { EXT_TRUNCATE } else { 0 }
            | if self.resume.is_some() { EXT_RESUME } else { 0 }
    }
}

/// Make `[pos, pos + len)` read as zeros: extend a shorter file first (the extension is a
/// hole), then punch a hole, or write zeros where punching is not supported.
fn zero_range<S: Storage + ?Sized>(dst: &S, pos: u64, len: u64) -> Result<(), Error> {
    let end = pos + len;
    let size = dst.size()?;
    if end > size {
        dst.set_len(end)?;
        if pos >= size {
            return Ok(());
        }
    }
    let len = end.min(size) - pos;
    if dst.punch_hole(pos, len).is_err() {
        dst.write_zeroes(pos, len)?;
    }
    Ok(())
}

/// What [`save`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SaveSummary {
    /// `data`/`dlzm` records written.
    pub blocks_written: u64,
    /// Bytes written to the destination.
    pub bytes_written: u64,
    /// Bytes of the block stream read (up to and including `done`).
    pub stream_bytes: u64,
}

/// Read the block stream from `blocks` and write each block at its position in `dst`,
/// never truncating (a larger destination keeps its tail). Each record is written only
/// once it arrived whole, so a cut stream leaves the blocks before it intact and nothing
/// past what was received. Succeeds only when `done` arrives (then `dst` is flushed);
/// bytes after `done` are not read. Reports [`Phase::Write`].
pub fn save<S: Storage + ?Sized, R: Read>(
    dst: &S,
    blocks: R,
    opts: &SaveOptions,
    ctl: &mut Control<'_>,
) -> Result<SaveSummary, Error> {
    if let Some(path) = &opts.resume {
        // A journal path that is a FIFO or a device is refused before anything is read
        // or written (opening it at the first checkpoint could block, and removing it at
        // the end would delete someone's FIFO).
        crate::resume::check_journal_path(path)?;
    }
    let mut rd = RecordReader::new(blocks, Stream::Blocks);
    let flags = opts.flags();
    if flags != 0 {
        rd = rd.with_extensions();
        if rd.read_ext_header()? != flags {
            return Err(Error::NotNegotiated {
                stream: Stream::Blocks,
                offset: 0,
                tag: TAG_EXT,
            });
        }
    }
    // `--truncate`, `--resume`: the source's size comes first.
    let mut source_size = None;
    if opts.truncate || opts.resume.is_some() {
        let (at, header) = rd.read_block_header()?;
        match header {
            Some(h) if h.kind == BlockKind::SourceSize => source_size = Some(h.position),
            other => {
                return Err(Error::Unexpected {
                    stream: Stream::Blocks,
                    offset: at,
                    expected: "the size record of --truncate/--resume",
                    tag: other.map_or(crate::record::TAG_DONE, |h| h.kind.tag()),
                })
            }
        }
    }
    // Opened at the first checkpoint: until then an earlier journal stays as it was.
    let mut journal: Option<Journal> = None;
    // Blocks written since the destination was last flushed for a checkpoint.
    let mut dirty = false;
    let mut sum = SaveSummary::default();
    let mut payload = Vec::new();
    let mut plain = Vec::new();
    ctl.report(Phase::Write, 0, None)?;
    loop {
        let (at, header) = rd.read_block_header()?;
        let Some(header) = header else { break };
        rd.read_payload(&header, &mut payload)?;
        let data = match header.kind {
            BlockKind::SourceSize => {
                return Err(Error::Unexpected {
                    stream: Stream::Blocks,
                    offset: at,
                    expected: "a block record (size comes first, once)",
                    tag: header.kind.tag(),
                })
            }
            BlockKind::Checkpoint => {
                if let Some(path) = &opts.resume {
                    // The blocks before the checkpoint reach the disk before the journal
                    // says so.
                    if dirty {
                        dst.flush()?;
                        dirty = false;
                    }
                    if journal.is_none() {
                        journal = Some(Journal::open(path)?);
                    }
                    let j = journal.as_mut().expect("opened above");
                    j.record(ResumeState {
                        checkpoint: header.position,
                        source_size: source_size.unwrap_or(u64::MAX),
                    })?;
                }
                continue;
            }
            BlockKind::Zstd | BlockKind::Dlzm => {
                let unpack = if header.kind == BlockKind::Zstd {
                    zstd_decompress
                } else {
                    xz_decompress
                };
                unpack(&payload, &mut plain).map_err(|reason| Error::BadCompressed {
                    offset: at,
                    position: header.position,
                    reason,
                })?;
                if header.position.checked_add(plain.len() as u64).is_none() {
                    return Err(Error::BadField {
                        stream: Stream::Blocks,
                        offset: at,
                        field: "position",
                        value: header.position,
                        max: u64::MAX - plain.len() as u64,
                    });
                }
                &plain
            }
            BlockKind::Zero => {
                dirty = true;
                zero_range(dst, header.position, header.length.into())?;
                sum.blocks_written += 1;
                sum.bytes_written += u64::from(header.length);
                ctl.report(Phase::Write, sum.bytes_written, None)?;
                continue;
            }
            BlockKind::Data => &payload,
        };
        dirty = true;
        dst.write_all_at(data, header.position)?;
        sum.blocks_written += 1;
        sum.bytes_written += data.len() as u64;
        ctl.report(Phase::Write, sum.bytes_written, None)?;
    }
    if opts.truncate {
        if let Some(size) = source_size {
            if dst.size()? != size {
                dst.set_len(size)?;
            }
        }
    }
    dst.flush()?;
    if let Some(path) = &opts.resume {
        // Complete: nothing to resume (also removes a journal of an earlier, cut run).
        drop(journal);
        crate::resume::remove_journal(path)?;
    }
    sum.stream_bytes = rd.bytes();
    ctl.report(Phase::Write, sum.bytes_written, Some(sum.bytes_written))?;
    Ok(sum)
}

/// Decompress a `dzst` payload (one or more zstd frames) into `out`, refusing more than
/// [`MAX_RECORD_LEN`] bytes.
pub(crate) fn zstd_decompress(data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let dec = zstd::stream::read::Decoder::with_buffer(data).map_err(|e| e.to_string())?;
    read_capped(dec, out)
}

/// Decompress an `.xz` payload (concatenated streams allowed, as Python's
/// `lzma.decompress` does) into `out`, refusing more than [`MAX_RECORD_LEN`] bytes.
pub(crate) fn xz_decompress(data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    read_capped(liblzma::read::XzDecoder::new_multi_decoder(data), out)
}

/// Everything `dec` gives into `out` (cleared first), refusing more than
/// [`MAX_RECORD_LEN`] bytes.
fn read_capped(dec: impl Read, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    let limit = u64::from(MAX_RECORD_LEN);
    dec.take(limit + 1)
        .read_to_end(out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > limit {
        return Err(format!("it expands past {limit} bytes"));
    }
    Ok(())
}
