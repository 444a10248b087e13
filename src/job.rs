//! Running core work on the libuv thread pool: cancellation, throttled progress, panics.

use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::ScopedTask;

use crate::error::Failure;

/// The JS progress callback, called as `(bytesDone, bytesTotal)` from any thread.
/// Weak: a pending progress callback never keeps the event loop alive on its own.
pub type ProgressFn =
    ThreadsafeFunction<FnArgs<(f64, f64)>, (), FnArgs<(f64, f64)>, Status, false, true>;

/// Progress calls reach JS at most this often; the TS layer adds the final 100% call.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(50);

/// A cancellation flag shared between JS and one native job. The TS layer creates one per
/// call and sets it from the caller's `AbortSignal`.
#[napi]
pub struct CancelToken {
    flag: Arc<AtomicBool>,
}

#[napi]
impl CancelToken {
    #[napi(constructor)]
    pub fn new() -> Self {
        CancelToken {
            flag: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Ask the job to stop at its next check (between chunks).
    #[napi]
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Whether `cancel()` was called.
    #[napi(getter)]
    pub fn cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

impl Default for CancelToken {
    fn default() -> Self {
        Self::new()
    }
}

/// What a job sees of its caller: the cancel flag and the progress callback.
pub struct Control {
    cancel: Option<Arc<AtomicBool>>,
    progress: Option<ProgressFn>,
    last: Option<Instant>,
}

impl Control {
    pub fn new(cancel: Option<&CancelToken>, progress: Option<ProgressFn>) -> Self {
        Control {
            cancel: cancel.map(|c| c.flag.clone()),
            progress,
            last: None,
        }
    }

    pub fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// The callback core crates get: reports progress (throttled) and answers whether to go on.
    pub fn tick(&mut self, done: u64, total: u64) -> ControlFlow<()> {
        if self.cancelled() {
            return ControlFlow::Break(());
        }
        if let Some(tsfn) = &self.progress {
            let now = Instant::now();
            if self
                .last
                .is_none_or(|t| now.duration_since(t) >= PROGRESS_INTERVAL)
            {
                self.last = Some(now);
                // NonBlocking: a slow JS callback must never stall the I/O thread; the
                // queue is unbounded and calls are throttled, so nothing piles up.
                tsfn.call(
                    FnArgs::from((done as f64, total as f64)),
                    ThreadsafeFunctionCallMode::NonBlocking,
                );
            }
        }
        ControlFlow::Continue(())
    }
}

type Work<T> = Box<dyn FnOnce(&mut Control) -> std::result::Result<T, Failure> + Send>;
/// Turns a job's output into its JS value on the main thread (where `env` is usable).
type Convert<T> = fn(&Env, T) -> Result<napi::sys::napi_value>;

/// One async call: `work` runs on the libuv pool; its result settles the Promise.
pub struct Job<T: Send + 'static> {
    work: Option<Work<T>>,
    control: Control,
    failure: Option<Failure>,
    convert: Convert<T>,
}

impl<T: Send + ToNapiValue + 'static> Job<T> {
    /// A job whose output converts to JS by its `ToNapiValue`.
    pub fn new(
        control: Control,
        work: impl FnOnce(&mut Control) -> std::result::Result<T, Failure> + Send + 'static,
    ) -> AsyncTask<Self> {
        // SAFETY: called on the main thread with the env of the settling callback.
        Job::with_convert(control, work, |env, v| unsafe {
            T::to_napi_value(env.raw(), v)
        })
    }
}

impl<T: Send + 'static> Job<T> {
    /// A job whose output needs the env to become JS, e.g. to copy bulk numbers into a
    /// typed array (copies, never external buffers: Electron forbids those).
    pub fn with_convert(
        control: Control,
        work: impl FnOnce(&mut Control) -> std::result::Result<T, Failure> + Send + 'static,
        convert: Convert<T>,
    ) -> AsyncTask<Self> {
        AsyncTask::new(Job {
            work: Some(Box::new(work)),
            control,
            failure: None,
            convert,
        })
    }
}

impl<'task, T: Send + 'static> ScopedTask<'task> for Job<T> {
    type Output = T;
    type JsValue = Unknown<'task>;

    fn compute(&mut self) -> Result<T> {
        let work = self
            .work
            .take()
            .ok_or_else(|| Error::from_reason("job ran twice"))?;
        if self.control.cancelled() {
            self.failure = Some(Failure::new(
                "ERR_SPARSEKIT_ABORTED",
                "the operation was aborted",
            ));
            return Err(Error::from_reason("aborted"));
        }
        let control = &mut self.control;
        let outcome = catch_unwind(AssertUnwindSafe(move || work(control)));
        // Drop the progress callback now, on the worker: later calls could not arrive anyway.
        self.control.progress = None;
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(f)) => {
                self.failure = Some(f);
                Err(Error::from_reason("failed"))
            }
            Err(panic) => {
                let what = panic_text(&*panic);
                self.failure = Some(Failure::internal(format!(
                    "internal error (Rust panic): {what}"
                )));
                Err(Error::from_reason("panic"))
            }
        }
    }

    fn resolve(&mut self, env: &'task Env, output: T) -> Result<Unknown<'task>> {
        let raw = (self.convert)(env, output)?;
        // SAFETY: `raw` was just created in this env and scope.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), raw) })
    }

    fn reject(&mut self, env: &'task Env, err: Error) -> Result<Unknown<'task>> {
        let failure = self
            .failure
            .take()
            .unwrap_or_else(|| Failure::internal(err.reason.clone()));
        Err(failure.into_napi(env))
    }
}

/// Run synchronous glue work: a panic or failure becomes a thrown, coded JS error.
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

/// Byte offsets and sizes cross as JS numbers: integers in `[0, 2^53)`.
pub fn to_u64(name: &str, v: f64) -> std::result::Result<u64, Failure> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if !v.is_finite() || v.fract() != 0.0 {
        return Err(Failure::out_of_range(format!(
            "The value of \"{name}\" must be an integer. Received {v}"
        )));
    }
    if !(0.0..=MAX_SAFE).contains(&v) {
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
    if v > 9_007_199_254_740_991 {
        return Err(Failure::out_of_range(format!(
            "{name} {v} is above Number.MAX_SAFE_INTEGER"
        )));
    }
    Ok(v as f64)
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
}
