use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use sparsekit_io::{Aborted, ErrorInfo, IoError};

/// Which of the two streams of the protocol a record came from or went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// checksum -> retrieve: `Hash`, `hash`, `rest`, `done`.
    Hashes,
    /// retrieve -> save: `data`, `dlzm`, `done`.
    Blocks,
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stream::Hashes => "hash stream",
            Stream::Blocks => "block stream",
        })
    }
}

/// Everything that can go wrong in `checksum`, `retrieve` and `save`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the file or device failed.
    Io(IoError),
    /// Reading or writing a stream (pipe, socket, stdin/stdout) failed.
    StreamIo {
        /// Which stream.
        stream: Stream,
        /// `read` or `write`.
        op: &'static str,
        /// Bytes of the stream before the failure.
        offset: u64,
        /// The OS error.
        source: io::Error,
    },
    /// The stream ended in the middle of a record, or before `done`.
    Truncated {
        /// Which stream.
        stream: Stream,
        /// Stream byte where the missing field starts.
        offset: u64,
        /// What was expected there (`the 8-byte position of a Hash record`).
        expected: &'static str,
        /// Bytes of that field that did arrive.
        got: usize,
    },
    /// A record tag that is not in the protocol.
    UnknownTag {
        /// Which stream.
        stream: Stream,
        /// Stream byte where the tag starts.
        offset: u64,
        /// The four bytes found.
        tag: [u8; 4],
    },
    /// This side opted in to an extension (`--blake3`) and the other did not: the stream
    /// does not open with the `SKx1` header, or its flags differ.
    NotNegotiated {
        /// Which stream.
        stream: Stream,
        /// Stream byte where the header was expected.
        offset: u64,
        /// The four bytes found instead (the header itself when only the flags differ).
        tag: [u8; 4],
    },
    /// A record field out of bounds: a length above the limit, a position whose end
    /// overflows.
    BadField {
        /// Which stream.
        stream: Stream,
        /// Stream byte where the record starts.
        offset: u64,
        /// The field (`length of a data record`).
        field: &'static str,
        /// The value found.
        value: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// A `dlzm` payload that does not decompress.
    BadCompressed {
        /// Stream byte where the record starts.
        offset: u64,
        /// The block's position in the destination.
        position: u64,
        /// What the decoder said.
        reason: String,
    },
    /// `end` lies past the end of the file being checksummed.
    EndPastSize {
        /// The file.
        path: Option<PathBuf>,
        /// Requested end.
        end: u64,
        /// The file's size.
        size: u64,
    },
    /// A bad option value (`start >= end`).
    InvalidArg {
        /// The option.
        name: &'static str,
        /// Why it is wrong, quoting the value.
        reason: String,
    },
    /// A known record where another was required (the `size` record that must open a
    /// block stream with `--truncate` or `--resume`, the `Resm` record of a resumed hash
    /// stream).
    Unexpected {
        /// Which stream.
        stream: Stream,
        /// Stream byte where the record starts.
        offset: u64,
        /// What was required there.
        expected: &'static str,
        /// The tag found.
        tag: [u8; 4],
    },
    /// `--resume`: the journal of the cut session recorded another source size than the
    /// source has now, so the blocks it landed may not be the source's any more.
    ResumeMismatch {
        /// Source size recorded by the cut session.
        recorded: u64,
        /// Source size now.
        size: u64,
    },
    /// `--resume`: the journal file is not one this crate wrote (or was cut).
    BadJournal {
        /// The journal file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Cancelled through the [`sparsekit_io::Cancel`] token.
    Aborted,
}

impl From<IoError> for Error {
    fn from(e: IoError) -> Self {
        Error::Io(e)
    }
}

impl From<Aborted> for Error {
    fn from(_: Aborted) -> Self {
        Error::Aborted
    }
}

impl Error {
    /// Whether the stream ended early (no `done`, or inside a record).
    pub fn is_truncated(&self) -> bool {
        matches!(self, Error::Truncated { .. })
    }
}

impl ErrorInfo for Error {
    /// A stable code: `ERR_SPARSEKIT_IO` for OS errors, `ERR_SPARSEKIT_PROTOCOL` for bad or
    /// cut streams, `ERR_SPARSEKIT_ABORTED` when cancelled.
    fn code(&self) -> &'static str {
        match self {
            Error::Io(_) | Error::StreamIo { .. } => "ERR_SPARSEKIT_IO",
            Error::Truncated { .. }
            | Error::UnknownTag { .. }
            | Error::BadField { .. }
            | Error::NotNegotiated { .. }
            | Error::BadCompressed { .. }
            | Error::Unexpected { .. } => "ERR_SPARSEKIT_PROTOCOL",
            Error::ResumeMismatch { .. } => "ERR_SPARSEKIT_RESUME_MISMATCH",
            Error::BadJournal { .. } => "ERR_SPARSEKIT_BAD_JOURNAL",
            Error::EndPastSize { .. } => "ERR_SPARSEKIT_OUT_OF_RANGE",
            Error::InvalidArg { .. } => "ERR_SPARSEKIT_INVALID_ARG",
            Error::Aborted => "ERR_SPARSEKIT_ABORTED",
        }
    }

    /// The errno of a failed OS call.
    fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            Error::StreamIo { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The system call that failed (`read`, `write`, `fsync`, ...), as Node's `err.syscall`.
    fn syscall(&self) -> Option<&'static str> {
        match self {
            Error::Io(e) => e.syscall(),
            Error::StreamIo { op, source, .. } => source.raw_os_error().map(|_| *op),
            _ => None,
        }
    }

    /// The file the error is about.
    fn path(&self) -> Option<&Path> {
        match self {
            Error::Io(e) => e.path.as_deref(),
            Error::EndPastSize { path, .. } => path.as_deref(),
            Error::BadJournal { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The byte offset the error is about: in the file for I/O errors, in the stream for
    /// protocol errors.
    fn offset(&self) -> Option<u64> {
        match self {
            Error::Io(e) => e.offset,
            Error::StreamIo { offset, .. }
            | Error::Truncated { offset, .. }
            | Error::UnknownTag { offset, .. }
            | Error::BadField { offset, .. }
            | Error::NotNegotiated { offset, .. }
            | Error::Unexpected { offset, .. }
            | Error::BadCompressed { offset, .. } => Some(*offset),
            Error::EndPastSize { end, .. } => Some(*end),
            _ => None,
        }
    }

    /// The byte range at fault, where one is: `[size, end)` past a file's end.
    fn range(&self) -> Option<(u64, u64)> {
        match self {
            Error::EndPastSize { end, size, .. } => Some((*size, *end)),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => e.fmt(f),
            Error::StreamIo {
                stream,
                op,
                offset,
                source,
            } => write!(f, "{op} {stream} at byte {offset}: {source}"),
            Error::Truncated {
                stream,
                offset,
                expected,
                got,
            } => {
                write!(f, "{stream} ended at byte {} ", offset + *got as u64)?;
                if *got > 0 {
                    write!(f, "after {got} byte(s) of {expected} (from byte {offset})")
                } else {
                    write!(f, "where {expected} was expected")
                }
            }
            Error::UnknownTag {
                stream,
                offset,
                tag,
            } => {
                let expected = match stream {
                    Stream::Hashes => "Hash, hash, rest or done",
                    Stream::Blocks => "data, dlzm or done",
                };
                write!(
                    f,
                    "{stream}: unknown record tag {:?} ({:02x} {:02x} {:02x} {:02x}) at byte {offset}, expected {expected}",
                    String::from_utf8_lossy(tag),
                    tag[0],
                    tag[1],
                    tag[2],
                    tag[3]
                )
            }
            Error::NotNegotiated {
                stream,
                offset,
                tag,
            } => write!(
                f,
                "{stream}: expected the SKx1 extension header at byte {offset}, found {:?}: both sides must opt in to the same extensions (--blake3, --holes, --zstd, --truncate, --resume)",
                String::from_utf8_lossy(tag)
            ),
            Error::BadField {
                stream,
                offset,
                field,
                value,
                max,
            } => write!(
                f,
                "{stream}: record at byte {offset}: {field} {value} is out of bounds (at most {max})"
            ),
            Error::BadCompressed {
                offset,
                position,
                reason,
            } => write!(
                f,
                "block stream: compressed record at byte {offset} (block at {position}) does not decompress: {reason}"
            ),
            Error::Unexpected {
                stream,
                offset,
                expected,
                tag,
            } => write!(
                f,
                "{stream}: record {:?} at byte {offset} where {expected} was required",
                String::from_utf8_lossy(tag)
            ),
            Error::ResumeMismatch { recorded, size } => write!(
                f,
                "cannot resume: the cut session's source held {recorded} bytes, it now holds {size} (delete the journal to start over)"
            ),
            Error::BadJournal { path, reason } => {
                write!(f, "resume journal '{}': {reason}", path.display())
            }
            Error::EndPastSize { path, end, size } => {
                match path {
                    Some(p) => write!(f, "'{}'", p.display())?,
                    None => f.write_str("the input")?,
                }
                write!(f, " holds {size} bytes, fewer than --end {end}")
            }
            Error::InvalidArg { name, reason } => write!(f, "invalid {name}: {reason}"),
            Error::Aborted => f.write_str("the operation was aborted"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::StreamIo { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_message_names_field_and_byte() {
        let e = Error::Truncated {
            stream: Stream::Blocks,
            offset: 20,
            expected: "the 4-byte length of a data record",
            got: 2,
        };
        assert_eq!(
            e.to_string(),
            "block stream ended at byte 22 after 2 byte(s) of the 4-byte length of a data record (from byte 20)"
        );
        assert_eq!(e.code(), "ERR_SPARSEKIT_PROTOCOL");
        assert_eq!(e.offset(), Some(20));
    }

    #[test]
    fn unknown_tag_quotes_bytes() {
        let e = Error::UnknownTag {
            stream: Stream::Hashes,
            offset: 80,
            tag: *b"HASH",
        };
        assert_eq!(
            e.to_string(),
            "hash stream: unknown record tag \"HASH\" (48 41 53 48) at byte 80, expected Hash, hash, rest or done"
        );
    }
}
