use napi::bindgen_prelude::*;
use sparsekit_extents::{map_path_with, MapOptions, Method};

use crate::error::Failure;
use crate::job::{opt_u64, parse_opt, path_arg, spawn, to_f64, CancelToken, ProgressFn, MAX_SAFE};

#[napi(object)]
#[derive(Default)]
pub struct NativeMapOptions {
    pub start: Option<f64>,
    pub length: Option<f64>,
    /// `auto` (default), `fiemap`, `seek` or `none`.
    pub method: Option<String>,
}

/// What `map` resolves to. `table` holds the extents flattened as
/// `[offset, length, flags, ...]` (flags: 1 unwritten, 2 shared) in one Float64Array
/// copied in a single memcpy: 100 000 extents as JS objects built through Node-API cost
/// ~100 ms, as array elements ~40 ms, as one typed array ~0.1 ms. ts/ builds the objects.
/// `size` is a number, or a BigInt above `Number.MAX_SAFE_INTEGER` (xfs, btrfs and tmpfs
/// allow files up to 2^63 - 1); the mapped window stops at `Number.MAX_SAFE_INTEGER`.
#[allow(dead_code)] // only describes the object map_to_js builds, for index.d.ts
#[napi(object, object_to_js = false)]
pub struct NativeMap {
    #[napi(ts_type = "number | bigint")]
    pub size: f64,
    pub block_size: f64,
    #[napi(ts_type = "'fiemap' | 'seek' | 'none'")]
    pub method: String,
    #[napi(ts_type = "Float64Array")]
    pub table: Vec<f64>,
}

struct MapOut {
    size: u64,
    block_size: f64,
    method: &'static str,
    table: Vec<f64>,
}

fn map_to_js(env: &Env, m: MapOut) -> Result<napi::sys::napi_value> {
    let mut obj = Object::new(env)?;
    if m.size > MAX_SAFE {
        obj.set("size", BigInt::from(m.size))?;
    } else {
        obj.set("size", m.size as f64)?;
    }
    obj.set("blockSize", m.block_size)?;
    obj.set("method", m.method)?;
    obj.set("table", Float64ArraySlice::copy_from(env, &m.table)?)?;
    Ok(obj.raw())
}

/// Where a file's data is: sorted, merged data ranges inside `[start, start + length)`.
#[napi(ts_return_type = "Promise<NativeMap>")]
pub fn map<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    options: Option<NativeMapOptions>,
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
            let method = parse_opt::<Method>(
                "options.method",
                o.method,
                &["auto", "fiemap", "seek", "none"],
            )?
            .unwrap_or_default();
            let start = opt_u64("options.start", o.start)?.unwrap_or(0);
            // Extent offsets are JS numbers: the window ends at 2^53 - 1 at the latest.
            let length = opt_u64("options.length", o.length)?
                .unwrap_or(MAX_SAFE - start)
                .min(MAX_SAFE - start);
            let opts = MapOptions {
                start,
                length: Some(length),
                method,
            };
            let m = map_path_with(&path, &opts, ctl).map_err(|e| Failure::from_core(&e))?;
            let mut table = Vec::with_capacity(m.extents.len() * 3);
            for e in &m.extents {
                table.push(to_f64("extent offset", e.offset)?);
                table.push(to_f64("extent length", e.length)?);
                table.push(f64::from(u8::from(e.unwritten) | (u8::from(e.shared) << 1)));
            }
            Ok(MapOut {
                size: m.size,
                block_size: m.block_size as f64,
                method: m.method.name(),
                table,
            })
        },
        map_to_js,
    )
}
