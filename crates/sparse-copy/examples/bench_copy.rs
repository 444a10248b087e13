//! Benchmark helper: copy a file with `sparsekit_sparse_copy::copy` without Node, so the
//! JS API can be compared with the bare Rust path (used by `bench/run`).
//!
//! ```text
//! cargo run --release --example bench_copy -- SRC DST [--iterations N] [--method M]
//!     [--fsync] [--no-prepare]
//! ```
//!
//! Each iteration first (untimed) removes DST and calls `sync()`, so that every copy starts
//! from the same state: no destination, no dirty pages of an earlier run (`--no-prepare`
//! skips this, for a caller that prepares itself, e.g. hyperfine's `--prepare`). The timed
//! part is one `copy()` call with default options, plus an `fsync` of the destination
//! with `--fsync`. Prints one JSON line: what was copied, the method, and the seconds of
//! each iteration.
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use sparsekit_sparse_copy::{copy, CopyMethod, CopyOptions};

fn main() -> ExitCode {
    let mut paths = Vec::new();
    let mut iterations = 1usize;
    let mut method = CopyMethod::Auto;
    let mut fsync = false;
    let mut prepare = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--iterations" => {
                iterations = args.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            }
            "--method" => match args.next().map(|m| m.parse()) {
                Some(Ok(m)) => method = m,
                _ => return usage(),
            },
            "--fsync" => fsync = true,
            "--no-prepare" => prepare = false,
            _ if !a.starts_with("--") => paths.push(PathBuf::from(a)),
            _ => return usage(),
        }
    }
    let [src, dst] = paths.as_slice() else {
        return usage();
    };
    if iterations == 0 {
        return usage();
    }
    let opts = CopyOptions {
        method,
        ..CopyOptions::default()
    };
    let mut times = Vec::with_capacity(iterations);
    let mut report = None;
    for _ in 0..iterations {
        if prepare {
            match std::fs::remove_file(dst) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    eprintln!("bench_copy: rm {}: {e}", dst.display());
                    return ExitCode::FAILURE;
                }
            }
            // SAFETY: sync(2) takes no arguments and cannot fail.
            unsafe { libc::sync() };
        }
        let t = Instant::now();
        let r = match copy(src, dst, &opts, &mut sparsekit_io::Control::none()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bench_copy: {e}");
                return ExitCode::FAILURE;
            }
        };
        if fsync {
            if let Err(e) = File::options()
                .write(true)
                .open(dst)
                .and_then(|f| f.sync_all())
            {
                eprintln!("bench_copy: fsync {}: {e}", dst.display());
                return ExitCode::FAILURE;
            }
        }
        times.push(t.elapsed().as_secs_f64());
        report = Some(r);
    }
    let r = report.expect("at least one iteration");
    let times: Vec<String> = times.iter().map(|t| format!("{t:.6}")).collect();
    println!(
        "{{\"bytesCopied\":{},\"size\":{},\"method\":\"{}\",\"fsync\":{fsync},\"times\":[{}]}}",
        r.bytes_copied,
        r.size,
        r.method,
        times.join(",")
    );
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: bench_copy SRC DST [--iterations N] [--method auto|reflink|copy_file_range|sendfile|readwrite] [--fsync] [--no-prepare]"
    );
    ExitCode::from(2)
}
