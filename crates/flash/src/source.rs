//! Where image bytes come from: a local file (plain, compressed, or a zip archive's entry)
//! or an HTTP(S) URL (plain or compressed), turned into one front-to-back stream of image
//! bytes, or positional reads for a plain local file.

use std::io::{self, BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sparsekit_bmap::{resolve_bmap, Bmap, BmapChoice, Compression};
use sparsekit_io::{Cancel, Counting, FileStorage, IoError, Storage};

use sparsekit_http::{self as http, HttpOptions, HttpReader, HttpStorage};

use crate::error::{error_of_io, Error, Result};

/// Bytes of compressed input buffered per read.
const INPUT_BUFFER: usize = 256 * 1024;
/// Zip local file header magic (APPNOTE 4.3.7).
const ZIP_MAGIC: [u8; 4] = *b"PK\x03\x04";
/// Zip end of central directory magic (APPNOTE 4.3.16): what an empty archive begins with.
const ZIP_EMPTY_MAGIC: [u8; 4] = *b"PK\x05\x06";
/// Zip spanned-archive marker (APPNOTE 8.5.3), which a split archive's first part begins with.
const ZIP_SPAN_MAGIC: [u8; 4] = *b"PK\x07\x08";

/// Whether `head` begins like a zip archive (one with entries, an empty one, or a split one).
pub(crate) fn is_zip(head: &[u8]) -> bool {
    head.starts_with(&ZIP_MAGIC)
        || head.starts_with(&ZIP_EMPTY_MAGIC)
        || head.starts_with(&ZIP_SPAN_MAGIC)
}

/// What a zip archive is read from.
pub(crate) trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// A zip archive read from a file or a URL.
pub(crate) type ZipArchive = zip::ZipArchive<Box<dyn ReadSeek>>;

/// An opened source, before its bytes are read.
pub(crate) enum Input {
    /// A plain local image, read at offsets.
    Plain(FileStorage),
    /// A byte stream (a compressed local file, an HTTP body), perhaps compressed.
    Stream {
        reader: Box<dyn Read + Send>,
        /// Its length, when known (for progress).
        len: Option<u64>,
        /// Whether its first bytes are a compressed stream's (its image size is then
        /// unknown until the end, unless a bmap says it).
        compressed: bool,
    },
    /// A plain image read at offsets with only its mapped ranges read: a URL that has a
    /// bmap (or is trimmed), fetched with range requests, or a zip archive's stored entry
    /// (a window over the archive) to be trimmed.
    Ranged(Box<dyn Storage>),
    /// An entry of a zip archive (a local file, or a URL read with range requests).
    Zip {
        archive: Box<ZipArchive>,
        index: usize,
    },
}

/// What trimming found: the image's bytes the layout says are used (rounded outward to
/// 4 KiB blocks (`TRIM_BLOCK`); the only ones read, written and read back) and the rest, provably
/// free (left as they were on the destinations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trim {
    /// Bytes of the image that are used.
    pub used_bytes: u64,
    /// Bytes of the image that are free (`image size - used_bytes`).
    pub free_bytes: u64,
}

/// A source ready to read: its input, the bmap to follow, and what to report.
pub(crate) struct Opened {
    pub(crate) input: Input,
    pub(crate) bmap: Option<Bmap>,
    pub(crate) bmap_from: Option<String>,
    pub(crate) zip_entry: Option<String>,
    /// Bytes of the source read so far (compressed bytes for a compressed source).
    pub(crate) consumed: Arc<AtomicU64>,
    /// What it is called in messages.
    pub(crate) label: PathBuf,
    /// For a zip archive opened to be trimmed: the archive's bytes, read at offsets (a
    /// stored entry is a window of them).
    pub(crate) archive_bytes: Option<Box<dyn Storage>>,
    /// What trimming found (the `trim` module), when it was asked for and no bmap was used.
    pub(crate) trim: Option<Trim>,
}

/// Open `source` (a path or an http(s) URL). With `trim` (and no bmap), a plain image at
/// a URL is read with range requests when the server takes them, and a zip archive keeps
/// its bytes at hand ([`Opened::archive_bytes`]), so the trim step (`trim::apply`) can read
/// the image's layout.
pub(crate) fn open(
    source: &str,
    bmap: &BmapChoice,
    zip_entry: Option<&str>,
    http_opts: &HttpOptions,
    trim: bool,
    cancel: &Cancel,
) -> Result<Opened> {
    let consumed = Arc::new(AtomicU64::new(0));
    if http::is_url(source) {
        let client = http::client_for(http_opts, source, cancel)?;
        let (bmap, bmap_from) = resolve_bmap(bmap, cancel, || -> Result<_> {
            Ok(http::find_bmap(&client, source, http_opts)?.map(|(b, u)| (b, u.into())))
        })?;
        let bmap_from = bmap_from.map(|p| p.to_string_lossy().into_owned());
        let mut r = HttpReader::open(client.clone(), source, http_opts)?;
        let len = r.len();
        // The first bytes say whether this is a zip archive (read at offsets, its
        // central directory being at the end) or a stream.
        // (8 bytes: the longest magic, xz's, is 6; `decompressed` sees them in one piece.)
        let mut head = Vec::with_capacity(8);
        (&mut r)
            .take(8)
            .read_to_end(&mut head)
            .map_err(|e| read_error(e, Path::new(source)))?;
        if is_zip(&head) {
            drop(r);
            let storage = HttpStorage::open_with(client.clone(), source, http_opts)?;
            let consumed = storage.counter();
            let label = PathBuf::from(source);
            let archive_bytes = if trim && bmap.is_none() {
                Some(Box::new(HttpStorage::open_with(client, source, http_opts)?)
                    as Box<dyn Storage>)
            } else {
                None
            };
            let cursor = sparsekit_io::StorageCursor::new(storage);
            let (archive, index, name) =
                open_zip(&label, Box::new(cursor) as Box<dyn ReadSeek>, zip_entry)?;
            return Ok(Opened {
                input: Input::Zip {
                    archive: Box::new(archive),
                    index,
                },
                bmap,
                bmap_from,
                zip_entry: Some(name),
                consumed,
                label,
                archive_bytes,
                trim: None,
            });
        }
        if (bmap.is_some() || trim) && Compression::detect(&head).is_none() && !head.is_empty() {
            // A plain image with a bmap (or to be trimmed): fetch only the mapped ranges,
            // when the server can (else stream the whole body; trimming then refuses).
            match HttpStorage::open_with(client.clone(), source, http_opts) {
                Ok(storage) => {
                    drop(r);
                    if zip_entry.is_some() {
                        return Err(no_zip(source));
                    }
                    let consumed = storage.counter();
                    return Ok(Opened {
                        input: Input::Ranged(Box::new(storage)),
                        bmap,
                        bmap_from,
                        zip_entry: None,
                        consumed,
                        label: source.into(),
                        archive_bytes: None,
                        trim: None,
                    });
                }
                Err(http::Error::HttpNoRanges { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if zip_entry.is_some() {
            return Err(Error::Zip {
                path: Some(source.into()),
                message: "an entry was named, but the source is no zip archive".into(),
            });
        }
        let counted = Counting::new(r, consumed.clone());
        consumed.fetch_add(head.len() as u64, Ordering::Relaxed);
        return Ok(Opened {
            input: Input::Stream {
                compressed: Compression::detect(&head).is_some(),
                reader: Box::new(io::Cursor::new(head).chain(counted)),
                len,
            },
            bmap,
            bmap_from,
            zip_entry: None,
            consumed,
            label: source.into(),
            archive_bytes: None,
            trim: None,
        });
    }
    let path = Path::new(source);
    let file = FileStorage::open(path)?;
    let mut head = [0u8; 6];
    let n = file.read_at(&mut head, 0)?;
    let head = &head[..n];
    let (bmap, bmap_from) = resolve_bmap(bmap, cancel, || -> Result<_> {
        Ok(sparsekit_bmap::local_bmap(path, cancel)?)
    })?;
    let bmap_from = bmap_from.map(|p| p.to_string_lossy().into_owned());
    let base = |input| Opened {
        input,
        bmap: bmap.clone(),
        bmap_from: bmap_from.clone(),
        zip_entry: None,
        consumed: consumed.clone(),
        label: path.to_path_buf(),
        archive_bytes: None,
        trim: None,
    };
    if is_zip(head) {
        let archive_bytes = if trim && bmap.is_none() {
            Some(Box::new(FileStorage::open(path)?) as Box<dyn Storage>)
        } else {
            None
        };
        let (archive, index, name) = open_zip(
            path,
            Box::new(file.into_file()) as Box<dyn ReadSeek>,
            zip_entry,
        )?;
        let mut o = base(Input::Zip {
            archive: Box::new(archive),
            index,
        });
        o.zip_entry = Some(name);
        o.archive_bytes = archive_bytes;
        return Ok(o);
    }
    if zip_entry.is_some() {
        return Err(Error::Zip {
            path: Some(path.to_path_buf()),
            message: "an entry was named, but the source is no zip archive".into(),
        });
    }
    if Compression::detect(head).is_some() {
        let len = file.size()?;
        let reader = Box::new(Counting::new(
            StorageRead { s: file, at: 0 },
            consumed.clone(),
        ));
        return Ok(base(Input::Stream {
            reader,
            len: Some(len),
            compressed: true,
        }));
    }
    Ok(base(Input::Plain(file)))
}

/// A storage read front to back; errors keep their [`IoError`] inside.
struct StorageRead {
    s: FileStorage,
    at: u64,
}

impl Read for StorageRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .s
            .read_at(buf, self.at)
            .map_err(|e| io::Error::new(e.source.kind(), e))?;
        self.at += n as u64;
        Ok(n)
    }
}

fn no_zip(source: &str) -> Error {
    Error::Zip {
        path: Some(source.into()),
        message: "an entry was named, but the source is no zip archive".into(),
    }
}

fn zip_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Zip {
        path: Some(path.to_path_buf()),
        message: e.to_string(),
    }
}

/// A zip crate error as ours: a failure of the reader under it (an interrupted
/// download of a remote archive, an I/O error) keeps its own error and code; the rest
/// is [`Error::Zip`].
pub(crate) fn zip_error(path: &Path, e: zip::result::ZipError) -> Error {
    match e {
        zip::result::ZipError::Io(io)
            if sparsekit_io::carries::<IoError>(&io)
                || http::Error::is_carried(&io)
                || io.raw_os_error().is_some() =>
        {
            read_error(io, path)
        }
        e => zip_err(path, e),
    }
}

/// Open a zip archive and choose its image entry: the one named, else the largest file.
fn open_zip(
    path: &Path,
    file: Box<dyn ReadSeek>,
    name: Option<&str>,
) -> Result<(ZipArchive, usize, String)> {
    let mut archive = zip::ZipArchive::new(file).map_err(|e| zip_error(path, e))?;
    if let Some(name) = name {
        let Some(i) = archive.index_for_name(name) else {
            return Err(zip_err(path, format!("no entry named '{name}'")));
        };
        return Ok((archive, i, name.to_string()));
    }
    let mut best: Option<(u64, usize, String)> = None;
    for i in 0..archive.len() {
        let f = archive.by_index_raw(i).map_err(|e| zip_error(path, e))?;
        if f.is_dir() {
            continue;
        }
        let size = f.size();
        if best.as_ref().is_none_or(|b| size > b.0) {
            best = Some((size, i, f.name().to_string()));
        }
    }
    match best {
        Some((_, i, n)) => Ok((archive, i, n)),
        None => Err(zip_err(path, "the archive holds no file")),
    }
}

/// A stream of image bytes, decompressed when its magic says so. A zip archive inside
/// (before or after decompression: `img.zip.gz`, a `.zip` served with
/// `Content-Encoding: gzip`) is refused with [`Error::Unsupported`]: zip archives are
/// read at offsets, and the container's bytes are never written as the image.
pub(crate) fn decompressed<'a, R: BufRead + Send + 'a>(
    mut r: R,
    label: &Path,
) -> Result<(Box<dyn Read + Send + 'a>, Option<Compression>)> {
    let zipped = |inner: Option<Compression>| Error::Unsupported {
        what: format!(
            "'{}' is a zip archive inside {} (zip archives are read at offsets: they \
             cannot be compressed; decompress it and flash the .zip)",
            label.display(),
            match inner {
                Some(c) => format!("a {} stream", c.name()),
                None => "another container".into(),
            }
        ),
    };
    let head = r.fill_buf().map_err(|e| read_error(e, label))?;
    if is_zip(head) {
        return Err(zipped(None));
    }
    let Some(c) = Compression::detect(head) else {
        return Ok((Box::new(r), None));
    };
    let mut d = c.decoder(r).map_err(|e| read_error(e, label))?;
    // The first decompressed bytes: a zip archive there is refused too.
    let mut first = Vec::with_capacity(8);
    (&mut d)
        .take(8)
        .read_to_end(&mut first)
        .map_err(|e| decode_error(e, Some(c), 0, label))?;
    if is_zip(&first) {
        return Err(zipped(Some(c)));
    }
    Ok((Box::new(io::Cursor::new(first).chain(d)), Some(c)))
}

/// A buffered reader over a stream input.
pub(crate) fn buffered<'a, R: Read + Send + 'a>(r: R) -> BufReader<R> {
    BufReader::with_capacity(INPUT_BUFFER, r)
}

/// Turn a read error of a source stream back into our error: an [`Error`] or
/// [`IoError`] carried inside, else a decoder's complaint.
pub(crate) fn read_error(e: io::Error, label: &Path) -> Error {
    let e = match http::Error::from_io(e) {
        Ok(h) => return h.into(),
        Err(e) => e,
    };
    match IoError::recover(e) {
        Ok(io) => error_of_io(io),
        Err(e) => Error::Io(IoError::new("read", e).with_path(label)),
    }
}

/// A decoder's failure at decompressed `offset`.
pub(crate) fn decode_error(
    e: io::Error,
    format: Option<Compression>,
    offset: u64,
    label: &Path,
) -> Error {
    let inner_is_ours = sparsekit_io::carries::<IoError>(&e) || http::Error::is_carried(&e);
    match format {
        Some(f) if !inner_is_ours => Error::Bmap(sparsekit_bmap::Error::Decompress {
            path: Some(label.to_path_buf()),
            format: f.name(),
            offset,
            message: if e.kind() == io::ErrorKind::UnexpectedEof {
                format!("the compressed stream is truncated ({e})")
            } else {
                e.to_string()
            },
        }),
        _ => read_error(e, label),
    }
}
