use napi::bindgen_prelude::*;
use sparsekit_backup::{backup as run_backup, BackupOptions};

use crate::error::Failure;
use crate::job::{path_arg, spawn, to_f64, CancelToken, ProgressFn};

#[napi(object)]
#[derive(Default)]
pub struct NativeBackupOptions {
    pub bmap: Option<bool>,
    pub shrink: Option<bool>,
    pub verify: Option<bool>,
    /// Unmount a mounted source drive first.
    pub unmount: Option<bool>,
    /// Back up a mounted or system drive as it is.
    pub force: Option<bool>,
}

/// What `backup` resolves to.
#[napi(object)]
pub struct NativeBackup {
    pub source_size: f64,
    pub image_size: f64,
    pub bytes_copied: f64,
    pub table: String,
    pub sha256: String,
    pub bmap: Option<String>,
    pub cut_bytes: f64,
    pub verified: bool,
}

fn backup_to_js(env: &Env, b: NativeBackup) -> Result<napi::sys::napi_value> {
    // SAFETY: called on the main thread with its env, as napi-rs's own conversions are.
    unsafe { NativeBackup::to_napi_value(env.raw(), b) }
}

/// An image of a drive or image holding only its used blocks (see sparsekit-backup).
#[napi(ts_return_type = "Promise<NativeBackup>")]
pub fn backup<'env>(
    env: &'env Env,
    source: Either<String, Buffer>,
    output: Either<String, Buffer>,
    options: Option<NativeBackupOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let paths = path_arg("source", source).and_then(|s| Ok((s, path_arg("output", output)?)));
    let o = options.unwrap_or_default();
    let opts = BackupOptions {
        bmap: o.bmap.unwrap_or(true),
        shrink: o.shrink.unwrap_or(true),
        verify: o.verify.unwrap_or(true),
    };
    let safety = sparsekit_drives::Safety {
        unmount: o.unmount.unwrap_or(false),
        force: o.force.unwrap_or(false),
        create_files: false,
    };
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let (source, output) = paths?;
            // A drive is checked as flash checks a destination: its mounted file systems
            // would be read while they change (unmount them first), and the system drive
            // is always in use. Worded for a backup.
            if std::fs::metadata(&source)
                .is_ok_and(|m| sparsekit_io::sys::FileTypeExt::is_block_device(&m.file_type()))
            {
                if let Err(e) = sparsekit_drives::check_destination(&source, safety) {
                    let mut f = Failure::from_core(&e);
                    f.message = f
                        .message
                        .replace("refusing to write", "refusing to back up")
                        .replace("pass force to override", "pass force to read it as it is");
                    return Err(f);
                }
            }
            let src = sparsekit_backup::open_source(&source)
                .map_err(|e| Failure::from_core(&sparsekit_backup::Error::Io(e)))?;
            let r = run_backup(&src, &output, &opts, ctl).map_err(|e| Failure::from_core(&e))?;
            Ok(NativeBackup {
                source_size: to_f64("source size", r.source_size)?,
                image_size: to_f64("image size", r.image_size)?,
                bytes_copied: to_f64("bytes copied", r.bytes_copied)?,
                table: r.table.to_string(),
                sha256: r.sha256,
                bmap: r.bmap.map(|p| p.to_string_lossy().into_owned()),
                cut_bytes: to_f64("cut bytes", r.cut_bytes)?,
                verified: r.verified,
            })
        },
        backup_to_js,
    )
}
