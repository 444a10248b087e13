use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::*;
use sparsekit_drives::{self as drives, Safety};
use sparsekit_flash::{flash, FlashOptions, FlashStatus};

use crate::destinations::{drive_opener, DriveOpener};
use sparsekit_http::HttpOptions;

use crate::error::Failure;
use crate::job::{opt_u64, path_arg, spawn, to_f64, CancelToken, ProgressFn};

#[napi(object)]
pub struct NativePartition {
    pub name: String,
    pub path: String,
    pub number: Option<u32>,
    pub start: f64,
    pub size: f64,
    pub mountpoints: Vec<String>,
}

#[napi(object)]
pub struct NativeDrive {
    pub name: String,
    pub path: String,
    pub size: f64,
    pub logical_block_size: u32,
    pub physical_block_size: u32,
    pub vendor: Option<String>,
    pub model: Option<String>,
    /// `usb`, `mmc`, `sata`, `nvme`, `scsi`, `virtio`, `loop`, `virtual`, `unknown`.
    pub bus: String,
    pub removable: bool,
    pub read_only: bool,
    pub partitions: Vec<NativePartition>,
    pub mountpoints: Vec<String>,
    pub holders: Vec<String>,
    pub backing_file: Option<String>,
    pub is_system: bool,
    pub system_reasons: Vec<String>,
}

fn s(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

/// List whole block devices (Linux: sysfs and /proc/self/mountinfo; Windows and macOS:
/// their ioctls, see sparsekit_drives).
#[napi(ts_return_type = "Promise<NativeDrive[]>")]
pub fn drives_list<'env>(env: &'env Env) -> Result<Object<'env>> {
    spawn(
        env,
        None,
        None,
        move |_| {
            let list = drives::list().map_err(|e| Failure::from_core(&e))?;
            list.into_iter()
                .map(|d| {
                    Ok(NativeDrive {
                        path: s(&d.path),
                        size: to_f64("size", d.size)?,
                        logical_block_size: d.logical_block_size,
                        physical_block_size: d.physical_block_size,
                        bus: d.bus.name().to_string(),
                        removable: d.removable,
                        read_only: d.read_only,
                        partitions: d
                            .partitions
                            .iter()
                            .map(|p| NativePartition {
                                name: p.name.clone(),
                                path: s(&p.path),
                                number: p.number,
                                start: p.start as f64,
                                size: p.size as f64,
                                mountpoints: p.mountpoints.iter().map(|m| s(m)).collect(),
                            })
                            .collect(),
                        mountpoints: d.mountpoints.iter().map(|m| s(m)).collect(),
                        holders: d.holders.clone(),
                        backing_file: d.backing_file.as_deref().map(s),
                        is_system: d.is_system,
                        system_reasons: d.system_reasons.clone(),
                        vendor: d.vendor,
                        model: d.model,
                        name: d.name,
                    })
                })
                .collect::<std::result::Result<Vec<_>, Failure>>()
        },
        |env, v| unsafe { Vec::<NativeDrive>::to_napi_value(env.raw(), v) },
    )
}

/// Live per-destination progress of one flash, read by JS on each progress call.
#[napi]
pub struct FlashStatusHandle {
    inner: Arc<FlashStatus>,
}

#[napi(object)]
pub struct NativeDestProgress {
    /// `pending`, `writing`, `syncing`, `verifying`, `done`, `failed`.
    pub state: String,
    pub written: f64,
    pub verified: f64,
}

#[napi]
impl FlashStatusHandle {
    #[napi(constructor)]
    pub fn new(destinations: u32) -> Self {
        FlashStatusHandle {
            inner: Arc::new(FlashStatus::new(destinations as usize)),
        }
    }

    /// Bytes each destination will be written; -1 while unknown.
    #[napi(getter)]
    pub fn total(&self) -> f64 {
        self.inner.total().map_or(-1.0, |t| t as f64)
    }

    /// Why destination `i` failed, as soon as it has; null while it has not.
    #[napi]
    pub fn failure(&self, i: u32) -> Option<NativeFailure> {
        self.inner
            .failure(i as usize)
            .map(|f| native_failure(Failure::from_core(&f)))
    }

    /// Every destination's numbers, in order.
    #[napi]
    pub fn snapshot(&self) -> Vec<NativeDestProgress> {
        self.inner
            .snapshot()
            .into_iter()
            .map(|d| NativeDestProgress {
                state: d.state.name().to_string(),
                written: d.written as f64,
                verified: d.verified as f64,
            })
            .collect()
    }
}

#[napi(object)]
#[derive(Default)]
pub struct NativeFlashOptions {
    /// A bmap file; absent: IMAGE.bmap beside a local image, URL.bmap for a URL.
    pub bmap: Option<Either<String, Buffer>>,
    /// Use no bmap.
    pub no_bmap: Option<bool>,
    /// Check bmap range checksums while streaming (default true).
    pub verify: Option<bool>,
    /// Read every destination back after fsync (default true).
    pub read_back: Option<bool>,
    /// Write even to system or busy drives.
    pub force: Option<bool>,
    /// Unmount mounted partitions of the destinations first.
    pub unmount: Option<bool>,
    /// Create missing destinations as regular files (never under /dev).
    pub create_files: Option<bool>,
    /// The zip entry to write (default: the largest).
    pub zip_entry: Option<String>,
    /// Extra trusted CA certificates (PEM) for https sources.
    pub ca: Option<Buffer>,
    /// Resume attempts after a dropped connection (default 5).
    pub retries: Option<u32>,
    /// Delay before the first retry, in ms (default 500, doubled each time).
    pub retry_delay: Option<u32>,
    /// Connect and per-read time-out, in ms (default 30000).
    pub timeout: Option<u32>,
    /// Byte offset in every destination where the image goes (default 0).
    pub seek: Option<f64>,
    /// The decompressed image's expected SHA-256 (hex).
    pub sha256: Option<String>,
    /// Read each destination first and write only the blocks that differ.
    pub only_changed: Option<bool>,
    /// `keep` (default), `zero` or `discard` the image's unmapped ranges.
    pub unmapped: Option<String>,
    /// Retries of a destination write (or compare read) failing with EIO, EBUSY or EAGAIN (default 5).
    pub write_retries: Option<u32>,
    /// Delay before the first such retry, in ms (default 100, doubled each time).
    pub write_retry_delay: Option<u32>,
    /// Probe each block device's real capacity before writing it.
    pub check_capacity: Option<bool>,
    /// Flush and eject each destination that succeeded.
    pub eject: Option<bool>,
    /// Without a bmap, read and write only the blocks the source's file systems use.
    pub trim: Option<bool>,
}

/// A destination's failure, as data: the TS layer makes it an `Error`.
#[napi(object)]
pub struct NativeFailure {
    pub code: String,
    pub message: String,
    pub errno: Option<i32>,
    pub path: Option<String>,
    pub offset: Option<f64>,
    pub syscall: Option<String>,
    /// The byte range at fault: `[start, length]`.
    pub range: Option<Vec<f64>>,
}

/// A destination's failure as plain data (per-destination errors are values, not rejections).
fn native_failure(f: Failure) -> NativeFailure {
    NativeFailure {
        code: f.code,
        message: f.message,
        errno: f.errno.map(|e| -e),
        path: f.path,
        offset: f.offset.map(|o| o as f64),
        syscall: f.syscall.map(str::to_string),
        range: f.range.map(|(s, l)| vec![s as f64, l as f64]),
    }
}

#[napi(object)]
pub struct NativeFlashDestination {
    pub path: String,
    pub bytes_written: f64,
    pub verified: bool,
    pub bytes_skipped: f64,
    pub retries: f64,
    pub ejected: bool,
    pub eject_error: Option<NativeFailure>,
    pub error: Option<NativeFailure>,
}

#[napi(object)]
pub struct NativeFlashResult {
    pub destinations: Vec<NativeFlashDestination>,
    pub image_size: f64,
    pub compression: Option<String>,
    pub bmap: Option<String>,
    pub zip_entry: Option<String>,
    pub source_bytes: f64,
    pub sha256: Option<String>,
    pub trim: Option<crate::bmap::NativeTrim>,
}

/// Flash one source (path or http(s) URL) to several destinations at once.
#[napi(ts_return_type = "Promise<NativeFlashResult>")]
#[allow(clippy::too_many_arguments)]
pub fn flash_multi<'env>(
    env: &'env Env,
    source: String,
    destinations: Vec<Either<String, Buffer>>,
    options: Option<NativeFlashOptions>,
    status: Option<&FlashStatusHandle>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let dsts = destinations
        .into_iter()
        .enumerate()
        .map(|(i, d)| path_arg(&format!("destinations[{i}]"), d))
        .collect::<std::result::Result<Vec<_>, _>>();
    let o = options.unwrap_or_default();
    let bmap = o.bmap.map(|b| path_arg("options.bmap", b)).transpose();
    let ca = o.ca.map(|b| b.to_vec());
    let status = status.map(|s| s.inner.clone());
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let dsts = dsts?;
            let opts = FlashOptions {
                bmap: crate::bmap::bmap_choice(bmap?, o.no_bmap),
                verify: o.verify.unwrap_or(true),
                read_back: o.read_back.unwrap_or(true),
                opener: Arc::new(DriveOpener(Safety {
                    force: o.force.unwrap_or(false),
                    unmount: o.unmount.unwrap_or(false),
                    create_files: o.create_files.unwrap_or(false),
                })),
                zip_entry: o.zip_entry,
                http: http_options(ca, o.retries, o.retry_delay, o.timeout),
                seek: opt_u64("options.seek", o.seek)?.unwrap_or(0),
                sha256: o.sha256,
                only_changed: o.only_changed.unwrap_or(false),
                unmapped: crate::bmap::unmapped_arg(o.unmapped.as_deref())?,
                write_retries: o.write_retries.unwrap_or(sparsekit_flash::WRITE_RETRIES),
                retry_delay: o
                    .write_retry_delay
                    .map_or(FlashOptions::default().retry_delay, |ms| {
                        Duration::from_millis(ms.into())
                    }),
                check_capacity: o.check_capacity.unwrap_or(false),
                eject: o.eject.unwrap_or(false),
                trim: o.trim.unwrap_or(false),
            };
            let r = flash(&source, &dsts, &opts, status.as_deref(), ctl)
                .map_err(|e| Failure::from_core(&e))?;
            // A zip entry's own compression is the archive's (deflate, ...): 'zip', unless
            // the entry is itself a compressed stream (an .img.xz inside a zip).
            let compression = r
                .compression
                .map(|c| c.name().to_string())
                .or_else(|| r.zip_entry.as_ref().map(|_| "zip".to_string()));
            Ok(NativeFlashResult {
                destinations: r
                    .destinations
                    .iter()
                    .map(|d| NativeFlashDestination {
                        path: s(&d.path),
                        bytes_written: d.bytes_written as f64,
                        verified: d.verified,
                        bytes_skipped: d.bytes_skipped as f64,
                        retries: d.retries as f64,
                        ejected: d.ejected,
                        eject_error: d
                            .eject_error
                            .as_ref()
                            .map(|e| native_failure(Failure::from_core(e))),
                        error: d
                            .error
                            .as_ref()
                            .map(|e| native_failure(Failure::from_core(e))),
                    })
                    .collect(),
                image_size: to_f64("imageSize", r.image_size)?,
                compression,
                bmap: r.bmap,
                zip_entry: r.zip_entry,
                source_bytes: r.source_bytes as f64,
                sha256: r.sha256,
                trim: crate::bmap::native_trim(r.trim)?,
            })
        },
        |env, v| unsafe { NativeFlashResult::to_napi_value(env.raw(), v) },
    )
}

/// The HTTP options from the Node arguments (milliseconds), defaults where absent.
pub(crate) fn http_options(
    ca: Option<Vec<u8>>,
    retries: Option<u32>,
    retry_delay: Option<u32>,
    timeout: Option<u32>,
) -> HttpOptions {
    let d = HttpOptions::default();
    HttpOptions {
        ca_pem: ca,
        retries: retries.unwrap_or(d.retries),
        retry_delay: retry_delay.map_or(d.retry_delay, |ms| Duration::from_millis(ms.into())),
        timeout: timeout.map_or(d.timeout, |ms| Duration::from_millis(ms.into())),
        ..d
    }
}

/// Options of the remote `bmap.copy` and `qcow2.convert`.
#[napi(object)]
#[derive(Default)]
pub struct NativeRemoteOptions {
    /// bmap copy: a bmap file; absent: URL.bmap when the server has one.
    pub bmap: Option<Either<String, Buffer>>,
    /// bmap copy: use no bmap.
    pub no_bmap: Option<bool>,
    /// bmap copy: check range checksums while streaming (default true).
    pub verify: Option<bool>,
    /// bmap copy: read the destination back after fsync (default false).
    pub read_back: Option<bool>,
    /// bmap copy: create a missing destination as a regular file (never under /dev).
    pub create_files: Option<bool>,
    /// bmap copy: byte offset in the destination where the image goes.
    pub seek: Option<f64>,
    /// bmap copy: the decompressed image's expected SHA-256 (hex).
    pub sha256: Option<String>,
    /// bmap copy: write only the blocks that differ from the destination's.
    pub only_changed: Option<bool>,
    /// bmap copy: `keep`, `zero` or `discard` the unmapped ranges.
    pub unmapped: Option<String>,
    /// bmap copy: without a bmap, only the blocks the image's file systems use.
    pub trim: Option<bool>,
    /// bmap copy: retries of a write failing with EIO, EBUSY or EAGAIN (default 5).
    pub write_retries: Option<u32>,
    /// bmap copy: delay before the first such retry, in ms (default 100).
    pub write_retry_delay: Option<u32>,
    /// qcow2 convert: write zeros where the guest reads zeros.
    pub zero_holes: Option<bool>,
    /// Extra trusted CA certificates (PEM) for https URLs.
    pub ca: Option<Buffer>,
    /// Retries in a row without data (default 5).
    pub retries: Option<u32>,
    /// Delay before the first retry, in ms (default 500).
    pub retry_delay: Option<u32>,
    /// Connect and per-read time-out, in ms (default 30000).
    pub timeout: Option<u32>,
}

/// `bmap copy` of an http(s) URL: URL.bmap, streamed, resumed with range requests.
#[napi(ts_return_type = "Promise<NativeBmapCopyResult>")]
pub fn remote_bmap_copy<'env>(
    env: &'env Env,
    url: String,
    dst: Either<String, Buffer>,
    options: Option<NativeRemoteOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let dst = path_arg("dst", dst);
    let o = options.unwrap_or_default();
    let bmap = o.bmap.map(|b| path_arg("options.bmap", b)).transpose();
    let ca = o.ca.map(|b| b.to_vec());
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let dst = dst?;
            let opts = sparsekit_bmap::CopyOptions {
                bmap: crate::bmap::bmap_choice(bmap?, o.no_bmap),
                verify: o.verify.unwrap_or(true),
                read_back: o.read_back.unwrap_or(false),
                create_files: o.create_files.unwrap_or(false),
            };
            let http = http_options(ca, o.retries, o.retry_delay, o.timeout);
            let media = crate::bmap::media(
                o.seek,
                o.sha256,
                o.only_changed,
                o.unmapped,
                o.trim,
                o.write_retries,
                o.write_retry_delay,
            )?;
            let r = sparsekit_flash::bmap_copy_media(
                &url,
                &dst,
                &opts,
                &http,
                &drive_opener(opts.create_files),
                &media,
                ctl,
            )
            .map_err(|e| Failure::from_core(&e))?;
            crate::bmap::copy_result(r)
        },
        |env, v| unsafe { crate::bmap::NativeBmapCopyResult::to_napi_value(env.raw(), v) },
    )
}

/// `qcow2 convert` of an http(s) URL read with range requests.
#[napi(ts_return_type = "Promise<NativeQcow2Convert>")]
pub fn remote_qcow2_convert<'env>(
    env: &'env Env,
    url: String,
    dst: Either<String, Buffer>,
    options: Option<NativeRemoteOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let dst = path_arg("dst", dst);
    let o = options.unwrap_or_default();
    let ca = o.ca.map(|b| b.to_vec());
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let dst = dst?;
            let opts = sparsekit_qcow2::ConvertOptions {
                zero_holes: o.zero_holes.unwrap_or(false),
            };
            let http = http_options(ca, o.retries, o.retry_delay, o.timeout);
            let r = remote_qcow2(&url, &http, ctl.cancel())
                .and_then(|img| Ok(sparsekit_qcow2::convert(&img, &dst, &opts, ctl)?))
                .map_err(qcow2_failure)?;
            Ok(crate::qcow2::NativeQcow2Convert {
                bytes_written: to_f64("bytesWritten", r.bytes_written)?,
                size: to_f64("size", r.size)?,
            })
        },
        |env, v| unsafe { crate::qcow2::NativeQcow2Convert::to_napi_value(env.raw(), v) },
    )
}

/// The qcow2 image at `url`, read with range requests through an
/// [`sparsekit_http::HttpStorage`]. An image with a backing file or an external data file
/// is refused (there is no folder to find them in), as is an encrypted one when its data
/// is read.
fn remote_qcow2(
    url: &str,
    http: &HttpOptions,
    cancel: &sparsekit_io::Cancel,
) -> std::result::Result<sparsekit_qcow2::Image, Remote> {
    let storage =
        sparsekit_http::HttpStorage::open(url, http, cancel.clone()).map_err(Remote::Http)?;
    let opts = sparsekit_qcow2::OpenOptions {
        backing: sparsekit_qcow2::BackingPolicy::None,
        ..Default::default()
    };
    let img = sparsekit_qcow2::Image::from_storage(Box::new(storage), &opts)?;
    let h = img.header();
    let unsupported = |what: String| {
        Remote::Unsupported(Failure::new(
            "ERR_SPARSEKIT_UNSUPPORTED",
            format!("unsupported: {what}"),
        ))
    };
    if let Some(b) = &h.backing_file {
        return Err(unsupported(format!(
            "'{url}' has a backing file ('{b}'): remote images must stand alone \
             (qemu-img convert it to one first)"
        )));
    }
    if h.has_data_file() {
        return Err(unsupported(format!(
            "'{url}' keeps its data in an external data file"
        )));
    }
    Ok(img)
}

/// A failure of a remote qcow2 image: of HTTP, of qcow2, or a refusal.
enum Remote {
    Http(sparsekit_http::Error),
    Qcow2(sparsekit_qcow2::Error),
    Unsupported(Failure),
}

impl From<sparsekit_qcow2::Error> for Remote {
    fn from(e: sparsekit_qcow2::Error) -> Self {
        Remote::Qcow2(e)
    }
}

/// A remote qcow2 failure for JS: an HTTP failure carried inside a qcow2 read error keeps
/// its own code (`ERR_SPARSEKIT_HTTP_*`).
fn qcow2_failure(e: Remote) -> Failure {
    match e {
        Remote::Http(h) => Failure::from_core(&h),
        Remote::Unsupported(f) => f,
        Remote::Qcow2(sparsekit_qcow2::Error::Io(io)) => {
            match sparsekit_http::Error::from_io_error(io) {
                Ok(h) => Failure::from_core(&h),
                Err(io) => Failure::from_core(&sparsekit_qcow2::Error::Io(io)),
            }
        }
        Remote::Qcow2(q) => Failure::from_core(&q),
    }
}

#[napi(object)]
#[derive(Default)]
pub struct NativeVerifyOptions {
    /// A bmap file; absent: IMAGE.bmap beside a local image, URL.bmap for a URL.
    pub bmap: Option<Either<String, Buffer>>,
    /// Use no bmap.
    pub no_bmap: Option<bool>,
    /// Check bmap range checksums while streaming (default true).
    pub verify: Option<bool>,
    /// Byte offset in the destination where the image is.
    pub seek: Option<f64>,
    /// The decompressed image's expected SHA-256 (hex).
    pub sha256: Option<String>,
    /// The zip entry (default: the largest).
    pub zip_entry: Option<String>,
    /// Without a bmap, compare only the blocks the image's file systems use.
    pub trim: Option<bool>,
    pub ca: Option<Buffer>,
    pub retries: Option<u32>,
    pub retry_delay: Option<u32>,
    pub timeout: Option<u32>,
}

#[napi(object)]
pub struct NativeVerifyResult {
    pub bytes_compared: f64,
    pub image_size: f64,
    pub bmap: Option<String>,
    pub sha256: Option<String>,
    pub trim: Option<crate::bmap::NativeTrim>,
}

/// Read a destination back and compare it with an image, writing nothing.
#[napi(ts_return_type = "Promise<NativeVerifyResult>")]
pub fn verify_image<'env>(
    env: &'env Env,
    source: String,
    dst: Either<String, Buffer>,
    options: Option<NativeVerifyOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let dst = path_arg("destination", dst);
    let o = options.unwrap_or_default();
    let bmap = o.bmap.map(|b| path_arg("options.bmap", b)).transpose();
    let ca = o.ca.map(|b| b.to_vec());
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let dst = dst?;
            let opts = FlashOptions {
                bmap: crate::bmap::bmap_choice(bmap?, o.no_bmap),
                verify: o.verify.unwrap_or(true),
                zip_entry: o.zip_entry,
                http: http_options(ca, o.retries, o.retry_delay, o.timeout),
                seek: opt_u64("options.seek", o.seek)?.unwrap_or(0),
                sha256: o.sha256,
                trim: o.trim.unwrap_or(false),
                ..FlashOptions::default()
            };
            let r = sparsekit_flash::verify(&source, &dst, &opts, ctl)
                .map_err(|e| Failure::from_core(&e))?;
            Ok(NativeVerifyResult {
                bytes_compared: to_f64("bytesCompared", r.bytes_compared)?,
                image_size: to_f64("imageSize", r.image_size)?,
                bmap: r.bmap,
                sha256: r.sha256,
                trim: crate::bmap::native_trim(r.trim)?,
            })
        },
        |env, v| unsafe { NativeVerifyResult::to_napi_value(env.raw(), v) },
    )
}

#[napi(object)]
#[derive(Default)]
pub struct NativeProbeOptions {
    /// Probe a system or busy drive too.
    pub force: Option<bool>,
    /// Unmount the drive's mounted partitions first.
    pub unmount: Option<bool>,
}

#[napi(object)]
pub struct NativeProbeResult {
    pub size: f64,
    pub real_size: f64,
    pub counterfeit: bool,
    pub points: f64,
}

/// Probe a drive's real capacity: unique patterns written at offsets over its claimed
/// size, read back past the cache, the original bytes restored.
#[napi(ts_return_type = "Promise<NativeProbeResult>")]
pub fn drives_probe<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    options: Option<NativeProbeOptions>,
    cancel: Option<&CancelToken>,
) -> Result<Object<'env>> {
    let path = path_arg("path", path);
    let o = options.unwrap_or_default();
    spawn(
        env,
        cancel,
        None,
        move |ctl| {
            let path = path?;
            let opener = DriveOpener(Safety {
                force: o.force.unwrap_or(false),
                unmount: o.unmount.unwrap_or(false),
                create_files: false,
            });
            let r = sparsekit_flash::Opener::open(&opener, &path)
                .and_then(|d| sparsekit_flash::probe_capacity(&*d, ctl.cancel()))
                .map_err(|e| Failure::from_core(&e))?;
            Ok(NativeProbeResult {
                size: to_f64("size", r.claimed)?,
                real_size: to_f64("realSize", r.real)?,
                counterfeit: r.counterfeit(),
                points: r.points as f64,
            })
        },
        |env, v| unsafe { NativeProbeResult::to_napi_value(env.raw(), v) },
    )
}
