use std::path::PathBuf;

use napi::bindgen_prelude::*;
use sparsekit_sparse_copy::{copy as sparse_copy, CopyMethod, CopyOptions};

use crate::error::Failure;
use crate::job::{opt_u64, to_f64, CancelToken, Control, Job, ProgressFn};

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
}

#[napi(object)]
pub struct NativeCopyResult {
    pub bytes_copied: f64,
    pub size: f64,
    pub method: String,
    pub bytes_zeroed: f64,
    /// Bytes in the window (data and holes): the progress total.
    pub bytes_total: f64,
}

/// Sparse copy with dd-style skip/seek/length in bytes.
#[napi(ts_return_type = "Promise<NativeCopyResult>")]
pub fn copy(
    src: String,
    dst: String,
    options: Option<NativeCopyOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(bytesDone: number, bytesTotal: number) => void")] on_progress: Option<
        ProgressFn,
    >,
) -> AsyncTask<Job<NativeCopyResult>> {
    Job::new(Control::new(cancel, on_progress), move |control| {
        let o = options.unwrap_or_default();
        let method = match o.method.as_deref() {
            None => CopyMethod::Auto,
            Some(m) => m
                .parse()
                .map_err(|e: sparsekit_sparse_copy::Error| Failure::from_core(&e))?,
        };
        let opts = CopyOptions {
            skip: opt_u64("options.skip", o.skip)?.unwrap_or(0),
            seek: opt_u64("options.seek", o.seek)?.unwrap_or(0),
            length: opt_u64("options.length", o.length)?,
            method,
            truncate: o.truncate.unwrap_or(true),
            zero_holes: o.zero_holes.unwrap_or(false),
        };
        let mut total = 0;
        let r = sparse_copy(
            &PathBuf::from(src),
            &PathBuf::from(dst),
            &opts,
            &mut |d, t| {
                total = t;
                control.tick(d, t)
            },
        )
        .map_err(|e| Failure::from_core(&e))?;
        Ok(NativeCopyResult {
            bytes_copied: to_f64("bytesCopied", r.bytes_copied)?,
            size: to_f64("size", r.size)?,
            method: r.method.name().to_string(),
            bytes_zeroed: to_f64("bytesZeroed", r.bytes_zeroed)?,
            bytes_total: to_f64("bytesTotal", total)?,
        })
    })
}
