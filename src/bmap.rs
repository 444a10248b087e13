use napi::bindgen_prelude::*;
use sparsekit_bmap::{create, BmapChoice, ChecksumType, CopyOptions, CreateOptions};

use crate::error::Failure;
use crate::job::{path_arg, spawn, to_f64, CancelToken, ProgressFn};

#[napi(object)]
#[derive(Default)]
pub struct NativeBmapCreateOptions {
    /// `sha256` (default), `sha1` or `none` (no range checksums).
    pub checksum: Option<String>,
    /// Map only what the image's file systems use (sparsekit_layout::mapped_ranges).
    pub filesystems: Option<bool>,
}

#[napi(object)]
pub struct NativeBmapCreated {
    /// The bmap, format 2.0 XML.
    pub xml: String,
    pub image_size: f64,
    pub block_size: f64,
    pub blocks_count: f64,
    pub mapped_blocks_count: f64,
}

/// Create the bmap (2.0 XML) of an image.
#[napi(ts_return_type = "Promise<NativeBmapCreated>")]
pub fn bmap_create<'env>(
    env: &'env Env,
    image: Either<String, Buffer>,
    options: Option<NativeBmapCreateOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let image = path_arg("image", image);
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let image = image?;
            let o = options.unwrap_or_default();
            let checksum = match o.checksum.as_deref() {
                None | Some("sha256") => Some(ChecksumType::Sha256),
                Some("sha1") => Some(ChecksumType::Sha1),
                Some("none") => None,
                Some(v) => {
                    return Err(Failure::invalid_value(format!(
                        "The property 'options.checksum' must be one of 'sha256', 'sha1', 'none'. Received '{v}'"
                    )))
                }
            };
            let b = if o.filesystems.unwrap_or(false) {
                let s = sparsekit_io::FileStorage::open(&image)
                    .map_err(|e| Failure::from_core(&sparsekit_layout::Error::from(e)))?;
                let m =
                    sparsekit_layout::mapped_ranges(&s, ctl).map_err(|e| Failure::from_core(&e))?;
                let bs = m.block_size.clamp(512, sparsekit_bmap::DEFAULT_BLOCK_SIZE);
                sparsekit_bmap::create_from(&s, m.size, &m.ranges, bs, checksum, ctl)
                    .map_err(|e| Failure::from_core(&e.with_path(&image)))?
            } else {
                let opts = CreateOptions {
                    checksum,
                    block_size: None,
                };
                create(&image, &opts, ctl).map_err(|e| Failure::from_core(&e))?
            };
            Ok(NativeBmapCreated {
                xml: b.to_xml(),
                image_size: to_f64("imageSize", b.image_size)?,
                block_size: to_f64("blockSize", b.block_size)?,
                blocks_count: to_f64("blocksCount", b.blocks_count)?,
                mapped_blocks_count: to_f64("mappedBlocksCount", b.mapped_blocks_count)?,
            })
        },
        |env, v| unsafe { NativeBmapCreated::to_napi_value(env.raw(), v) },
    )
}

#[napi(object)]
#[derive(Default)]
pub struct NativeBmapCopyOptions {
    /// The bmap file; absent: `IMAGE.bmap` found beside the image.
    pub bmap: Option<Either<String, Buffer>>,
    /// Use no bmap even when one lies beside the image (`bmaptool copy --nobmap`).
    pub no_bmap: Option<bool>,
    /// Check range checksums while copying (default true).
    pub verify: Option<bool>,
    /// Re-read the destination past the page cache after fsync (default false).
    pub read_back: Option<bool>,
    /// Create a missing destination as a regular file (never under /dev).
    pub create_files: Option<bool>,
    /// Byte offset in the destination where the image goes.
    pub seek: Option<f64>,
    /// The decompressed image's expected SHA-256 (hex).
    pub sha256: Option<String>,
    /// Write only the blocks that differ from the destination's.
    pub only_changed: Option<bool>,
    /// `keep` (default), `zero` or `discard` the image's unmapped ranges.
    pub unmapped: Option<String>,
    /// Without a bmap, only the blocks the image's file systems use.
    pub trim: Option<bool>,
    /// Retries of a write failing with EIO, EBUSY or EAGAIN (default 5).
    pub write_retries: Option<u32>,
    /// Delay before the first such retry, in ms (default 100, doubled each time).
    pub write_retry_delay: Option<u32>,
}

#[napi(object)]
pub struct NativeBmapCopyResult {
    pub bytes_written: f64,
    pub image_size: f64,
    /// The bmap file used, if one was read.
    pub bmap: Option<String>,
    /// `gzip`, `xz`, `bzip2`, `zstd`, or absent for a plain image.
    pub compression: Option<String>,
    pub ranges_verified: f64,
    pub ranges_read_back: f64,
    pub bytes_skipped: f64,
    pub retries: f64,
    pub sha256: Option<String>,
    /// What trim found, when it was asked for and no bmap was used.
    pub trim: Option<NativeTrim>,
}

/// The JS result of a bmap copy through the flash crate.
pub fn copy_result(
    r: sparsekit_flash::MediaReport,
) -> std::result::Result<NativeBmapCopyResult, Failure> {
    let c = r.copy;
    Ok(NativeBmapCopyResult {
        bytes_written: to_f64("bytesWritten", c.bytes_written)?,
        image_size: to_f64("imageSize", c.image_size)?,
        bmap: c.bmap_path.map(|p| p.to_string_lossy().into_owned()),
        compression: c.compression.map(|c| c.name().to_string()),
        ranges_verified: c.ranges_verified as f64,
        ranges_read_back: c.ranges_read_back as f64,
        bytes_skipped: r.bytes_skipped as f64,
        retries: r.retries as f64,
        sha256: r.sha256,
        trim: native_trim(r.trim)?,
    })
}

/// Flash an image (plain or compressed) to a file or block device with a bmap.
#[napi(ts_return_type = "Promise<NativeBmapCopyResult>")]
pub fn bmap_copy<'env>(
    env: &'env Env,
    image: Either<String, Buffer>,
    dst: Either<String, Buffer>,
    options: Option<NativeBmapCopyOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let paths = path_arg("image", image).and_then(|s| Ok((s, path_arg("dst", dst)?)));
    let o = options.unwrap_or_default();
    let bmap = o.bmap.map(|b| path_arg("options.bmap", b)).transpose();
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let (image, dst) = paths?;
            let opts = CopyOptions {
                bmap: bmap_choice(bmap?, o.no_bmap),
                verify: o.verify.unwrap_or(true),
                read_back: o.read_back.unwrap_or(false),
                create_files: o.create_files.unwrap_or(false),
            };
            let media = media(
                o.seek,
                o.sha256,
                o.only_changed,
                o.unmapped,
                o.trim,
                o.write_retries,
                o.write_retry_delay,
            )?;
            // Drives, block devices, zip archives and the media options go through the
            // flash engine.
            let r = sparsekit_flash::local_bmap_copy_media(
                &image,
                &dst,
                &opts,
                &crate::destinations::drive_opener(opts.create_files),
                &media,
                ctl,
            )
            .map_err(|e| Failure::from_core(&e))?;
            copy_result(r)
        },
        |env, v| unsafe { NativeBmapCopyResult::to_napi_value(env.raw(), v) },
    )
}

/// `bmap` and `noBmap` as a [`BmapChoice`]: none, the file given, or the one found beside
/// the image (or at URL.bmap).
pub(crate) fn bmap_choice(bmap: Option<std::path::PathBuf>, no_bmap: Option<bool>) -> BmapChoice {
    match (bmap, no_bmap.unwrap_or(false)) {
        (_, true) => BmapChoice::None,
        (Some(p), false) => BmapChoice::Path(p),
        (None, false) => BmapChoice::Auto,
    }
}

/// The removable-media options of a bmap copy (of a file or a URL), as JS gives them,
/// checked and with their defaults.
pub(crate) fn media(
    seek: Option<f64>,
    sha256: Option<String>,
    only_changed: Option<bool>,
    unmapped: Option<String>,
    trim: Option<bool>,
    write_retries: Option<u32>,
    write_retry_delay: Option<u32>,
) -> std::result::Result<sparsekit_flash::Media, Failure> {
    Ok(sparsekit_flash::Media {
        seek: crate::job::opt_u64("options.seek", seek)?.unwrap_or(0),
        sha256,
        only_changed: only_changed.unwrap_or(false),
        unmapped: unmapped_arg(unmapped.as_deref())?,
        trim: trim.unwrap_or(false),
        write_retries,
        write_retry_delay: write_retry_delay.map(|ms| std::time::Duration::from_millis(ms.into())),
    })
}

/// `keep`, `zero` or `discard` for [`sparsekit_flash::Unmapped`].
pub fn unmapped_arg(v: Option<&str>) -> std::result::Result<sparsekit_flash::Unmapped, Failure> {
    Ok(match v {
        None | Some("keep") => sparsekit_flash::Unmapped::Keep,
        Some("zero") => sparsekit_flash::Unmapped::Zero,
        Some("discard") => sparsekit_flash::Unmapped::Discard,
        Some(v) => {
            return Err(Failure::invalid_value(format!(
                "The property 'options.unmapped' must be one of 'keep', 'zero', 'discard'. Received '{v}'"
            )))
        }
    })
}

/// What trimming found: the image's used bytes (the only ones read and written) and its
/// provably free ones.
#[napi(object)]
pub struct NativeTrim {
    pub used_bytes: f64,
    pub free_bytes: f64,
}

/// A trim report for JS.
pub(crate) fn native_trim(
    t: Option<sparsekit_flash::Trim>,
) -> std::result::Result<Option<NativeTrim>, Failure> {
    t.map(|t| {
        Ok(NativeTrim {
            used_bytes: to_f64("trim.usedBytes", t.used_bytes)?,
            free_bytes: to_f64("trim.freeBytes", t.free_bytes)?,
        })
    })
    .transpose()
}
