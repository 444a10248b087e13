use std::path::PathBuf;

use napi::bindgen_prelude::*;
use sparsekit_extents::{map_path, MapOptions, Method};

use crate::error::Failure;
use crate::job::{opt_u64, to_f64, CancelToken, Control, Job};

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
#[napi(object, object_to_js = false)]
pub struct NativeMap {
    pub size: f64,
    pub block_size: f64,
    #[napi(ts_type = "'fiemap' | 'seek' | 'none'")]
    pub method: String,
    #[napi(ts_type = "Float64Array")]
    pub table: Vec<f64>,
}

fn map_to_js(env: &Env, m: NativeMap) -> Result<napi::sys::napi_value> {
    let mut obj = Object::new(env)?;
    obj.set("size", m.size)?;
    obj.set("blockSize", m.block_size)?;
    obj.set("method", m.method)?;
    obj.set("table", Float64ArraySlice::copy_from(env, &m.table)?)?;
    Ok(obj.raw())
}

/// Where a file's data is: sorted, merged data ranges inside `[start, start + length)`.
#[napi(ts_return_type = "Promise<NativeMap>")]
pub fn map(
    path: String,
    options: Option<NativeMapOptions>,
    cancel: Option<&CancelToken>,
) -> AsyncTask<Job<NativeMap>> {
    Job::with_convert(
        Control::new(cancel, None),
        move |_| {
            let o = options.unwrap_or_default();
            let method = match o.method.as_deref() {
                None => Method::Auto,
                Some(m) => m
                    .parse()
                    .map_err(|e: sparsekit_extents::Error| Failure::from_core(&e))?,
            };
            let opts = MapOptions {
                start: opt_u64("options.start", o.start)?.unwrap_or(0),
                length: opt_u64("options.length", o.length)?,
                method,
            };
            let m = map_path(&PathBuf::from(path), &opts).map_err(|e| Failure::from_core(&e))?;
            let mut table = Vec::with_capacity(m.extents.len() * 3);
            for e in &m.extents {
                table.push(to_f64("extent offset", e.offset)?);
                table.push(to_f64("extent length", e.length)?);
                table.push(f64::from(u8::from(e.unwritten) | (u8::from(e.shared) << 1)));
            }
            Ok(NativeMap {
                size: to_f64("size", m.size)?,
                block_size: m.block_size as f64,
                method: m.method.name().to_string(),
                table,
            })
        },
        map_to_js,
    )
}
