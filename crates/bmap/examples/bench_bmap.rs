//! Benchmark: sparsekit-bmap's `create` and `copy` against `bmaptool create` and
//! `bmaptool copy` on the same data, in one run.
//!
//! ```text
//! cargo run --release -p sparsekit-bmap --example bench_bmap -- DIR [--iterations N] [--xz]
//! ```
//!
//! DIR gets (once; kept for later runs) `bench.img`: 4 GiB, sparse, 512 MiB of
//! non-repeating data in 64 runs of 8 MiB spread evenly, and with `--xz` also
//! `bench.img.xz` (`xz -T0 -1`). Every timed copy starts untimed from no destination and a
//! `sync()`; the source stays in the page cache (warm). Each row is the best of N
//! (default 3) runs, in seconds. Prints a Markdown table.
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use sparsekit_bmap::{copy, create, BmapChoice, ChecksumType, CopyOptions, CreateOptions};
use sparsekit_io::Control;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn main() -> ExitCode {
    let mut dir = None;
    let mut iterations = 3usize;
    let mut xz = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--iterations" => iterations = args.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--xz" => xz = true,
            _ if !a.starts_with("--") && dir.is_none() => dir = Some(PathBuf::from(a)),
            _ => dir = None,
        }
    }
    let (Some(dir), true) = (dir, iterations > 0) else {
        eprintln!("usage: bench_bmap DIR [--iterations N] [--xz]");
        return ExitCode::from(2);
    };
    fs::create_dir_all(&dir).unwrap();
    let img = dir.join("bench.img");
    if !img.exists() {
        make_image(&img);
    }
    let bt_bmap = dir.join("bench.img.bt.bmap");
    let our_bmap = dir.join("bench.img.our.bmap");
    let dst = dir.join("out.img");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    // Warm the source's page cache.
    let _ = create(&img, &CreateOptions::default(), &mut Control::none()).unwrap();
    let mut rows: Vec<(String, f64)> = Vec::new();
    let mut row = |name: &str, t: f64| {
        eprintln!("{name}: {t:.3} s");
        rows.push((name.to_owned(), t));
    };

    let create_ours = |cs: Option<ChecksumType>| {
        best(
            iterations,
            || {},
            || {
                let b = create(
                    &img,
                    &CreateOptions {
                        checksum: cs,
                        block_size: None,
                    },
                    &mut Control::none(),
                )
                .unwrap();
                fs::write(&our_bmap, b.to_xml()).unwrap();
            },
        )
    };
    row(
        "sparsekit create (sha256)",
        create_ours(Some(ChecksumType::Sha256)),
    );
    row(
        "bmaptool create",
        best(
            iterations,
            || {},
            || sh("bmaptool", &["create", "-o", &s(&bt_bmap), &s(&img)]),
        ),
    );
    row("sparsekit create --no-checksum", create_ours(None));
    row(
        "bmaptool create --no-checksum",
        best(
            iterations,
            || {},
            || {
                sh(
                    "bmaptool",
                    &[
                        "create",
                        "--no-checksum",
                        "-o",
                        &s(&dir.join("nock.bmap")),
                        &s(&img),
                    ],
                )
            },
        ),
    );

    let prep = || {
        let _ = fs::remove_file(&dst);
        // SAFETY: no arguments.
        unsafe { libc::sync() };
    };
    let ours = |src: &Path, verify: bool, read_back: bool, bmap: &Path| {
        best(iterations, prep, || {
            let opts = CopyOptions {
                bmap: BmapChoice::Path(bmap.to_path_buf()),
                verify,
                read_back,
                create_files: true,
            };
            copy(src, &dst, &opts, &mut Control::none()).unwrap();
        })
    };
    row(
        "sparsekit copy (verify, fsync)",
        ours(&img, true, false, &bt_bmap),
    );
    row(
        "bmaptool copy (verify, fsync)",
        best(iterations, prep, || {
            sh(
                "bmaptool",
                &["copy", "--bmap", &s(&bt_bmap), &s(&img), &s(&dst)],
            )
        }),
    );
    row(
        "sparsekit copy --no-verify (fsync)",
        ours(&img, false, false, &bt_bmap),
    );
    row(
        "bmaptool copy --no-verify (fsync)",
        best(iterations, prep, || {
            sh(
                "bmaptool",
                &[
                    "copy",
                    "--no-verify",
                    "--bmap",
                    &s(&bt_bmap),
                    &s(&img),
                    &s(&dst),
                ],
            )
        }),
    );
    row(
        "sparsekit copy --read-back (verify, fsync, re-read uncached)",
        ours(&img, true, true, &bt_bmap),
    );
    check_same(&img, &dst);

    if xz {
        let z = dir.join("bench.img.xz");
        if !z.exists() {
            sh(
                "sh",
                &[
                    "-c",
                    &format!(
                        "xz -T0 -1 -c '{}' > '{1}.tmp' && mv '{1}.tmp' '{1}'",
                        s(&img),
                        s(&z)
                    ),
                ],
            );
        }
        let _ = fs::read(&z); // warm
        row(
            "xz -dc > /dev/null",
            best(
                iterations,
                || {},
                || sh("sh", &["-c", &format!("xz -dc '{}' > /dev/null", s(&z))]),
            ),
        );
        row(
            "sparsekit copy bench.img.xz (bmap, verify, fsync)",
            ours(&z, true, false, &bt_bmap),
        );
        row(
            "bmaptool copy bench.img.xz (bmap, verify, fsync)",
            best(iterations, prep, || {
                sh(
                    "bmaptool",
                    &["copy", "--bmap", &s(&bt_bmap), &s(&z), &s(&dst)],
                )
            }),
        );
        check_same(&img, &dst);
    }
    println!("| workload ({} runs, best) | seconds |", iterations);
    println!("|---|---|");
    for (n, t) in &rows {
        println!("| {n} | {t:.3} |");
    }
    let get = |n: &str| {
        rows.iter()
            .find(|r| r.0 == n)
            .map(|r| r.1)
            .unwrap_or(f64::NAN)
    };
    println!();
    println!(
        "create speed-up: {:.1}x",
        get("bmaptool create") / get("sparsekit create (sha256)")
    );
    println!(
        "copy (verify) speed-up: {:.1}x",
        get("bmaptool copy (verify, fsync)") / get("sparsekit copy (verify, fsync)")
    );
    if xz {
        let mbs = |t: f64| 4.0 * 1024.0 / t;
        println!(
            "xz: xz -dc {:.0} MiB/s, sparsekit copy {:.0} MiB/s, bmaptool copy {:.0} MiB/s (of the 4 GiB image)",
            mbs(get("xz -dc > /dev/null")),
            mbs(get("sparsekit copy bench.img.xz (bmap, verify, fsync)")),
            mbs(get("bmaptool copy bench.img.xz (bmap, verify, fsync)"))
        );
    }
    ExitCode::SUCCESS
}

fn best(n: usize, mut prep: impl FnMut(), mut f: impl FnMut()) -> f64 {
    let mut b = f64::INFINITY;
    for _ in 0..n {
        prep();
        let t = Instant::now();
        f();
        b = b.min(t.elapsed().as_secs_f64());
    }
    b
}

fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn make_image(p: &Path) {
    let tmp = p.with_extension("tmp");
    let f = File::create(&tmp).unwrap();
    f.set_len(4 * GIB).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; (8 * MIB) as usize];
    for i in 0..64u64 {
        for c in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all_at(&buf, i * (64 * MIB)).unwrap();
    }
    f.sync_all().unwrap();
    fs::rename(&tmp, p).unwrap();
}

fn check_same(a: &Path, b: &Path) {
    let (fa, fb) = (File::open(a).unwrap(), File::open(b).unwrap());
    assert_eq!(fa.metadata().unwrap().len(), fb.metadata().unwrap().len());
    let mut x = vec![0u8; (8 * MIB) as usize];
    let mut y = x.clone();
    for i in 0..64u64 {
        for off in [i * 64 * MIB, i * 64 * MIB + 32 * MIB] {
            fa.read_exact_at(&mut x, off).unwrap();
            fb.read_exact_at(&mut y, off).unwrap();
            assert!(x == y, "copy differs at {off}");
        }
    }
}
