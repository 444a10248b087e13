//! `qemu-img info`: the image's metadata with qemu's field names.

use crate::bitmap::{read_bitmaps, Bitmap};
use crate::error::Result;
use crate::header::CryptMethod;
use crate::image::{backing_names, Image, Layer};
use crate::snapshot::Snapshot;

/// What `qemu-img info --output=json` reports under `format-specific.data` for qcow2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qcow2Specific {
    /// `0.10` (version 2) or `1.1` (version 3).
    pub compat: &'static str,
    /// `zlib` or `zstd`.
    pub compression_type: &'static str,
    /// Version 3 only.
    pub lazy_refcounts: Option<bool>,
    /// Persistent bitmaps (only when there are some).
    pub bitmaps: Option<Vec<Bitmap>>,
    /// Refcount width in bits.
    pub refcount_bits: u32,
    /// External data file name.
    pub data_file: Option<String>,
    /// Whether the external data file is raw on its own (with a data file).
    pub data_file_raw: Option<bool>,
    /// Version 3 only.
    pub corrupt: Option<bool>,
    /// Version 3 only.
    pub extended_l2: Option<bool>,
    /// `aes` or `luks` when encrypted.
    pub encrypt_format: Option<&'static str>,
}

/// `qemu-img info` of one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// The file name as opened.
    pub filename: String,
    /// `qcow2` or `raw`.
    pub format: &'static str,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// Cluster size (qcow2).
    pub cluster_size: Option<u64>,
    /// Bytes allocated on disk (`st_blocks` x 512); none for block devices.
    pub actual_size: Option<u64>,
    /// The image file's own size (`st_size`, or the block device's size): the
    /// `virtual-size` of qemu's `file` child node.
    pub file_size: u64,
    /// The image lives on a block device (qemu's `host_device` file node).
    pub block_device: bool,
    /// The dirty bit.
    pub dirty_flag: bool,
    /// Whether guest data is encrypted.
    pub encrypted: bool,
    /// The backing file name as stored.
    pub backing_filename: Option<String>,
    /// The backing file name resolved against the image's folder.
    pub full_backing_filename: Option<String>,
    /// The recorded backing format.
    pub backing_filename_format: Option<String>,
    /// Internal snapshots.
    pub snapshots: Vec<Snapshot>,
    /// qcow2 details.
    pub format_specific: Option<Qcow2Specific>,
}

impl Image {
    /// This image's `info`.
    pub fn info(&self) -> Result<Info> {
        let h = &self.header;
        let v3 = h.version >= 3;
        let (bitmaps, _) =
            read_bitmaps(self.storage(), h, self.file_size).map_err(|e| self.err(e))?;
        let names = backing_names(self);
        let encrypt_format = match h.crypt() {
            CryptMethod::None => None,
            CryptMethod::Aes => Some("aes"),
            CryptMethod::Luks => Some("luks"),
        };
        Ok(Info {
            filename: self.filename().unwrap_or("").to_string(),
            format: "qcow2",
            virtual_size: h.size,
            cluster_size: Some(h.cluster_size()),
            actual_size: self.actual_size,
            file_size: self.file_size,
            block_device: self.is_block_device,
            dirty_flag: h.dirty(),
            encrypted: encrypt_format.is_some(),
            backing_filename: names.as_ref().map(|n| n.0.clone()),
            full_backing_filename: names.map(|n| n.1),
            backing_filename_format: h.backing_file.as_ref().and(h.backing_format.clone()),
            snapshots: self.snapshots.clone(),
            format_specific: Some(Qcow2Specific {
                compat: if v3 { "1.1" } else { "0.10" },
                compression_type: h.compression_type.name(),
                lazy_refcounts: v3.then(|| h.lazy_refcounts()),
                bitmaps: (!bitmaps.is_empty()).then_some(bitmaps),
                refcount_bits: h.refcount_bits(),
                data_file: h.data_file.clone(),
                data_file_raw: h.has_data_file().then(|| h.data_file_raw()),
                corrupt: v3.then(|| h.corrupt()),
                extended_l2: v3.then(|| h.extended_l2()),
                encrypt_format,
            }),
        })
    }

    /// `info` of this image and every image below it, as `qemu-img info --backing-chain`.
    pub fn chain_info(&self) -> Result<Vec<Info>> {
        let mut out = vec![self.info()?];
        let mut layer = self.backing();
        while let Some(l) = layer {
            match l {
                Layer::Qcow2(i) => {
                    out.push(i.info()?);
                    layer = i.backing();
                }
                Layer::Raw(r) => {
                    let meta = std::fs::metadata(r.filename()).ok();
                    let block_device = meta.as_ref().is_some_and(|m| {
                        sparsekit_io::sys::FileTypeExt::is_block_device(&m.file_type())
                    });
                    let actual_size = meta
                        .filter(|m| m.is_file())
                        .map(|m| sparsekit_io::sys::MetadataExt::blocks(&m) * 512);
                    out.push(Info {
                        filename: r.filename().to_string(),
                        format: "raw",
                        virtual_size: r.size(),
                        cluster_size: None,
                        actual_size,
                        file_size: r.size(),
                        block_device,
                        dirty_flag: false,
                        encrypted: false,
                        backing_filename: None,
                        full_backing_filename: None,
                        backing_filename_format: None,
                        snapshots: Vec::new(),
                        format_specific: None,
                    });
                    layer = None;
                }
            }
        }
        Ok(out)
    }
}
