use std::path::PathBuf;

use napi::bindgen_prelude::*;
use sparsekit_digest::{digest_file, Algorithm, DigestOptions};

use crate::error::Failure;
use crate::job::{opt_u64, CancelToken, Control, Job, ProgressFn};

#[napi(object)]
#[derive(Default)]
pub struct NativeDigestOptions {
    /// `sha256` (default), `sha1`, `sha3-512` or `blake3`.
    pub algorithm: Option<String>,
    pub start: Option<f64>,
    pub length: Option<f64>,
}

#[napi(object)]
pub struct NativeDigest {
    /// Lowercase hex.
    pub digest: String,
    /// Bytes hashed (the window's length).
    pub bytes: f64,
}

/// Hash `[start, start + length)` of a file.
#[napi(ts_return_type = "Promise<NativeDigest>")]
pub fn digest(
    path: String,
    options: Option<NativeDigestOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(bytesDone: number, bytesTotal: number) => void")] on_progress: Option<
        ProgressFn,
    >,
) -> AsyncTask<Job<NativeDigest>> {
    let control = Control::new(cancel, on_progress);
    Job::new(control, move |control| {
        let o = options.unwrap_or_default();
        let algorithm = match o.algorithm.as_deref() {
            None => Algorithm::Sha256,
            Some(a @ ("sha256" | "sha1" | "sha3-512" | "blake3")) => a.parse().expect("listed names parse"),
            Some(other) => {
                return Err(Failure::invalid_value(format!(
                    "The property 'options.algorithm' must be one of 'sha256', 'sha3-512', 'blake3', 'sha1'. Received '{other}'"
                )))
            }
        };
        let opts = DigestOptions {
            algorithm,
            start: opt_u64("options.start", o.start)?.unwrap_or(0),
            length: opt_u64("options.length", o.length)?,
        };
        let mut bytes = 0;
        let digest = digest_file(&PathBuf::from(path), &opts, &mut |d, t| {
            bytes = t;
            control.tick(d, t)
        })
        .map_err(|e| Failure::from_core(&e))?;
        Ok(NativeDigest {
            digest,
            bytes: bytes as f64,
        })
    })
}

/// Test-only: a job that panics on the worker thread, proving panics become rejections.
#[napi(ts_return_type = "Promise<string>")]
pub fn test_panic(message: String) -> AsyncTask<Job<String>> {
    Job::new(Control::new(None, None), move |_| panic!("{message}"))
}

/// Test-only: a synchronous export that panics, proving sync panics become thrown errors.
#[napi]
pub fn test_panic_sync(env: Env, message: String) -> Result<String> {
    crate::job::sync_call(&env, move || panic!("{message}"))
}
