//! qcow2 glue: info, map, allocation, check, convert and a guest-byte reader over
//! sparsekit-qcow2. Arguments in, core call on a job thread, results and errors out.

// The shared `Failure` is large; boxing it is the lead's call for every glue file.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use sparsekit_qcow2::{convert, BackingPolicy, ConvertOptions, Image, Info, OpenOptions};

use crate::error::Failure;
use crate::job::{opt_u64, path_arg, spawn, to_f64, to_u64, CancelToken, ProgressFn};

#[napi(object)]
#[derive(Default)]
pub struct NativeQcow2Options {
    /// `follow` (default) or `none`.
    pub backing: Option<String>,
    /// convert: write zeros where the guest reads zeros (block devices).
    pub zero_holes: Option<bool>,
}

fn open_opts(o: &NativeQcow2Options) -> std::result::Result<OpenOptions, Failure> {
    let backing = match o.backing.as_deref() {
        None | Some("follow") => BackingPolicy::Follow,
        Some("none") => BackingPolicy::None,
        Some(v) => {
            return Err(Failure::invalid_value(format!(
                "The property 'options.backing' must be one of 'follow', 'none'. Received '{v}'"
            )))
        }
    };
    Ok(OpenOptions {
        backing,
        ..OpenOptions::default()
    })
}

fn open(path: &Path, o: &NativeQcow2Options) -> std::result::Result<Image, Failure> {
    Image::open(path, &open_opts(o)?).map_err(|e| Failure::from_core(&e))
}

#[napi(object)]
pub struct NativeQcow2Bitmap {
    pub name: String,
    pub granularity: f64,
    pub flags: Vec<String>,
}

#[napi(object)]
pub struct NativeQcow2Snapshot {
    pub id: String,
    pub name: String,
    pub date_sec: f64,
    pub date_nsec: f64,
    pub vm_clock_nsec: f64,
    pub vm_state_size: f64,
    pub icount: Option<f64>,
}

#[napi(object)]
pub struct NativeQcow2Info {
    pub filename: String,
    pub format: String,
    pub virtual_size: f64,
    pub cluster_size: Option<f64>,
    pub actual_size: Option<f64>,
    /// The image file's size (qemu's `file` child node's `virtual-size`).
    pub file_size: f64,
    /// The image is on a block device (qemu's `host_device` node).
    pub block_device: bool,
    pub dirty_flag: bool,
    pub encrypted: bool,
    pub backing_filename: Option<String>,
    pub full_backing_filename: Option<String>,
    pub backing_filename_format: Option<String>,
    pub snapshots: Vec<NativeQcow2Snapshot>,
    pub compat: Option<String>,
    pub compression_type: Option<String>,
    pub lazy_refcounts: Option<bool>,
    pub refcount_bits: Option<u32>,
    pub corrupt: Option<bool>,
    pub extended_l2: Option<bool>,
    pub data_file: Option<String>,
    pub data_file_raw: Option<bool>,
    pub encrypt_format: Option<String>,
    pub bitmaps: Option<Vec<NativeQcow2Bitmap>>,
}

fn info_to_native(i: Info) -> std::result::Result<NativeQcow2Info, Failure> {
    let fs = i.format_specific;
    Ok(NativeQcow2Info {
        filename: i.filename,
        format: i.format.to_string(),
        virtual_size: to_f64("virtual-size", i.virtual_size)?,
        cluster_size: i.cluster_size.map(|c| c as f64),
        actual_size: i.actual_size.map(|a| a as f64),
        file_size: i.file_size as f64,
        block_device: i.block_device,
        dirty_flag: i.dirty_flag,
        encrypted: i.encrypted,
        backing_filename: i.backing_filename,
        full_backing_filename: i.full_backing_filename,
        backing_filename_format: i.backing_filename_format,
        snapshots: i
            .snapshots
            .into_iter()
            .map(|s| NativeQcow2Snapshot {
                id: s.id,
                name: s.name,
                date_sec: f64::from(s.date_sec),
                date_nsec: f64::from(s.date_nsec),
                vm_clock_nsec: s.vm_clock_nsec as f64,
                vm_state_size: s.vm_state_size as f64,
                icount: s.icount.filter(|&c| c != u64::MAX).map(|c| c as f64),
            })
            .collect(),
        compat: fs.as_ref().map(|f| f.compat.to_string()),
        compression_type: fs.as_ref().map(|f| f.compression_type.to_string()),
        lazy_refcounts: fs.as_ref().and_then(|f| f.lazy_refcounts),
        refcount_bits: fs.as_ref().map(|f| f.refcount_bits),
        corrupt: fs.as_ref().and_then(|f| f.corrupt),
        extended_l2: fs.as_ref().and_then(|f| f.extended_l2),
        data_file: fs.as_ref().and_then(|f| f.data_file.clone()),
        data_file_raw: fs.as_ref().and_then(|f| f.data_file_raw),
        encrypt_format: fs
            .as_ref()
            .and_then(|f| f.encrypt_format)
            .map(str::to_string),
        bitmaps: fs.and_then(|f| f.bitmaps).map(|v| {
            v.into_iter()
                .map(|b| NativeQcow2Bitmap {
                    flags: b.flag_names().into_iter().map(str::to_string).collect(),
                    name: b.name,
                    granularity: b.granularity as f64,
                })
                .collect()
        }),
    })
}

/// `qemu-img info --backing-chain`: the image first, then each image below it (with
/// `backing: 'none'`, the image alone).
#[napi(ts_return_type = "Promise<NativeQcow2Info[]>")]
pub fn qcow2_info<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    options: Option<NativeQcow2Options>,
    cancel: Option<&CancelToken>,
) -> Result<Object<'env>> {
    let path = path_arg("path", path);
    spawn(
        env,
        cancel,
        None,
        move |_| {
            let img = open(&path?, &options.unwrap_or_default())?;
            let chain = img.chain_info().map_err(|e| Failure::from_core(&e))?;
            chain.into_iter().map(info_to_native).collect()
        },
        |env, v| unsafe { Vec::<NativeQcow2Info>::to_napi_value(env.raw(), v) },
    )
}

/// `qemu-img map --output=json` entries flattened as `[start, length, depth, flags,
/// offset, ...]` in one Float64Array (flags: 1 present, 2 zero, 4 data, 8 compressed;
/// offset -1 when absent); ts/ builds the objects.
#[napi(ts_return_type = "Promise<Float64Array>")]
pub fn qcow2_map<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    options: Option<NativeQcow2Options>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let path = path_arg("path", path);
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let img = open(&path?, &options.unwrap_or_default())?;
            let map = img.map(ctl).map_err(|e| Failure::from_core(&e))?;
            let mut t = Vec::with_capacity(map.len() * 5);
            for e in map {
                t.push(to_f64("start", e.start)?);
                t.push(to_f64("length", e.length)?);
                t.push(f64::from(e.depth));
                t.push(f64::from(
                    u8::from(e.present)
                        | u8::from(e.zero) << 1
                        | u8::from(e.data) << 2
                        | u8::from(e.compressed) << 3,
                ));
                t.push(match e.offset {
                    Some(o) => to_f64("offset", o)?,
                    None => -1.0,
                });
            }
            Ok(t)
        },
        |env, t| Ok(Float64ArraySlice::copy_from(env, &t)?.raw()),
    )
}

struct AllocationOut {
    cluster_size: f64,
    clusters: f64,
    allocated_clusters: f64,
    bitmap: Vec<u8>,
}

#[allow(dead_code)] // only describes the object allocation_to_js builds, for index.d.ts
#[napi(object, object_to_js = false)]
pub struct NativeQcow2Allocation {
    pub cluster_size: f64,
    pub clusters: f64,
    pub allocated_clusters: f64,
    pub bitmap: Buffer,
}

fn allocation_to_js(env: &Env, a: AllocationOut) -> Result<napi::sys::napi_value> {
    let mut obj = Object::new(env)?;
    obj.set("clusterSize", a.cluster_size)?;
    obj.set("clusters", a.clusters)?;
    obj.set("allocatedClusters", a.allocated_clusters)?;
    obj.set("bitmap", BufferSlice::copy_from(env, &a.bitmap)?)?;
    Ok(obj.raw())
}

/// Clusters this image allocates (not its backing files), one bit per guest cluster.
#[napi(ts_return_type = "Promise<NativeQcow2Allocation>")]
pub fn qcow2_allocation<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    cancel: Option<&CancelToken>,
) -> Result<Object<'env>> {
    let path = path_arg("path", path);
    spawn(
        env,
        cancel,
        None,
        move |_| {
            let o = NativeQcow2Options {
                backing: Some("none".into()),
                ..Default::default()
            };
            let img = open(&path?, &o)?;
            let a = img.allocation().map_err(|e| Failure::from_core(&e))?;
            Ok(AllocationOut {
                cluster_size: a.cluster_size as f64,
                clusters: to_f64("clusters", a.clusters)?,
                allocated_clusters: a.allocated_clusters as f64,
                bitmap: a.bitmap,
            })
        },
        allocation_to_js,
    )
}

#[napi(object)]
pub struct NativeQcow2Check {
    pub corruptions: f64,
    pub leaks: f64,
    pub check_errors: f64,
    pub image_end_offset: f64,
    pub total_clusters: f64,
    pub allocated_clusters: f64,
    pub fragmented_clusters: f64,
    pub compressed_clusters: f64,
}

/// Read-only consistency check, counted as `qemu-img check` counts.
#[napi(ts_return_type = "Promise<NativeQcow2Check>")]
pub fn qcow2_check<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let path = path_arg("path", path);
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let o = NativeQcow2Options {
                backing: Some("none".into()),
                ..Default::default()
            };
            let img = open(&path?, &o)?;
            let r = img.check(ctl).map_err(|e| Failure::from_core(&e))?;
            Ok(NativeQcow2Check {
                corruptions: r.corruptions as f64,
                leaks: r.leaks as f64,
                check_errors: r.check_errors as f64,
                image_end_offset: to_f64("image-end-offset", r.image_end_offset)?,
                total_clusters: r.total_clusters as f64,
                allocated_clusters: r.allocated_clusters as f64,
                fragmented_clusters: r.fragmented_clusters as f64,
                compressed_clusters: r.compressed_clusters as f64,
            })
        },
        |env, v| unsafe { NativeQcow2Check::to_napi_value(env.raw(), v) },
    )
}

#[napi(object)]
pub struct NativeQcow2Convert {
    pub bytes_written: f64,
    pub size: f64,
}

/// Convert to a sparse raw file (created or replaced) or into a block device.
#[napi(ts_return_type = "Promise<NativeQcow2Convert>")]
pub fn qcow2_convert<'env>(
    env: &'env Env,
    src: Either<String, Buffer>,
    dst: Either<String, Buffer>,
    options: Option<NativeQcow2Options>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let paths = path_arg("src", src).and_then(|s| Ok((s, path_arg("dst", dst)?)));
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let (src, dst) = paths?;
            let o = options.unwrap_or_default();
            let img = open(&src, &o)?;
            to_f64("size", img.size())?;
            let opts = ConvertOptions {
                zero_holes: o.zero_holes.unwrap_or(false),
            };
            let r = convert(&img, &dst, &opts, ctl).map_err(|e| Failure::from_core(&e))?;
            Ok(NativeQcow2Convert {
                bytes_written: r.bytes_written as f64,
                size: r.size as f64,
            })
        },
        |env, v| unsafe { NativeQcow2Convert::to_napi_value(env.raw(), v) },
    )
}

/// An open image whose guest bytes are read in windows (for `createReadStream`).
#[napi]
pub struct Qcow2Reader {
    img: Arc<Image>,
}

#[napi]
impl Qcow2Reader {
    /// The virtual size.
    #[napi(getter)]
    pub fn size(&self) -> f64 {
        self.img.size() as f64
    }

    /// Guest bytes `[start, start + length)`, copied into a new Buffer.
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn read<'env>(
        &self,
        env: &'env Env,
        start: f64,
        length: f64,
        cancel: Option<&CancelToken>,
    ) -> Result<Object<'env>> {
        let img = self.img.clone();
        spawn(
            env,
            cancel,
            None,
            move |_| {
                let start = to_u64("start", start)?;
                let length = to_u64("length", length)?.min(16 << 20);
                let mut b = vec![0u8; length as usize];
                img.read_at(&mut b, start)
                    .map_err(|e| Failure::from_core(&e))?;
                Ok(b)
            },
            |env, b| Ok(BufferSlice::copy_from(env, &b)?.raw()),
        )
    }
}

/// Open an image (and its chain) for reading guest bytes.
#[napi(ts_return_type = "Promise<Qcow2Reader>")]
pub fn qcow2_open_reader<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    options: Option<NativeQcow2Options>,
    cancel: Option<&CancelToken>,
) -> Result<Object<'env>> {
    let path = path_arg("path", path);
    spawn(
        env,
        cancel,
        None,
        move |_| {
            let img = open(&path?, &options.unwrap_or_default())?;
            to_f64("size", img.size())?;
            Ok(Qcow2Reader { img: Arc::new(img) })
        },
        |env, r| unsafe { Qcow2Reader::to_napi_value(env.raw(), r) },
    )
}

// ---- Editing (issue 10): every call takes qemu's write lock unless `force`. ----

#[napi(object)]
#[derive(Default)]
pub struct NativeQcow2EditOptions {
    /// Edit even when a running qemu holds the image (dangerous).
    pub force: Option<bool>,
}

fn edit_opts(o: Option<NativeQcow2EditOptions>) -> sparsekit_qcow2::EditOptions {
    sparsekit_qcow2::EditOptions {
        force: o.and_then(|o| o.force).unwrap_or(false),
    }
}

fn core<T>(r: sparsekit_qcow2::Result<T>) -> std::result::Result<T, Failure> {
    r.map_err(|e| Failure::from_core(&e))
}

fn unit(env: &Env, _: ()) -> Result<napi::sys::napi_value> {
    unsafe { <()>::to_napi_value(env.raw(), ()) }
}

/// Add or replace (`data`) or remove (`null`) header extension `kind`.
#[napi(ts_return_type = "Promise<void>")]
pub fn qcow2_set_extension<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    kind: u32,
    data: Option<Buffer>,
    options: Option<NativeQcow2EditOptions>,
) -> Result<Object<'env>> {
    let path = path_arg("path", path);
    let data = data.map(|b| b.to_vec());
    spawn(
        env,
        None,
        None,
        move |_| {
            core(sparsekit_qcow2::set_extension(
                &path?,
                kind,
                data.as_deref(),
                &edit_opts(options),
            ))
        },
        unit,
    )
}

/// The data of header extension `kind`, or null.
#[napi(ts_return_type = "Promise<Buffer | null>")]
pub fn qcow2_get_extension<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    kind: u32,
) -> Result<Object<'env>> {
    let path = path_arg("path", path);
    spawn(
        env,
        None,
        None,
        move |_| core(sparsekit_qcow2::get_extension(&path?, kind)),
        |env, v| match v {
            Some(b) => Ok(BufferSlice::copy_from(env, &b)?.raw()),
            None => unsafe { Null::to_napi_value(env.raw(), Null) },
        },
    )
}

/// `qemu-img rebase -u`: a new backing file name and format (`null`: none).
#[napi(ts_return_type = "Promise<void>")]
pub fn qcow2_set_backing<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    name: Option<String>,
    format: Option<String>,
    options: Option<NativeQcow2EditOptions>,
) -> Result<Object<'env>> {
    let path = path_arg("path", path);
    spawn(
        env,
        None,
        None,
        move |_| {
            core(sparsekit_qcow2::set_backing(
                &path?,
                name.as_deref(),
                format.as_deref(),
                &edit_opts(options),
            ))
        },
        unit,
    )
}

/// A new virtual size.
#[napi(ts_return_type = "Promise<void>")]
pub fn qcow2_resize<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    size: f64,
    options: Option<NativeQcow2EditOptions>,
) -> Result<Object<'env>> {
    let path = path_arg("path", path);
    spawn(
        env,
        None,
        None,
        move |_| {
            core(sparsekit_qcow2::resize(
                &path?,
                to_u64("size", size)?,
                &edit_opts(options),
            ))
        },
        unit,
    )
}

/// Every guest cluster unallocated, the space returned.
#[napi(ts_return_type = "Promise<void>")]
pub fn qcow2_discard_all<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    options: Option<NativeQcow2EditOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let path = path_arg("path", path);
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            core(sparsekit_qcow2::discard_all(
                &path?,
                &edit_opts(options),
                ctl,
            ))
        },
        unit,
    )
}

#[napi(object)]
pub struct NativeQcow2CreateOptions {
    pub size: f64,
    pub cluster_size: Option<f64>,
    pub backing: Option<String>,
    pub backing_format: Option<String>,
    /// `0.10` or `1.1`.
    pub compat: Option<String>,
    pub extended_l2: Option<bool>,
    pub lazy_refcounts: Option<bool>,
    /// `off` or `metadata`.
    pub preallocation: Option<String>,
    pub force: Option<bool>,
}

/// A new image, as `qemu-img create -f qcow2` makes it.
#[napi(ts_return_type = "Promise<void>")]
pub fn qcow2_create<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    options: NativeQcow2CreateOptions,
) -> Result<Object<'env>> {
    let path = path_arg("path", path);
    spawn(
        env,
        None,
        None,
        move |_| {
            let o = options;
            let compat_v2 = match o.compat.as_deref() {
                None | Some("1.1") | Some("v3") => false,
                Some("0.10") | Some("v2") => true,
                Some(v) => {
                    return Err(Failure::invalid_value(format!(
                        "The property 'options.compat' must be one of '0.10', '1.1'. Received '{v}'"
                    )))
                }
            };
            let preallocation = match o.preallocation.as_deref() {
                None | Some("off") => sparsekit_qcow2::Preallocation::Off,
                Some("metadata") => sparsekit_qcow2::Preallocation::Metadata,
                Some(v) => {
                    return Err(Failure::invalid_value(format!(
                        "The property 'options.preallocation' must be one of 'off', 'metadata'. Received '{v}'"
                    )))
                }
            };
            let co = sparsekit_qcow2::CreateOptions {
                size: to_u64("options.size", o.size)?,
                cluster_size: opt_u64("options.clusterSize", o.cluster_size)?.unwrap_or(65536),
                backing: o.backing,
                backing_format: o.backing_format,
                compat_v2,
                extended_l2: o.extended_l2.unwrap_or(false),
                lazy_refcounts: o.lazy_refcounts.unwrap_or(false),
                preallocation,
            };
            let eo = sparsekit_qcow2::EditOptions {
                force: o.force.unwrap_or(false),
            };
            core(sparsekit_qcow2::create(&path?, &co, &eo))
        },
        unit,
    )
}

/// A new overlay on `base`.
#[napi(ts_return_type = "Promise<void>")]
pub fn qcow2_snapshot<'env>(
    env: &'env Env,
    base: Either<String, Buffer>,
    overlay: Either<String, Buffer>,
    options: Option<NativeQcow2EditOptions>,
) -> Result<Object<'env>> {
    let paths = path_arg("base", base).and_then(|b| Ok((b, path_arg("overlay", overlay)?)));
    spawn(
        env,
        None,
        None,
        move |_| {
            let (b, o) = paths?;
            core(sparsekit_qcow2::snapshot(&b, &o, &edit_opts(options)))
        },
        unit,
    )
}

#[napi(object)]
pub struct NativeQcow2Commit {
    pub bytes: f64,
}

/// `qemu-img commit`: the overlay's clusters into its backing image, then the overlay
/// emptied.
#[napi(ts_return_type = "Promise<NativeQcow2Commit>")]
pub fn qcow2_commit<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    options: Option<NativeQcow2EditOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let path = path_arg("path", path);
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let r = core(sparsekit_qcow2::commit(&path?, &edit_opts(options), ctl))?;
            Ok(NativeQcow2Commit {
                bytes: r.bytes as f64,
            })
        },
        |env, v| unsafe { NativeQcow2Commit::to_napi_value(env.raw(), v) },
    )
}

/// Fix leaked clusters only; resolves with how many.
#[napi(ts_return_type = "Promise<number>")]
pub fn qcow2_repair<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    options: Option<NativeQcow2EditOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let path = path_arg("path", path);
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let n = core(sparsekit_qcow2::repair(&path?, &edit_opts(options), ctl))?;
            Ok(n as f64)
        },
        |env, v| unsafe { f64::to_napi_value(env.raw(), v) },
    )
}
