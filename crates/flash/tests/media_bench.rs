//! Issue 24's speed goals, on a loop device (root; ignored by default):
//! `cargo test -p sparsekit-flash --test media_bench -- --ignored --nocapture`
//! (the test profile is optimised). Prints the rows BENCHMARKS.md quotes:
//! - only-changed re-flash of a 1 GiB image with 1% changed against a full flash;
//! - the expected-digest check's cost against the same flash without it.
//!
//! `SPARSEKIT_BENCH_MIB` sets the image size (default 1024).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sparsekit_bmap::BmapChoice;
use sparsekit_flash::{flash, Files, FlashOptions};
use sparsekit_io::Control;

const MIB: u64 = 1 << 20;

fn drop_caches() {
    let _ = Command::new("sync").status();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

struct Loop(PathBuf);
impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn fill(f: &File, size: u64, seed: u64) {
    let mut x = seed | 1;
    let mut buf = vec![0u8; MIB as usize];
    for off in (0..size).step_by(MIB as usize) {
        for w in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all_at(&buf, off).unwrap();
    }
}

fn time(src: &Path, dev: &Path, opts: &FlashOptions) -> (f64, u64) {
    drop_caches();
    let t = Instant::now();
    let r = flash(
        src.to_str().unwrap(),
        &[dev.to_path_buf()],
        opts,
        None,
        &mut Control::none(),
    )
    .unwrap();
    let d = &r.destinations[0];
    assert!(d.error.is_none(), "{:?}", d.error);
    (t.elapsed().as_secs_f64(), d.bytes_written)
}

#[test]
#[ignore]
fn media_bench() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP media_bench: needs root");
        return;
    }
    let mib: u64 = std::env::var("SPARSEKIT_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let size = mib * MIB;
    let dir = tempfile::Builder::new()
        .prefix("sparsekit-media-bench")
        .tempdir_in("/var/tmp")
        .unwrap();
    let a = dir.path().join("a.img");
    let f = File::create(&a).unwrap();
    fill(&f, size, 1);
    f.sync_all().unwrap();
    // A' = A with 1% changed: 100 runs of size/10000 bytes, spread evenly.
    let b = dir.path().join("b.img");
    std::fs::copy(&a, &b).unwrap();
    let g = std::fs::OpenOptions::new().write(true).open(&b).unwrap();
    let run = size / 10_000;
    for i in 0..100u64 {
        let at = i * (size / 100) + 12_345 * (i % 7);
        g.write_all_at(&vec![0x5a; run as usize], at.min(size - run))
            .unwrap();
    }
    g.sync_all().unwrap();
    let backing = dir.path().join("dev");
    File::create(&backing)
        .unwrap()
        .set_len(size + 16 * MIB)
        .unwrap();
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&backing)
        .output()
        .unwrap();
    let dev = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let _l = Loop(dev.clone());
    let base = FlashOptions {
        bmap: BmapChoice::None,
        read_back: false,
        opener: std::sync::Arc::new(Files::default()),
        ..FlashOptions::default()
    };
    let (full1, _) = time(&a, &dev, &base);
    let (full2, _) = time(&b, &dev, &base);
    let full = full1.min(full2);
    // Back to A, then A' with only the changed blocks written.
    time(&a, &dev, &base);
    let oc = FlashOptions {
        only_changed: true,
        ..base.clone()
    };
    let (changed, written) = time(&b, &dev, &oc);
    let sha = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        let mut r = File::open(&a).unwrap();
        std::io::copy(&mut r, &mut h).unwrap();
        h.finalize()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    };
    let digest = FlashOptions {
        sha256: Some(sha),
        ..base.clone()
    };
    let (plain1, _) = time(&a, &dev, &base);
    let (dig1, _) = time(&a, &dev, &digest);
    let (plain2, _) = time(&a, &dev, &base);
    let (dig2, _) = time(&a, &dev, &digest);
    let plain = plain1.min(plain2);
    let dig = dig1.min(dig2);
    let mut o = std::io::stderr();
    writeln!(
        o,
        "image {mib} MiB, 1% changed ({} bytes in 100 runs)",
        100 * run
    )
    .unwrap();
    writeln!(o, "full flash: {full1:.2} / {full2:.2} s").unwrap();
    writeln!(
        o,
        "only-changed re-flash: {changed:.2} s, {written} bytes written ({:.1}x the best full flash)",
        full / changed
    )
    .unwrap();
    writeln!(
        o,
        "flash without / with sha256: {plain1:.2}, {plain2:.2} / {dig1:.2}, {dig2:.2} s (best: {:+.1}%)",
        (dig / plain - 1.0) * 100.0
    )
    .unwrap();
}
