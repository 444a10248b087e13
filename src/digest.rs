use napi::bindgen_prelude::*;
use sparsekit_digest::{digest_file, Algorithm, DigestOptions};

use crate::error::Failure;
use crate::job::{opt_u64, parse_opt, path_arg, spawn, CancelToken, ProgressFn};

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
}

/// Hash `[start, start + length)` of a file.
#[napi(ts_return_type = "Promise<NativeDigest>")]
pub fn digest<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    options: Option<NativeDigestOptions>,
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
            let path = path?;
            let o = options.unwrap_or_default();
            let algorithm = parse_opt::<Algorithm>(
                "options.algorithm",
                o.algorithm,
                &["sha256", "sha3-512", "blake3", "sha1"],
            )?
            .unwrap_or(Algorithm::Sha256);
            let opts = DigestOptions {
                algorithm,
                start: opt_u64("options.start", o.start)?.unwrap_or(0),
                length: opt_u64("options.length", o.length)?,
            };
            let digest = digest_file(&path, &opts, ctl).map_err(|e| Failure::from_core(&e))?;
            Ok(NativeDigest { digest })
        },
        |env, v| unsafe { NativeDigest::to_napi_value(env.raw(), v) },
    )
}

/// Test-only (feature `test-exports`): a job that panics on its thread, proving panics
/// become rejections.
#[cfg(feature = "test-exports")]
#[napi(skip_typescript)]
pub fn test_panic<'env>(env: &'env Env, message: String) -> Result<Object<'env>> {
    spawn(
        env,
        None,
        None,
        move |_| -> std::result::Result<String, Failure> { panic!("{message}") },
        |env, v| unsafe { String::to_napi_value(env.raw(), v) },
    )
}

/// Test-only (feature `test-exports`): a synchronous export that panics, proving sync
/// panics become thrown errors.
#[cfg(feature = "test-exports")]
#[napi(skip_typescript)]
pub fn test_panic_sync(env: Env, message: String) -> Result<String> {
    crate::job::sync_call(&env, move || panic!("{message}"))
}
