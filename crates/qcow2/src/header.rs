//! The qcow2 header (qcow2.txt "Header") and its extensions ("Header extensions").

use sparsekit_io::Storage;

use crate::error::{corrupt, corrupt_range, unsupported, Error, Result};

/// `QFI\xfb`.
pub const MAGIC: u32 = 0x5146_49fb;
/// Smallest cluster: 512 bytes.
pub const MIN_CLUSTER_BITS: u32 = 9;
/// Largest cluster: 2 MiB (qemu's limit).
pub const MAX_CLUSTER_BITS: u32 = 21;
/// Smallest cluster with extended L2 entries: 16 KiB (qcow2.txt "Extended L2 Entries").
pub const MIN_CLUSTER_BITS_EXTENDED_L2: u32 = 14;
/// Bytes of a version 2 header.
pub const V2_HEADER_LENGTH: u32 = 72;
/// Bytes of the fixed part of a version 3 header.
pub const V3_MIN_HEADER_LENGTH: u32 = 104;
/// Longest backing file name (qemu's limit).
pub const MAX_BACKING_NAME: u32 = 1023;
/// Largest refcount table: 8 MiB (qemu's `QCOW_MAX_REFTABLE_SIZE`).
pub const MAX_REFCOUNT_TABLE_BYTES: u64 = 8 << 20;
/// Largest L1 table: 32 MiB (qemu's `QCOW_MAX_L1_SIZE`).
pub const MAX_L1_TABLE_BYTES: u64 = 32 << 20;
/// Most internal snapshots (qemu's `QCOW_MAX_SNAPSHOTS`).
pub const MAX_SNAPSHOTS: u32 = 65536;
/// Host offsets are bits 9..55 of table entries: everything is below 2^56.
pub const MAX_HOST_OFFSET: u64 = 1 << 56;
/// Largest virtual disk accepted: 2^62 bytes, so guest arithmetic never overflows.
pub const MAX_VIRTUAL_SIZE: u64 = 1 << 62;
/// Largest refcount order (64-bit refcounts).
pub const MAX_REFCOUNT_ORDER: u32 = 6;
/// Most header extensions read (they all sit in the first cluster anyway).
pub const MAX_EXTENSIONS: usize = 1024;

/// Incompatible feature bit 0: the refcounts may be stale (lazy refcounts, not closed cleanly).
pub const INCOMPAT_DIRTY: u64 = 1 << 0;
/// Incompatible feature bit 1: qemu found the image corrupt.
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
/// Incompatible feature bit 2: guest data lives in an external data file.
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
/// Incompatible feature bit 3: the compression type field is used.
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
/// Incompatible feature bit 4: L2 entries are 128 bits with a subcluster bitmap.
pub const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;
/// Every incompatible bit this reader understands.
pub const INCOMPAT_KNOWN: u64 = 0x1f;
/// Compatible feature bit 0: lazy refcounts.
pub const COMPAT_LAZY_REFCOUNTS: u64 = 1 << 0;
/// Autoclear bit 0: the bitmaps extension is consistent.
pub const AUTOCLEAR_BITMAPS: u64 = 1 << 0;
/// Autoclear bit 1: the external data file is a valid raw image on its own.
pub const AUTOCLEAR_DATA_FILE_RAW: u64 = 1 << 1;

/// Header extension: end of the list.
pub const EXT_END: u32 = 0;
/// Header extension: backing file format name.
pub const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// Header extension: feature name table.
pub const EXT_FEATURE_NAMES: u32 = 0x6803_f857;
/// Header extension: persistent bitmaps.
pub const EXT_BITMAPS: u32 = 0x2385_2875;
/// Header extension: full disk encryption (LUKS) header pointer.
pub const EXT_CRYPTO: u32 = 0x0537_be77;
/// Header extension: external data file name.
pub const EXT_DATA_FILE: u32 = 0x4441_5441;

/// Names of the incompatible bits this reader knows, by bit number.
const INCOMPAT_NAMES: [&str; 5] = [
    "dirty",
    "corrupt",
    "external data file",
    "compression type",
    "extended L2",
];

/// How compressed clusters are compressed (header byte 104).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompressionType {
    /// Raw deflate (type 0).
    Zlib,
    /// zstd frames (type 1).
    Zstd,
}

impl CompressionType {
    /// `zlib` or `zstd`, as `qemu-img info` names them.
    pub fn name(self) -> &'static str {
        match self {
            CompressionType::Zlib => "zlib",
            CompressionType::Zstd => "zstd",
        }
    }
}

/// Data encryption (`crypt_method`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CryptMethod {
    /// Not encrypted.
    None,
    /// Legacy AES-CBC (1).
    Aes,
    /// LUKS (2).
    Luks,
}

/// One entry of the feature name table extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureName {
    /// 0 incompatible, 1 compatible, 2 autoclear.
    pub kind: u8,
    /// Bit number.
    pub bit: u8,
    /// Name, NUL padding removed.
    pub name: String,
}

/// The bitmaps extension (qcow2.txt "Bitmaps extension").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitmapsExt {
    /// Bitmaps in the directory.
    pub nb_bitmaps: u32,
    /// Bytes of the bitmap directory.
    pub bitmap_directory_size: u64,
    /// Where the directory is (cluster aligned).
    pub bitmap_directory_offset: u64,
}

/// A header extension as stored: type and data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// The extension type.
    pub kind: u32,
    /// Where its data starts in the file.
    pub offset: u64,
    /// Its data (without the padding to 8 bytes).
    pub data: Vec<u8>,
}

/// The qcow2 header: every field of versions 2 and 3, the extensions, and the bytes this
/// reader does not interpret (kept so the header could be written back unchanged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// Offset of the backing file name (0: none); the name lies inside the first cluster.
    pub backing_file_offset: u64,
    /// Bytes of the backing file name, at most [`MAX_BACKING_NAME`].
    pub backing_file_size: u32,
    /// log2 of the cluster size, [`MIN_CLUSTER_BITS`]..=[`MAX_CLUSTER_BITS`].
    pub cluster_bits: u32,
    /// Virtual disk size in bytes, at most [`MAX_VIRTUAL_SIZE`].
    pub size: u64,
    /// 0 none, 1 AES, 2 LUKS.
    pub crypt_method: u32,
    /// Entries of the active L1 table; enough to cover `size`.
    pub l1_size: u32,
    /// Offset of the active L1 table (cluster aligned).
    pub l1_table_offset: u64,
    /// Offset of the refcount table (cluster aligned).
    pub refcount_table_offset: u64,
    /// Clusters of the refcount table (at most [`MAX_REFCOUNT_TABLE_BYTES`]).
    pub refcount_table_clusters: u32,
    /// Internal snapshots, at most [`MAX_SNAPSHOTS`].
    pub nb_snapshots: u32,
    /// Offset of the snapshot table (cluster aligned).
    pub snapshots_offset: u64,
    /// Incompatible feature bits (v3).
    pub incompatible_features: u64,
    /// Compatible feature bits (v3).
    pub compatible_features: u64,
    /// Autoclear feature bits (v3).
    pub autoclear_features: u64,
    /// log2 of the refcount width in bits (v2: 4).
    pub refcount_order: u32,
    /// Bytes of the header before the extensions (v2: 72; v3: >= 104, a multiple of 8).
    pub header_length: u32,
    /// Header byte 104 (when `header_length > 104`).
    pub compression_type: CompressionType,
    /// Header bytes from 105 (or 104) to `header_length`, uninterpreted.
    pub extra: Vec<u8>,
    /// The header extensions in file order, unknown types included.
    pub extensions: Vec<Extension>,
    /// The backing file name as stored.
    pub backing_file: Option<String>,
    /// From the backing format extension.
    pub backing_format: Option<String>,
    /// From the external data file extension.
    pub data_file: Option<String>,
    /// From the feature name table extension.
    pub feature_names: Vec<FeatureName>,
    /// From the bitmaps extension.
    pub bitmaps: Option<BitmapsExt>,
    /// From the full disk encryption extension: `(offset, length)` of the LUKS header.
    pub crypto_header: Option<(u64, u64)>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Header {
    /// Bytes of a cluster.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Whether L2 entries are 128 bits with subclusters.
    pub fn extended_l2(&self) -> bool {
        self.incompatible_features & INCOMPAT_EXTENDED_L2 != 0
    }

    /// Whether guest data lives in an external data file.
    pub fn has_data_file(&self) -> bool {
        self.incompatible_features & INCOMPAT_DATA_FILE != 0
    }

    /// Whether the external data file is raw on its own.
    pub fn data_file_raw(&self) -> bool {
        self.autoclear_features & AUTOCLEAR_DATA_FILE_RAW != 0
    }

    /// Entries of one L2 table.
    pub fn l2_entries(&self) -> u64 {
        self.cluster_size() / if self.extended_l2() { 16 } else { 8 }
    }

    /// Bytes of one L2 entry (8, or 16 with extended L2).
    pub fn l2_entry_size(&self) -> u64 {
        if self.extended_l2() {
            16
        } else {
            8
        }
    }

    /// Guest bytes one L2 table covers.
    pub fn l2_coverage(&self) -> u64 {
        self.l2_entries() << self.cluster_bits
    }

    /// Bytes of a subcluster (the cluster size without extended L2).
    pub fn subcluster_size(&self) -> u64 {
        if self.extended_l2() {
            self.cluster_size() / 32
        } else {
            self.cluster_size()
        }
    }

    /// Width of a refcount in bits.
    pub fn refcount_bits(&self) -> u32 {
        1 << self.refcount_order
    }

    /// Encryption of guest data.
    pub fn crypt(&self) -> CryptMethod {
        match self.crypt_method {
            1 => CryptMethod::Aes,
            2 => CryptMethod::Luks,
            _ => CryptMethod::None,
        }
    }

    /// Whether the dirty bit is set.
    pub fn dirty(&self) -> bool {
        self.incompatible_features & INCOMPAT_DIRTY != 0
    }

    /// Whether the corrupt bit is set.
    pub fn corrupt(&self) -> bool {
        self.incompatible_features & INCOMPAT_CORRUPT != 0
    }

    /// Whether lazy refcounts are on.
    pub fn lazy_refcounts(&self) -> bool {
        self.compatible_features & COMPAT_LAZY_REFCOUNTS != 0
    }

    /// Read and validate the header at offset 0 of `s`, in the order magic, version,
    /// sizes, alignment, bounds.
    pub fn read<S: Storage + ?Sized>(s: &S) -> Result<Header> {
        let file_size = s.size()?;
        let mut fixed = [0u8; 112];
        let n = (file_size.min(fixed.len() as u64)) as usize;
        s.read_exact_at(&mut fixed[..n], 0)?;
        if n < 4 {
            return Err(Error::NotQcow2 {
                path: None,
                magic: 0,
            });
        }
        let magic = be32(&fixed, 0);
        if magic != MAGIC {
            return Err(Error::NotQcow2 { path: None, magic });
        }
        if n < V2_HEADER_LENGTH as usize {
            return Err(corrupt_range(
                "header",
                0,
                V2_HEADER_LENGTH as u64,
                format!("the file has {file_size} bytes, less than a header"),
            ));
        }
        // Version.
        let version = be32(&fixed, 4);
        if version != 2 && version != 3 {
            return Err(unsupported(format!("qcow2 version {version}")));
        }
        // Sizes.
        let cluster_bits = be32(&fixed, 20);
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(corrupt(
                "header",
                20,
                format!(
                    "cluster_bits {cluster_bits} outside {MIN_CLUSTER_BITS}..={MAX_CLUSTER_BITS}"
                ),
            ));
        }
        let cluster_size = 1u64 << cluster_bits;
        let (incompatible_features, compatible_features, autoclear_features) = if version == 3 {
            if n < V3_MIN_HEADER_LENGTH as usize {
                return Err(corrupt_range(
                    "header",
                    0,
                    V3_MIN_HEADER_LENGTH as u64,
                    format!("the file has {file_size} bytes, less than a version 3 header"),
                ));
            }
            (be64(&fixed, 72), be64(&fixed, 80), be64(&fixed, 88))
        } else {
            (0, 0, 0)
        };
        let (refcount_order, header_length) = if version == 3 {
            (be32(&fixed, 96), be32(&fixed, 100))
        } else {
            (4, V2_HEADER_LENGTH)
        };
        if version == 3
            && (header_length < V3_MIN_HEADER_LENGTH
                || header_length % 8 != 0
                || header_length as u64 > cluster_size)
        {
            return Err(corrupt(
                "header",
                100,
                format!(
                    "header_length {header_length} not a multiple of 8 in {V3_MIN_HEADER_LENGTH}..={cluster_size}"
                ),
            ));
        }
        if header_length as u64 > file_size {
            return Err(corrupt_range(
                "header",
                0,
                header_length as u64,
                format!("header_length {header_length} runs past the end of the file ({file_size} bytes)"),
            ));
        }
        if refcount_order > MAX_REFCOUNT_ORDER {
            return Err(corrupt(
                "header",
                96,
                format!("refcount_order {refcount_order} above {MAX_REFCOUNT_ORDER}"),
            ));
        }
        let unknown = incompatible_features & !INCOMPAT_KNOWN;
        // The whole first cluster: extensions and the backing name live there.
        let first_len = cluster_size.min(file_size) as usize;
        let mut first = vec![0u8; first_len];
        s.read_exact_at(&mut first, 0)?;
        let mut h = Header {
            version,
            backing_file_offset: be64(&first, 8),
            backing_file_size: be32(&first, 16),
            cluster_bits,
            size: be64(&first, 24),
            crypt_method: be32(&first, 32),
            l1_size: be32(&first, 36),
            l1_table_offset: be64(&first, 40),
            refcount_table_offset: be64(&first, 48),
            refcount_table_clusters: be32(&first, 56),
            nb_snapshots: be32(&first, 60),
            snapshots_offset: be64(&first, 64),
            incompatible_features,
            compatible_features,
            autoclear_features,
            refcount_order,
            header_length,
            compression_type: CompressionType::Zlib,
            extra: Vec::new(),
            extensions: Vec::new(),
            backing_file: None,
            backing_format: None,
            data_file: None,
            feature_names: Vec::new(),
            bitmaps: None,
            crypto_header: None,
        };
        if version == 3 && header_length > V3_MIN_HEADER_LENGTH {
            let ct = first[104];
            h.compression_type = match ct {
                0 => CompressionType::Zlib,
                1 => CompressionType::Zstd,
                _ => return Err(unsupported(format!("compression type {ct}"))),
            };
            h.extra = first[105..header_length as usize].to_vec();
        }
        h.read_extensions(&first)?;
        if unknown != 0 {
            let names: Vec<String> = (0..64)
                .filter(|b| unknown & (1 << b) != 0)
                .map(|b| {
                    match h
                        .feature_names
                        .iter()
                        .find(|f| f.kind == 0 && u32::from(f.bit) == b)
                    {
                        Some(f) => format!("bit {b} '{}'", f.name),
                        None => format!("bit {b}"),
                    }
                })
                .collect();
            return Err(unsupported(format!(
                "unknown incompatible feature {}",
                names.join(", ")
            )));
        }
        let compression_bit = incompatible_features & INCOMPAT_COMPRESSION != 0;
        if compression_bit != (h.compression_type != CompressionType::Zlib) {
            return Err(corrupt(
                "header",
                104,
                format!(
                    "compression type {} does not match the compression type feature bit",
                    h.compression_type.name()
                ),
            ));
        }
        if h.crypt_method > 2 {
            return Err(unsupported(format!("crypt_method {}", h.crypt_method)));
        }
        if h.extended_l2() && cluster_bits < MIN_CLUSTER_BITS_EXTENDED_L2 {
            return Err(corrupt(
                "header",
                20,
                format!("extended L2 entries with cluster_bits {cluster_bits} below {MIN_CLUSTER_BITS_EXTENDED_L2}"),
            ));
        }
        if h.size > MAX_VIRTUAL_SIZE {
            return Err(corrupt(
                "header",
                24,
                format!("size {} above {MAX_VIRTUAL_SIZE}", h.size),
            ));
        }
        let l1_bytes = u64::from(h.l1_size) * 8;
        if l1_bytes > MAX_L1_TABLE_BYTES {
            return Err(corrupt(
                "header",
                36,
                format!("l1_size {} above {}", h.l1_size, MAX_L1_TABLE_BYTES / 8),
            ));
        }
        let needed = h.size.div_ceil(h.l2_coverage());
        if u64::from(h.l1_size) < needed {
            return Err(corrupt(
                "header",
                36,
                format!(
                    "l1_size {} too small for size {} (needs {needed})",
                    h.l1_size, h.size
                ),
            ));
        }
        let rt_bytes = u64::from(h.refcount_table_clusters) << cluster_bits;
        if rt_bytes > MAX_REFCOUNT_TABLE_BYTES {
            return Err(corrupt(
                "header",
                56,
                format!(
                    "refcount_table_clusters {} above {} bytes",
                    h.refcount_table_clusters, MAX_REFCOUNT_TABLE_BYTES
                ),
            ));
        }
        if h.refcount_table_clusters == 0 {
            return Err(corrupt("header", 56, "refcount_table_clusters is 0"));
        }
        if h.nb_snapshots > MAX_SNAPSHOTS {
            return Err(corrupt(
                "header",
                60,
                format!("nb_snapshots {} above {MAX_SNAPSHOTS}", h.nb_snapshots),
            ));
        }
        // Alignment and bounds of the tables.
        h.check_table("L1 table", 40, h.l1_table_offset, l1_bytes, file_size)?;
        h.check_table(
            "refcount table",
            48,
            h.refcount_table_offset,
            rt_bytes,
            file_size,
        )?;
        if h.nb_snapshots > 0 {
            h.check_table("snapshot table", 64, h.snapshots_offset, 1, file_size)?;
        }
        // The backing file name: inside the first cluster.
        if h.backing_file_offset != 0 {
            if h.backing_file_size > MAX_BACKING_NAME {
                return Err(corrupt(
                    "header",
                    16,
                    format!(
                        "backing_file_size {} above {MAX_BACKING_NAME}",
                        h.backing_file_size
                    ),
                ));
            }
            let end = h
                .backing_file_offset
                .checked_add(u64::from(h.backing_file_size))
                .filter(|&e| e <= first_len as u64)
                .ok_or_else(|| {
                    corrupt_range(
                        "backing file name",
                        h.backing_file_offset,
                        u64::from(h.backing_file_size),
                        "outside the first cluster",
                    )
                })?;
            let raw = &first[h.backing_file_offset as usize..end as usize];
            let name = String::from_utf8(raw.to_vec()).map_err(|_| {
                corrupt(
                    "backing file name",
                    h.backing_file_offset,
                    "not valid UTF-8",
                )
            })?;
            h.backing_file = Some(name);
        }
        Ok(h)
    }

    fn check_table(
        &self,
        what: &'static str,
        field: u64,
        offset: u64,
        len: u64,
        file_size: u64,
    ) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        if offset & (self.cluster_size() - 1) != 0 {
            return Err(corrupt(
                "header",
                field,
                format!("{what} offset {offset:#x} is not cluster aligned"),
            ));
        }
        if offset == 0 {
            return Err(corrupt(
                "header",
                field,
                format!("{what} overlaps the header"),
            ));
        }
        match offset.checked_add(len) {
            Some(end) if end <= file_size && end <= MAX_HOST_OFFSET => Ok(()),
            _ => Err(corrupt_range(
                what,
                offset,
                len,
                format!(
                    "{len} bytes at {offset:#x} run past the end of the file ({file_size} bytes)"
                ),
            )),
        }
    }

    fn read_extensions(&mut self, first: &[u8]) -> Result<()> {
        let mut at = self.header_length as usize;
        let limit = first.len();
        loop {
            if self.extensions.len() >= MAX_EXTENSIONS {
                return Err(corrupt(
                    "header extension",
                    at as u64,
                    format!("more than {MAX_EXTENSIONS} extensions"),
                ));
            }
            if at + 8 > limit {
                // qemu treats a list running to the end of the cluster as ended; a v2 image
                // without extensions may end right after the header.
                if at >= first.len() {
                    return Ok(());
                }
                return Err(corrupt(
                    "header extension",
                    at as u64,
                    "extension header runs past the first cluster",
                ));
            }
            let kind = be32(first, at);
            let len = be32(first, at + 4) as usize;
            if kind == EXT_END {
                return Ok(());
            }
            let data_at = at + 8;
            let end = data_at
                .checked_add(len)
                .filter(|&e| e <= limit)
                .ok_or_else(|| {
                    corrupt_range(
                        "header extension",
                        at as u64,
                        len as u64,
                        format!(
                            "extension {kind:#010x} of {len} bytes runs past the first cluster"
                        ),
                    )
                })?;
            let data = first[data_at..end].to_vec();
            self.parse_extension(kind, data_at as u64, &data)?;
            self.extensions.push(Extension {
                kind,
                offset: data_at as u64,
                data,
            });
            at = data_at + len.div_ceil(8) * 8;
        }
    }

    fn parse_extension(&mut self, kind: u32, at: u64, data: &[u8]) -> Result<()> {
        let text = |what: &'static str| {
            String::from_utf8(data.to_vec())
                .map_err(|_| corrupt("header extension", at, format!("{what} is not UTF-8")))
        };
        match kind {
            EXT_BACKING_FORMAT => self.backing_format = Some(text("backing format")?),
            EXT_DATA_FILE => self.data_file = Some(text("data file name")?),
            EXT_FEATURE_NAMES => {
                for e in data.chunks_exact(48) {
                    let name = &e[2..];
                    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                    self.feature_names.push(FeatureName {
                        kind: e[0],
                        bit: e[1],
                        name: String::from_utf8_lossy(&name[..end]).into_owned(),
                    });
                }
            }
            EXT_BITMAPS => {
                if data.len() < 24 {
                    return Err(corrupt(
                        "bitmaps extension",
                        at,
                        format!("{} bytes, less than 24", data.len()),
                    ));
                }
                self.bitmaps = Some(BitmapsExt {
                    nb_bitmaps: be32(data, 0),
                    bitmap_directory_size: be64(data, 8),
                    bitmap_directory_offset: be64(data, 16),
                });
            }
            EXT_CRYPTO => {
                if data.len() < 16 {
                    return Err(corrupt(
                        "encryption extension",
                        at,
                        format!("{} bytes, less than 16", data.len()),
                    ));
                }
                self.crypto_header = Some((be64(data, 0), be64(data, 8)));
            }
            _ => {}
        }
        Ok(())
    }

    /// Names of the set incompatible feature bits this reader knows.
    pub fn incompatible_names(&self) -> Vec<&'static str> {
        (0..INCOMPAT_NAMES.len())
            .filter(|b| self.incompatible_features & (1 << b) != 0)
            .map(|b| INCOMPAT_NAMES[b])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsekit_io::ErrorInfo;
    use sparsekit_io::MemStorage;

    fn v3() -> Vec<u8> {
        let mut b = vec![0u8; 4 * 65536];
        b[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&3u32.to_be_bytes());
        b[20..24].copy_from_slice(&16u32.to_be_bytes());
        b[24..32].copy_from_slice(&(1u64 << 20).to_be_bytes());
        b[36..40].copy_from_slice(&1u32.to_be_bytes());
        b[40..48].copy_from_slice(&(3u64 << 16).to_be_bytes());
        b[48..56].copy_from_slice(&(1u64 << 16).to_be_bytes());
        b[56..60].copy_from_slice(&1u32.to_be_bytes());
        b[96..100].copy_from_slice(&4u32.to_be_bytes());
        b[100..104].copy_from_slice(&112u32.to_be_bytes());
        b
    }

    fn parse(b: Vec<u8>) -> Result<Header> {
        Header::read(&MemStorage::from_vec(b))
    }

    #[test]
    fn minimal_v3() {
        let h = parse(v3()).unwrap();
        assert_eq!(h.cluster_size(), 65536);
        assert_eq!(h.refcount_bits(), 16);
        assert_eq!(h.compression_type, CompressionType::Zlib);
    }

    #[test]
    fn bad_magic() {
        let mut b = v3();
        b[0] = 0;
        assert_eq!(parse(b).unwrap_err().code(), "ERR_SPARSEKIT_QCOW2_FORMAT");
    }

    #[test]
    fn version_1_unsupported() {
        let mut b = v3();
        b[7] = 1;
        assert_eq!(
            parse(b).unwrap_err().code(),
            "ERR_SPARSEKIT_QCOW2_UNSUPPORTED"
        );
    }

    #[test]
    fn unknown_incompatible_bit_named() {
        let mut b = v3();
        b[79] = 0x20;
        // Feature name table naming bit 5.
        b[112..116].copy_from_slice(&EXT_FEATURE_NAMES.to_be_bytes());
        b[116..120].copy_from_slice(&48u32.to_be_bytes());
        b[120] = 0;
        b[121] = 5;
        b[122..125].copy_from_slice(b"zap");
        let e = parse(b).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_UNSUPPORTED");
        assert!(e.to_string().contains("bit 5 'zap'"), "{e}");
    }

    #[test]
    fn header_length_out_of_range() {
        for len in [0u32, 100, 106, 65544, u32::MAX] {
            let mut b = v3();
            b[100..104].copy_from_slice(&len.to_be_bytes());
            let e = parse(b).unwrap_err();
            assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_CORRUPT", "{len}");
            assert_eq!(e.offset(), Some(100));
        }
    }

    #[test]
    fn cluster_bits_out_of_range() {
        for bits in [0u32, 8, 22, 63, u32::MAX] {
            let mut b = v3();
            b[20..24].copy_from_slice(&bits.to_be_bytes());
            assert_eq!(parse(b).unwrap_err().offset(), Some(20));
        }
    }

    #[test]
    fn huge_l1_size() {
        let mut b = v3();
        b[36..40].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(parse(b).unwrap_err().offset(), Some(36));
    }

    #[test]
    fn l1_too_small_for_size() {
        let mut b = v3();
        b[24..32].copy_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(parse(b).unwrap_err().offset(), Some(36));
    }

    #[test]
    fn overflowing_size() {
        let mut b = v3();
        b[24..32].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(parse(b).unwrap_err().offset(), Some(24));
    }

    #[test]
    fn unaligned_l1() {
        let mut b = v3();
        b[40..48].copy_from_slice(&((3u64 << 16) + 512).to_be_bytes());
        let e = parse(b).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_CORRUPT");
        assert_eq!(e.offset(), Some(40));
    }

    #[test]
    fn l1_past_eof_and_overflow() {
        for off in [10u64 << 16, !0xffff] {
            let mut b = v3();
            b[40..48].copy_from_slice(&off.to_be_bytes());
            let e = parse(b).unwrap_err();
            assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_CORRUPT");
            assert_eq!(e.range().map(|r| r.0), Some(off));
        }
    }

    #[test]
    fn refcount_table_too_big() {
        let mut b = v3();
        b[56..60].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(parse(b).unwrap_err().offset(), Some(56));
    }

    #[test]
    fn too_many_snapshots() {
        let mut b = v3();
        b[60..64].copy_from_slice(&(MAX_SNAPSHOTS + 1).to_be_bytes());
        assert_eq!(parse(b).unwrap_err().offset(), Some(60));
    }

    #[test]
    fn backing_name_outside_first_cluster() {
        let mut b = v3();
        b[8..16].copy_from_slice(&65530u64.to_be_bytes());
        b[16..20].copy_from_slice(&10u32.to_be_bytes());
        let e = parse(b).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_CORRUPT");
        let mut b = v3();
        b[8..16].copy_from_slice(&512u64.to_be_bytes());
        b[16..20].copy_from_slice(&2000u32.to_be_bytes());
        assert_eq!(parse(b).unwrap_err().offset(), Some(16));
    }

    #[test]
    fn extension_past_cluster() {
        let mut b = v3();
        b[112..116].copy_from_slice(&0x1234u32.to_be_bytes());
        b[116..120].copy_from_slice(&u32::MAX.to_be_bytes());
        let e = parse(b).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_QCOW2_CORRUPT");
        assert_eq!(e.offset(), Some(112));
    }

    #[test]
    fn unknown_extension_kept() {
        let mut b = v3();
        b[112..116].copy_from_slice(&0x7661_7465u32.to_be_bytes());
        b[116..120].copy_from_slice(&1u32.to_be_bytes());
        b[120] = 1;
        let h = parse(b).unwrap();
        assert_eq!(h.extensions.len(), 1);
        assert_eq!(h.extensions[0].kind, 0x7661_7465);
        assert_eq!(h.extensions[0].data, vec![1]);
    }

    #[test]
    fn truncated_header() {
        let b = v3();
        for n in [0usize, 3, 50, 80] {
            let e = parse(b[..n].to_vec()).unwrap_err();
            assert!(
                matches!(
                    e.code(),
                    "ERR_SPARSEKIT_QCOW2_CORRUPT" | "ERR_SPARSEKIT_QCOW2_FORMAT"
                ),
                "{n}: {e}"
            );
        }
    }
}
