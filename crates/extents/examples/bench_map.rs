//! Benchmark helper: map a file with `sparsekit_extents` without Node, so the JS API can be
//! compared with the bare Rust path (used by `bench/run`).
//!
//! ```text
//! cargo run --release --example bench_map -- FILE [--iterations N] [--nosync] [--method M]
//! ```
//!
//! Prints one JSON line: the extent count, the wall time in seconds of each call of
//! `map_path` (or `map_file_nosync` with `--nosync`: FIEMAP without `FIEMAP_FLAG_SYNC`),
//! and the process's total user and system CPU seconds over all iterations (`getrusage`),
//! which shows how much of a map is spent in the kernel. Every iteration maps the whole
//! file afresh, opening it each time, as `map()` in JS does.
use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use sparsekit_extents::{map_file_nosync, map_path, MapOptions, Method};

fn main() -> ExitCode {
    let mut path = None;
    let mut iterations = 1usize;
    let mut nosync = false;
    let mut method = Method::Auto;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--iterations" => {
                iterations = args.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            }
            "--nosync" => nosync = true,
            "--method" => match args.next().map(|m| m.parse()) {
                Some(Ok(m)) => method = m,
                _ => return usage(),
            },
            _ if path.is_none() && !a.starts_with("--") => path = Some(PathBuf::from(a)),
            _ => return usage(),
        }
    }
    let Some(path) = path else { return usage() };
    if iterations == 0 {
        return usage();
    }
    let opts = MapOptions {
        method,
        ..MapOptions::default()
    };
    let mut times = Vec::with_capacity(iterations);
    let mut extents = 0;
    let mut used = Method::Auto;
    for _ in 0..iterations {
        let t = Instant::now();
        let map = if nosync {
            match File::open(&path) {
                Ok(f) => map_file_nosync(&f, &opts),
                Err(e) => {
                    eprintln!("bench_map: {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
        } else {
            map_path(&path, &opts)
        };
        let map = match map {
            Ok(m) => m,
            Err(e) => {
                eprintln!("bench_map: {e}");
                return ExitCode::FAILURE;
            }
        };
        times.push(t.elapsed().as_secs_f64());
        extents = map.extents.len();
        used = map.method;
        std::hint::black_box(&map);
    }
    let (user, sys) = cpu_seconds();
    let times: Vec<String> = times.iter().map(|t| format!("{t:.6}")).collect();
    println!(
        "{{\"extents\":{extents},\"method\":\"{used}\",\"sync\":{},\"user\":{user:.6},\"sys\":{sys:.6},\"times\":[{}]}}",
        !nosync,
        times.join(",")
    );
    ExitCode::SUCCESS
}

/// User and system CPU seconds of this process so far.
fn cpu_seconds() -> (f64, f64) {
    // SAFETY: getrusage fills the struct it is given; all-zero is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer to a live rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

fn usage() -> ExitCode {
    eprintln!("usage: bench_map FILE [--iterations N] [--nosync] [--method auto|fiemap|seek|none]");
    ExitCode::from(2)
}
