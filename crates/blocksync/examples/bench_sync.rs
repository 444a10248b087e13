//! Benchmark driver and minimal stdio front end of sparsekit-blocksync (bench/blocksync.sh
//! runs it; the product's CLI is `sparsekit checksum|retrieve|save`).
//!
//! ```text
//! bench_sync hash FILE          SHA3-512 of FILE's 128 KiB blocks: one core, then all cores
//! bench_sync hashcpu FILE       per CPU second of this thread, each SHA3-512 kernel this CPU
//!                               can run (64 MiB in memory; steadier than wall clock on a
//!                               loaded machine)
//! bench_sync files [--blake3] [--holes] SRC DST   sync DST to SRC in one process
//! bench_sync checksum [--blake3] [--holes] DST   hash stream to stdout (DST `-`: stdin)
//! bench_sync retrieve [--blake3] [--holes] SRC   hash stream on stdin, block stream to stdout
//! bench_sync save [--blake3] [--holes] DST       block stream on stdin
//! ```
//! (the flags of the three stages must agree, as with the CLI).
use std::io::{BufReader, BufWriter};
use std::path::Path;
use std::time::Instant;

use sparsekit_blocksync::{
    checksum, hole_map, retrieve, save, sha3_512, sha3_512_x4, sync_files, ChecksumInput,
    ChecksumOptions, RetrieveOptions, SaveOptions, Sha3Kernel, BLOCK_SIZE,
};
use sparsekit_io::{Control, FileStorage, Storage};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["hash", f] => hash(Path::new(f)),
        ["hashcpu", f] => hash_cpu(Path::new(f)),
        ["files", ref rest @ ..] if rest.len() >= 2 => {
            let (flags, paths) = rest.split_at(rest.len() - 2);
            files(
                Path::new(paths[0]),
                Path::new(paths[1]),
                flags.contains(&"--blake3"),
                flags.contains(&"--holes"),
            )
        }
        [cmd @ ("checksum" | "retrieve" | "save"), ref rest @ ..] if !rest.is_empty() => {
            let (flags, path) = rest.split_at(rest.len() - 1);
            let blake3 = flags.contains(&"--blake3");
            let holes = flags.contains(&"--holes");
            stage(cmd, Path::new(path[0]), blake3, holes)
        }
        _ => {
            eprintln!("usage: bench_sync hash FILE | hashcpu FILE | files [--blake3] [--holes] SRC DST | checksum|retrieve|save [--blake3] [--holes] FILE");
            std::process::exit(2);
        }
    };
    if let Err(e) = r {
        eprintln!("ERROR: {e}");
        std::process::exit(1);
    }
}

fn hash(p: &Path) -> Result<(), sparsekit_blocksync::Error> {
    let f = FileStorage::open(p)?;
    let size = f.size()?.min(256 << 20);
    let mut buf = vec![0u8; BLOCK_SIZE as usize];
    let t = Instant::now();
    let mut pos = 0;
    let mut x = 0u8;
    while pos + u64::from(BLOCK_SIZE) <= size {
        f.read_exact_at(&mut buf, pos)?;
        x ^= sha3_512(&buf)[0];
        pos += u64::from(BLOCK_SIZE);
    }
    let one = pos as f64 / t.elapsed().as_secs_f64() / 1048576.0;
    // Four blocks at a time on one core (4-way AVX2 Keccak where the CPU has it).
    let mut bufs = vec![vec![0u8; BLOCK_SIZE as usize]; 4];
    let t = Instant::now();
    let mut p4 = 0;
    while p4 + 4 * u64::from(BLOCK_SIZE) <= size {
        for (k, b) in bufs.iter_mut().enumerate() {
            f.read_exact_at(b, p4 + k as u64 * u64::from(BLOCK_SIZE))?;
        }
        x ^= sha3_512_x4([&bufs[0], &bufs[1], &bufs[2], &bufs[3]])[0][0];
        p4 += 4 * u64::from(BLOCK_SIZE);
    }
    let four = p4 as f64 / t.elapsed().as_secs_f64() / 1048576.0;
    let t = Instant::now();
    let s = checksum(
        ChecksumInput::Storage(&f),
        std::io::sink(),
        &ChecksumOptions {
            start: 0,
            end: Some(pos),
            ..Default::default()
        },
        &mut Control::none(),
    )?;
    let all = s.bytes_hashed as f64 / t.elapsed().as_secs_f64() / 1048576.0;
    println!(
        "sha3-512 128 KiB blocks: one core {one:.0} MiB/s (sha3 crate), {four:.0} MiB/s (4-way, avx2 {}), checksum on {} threads {all:.0} MiB/s ({x})",
        sparsekit_blocksync::has_avx2(),
        rayon::current_num_threads()
    );
    Ok(())
}

/// CPU time of the calling thread.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn hash_cpu(p: &Path) -> Result<(), sparsekit_blocksync::Error> {
    let f = FileStorage::open(p)?;
    let bs = BLOCK_SIZE as usize;
    let n = (f.size()? as usize / bs).min(512) / 4 * 4;
    let mut data = vec![0u8; n * bs];
    f.read_exact_at(&mut data, 0)?;
    let blocks: Vec<&[u8]> = data.chunks_exact(bs).collect();
    let mib = (n * bs) as f64 / 1048576.0;
    let mut x = 0u8;
    // Each kernel this CPU can run (scalar = the sha3 crate one block at a time), best of 3.
    let kernels = Sha3Kernel::available();
    let mut best = vec![0f64; kernels.len()];
    for _ in 0..3 {
        for (k, b) in kernels.iter().zip(best.iter_mut()) {
            let t = thread_cpu();
            for g in blocks.chunks_exact(4) {
                x ^= k.sha3_512_x4([g[0], g[1], g[2], g[3]])[3][0];
            }
            *b = b.max(mib / (thread_cpu() - t));
        }
    }
    let parts: Vec<String> = kernels
        .iter()
        .zip(&best)
        .map(|(k, b)| format!("{} {b:.0} MiB/s", k.name()))
        .collect();
    println!(
        "sha3-512 128 KiB blocks per CPU second, per kernel: {} (selected: {}) ({x})",
        parts.join(", "),
        Sha3Kernel::best().name()
    );
    Ok(())
}

fn files(s: &Path, d: &Path, blake3: bool, holes: bool) -> Result<(), sparsekit_blocksync::Error> {
    let src = FileStorage::open(s)?;
    let dst = FileStorage::open_rw(d)?;
    let t = Instant::now();
    let opts = RetrieveOptions {
        blake3,
        holes: holes.then(|| hole_map(src.file())),
        dst_holes: if holes {
            hole_map(dst.file())
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    let sum = sync_files(&src, &dst, &opts, &mut Control::none())?;
    println!(
        "synced in {:.3} s: {} blocks changed, {} bytes sent, {} hash bytes",
        t.elapsed().as_secs_f64(),
        sum.blocks_changed,
        sum.bytes_sent,
        sum.hash_bytes
    );
    Ok(())
}

/// One stage of the three-process pipeline on stdin/stdout.
fn stage(cmd: &str, p: &Path, blake3: bool, holes: bool) -> Result<(), sparsekit_blocksync::Error> {
    let stdin = || BufReader::with_capacity(256 << 10, std::io::stdin().lock());
    let stdout = || BufWriter::with_capacity(256 << 10, std::io::stdout().lock());
    let ctl = &mut Control::none();
    match cmd {
        "checksum" if p == Path::new("-") => {
            // The destination as a stream on stdin (read in order, no `rest`).
            let opts = ChecksumOptions {
                blake3,
                ..Default::default()
            };
            let mut r = std::io::stdin().lock();
            checksum(ChecksumInput::Stream(&mut r), stdout(), &opts, ctl).map(drop)
        }
        "checksum" => {
            let d = FileStorage::open(p)?;
            let opts = ChecksumOptions {
                blake3,
                holes: holes.then(|| hole_map(d.file())),
                ..Default::default()
            };
            checksum(ChecksumInput::Storage(&d), stdout(), &opts, ctl).map(drop)
        }
        "retrieve" => {
            let s = FileStorage::open(p)?;
            let opts = RetrieveOptions {
                blake3,
                holes: holes.then(|| hole_map(s.file())),
                ..Default::default()
            };
            retrieve(&s, stdin(), stdout(), &opts, ctl).map(drop)
        }
        _ => {
            let d = FileStorage::open_rw(p)?;
            let opts = SaveOptions {
                blake3,
                holes,
                ..Default::default()
            };
            save(&d, stdin(), &opts, ctl).map(drop)
        }
    }
}
