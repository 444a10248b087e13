//! The bmap file: one [`Bmap`] struct with the fields of bmaptool's XML, parsed with
//! quick-xml and validated in a fixed order, and written back as format 2.0.

use std::fmt::Write as _;
use std::path::Path;
use std::str::FromStr;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use sparsekit_io::Cancel;

use crate::{Error, Result};

/// Largest bmap file read: a bmap of a million ranges is about 100 MiB, far more than any
/// real image has (bmaptool's own files are kilobytes to a few MiB).
pub const MAX_BMAP_SIZE: u64 = 128 << 20;
/// Largest `BlockSize` accepted (bmaptool writes the filesystem block size, 4 KiB).
pub const MAX_BLOCK_SIZE: u64 = 64 << 20;
/// Largest `ImageSize` accepted: 2^53 - 1 bytes (8 PiB), the largest size every consumer
/// of a bmap here carries exactly, JavaScript numbers included (`Number.MAX_SAFE_INTEGER`).
/// Far above any disk image; a bmap claiming more is refused when it is parsed, before
/// anything is written.
pub const MAX_IMAGE_SIZE: u64 = (1 << 53) - 1;
/// Elements nested deeper than this are malformed (a bmap nests three deep).
const MAX_DEPTH: usize = 16;
/// XML events (or ranges, or KiB hashed) between two looks at the [`Cancel`] token while
/// parsing: a few hundred microseconds of work.
const CANCEL_EVERY: u64 = 4096;

/// The bmap format version written by [`Bmap::to_xml`].
pub const WRITE_VERSION: &str = "2.0";

/// A checksum algorithm of bmap ranges and of the bmap file itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChecksumType {
    /// SHA-256: what `bmaptool create` writes (format 1.4/2.0).
    Sha256,
    /// SHA-1: the only checksum of format 1.3, and a `ChecksumType` of 2.0 for old readers.
    Sha1,
}

impl ChecksumType {
    /// `sha256` or `sha1`, as in `<ChecksumType>`.
    pub fn name(self) -> &'static str {
        match self {
            ChecksumType::Sha256 => "sha256",
            ChecksumType::Sha1 => "sha1",
        }
    }

    /// Hex digits of a digest: 64 or 40.
    pub fn hex_len(self) -> usize {
        match self {
            ChecksumType::Sha256 => 64,
            ChecksumType::Sha1 => 40,
        }
    }

    /// A fresh hasher.
    pub fn hasher(self) -> Hasher {
        match self {
            ChecksumType::Sha256 => Hasher::Sha256(Sha256::new()),
            ChecksumType::Sha1 => Hasher::Sha1(Sha1::new()),
        }
    }

    /// The lowercase hex digest of `data`.
    pub fn digest_hex(self, data: &[u8]) -> String {
        let mut h = self.hasher();
        h.update(data);
        h.finish_hex()
    }
}

impl FromStr for ChecksumType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sha256" => Ok(ChecksumType::Sha256),
            "sha1" => Ok(ChecksumType::Sha1),
            _ => Err(Error::InvalidArg {
                name: "checksum type",
                value: s.to_owned(),
            }),
        }
    }
}

/// A running digest of one [`ChecksumType`].
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256.
    Sha256(Sha256),
    /// SHA-1.
    Sha1(Sha1),
}

impl Hasher {
    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
        }
    }

    /// The lowercase hex digest.
    pub fn finish_hex(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha1(h) => hex::encode(h.finalize()),
        }
    }
}

/// One `<Range>` of a bmap: the inclusive block numbers `first..=last`, which hold data,
/// and the checksum of their bytes (`chksum=` in 1.4/2.0, `sha1=` in 1.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BmapRange {
    /// First block.
    pub first: u64,
    /// Last block (inclusive).
    pub last: u64,
    /// Lowercase hex digest of the range's bytes (only those inside `ImageSize`), in the
    /// bmap's [`ChecksumType`]; `None` when the bmap carries no range checksums.
    pub checksum: Option<String>,
}

impl BmapRange {
    /// Blocks in the range.
    pub fn blocks(&self) -> u64 {
        self.last - self.first + 1
    }

    /// The byte range `[start, end)` of the range in an image of `image_size` bytes with
    /// blocks of `block_size` (the last block may be partial).
    pub fn bytes(&self, block_size: u64, image_size: u64) -> (u64, u64) {
        let start = self.first.saturating_mul(block_size).min(image_size);
        let end = self
            .last
            .saturating_add(1)
            .saturating_mul(block_size)
            .min(image_size);
        (start, end)
    }
}

/// A parsed (or created) bmap, fields named after the XML elements.
///
/// Invariants after [`Bmap::parse`] (and kept by [`crate::create`]):
/// `blocks_count == ceil(image_size / block_size)`; ranges sorted, disjoint,
/// `first <= last < blocks_count`; `mapped_blocks_count` is the sum of their lengths;
/// range checksums, where present, are lowercase hex of `checksum_type`'s length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bmap {
    /// The `version` attribute (`1.2`, `1.3`, `1.4`, `2.0`).
    pub version: String,
    /// `<ImageSize>`: bytes of the image.
    pub image_size: u64,
    /// `<BlockSize>`: bytes per block.
    pub block_size: u64,
    /// `<BlocksCount>`: `ceil(image_size / block_size)`.
    pub blocks_count: u64,
    /// `<MappedBlocksCount>`: blocks in all ranges.
    pub mapped_blocks_count: u64,
    /// `<ChecksumType>` (sha1 for format 1.3). Also the digest of the bmap file itself.
    pub checksum_type: ChecksumType,
    /// `<BmapFileChecksum>` (`<BmapFileSHA1>` in 1.3), as read; `None` in 1.2 and before.
    pub file_checksum: Option<String>,
    /// `<BlockMap>`'s ranges.
    pub ranges: Vec<BmapRange>,
}

/// The 1-based line of a byte position, found by counting the newlines between the
/// position asked before and this one: the reader asks in increasing order, so a whole
/// file costs one pass however many elements it has (counting from the start of the file
/// each time made parsing quadratic: hours for a million ranges).
struct Lines<'a> {
    bytes: &'a [u8],
    /// The position last asked for, and its line.
    pos: usize,
    line: u64,
}

impl<'a> Lines<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Lines {
            bytes,
            pos: 0,
            line: 1,
        }
    }

    fn at(&mut self, pos: u64) -> u64 {
        let pos = usize::try_from(pos)
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        let newlines = |b: &[u8]| b.iter().filter(|&&c| c == b'\n').count() as u64;
        if pos >= self.pos {
            self.line += newlines(&self.bytes[self.pos..pos]);
        } else {
            // An error position may lie before the last event's start.
            self.line -= newlines(&self.bytes[pos..self.pos]);
        }
        self.pos = pos;
        self.line
    }
}

/// Which element's text is being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    ImageSize,
    BlockSize,
    BlocksCount,
    MappedBlocksCount,
    ChecksumType,
    FileChecksum,
    Range,
}

impl Field {
    fn from_name(name: &[u8]) -> Option<Field> {
        Some(match name {
            b"ImageSize" => Field::ImageSize,
            b"BlockSize" => Field::BlockSize,
            b"BlocksCount" => Field::BlocksCount,
            b"MappedBlocksCount" => Field::MappedBlocksCount,
            b"ChecksumType" => Field::ChecksumType,
            b"BmapFileChecksum" | b"BmapFileSHA1" => Field::FileChecksum,
            b"Range" => Field::Range,
            _ => return None,
        })
    }
}

/// An element being read: its field, text so far, `chksum=` and `sha1=`, its line.
type Pending = (Field, String, Option<String>, Option<String>, u64);

#[derive(Default)]
struct Raw {
    version: Option<(String, u64)>,
    image_size: Option<(String, u64)>,
    block_size: Option<(String, u64)>,
    blocks_count: Option<(String, u64)>,
    mapped: Option<(String, u64)>,
    checksum_type: Option<(String, u64)>,
    file_checksum: Option<(String, u64, &'static str)>,
    /// text, range attribute checksum (chksum= and sha1=), line
    ranges: Vec<(String, Option<String>, Option<String>, u64)>,
    block_map_seen: bool,
}

impl Bmap {
    /// Read and parse the bmap file at `path` (at most [`MAX_BMAP_SIZE`] bytes).
    pub fn read(path: &Path) -> Result<Bmap> {
        Bmap::read_with(path, &Cancel::new())
    }

    /// [`Bmap::read`], stopping with [`Error::Aborted`] soon after `cancel` is cancelled
    /// (it is looked at every few thousand elements while parsing).
    pub fn read_with(path: &Path, cancel: &Cancel) -> Result<Bmap> {
        use sparsekit_io::{FileStorage, Storage};
        let s = FileStorage::open(path)?;
        let size = s.size()?;
        if size > MAX_BMAP_SIZE {
            return Err(Error::Invalid {
                path: Some(path.to_path_buf()),
                line: 1,
                what: format!("the file has {size} bytes, more than the {MAX_BMAP_SIZE} allowed"),
            });
        }
        let mut buf = vec![0u8; size as usize];
        cancel.check()?;
        s.read_exact_at(&mut buf, 0)?;
        Bmap::parse_with(&buf, cancel).map_err(|e| e.with_path(path))
    }

    /// Parse the bytes of a bmap file of format 1.0 to 2.0, validating every field and
    /// the file checksum (formats 1.3 and later). Time and memory are linear in the
    /// length of the file (at most [`MAX_BMAP_SIZE`] bytes).
    pub fn parse(bytes: &[u8]) -> Result<Bmap> {
        Bmap::parse_with(bytes, &Cancel::new())
    }

    /// [`Bmap::parse`], stopping with [`Error::Aborted`] soon after `cancel` is cancelled
    /// (it is looked at every few thousand elements, ranges and KiB hashed), for a bmap
    /// as large as [`MAX_BMAP_SIZE`] takes a second or more.
    pub fn parse_with(bytes: &[u8], cancel: &Cancel) -> Result<Bmap> {
        cancel.check()?;
        if bytes.len() as u64 > MAX_BMAP_SIZE {
            return Err(invalid(1, format!("more than {MAX_BMAP_SIZE} bytes")));
        }
        let raw = read_xml(bytes, &mut Lines::new(bytes), cancel)?;
        let bmap = validate(raw, cancel)?;
        if let Some(expected) = &bmap.file_checksum {
            let actual = file_checksum(bytes, expected, bmap.checksum_type, cancel)?;
            if &actual != expected {
                return Err(Error::BmapChecksum {
                    path: None,
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(bmap)
    }

    /// Bytes of the image in mapped ranges (the last block counted only inside the image).
    pub fn mapped_bytes(&self) -> u64 {
        self.ranges
            .iter()
            .map(|r| {
                let (s, e) = r.bytes(self.block_size, self.image_size);
                e - s
            })
            .sum()
    }

    /// Whether every range carries a checksum.
    pub fn has_checksums(&self) -> bool {
        !self.ranges.is_empty() && self.ranges.iter().all(|r| r.checksum.is_some())
    }

    /// Write this bmap as format 2.0 XML, laid out like `bmaptool create`'s, with
    /// `BmapFileChecksum` computed over the exact bytes returned (its own digits counted
    /// as ASCII zeros), so that `bmaptool copy` accepts it.
    pub fn to_xml(&self) -> String {
        let cs = self.checksum_type;
        let mut x = String::with_capacity(1024 + self.ranges.len() * 100);
        let pct = if self.blocks_count == 0 {
            0.0
        } else {
            self.mapped_blocks_count as f64 * 100.0 / self.blocks_count as f64
        };
        x.push_str("<?xml version=\"1.0\" ?>\n");
        x.push_str(
            "<!-- This file contains the block map for an image file: the list of blocks\n     \
             that hold data and have to be copied (see bmaptool). Written by sparsekit. -->\n\n",
        );
        let _ = writeln!(x, "<bmap version=\"{WRITE_VERSION}\">");
        let _ = writeln!(x, "    <!-- Image size in bytes -->");
        let _ = writeln!(x, "    <ImageSize> {} </ImageSize>\n", self.image_size);
        let _ = writeln!(x, "    <!-- Size of a block in bytes -->");
        let _ = writeln!(x, "    <BlockSize> {} </BlockSize>\n", self.block_size);
        let _ = writeln!(x, "    <!-- Count of blocks in the image file -->");
        let _ = writeln!(
            x,
            "    <BlocksCount> {} </BlocksCount>\n",
            self.blocks_count
        );
        let _ = writeln!(x, "    <!-- Count of mapped blocks: {pct:.1}% -->");
        let _ = writeln!(
            x,
            "    <MappedBlocksCount> {} </MappedBlocksCount>\n",
            self.mapped_blocks_count
        );
        let _ = writeln!(x, "    <!-- Type of checksum used in this file -->");
        let _ = writeln!(x, "    <ChecksumType> {} </ChecksumType>\n", cs.name());
        x.push_str(
            "    <!-- The checksum of this bmap file. When it is calculated, the value of\n         \
             the checksum has be zero (all ASCII \"0\" symbols).  -->\n",
        );
        x.push_str("    <BmapFileChecksum> ");
        let digits_at = x.len();
        x.push_str(&"0".repeat(cs.hex_len()));
        x.push_str(" </BmapFileChecksum>\n\n");
        x.push_str("    <BlockMap>\n");
        for r in &self.ranges {
            x.push_str("        <Range");
            if let Some(c) = &r.checksum {
                let _ = write!(x, " chksum=\"{c}\"");
            }
            if r.first == r.last {
                let _ = writeln!(x, "> {} </Range>", r.first);
            } else {
                let _ = writeln!(x, "> {}-{} </Range>", r.first, r.last);
            }
        }
        x.push_str("    </BlockMap>\n</bmap>\n");
        let sum = cs.digest_hex(x.as_bytes());
        x.replace_range(digits_at..digits_at + cs.hex_len(), &sum);
        x
    }
}

/// The digest of the bmap file with the first occurrence of its checksum's digits replaced
/// by ASCII zeros, as bmaptool computes it.
fn file_checksum(bytes: &[u8], claimed: &str, cs: ChecksumType, cancel: &Cancel) -> Result<String> {
    let c = claimed.as_bytes();
    let step = CANCEL_EVERY as usize * 1024;
    let mut found = None;
    // Searched a piece at a time (pieces overlapping by the digits' length) to look at
    // `cancel` between them.
    let mut start = 0;
    while found.is_none() && start + c.len() <= bytes.len() {
        cancel.check()?;
        let end = (start + step + c.len()).min(bytes.len());
        found = bytes[start..end]
            .windows(c.len())
            .position(|w| w.eq_ignore_ascii_case(c))
            .map(|p| start + p);
        start += step;
    }
    let zeros = vec![b'0'; c.len()];
    let (before, digits, after) = match found {
        Some(p) => (&bytes[..p], &zeros[..], &bytes[p + c.len()..]),
        None => (bytes, &[][..], &[][..]),
    };
    let mut h = cs.hasher();
    for part in [before, digits, after] {
        for piece in part.chunks(step) {
            cancel.check()?;
            h.update(piece);
        }
    }
    Ok(h.finish_hex())
}

fn invalid(line: u64, what: String) -> Error {
    Error::Invalid {
        path: None,
        line,
        what,
    }
}

fn xml_error(lines: &mut Lines<'_>, pos: u64, e: impl std::fmt::Display) -> Error {
    invalid(lines.at(pos), format!("malformed XML: {e}"))
}

/// Read the elements bmaptool's format uses; everything else (comments, unknown elements
/// of later minor versions) is skipped, but the XML must be well formed.
fn read_xml(bytes: &[u8], lines: &mut Lines<'_>, cancel: &Cancel) -> Result<Raw> {
    let mut reader = Reader::from_reader(bytes);
    reader.config_mut().check_end_names = true;
    let mut raw = Raw::default();
    let mut stack = Stack::default();
    // The element whose text is collected, its text so far, its attributes, its line.
    let mut field: Option<Pending> = None;
    let mut root_seen = false;
    for event in 0u64.. {
        if event.is_multiple_of(CANCEL_EVERY) {
            cancel.check()?;
        }
        let pos = reader.buffer_position();
        let ev = reader
            .read_event()
            .map_err(|e| xml_error(lines, reader.error_position(), e))?;
        let line = lines.at(pos);
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let name = e.name();
                let name = name.as_ref();
                if stack.len() >= MAX_DEPTH {
                    return Err(invalid(line, "elements nested too deep".into()));
                }
                if stack.is_empty() {
                    if root_seen {
                        return Err(invalid(line, "a second root element".into()));
                    }
                    root_seen = true;
                    if name != b"bmap" {
                        return Err(invalid(
                            line,
                            format!(
                                "the root element is <{}>, not <bmap>",
                                String::from_utf8_lossy(name)
                            ),
                        ));
                    }
                    let [v] = attrs(e, [b"version"], line)?;
                    let v =
                        v.ok_or_else(|| invalid(line, "<bmap> has no version attribute".into()))?;
                    raw.version = Some((v, line));
                } else if field.is_some() {
                    return Err(invalid(
                        line,
                        format!("element <{}> inside a value", String::from_utf8_lossy(name)),
                    ));
                } else if stack.len() == 1 && name == b"BlockMap" {
                    if raw.block_map_seen {
                        return Err(invalid(line, "a second <BlockMap>".into()));
                    }
                    raw.block_map_seen = true;
                } else {
                    let in_block_map = stack.len() == 2 && stack.get(1) == b"BlockMap";
                    let f = Field::from_name(name);
                    let wanted = match f {
                        Some(Field::Range) => in_block_map,
                        Some(_) => stack.len() == 1,
                        None => false,
                    };
                    if in_block_map && !wanted {
                        return Err(invalid(
                            line,
                            format!(
                                "<{}> inside <BlockMap>: only <Range> belongs there",
                                String::from_utf8_lossy(name)
                            ),
                        ));
                    }
                    if let (Some(f), true) = (f, wanted) {
                        let [a, b] = if f == Field::Range {
                            attrs(e, [b"chksum", b"sha1"], line)?
                        } else {
                            [None, None]
                        };
                        field = Some((f, String::new(), a, b, line));
                        if empty {
                            let fl = field.take().unwrap();
                            store(&mut raw, fl)?;
                        }
                    }
                }
                if !empty {
                    stack.push(name);
                }
            }
            Event::End(_) => {
                stack.pop();
                if let Some(f) = field.take() {
                    store(&mut raw, f)?;
                }
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| xml_error(lines, pos, e))?;
                if let Some((_, text, ..)) = &mut field {
                    text.push_str(&s);
                } else if stack.is_empty() && !s.trim().is_empty() {
                    return Err(invalid(line, "text outside the <bmap> element".into()));
                }
            }
            Event::CData(t) => {
                if let Some((_, text, ..)) = &mut field {
                    text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) => {
                // Character references (&#48;) resolve; named entities do not occur in a
                // bmap's values.
                if let Some((_, text, ..)) = &mut field {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => text.push(c),
                        _ => {
                            return Err(invalid(
                                line,
                                format!(
                                    "entity reference '&{};' in a value",
                                    String::from_utf8_lossy(&r)
                                ),
                            ))
                        }
                    }
                }
            }
            Event::Eof => {
                if !stack.is_empty() {
                    return Err(invalid(
                        line,
                        format!(
                            "the file ends inside <{}>",
                            String::from_utf8_lossy(stack.get(stack.len() - 1))
                        ),
                    ));
                }
                if !root_seen {
                    return Err(invalid(line, "no <bmap> element".into()));
                }
                return Ok(raw);
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    unreachable!("the event counter runs out after 2^64 events")
}

/// The names of the open elements, in one buffer (no allocation per element).
#[derive(Default)]
struct Stack {
    names: Vec<u8>,
    ends: Vec<usize>,
}

impl Stack {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.names[start..self.ends[i]]
    }

    fn push(&mut self, name: &[u8]) {
        self.names.extend_from_slice(name);
        self.ends.push(self.names.len());
    }

    fn pop(&mut self) {
        self.ends.pop();
        self.names.truncate(self.ends.last().copied().unwrap_or(0));
    }
}

/// The values of the attributes `keys` of `e` (the first of each), in one pass.
fn attrs<const N: usize>(
    e: &BytesStart<'_>,
    keys: [&[u8]; N],
    line: u64,
) -> Result<[Option<String>; N]> {
    let mut out = [const { None }; N];
    for a in e.attributes() {
        let a = a.map_err(|err| invalid(line, format!("malformed attribute: {err}")))?;
        if let Some(i) = keys.iter().position(|k| *k == a.key.as_ref()) {
            if out[i].is_none() {
                let v = a
                    .unescape_value()
                    .map_err(|err| invalid(line, format!("malformed attribute value: {err}")))?;
                out[i] = Some(v.into_owned());
            }
        }
    }
    Ok(out)
}

fn store(raw: &mut Raw, f: Pending) -> Result<()> {
    let (field, text, chk, sha1, line) = f;
    fn once(slot: &mut Option<(String, u64)>, v: (String, u64), name: &str) -> Result<()> {
        if slot.is_some() {
            return Err(invalid(v.1, format!("a second <{name}>")));
        }
        *slot = Some(v);
        Ok(())
    }
    match field {
        Field::ImageSize => once(&mut raw.image_size, (text, line), "ImageSize"),
        Field::BlockSize => once(&mut raw.block_size, (text, line), "BlockSize"),
        Field::BlocksCount => once(&mut raw.blocks_count, (text, line), "BlocksCount"),
        Field::MappedBlocksCount => once(&mut raw.mapped, (text, line), "MappedBlocksCount"),
        Field::ChecksumType => once(&mut raw.checksum_type, (text, line), "ChecksumType"),
        Field::FileChecksum => {
            if raw.file_checksum.is_some() {
                return Err(invalid(line, "a second bmap file checksum".into()));
            }
            raw.file_checksum = Some((text, line, ""));
            Ok(())
        }
        Field::Range => {
            raw.ranges.push((text, chk, sha1, line));
            Ok(())
        }
    }
}

fn number(v: &Option<(String, u64)>, name: &str, root_line: u64) -> Result<(u64, u64)> {
    let (text, line) = v
        .as_ref()
        .ok_or_else(|| invalid(root_line, format!("no <{name}> element")))?;
    let t = text.trim();
    let n = parse_u64(t).ok_or_else(|| {
        invalid(
            *line,
            format!("<{name}> is '{t}', not a non-negative integer"),
        )
    })?;
    Ok((n, *line))
}

/// A decimal number of at most 20 digits, no sign.
fn parse_u64(t: &str) -> Option<u64> {
    if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn validate(raw: Raw, cancel: &Cancel) -> Result<Bmap> {
    let (version, root_line) = raw.version.clone().expect("root checked");
    // 1. Version.
    let (major, minor) = version
        .split_once('.')
        .and_then(|(a, b)| Some((parse_u64(a.trim())?, parse_u64(b.trim())?)))
        .ok_or_else(|| invalid(root_line, format!("version '{version}' is not major.minor")))?;
    if major > 2 || major == 0 {
        return Err(Error::Unsupported {
            path: None,
            line: root_line,
            what: format!("bmap format version {version} (this reader knows 1.x and 2.x)"),
        });
    }
    // 1.4 is 2.0 released under the wrong number (bmaptool's BmapCreate.py).
    let v2 = major == 2 || minor >= 4;
    let v13 = major == 1 && minor == 3;
    // 2. Sizes.
    let (image_size, isl) = number(&raw.image_size, "ImageSize", root_line)?;
    let (block_size, bsl) = number(&raw.block_size, "BlockSize", root_line)?;
    let (blocks_count, bcl) = number(&raw.blocks_count, "BlocksCount", root_line)?;
    let (mapped, mcl) = number(&raw.mapped, "MappedBlocksCount", root_line)?;
    if image_size > MAX_IMAGE_SIZE {
        return Err(invalid(
            isl,
            format!(
                "<ImageSize> {image_size} is larger than 2^53 - 1 = {MAX_IMAGE_SIZE} bytes \
                 (8 PiB), the largest image sparsekit takes: the sizes it reports must be \
                 exact JavaScript numbers (Number.MAX_SAFE_INTEGER)"
            ),
        ));
    }
    if block_size == 0 || block_size > MAX_BLOCK_SIZE {
        return Err(invalid(
            bsl,
            format!("<BlockSize> {block_size} is not in 1..={MAX_BLOCK_SIZE}"),
        ));
    }
    let expect_blocks = image_size.div_ceil(block_size);
    if blocks_count != expect_blocks {
        return Err(invalid(
            bcl,
            format!(
                "<BlocksCount> {blocks_count} disagrees with <ImageSize> {image_size} / \
                 <BlockSize> {block_size} = {expect_blocks} blocks"
            ),
        ));
    }
    if mapped > blocks_count {
        return Err(invalid(
            mcl,
            format!("<MappedBlocksCount> {mapped} is more than <BlocksCount> {blocks_count}"),
        ));
    }
    // 3. Checksum type.
    let checksum_type = if v2 {
        let (t, l) = raw.checksum_type.as_ref().ok_or_else(|| {
            invalid(
                root_line,
                format!("no <ChecksumType> element (required by version {version})"),
            )
        })?;
        let t = t.trim();
        t.parse::<ChecksumType>().map_err(|_| Error::Unsupported {
            path: None,
            line: *l,
            what: format!("checksum type '{t}' (sha256 and sha1 are supported)"),
        })?
    } else {
        ChecksumType::Sha1
    };
    // 4. File checksum (1.3: BmapFileSHA1, 1.4/2.0: BmapFileChecksum; 1.2 has none).
    let file_checksum = if v2 || v13 {
        let (t, l, _) = raw.file_checksum.as_ref().ok_or_else(|| {
            invalid(
                root_line,
                format!("no bmap file checksum element (required by version {version})"),
            )
        })?;
        let t = t.trim();
        if !is_hex(t, checksum_type.hex_len()) {
            return Err(invalid(
                *l,
                format!(
                    "bmap file checksum '{t}' is not {} hex digits",
                    checksum_type.hex_len()
                ),
            ));
        }
        Some(t.to_ascii_lowercase())
    } else {
        None
    };
    // 5. Ranges: sorted, disjoint, inside the image, summing to MappedBlocksCount.
    if !raw.block_map_seen {
        return Err(invalid(root_line, "no <BlockMap> element".into()));
    }
    let mut ranges = Vec::with_capacity(raw.ranges.len());
    let mut sum: u64 = 0;
    let mut prev_last: Option<u64> = None;
    for (i, (text, chk, sha1, line)) in raw.ranges.into_iter().enumerate() {
        if (i as u64).is_multiple_of(CANCEL_EVERY) {
            cancel.check()?;
        }
        let t = text.trim();
        let (first, last) = match t.split_once('-') {
            Some((a, b)) => (parse_u64(a.trim()), parse_u64(b.trim())),
            None => (parse_u64(t), parse_u64(t)),
        };
        let (Some(first), Some(last)) = (first, last) else {
            return Err(invalid(
                line,
                format!("<Range> '{t}' is not 'N' or 'N-M' block numbers"),
            ));
        };
        if first > last {
            return Err(invalid(
                line,
                format!("<Range> '{t}': first block after last"),
            ));
        }
        if last >= blocks_count {
            return Err(invalid(
                line,
                format!("<Range> '{t}' runs past the image's {blocks_count} blocks"),
            ));
        }
        if let Some(p) = prev_last {
            if first <= p {
                return Err(invalid(
                    line,
                    format!(
                        "<Range> '{t}' is out of order or overlaps the range before (ending at block {p})"
                    ),
                ));
            }
        }
        prev_last = Some(last);
        sum += last - first + 1; // cannot overflow: disjoint ranges below blocks_count
        let checksum = match (v2, v13) {
            (true, _) => chk,
            (false, true) => sha1,
            _ => None,
        };
        let checksum = match checksum {
            Some(c) if !is_hex(c.trim(), checksum_type.hex_len()) => {
                return Err(invalid(
                    line,
                    format!(
                        "<Range> checksum '{}' is not {} hex digits",
                        c.trim(),
                        checksum_type.hex_len()
                    ),
                ))
            }
            Some(mut c) => {
                if c.len() != checksum_type.hex_len() {
                    c = c.trim().to_owned();
                }
                c.make_ascii_lowercase();
                Some(c)
            }
            None => None,
        };
        ranges.push(BmapRange {
            first,
            last,
            checksum,
        });
    }
    if sum != mapped {
        return Err(invalid(
            mcl,
            format!(
                "<MappedBlocksCount> {mapped} disagrees with the ranges, which hold {sum} blocks"
            ),
        ));
    }
    Ok(Bmap {
        version,
        image_size,
        block_size,
        blocks_count,
        mapped_blocks_count: mapped,
        checksum_type,
        file_checksum,
        ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsekit_io::ErrorInfo;

    fn sample() -> Bmap {
        Bmap {
            version: WRITE_VERSION.into(),
            image_size: 10 * 4096 + 100,
            block_size: 4096,
            blocks_count: 11,
            mapped_blocks_count: 4,
            checksum_type: ChecksumType::Sha256,
            file_checksum: None,
            ranges: vec![
                BmapRange {
                    first: 0,
                    last: 2,
                    checksum: Some("ab".repeat(32)),
                },
                BmapRange {
                    first: 10,
                    last: 10,
                    checksum: Some("cd".repeat(32)),
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let b = sample();
        let x = b.to_xml();
        let p = Bmap::parse(x.as_bytes()).unwrap();
        assert_eq!(p.ranges, b.ranges);
        assert_eq!(p.image_size, b.image_size);
        assert_eq!(p.mapped_bytes(), 3 * 4096 + 100);
        // Hex digits in upper case are the same checksums.
        let sum = p.file_checksum.unwrap();
        let up = x.replace(&sum, &sum.to_uppercase());
        assert_eq!(Bmap::parse(up.as_bytes()).unwrap().ranges, b.ranges);
    }

    #[test]
    fn file_checksum_covers_bytes() {
        let x = sample().to_xml();
        // One changed space outside any value still breaks the file checksum.
        let bad = x.replacen("<BlockMap>", "<BlockMap> ", 1);
        let e = Bmap::parse(bad.as_bytes()).unwrap_err();
        assert!(matches!(e, Error::BmapChecksum { .. }), "{e}");
        assert_eq!(e.code(), "ERR_SPARSEKIT_CHECKSUM_MISMATCH");
    }

    fn v12(ranges: &str, mapped: u64) -> String {
        format!(
            "<?xml version=\"1.0\" ?>\n<bmap version=\"1.2\">\n<ImageSize> 40960 </ImageSize>\n\
             <BlockSize> 4096 </BlockSize>\n<BlocksCount> 10 </BlocksCount>\n\
             <MappedBlocksCount> {mapped} </MappedBlocksCount>\n<BlockMap>\n{ranges}</BlockMap>\n</bmap>\n"
        )
    }

    fn err_line(x: &str) -> (String, u64) {
        let e = Bmap::parse(x.as_bytes()).unwrap_err();
        (e.code().to_string(), e.line().unwrap_or(0))
    }

    #[test]
    fn v12_ranges() {
        let b =
            Bmap::parse(v12("<Range sha1=\"x\"> 0-1 </Range>\n<Range> 5 </Range>\n", 3).as_bytes())
                .unwrap();
        assert_eq!(b.ranges.len(), 2);
        assert_eq!(b.ranges[0].checksum, None);
        assert_eq!((b.ranges[1].first, b.ranges[1].last), (5, 5));
    }

    #[test]
    fn bad_ranges_name_line() {
        let inv = "ERR_SPARSEKIT_BMAP_INVALID".to_string();
        assert_eq!(
            err_line(&v12("<Range> 3-4 </Range>\n<Range> 1 </Range>\n", 3)),
            (inv.clone(), 9)
        );
        assert_eq!(
            err_line(&v12("<Range> 3-10 </Range>\n", 8)),
            (inv.clone(), 8)
        );
        assert_eq!(
            err_line(&v12("<Range> 4-3 </Range>\n", 2)),
            (inv.clone(), 8)
        );
        assert_eq!(
            err_line(&v12("<Range> 3-4 </Range>\n", 3)),
            (inv.clone(), 6)
        );
        assert_eq!(err_line(&v12("<Range> x </Range>\n", 1)), (inv.clone(), 8));
        assert_eq!(err_line(&v12("<Range> -1 </Range>\n", 1)), (inv.clone(), 8));
        assert_eq!(
            err_line(&v12("<Range> 99999999999999999999999 </Range>\n", 1)),
            (inv.clone(), 8)
        );
        assert_eq!(err_line(&v12("<Range> 1 </Rang>\n", 1)).0, inv);
        assert_eq!(
            err_line(&v12("<Range> 1 </Range>\n", 1).replace("10 <", "11 <")),
            (inv, 5)
        );
    }

    #[test]
    fn malformed_xml_and_truncation() {
        let good = sample().to_xml();
        for cut in [0, 10, good.len() / 2, good.len() - 3] {
            let e = Bmap::parse(&good.as_bytes()[..cut]).unwrap_err();
            assert_eq!(e.code(), "ERR_SPARSEKIT_BMAP_INVALID", "cut {cut}: {e}");
        }
        let e =
            Bmap::parse(b"<bmap version=\"2.0\"><ImageSize>1</ImageSize><x></bmap>").unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_BMAP_INVALID", "{e}");
        let e = Bmap::parse(b"<notbmap version=\"2.0\"/>").unwrap_err();
        assert!(e.to_string().contains("notbmap"), "{e}");
        let e = Bmap::parse(b"<bmap version=\"3.0\"></bmap>").unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_UNSUPPORTED");
        // Every prefix is refused with a code, never a panic.
        for cut in 0..good.len() - 1 {
            let e = Bmap::parse(&good.as_bytes()[..cut]).unwrap_err();
            assert!(
                matches!(
                    e.code(),
                    "ERR_SPARSEKIT_BMAP_INVALID" | "ERR_SPARSEKIT_CHECKSUM_MISMATCH"
                ),
                "cut {cut}: {e}"
            );
            assert!(e.line().is_none_or(|l| l >= 1));
        }
        // Garbage bytes never panic.
        let mut x = good.clone().into_bytes();
        for i in (0..x.len()).step_by(7) {
            x[i] = x[i].wrapping_add(13);
            let _ = Bmap::parse(&x);
        }
    }

    /// A 2.0 bmap of `n` one-block ranges with checksums (about 100 bytes a range).
    fn many_ranges(n: u64) -> String {
        let ranges = (0..n)
            .map(|i| BmapRange {
                first: 2 * i,
                last: 2 * i,
                checksum: Some(format!("{:064x}", i)),
            })
            .collect();
        Bmap {
            version: WRITE_VERSION.into(),
            image_size: 2 * n * 4096,
            block_size: 4096,
            blocks_count: 2 * n,
            mapped_blocks_count: n,
            checksum_type: ChecksumType::Sha256,
            file_checksum: None,
            ranges,
        }
        .to_xml()
    }

    /// Parsing is linear in the file: 500 000 ranges (48 MiB) parse in a second or two
    /// with optimised tests, where finding each element's line by counting from the start
    /// of the file (as before) took hours (4 events a range, each scanning 24 MiB on
    /// average: 5e13 bytes). The bound is 100 times the linear time and far below the
    /// quadratic one.
    /// The 500 000-range bmap of [`parse_is_linear`] and [`abort_while_parsing`].
    fn big() -> &'static str {
        static BIG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        BIG.get_or_init(|| many_ranges(500_000))
    }

    #[test]
    fn parse_is_linear() {
        let x = big();
        let late_line = x.lines().count() as u64 - 2; // the last <Range>
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let t = std::time::Instant::now();
            let b = Bmap::parse(x.as_bytes()).map(|b| b.ranges.len());
            // An error on the last range names its line.
            let bad = x.replacen("> 999998 </Range>", "> 99999x </Range>", 1);
            let e = Bmap::parse(bad.as_bytes()).unwrap_err();
            let _ = tx.send((b, e.code(), e.line(), t.elapsed()));
        });
        let (b, code, line, took) = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("parsing 500 000 ranges twice took more than 120 s: not linear");
        assert_eq!(b.unwrap(), 500_000);
        assert_eq!(
            (code, line),
            ("ERR_SPARSEKIT_BMAP_INVALID", Some(late_line))
        );
        eprintln!("500 000 ranges parsed twice in {took:?}");
    }

    /// Lines are counted right whatever the error: a malformed tag, a bad attribute, an
    /// unparsable number and a bad checksum, each on a different late line, are reported
    /// on the line a newline count from the start of the file gives.
    #[test]
    fn late_errors_name_their_line() {
        let x = many_ranges(2000);
        let line_of = |x: &str, needle: &str| {
            let pos = x.find(needle).unwrap();
            x[..pos].matches('\n').count() as u64 + 1
        };
        // The line of range 1700 ("> 3400 <") with a broken attribute.
        let l1700 = x.lines().find(|l| l.ends_with("> 3400 </Range>")).unwrap();
        let bad_attr = l1700.replacen("chksum=\"", "chksum=\"\"", 1);
        for (from, to) in [
            ("> 3000 </Range>", "> 3000 </Rang>"),   // malformed XML
            (l1700, bad_attr.as_str()),              // malformed attribute
            ("> 3200 </Range>", "> 3200- </Range>"), // not a range
            ("> 3600 </Range>", "> 3598 </Range >"), // overlaps the range before
        ] {
            let bad = x.replacen(from, to, 1);
            let e = Bmap::parse(bad.as_bytes()).unwrap_err();
            assert_eq!(e.code(), "ERR_SPARSEKIT_BMAP_INVALID", "{to}: {e}");
            assert_eq!(e.line(), Some(line_of(&bad, to)), "{to}: {e}");
        }
    }

    /// Abort is looked at while parsing: a parse of 500 000 ranges (about half a second
    /// of CPU) cancelled 10 ms after it started stops with `Aborted`; a token cancelled
    /// before stops it at once, whatever the bmap holds.
    #[test]
    fn abort_while_parsing() {
        let x = big();
        let c = Cancel::new();
        c.cancel();
        let e = Bmap::parse_with(b"not even XML", &c).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_ABORTED", "{e}");
        let c = Cancel::new();
        let t = {
            let c = c.clone();
            std::thread::spawn(move || Bmap::parse_with(x.as_bytes(), &c).map(|_| ()))
        };
        std::thread::sleep(std::time::Duration::from_millis(10));
        c.cancel();
        let e = t.join().unwrap().unwrap_err();
        assert!(matches!(e, Error::Aborted), "{e}");
        // Parsed without a cancel, the same bytes are a good bmap.
        assert_eq!(Bmap::parse(x.as_bytes()).unwrap().ranges.len(), 500_000);
    }

    /// An `ImageSize` above 2^53 - 1 (a valid number for bmaptool, and for the parser up to
    /// 2^63 - 1 before) is refused when the bmap is parsed, naming the element's line and
    /// the limit; 2^53 - 1 itself is taken.
    #[test]
    fn image_size_above_2_53_is_refused() {
        let with_size = |size: u64, mapped_last: u64| {
            format!(
                "<?xml version=\"1.0\" ?>\n<bmap version=\"1.2\">\n<ImageSize> {size} </ImageSize>\n\
                 <BlockSize> 4096 </BlockSize>\n<BlocksCount> {} </BlocksCount>\n\
                 <MappedBlocksCount> 2 </MappedBlocksCount>\n<BlockMap>\n\
                 <Range> 0 </Range>\n<Range> {mapped_last} </Range>\n</BlockMap>\n</bmap>\n",
                size.div_ceil(4096)
            )
        };
        let max = (1u64 << 53) - 1;
        let b = Bmap::parse(with_size(max, max / 4096).as_bytes()).unwrap();
        assert_eq!((b.image_size, b.blocks_count), (max, (1 << 41)));
        for size in [1u64 << 53, 1 << 60, i64::MAX as u64] {
            let e = Bmap::parse(with_size(size, size / 4096).as_bytes()).unwrap_err();
            assert_eq!(
                (e.code(), e.line()),
                ("ERR_SPARSEKIT_BMAP_INVALID", Some(3))
            );
            let m = e.to_string();
            assert!(
                m.contains(&format!("<ImageSize> {size}")) && m.contains("2^53"),
                "{m}"
            );
        }
    }

    /// Ranges that overlap, repeat or run past ImageSize are refused at parse time.
    #[test]
    fn overlapping_and_repeated_ranges() {
        let inv = "ERR_SPARSEKIT_BMAP_INVALID".to_string();
        assert_eq!(
            err_line(&v12("<Range> 3-4 </Range>\n<Range> 4-5 </Range>\n", 4)),
            (inv.clone(), 9)
        );
        assert_eq!(
            err_line(&v12("<Range> 3 </Range>\n<Range> 3 </Range>\n", 2)),
            (inv.clone(), 9)
        );
        assert_eq!(
            err_line(&v12("<Range> 0 </Range>\n<Range> 10 </Range>\n", 2)),
            (inv, 9)
        );
    }

    /// Entity expansion and external entities (XXE) are never resolved: a bmap using them
    /// in a value or an attribute is refused at once, naming the line.
    #[test]
    fn hostile_entities_are_refused() {
        let laughs = "<!DOCTYPE bmap [<!ENTITY a \"1234567890\">\
                      <!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">\
                      <!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">\
                      <!ENTITY d \"&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;\">]>\n";
        let xxe = "<!DOCTYPE bmap [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n";
        let good = v12("<Range> 0 </Range>\n", 1);
        let cases = [
            format!("{laughs}{}", good.replace("> 40960 <", "> &d; <")),
            format!("{xxe}{}", good.replace("> 0 </Range>", "> &x; </Range>")),
            format!("{xxe}{}", good.replace("<Range>", "<Range sha1=\"&x;\">")),
            good.replace("> 4096 <", "> &undefined; <"),
        ];
        for (i, x) in cases.iter().enumerate() {
            let e = Bmap::parse(x.as_bytes()).unwrap_err();
            assert_eq!(e.code(), "ERR_SPARSEKIT_BMAP_INVALID", "case {i}: {e}");
            assert!(e.line().is_some_and(|l| l > 1), "case {i}: {e}");
        }
    }

    /// Random mutations of a valid bmap (SPARSEKIT_LONG_TESTS=1 for 200 000 cases): never a
    /// panic, and anything accepted keeps the invariants.
    #[test]
    fn mutations_never_panic() {
        let n = if std::env::var_os("SPARSEKIT_LONG_TESTS").is_some() {
            200_000
        } else {
            3_000
        };
        let good = sample().to_xml().into_bytes();
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..n {
            let mut x = good.clone();
            for _ in 0..1 + rnd() % 4 {
                let i = (rnd() % x.len() as u64) as usize;
                match rnd() % 3 {
                    0 => x[i] = rnd() as u8,
                    1 => {
                        x.remove(i);
                    }
                    _ => x.insert(i, b"<>/0-9 \"&;"[(rnd() % 10) as usize]),
                }
            }
            if let Ok(b) = Bmap::parse(&x) {
                assert_eq!(b.blocks_count, b.image_size.div_ceil(b.block_size));
                assert!(b.ranges.windows(2).all(|w| w[0].last < w[1].first));
                assert!(b
                    .ranges
                    .iter()
                    .all(|r| r.first <= r.last && r.last < b.blocks_count));
            }
        }
    }
}
