use std::path::PathBuf;

use napi::bindgen_prelude::*;
use sparsekit_extents::{map_path, MapOptions, Method};

use crate::error::Failure;
use crate::job::{to_f64, to_u64, CancelToken, Control, Job};

#[napi(object)]
pub struct NativeMapOptions {
    pub start: Option<f64>,
    pub length: Option<f64>,
    /// `auto` (default), `fiemap`, `seek` or `none`.
    pub method: Option<String>,
}

#[napi(object)]
pub struct NativeExtent {
    pub offset: f64,
    pub length: f64,
    /// Present (true) only for preallocated ranges that read as zeros.
    pub unwritten: Option<bool>,
    /// Present (true) only for blocks shared with another file (reflink).
    pub shared: Option<bool>,
}

#[napi(object)]
pub struct NativeMap {
    pub size: f64,
    pub block_size: f64,
    #[napi(ts_type = "'fiemap' | 'seek' | 'none'")]
    pub method: String,
    pub extents: Vec<NativeExtent>,
}

/// Where a file's data is: sorted, merged data ranges inside `[start, start + length)`.
#[napi(ts_return_type = "Promise<NativeMap>")]
pub fn map(
    path: String,
    options: Option<NativeMapOptions>,
    cancel: Option<&CancelToken>,
) -> AsyncTask<Job<NativeMap>> {
    Job::new(Control::new(cancel, None), move |_| {
        let o = options.unwrap_or(NativeMapOptions {
            start: None,
            length: None,
            method: None,
        });
        let method = match o.method.as_deref() {
            None => Method::Auto,
            Some(m) => m
                .parse()
                .map_err(|e: sparsekit_extents::Error| Failure::from_core(&e))?,
        };
        let opts = MapOptions {
            start: o
                .start
                .map(|v| to_u64("options.start", v))
                .transpose()?
                .unwrap_or(0),
            length: o.length.map(|v| to_u64("options.length", v)).transpose()?,
            method,
        };
        let m = map_path(&PathBuf::from(path), &opts).map_err(|e| Failure::from_core(&e))?;
        let extents = m
            .extents
            .iter()
            .map(|e| {
                Ok(NativeExtent {
                    offset: to_f64("extent offset", e.offset)?,
                    length: to_f64("extent length", e.length)?,
                    unwritten: e.unwritten.then_some(true),
                    shared: e.shared.then_some(true),
                })
            })
            .collect::<std::result::Result<_, Failure>>()?;
        Ok(NativeMap {
            size: to_f64("size", m.size)?,
            block_size: m.block_size as f64,
            method: m.method.name().to_string(),
            extents,
        })
    })
}
