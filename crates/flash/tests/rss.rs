//! Peak memory while flashing a 1 GiB image (4 GiB with SPARSEKIT_LONG_TESTS=1;
//! zstd-compressed, streamed, with a bmap) to three loop devices: the reader runs at most
//! `QUEUE` chunks ahead of the slowest destination, so the resident set stays far below
//! the 200 MiB bound (an image five times that size, so a reader that buffered the stream
//! would pass it). Its own test binary, so that no other test's allocations count in
//! `VmHWM`.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use sparsekit_bmap::BmapChoice;
use sparsekit_flash::{flash, FlashOptions};
use sparsekit_io::Control;
use sparsekit_testfs::{is_root, pattern, run};

fn vm_hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_large_image_to_three_loop_devices_under_200_mib() {
    let t = "a_large_image_to_three_loop_devices_under_200_mib";
    if !is_root() {
        eprintln!("SKIP {t}: not root (losetup needs root)");
        return;
    }
    let long = std::env::var_os("SPARSEKIT_LONG_TESTS").is_some();
    let size: u64 = if long { 4 << 30 } else { 1 << 30 };
    let dir = tempfile::Builder::new()
        .prefix("sparsekit-flash-rss-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let img = dir.path().join("os.img");
    let f = File::create(&img).unwrap();
    f.set_len(size).unwrap();
    // 64 MiB of data in 64 runs spread over the 4 GiB.
    let chunk = pattern(1 << 20, 11);
    for i in 0..64u64 {
        f.write_all_at(&chunk, i * (size / 64)).unwrap();
    }
    drop(f);
    let bmap = sparsekit_bmap::create(&img, &Default::default(), &mut Control::none()).unwrap();
    let zst = dir.path().join("os.img.zst");
    if let Err(e) = run(
        "zstd",
        &[
            "-q",
            "-1",
            "-T0",
            img.to_str().unwrap(),
            "-o",
            zst.to_str().unwrap(),
        ],
    ) {
        eprintln!("SKIP {t}: {e}");
        return;
    }
    struct Detach(Vec<String>);
    impl Drop for Detach {
        fn drop(&mut self) {
            for d in &self.0 {
                let _ = run("losetup", &["-d", d]);
            }
        }
    }
    let mut loops = Detach(Vec::new());
    for i in 0..3 {
        let b = dir.path().join(format!("dev{i}.img"));
        File::create(&b).unwrap().set_len(size).unwrap();
        loops.0.push(
            run("losetup", &["-f", "--show", b.to_str().unwrap()])
                .unwrap()
                .trim()
                .to_string(),
        );
    }
    let dsts: Vec<PathBuf> = loops.0.iter().map(PathBuf::from).collect();
    let before = vm_hwm_kib();
    let o = FlashOptions {
        bmap: BmapChoice::Given(Box::new(bmap.clone())),
        ..FlashOptions::default()
    };
    let r = flash(zst.to_str().unwrap(), &dsts, &o, None, &mut Control::none()).unwrap();
    let peak = vm_hwm_kib();
    for d in &r.destinations {
        assert!(d.error.is_none() && d.verified, "{:?}", d.error);
        assert_eq!(d.bytes_written, 64 << 20);
    }
    assert_eq!(r.image_size, size);
    eprintln!(
        "VmHWM before {before} KiB, after flashing {} MiB to 3 loop devices {peak} KiB",
        size >> 20
    );
    assert!(peak < 200 * 1024, "peak RSS {peak} KiB");
}
