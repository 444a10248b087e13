//! `save`: the destination side writes the received blocks at their positions.

use std::io::Read;

use sparsekit_io::{Control, Phase, Storage};

use crate::checksum::ext_flags;
use crate::error::{Error, Stream};
use crate::record::{BlockKind, RecordReader, MAX_RECORD_LEN, TAG_EXT};

/// Options of [`save`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SaveOptions {
    /// sparsekit extension `--blake3` (checksum and retrieve must opt in too): the block
    /// stream opens with the `SKx1` header.
    pub blake3: bool,
    /// sparsekit extension hole awareness (checksum and retrieve must opt in too): `zero`
    /// records become holes (or written zeros where the storage cannot punch).
    pub holes: bool,
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
    let mut rd = RecordReader::new(blocks, Stream::Blocks);
    let flags = ext_flags(opts.blake3, opts.holes);
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
    let mut sum = SaveSummary::default();
    let mut payload = Vec::new();
    let mut plain = Vec::new();
    ctl.report(Phase::Write, 0, None)?;
    loop {
        let (at, header) = rd.read_block_header()?;
        let Some(header) = header else { break };
        rd.read_payload(&header, &mut payload)?;
        let data = match header.kind {
            BlockKind::Zero => {
                zero_range(dst, header.position, header.length.into())?;
                sum.blocks_written += 1;
                sum.bytes_written += u64::from(header.length);
                ctl.report(Phase::Write, sum.bytes_written, None)?;
                continue;
            }
            BlockKind::Data => &payload,
            BlockKind::Dlzm => {
                xz_decompress(&payload, &mut plain).map_err(|reason| Error::BadCompressed {
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
        };
        dst.write_all_at(data, header.position)?;
        sum.blocks_written += 1;
        sum.bytes_written += data.len() as u64;
        ctl.report(Phase::Write, sum.bytes_written, None)?;
    }
    dst.flush()?;
    sum.stream_bytes = rd.bytes();
    ctl.report(Phase::Write, sum.bytes_written, Some(sum.bytes_written))?;
    Ok(sum)
}

/// Decompress an `.xz` payload (concatenated streams allowed, as Python's
/// `lzma.decompress` does) into `out`, refusing more than [`MAX_RECORD_LEN`] bytes.
pub(crate) fn xz_decompress(data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    use liblzma::read::XzDecoder;
    out.clear();
    let dec = XzDecoder::new_multi_decoder(data);
    let limit = u64::from(MAX_RECORD_LEN);
    dec.take(limit + 1)
        .read_to_end(out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > limit {
        return Err(format!("it expands past {limit} bytes"));
    }
    Ok(())
}
