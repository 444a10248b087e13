//! qcow2 writer glue: import (any source into a qcow2 file), the streamed export, measure
//! and compare over sparsekit-qcow2's writer. Arguments in, core call on a job thread,
//! results and errors out.

// The shared `Failure` is large; boxing it is the lead's call for every glue file.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::*;
use sparsekit_http::{HttpOptions, HttpStorage};
use sparsekit_io::{Cancel, IoError, Storage};
use sparsekit_qcow2::{
    BackingFile, BackingPolicy, CompressionType, ExportStream, Image, ImportOptions,
    MeasureOptions, OpenOptions, Source, StorageSource,
};

use crate::error::Failure;
use crate::job::{path_arg, spawn, to_f64, to_u64, CancelToken, ProgressFn};

/// A qcow2 failure for JS; an HTTP failure carried inside a read error keeps its own code
/// (`ERR_SPARSEKIT_HTTP_*`).
fn fail(e: sparsekit_qcow2::Error) -> Failure {
    match e {
        sparsekit_qcow2::Error::Io(io) => match sparsekit_http::Error::from_io_error(io) {
            Ok(h) => Failure::from_core(&h),
            Err(io) => Failure::from_core(&sparsekit_qcow2::Error::Io(io)),
        },
        q => Failure::from_core(&q),
    }
}

/// Where a source is and how to read it.
#[napi(object)]
#[derive(Default)]
pub struct NativeQcow2SourceOptions {
    /// `raw` or `qcow2`; absent: a qcow2 image is recognised by its magic.
    pub format: Option<String>,
    /// Extra trusted CA certificates (PEM) for https sources.
    pub ca: Option<Buffer>,
    pub retries: Option<u32>,
    pub retry_delay: Option<u32>,
    pub timeout: Option<u32>,
}

/// [`NativeQcow2SourceOptions`] taken off the JS objects (before the job's thread).
struct SrcOpts {
    format: Option<String>,
    http: HttpOptions,
}

fn src_opts(o: Option<NativeQcow2SourceOptions>) -> SrcOpts {
    let o = o.unwrap_or_default();
    SrcOpts {
        http: http_opts(&o),
        format: o.format,
    }
}

fn http_opts(o: &NativeQcow2SourceOptions) -> HttpOptions {
    let d = HttpOptions::default();
    HttpOptions {
        ca_pem: o.ca.as_ref().map(|b| b.to_vec()),
        retries: o.retries.unwrap_or(d.retries),
        retry_delay: o
            .retry_delay
            .map_or(d.retry_delay, |ms| Duration::from_millis(ms.into())),
        timeout: o
            .timeout
            .map_or(d.timeout, |ms| Duration::from_millis(ms.into())),
        ..d
    }
}

/// A source argument: a path (string or Buffer) or an http(s) URL.
fn source_arg(name: &str, v: Either<String, Buffer>) -> std::result::Result<SourceArg, Failure> {
    if let Either::A(s) = &v {
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Ok(SourceArg::Url(s.clone()));
        }
    }
    Ok(SourceArg::Path(path_arg(name, v)?))
}

enum SourceArg {
    Path(std::path::PathBuf),
    Url(String),
}

/// Open a source: a qcow2 image (its chain followed) or raw data.
fn open_source(
    src: SourceArg,
    o: &SrcOpts,
    cancel: &Cancel,
) -> std::result::Result<Box<dyn Source>, Failure> {
    let format = o.format.as_deref();
    if let Some(f) = format.filter(|f| *f != "raw" && *f != "qcow2") {
        return Err(Failure::invalid_value(format!(
            "The property 'options.format' must be one of 'raw', 'qcow2'. Received '{f}'"
        )));
    }
    match src {
        SourceArg::Url(url) => {
            let storage = HttpStorage::open(&url, &o.http, cancel.clone())
                .map_err(|e| Failure::from_core(&e))?;
            let mut magic = [0u8; 4];
            let n = storage.read_at(&mut magic, 0).unwrap_or(0);
            let qcow2 = match format {
                Some(f) => f == "qcow2",
                None => n == 4 && &magic == b"QFI\xfb",
            };
            if !qcow2 {
                return Ok(Box::new(
                    StorageSource::new(Box::new(storage)).map_err(fail)?,
                ));
            }
            let opts = OpenOptions {
                backing: BackingPolicy::None,
                ..OpenOptions::default()
            };
            let img = Image::from_storage(Box::new(storage), &opts).map_err(fail)?;
            if let Some(b) = &img.header().backing_file {
                return Err(Failure::new(
                    "ERR_SPARSEKIT_UNSUPPORTED",
                    format!(
                        "unsupported: '{url}' has a backing file ('{b}'): remote images must stand alone"
                    ),
                ));
            }
            if img.header().has_data_file() {
                return Err(Failure::new(
                    "ERR_SPARSEKIT_UNSUPPORTED",
                    format!("unsupported: '{url}' keeps its data in an external data file"),
                ));
            }
            Ok(Box::new(img))
        }
        SourceArg::Path(p) => {
            let raw = || -> std::result::Result<Box<dyn Source>, Failure> {
                Ok(Box::new(StorageSource::open(&p).map_err(fail)?))
            };
            match format {
                Some("raw") => raw(),
                Some(_) => Ok(Box::new(
                    Image::open(&p, &OpenOptions::default()).map_err(fail)?,
                )),
                None => match Image::open(&p, &OpenOptions::default()) {
                    Ok(i) => Ok(Box::new(i)),
                    Err(sparsekit_qcow2::Error::NotQcow2 { .. }) => raw(),
                    Err(e) => Err(fail(e)),
                },
            }
        }
    }
}

/// Options of `qcow2Import` and `qcow2ExportStream`.
#[napi(object)]
#[derive(Default)]
pub struct NativeQcow2ImportOptions {
    /// `zlib`, `zstd` or `none` (default).
    pub compress: Option<String>,
    pub cluster_size: Option<f64>,
    /// `0.10` or `1.1` (default).
    pub compat: Option<String>,
    pub extended_l2: Option<bool>,
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
    /// Threads compressing (0 or absent: one per core).
    pub threads: Option<u32>,
    /// Leave out clusters entirely in free file-system space (sparsekit_layout).
    pub trim: Option<bool>,
    pub source: Option<NativeQcow2SourceOptions>,
}

fn import_opts(o: &NativeQcow2ImportOptions) -> std::result::Result<ImportOptions, Failure> {
    let compression = match o.compress.as_deref() {
        None | Some("none") => None,
        Some("zlib") => Some(CompressionType::Zlib),
        Some("zstd") => Some(CompressionType::Zstd),
        Some(v) => {
            return Err(Failure::invalid_value(format!(
            "The property 'options.compress' must be one of 'zlib', 'zstd', false. Received '{v}'"
        )))
        }
    };
    let compat_v2 = match o.compat.as_deref() {
        None | Some("1.1") => false,
        Some("0.10") => true,
        Some(v) => {
            return Err(Failure::invalid_value(format!(
                "The property 'options.compat' must be one of '0.10', '1.1'. Received '{v}'"
            )))
        }
    };
    let backing = match (&o.backing_file, &o.backing_format) {
        (Some(f), Some(fmt)) => Some(BackingFile {
            file: f.clone(),
            format: fmt.clone(),
        }),
        (None, None) => None,
        _ => {
            return Err(Failure::invalid_value(
                "The property 'options.backing' must have both 'file' and 'format'".to_string(),
            ))
        }
    };
    Ok(ImportOptions {
        cluster_size: match o.cluster_size {
            Some(c) => to_u64("options.clusterSize", c)?,
            None => 65536,
        },
        compat_v2,
        extended_l2: o.extended_l2.unwrap_or(false),
        compression,
        backing,
        threads: o.threads.unwrap_or(0) as usize,
        in_use: None,
    })
}

/// A guest disk as a read-only [`Storage`], for the layout crate to read its file systems.
struct Guest<'a>(&'a dyn Source);

impl Storage for Guest<'_> {
    fn size(&self) -> std::result::Result<u64, IoError> {
        Ok(self.0.size())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::result::Result<usize, IoError> {
        let n = (buf.len() as u64).min(self.0.size().saturating_sub(offset)) as usize;
        if n == 0 {
            return Ok(0);
        }
        self.0
            .read_exact_at(&mut buf[..n], offset)
            .map_err(|e| match e {
                sparsekit_qcow2::Error::Io(io) => io,
                e => IoError::new("read", std::io::Error::other(e.to_string())).at(offset),
            })?;
        Ok(n)
    }
    fn write_at(&self, _: &[u8], offset: u64) -> std::result::Result<usize, IoError> {
        Err(IoError::from_errno("write", sparsekit_io::errno::EROFS).at(offset))
    }
    fn flush(&self) -> std::result::Result<(), IoError> {
        Ok(())
    }
    fn path(&self) -> Option<&Path> {
        self.0.path()
    }
}

/// With `trim`, the byte ranges of `src` its file systems use (the rest is provably free).
fn trim_ranges(
    trim: bool,
    src: &dyn Source,
    ctl: &mut sparsekit_io::Control,
) -> std::result::Result<Option<Vec<(u64, u64)>>, Failure> {
    if !trim {
        return Ok(None);
    }
    let l = sparsekit_layout::layout(&Guest(src), ctl).map_err(|e| Failure::from_core(&e))?;
    Ok(Some(l.used.iter().map(|r| (r.offset, r.length)).collect()))
}

#[napi(object)]
pub struct NativeQcow2ImportResult {
    pub size: f64,
    pub file_size: f64,
    pub data_clusters: f64,
    pub compressed_clusters: f64,
    pub zero_clusters: f64,
}

/// Write the image of a source (path or URL; raw or qcow2) to a new qcow2 file at `dst`.
#[napi(ts_return_type = "Promise<NativeQcow2ImportResult>")]
pub fn qcow2_import<'env>(
    env: &'env Env,
    source: Either<String, Buffer>,
    dst: Either<String, Buffer>,
    options: Option<NativeQcow2ImportOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let src = source_arg("source", source);
    let dst = path_arg("dst", dst);
    let mut o = options.unwrap_or_default();
    let so = src_opts(o.source.take());
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let mut opts = import_opts(&o)?;
            let (src, dst) = (src?, dst?);
            let s = open_source(src, &so, ctl.cancel())?;
            opts.in_use = trim_ranges(o.trim.unwrap_or(false), &*s, ctl)?;
            let r = sparsekit_qcow2::import_image(&*s, &dst, &opts, ctl).map_err(fail)?;
            Ok(NativeQcow2ImportResult {
                size: to_f64("size", r.size)?,
                file_size: to_f64("fileSize", r.file_size)?,
                data_clusters: r.data_clusters as f64,
                compressed_clusters: r.compressed_clusters as f64,
                zero_clusters: r.zero_clusters as f64,
            })
        },
        |env, v| unsafe { NativeQcow2ImportResult::to_napi_value(env.raw(), v) },
    )
}

/// An uncompressed qcow2 image produced in file order; its length known up front.
#[napi]
pub struct Qcow2ExportStream {
    stream: Arc<Mutex<ExportStream>>,
    len: u64,
}

#[napi]
impl Qcow2ExportStream {
    /// Bytes the stream produces in all.
    #[napi(getter)]
    pub fn length(&self) -> f64 {
        self.len as f64
    }

    /// The next chunk (at most 4 MiB), or `null` at the end.
    #[napi(ts_return_type = "Promise<Buffer | null>")]
    pub fn next<'env>(&self, env: &'env Env, cancel: Option<&CancelToken>) -> Result<Object<'env>> {
        let s = self.stream.clone();
        spawn(
            env,
            cancel,
            None,
            move |_| {
                let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
                s.next_chunk().map_err(fail)
            },
            |env, b| match b {
                Some(b) => Ok(BufferSlice::copy_from(env, &b)?.raw()),
                None => unsafe { Null::to_napi_value(env.raw(), Null) },
            },
        )
    }
}

/// Map and scan a source, then give its uncompressed qcow2 image as a stream.
#[napi(ts_return_type = "Promise<Qcow2ExportStream>")]
pub fn qcow2_export_stream<'env>(
    env: &'env Env,
    source: Either<String, Buffer>,
    options: Option<NativeQcow2ImportOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let src = source_arg("source", source);
    let mut o = options.unwrap_or_default();
    let so = src_opts(o.source.take());
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let mut opts = import_opts(&o)?;
            let s = open_source(src?, &so, ctl.cancel())?;
            opts.in_use = trim_ranges(o.trim.unwrap_or(false), &*s, ctl)?;
            // A backing file name is taken relative to the current folder (there is no
            // image folder for a stream).
            let backing = match &opts.backing {
                Some(b) => Some(sparsekit_qcow2::open_backing(Path::new(""), b).map_err(fail)?),
                None => None,
            };
            let stream =
                sparsekit_qcow2::export_stream(s, backing.as_deref(), &opts, ctl).map_err(fail)?;
            let len = stream.len();
            to_f64("length", len)?;
            Ok(Qcow2ExportStream {
                stream: Arc::new(Mutex::new(stream)),
                len,
            })
        },
        |env, r| unsafe { Qcow2ExportStream::to_napi_value(env.raw(), r) },
    )
}

#[napi(object)]
#[derive(Default)]
pub struct NativeQcow2MeasureOptions {
    pub cluster_size: Option<f64>,
    pub compat: Option<String>,
    pub extended_l2: Option<bool>,
    /// The image will have a backing file.
    pub backing: Option<bool>,
    pub source: Option<NativeQcow2SourceOptions>,
}

#[napi(object)]
pub struct NativeQcow2Measure {
    pub required: f64,
    pub fully_allocated: f64,
    pub bitmaps: Option<f64>,
}

/// `qemu-img measure -O qcow2` of a source.
#[napi(ts_return_type = "Promise<NativeQcow2Measure>")]
pub fn qcow2_measure<'env>(
    env: &'env Env,
    source: Either<String, Buffer>,
    options: Option<NativeQcow2MeasureOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let src = source_arg("source", source);
    let mut o = options.unwrap_or_default();
    let so = src_opts(o.source.take());
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let compat_v2 = match o.compat.as_deref() {
                None | Some("1.1") => false,
                Some("0.10") => true,
                Some(v) => {
                    return Err(Failure::invalid_value(format!(
                        "The property 'options.compat' must be one of '0.10', '1.1'. Received '{v}'"
                    )))
                }
            };
            let mo = MeasureOptions {
                cluster_size: match o.cluster_size {
                    Some(c) => to_u64("options.clusterSize", c)?,
                    None => 65536,
                },
                compat_v2,
                extended_l2: o.extended_l2.unwrap_or(false),
                backing: o.backing.unwrap_or(false),
            };
            let s = open_source(src?, &so, ctl.cancel())?;
            let m = sparsekit_qcow2::measure(&*s, &mo, ctl).map_err(fail)?;
            Ok(NativeQcow2Measure {
                required: to_f64("required", m.required)?,
                fully_allocated: to_f64("fully-allocated", m.fully_allocated)?,
                bitmaps: m.bitmaps.map(|b| b as f64),
            })
        },
        |env, v| unsafe { NativeQcow2Measure::to_napi_value(env.raw(), v) },
    )
}

#[napi(object)]
#[derive(Default)]
pub struct NativeQcow2CompareOptions {
    pub strict: Option<bool>,
    pub source_a: Option<NativeQcow2SourceOptions>,
    pub source_b: Option<NativeQcow2SourceOptions>,
}

#[napi(object)]
pub struct NativeQcow2Compare {
    /// `identical`, `content`, `size` (strict) or `status` (strict).
    pub result: String,
    pub offset: Option<f64>,
    pub size_mismatch: bool,
    /// What `qemu-img compare` prints.
    pub message: String,
}

/// `qemu-img compare [-s] A B`.
#[napi(ts_return_type = "Promise<NativeQcow2Compare>")]
pub fn qcow2_compare<'env>(
    env: &'env Env,
    a: Either<String, Buffer>,
    b: Either<String, Buffer>,
    options: Option<NativeQcow2CompareOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let a = source_arg("a", a);
    let b = source_arg("b", b);
    let mut o = options.unwrap_or_default();
    let (soa, sob) = (src_opts(o.source_a.take()), src_opts(o.source_b.take()));
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let sa = open_source(a?, &soa, ctl.cancel())?;
            let sb = open_source(b?, &sob, ctl.cancel())?;
            let c = sparsekit_qcow2::compare(&*sa, &*sb, o.strict.unwrap_or(false), ctl)
                .map_err(fail)?;
            use sparsekit_qcow2::Comparison as C;
            let (result, size_mismatch) = match c {
                C::Identical { size_mismatch } => ("identical", size_mismatch),
                C::ContentMismatch { size_mismatch, .. } => ("content", size_mismatch),
                C::SizeMismatch => ("size", true),
                C::StatusMismatch { .. } => ("status", false),
            };
            Ok(NativeQcow2Compare {
                result: result.into(),
                offset: c.offset().map(|o| o as f64),
                size_mismatch,
                message: c.message(),
            })
        },
        |env, v| unsafe { NativeQcow2Compare::to_napi_value(env.raw(), v) },
    )
}
