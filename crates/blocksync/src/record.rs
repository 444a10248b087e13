//! The records of the blockcopy protocol (specs/blockcopy-protocol.md): a 4-byte ASCII tag,
//! then big-endian fields. No magic, no version: the first tag is the first byte.

use std::io::{self, Read, Write};

use crate::error::{Error, Stream};

/// Block size of the protocol: 128 KiB.
pub const BLOCK_SIZE: u32 = 128 * 1024;
/// SHA3-512 digest length.
pub const DIGEST_LEN: usize = 64;
/// The largest record length accepted from a stream (`data`/`dlzm` payloads, `Hash`
/// lengths, and a decompressed `dlzm` block). blockcopy never sends more than one block
/// (128 KiB); this leaves room for other senders without letting a hostile length make us
/// allocate gigabytes.
pub const MAX_RECORD_LEN: u32 = 16 << 20;

/// `Hash`: position u64, length u32, digest[64].
pub const TAG_HASH: [u8; 4] = *b"Hash";
/// `hash` (deprecated): length u32, digest[64]; position implied.
pub const TAG_HASH_SEQ: [u8; 4] = *b"hash";
/// `rest`: offset u64.
pub const TAG_REST: [u8; 4] = *b"rest";
/// `done`: end of either stream.
pub const TAG_DONE: [u8; 4] = *b"done";
/// `data`: position u64, length u32, bytes.
pub const TAG_DATA: [u8; 4] = *b"data";
/// `dlzm`: position u64, length u32, xz-compressed bytes.
pub const TAG_DLZM: [u8; 4] = *b"dlzm";

/// sparsekit extension (both sides opted in): the first record of both streams, `SKx1`
/// then flags u32 ([`EXT_BLAKE3`]). A blockcopy peer stops at this unknown tag, so a side
/// that did not opt in can never misread what follows.
pub const TAG_EXT: [u8; 4] = *b"SKx1";
/// sparsekit extension: `HshB`: position u64, length u32, BLAKE3 digest[32].
pub const TAG_HASH_B3: [u8; 4] = *b"HshB";
/// Extension flag: blocks are compared by BLAKE3 (`HshB` records) instead of SHA3-512.
pub const EXT_BLAKE3: u32 = 1;
/// Extension flag: hole awareness. Holes are neither read nor hashed: the hash stream says
/// `Hole` for a destination block inside a hole, the block stream says `zero` for a block
/// of zeros (a source hole, or zeros read), which `save` punches (or zeroes).
pub const EXT_HOLES: u32 = 2;
/// sparsekit extension `Hole` (hash stream): position u64, length u32; the destination's
/// block there lies in a hole.
pub const TAG_HOLE: [u8; 4] = *b"Hole";
/// sparsekit extension `zero` (block stream): position u64, length u32, no payload; the
/// block is all zeros.
pub const TAG_ZERO: [u8; 4] = *b"zero";
/// BLAKE3 digest length.
pub const BLAKE3_LEN: usize = 32;
/// Extension flag (retrieve and save): a block may travel zstd-compressed (`dzst`).
pub const EXT_ZSTD: u32 = 4;
/// Extension flag (retrieve and save): the block stream says the source's size (`size`)
/// and `save` truncates (or extends) the destination to it after `done`.
pub const EXT_TRUNCATE: u32 = 8;
/// Extension flag (all three sides): a resumable session. The hash stream says where it
/// resumes (`Resm`), the block stream carries the source's size (`size`) and checkpoints
/// (`ckpt`) that `save` records in its journal.
pub const EXT_RESUME: u32 = 16;
/// The flags that concern the hash stream (checksum -> retrieve); the block stream's
/// header carries every flag.
pub const HASH_STREAM_FLAGS: u32 = EXT_BLAKE3 | EXT_HOLES | EXT_RESUME;
/// sparsekit extension `Resm` (hash stream, right after `SKx1`): from u64, source size
/// u64. Hashes start at `from` (what an earlier, cut session already landed is not hashed
/// again); the source size that session saw, or `u64::MAX` for a new session.
pub const TAG_RESUME: [u8; 4] = *b"Resm";
/// sparsekit extension `dzst` (block stream): position u64, length u32, zstd frame.
pub const TAG_DZST: [u8; 4] = *b"dzst";
/// sparsekit extension `size` (block stream): source size u64, zero u32 (the 16-byte
/// header of the other block records, with no payload).
pub const TAG_SIZE: [u8; 4] = *b"size";
/// sparsekit extension `ckpt` (block stream): position u64, zero u32. Every destination
/// block below `position` has been sent or found equal.
pub const TAG_CKPT: [u8; 4] = *b"ckpt";

/// Bytes of a `Hash` record on the wire.
pub const HASH_RECORD_LEN: usize = 4 + 8 + 4 + DIGEST_LEN;
/// Bytes of a `data`/`dlzm` record header (tag, position, length).
pub const BLOCK_HEADER_LEN: usize = 4 + 8 + 4;

/// A record of the checksum -> retrieve stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashRecord {
    /// The destination's block at `position`, `length` bytes long, hashes to `digest`.
    Hash {
        /// Byte position in the destination.
        position: u64,
        /// Bytes hashed (less than 128 KiB only for the last block).
        length: u32,
        /// SHA3-512 of those bytes.
        digest: [u8; DIGEST_LEN],
    },
    /// Deprecated form of `Hash` (blockcopy before 0.0.2): the position is where the
    /// previous block ended in the source.
    HashSeq {
        /// Bytes hashed.
        length: u32,
        /// SHA3-512 of those bytes.
        digest: [u8; DIGEST_LEN],
    },
    /// The destination ended at `offset`: send every source byte from there on.
    Rest {
        /// Destination size (or where its checksum stopped).
        offset: u64,
    },
    /// End of the stream.
    Done,
    /// Extension header (`SKx1`): the flags both sides opted in to.
    Ext {
        /// [`EXT_BLAKE3`].
        flags: u32,
    },
    /// Extension (`Hole`): the destination's block lies in a hole (reads as zeros).
    Hole {
        /// Byte position in the destination.
        position: u64,
        /// Bytes of the block.
        length: u32,
    },
    /// Extension (`Resm`): the session resumes at `from`.
    Resume {
        /// First destination byte hashed in this run.
        from: u64,
        /// The source size of the cut session, `u64::MAX` for a new one.
        source_size: u64,
    },
    /// Extension (`HshB`): like `Hash`, with a BLAKE3 digest.
    HashB3 {
        /// Byte position in the destination.
        position: u64,
        /// Bytes hashed.
        length: u32,
        /// BLAKE3 of those bytes.
        digest: [u8; BLAKE3_LEN],
    },
}

impl HashRecord {
    /// Append the record's wire bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            HashRecord::Hash {
                position,
                length,
                digest,
            } => {
                out.extend_from_slice(&TAG_HASH);
                out.extend_from_slice(&position.to_be_bytes());
                out.extend_from_slice(&length.to_be_bytes());
                out.extend_from_slice(digest);
            }
            HashRecord::HashSeq { length, digest } => {
                out.extend_from_slice(&TAG_HASH_SEQ);
                out.extend_from_slice(&length.to_be_bytes());
                out.extend_from_slice(digest);
            }
            HashRecord::Rest { offset } => {
                out.extend_from_slice(&TAG_REST);
                out.extend_from_slice(&offset.to_be_bytes());
            }
            HashRecord::Done => out.extend_from_slice(&TAG_DONE),
            HashRecord::Hole { position, length } => {
                out.extend_from_slice(&TAG_HOLE);
                out.extend_from_slice(&position.to_be_bytes());
                out.extend_from_slice(&length.to_be_bytes());
            }
            HashRecord::Ext { flags } => {
                out.extend_from_slice(&TAG_EXT);
                out.extend_from_slice(&flags.to_be_bytes());
            }
            HashRecord::Resume { from, source_size } => {
                out.extend_from_slice(&TAG_RESUME);
                out.extend_from_slice(&from.to_be_bytes());
                out.extend_from_slice(&source_size.to_be_bytes());
            }
            HashRecord::HashB3 {
                position,
                length,
                digest,
            } => {
                out.extend_from_slice(&TAG_HASH_B3);
                out.extend_from_slice(&position.to_be_bytes());
                out.extend_from_slice(&length.to_be_bytes());
                out.extend_from_slice(digest);
            }
        }
    }
}

/// The kind of a block record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// Raw bytes.
    Data,
    /// xz-compressed bytes.
    Dlzm,
    /// Extension: `length` bytes of zeros, no payload.
    Zero,
    /// Extension: a zstd frame that decompresses to the block.
    Zstd,
    /// Extension `size`: `position` is the source's size; no payload.
    SourceSize,
    /// Extension `ckpt`: every block below `position` was dealt with; no payload.
    Checkpoint,
}

impl BlockKind {
    /// The record's tag.
    pub fn tag(self) -> [u8; 4] {
        match self {
            BlockKind::Data => TAG_DATA,
            BlockKind::Dlzm => TAG_DLZM,
            BlockKind::Zero => TAG_ZERO,
            BlockKind::Zstd => TAG_DZST,
            BlockKind::SourceSize => TAG_SIZE,
            BlockKind::Checkpoint => TAG_CKPT,
        }
    }

    /// Whether the record carries no payload (its length is not a payload length).
    pub fn bodiless(self) -> bool {
        matches!(
            self,
            BlockKind::Zero | BlockKind::SourceSize | BlockKind::Checkpoint
        )
    }
}

/// The header of a `data`/`dlzm` record; `length` payload bytes follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// `data` or `dlzm`.
    pub kind: BlockKind,
    /// Byte position in the destination.
    pub position: u64,
    /// Payload bytes on the wire (compressed ones for `dlzm`).
    pub length: u32,
}

impl BlockHeader {
    /// The header's 16 wire bytes.
    pub fn encode(&self) -> [u8; BLOCK_HEADER_LEN] {
        let mut h = [0u8; BLOCK_HEADER_LEN];
        h[..4].copy_from_slice(&self.kind.tag());
        h[4..12].copy_from_slice(&self.position.to_be_bytes());
        h[12..].copy_from_slice(&self.length.to_be_bytes());
        h
    }
}

/// A record of the retrieve -> save stream, with its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockRecord {
    /// A block (raw or compressed, as received).
    Block {
        /// Tag, position, length.
        header: BlockHeader,
        /// `header.length` bytes.
        payload: Vec<u8>,
    },
    /// End of the stream.
    Done,
}

impl BlockRecord {
    /// Append the record's wire bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            BlockRecord::Block { header, payload } => {
                out.extend_from_slice(&header.encode());
                out.extend_from_slice(payload);
            }
            BlockRecord::Done => out.extend_from_slice(&TAG_DONE),
        }
    }
}

/// A failed stream read or write; a cancelled one (see [`crate::sys`]) is [`Error::Aborted`].
pub(crate) fn stream_error(
    stream: Stream,
    op: &'static str,
    offset: u64,
    source: io::Error,
) -> Error {
    if crate::sys::is_aborted_io(&source) {
        return Error::Aborted;
    }
    Error::StreamIo {
        stream,
        op,
        offset,
        source,
    }
}

/// Writes records to a stream, counting bytes for progress and error messages.
pub struct RecordWriter<W> {
    inner: W,
    stream: Stream,
    offset: u64,
}

impl<W: Write> RecordWriter<W> {
    /// Wrap `inner` (buffer it yourself if it is unbuffered and records are small).
    pub fn new(inner: W, stream: Stream) -> Self {
        RecordWriter {
            inner,
            stream,
            offset: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.offset
    }

    /// Write raw bytes (one or more encoded records).
    pub fn write_all(&mut self, buf: &[u8]) -> Result<(), Error> {
        self.inner
            .write_all(buf)
            .map_err(|source| stream_error(self.stream, "write", self.offset, source))?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// Write a `data`/`dlzm` record (or a `zero` record, with an empty payload).
    pub fn write_block(&mut self, header: BlockHeader, payload: &[u8]) -> Result<(), Error> {
        debug_assert!(header.kind.bodiless() || header.length as usize == payload.len());
        self.write_all(&header.encode())?;
        self.write_all(payload)
    }

    /// Flush the underlying writer.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.inner
            .flush()
            .map_err(|source| stream_error(self.stream, "write", self.offset, source))
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Reads records from a stream, knowing at which byte each field starts so that a cut or
/// corrupt stream is reported precisely.
pub struct RecordReader<R> {
    inner: R,
    stream: Stream,
    offset: u64,
    extensions: bool,
}

impl<R: Read> RecordReader<R> {
    /// Read records of `stream` from `inner` (buffer it if it is unbuffered).
    pub fn new(inner: R, stream: Stream) -> Self {
        RecordReader {
            inner,
            stream,
            offset: 0,
            extensions: false,
        }
    }

    /// Accept sparsekit's extension records (`HshB`); only when both sides opted in.
    /// Without this they are unknown tags, as they are to blockcopy.
    pub fn with_extensions(mut self) -> Self {
        self.extensions = true;
        self
    }

    /// Read the extension header that opens a stream when both sides opted in: `SKx1`
    /// and its flags. Anything else means the other side did not opt in.
    pub fn read_ext_header(&mut self) -> Result<u32, Error> {
        let (at, tag) = self.tag("the SKx1 extension header (the other side must opt in too)")?;
        if tag != TAG_EXT {
            return Err(Error::NotNegotiated {
                stream: self.stream,
                offset: at,
                tag,
            });
        }
        self.u32_field("the 4-byte flags of the SKx1 header")
    }

    /// Bytes consumed so far.
    pub fn bytes(&self) -> u64 {
        self.offset
    }

    /// Fill `buf`, or fail naming `expected` at the current byte.
    fn field(&mut self, buf: &mut [u8], expected: &'static str) -> Result<(), Error> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => {
                    return Err(Error::Truncated {
                        stream: self.stream,
                        offset: self.offset,
                        expected,
                        got,
                    })
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(stream_error(
                        self.stream,
                        "read",
                        self.offset + got as u64,
                        source,
                    ))
                }
            }
        }
        self.offset += buf.len() as u64;
        Ok(())
    }

    fn u64_field(&mut self, expected: &'static str) -> Result<u64, Error> {
        let mut b = [0u8; 8];
        self.field(&mut b, expected)?;
        Ok(u64::from_be_bytes(b))
    }

    fn u32_field(&mut self, expected: &'static str) -> Result<u32, Error> {
        let mut b = [0u8; 4];
        self.field(&mut b, expected)?;
        Ok(u32::from_be_bytes(b))
    }

    fn tag(&mut self, expected: &'static str) -> Result<(u64, [u8; 4]), Error> {
        let at = self.offset;
        let mut tag = [0u8; 4];
        self.field(&mut tag, expected)?;
        Ok((at, tag))
    }

    fn check_len(&self, at: u64, field: &'static str, length: u32) -> Result<(), Error> {
        if length > MAX_RECORD_LEN {
            return Err(Error::BadField {
                stream: self.stream,
                offset: at,
                field,
                value: length.into(),
                max: MAX_RECORD_LEN.into(),
            });
        }
        Ok(())
    }

    fn check_end(&self, at: u64, position: u64, length: u32) -> Result<(), Error> {
        if position.checked_add(length.into()).is_none() {
            return Err(Error::BadField {
                stream: self.stream,
                offset: at,
                field: "position",
                value: position,
                max: u64::MAX - u64::from(length),
            });
        }
        Ok(())
    }

    /// The next record of a hash stream, and the stream byte it started at.
    pub fn read_hash_record(&mut self) -> Result<(u64, HashRecord), Error> {
        let (at, tag) = self.tag("a record tag (Hash, hash, rest or done)")?;
        let rec = match tag {
            TAG_HASH => {
                let position = self.u64_field("the 8-byte position of a Hash record")?;
                let length = self.u32_field("the 4-byte length of a Hash record")?;
                self.check_len(at, "length of a Hash record", length)?;
                self.check_end(at, position, length)?;
                let mut digest = [0u8; DIGEST_LEN];
                self.field(&mut digest, "the 64-byte digest of a Hash record")?;
                HashRecord::Hash {
                    position,
                    length,
                    digest,
                }
            }
            TAG_HASH_SEQ => {
                let length = self.u32_field("the 4-byte length of a hash record")?;
                self.check_len(at, "length of a hash record", length)?;
                let mut digest = [0u8; DIGEST_LEN];
                self.field(&mut digest, "the 64-byte digest of a hash record")?;
                HashRecord::HashSeq { length, digest }
            }
            TAG_REST => HashRecord::Rest {
                offset: self.u64_field("the 8-byte offset of a rest record")?,
            },
            TAG_DONE => HashRecord::Done,
            TAG_HOLE if self.extensions => {
                let position = self.u64_field("the 8-byte position of a Hole record")?;
                let length = self.u32_field("the 4-byte length of a Hole record")?;
                self.check_len(at, "length of a Hole record", length)?;
                self.check_end(at, position, length)?;
                HashRecord::Hole { position, length }
            }
            TAG_RESUME if self.extensions => HashRecord::Resume {
                from: self.u64_field("the 8-byte position of a Resm record")?,
                source_size: self.u64_field("the 8-byte source size of a Resm record")?,
            },
            TAG_HASH_B3 if self.extensions => {
                let position = self.u64_field("the 8-byte position of a HshB record")?;
                let length = self.u32_field("the 4-byte length of a HshB record")?;
                self.check_len(at, "length of a HshB record", length)?;
                self.check_end(at, position, length)?;
                let mut digest = [0u8; BLAKE3_LEN];
                self.field(&mut digest, "the 32-byte digest of a HshB record")?;
                HashRecord::HashB3 {
                    position,
                    length,
                    digest,
                }
            }
            tag => {
                return Err(Error::UnknownTag {
                    stream: self.stream,
                    offset: at,
                    tag,
                })
            }
        };
        Ok((at, rec))
    }

    /// The next record header of a block stream (`None` for `done`) and the stream byte it
    /// started at. The caller reads the payload with [`RecordReader::read_payload`].
    pub fn read_block_header(&mut self) -> Result<(u64, Option<BlockHeader>), Error> {
        let (at, tag) = self.tag("a record tag (data, dlzm or done)")?;
        let kind = match tag {
            TAG_DATA => BlockKind::Data,
            TAG_DLZM => BlockKind::Dlzm,
            TAG_ZERO if self.extensions => BlockKind::Zero,
            TAG_DZST if self.extensions => BlockKind::Zstd,
            TAG_SIZE if self.extensions => BlockKind::SourceSize,
            TAG_CKPT if self.extensions => BlockKind::Checkpoint,
            TAG_DONE => return Ok((at, None)),
            tag => {
                return Err(Error::UnknownTag {
                    stream: self.stream,
                    offset: at,
                    tag,
                })
            }
        };
        let (pos_what, len_what, len_field) = match kind {
            BlockKind::Data => (
                "the 8-byte position of a data record",
                "the 4-byte length of a data record",
                "length of a data record",
            ),
            BlockKind::Zero => (
                "the 8-byte position of a zero record",
                "the 4-byte length of a zero record",
                "length of a zero record",
            ),
            BlockKind::Dlzm => (
                "the 8-byte position of a dlzm record",
                "the 4-byte length of a dlzm record",
                "length of a dlzm record",
            ),
            BlockKind::Zstd => (
                "the 8-byte position of a dzst record",
                "the 4-byte length of a dzst record",
                "length of a dzst record",
            ),
            BlockKind::SourceSize => (
                "the 8-byte source size of a size record",
                "the 4 zero bytes of a size record",
                "zero field of a size record",
            ),
            BlockKind::Checkpoint => (
                "the 8-byte position of a ckpt record",
                "the 4 zero bytes of a ckpt record",
                "zero field of a ckpt record",
            ),
        };
        let position = self.u64_field(pos_what)?;
        let length = self.u32_field(len_what)?;
        if matches!(kind, BlockKind::SourceSize | BlockKind::Checkpoint) && length != 0 {
            return Err(Error::BadField {
                stream: self.stream,
                offset: at,
                field: len_field,
                value: length.into(),
                max: 0,
            });
        }
        self.check_len(at, len_field, length)?;
        self.check_end(at, position, length)?;
        Ok((
            at,
            Some(BlockHeader {
                kind,
                position,
                length,
            }),
        ))
    }

    /// Read the payload of `header` into `buf` (cleared first). Memory grows with the bytes
    /// that actually arrive, never with the announced length alone.
    pub fn read_payload(&mut self, header: &BlockHeader, buf: &mut Vec<u8>) -> Result<(), Error> {
        buf.clear();
        let want = if header.kind.bodiless() {
            0
        } else {
            header.length as usize
        };
        let expected = match header.kind {
            BlockKind::Data => "the bytes of a data record",
            BlockKind::Dlzm => "the compressed bytes of a dlzm record",
            BlockKind::Zstd => "the compressed bytes of a dzst record",
            _ => "nothing",
        };
        let start = self.offset;
        const STEP: usize = 1 << 20;
        while buf.len() < want {
            let old = buf.len();
            let n = (want - old).min(STEP);
            buf.resize(old + n, 0);
            let mut got = 0;
            while got < n {
                match self.inner.read(&mut buf[old + got..old + n]) {
                    Ok(0) => {
                        return Err(Error::Truncated {
                            stream: self.stream,
                            offset: start,
                            expected,
                            got: old + got,
                        })
                    }
                    Ok(k) => got += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(source) => {
                        return Err(stream_error(
                            self.stream,
                            "read",
                            start + (old + got) as u64,
                            source,
                        ))
                    }
                }
            }
        }
        self.offset += want as u64;
        Ok(())
    }

    /// The next whole record of a block stream.
    pub fn read_block_record(&mut self) -> Result<(u64, BlockRecord), Error> {
        let (at, header) = self.read_block_header()?;
        let Some(header) = header else {
            return Ok((at, BlockRecord::Done));
        };
        let mut payload = Vec::new();
        self.read_payload(&header, &mut payload)?;
        Ok((at, BlockRecord::Block { header, payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_record_is_80_bytes() {
        let mut v = Vec::new();
        HashRecord::Hash {
            position: 1,
            length: 2,
            digest: [3; 64],
        }
        .encode(&mut v);
        assert_eq!(v.len(), HASH_RECORD_LEN);
        assert_eq!(&v[..16], b"Hash\0\0\0\0\0\0\0\x01\0\0\0\x02");
    }

    #[test]
    fn huge_length_refused_without_allocating() {
        let mut s = b"data".to_vec();
        s.extend_from_slice(&0u64.to_be_bytes());
        s.extend_from_slice(&u32::MAX.to_be_bytes());
        let mut r = RecordReader::new(&s[..], Stream::Blocks);
        let e = r.read_block_header().unwrap_err();
        assert!(matches!(e, Error::BadField { offset: 0, .. }), "{e}");
    }

    #[test]
    fn position_overflow_refused() {
        let mut s = b"Hash".to_vec();
        s.extend_from_slice(&(u64::MAX - 1).to_be_bytes());
        s.extend_from_slice(&2u32.to_be_bytes());
        s.extend_from_slice(&[0; 64]);
        let mut r = RecordReader::new(&s[..], Stream::Hashes);
        assert!(matches!(
            r.read_hash_record().unwrap_err(),
            Error::BadField {
                field: "position",
                ..
            }
        ));
    }
}
