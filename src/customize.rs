use napi::bindgen_prelude::*;
use sparsekit_customize::{customize_disk, hash_password as crypt, Customization};
use sparsekit_io::FileStorage;

use crate::error::Failure;
use crate::job::{path_arg, spawn, sync_call, to_f64, CancelToken};

/// One file to write (`data`) or delete (no `data`).
#[napi(object)]
pub struct NativeCustomizeFile {
    pub path: String,
    pub data: Option<Buffer>,
}

/// Text to append once to a file.
#[napi(object)]
pub struct NativeCustomizeAppend {
    pub path: String,
    pub text: String,
}

#[napi(object)]
#[derive(Default)]
pub struct NativeCustomizeOptions {
    /// The partition's number; default: the first FAT partition.
    pub partition: Option<u32>,
    pub files: Option<Vec<NativeCustomizeFile>>,
    pub append: Option<Vec<NativeCustomizeAppend>>,
}

/// What `customize` resolves to.
#[napi(object)]
pub struct NativeCustomized {
    pub partition_start: f64,
    pub partition_length: f64,
    pub written: Vec<String>,
    pub deleted: Vec<String>,
    pub appended: Vec<String>,
    pub already: Vec<String>,
}

fn customized_to_js(env: &Env, c: NativeCustomized) -> Result<napi::sys::napi_value> {
    // SAFETY: called on the main thread with its env, as napi-rs's own conversions are.
    unsafe { NativeCustomized::to_napi_value(env.raw(), c) }
}

/// Write, delete and append files in the FAT partition of an image or drive (first-boot
/// customisation), then read them back.
#[napi(ts_return_type = "Promise<NativeCustomized>")]
pub fn customize<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    options: Option<NativeCustomizeOptions>,
    cancel: Option<&CancelToken>,
) -> Result<Object<'env>> {
    let path = path_arg("path", path);
    let o = options.unwrap_or_default();
    let c = Customization {
        files: o
            .files
            .unwrap_or_default()
            .into_iter()
            .map(|f| (f.path, f.data.map(|d| d.to_vec())))
            .collect(),
        append: o
            .append
            .unwrap_or_default()
            .into_iter()
            .map(|a| (a.path, a.text))
            .collect(),
    };
    let partition = o.partition;
    spawn(
        env,
        cancel,
        None,
        move |ctl| {
            let path = path?;
            let disk = FileStorage::open_rw(&path)
                .map_err(|e| Failure::from_core(&sparsekit_customize::Error::Io(e)))?;
            let (r, (start, len)) =
                customize_disk(&disk, partition, &c, ctl).map_err(|e| Failure::from_core(&e))?;
            Ok(NativeCustomized {
                partition_start: to_f64("partition start", start)?,
                partition_length: to_f64("partition length", len)?,
                written: r.written,
                deleted: r.deleted,
                appended: r.appended,
                already: r.already,
            })
        },
        customized_to_js,
    )
}

/// `password` hashed with SHA-512-crypt (`$6$rounds=5000$salt$hash`) with the given 1 to
/// 12 salt bytes.
#[napi]
pub fn hash_password(env: Env, password: String, salt: Buffer) -> Result<String> {
    sync_call(&env, || {
        crypt(&password, &salt).map_err(|e| Failure::from_core(&e))
    })
}
