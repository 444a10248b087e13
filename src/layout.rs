use std::sync::mpsc::{sync_channel, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::*;
use sparsekit_io::{Cancel, Control, FileStorage};

use crate::error::Failure;
use crate::job::{path_arg, spawn, to_f64, CancelToken, ProgressFn};

/// Options of `layout`: an http(s) source instead of the path.
#[napi(object)]
#[derive(Default)]
pub struct NativeLayoutOptions {
    /// Read this http(s) URL (range requests) instead of `path`.
    pub url: Option<String>,
    /// Extra trusted CA certificates (PEM).
    pub ca: Option<Buffer>,
    pub retries: Option<u32>,
    pub retry_delay: Option<u32>,
    pub timeout: Option<u32>,
}

/// One partition of a [`NativeLayout`].
#[napi(object)]
pub struct NativeLayoutPartition {
    pub number: u32,
    pub start: f64,
    pub length: f64,
    #[napi(js_name = "type")]
    pub type_: String,
    pub type_name: Option<String>,
    pub name: Option<String>,
    pub partuuid: Option<String>,
    pub filesystem: Option<String>,
    pub label: Option<String>,
    pub uuid: Option<String>,
    pub used_bytes: f64,
    #[napi(ts_type = "'clean' | 'dirty' | 'unknown'")]
    pub state: String,
    pub reason: Option<String>,
}

/// What `layout` resolves to; `used` holds the used ranges flattened as
/// `[offset, length, ...]` in one Float64Array (ts/ builds the objects).
#[allow(dead_code)] // only describes the object to_js builds, for index.d.ts
#[napi(object, object_to_js = false)]
pub struct NativeLayout {
    pub size: f64,
    #[napi(ts_type = "'gpt' | 'mbr' | 'none'")]
    pub table: String,
    pub sector_size: u32,
    pub hybrid_mbr: bool,
    pub partitions: Vec<NativeLayoutPartition>,
    #[napi(ts_type = "Float64Array")]
    pub used: Vec<f64>,
    pub used_bytes: f64,
    pub warnings: Vec<String>,
}

struct Out {
    l: sparsekit_layout::Layout,
}

fn to_js(env: &Env, o: Out) -> Result<napi::sys::napi_value> {
    Ok(layout_object(env, o.l)?.raw())
}

fn layout_object(env: &Env, l: sparsekit_layout::Layout) -> Result<Object<'_>> {
    let mut table = Vec::with_capacity(l.used.len() * 2);
    for r in &l.used {
        table.push(r.offset as f64);
        table.push(r.length as f64);
    }
    let mut obj = Object::new(env)?;
    obj.set("size", l.size as f64)?;
    obj.set("table", l.table.name())?;
    obj.set("sectorSize", l.sector_size)?;
    obj.set("hybridMbr", l.hybrid_mbr)?;
    let parts: Vec<NativeLayoutPartition> = l
        .partitions
        .into_iter()
        .map(|p| NativeLayoutPartition {
            number: p.number,
            start: p.start as f64,
            length: p.length as f64,
            type_: p.type_,
            type_name: p.type_name.map(str::to_string),
            name: p.name,
            partuuid: p.partuuid,
            filesystem: p.filesystem.map(|f| f.name().to_string()),
            label: p.label,
            uuid: p.uuid,
            used_bytes: p.used_bytes as f64,
            state: p.state.name().to_string(),
            reason: p.reason,
        })
        .collect();
    obj.set("partitions", parts)?;
    obj.set("used", Float64ArraySlice::copy_from(env, &table)?)?;
    obj.set("usedBytes", l.used_bytes as f64)?;
    obj.set("warnings", l.warnings)?;
    Ok(obj)
}

/// The partition table, partitions, file systems and used byte ranges of an image or
/// block device, read without mounting (free means provably free).
#[napi(ts_return_type = "Promise<NativeLayout>")]
pub fn layout<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    options: Option<NativeLayoutOptions>,
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
            let o = options.unwrap_or_default();
            let l = match o.url {
                // An http(s) source: read with range requests (a bounded cache).
                Some(url) => {
                    let http = crate::flash::http_options(
                        o.ca.map(|b| b.to_vec()),
                        o.retries,
                        o.retry_delay,
                        o.timeout,
                    );
                    let s = sparsekit_http::HttpStorage::open(&url, &http, ctl.cancel().clone())
                        .map_err(|e| Failure::from_core(&e))?;
                    sparsekit_layout::layout(&s, ctl).map_err(|e| Failure::from_core(&e))?
                }
                None => {
                    let path = path?;
                    let s = FileStorage::open(&path)
                        .map_err(|e| Failure::from_core(&sparsekit_layout::Error::from(e)))?;
                    sparsekit_layout::layout(&s, ctl).map_err(|e| Failure::from_core(&e))?
                }
            };
            // Offsets are JS numbers.
            to_f64("device size", l.size)?;
            Ok(Out { l })
        },
        to_js,
    )
}

#[napi(object)]
#[derive(Default)]
pub struct NativeSparsifyOptions {
    /// Allow a block device (its free ranges are discarded).
    pub discard: Option<bool>,
}

/// What `sparsify` resolves to.
#[napi(object)]
pub struct NativeSparsified {
    pub size: f64,
    pub used_bytes: f64,
    pub freed_bytes: f64,
    pub allocated_before: Option<f64>,
    pub allocated_after: Option<f64>,
}

fn sparsified_to_js(env: &Env, s: NativeSparsified) -> Result<napi::sys::napi_value> {
    // SAFETY: called on the main thread with its env, as napi-rs's own conversions are.
    unsafe { NativeSparsified::to_napi_value(env.raw(), s) }
}

/// Punch (or, on a block device with `discard`, discard) every provably free range.
#[napi(ts_return_type = "Promise<NativeSparsified>")]
pub fn sparsify<'env>(
    env: &'env Env,
    path: Either<String, Buffer>,
    options: Option<NativeSparsifyOptions>,
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
            let opts = sparsekit_layout::SparsifyOptions {
                discard: o.discard.unwrap_or(false),
            };
            let r = sparsekit_layout::sparsify(&path, &opts, ctl)
                .map_err(|e| Failure::from_core(&e))?;
            Ok(NativeSparsified {
                size: to_f64("device size", r.layout.size)?,
                used_bytes: r.layout.used_bytes as f64,
                freed_bytes: r.freed_bytes as f64,
                allocated_before: r.allocated_before.map(|b| b as f64),
                allocated_after: r.allocated_after.map(|b| b as f64),
            })
        },
        sparsified_to_js,
    )
}

/// Used ranges per batch handed to JS by a [`LayoutStream`].
const BATCH: usize = 16384;

enum Msg {
    Batch(Vec<f64>),
    Done(Box<sparsekit_layout::Layout>),
    Fail(Failure),
}

/// The streaming form of `layout`: a producer thread scans the device and hands the used
/// ranges over in batches through a channel of two, so memory stays bounded whatever the
/// number of runs; `next()` resolves with the next batch (`{ table, layout? }`, `layout`
/// with the last one), `close()` stops the producer.
#[napi]
pub struct LayoutStream {
    rx: Arc<Mutex<Option<Receiver<Msg>>>>,
    cancel: Cancel,
}

/// One batch of a [`LayoutStream`].
#[allow(dead_code)] // only describes the object next() builds, for index.d.ts
#[napi(object, object_to_js = false)]
pub struct NativeLayoutChunk {
    /// Used ranges as `[offset, length, ...]`.
    #[napi(ts_type = "Float64Array")]
    pub table: Vec<f64>,
    /// With the last batch: the layout (its `used` empty).
    pub layout: Option<NativeLayout>,
}

/// Start streaming the used ranges of an image or block device.
#[napi]
pub fn layout_stream(
    path: Either<String, Buffer>,
    cancel: Option<&CancelToken>,
) -> Result<LayoutStream> {
    let flag = cancel.map(|c| c.flag()).unwrap_or_default();
    let (tx, rx) = sync_channel::<Msg>(2);
    let path = path_arg("path", path);
    let producer_flag = flag.clone();
    std::thread::Builder::new()
        .name("sparsekit-layout-stream".into())
        .spawn(move || {
            // Send, waiting while the consumer is behind; give up once cancelled or closed.
            let send = |mut m: Msg| -> bool {
                loop {
                    match tx.try_send(m) {
                        Ok(()) => return true,
                        Err(TrySendError::Disconnected(_)) => return false,
                        Err(TrySendError::Full(back)) => {
                            if producer_flag.is_cancelled() {
                                return false;
                            }
                            m = back;
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
            };
            let run = || -> std::result::Result<sparsekit_layout::Layout, Failure> {
                let path = path?;
                let s = FileStorage::open(&path)
                    .map_err(|e| Failure::from_core(&sparsekit_layout::Error::from(e)))?;
                let mut ctl = Control::with_cancel(producer_flag.clone());
                let mut batch: Vec<f64> = Vec::with_capacity(BATCH * 2);
                let l = sparsekit_layout::scan(&s, &mut ctl, &mut |r| {
                    batch.push(r.offset as f64);
                    batch.push(r.length as f64);
                    if batch.len() >= BATCH * 2 && !send(Msg::Batch(std::mem::take(&mut batch))) {
                        return Err(sparsekit_layout::Error::Aborted);
                    }
                    Ok(())
                })
                .map_err(|e| Failure::from_core(&e))?;
                to_f64("device size", l.size)?;
                if !batch.is_empty() && !send(Msg::Batch(batch)) {
                    return Err(Failure::aborted());
                }
                Ok(l)
            };
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
            let _ = match r {
                Ok(Ok(l)) => send(Msg::Done(Box::new(l))),
                Ok(Err(f)) => send(Msg::Fail(f)),
                Err(_) => send(Msg::Fail(Failure::internal(
                    "internal error (Rust panic) in layout",
                ))),
            };
        })
        .map_err(|e| Error::from_reason(format!("cannot start a thread: {e}")))?;
    Ok(LayoutStream {
        rx: Arc::new(Mutex::new(Some(rx))),
        cancel: flag,
    })
}

enum Chunk {
    Batch(Vec<f64>),
    Done(Box<sparsekit_layout::Layout>),
}

fn chunk_to_js(env: &Env, c: Chunk) -> Result<napi::sys::napi_value> {
    let mut obj = Object::new(env)?;
    match c {
        Chunk::Batch(t) => {
            obj.set("table", Float64ArraySlice::copy_from(env, &t)?)?;
        }
        Chunk::Done(l) => {
            obj.set("table", Float64ArraySlice::copy_from(env, [])?)?;
            obj.set("layout", layout_object(env, *l)?)?;
        }
    }
    Ok(obj.raw())
}

#[napi]
impl LayoutStream {
    /// The next batch; after the one with `layout`, or after `close()`, it rejects.
    #[napi(ts_return_type = "Promise<NativeLayoutChunk>")]
    pub fn next<'env>(&self, env: &'env Env) -> Result<Object<'env>> {
        let rx = self.rx.clone();
        spawn(
            env,
            None,
            None,
            move |_ctl| {
                let guard = rx
                    .lock()
                    .map_err(|_| Failure::internal("layout stream lock poisoned"))?;
                let Some(r) = guard.as_ref() else {
                    return Err(Failure::aborted());
                };
                match r.recv() {
                    Ok(Msg::Batch(t)) => Ok(Chunk::Batch(t)),
                    Ok(Msg::Done(l)) => Ok(Chunk::Done(l)),
                    Ok(Msg::Fail(f)) => Err(f),
                    Err(_) => Err(Failure::aborted()),
                }
            },
            chunk_to_js,
        )
    }

    /// Stop the producer (it notices within a few milliseconds) and drop what is queued.
    #[napi]
    pub fn close(&self) {
        self.cancel.cancel();
        if let Ok(mut g) = self.rx.try_lock() {
            g.take();
        }
    }
}
