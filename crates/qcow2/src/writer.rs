//! Writing a qcow2 image from guest data ([`import_image`], [`export_stream`]): any
//! [`Source`] (a raw file or block device, a qcow2 guest, HTTP storage) into a new image
//! where holes and all-zero clusters stay unallocated, optionally as an overlay on a
//! backing image that holds only the clusters that differ from it.
//!
//! Two layouts, both reproducible byte for byte:
//! - **Uncompressed** ([`Layout`]): header cluster, L1 table, refcount table, refcount
//!   blocks, L2 tables, data clusters in guest order. The metadata area is sized from the
//!   source's map alone (the clusters that may hold data), so [`import_image`] writes
//!   data clusters as it scans them (reading the source once) and the tables after, and
//!   [`ExportStream`] (which maps and scans first, then reads again) knows its length
//!   before its first byte and gives the same bytes. On ext4 the data area of a new file
//!   is allocated in one call before it is written.
//! - **Compressed** (zlib = raw deflate with a 4 KiB window as qemu's `-12` window bits,
//!   or zstd frames): units of clusters are read and compressed on every core, each
//!   thread taking the next unit when done with one, each cluster alone, and written in
//!   cluster order after the header cluster, packed byte by byte as qemu packs them; the
//!   tables follow the data. Compression of one cluster does not depend on any other,
//!   and placement is decided in cluster order on one thread, so the bytes do not depend
//!   on the number of threads.
//!
//! Failure order: a file is written as a temporary file beside the destination, the
//! header cluster last (until then the file is no image), and renamed over the
//! destination when complete, so a failure (a full disk, a failing source read, an abort)
//! leaves no image; a file being replaced is synced first, so a crash leaves the old file.

use std::path::Path;
use std::sync::mpsc;

use sparsekit_io::{is_zero, Cancel, Control, FileKind, FileStorage, IoError, Phase, Storage};

use crate::edit::FEATURE_NAMES;
use crate::error::{refused, Error, Result};
use crate::header::{
    CompressionType, EXT_BACKING_FORMAT, EXT_FEATURE_NAMES, MAX_BACKING_NAME, MAX_CLUSTER_BITS,
    MAX_L1_TABLE_BYTES, MAX_REFCOUNT_TABLE_BYTES, MAX_VIRTUAL_SIZE, MIN_CLUSTER_BITS,
    MIN_CLUSTER_BITS_EXTENDED_L2,
};
use crate::image::{path_combine, Image, OpenOptions};
use crate::source::{cluster_runs, merge, Source, StorageSource};
use crate::table::{COMPRESSED_SECTOR, OFLAG_COMPRESSED, OFLAG_COPIED, OFLAG_ZERO};
use sparsekit_io::PageBuf;

/// Bytes read per unit of work (one thread reads, scans and compresses one unit).
pub const WRITE_UNIT: u64 = 2 << 20;
/// Bytes read first from each cluster to find data ([`Scanner::probe`]).
const PROBE: usize = 4096;
/// Units read ahead of the writer when writing uncompressed (one thread reads): on a
/// busy machine the reader and the writer each go on whenever they get a core.
const READ_AHEAD: usize = 4;
/// Units per compressing thread that may be compressed ahead of the writer.
const COMPRESS_AHEAD: usize = 4;
/// Most bytes of one chunk of an [`ExportStream`] (a run of data clusters read at once).
pub const STREAM_CHUNK: u64 = 4 << 20;
/// Refcounts are 16 bits wide (refcount_order 4, qemu's default).
const REFCOUNT_BYTES: u64 = 2;
/// The largest 16-bit refcount.
const MAX_REFCOUNT: u32 = 0xffff;
/// Extended L2: every subcluster allocated (bits 0..31 of the bitmap).
const EXT_ALL_ALLOCATED: u64 = 0xffff_ffff;
/// Extended L2: every subcluster reads as zeros (bits 32..63 of the bitmap).
const EXT_ALL_ZERO: u64 = 0xffff_ffff << 32;

/// The backing file an overlay names in its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackingFile {
    /// The name stored in the header (relative names are relative to the image's folder).
    pub file: String,
    /// `qcow2` or `raw`.
    pub format: String,
}

/// Options of [`import_image`] and [`export_stream`], named as `qemu-img convert -o`
/// names them.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Cluster size, a power of two from 512 bytes to 2 MiB (default 64 KiB).
    pub cluster_size: u64,
    /// `compat=0.10` (version 2) instead of `1.1` (version 3).
    pub compat_v2: bool,
    /// Extended L2 entries (version 3, clusters of 16 KiB or more).
    pub extended_l2: bool,
    /// Compress every cluster that shrinks (`None`: uncompressed). zstd needs version 3.
    pub compression: Option<CompressionType>,
    /// Write an overlay on this backing file: clusters equal to its data stay unallocated.
    pub backing: Option<BackingFile>,
    /// Threads reading and compressing (0: one per core). The output does not depend on it.
    pub threads: usize,
    /// Trim: the byte ranges `(start, length)` of the guest that are in use (for
    /// instance the used blocks of its file systems, as `sparsekit_layout` finds them);
    /// guest clusters lying entirely outside them are left unallocated, so they read as
    /// zeros (or, in an overlay, as the backing image's bytes). A cluster partly in use
    /// is stored whole, with all its bytes. `None`: every cluster with data is stored.
    pub in_use: Option<Vec<(u64, u64)>>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            cluster_size: 65536,
            compat_v2: false,
            extended_l2: false,
            compression: None,
            backing: None,
            threads: 0,
            in_use: None,
        }
    }
}

/// What [`import_image`] wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportResult {
    /// The virtual size (the source's size rounded up to 512 bytes).
    pub size: u64,
    /// Bytes of the image file.
    pub file_size: u64,
    /// Guest clusters stored uncompressed.
    pub data_clusters: u64,
    /// Guest clusters stored compressed.
    pub compressed_clusters: u64,
    /// Guest clusters stored as zero clusters (over a backing file that has data there).
    pub zero_clusters: u64,
}

/// The shape of the image: sizes derived from the options and the virtual size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geometry {
    pub bits: u32,
    pub cs: u64,
    pub v3: bool,
    pub ext: bool,
    pub size: u64,
    pub clusters: u64,
    pub per_l2: u64,
    pub l1_size: u64,
    pub l1_clusters: u64,
}

impl Geometry {
    /// Validate `o` for a source of `source_size` bytes.
    pub(crate) fn new(o: &ImportOptions, source_size: u64) -> Result<Geometry> {
        let cs = o.cluster_size;
        if !cs.is_power_of_two() || !(1 << MIN_CLUSTER_BITS..=1 << MAX_CLUSTER_BITS).contains(&cs) {
            return Err(refused(format!(
                "cluster size {cs} is not a power of two from 512 bytes to 2 MiB"
            )));
        }
        let bits = cs.trailing_zeros();
        if o.compat_v2 && o.extended_l2 {
            return Err(refused("extended L2 entries need compat 1.1 (version 3)"));
        }
        if o.compat_v2 && o.compression == Some(CompressionType::Zstd) {
            return Err(refused(
                "zstd compression needs compat 1.1 (version 3): version 2 has no compression type field",
            ));
        }
        if o.extended_l2 && bits < MIN_CLUSTER_BITS_EXTENDED_L2 {
            return Err(refused("extended L2 needs clusters of 16 KiB or more"));
        }
        if let Some(b) = &o.backing {
            if b.file.is_empty()
                || b.file.contains('\0')
                || b.file.len() > MAX_BACKING_NAME as usize
            {
                return Err(refused(format!(
                    "backing file name {} is empty, longer than {MAX_BACKING_NAME} bytes or holds a NUL byte",
                    crate::error::quoted(&b.file)
                )));
            }
            if b.format != "qcow2" && b.format != "raw" {
                return Err(refused(format!(
                    "backing format {} is not qcow2 or raw",
                    crate::error::quoted(&b.format)
                )));
            }
        }
        let size = source_size.div_ceil(512) * 512;
        if size > MAX_VIRTUAL_SIZE {
            return Err(refused(format!(
                "the source has {source_size} bytes, more than a qcow2 image holds"
            )));
        }
        let entry = if o.extended_l2 { 16 } else { 8 };
        let per_l2 = cs / entry;
        let clusters = size.div_ceil(cs);
        let l1_size = clusters.div_ceil(per_l2);
        if l1_size * 8 > MAX_L1_TABLE_BYTES {
            return Err(refused(format!(
                "a virtual size of {size} bytes needs an L1 table of {l1_size} entries, more than the limit of {} MiB; use larger clusters",
                MAX_L1_TABLE_BYTES >> 20
            )));
        }
        Ok(Geometry {
            bits,
            cs,
            v3: !o.compat_v2,
            ext: o.extended_l2,
            size,
            clusters,
            per_l2,
            l1_size,
            l1_clusters: (l1_size * 8).div_ceil(cs).max(1),
        })
    }

    fn entry_size(&self) -> usize {
        if self.ext {
            16
        } else {
            8
        }
    }

    /// Refcount blocks and refcount table clusters that count `others` clusters and
    /// themselves (qemu's fixed point in `qcow2_refcount_metadata_size`).
    pub(crate) fn refcount_clusters(&self, others: u64) -> Result<(u64, u64)> {
        let per_block = self.cs / REFCOUNT_BYTES;
        let per_table = self.cs / 8;
        let (mut blocks, mut table) = (0u64, 0u64);
        loop {
            let b = (others + blocks + table).div_ceil(per_block);
            let t = b.div_ceil(per_table);
            if (b, t) == (blocks, table) {
                break;
            }
            (blocks, table) = (b, t);
        }
        if table * self.cs > MAX_REFCOUNT_TABLE_BYTES {
            return Err(refused(format!(
                "the image needs a refcount table of {} bytes, more than {MAX_REFCOUNT_TABLE_BYTES}; use larger clusters",
                table * self.cs
            )));
        }
        Ok((blocks, table.max(1)))
    }

    /// The header cluster.
    pub(crate) fn header(
        &self,
        o: &ImportOptions,
        l1_offset: u64,
        rt_offset: u64,
        rt_clusters: u64,
    ) -> Result<Vec<u8>> {
        let hlen: usize = if self.v3 { 112 } else { 72 };
        let mut b = vec![0u8; hlen];
        b[0..4].copy_from_slice(b"QFI\xfb");
        b[4..8].copy_from_slice(&(if self.v3 { 3u32 } else { 2 }).to_be_bytes());
        b[20..24].copy_from_slice(&self.bits.to_be_bytes());
        b[24..32].copy_from_slice(&self.size.to_be_bytes());
        b[36..40].copy_from_slice(&(self.l1_size as u32).to_be_bytes());
        b[40..48].copy_from_slice(&l1_offset.to_be_bytes());
        b[48..56].copy_from_slice(&rt_offset.to_be_bytes());
        b[56..60].copy_from_slice(&(rt_clusters as u32).to_be_bytes());
        if self.v3 {
            let mut incompat: u64 = 0;
            if self.ext {
                incompat |= crate::header::INCOMPAT_EXTENDED_L2;
            }
            if o.compression == Some(CompressionType::Zstd) {
                incompat |= crate::header::INCOMPAT_COMPRESSION;
                b[104] = 1;
            }
            b[72..80].copy_from_slice(&incompat.to_be_bytes());
            b[96..100].copy_from_slice(&4u32.to_be_bytes());
            b[100..104].copy_from_slice(&112u32.to_be_bytes());
        }
        let ext = |b: &mut Vec<u8>, kind: u32, data: &[u8]| {
            b.extend_from_slice(&kind.to_be_bytes());
            b.extend_from_slice(&(data.len() as u32).to_be_bytes());
            b.extend_from_slice(data);
            b.resize(b.len().div_ceil(8) * 8, 0);
        };
        if let Some(bf) = &o.backing {
            ext(&mut b, EXT_BACKING_FORMAT, bf.format.as_bytes());
        }
        // As qemu: no feature-name table with clusters of 4 KiB and below.
        if self.v3 && self.cs > 4096 {
            let mut t = Vec::new();
            for (kind, bit, name) in FEATURE_NAMES {
                let mut e = [0u8; 48];
                e[0] = kind;
                e[1] = bit;
                e[2..2 + name.len()].copy_from_slice(name.as_bytes());
                t.extend_from_slice(&e);
            }
            ext(&mut b, EXT_FEATURE_NAMES, &t);
        }
        b.extend_from_slice(&[0u8; 8]);
        if let Some(bf) = &o.backing {
            let at = b.len() as u64;
            b.extend_from_slice(bf.file.as_bytes());
            b[8..16].copy_from_slice(&at.to_be_bytes());
            b[16..20].copy_from_slice(&(bf.file.len() as u32).to_be_bytes());
        }
        if b.len() as u64 > self.cs {
            return Err(refused(format!(
                "the header, its extensions and the backing file name need {} bytes, more than one cluster ({} bytes)",
                b.len(),
                self.cs
            )));
        }
        b.resize(self.cs as usize, 0);
        Ok(b)
    }

    /// One L2 table's bytes from its entries `(index in table, entry, bitmap)`.
    fn l2_table(&self, entries: impl Iterator<Item = (u64, u64, u64)>) -> Vec<u8> {
        let mut t = vec![0u8; self.cs as usize];
        let w = self.entry_size();
        for (i, e, bm) in entries {
            let at = i as usize * w;
            t[at..at + 8].copy_from_slice(&e.to_be_bytes());
            if self.ext {
                t[at + 8..at + 16].copy_from_slice(&bm.to_be_bytes());
            }
        }
        t
    }

    /// The L2 entry and bitmap of a data cluster at host offset `host`.
    fn data_entry(&self, host: u64) -> (u64, u64) {
        (
            host | OFLAG_COPIED,
            if self.ext { EXT_ALL_ALLOCATED } else { 0 },
        )
    }

    /// The L2 entry and bitmap of a zero cluster without a host cluster.
    fn zero_entry(&self) -> (u64, u64) {
        if self.ext {
            (0, EXT_ALL_ZERO)
        } else {
            (OFLAG_ZERO, 0)
        }
    }

    /// A refcount block: the refcounts of clusters `k * per_block ..`.
    fn refblock(&self, k: u64, count: impl Fn(u64) -> u32) -> Vec<u8> {
        let per = self.cs / REFCOUNT_BYTES;
        let mut b = vec![0u8; self.cs as usize];
        for i in 0..per {
            let c = count(k * per + i);
            if c != 0 {
                let at = (i * REFCOUNT_BYTES) as usize;
                b[at..at + 2].copy_from_slice(&(c as u16).to_be_bytes());
            }
        }
        b
    }

    /// A refcount table pointing at `blocks` refcount blocks from cluster `first`.
    fn reftable(&self, clusters: u64, first: u64, blocks: u64) -> Vec<u8> {
        let mut t = vec![0u8; (clusters * self.cs) as usize];
        for k in 0..blocks {
            let at = (k * 8) as usize;
            t[at..at + 8].copy_from_slice(&((first + k) * self.cs).to_be_bytes());
        }
        t
    }
}

/// What one guest cluster becomes.
#[derive(Debug)]
pub(crate) enum Cell {
    /// Data, stored uncompressed; when compressing, its bytes are these of
    /// [`Scanned::bytes`].
    Data(Option<std::ops::Range<usize>>),
    /// Stored compressed: the stream is these bytes of [`Scanned::bytes`].
    Compressed(std::ops::Range<usize>),
    /// A zero cluster (the backing file has data there).
    Zero,
}

thread_local! {
    /// One deflate stream per thread, reset for each cluster (the state of a fresh one).
    static DEFLATE: std::cell::RefCell<Option<zlib_rs::Deflate>> = const { std::cell::RefCell::new(None) };
    /// One zstd context per thread.
    static ZSTD: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> = const { std::cell::RefCell::new(None) };
}

/// Compress one cluster as qemu does, appending the stream to `out`; `false` (and `out`
/// as it was) when it does not shrink below one cluster (qemu's limit: the compressed
/// stream must fit in `cluster_size - 1` bytes). Each cluster is compressed alone from a
/// reset state, so the bytes do not depend on which thread compresses it.
pub(crate) fn compress_cluster(kind: CompressionType, data: &[u8], out: &mut Vec<u8>) -> bool {
    thread_local! {
        /// Room for one stream, kept between clusters (no allocation and zeroing of a
        /// cluster-sized buffer per cluster).
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        scratch.resize(data.len() - 1, 0);
        let room = &mut scratch[..data.len() - 1];
        let n = match kind {
            CompressionType::Zlib => DEFLATE.with(|d| {
                let mut d = d.borrow_mut();
                let d = d.get_or_insert_with(|| {
                    // qemu: deflateInit2(Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
                    // Z_DEFAULT_STRATEGY): raw deflate with a 4 KiB window, which its
                    // inflater (window bits -12) requires.
                    zlib_rs::Deflate::new_with_config(zlib_rs::DeflateConfig {
                        level: 6,
                        method: zlib_rs::Method::Deflated,
                        window_bits: -12,
                        mem_level: 9,
                        strategy: zlib_rs::Strategy::Default,
                    })
                });
                d.reset();
                match d.compress(data, room, zlib_rs::DeflateFlush::Finish) {
                    Ok(zlib_rs::Status::StreamEnd) => Some(d.total_out() as usize),
                    _ => None,
                }
            }),
            CompressionType::Zstd => ZSTD.with(|z| {
                let mut z = z.borrow_mut();
                if z.is_none() {
                    // qemu: one frame at zstd's default level (3).
                    *z = zstd::bulk::Compressor::new(3).ok();
                }
                z.as_mut()?.compress_to_buffer(data, room).ok()
            }),
        };
        match n {
            Some(n) => {
                out.extend_from_slice(&room[..n]);
                true
            }
            None => false,
        }
    })
}

/// Reading guest clusters and deciding what each becomes.
pub(crate) struct Scanner<'a> {
    pub g: Geometry,
    pub src: &'a dyn Source,
    pub backing: Option<&'a dyn Source>,
    /// Keep the bytes of data clusters (and compress them with this).
    pub keep: bool,
    pub compression: Option<CompressionType>,
    /// Buffers of uncompressed data handed back by the writer ([`Scanned::data`]).
    pub buffers: std::sync::Mutex<Vec<PageBuf>>,
    /// Buffers of compressed streams handed back by the writer ([`Scanned::bytes`]).
    pub spare: std::sync::Mutex<Vec<Vec<u8>>>,
    /// [`ImportOptions::in_use`]: only clusters touching these ranges are read.
    pub in_use: Option<&'a [(u64, u64)]>,
}

/// The parts of sorted, disjoint ranges `a` that lie in sorted, disjoint ranges `b`.
pub(crate) fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (sa, ea) = (a[i].0, a[i].0 + a[i].1);
        let (sb, eb) = (b[j].0, b[j].0 + b[j].1);
        let (s, e) = (sa.max(sb), ea.min(eb));
        if s < e {
            out.push((s, e - s));
        }
        if ea <= eb {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// What a unit of work found.
pub(crate) struct Scanned {
    /// What each cluster becomes (clusters that stay unallocated left out).
    pub cells: Vec<(u64, Cell)>,
    /// Uncompressed writing: the unit's data clusters, in order, one after the other
    /// (their cells are `Data(None)`); the buffer goes back to [`Scanner::buffers`].
    pub data: Option<PageBuf>,
    /// Compressed writing: the streams (and the bytes of clusters that do not shrink),
    /// one after the other, as the cells say; the buffer goes back to [`Scanner::spare`].
    pub bytes: Vec<u8>,
}

/// Fill `buf` from `src` at `off`; bytes past its end read as zeros.
fn read_clipped(src: &dyn Source, buf: &mut [u8], off: u64) -> Result<()> {
    let size = src.size();
    let n = if off >= size {
        0
    } else {
        (size - off).min(buf.len() as u64) as usize
    };
    if n > 0 {
        src.read_exact_at(&mut buf[..n], off)?;
    }
    buf[n..].fill(0);
    Ok(())
}

impl Scanner<'_> {
    /// The units of work: runs of clusters that may hold data (in the source, or in the
    /// backing file), each at most [`WRITE_UNIT`] bytes.
    pub(crate) fn units(&self, ctl: &mut Control<'_>) -> Result<Vec<(u64, u64)>> {
        let quiet = &mut Control::with_cancel(ctl.cancel().clone());
        let mut ranges = self.src.data_ranges(quiet)?;
        if let Some(b) = self.backing {
            ranges.extend(b.data_ranges(quiet)?);
            ranges = merge(ranges);
        }
        if let Some(used) = self.in_use {
            // Clipped to the guest first: ranges of any value never overflow.
            let size = self.g.size;
            let used = used
                .iter()
                .map(|&(s, l)| (s.min(size), l.min(size - s.min(size))))
                .collect();
            ranges = intersect(&ranges, &merge(used));
        }
        let per = (WRITE_UNIT / self.g.cs).max(1);
        let mut units = Vec::new();
        for (first, n) in cluster_runs(&ranges, self.g.bits) {
            let end = (first + n).min(self.g.clusters);
            let mut c = first;
            while c < end {
                let k = (end - c).min(per);
                units.push((c, k));
                c += k;
            }
        }
        Ok(units)
    }

    /// What each cluster of a unit becomes (clusters that stay unallocated left out).
    pub(crate) fn scan(&self, (first, n): (u64, u64), cancel: &Cancel) -> Result<Scanned> {
        thread_local! {
            /// The source's and the backing file's bytes of a unit, kept between units
            /// (no zeroing of a fresh buffer each time).
            static BUFS: std::cell::RefCell<(PageBuf, PageBuf)> = const {
                std::cell::RefCell::new((PageBuf::empty(), PageBuf::empty()))
            };
        }
        cancel.check()?;
        let cs = self.g.cs as usize;
        let len = n as usize * cs;
        let direct = self.keep && self.compression.is_none();
        if !self.keep && self.backing.is_none() && self.src.small_reads_cheap() {
            return self.probe(first, n);
        }
        BUFS.with(|b| {
            let (tl, bb) = &mut *b.borrow_mut();
            // Uncompressed writing: read into a buffer that goes to the writer as it is
            // (one copy in, one out, as qemu-img does).
            let mut own = if direct {
                self.buffers.lock().unwrap_or_else(|p| p.into_inner()).pop()
            } else {
                None
            };
            let buf = match &mut own {
                Some(v) => v,
                None if direct => own.insert(PageBuf::empty()),
                None => tl,
            };
            buf.resize(len);
            read_clipped(self.src, buf, first * self.g.cs)?;
            let base = match self.backing {
                Some(b) => {
                    bb.resize(len);
                    read_clipped(b, &mut bb[..len], first * self.g.cs)?;
                    Some(&bb[..len])
                }
                None => None,
            };
            let mut bytes = Vec::new();
            if self.keep && !direct {
                bytes = self
                    .spare
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop()
                    .unwrap_or_default();
                bytes.clear();
            }
            let cells = self.classify(first, n, buf, base, &mut bytes)?;
            let Some(mut data) = own else {
                return Ok(Scanned {
                    cells,
                    data: None,
                    bytes,
                });
            };
            // Keep the data clusters only, one after the other.
            let mut k = 0;
            for (c, cell) in &cells {
                if matches!(cell, Cell::Data(None)) {
                    let i = (c - first) as usize;
                    if i != k {
                        data.copy_within(i * cs..(i + 1) * cs, k * cs);
                    }
                    k += 1;
                }
            }
            data.truncate(k * cs);
            Ok(Scanned {
                cells,
                data: Some(data),
                bytes,
            })
        })
    }

    /// Which clusters of `first..first + n` hold data, without a backing file and
    /// without keeping their bytes, from a source where small reads are cheap: the first
    /// [`PROBE`] bytes of each cluster, and the rest only when those are zeros. A cluster
    /// of data rarely starts with a page of zeros, so this reads a small part of the data
    /// (the streamed export reads it all once more, as it streams).
    fn probe(&self, first: u64, n: u64) -> Result<Scanned> {
        thread_local! {
            static BUF: std::cell::RefCell<PageBuf> = const { std::cell::RefCell::new(PageBuf::empty()) };
        }
        let cs = self.g.cs as usize;
        let head = PROBE.min(cs);
        BUF.with(|b| {
            let buf = &mut *b.borrow_mut();
            buf.resize(cs);
            let mut cells = Vec::new();
            for c in first..first + n {
                let at = c * self.g.cs;
                read_clipped(self.src, &mut buf[..head], at)?;
                let data = !is_zero(&buf[..head]) || {
                    read_clipped(self.src, &mut buf[head..cs], at + head as u64)?;
                    !is_zero(&buf[head..cs])
                };
                if data {
                    cells.push((c, Cell::Data(None)));
                }
            }
            Ok(Scanned {
                cells,
                data: None,
                bytes: Vec::new(),
            })
        })
    }

    /// What each cluster of `buf` (clusters `first..first + n`) becomes, against the
    /// backing file's bytes `base`; when compressing (and keeping the bytes), the bytes
    /// to store go to `bytes`.
    fn classify(
        &self,
        first: u64,
        n: u64,
        buf: &[u8],
        base: Option<&[u8]>,
        bytes: &mut Vec<u8>,
    ) -> Result<Vec<(u64, Cell)>> {
        let keep = self.keep && self.compression.is_some();
        let cs = self.g.cs as usize;
        let mut out = Vec::new();
        for i in 0..n as usize {
            let s = &buf[i * cs..(i + 1) * cs];
            let zero = is_zero(s);
            let cell = match base {
                Some(b) if &b[i * cs..(i + 1) * cs] == s => continue,
                Some(_) if zero && self.g.v3 => Cell::Zero,
                Some(_) => Cell::Data(None),
                None if zero => continue,
                None => Cell::Data(None),
            };
            let cell = match (cell, keep) {
                (Cell::Data(None), true) => {
                    let at = bytes.len();
                    let kind = self.compression.expect("keep: compressing");
                    if compress_cluster(kind, s, bytes) {
                        Cell::Compressed(at..bytes.len())
                    } else {
                        bytes.extend_from_slice(s);
                        Cell::Data(Some(at..bytes.len()))
                    }
                }
                (c, _) => c,
            };
            out.push((first + i as u64, cell));
        }
        Ok(out)
    }
}

/// Run `scanner` over `units` on `threads` threads of their own, handing each unit's
/// cells to `sink` on the calling thread in unit order (which reports progress), with at
/// most `ahead` units scanned and not yet taken by `sink`. There are no rounds: a thread
/// takes the next unit as soon as it is done with one, so no core waits for the slowest
/// unit of a batch, and the order (so the bytes written) does not depend on the threads.
fn scan_all(
    scanner: &Scanner<'_>,
    units: &[(u64, u64)],
    threads: usize,
    ahead: usize,
    phase: Phase,
    ctl: &mut Control<'_>,
    mut sink: impl FnMut(Scanned) -> Result<()>,
) -> Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Condvar, Mutex};
    let cs = scanner.g.cs;
    let total: u64 = units.iter().map(|u| u.1 * cs).sum();
    let threads = threads.clamp(1, units.len().max(1));
    let ahead = ahead.max(1);
    let cancel = ctl.cancel().clone();
    ctl.report(phase, 0, Some(total))?;
    let mut done = 0u64;
    let next = AtomicUsize::new(0);
    // How many units `sink` has taken, and whether the threads are to stop.
    let gate = (Mutex::new((0usize, false)), Condvar::new());
    let stop = || {
        gate.0.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        gate.1.notify_all();
    };
    std::thread::scope(|sc| -> Result<()> {
        let (tx, rx) = mpsc::channel::<(usize, Result<Scanned>)>();
        for _ in 0..threads {
            let (tx, next, gate, cancel) = (tx.clone(), &next, &gate, &cancel);
            sc.spawn(move || loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&unit) = units.get(k) else { break };
                {
                    let mut g = gate.0.lock().unwrap_or_else(|p| p.into_inner());
                    while !g.1 && k >= g.0 + ahead {
                        g = gate.1.wait(g).unwrap_or_else(|p| p.into_inner());
                    }
                    if g.1 {
                        break;
                    }
                }
                let r = scanner.scan(unit, cancel);
                let failed = r.is_err();
                if tx.send((k, r)).is_err() || failed {
                    break;
                }
            });
        }
        drop(tx);
        let r = (|| {
            // Units scanned out of order, waiting for the ones before them.
            let mut waiting: std::collections::BTreeMap<usize, Result<Scanned>> =
                Default::default();
            let mut want = 0;
            for (k, r) in rx.iter() {
                waiting.insert(k, r);
                while let Some(r) = waiting.remove(&want) {
                    sink(r?)?;
                    done += units[want].1 * cs;
                    want += 1;
                    gate.0.lock().unwrap_or_else(|p| p.into_inner()).0 = want;
                    gate.1.notify_all();
                    ctl.report(phase, done, Some(total))?;
                }
            }
            Ok(())
        })();
        // Threads waiting for room stop; a thread in the middle of a unit finishes it.
        stop();
        if r.is_err() {
            cancel.cancel();
        }
        r
    })?;
    ctl.check()?;
    if total == 0 || done != total {
        ctl.report(phase, total, Some(total))?;
    }
    Ok(())
}

/// Threads for `threads` (0: one per core).
fn thread_count(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Guest cluster `c` is stored as data (bit 62 clear) or as a zero cluster (bit 62 set).
const PLAN_ZERO: u64 = 1 << 62;

/// The uncompressed image laid out in stream order, from the clusters that hold data.
pub struct Layout {
    g: Geometry,
    header: Vec<u8>,
    /// Guest clusters stored, in order: the index, `| PLAN_ZERO` for zero clusters.
    plan: Vec<u64>,
    /// L1 indices that have an L2 table, in order.
    tables: Vec<u64>,
    rt_clusters: u64,
    rb_at: u64,
    rb_count: u64,
    l2_at: u64,
    data_at: u64,
    data_count: u64,
    total: u64,
}

impl std::fmt::Debug for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layout")
            .field("clusters", &self.total)
            .field("data", &self.data_count)
            .finish_non_exhaustive()
    }
}

impl Layout {
    /// The layout of `plan` (guest clusters stored, in order) for a source whose clusters
    /// that may hold data are `candidates`: the metadata area is sized from the
    /// candidates alone (an L2 table for every L1 entry they touch, refcounts for all of
    /// them stored), so where the data starts is known before any data is read, and
    /// [`import_image`] can write data clusters as it scans, reading the source once,
    /// while [`ExportStream`] gives the same bytes.
    fn new(
        g: Geometry,
        o: &ImportOptions,
        plan: Vec<u64>,
        candidates: &Candidates,
    ) -> Result<Layout> {
        let tables = candidates.tables.clone();
        let data_count = plan.iter().filter(|&&p| p & PLAN_ZERO == 0).count() as u64;
        let l1_at = 1;
        let others = 1 + g.l1_clusters + tables.len() as u64 + candidates.clusters;
        let (rb_count, rt_clusters) = g.refcount_clusters(others)?;
        let rt_at = l1_at + g.l1_clusters;
        let rb_at = rt_at + rt_clusters;
        let l2_at = rb_at + rb_count;
        let data_at = l2_at + tables.len() as u64;
        let total = data_at + data_count;
        let header = g.header(o, l1_at * g.cs, rt_at * g.cs, rt_clusters)?;
        Ok(Layout {
            g,
            header,
            plan,
            tables,
            rt_clusters,
            rb_at,
            rb_count,
            l2_at,
            data_at,
            data_count,
            total,
        })
    }

    /// Bytes of the image.
    pub fn len(&self) -> u64 {
        self.total * self.g.cs
    }

    /// Whether the image has no bytes (never: there is always a header).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Guest clusters stored as data.
    pub fn data_clusters(&self) -> u64 {
        self.data_count
    }

    /// Guest clusters stored as zero clusters.
    pub fn zero_clusters(&self) -> u64 {
        self.plan.len() as u64 - self.data_count
    }

    fn l1(&self) -> Vec<u8> {
        let mut b = vec![0u8; (self.g.l1_clusters * self.g.cs) as usize];
        for (j, &i) in self.tables.iter().enumerate() {
            let at = (i * 8) as usize;
            let off = (self.l2_at + j as u64) * self.g.cs;
            b[at..at + 8].copy_from_slice(&(off | OFLAG_COPIED).to_be_bytes());
        }
        b
    }
}

/// The guest clusters that may hold data (from the map, before any data is read).
#[derive(Clone, Debug, Default)]
pub(crate) struct Candidates {
    /// How many.
    clusters: u64,
    /// The L1 indices they fall under, in order.
    tables: Vec<u64>,
}

impl Candidates {
    fn of(g: &Geometry, units: &[(u64, u64)]) -> Candidates {
        let mut c = Candidates::default();
        for &(first, n) in units {
            c.clusters += n;
            for t in first / g.per_l2..=(first + n - 1) / g.per_l2 {
                if c.tables.last() != Some(&t) {
                    c.tables.push(t);
                }
            }
        }
        c
    }
}

/// Where an [`ExportStream`] is.
enum Part {
    Header,
    L1,
    RefTable,
    RefBlock(u64),
    L2 {
        table: usize,
        plan: usize,
        rank: u64,
    },
    Data {
        plan: usize,
    },
    Done,
}

/// The uncompressed image as a stream of bytes in file order (header, L1 table, refcount
/// table and blocks, L2 tables, data clusters), its length known up front
/// ([`ExportStream::len`]). Implements [`std::io::Read`]; [`ExportStream::next_chunk`]
/// gives it in chunks of at most [`STREAM_CHUNK`] bytes.
pub struct ExportStream<S: Source = Box<dyn Source>> {
    layout: Layout,
    src: S,
    part: Part,
    pos: u64,
    pending: PageBuf,
    pending_at: usize,
    /// Buffers handed back ([`ExportStream::recycle`]) for the next data chunks.
    spare: Vec<PageBuf>,
}

impl<S: Source> std::fmt::Debug for ExportStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportStream")
            .field("layout", &self.layout)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl<S: Source> ExportStream<S> {
    /// Bytes the stream produces in all.
    pub fn len(&self) -> u64 {
        self.layout.len()
    }

    /// Whether the stream produces no bytes (never).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Bytes produced so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether the next chunk is still metadata (header, tables, refcounts).
    fn in_metadata(&self) -> bool {
        match &self.part {
            Part::L2 { table, .. } => *table < self.layout.tables.len(),
            Part::Data { .. } | Part::Done => false,
            _ => true,
        }
    }

    /// Hand a chunk's buffer back to be filled again (saves zeroing a new one).
    pub fn recycle(&mut self, buf: PageBuf) {
        if self.spare.len() < 8 {
            self.spare.push(buf);
        }
    }

    /// The next bytes of the image (`None` at the end).
    pub fn next_chunk(&mut self) -> Result<Option<PageBuf>> {
        let chunk = self.produce()?;
        if let Some(c) = &chunk {
            self.pos += c.len() as u64;
        }
        Ok(chunk)
    }

    fn produce(&mut self) -> Result<Option<PageBuf>> {
        let l = &self.layout;
        let g = l.g;
        loop {
            match &mut self.part {
                Part::Header => {
                    self.part = Part::L1;
                    return Ok(Some(PageBuf::from(&l.header[..])));
                }
                Part::L1 => {
                    self.part = Part::RefTable;
                    return Ok(Some(PageBuf::from(&l.l1()[..])));
                }
                Part::RefTable => {
                    self.part = Part::RefBlock(0);
                    return Ok(Some(PageBuf::from(
                        &g.reftable(l.rt_clusters, l.rb_at, l.rb_count)[..],
                    )));
                }
                Part::RefBlock(k) => {
                    if *k >= l.rb_count {
                        self.part = Part::L2 {
                            table: 0,
                            plan: 0,
                            rank: 0,
                        };
                        continue;
                    }
                    let b = g.refblock(*k, |c| u32::from(c < l.total));
                    *k += 1;
                    return Ok(Some(PageBuf::from(&b[..])));
                }
                Part::L2 { table, plan, rank } => {
                    let Some(&l1i) = l.tables.get(*table) else {
                        self.part = Part::Data { plan: 0 };
                        continue;
                    };
                    let mut entries = Vec::new();
                    while let Some(&p) = l.plan.get(*plan) {
                        let c = p & !PLAN_ZERO;
                        if c / g.per_l2 != l1i {
                            break;
                        }
                        let i = c % g.per_l2;
                        let (e, bm) = if p & PLAN_ZERO != 0 {
                            g.zero_entry()
                        } else {
                            let host = (l.data_at + *rank) * g.cs;
                            *rank += 1;
                            g.data_entry(host)
                        };
                        entries.push((i, e, bm));
                        *plan += 1;
                    }
                    *table += 1;
                    return Ok(Some(PageBuf::from(&g.l2_table(entries.into_iter())[..])));
                }
                Part::Data { plan } => {
                    // Skip zero clusters; then a run of consecutive guest clusters.
                    while l.plan.get(*plan).is_some_and(|&p| p & PLAN_ZERO != 0) {
                        *plan += 1;
                    }
                    let Some(&first) = l.plan.get(*plan) else {
                        self.part = Part::Done;
                        continue;
                    };
                    let max = (STREAM_CHUNK / g.cs).max(1);
                    let mut n = 1;
                    while n < max && l.plan.get(*plan + n as usize) == Some(&(first + n)) {
                        n += 1;
                    }
                    *plan += n as usize;
                    let len = (n * g.cs) as usize;
                    // A recycled buffer is not zeroed again; all its bytes are overwritten.
                    let mut buf = self.spare.pop().unwrap_or_default();
                    buf.resize(len);
                    read_clipped(&self.src, &mut buf, first * g.cs)?;
                    return Ok(Some(buf));
                }
                Part::Done => return Ok(None),
            }
        }
    }
}

impl<S: Source> std::io::Read for ExportStream<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending_at >= self.pending.len() {
            match self.next_chunk() {
                Ok(Some(c)) => {
                    self.pending = c;
                    self.pending_at = 0;
                }
                Ok(None) => return Ok(0),
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.pending.len() - self.pending_at);
        buf[..n].copy_from_slice(&self.pending[self.pending_at..self.pending_at + n]);
        self.pending_at += n;
        Ok(n)
    }
}

/// Map and scan `src` (reporting [`Phase::Map`] over the bytes that may hold data) and lay
/// the uncompressed image out.
fn plan(
    src: &dyn Source,
    backing: Option<&dyn Source>,
    o: &ImportOptions,
    ctl: &mut Control<'_>,
) -> Result<Layout> {
    let g = Geometry::new(o, src.size())?;
    let scanner = Scanner {
        g,
        src,
        backing,
        keep: false,
        compression: None,
        buffers: Default::default(),
        spare: Default::default(),
        in_use: o.in_use.as_deref(),
    };
    let units = scanner.units(ctl)?;
    let candidates = Candidates::of(&g, &units);
    let mut plan = Vec::new();
    scan_all(
        &scanner,
        &units,
        1,
        READ_AHEAD,
        Phase::Map,
        ctl,
        |scanned| {
            plan.extend(scanned.cells.into_iter().map(|(c, cell)| match cell {
                Cell::Zero => c | PLAN_ZERO,
                _ => c,
            }));
            Ok(())
        },
    )?;
    Layout::new(g, o, plan, &candidates)
}

/// The uncompressed image of `src` as a stream with its length known up front: the source
/// is mapped and scanned first ([`Phase::Map`]), then read again as the stream is read.
/// The bytes are those [`import_image`] writes with the same options. `backing` is the
/// opened backing image named by `o.backing` (clusters equal to its data are left out).
///
/// Why two reads: the length depends on how many clusters are stored, and a cluster the
/// map calls data may be all zeros (a raw file's written zeros, a qcow2 cluster whose
/// data is zeros), which only reading it tells. The map alone (`SEEK_DATA`, the qcow2
/// tables) would give a length without reading, but only by storing those zero clusters
/// as data: a different and larger image than [`import_image`]'s and `qemu-img
/// convert`'s. The first pass reads only what the map calls data (holes are never read),
/// page aligned, on a thread of its own, and keeps only the list of clusters to store
/// (BENCHMARKS.md has its cost against reading the image once).
pub fn export_stream(
    src: Box<dyn Source>,
    backing: Option<&dyn Source>,
    o: &ImportOptions,
    ctl: &mut Control<'_>,
) -> Result<ExportStream> {
    if o.compression.is_some() {
        return Err(refused(
            "a compressed image cannot be streamed with its length known up front; export uncompressed, or import to a file",
        ));
    }
    if o.backing.is_some() != backing.is_some() {
        return Err(refused(
            "a backing file name needs the opened backing image, and the other way round",
        ));
    }
    let layout = plan(&*src, backing, o, ctl)?;
    Ok(ExportStream {
        layout,
        src,
        part: Part::Header,
        pos: 0,
        pending: PageBuf::empty(),
        pending_at: 0,
        spare: Vec::new(),
    })
}

/// Open the backing file `b` as [`import_image`] does for an image at `dst` (relative
/// names are relative to `dst`'s folder; a qcow2 backing file's own chain is followed).
pub fn open_backing(dst: &Path, b: &BackingFile) -> Result<Box<dyn Source>> {
    let full = path_combine(&dst.to_string_lossy(), &b.file);
    let p = Path::new(&full);
    let refuse = |detail: String| Error::Backing {
        path: Some(dst.to_path_buf()),
        name: b.file.clone(),
        detail,
    };
    if crate::image::has_protocol(&b.file) {
        return Err(refuse(
            "protocol-style names (json:, nbd:, ...) are refused".into(),
        ));
    }
    match b.format.as_str() {
        "qcow2" => Ok(Box::new(
            Image::open(p, &OpenOptions::default())
                .map_err(|e| refuse(format!("opening it as qcow2 failed: {e}")))?,
        )),
        "raw" => Ok(Box::new(
            StorageSource::open(p).map_err(|e| refuse(format!("opening it failed: {e}")))?,
        )),
        f => Err(refuse(format!(
            "backing format {} is not qcow2 or raw",
            crate::error::quoted(f)
        ))),
    }
}

/// Write the image of `src` into `out` (empty), the header cluster last (until then the
/// storage holds no image); nothing is synced. Reports [`Phase::Write`].
pub fn write_image(
    src: &dyn Source,
    backing: Option<&dyn Source>,
    out: &dyn Storage,
    o: &ImportOptions,
    ctl: &mut Control<'_>,
) -> Result<ImportResult> {
    write_image_to(src, backing, out, None, o, ctl)
}

/// [`write_image`]; `file` is `out`'s file when it is a new regular file (the data area
/// of an uncompressed image may then be preallocated).
fn write_image_to(
    src: &dyn Source,
    backing: Option<&dyn Source>,
    out: &dyn Storage,
    file: Option<&std::fs::File>,
    o: &ImportOptions,
    ctl: &mut Control<'_>,
) -> Result<ImportResult> {
    if o.backing.is_some() != backing.is_some() {
        return Err(refused(
            "a backing file name needs the opened backing image, and the other way round",
        ));
    }
    match o.compression {
        None => write_uncompressed(src, backing, out, file, o, ctl),
        Some(k) => write_compressed(src, backing, out, o, k, ctl),
    }
}

fn write_uncompressed(
    src: &dyn Source,
    backing: Option<&dyn Source>,
    out: &dyn Storage,
    file: Option<&std::fs::File>,
    o: &ImportOptions,
    ctl: &mut Control<'_>,
) -> Result<ImportResult> {
    let g = Geometry::new(o, src.size())?;
    let scanner = Scanner {
        g,
        src,
        backing,
        keep: true,
        compression: None,
        buffers: Default::default(),
        spare: Default::default(),
        in_use: o.in_use.as_deref(),
    };
    let units = scanner.units(ctl)?;
    let candidates = Candidates::of(&g, &units);
    // Where the data starts depends on the candidates only: data clusters are written
    // there as they are scanned (the source is read once), the tables after.
    let data_at = Layout::new(g, o, Vec::new(), &candidates)?.data_at;
    // The data area, allocated in one call before it is written (ext4: 0.69 -> 0.52 CPU
    // seconds for 923 MB, BENCHMARKS.md); clusters that turn out to be zeros are cut
    // off again at the end.
    let preallocated = candidates.clusters > 0
        && file.is_some_and(|f| {
            crate::sys::preallocate(f, data_at * g.cs, candidates.clusters * g.cs)
        });
    let mut plan = Vec::new();
    let mut rank = 0u64;
    scan_all(
        &scanner,
        &units,
        1,
        READ_AHEAD,
        Phase::Write,
        ctl,
        |scanned| {
            let data = scanned.data.expect("uncompressed writing keeps the data");
            for (c, cell) in scanned.cells {
                plan.push(match cell {
                    Cell::Zero => c | PLAN_ZERO,
                    _ => c,
                });
            }
            if !data.is_empty() {
                out.write_all_at(&data, (data_at + rank) * g.cs)?;
                rank += data.len() as u64 / g.cs;
            }
            scanner
                .buffers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(data);
            Ok(())
        },
    )?;
    let layout = Layout::new(g, o, plan, &candidates)?;
    debug_assert_eq!(layout.data_at, data_at);
    let result = ImportResult {
        size: g.size,
        file_size: layout.len(),
        data_clusters: layout.data_count,
        compressed_clusters: 0,
        zero_clusters: layout.zero_clusters(),
    };
    let header = layout.header.clone();
    // The metadata chunks of the stream, after the header cluster (written last).
    let mut s = ExportStream {
        layout,
        src,
        part: Part::L1,
        pos: g.cs,
        pending: PageBuf::empty(),
        pending_at: 0,
        spare: Vec::new(),
    };
    let mut pos = g.cs;
    while s.in_metadata() {
        match s.next_chunk()? {
            Some(chunk) => {
                out.write_all_at(&chunk, pos)?;
                pos += chunk.len() as u64;
            }
            None => break,
        }
    }
    debug_assert_eq!(pos, data_at * g.cs);
    ctl.check()?;
    if preallocated {
        // Also frees the blocks past the end (ext4 truncates even to the same size).
        out.set_len(result.file_size)?;
    }
    out.write_all_at(&header, 0)?;
    Ok(result)
}

/// Writes that continue each other, gathered into one (a data cluster or compressed
/// stream at a time would be one system call each: three times the kernel's time for the
/// same bytes on ext4).
struct Gather<'a> {
    out: &'a dyn Storage,
    buf: Vec<u8>,
    at: u64,
}

impl<'a> Gather<'a> {
    fn new(out: &'a dyn Storage) -> Gather<'a> {
        Gather {
            out,
            buf: Vec::with_capacity(STREAM_CHUNK as usize),
            at: 0,
        }
    }

    fn write(&mut self, b: &[u8], off: u64) -> Result<()> {
        let end = self.at + self.buf.len() as u64;
        if off != end || self.buf.len() + b.len() > STREAM_CHUNK as usize {
            self.flush()?;
            self.at = off;
        }
        self.buf.extend_from_slice(b);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            self.out.write_all_at(&self.buf, self.at)?;
            self.at += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Places compressed streams and data clusters in cluster order, as qemu packs them: a
/// compressed stream goes on from the end of the previous one while it fits in that
/// host cluster (or spans into the next when that cluster is the last one), data
/// clusters take the next free cluster.
struct Packer {
    cs: u64,
    /// The next free cluster.
    next: u64,
    /// Where the next compressed stream may start (0: no open cluster).
    cpos: u64,
    refcounts: Vec<u32>,
}

impl Packer {
    fn bump(&mut self, c: u64) {
        let c = c as usize;
        if self.refcounts.len() <= c {
            self.refcounts.resize(c + 1, 0);
        }
        self.refcounts[c] += 1;
    }

    fn data(&mut self) -> u64 {
        let c = self.next;
        self.next += 1;
        self.bump(c);
        c * self.cs
    }

    fn compressed(&mut self, len: u64) -> u64 {
        let cs = self.cs;
        let open = self.cpos / cs;
        let full = self.cpos != 0
            && self
                .refcounts
                .get(open as usize)
                .is_some_and(|&r| r >= MAX_REFCOUNT);
        let off = if self.cpos != 0
            && !full
            && (self.cpos + len <= (open + 1) * cs || open + 1 == self.next)
        {
            self.cpos
        } else {
            self.next * cs
        };
        let end = off + len;
        self.next = self.next.max(end.div_ceil(cs));
        // Refcounts per host cluster the sector-rounded range touches (as qemu counts).
        let first = (off & !(COMPRESSED_SECTOR - 1)) / cs;
        let last = (end.div_ceil(COMPRESSED_SECTOR) * COMPRESSED_SECTOR - 1) / cs;
        for c in first..=last {
            self.bump(c);
        }
        self.cpos = if end.is_multiple_of(cs) { 0 } else { end };
        off
    }
}

/// The compressed L2 entry of `len` bytes at host byte `off`.
fn compressed_entry(bits: u32, off: u64, len: u64) -> u64 {
    let x = 62 - (bits - 8);
    let sectors = ((off & (COMPRESSED_SECTOR - 1)) + len).div_ceil(COMPRESSED_SECTOR);
    OFLAG_COMPRESSED | ((sectors - 1) << x) | off
}

fn write_compressed(
    src: &dyn Source,
    backing: Option<&dyn Source>,
    out: &dyn Storage,
    o: &ImportOptions,
    kind: CompressionType,
    ctl: &mut Control<'_>,
) -> Result<ImportResult> {
    let g = Geometry::new(o, src.size())?;
    // Options that fail only at the end (a backing name too long for the header) are
    // refused before anything is written.
    g.header(o, 0, 0, 1)?;
    let scanner = Scanner {
        g,
        src,
        backing,
        keep: true,
        compression: Some(kind),
        buffers: Default::default(),
        spare: Default::default(),
        in_use: o.in_use.as_deref(),
    };
    let units = scanner.units(ctl)?;
    let threads = thread_count(o.threads);
    let mut p = Packer {
        cs: g.cs,
        next: 1,
        cpos: 0,
        refcounts: vec![1],
    };
    let mut entries: Vec<(u64, u64, u64)> = Vec::new();
    let mut r = ImportResult {
        size: g.size,
        ..ImportResult::default()
    };
    let mut w = Gather::new(out);
    scan_all(
        &scanner,
        &units,
        threads,
        COMPRESS_AHEAD * threads,
        Phase::Write,
        ctl,
        |scanned| {
            for (c, cell) in scanned.cells {
                let (e, bm) = match cell {
                    Cell::Zero => {
                        r.zero_clusters += 1;
                        g.zero_entry()
                    }
                    Cell::Compressed(b) => {
                        let len = b.len() as u64;
                        let off = p.compressed(len);
                        w.write(&scanned.bytes[b], off)?;
                        r.compressed_clusters += 1;
                        (compressed_entry(g.bits, off, len), 0)
                    }
                    Cell::Data(b) => {
                        let off = p.data();
                        w.write(&scanned.bytes[b.expect("kept")], off)?;
                        r.data_clusters += 1;
                        g.data_entry(off)
                    }
                };
                entries.push((c, e, bm));
            }
            let mut spare = scanner.spare.lock().unwrap_or_else(|p| p.into_inner());
            if spare.len() < 4 * COMPRESS_AHEAD * threads {
                spare.push(scanned.bytes);
            }
            Ok(())
        },
    )?;
    w.flush()?;
    // The tables after the data: L2 tables, L1 table, refcount table, refcount blocks.
    let mut tables: Vec<u64> = entries.iter().map(|e| e.0 / g.per_l2).collect();
    tables.dedup();
    let l2_at = p.next;
    let l1_at = l2_at + tables.len() as u64;
    let rt_at = l1_at + g.l1_clusters;
    let (rb_count, rt_clusters) = g.refcount_clusters(rt_at)?;
    let rb_at = rt_at + rt_clusters;
    let total = rb_at + rb_count;
    let mut k = 0;
    let mut l1 = vec![0u8; (g.l1_clusters * g.cs) as usize];
    for (j, &t) in tables.iter().enumerate() {
        let start = k;
        while k < entries.len() && entries[k].0 / g.per_l2 == t {
            k += 1;
        }
        let table = g.l2_table(
            entries[start..k]
                .iter()
                .map(|&(c, e, bm)| (c % g.per_l2, e, bm)),
        );
        let at = (l2_at + j as u64) * g.cs;
        out.write_all_at(&table, at)?;
        l1[(t * 8) as usize..(t * 8 + 8) as usize]
            .copy_from_slice(&(at | OFLAG_COPIED).to_be_bytes());
    }
    out.write_all_at(&l1, l1_at * g.cs)?;
    out.write_all_at(&g.reftable(rt_clusters, rb_at, rb_count), rt_at * g.cs)?;
    let refcount = |c: u64| -> u32 {
        if c < l2_at {
            p.refcounts.get(c as usize).copied().unwrap_or(0)
        } else {
            u32::from(c < total)
        }
    };
    for b in 0..rb_count {
        out.write_all_at(&g.refblock(b, refcount), (rb_at + b) * g.cs)?;
    }
    ctl.check()?;
    let header = g.header(o, l1_at * g.cs, rt_at * g.cs, rt_clusters)?;
    out.write_all_at(&header, 0)?;
    r.file_size = total * g.cs;
    Ok(r)
}

/// Write the image of `src` to a new regular file at `dst` (replacing one there, which
/// must not be in use by qemu), written beside it and renamed over it only when
/// complete: an error (a full disk, a failing read of the source, an abort) leaves the
/// old file, or none. A file being replaced is synced before the rename, so a crash
/// leaves the old file or the whole new one; a new file is left to writeback, as
/// `qemu-img convert` leaves it. With `o.backing`, the backing file is opened relative to `dst`'s
/// folder and clusters equal to its data are left out. Reports [`Phase::Write`] (the
/// source is read once) and, when a file is replaced, [`Phase::Sync`].
pub fn import_image(
    src: &dyn Source,
    dst: &Path,
    o: &ImportOptions,
    ctl: &mut Control<'_>,
) -> Result<ImportResult> {
    let with_path = |e: Error| e.with_path(Some(dst));
    Geometry::new(o, src.size()).map_err(with_path)?;
    let meta = match std::fs::metadata(dst) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::Io(IoError::new("stat", e).with_path(dst))),
    };
    if let Some(m) = &meta {
        let kind = FileKind::of(m);
        if kind != FileKind::Regular {
            return Err(with_path(refused(format!(
                "the destination is a {}; a qcow2 image is written to a regular file",
                kind.name()
            ))));
        }
    }
    let _lock = match &meta {
        Some(_) => crate::lock::ImageLock::acquire(dst, crate::lock::LockMode::Write, false)?,
        None => None,
    };
    let backing = match &o.backing {
        Some(b) => Some(open_backing(dst, b)?),
        None => None,
    };
    let target = match &meta {
        Some(_) => std::fs::canonicalize(dst)
            .map_err(|e| Error::Io(IoError::new("realpath", e).with_path(dst)))?,
        None => dst.to_path_buf(),
    };
    let mut tmp = sparsekit_io::TempBeside::new(&target)?;
    let file = tmp.take_file().expect("a new temporary file is open");
    let out = FileStorage::from_file(file, tmp.path())?;
    let r = write_image_to(src, backing.as_deref(), &out, Some(out.file()), o, ctl)
        .map_err(with_path)?;
    if meta.is_some() {
        // Replacing a file: synced before the rename, so a crash leaves the old file or
        // the whole new one. A new file is left to writeback, as `qemu-img convert`
        // leaves it (and as `convert` does).
        ctl.report(Phase::Sync, 0, Some(1))?;
        out.flush()?;
        ctl.report(Phase::Sync, 1, Some(1))?;
    }
    drop(out);
    ctl.check()?;
    tmp.persist(&target, meta.as_ref())?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersect_sorted_ranges() {
        let a = [(0, 10), (20, 10), (40, 100)];
        let b = [(5, 20), (28, 1), (100, 5), (139, 50)];
        assert_eq!(
            intersect(&a, &b),
            vec![(5, 5), (20, 5), (28, 1), (100, 5), (139, 1)]
        );
        assert_eq!(intersect(&a, &[]), vec![]);
        assert_eq!(intersect(&[], &b), vec![]);
    }

    #[test]
    fn in_use_ranges_near_the_end_of_u64_do_not_overflow() {
        let src = StorageSource::new(Box::new(sparsekit_io::MemStorage::from_vec(vec![1; 8192])))
            .unwrap();
        let o = ImportOptions {
            cluster_size: 4096,
            in_use: Some(vec![(u64::MAX - 1, 10), (4096, u64::MAX)]),
            ..ImportOptions::default()
        };
        let out = sparsekit_io::MemStorage::new();
        let r = write_image(&src, None, &out, &o, &mut Control::none()).unwrap();
        assert_eq!(r.data_clusters, 1);
    }
}
