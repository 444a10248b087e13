//! An opened image: its header, L1 table, L2 cache, data file and backing chain.

use sparsekit_io::sys::MetadataExt;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use sparsekit_io::{errno, FileKind, FileStorage, Storage};

use crate::error::{corrupt_range, unsupported, Error, Result};
use crate::header::{CryptMethod, Header};
use crate::refblock::Stored;
use crate::snapshot::{read_snapshots, Snapshot};
use crate::table::{decode, l1_entry_offset, Sub};

/// Deepest backing chain followed (XCP-ng's limit).
pub const MAX_CHAIN_DEPTH: usize = 30;
/// Default memory for cached L2 tables of one image.
pub const DEFAULT_L2_CACHE_BYTES: usize = 32 << 20;

/// Whether to open the backing chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackingPolicy {
    /// Open the backing files (format from the header extension, never probed).
    #[default]
    Follow,
    /// Do not open them: unallocated clusters read as zeros.
    None,
}

/// How to open an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// Follow the backing chain or not.
    pub backing: BackingPolicy,
    /// Most backing files below the image (at most [`MAX_CHAIN_DEPTH`]).
    pub max_depth: usize,
    /// Memory cap for cached L2 tables, per image.
    pub l2_cache_bytes: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            backing: BackingPolicy::Follow,
            max_depth: MAX_CHAIN_DEPTH,
            l2_cache_bytes: DEFAULT_L2_CACHE_BYTES,
        }
    }
}

/// A raw image at the bottom of a chain.
#[derive(Debug)]
pub struct RawImage {
    storage: FileStorage,
    filename: String,
    size: u64,
}

impl RawImage {
    /// The file name as the chain names it.
    pub fn filename(&self) -> &str {
        &self.filename
    }
    /// Its size.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// One layer of a chain.
pub enum Layer {
    /// A qcow2 image.
    Qcow2(Box<Image>),
    /// A raw file or block device.
    Raw(RawImage),
}

impl Layer {
    /// Virtual size.
    pub fn size(&self) -> u64 {
        match self {
            Layer::Qcow2(i) => i.header.size,
            Layer::Raw(r) => r.size,
        }
    }
}

/// What a run of guest bytes of one layer is (with host offsets, before hiding them for
/// encrypted images).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Run {
    Data(u64),
    Compressed {
        offset: u64,
        len: u64,
    },
    Zero(Option<u64>),
    Unallocated(Option<u64>),
    /// Raw layers: data or a hole of the file at the same offset.
    RawData,
    RawHole,
}

type L2Table = Arc<Vec<u64>>;

struct L2Cache {
    tables: HashMap<u64, L2Table>,
    bytes: usize,
}

/// An opened qcow2 image, never written to.
pub struct Image {
    storage: Box<dyn Storage>,
    filename: Option<String>,
    pub(crate) header: Header,
    pub(crate) l1: Vec<u64>,
    pub(crate) file_size: u64,
    data_file: Option<Box<dyn Storage>>,
    pub(crate) backing: Option<Box<Layer>>,
    pub(crate) snapshots: Vec<Snapshot>,
    pub(crate) snapshots_size: u64,
    cache: Mutex<L2Cache>,
    cache_cap: usize,
    compressed: Mutex<Option<(u64, Arc<Vec<u8>>)>>,
    pub(crate) actual_size: Option<u64>,
    pub(crate) is_block_device: bool,
    /// The image file, for `SEEK_DATA` under metadata preallocation.
    host_file: Option<std::fs::File>,
    /// qemu's `qcow2_detect_metadata_preallocation`, computed on first use.
    metadata_prealloc: std::sync::OnceLock<bool>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("filename", &self.filename)
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// qemu's `path_has_protocol`: a `:` before any `/` (`json:{...}`, `nbd:host:1`).
pub fn has_protocol(name: &str) -> bool {
    match name.find(':') {
        Some(c) => !name[..c].contains('/'),
        None => false,
    }
}

/// qemu's `path_combine`: `name` relative to the folder of `base`, as given.
pub fn path_combine(base: &str, name: &str) -> String {
    if name.starts_with('/') {
        return name.to_string();
    }
    match base.rfind('/') {
        Some(i) => format!("{}{}", &base[..=i], name),
        None => name.to_string(),
    }
}

fn file_identity(s: &FileStorage) -> Result<(u64, u64)> {
    let m = s
        .file()
        .metadata()
        .map_err(|e| sparsekit_io::IoError::new("stat", e))?;
    Ok((m.dev(), m.ino()))
}

impl Image {
    /// Open the image at `path` (a regular file or a block device) and, under
    /// [`BackingPolicy::Follow`], its backing chain.
    pub fn open(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Image> {
        let mut seen = Vec::new();
        let name = path.as_ref().to_string_lossy().into_owned();
        Self::open_in_chain(&name, opts, 0, &mut seen)
    }

    fn open_in_chain(
        filename: &str,
        opts: &OpenOptions,
        depth: usize,
        seen: &mut Vec<(u64, u64)>,
    ) -> Result<Image> {
        let path = Path::new(filename);
        let fs = FileStorage::open(path)?;
        let id = file_identity(&fs).map_err(|e| e.with_path(Some(path)))?;
        if seen.contains(&id) {
            return Err(Error::Backing {
                path: None,
                name: filename.to_string(),
                detail: "the backing chain loops back to an image already in it".into(),
            });
        }
        seen.push(id);
        let is_block_device = fs.kind() == FileKind::BlockDevice;
        let actual_size = if is_block_device {
            None
        } else {
            fs.file().metadata().ok().map(|m| m.blocks() * 512)
        };
        let host_file = fs.file().try_clone().ok();
        // qemu's shared read lock (byte 100, consistent read; every permission shared), held
        // as long as the image is open; best effort (a filesystem without OFD locks reads
        // anyway).
        let _ = crate::sys::ofd_read_lock(fs.file(), crate::lock::LOCK_PERM_BASE);
        let mut img = Image::from_storage_named(Box::new(fs), Some(filename.to_string()), opts)
            .map_err(|e| e.with_path(Some(path)))?;
        img.host_file = host_file;
        img.actual_size = actual_size;
        img.is_block_device = is_block_device;
        let p = Some(path);
        if let Some(name) = img.header.data_file.clone() {
            if has_protocol(&name) || name.is_empty() || name.contains('\0') {
                let detail = if name.contains('\0') {
                    "a data file name with a NUL byte names no file"
                } else {
                    "protocol-style data file names are refused"
                };
                return Err(Error::Backing {
                    path: None,
                    name,
                    detail: detail.into(),
                }
                .with_path(p));
            }
            let full = path_combine(filename, &name);
            let ds = FileStorage::open(Path::new(&full))?;
            img.data_file = Some(Box::new(ds));
        } else if img.header.has_data_file() {
            return Err(
                unsupported("external data file bit set without a data file name").with_path(p),
            );
        }
        if opts.backing == BackingPolicy::Follow {
            if let Some(name) = img.header.backing_file.clone() {
                let refuse = |detail: &str| {
                    Error::Backing {
                        path: None,
                        name: name.clone(),
                        detail: detail.to_string(),
                    }
                    .with_path(p)
                };
                if name.is_empty() {
                    return Err(refuse("the backing file name is empty"));
                }
                if has_protocol(&name) {
                    return Err(refuse(
                        "protocol-style names (json:, nbd:, ...) are refused",
                    ));
                }
                if name.contains('\0') {
                    // A C string ends at the NUL (qemu would open the name cut there):
                    // neither reading is safe to guess.
                    return Err(refuse("a name with a NUL byte names no file"));
                }
                if depth + 1 > opts.max_depth.min(MAX_CHAIN_DEPTH) {
                    return Err(refuse(&format!(
                        "the backing chain is deeper than {}",
                        opts.max_depth.min(MAX_CHAIN_DEPTH)
                    )));
                }
                let full = path_combine(filename, &name);
                // A name with control characters (an escape sequence, a line break) must not
                // reach a message raw: an error opening it (which names the path) is told
                // with those characters escaped.
                let opened = |e: Error| -> Error {
                    if !name.chars().any(char::is_control) {
                        return e;
                    }
                    let why: String = e
                        .to_string()
                        .chars()
                        .map(|c| {
                            if c.is_control() {
                                c.escape_debug().to_string()
                            } else {
                                c.to_string()
                            }
                        })
                        .collect();
                    refuse(&format!("opening it failed: {why}"))
                };
                let layer = match img.header.backing_format.as_deref() {
                    Some("qcow2") => Layer::Qcow2(Box::new(
                        Self::open_in_chain(&full, opts, depth + 1, seen).map_err(opened)?,
                    )),
                    Some("raw") => {
                        let s = FileStorage::open(Path::new(&full))
                            .map_err(|e| opened(Error::Io(e)))?;
                        let id = file_identity(&s)?;
                        if seen.contains(&id) {
                            return Err(refuse(
                                "the backing chain loops back to an image already in it",
                            ));
                        }
                        let size = s.size()?;
                        Layer::Raw(RawImage {
                            storage: s,
                            filename: full,
                            size,
                        })
                    }
                    Some(f) => {
                        return Err(refuse(&format!(
                            "backing format {} is not qcow2 or raw",
                            crate::error::quoted(f)
                        )))
                    }
                    None => {
                        return Err(refuse(
                            "no backing format recorded (formats are never probed)",
                        ))
                    }
                };
                img.backing = Some(Box::new(layer));
            }
        }
        Ok(img)
    }

    /// Open an image from any storage; backing files and data files are not opened
    /// (there is no folder to resolve them in).
    pub fn from_storage(storage: Box<dyn Storage>, opts: &OpenOptions) -> Result<Image> {
        let p = storage.path().map(Path::to_path_buf);
        Self::from_storage_named(storage, None, opts).map_err(|e| e.with_path(p.as_deref()))
    }

    fn from_storage_named(
        storage: Box<dyn Storage>,
        filename: Option<String>,
        opts: &OpenOptions,
    ) -> Result<Image> {
        let header = Header::read(&*storage)?;
        let file_size = storage.size()?;
        // The L1 table: header validation capped it at 32 MiB and put it inside the file.
        let n = header.l1_size as usize;
        let mut raw = vec![0u8; n * 8];
        storage.read_exact_at(&mut raw, header.l1_table_offset)?;
        let l1: Vec<u64> = raw
            .chunks_exact(8)
            .map(|c| u64::from_be_bytes(c.try_into().expect("8")))
            .collect();
        let (snapshots, snapshots_size) = read_snapshots(&*storage, &header, file_size)?;
        Ok(Image {
            storage,
            filename,
            header,
            l1,
            file_size,
            data_file: None,
            backing: None,
            snapshots,
            snapshots_size,
            cache: Mutex::new(L2Cache {
                tables: HashMap::new(),
                bytes: 0,
            }),
            cache_cap: opts.l2_cache_bytes.max(1 << 16),
            compressed: Mutex::new(None),
            actual_size: None,
            is_block_device: false,
            host_file: None,
            metadata_prealloc: std::sync::OnceLock::new(),
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The active L1 table's entries as stored.
    pub fn l1_entries(&self) -> &[u64] {
        &self.l1
    }

    /// The internal snapshots.
    pub fn snapshots(&self) -> &[Snapshot] {
        &self.snapshots
    }

    /// Virtual size in bytes.
    pub fn size(&self) -> u64 {
        self.header.size
    }

    /// The file name as opened (`None` for storage opened without one).
    pub fn filename(&self) -> Option<&str> {
        self.filename.as_deref()
    }

    /// The backing layer, when the chain was followed.
    pub fn backing(&self) -> Option<&Layer> {
        self.backing.as_deref()
    }

    /// Bytes of the image file (or device).
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    pub(crate) fn storage(&self) -> &dyn Storage {
        &*self.storage
    }

    /// Take the storage out (the image is left over an empty one), to parse it again.
    pub(crate) fn take_storage(&mut self) -> Box<dyn Storage> {
        std::mem::replace(&mut self.storage, Box::new(sparsekit_io::MemStorage::new()))
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        self.filename.as_deref().map(Path::new)
    }

    pub(crate) fn err(&self, e: Error) -> Error {
        e.with_path(self.path())
    }

    /// Load (or find cached) the L2 table at `off`; entries as stored (16-byte entries as
    /// two words).
    pub(crate) fn l2_table(&self, off: u64, l1_index: u64) -> Result<L2Table> {
        if let Some(t) = self.cache.lock().expect("l2 cache").tables.get(&off) {
            return Ok(t.clone());
        }
        let cs = self.header.cluster_size();
        if off.checked_add(cs).is_none_or(|e| e > self.file_size) {
            return Err(self.err(corrupt_range(
                "L2 table",
                off,
                cs,
                format!(
                    "L2 table of L1 entry {l1_index} at {off:#x} runs past the end of the file ({} bytes)",
                    self.file_size
                ),
            )));
        }
        let mut raw = vec![0u8; cs as usize];
        self.storage.read_exact_at(&mut raw, off)?;
        let t: L2Table = Arc::new(
            raw.chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().expect("8")))
                .collect(),
        );
        let mut c = self.cache.lock().expect("l2 cache");
        if c.bytes + cs as usize > self.cache_cap {
            c.tables.clear();
            c.bytes = 0;
        }
        c.bytes += cs as usize;
        c.tables.insert(off, t.clone());
        Ok(t)
    }

    /// The run of same-kind guest bytes starting at `off` (at most `max` bytes, inside one
    /// L2 table's range), with host offsets at `off`.
    pub(crate) fn run(&self, off: u64, max: u64) -> Result<(Run, u64)> {
        let h = &self.header;
        let cov = h.l2_coverage();
        let l1_index = off / cov;
        let region_end = ((l1_index + 1) * cov).min(h.size);
        let max = max.min(region_end - off);
        let entry = self.l1[l1_index as usize];
        let l1_at = h.l1_table_offset + l1_index * 8;
        let Some(l2_off) = l1_entry_offset(h, entry, l1_at).map_err(|e| self.err(e))? else {
            return Ok((Run::Unallocated(None), max));
        };
        let table = self.l2_table(l2_off, l1_index)?;
        let sub = h.subcluster_size();
        let ext = h.extended_l2();
        let end = off + max;
        let mut pos = off;
        let mut first: Option<Run> = None;
        while pos < end {
            let in_region = pos - l1_index * cov;
            let i = (in_region >> h.cluster_bits) as usize;
            let sc = ((in_region & (h.cluster_size() - 1)) / sub) as u32;
            let (e, bm) = if ext {
                (table[2 * i], table[2 * i + 1])
            } else {
                (table[i], 0)
            };
            let entry_at = l2_off + i as u64 * h.l2_entry_size();
            let s = decode(h, e, bm, sc, entry_at).map_err(|e| self.err(e))?;
            let delta = pos & (sub - 1);
            let run = match s {
                Sub::Unallocated => Run::Unallocated(None),
                Sub::UnallocatedAlloc(o) => Run::Unallocated(Some(o + delta)),
                Sub::Data(o) => Run::Data(o + delta),
                Sub::Zero => Run::Zero(None),
                Sub::ZeroAlloc(o) => Run::Zero(Some(o + delta)),
                Sub::Compressed { offset, len } => Run::Compressed { offset, len },
            };
            // How far this subcluster goes.
            let step_end = ((pos / sub) + 1) * sub;
            let step_end = step_end.min(end);
            match first {
                None => first = Some(run),
                Some(f) => {
                    let moved = pos - off;
                    let same = match (f, run) {
                        (Run::Data(a), Run::Data(b)) => a + moved == b,
                        (Run::Zero(None), Run::Zero(None)) => true,
                        (Run::Zero(Some(a)), Run::Zero(Some(b))) => a + moved == b,
                        (Run::Unallocated(None), Run::Unallocated(None)) => true,
                        (Run::Unallocated(Some(a)), Run::Unallocated(Some(b))) => a + moved == b,
                        _ => false,
                    };
                    if !same {
                        return Ok((f, pos - off));
                    }
                }
            }
            if matches!(run, Run::Compressed { .. }) {
                // A compressed cluster is its own run.
                let cend = ((pos >> h.cluster_bits) + 1) << h.cluster_bits;
                return Ok((run, cend.min(end) - off));
            }
            pos = step_end;
        }
        Ok((first.unwrap_or(Run::Unallocated(None)), end - off))
    }

    /// Whether the image looks preallocated with `preallocation=metadata`: far more
    /// clusters have a refcount than the file has allocated blocks (qemu's
    /// `qcow2_detect_metadata_preallocation`, which decides whether block status looks at
    /// the host file's holes).
    fn metadata_preallocated(&self) -> bool {
        *self.metadata_prealloc.get_or_init(|| {
            let (Some(real), Some(_)) = (self.actual_size, &self.host_file) else {
                return false;
            };
            if self.header.has_data_file() {
                return false;
            }
            let cs = self.header.cluster_size();
            let real_clusters = real / cs;
            let threshold = (real_clusters * 10 / 9).max(real_clusters + 2);
            let mut stored = Stored::new(self.storage(), &self.header, self.file_size);
            let mut allocated = 0u64;
            for c in 0..self.file_size.div_ceil(cs) {
                if stored.get(c).unwrap_or(0) > 0 {
                    allocated += 1;
                    if allocated > threshold {
                        return true;
                    }
                }
            }
            false
        })
    }

    /// For a data run at host offset `host`, what the host file says (qemu's
    /// `BDRV_BLOCK_RECURSE` under metadata preallocation): `(reads as zero, length)`.
    pub(crate) fn host_status(&self, host: u64, len: u64) -> Result<(bool, u64)> {
        let Some(f) = &self.host_file else {
            return Ok((false, len));
        };
        if !self.metadata_preallocated() {
            return Ok((false, len));
        }
        if host >= self.file_size {
            return Ok((true, len));
        }
        let io = |e| Error::from(sparsekit_io::IoError::new("lseek", e)).with_path(self.path());
        match crate::sys::seek(f, host, false) {
            // A hole up to the end of the file: zeros for the whole run.
            Ok(None) => Ok((true, len)),
            Ok(Some(d)) if d > host => Ok((true, (d - host).min(len))),
            Ok(Some(_)) => match crate::sys::seek(f, host, true) {
                Ok(Some(h)) if h > host => Ok((false, (h - host).min(len))),
                Ok(_) => Ok((false, len)),
                Err(e) => Err(io(e)),
            },
            Err(e) if matches!(e.raw_os_error(), Some(errno::EINVAL | errno::EOPNOTSUPP)) => {
                Ok((false, len))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Whether guest data can be read (not encrypted).
    pub(crate) fn check_readable(&self) -> Result<()> {
        match self.header.crypt() {
            CryptMethod::None => Ok(()),
            CryptMethod::Aes => Err(self.err(Error::Encrypted {
                path: None,
                method: "aes",
            })),
            CryptMethod::Luks => Err(self.err(Error::Encrypted {
                path: None,
                method: "luks",
            })),
        }
    }

    /// Read host bytes for guest data: from the data file if there is one; past the end of
    /// the file reads as zeros (as qemu does).
    pub(crate) fn read_host(&self, buf: &mut [u8], host: u64) -> Result<()> {
        let s: &dyn Storage = match &self.data_file {
            Some(d) => &**d,
            None if self.header.has_data_file() => {
                return Err(self.err(unsupported(
                    "the external data file is not open (image opened without its folder)",
                )))
            }
            None => &*self.storage,
        };
        let mut done = 0;
        while done < buf.len() {
            let n = s.read_at(&mut buf[done..], host + done as u64)?;
            if n == 0 {
                buf[done..].fill(0);
                break;
            }
            done += n;
        }
        Ok(())
    }

    /// The decompressed cluster stored at `offset`/`len`.
    pub(crate) fn decompressed(&self, offset: u64, len: u64) -> Result<Arc<Vec<u8>>> {
        if let Some((o, d)) = &*self.compressed.lock().expect("cache") {
            if *o == offset {
                return Ok(d.clone());
            }
        }
        let cs = self.header.cluster_size() as usize;
        if offset >= self.file_size {
            return Err(self.err(corrupt_range(
                "compressed cluster",
                offset,
                len,
                format!("starts past the end of the file ({} bytes)", self.file_size),
            )));
        }
        let avail = (self.file_size - offset).min(len) as usize;
        let mut input = vec![0u8; avail];
        self.storage.read_exact_at(&mut input, offset)?;
        let out = crate::compress::decompress(self.header.compression_type, &input, cs)
            .map_err(|d| self.err(corrupt_range("compressed cluster", offset, len, d)))?;
        let out = Arc::new(out);
        *self.compressed.lock().expect("cache") = Some((offset, out.clone()));
        Ok(out)
    }

    /// Guest bytes of this layer at `off` (inside the virtual size), through the chain.
    pub(crate) fn read_guest(&self, buf: &mut [u8], off: u64) -> Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let (run, n) = self.run(pos, (buf.len() - done) as u64)?;
            let n = n as usize;
            let out = &mut buf[done..done + n];
            match run {
                Run::Data(h) => {
                    self.check_readable()?;
                    self.read_host(out, h)?;
                }
                Run::Compressed { offset, len } => {
                    self.check_readable()?;
                    let d = self.decompressed(offset, len)?;
                    let in_cluster = (pos & (self.header.cluster_size() - 1)) as usize;
                    out.copy_from_slice(&d[in_cluster..in_cluster + n]);
                }
                Run::Zero(_) => out.fill(0),
                Run::Unallocated(_) => match &self.backing {
                    Some(b) => read_layer(b, out, pos)?,
                    None => out.fill(0),
                },
                Run::RawData | Run::RawHole => unreachable!("raw runs come from raw layers"),
            }
            done += n;
        }
        Ok(())
    }
}

/// Read guest bytes of `layer` at `off`; bytes past its size read as zeros.
pub(crate) fn read_layer(layer: &Layer, buf: &mut [u8], off: u64) -> Result<()> {
    let size = layer.size();
    let inside = if off >= size {
        0
    } else {
        (size - off).min(buf.len() as u64) as usize
    };
    buf[inside..].fill(0);
    if inside == 0 {
        return Ok(());
    }
    match layer {
        Layer::Qcow2(i) => i.read_guest(&mut buf[..inside], off),
        Layer::Raw(r) => {
            let mut done = 0;
            while done < inside {
                let n = r
                    .storage
                    .read_at(&mut buf[done..inside], off + done as u64)?;
                if n == 0 {
                    buf[done..inside].fill(0);
                    break;
                }
                done += n;
            }
            Ok(())
        }
    }
}

/// Run of a raw layer: data or hole by `SEEK_DATA`/`SEEK_HOLE` (all data where the file
/// cannot tell, as on a block device).
pub(crate) fn raw_run(r: &RawImage, off: u64, max: u64) -> Result<(Run, u64)> {
    let f = r.storage.file();
    let io = |e| sparsekit_io::IoError::new("lseek", e).with_path(Path::new(&r.filename));
    match crate::sys::seek(f, off, false) {
        Ok(Some(d)) if d > off => Ok((Run::RawHole, (d - off).min(max))),
        Ok(None) => Ok((Run::RawHole, max)),
        Ok(Some(_)) => match crate::sys::seek(f, off, true) {
            Ok(Some(h)) if h > off => Ok((Run::RawData, (h - off).min(max))),
            Ok(_) => Ok((Run::RawData, max)),
            Err(e) => Err(io(e).into()),
        },
        // Block devices and file systems without SEEK_DATA: all data.
        Err(e) if matches!(e.raw_os_error(), Some(errno::EINVAL | errno::EOPNOTSUPP)) => {
            Ok((Run::RawData, max))
        }
        Err(e) => Err(io(e).into()),
    }
}

/// Where the backing chain's names point, for `info`.
pub(crate) fn backing_names(img: &Image) -> Option<(String, String)> {
    let name = img.header.backing_file.clone()?;
    let full = match &img.filename {
        Some(f) => path_combine(f, &name),
        None => name.clone(),
    };
    Some((name, full))
}
