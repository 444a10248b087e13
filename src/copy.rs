use napi::bindgen_prelude::*;
use sparsekit_sparse_copy::{copy as sparse_copy, CopyMethod, CopyOptions};

use crate::error::Failure;
use crate::job::{opt_u64, parse_opt, path_arg, spawn, to_f64, CancelToken, ProgressFn, MAX_SAFE};

#[napi(object)]
#[derive(Default)]
pub struct NativeCopyOptions {
    pub skip: Option<f64>,
    pub seek: Option<f64>,
    pub length: Option<f64>,
    /// `auto` (default), `reflink`, `copy_file_range`, `sendfile` or `readwrite`.
    pub method: Option<String>,
    /// Default true: the destination ends at `seek + copied` (dd); false: never shortened
    /// (dd conv=notrunc).
    pub truncate: Option<bool>,
    /// Write zeros over source holes (default: holes are holes; on a block device, skipped).
    pub zero_holes: Option<bool>,
    /// fsync a regular-file destination at the end (block devices always are).
    pub fsync: Option<bool>,
    /// Write a temporary file and rename it over the destination only on success.
    pub atomic: Option<bool>,
}

#[napi(object)]
pub struct NativeCopyResult {
    pub bytes_copied: f64,
    pub size: f64,
    pub method: String,
    pub bytes_zeroed: f64,
    /// Bytes in the window (data and holes).
    pub bytes_total: f64,
}

/// Sparse copy with dd-style skip/seek/length in bytes.
#[napi(ts_return_type = "Promise<NativeCopyResult>")]
pub fn copy<'env>(
    env: &'env Env,
    src: Either<String, Buffer>,
    dst: Either<String, Buffer>,
    options: Option<NativeCopyOptions>,
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
            let method = parse_opt::<CopyMethod>(
                "options.method",
                o.method,
                &[
                    "auto",
                    "reflink",
                    "copy_file_range",
                    "sendfile",
                    "readwrite",
                ],
            )?
            .unwrap_or_default();
            let opts = CopyOptions {
                skip: opt_u64("options.skip", o.skip)?.unwrap_or(0),
                seek: opt_u64("options.seek", o.seek)?.unwrap_or(0),
                length: opt_u64("options.length", o.length)?,
                method,
                truncate: o.truncate.unwrap_or(true),
                zero_holes: o.zero_holes.unwrap_or(false),
                fsync: o.fsync.unwrap_or(false),
                atomic: o.atomic.unwrap_or(false),
                // Results are JS numbers: refuse, before writing, a copy ending past 2^53.
                max_end: MAX_SAFE,
            };
            let r = sparse_copy(&src, &dst, &opts, ctl).map_err(|e| Failure::from_core(&e))?;
            Ok(NativeCopyResult {
                bytes_copied: to_f64("bytesCopied", r.bytes_copied)?,
                size: to_f64("size", r.size)?,
                method: r.method.name().to_string(),
                bytes_zeroed: to_f64("bytesZeroed", r.bytes_zeroed)?,
                bytes_total: to_f64("bytesTotal", r.bytes_total)?,
            })
        },
        |env, v| unsafe { NativeCopyResult::to_napi_value(env.raw(), v) },
    )
}
