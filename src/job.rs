//! Running core work off the main thread: cancellation, throttled phased progress, panics,
//! and environment teardown.
//!
//! Each job runs on its own thread, not on libuv's pool, and settles a deferred Promise.
//! Node waits for libuv pool work on `process.exit()` (`uv_library_shutdown` joins the pool)
//! and on worker teardown (`CleanupHandles` drains thread-pool requests before any cleanup
//! hook runs), so a multi-gigabyte job there would hold up exit for seconds. Our own
//! threads are not waited for: on `process.exit()` the process ends, and on a worker's
//! teardown an env cleanup hook cancels every job of that environment, whose threads then
//! stop at their next check (one chunk) without touching the dead environment (the
//! deferred's threadsafe function is aborted by napi-rs on teardown, so settling is a no-op).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use sparsekit_io::{Cancel, Phase, Progress};

use crate::error::Failure;

/// The JS progress callback, called as `(phase, bytesDone, bytesTotal)` from any thread;
/// `bytesTotal` is `-1` when unknown. Weak: a pending progress call never keeps the event
/// loop alive on its own.
pub type ProgressFn = ThreadsafeFunction<
    FnArgs<(&'static str, f64, f64)>,
    (),
    FnArgs<(&'static str, f64, f64)>,
    Status,
    false,
    true,
>;

/// Progress calls of one phase reach JS at most this often; the first and the final call
/// of every phase always pass.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(50);

/// A cancellation flag shared between JS and one native job. The TS layer creates one per
/// call and sets it from the caller's `AbortSignal`. It also counts the progress calls the
/// job queued, so JS can wait until every one (the final 100% ones included) has arrived
/// before it settles the caller's Promise.
#[napi]
pub struct CancelToken {
    cancel: Cancel,
    sent: Arc<AtomicU64>,
}

#[napi]
impl CancelToken {
    #[napi(constructor)]
    pub fn new() -> Self {
        CancelToken {
            cancel: Cancel::new(),
            sent: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Ask the job to stop at its next check (between chunks, or within ~25 ms of a wait
    /// on a pipe).
    #[napi]
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Whether `cancel()` was called.
    #[napi(getter)]
    pub fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Progress calls queued so far.
    #[napi(getter)]
    pub fn progress_calls(&self) -> f64 {
        self.sent.load(Ordering::SeqCst) as f64
    }
}

impl CancelToken {
    /// The flag, for glue that runs its own worker (a stream's producer).
    pub(crate) fn flag(&self) -> Cancel {
        self.cancel.clone()
    }
}

impl Default for CancelToken {
    fn default() -> Self {
        Self::new()
    }
}

/// The one throttle between the core's reports and JS.
struct Throttle {
    tsfn: ProgressFn,
    sent: Arc<AtomicU64>,
    phase: Option<Phase>,
    last: Instant,
}

impl Throttle {
    fn report(&mut self, p: Progress) {
        let now = Instant::now();
        let first = self.phase != Some(p.phase);
        let last = p.total == Some(p.done);
        if !(first || last || now.duration_since(self.last) >= PROGRESS_INTERVAL) {
            return;
        }
        self.phase = Some(p.phase);
        self.last = now;
        let total = p.total.map_or(-1.0, |t| t as f64);
        // NonBlocking: a slow JS callback must never stall the I/O thread; the queue is
        // unbounded and calls are throttled, so nothing piles up. After teardown the call
        // fails (closing) and is not counted.
        let status = self.tsfn.call(
            FnArgs::from((p.phase.name(), p.done as f64, total)),
            ThreadsafeFunctionCallMode::NonBlocking,
        );
        if status == Status::Ok {
            self.sent.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Jobs alive per environment, cancelled when it tears down.
static LIVE: Mutex<Option<HashMap<usize, Vec<Weak<Cancel>>>>> = Mutex::new(None);

fn live() -> std::sync::MutexGuard<'static, Option<HashMap<usize, Vec<Weak<Cancel>>>>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Register `cancel` to be cancelled when `env` tears down (one hook per environment).
fn register(env: &Env, cancel: &Arc<Cancel>) -> Result<()> {
    let key = env.raw() as usize;
    let mut guard = live();
    let map = guard.get_or_insert_with(HashMap::new);
    let new_env = !map.contains_key(&key);
    let jobs = map.entry(key).or_default();
    jobs.retain(|w| w.strong_count() > 0);
    jobs.push(Arc::downgrade(cancel));
    drop(guard);
    if new_env {
        env.add_env_cleanup_hook(key, |key| {
            let jobs = live().as_mut().and_then(|m| m.remove(&key));
            for c in jobs.into_iter().flatten().filter_map(|w| w.upgrade()) {
                c.cancel();
            }
        })?;
    }
    Ok(())
}

/// A JS value made on the main thread, handed to the deferred as is.
struct Raw(napi::sys::napi_value);

impl ToNapiValue for Raw {
    unsafe fn to_napi_value(_: napi::sys::napi_env, v: Self) -> Result<napi::sys::napi_value> {
        Ok(v.0)
    }
}

/// Turns a job's output into its JS value on the main thread (where `env` is usable).
pub type Convert<T> = fn(&Env, T) -> Result<napi::sys::napi_value>;

/// What a job's work function gets: the core's [`sparsekit_io::Control`].
pub type Ctl = sparsekit_io::Control<'static>;

/// Start `work` on its own thread and return the Promise it settles. `work` gets a
/// [`Ctl`] wired to the caller's cancel token and (throttled) progress callback; its
/// output becomes JS through `convert`, its failure a coded JS error, a panic
/// `ERR_SPARSEKIT_INTERNAL`.
pub fn spawn<'env, T: Send + 'static>(
    env: &'env Env,
    token: Option<&CancelToken>,
    progress: Option<ProgressFn>,
    work: impl FnOnce(&mut Ctl) -> std::result::Result<T, Failure> + Send + 'static,
    convert: Convert<T>,
) -> Result<Object<'env>> {
    let (cancel, sent) = match token {
        Some(t) => (t.cancel.clone(), t.sent.clone()),
        None => (Cancel::new(), Arc::new(AtomicU64::new(0))),
    };
    let guard = Arc::new(cancel.clone());
    register(env, &guard)?;
    let (deferred, promise) = env.create_deferred::<Raw, _>()?;
    let run = move || {
        let outcome = if cancel.is_cancelled() {
            Ok(Err(Failure::aborted()))
        } else {
            let mut ctl = match progress {
                Some(tsfn) => {
                    let mut t = Throttle {
                        tsfn,
                        sent,
                        phase: None,
                        last: Instant::now(),
                    };
                    sparsekit_io::Control::new(cancel.clone(), move |p| t.report(p))
                }
                None => sparsekit_io::Control::with_cancel(cancel.clone()),
            };
            catch_unwind(AssertUnwindSafe(|| work(&mut ctl)))
        };
        let result = match outcome {
            Ok(r) => r,
            Err(panic) => Err(Failure::internal(format!(
                "internal error (Rust panic): {}",
                panic_text(&*panic)
            ))),
        };
        drop(guard);
        deferred.resolve(move |env| match result {
            Ok(v) => convert(&env, v).map(Raw),
            Err(f) => Err(f.into_napi(&env)),
        });
    };
    std::thread::Builder::new()
        .name("sparsekit-job".into())
        .spawn(run)
        .map_err(|e| Error::from_reason(format!("cannot start a thread: {e}")))?;
    Ok(promise)
}

/// Run synchronous glue work: a panic or failure becomes a thrown, coded JS error.
#[allow(dead_code)] // used by test exports and by synchronous exports
pub fn sync_call<T>(env: &Env, f: impl FnOnce() -> std::result::Result<T, Failure>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(failure)) => Err(failure.into_napi(env)),
        Err(panic) => Err(Failure::internal(format!(
            "internal error (Rust panic): {}",
            panic_text(&*panic)
        ))
        .into_napi(env)),
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Largest integer a JS number holds exactly.
pub const MAX_SAFE: u64 = 9_007_199_254_740_991;

/// Byte offsets and sizes cross as JS numbers: integers in `[0, 2^53)`.
pub fn to_u64(name: &str, v: f64) -> std::result::Result<u64, Failure> {
    if !v.is_finite() || v.fract() != 0.0 {
        return Err(Failure::out_of_range(format!(
            "The value of \"{name}\" must be an integer. Received {v}"
        )));
    }
    if !(0.0..=MAX_SAFE as f64).contains(&v) {
        return Err(Failure::out_of_range(format!(
            "The value of \"{name}\" is out of range. It must be >= 0 and <= {MAX_SAFE}. Received {v}"
        )));
    }
    Ok(v as u64)
}

/// An optional byte offset or size option.
pub fn opt_u64(name: &str, v: Option<f64>) -> std::result::Result<Option<u64>, Failure> {
    v.map(|v| to_u64(name, v)).transpose()
}

/// Results going back to JS: above 2^53 a number would silently lose precision.
pub fn to_f64(name: &str, v: u64) -> std::result::Result<f64, Failure> {
    if v > MAX_SAFE {
        return Err(Failure::out_of_range(format!(
            "{name} {v} is above Number.MAX_SAFE_INTEGER"
        )));
    }
    Ok(v as f64)
}

/// Parse an enum option in the core's terms (`FromStr`), failing as Node does for a bad
/// option value: `TypeError` with `ERR_INVALID_ARG_VALUE`.
pub fn parse_opt<T: std::str::FromStr>(
    name: &str,
    v: Option<String>,
    allowed: &[&str],
) -> std::result::Result<Option<T>, Failure> {
    let Some(v) = v else { return Ok(None) };
    v.parse().map(Some).map_err(|_| {
        let list = allowed
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ");
        Failure::invalid_value(format!(
            "The property '{name}' must be one of {list}. Received '{v}'"
        ))
    })
}

/// A path argument: a string, or a Buffer holding any bytes (non-UTF-8 names), as `node:fs`
/// takes them.
pub fn path_arg(
    name: &str,
    p: Either<String, Buffer>,
) -> std::result::Result<std::path::PathBuf, Failure> {
    let bytes: Vec<u8> = match p {
        Either::A(s) => s.into_bytes(),
        Either::B(b) => b.to_vec(),
    };
    if bytes.is_empty() || bytes.contains(&0) {
        return Err(Failure::invalid_value(format!(
            "The argument '{name}' must be a non-empty path without null bytes"
        )));
    }
    #[cfg(unix)]
    let path: std::result::Result<std::path::PathBuf, Failure> =
        Ok(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&bytes).into());
    // Windows names are UTF-16: a Buffer must hold UTF-8.
    #[cfg(windows)]
    let path = String::from_utf8(bytes).map(Into::into).map_err(|_| {
        Failure::invalid_value(format!("The argument '{name}' must be UTF-8 on Windows"))
    });
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_numbers() {
        assert_eq!(to_u64("x", 0.0).unwrap(), 0);
        assert_eq!(
            to_u64("x", 9_007_199_254_740_991.0).unwrap(),
            9_007_199_254_740_991
        );
        for bad in [-1.0, 0.5, f64::NAN, f64::INFINITY, 9_007_199_254_740_992.0] {
            assert_eq!(
                to_u64("x", bad).unwrap_err().code,
                "ERR_OUT_OF_RANGE",
                "{bad}"
            );
        }
        assert!(to_f64("x", 1 << 53).is_err());
        assert_eq!(to_f64("x", (1 << 53) - 1).unwrap(), 9_007_199_254_740_991.0);
    }

    #[test]
    fn enum_options_fail_as_type_errors() {
        let f = parse_opt::<sparsekit_digest::Algorithm>(
            "options.algorithm",
            Some("md4".into()),
            &["sha256"],
        )
        .unwrap_err();
        assert_eq!(f.code, "ERR_INVALID_ARG_VALUE");
        assert_eq!(f.kind, crate::error::FailureKind::TypeError);
    }
}
