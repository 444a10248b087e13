//! Mutation fuzzing of the table and superblock parsers: seeds are real images (GPT, MBR
//! with a logical partition, and each file system made by its Debian mkfs), bytes are
//! changed at random (mostly in the first 128 KiB and at the start of used ranges, where
//! the tables and superblocks are) or the image is cut short. Every case must return a
//! layout or a coded error: never panic, hang, or allocate 64 MiB or more at once.
//! `SPARSEKIT_LONG_TESTS=1` runs 50x more cases; `SPARSEKIT_FUZZ_CASES=N` sets the cases
//! per seed and `SPARSEKIT_FUZZ_SEED=S` the random stream. `fuzz/` holds the cargo-fuzz
//! target for libFuzzer runs.

mod common;

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{missing, sh, Rng};
use sparsekit_io::{Control, IoError, Storage};
use sparsekit_layout::layout;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: forwards to the system allocator, only recording sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: AllocLayout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: AllocLayout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: AllocLayout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: AllocLayout, n: usize) -> *mut u8 {
        LARGEST.fetch_max(n, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// A seed image with a few bytes patched and maybe a shorter size; reads copy from the
/// shared seed (no copy of the whole image per case).
struct Mutant {
    base: Arc<Vec<u8>>,
    size: u64,
    patches: Vec<(u64, u8)>,
}

impl Storage for Mutant {
    fn size(&self) -> Result<u64, IoError> {
        Ok(self.size)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, IoError> {
        if offset >= self.size {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(self.size - offset) as usize;
        buf[..n].copy_from_slice(&self.base[offset as usize..offset as usize + n]);
        for &(o, b) in &self.patches {
            if o >= offset && o < offset + n as u64 {
                buf[(o - offset) as usize] = b;
            }
        }
        Ok(n)
    }
    fn write_at(&self, _: &[u8], _: u64) -> Result<usize, IoError> {
        Err(IoError::from_errno("write", 30))
    }
    fn flush(&self) -> Result<(), IoError> {
        Ok(())
    }
}

/// Seed scripts run in a scratch folder; each leaves `s.img`.
const SEEDS: &[(&str, &[&str])] = &[
    ("truncate -s 8M s.img && mkfs.ext4 -q -F s.img", &["mkfs.ext4"]),
    ("truncate -s 8M s.img && mkfs.ext4 -q -F -O bigalloc,^resize_inode -b 4096 -C 16384 s.img", &["mkfs.ext4"]),
    ("truncate -s 4M s.img && mkfs.ext2 -q -F -O ^sparse_super,^resize_inode s.img", &["mkfs.ext2"]),
    ("truncate -s 2M s.img && mkfs.vfat -F 12 s.img", &["mkfs.vfat"]),
    ("truncate -s 16M s.img && mkfs.vfat -F 16 s.img", &["mkfs.vfat"]),
    ("truncate -s 34M s.img && mkfs.vfat -F 32 -s 1 s.img", &["mkfs.vfat"]),
    ("truncate -s 8M s.img && mkfs.exfat s.img", &["mkfs.exfat"]),
    ("truncate -s 8M s.img && mkfs.ntfs -Q -F s.img", &["mkfs.ntfs"]),
    ("truncate -s 64M s.img && mkfs.xfs -q -f s.img", &["mkfs.xfs"]),
    ("truncate -s 114M s.img && mkfs.btrfs -q -f s.img", &["mkfs.btrfs"]),
    ("truncate -s 1M s.img && mkswap s.img", &["mkswap"]),
    (
        "truncate -s 6M s.img && printf 'label: gpt\\nsize=2MiB\\nsize=2MiB\\n' | sfdisk -q s.img && truncate -s 2M f.img && mkfs.vfat -F 12 f.img && dd if=f.img of=s.img bs=1M seek=1 conv=notrunc status=none",
        &["sfdisk", "mkfs.vfat"],
    ),
    (
        "truncate -s 8M s.img && printf 'label: dos\\nsize=2MiB, type=83\\ntype=5\\nsize=2MiB, type=83\\nsize=1MiB, type=83\\n' | sfdisk -q s.img && truncate -s 2M e.img && mkfs.ext4 -q -F e.img && dd if=e.img of=s.img bs=1M seek=1 conv=notrunc status=none",
        &["sfdisk", "mkfs.ext4"],
    ),
];

fn env_u64(k: &str) -> Option<u64> {
    std::env::var(k).ok().and_then(|v| v.parse().ok())
}

#[test]
fn mutated_images_never_panic() {
    let long = std::env::var_os("SPARSEKIT_LONG_TESTS").is_some();
    let per_seed = env_u64("SPARSEKIT_FUZZ_CASES").unwrap_or(if long { 100_000 } else { 2_000 });
    let stream = env_u64("SPARSEKIT_FUZZ_SEED").unwrap_or(0);
    let mut total = 0;
    for (si, (script, tools)) in SEEDS.iter().enumerate() {
        if let Some(t) = missing(tools) {
            eprintln!("SKIP seed {si}: {t} is not installed");
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        if let Err(e) = sh(&format!(
            "cd '{}' && {{ {script}; }} >/dev/null 2>&1",
            dir.path().display()
        )) {
            eprintln!("SKIP seed {si}: {e}");
            continue;
        }
        let base = Arc::new(std::fs::read(dir.path().join("s.img")).unwrap());
        let size = base.len() as u64;
        // Where metadata lives: the used ranges of the clean seed.
        let seed_layout = layout(
            &Mutant {
                base: base.clone(),
                size,
                patches: Vec::new(),
            },
            &mut Control::none(),
        )
        .unwrap();
        assert!(
            seed_layout
                .partitions
                .iter()
                .any(|p| p.state == sparsekit_layout::State::Clean),
            "seed {si} is not read as a clean file system: {:?}",
            seed_layout.partitions
        );
        let used: Vec<(u64, u64)> = seed_layout
            .used
            .iter()
            .map(|r| (r.offset, r.length))
            .collect();
        let mut rng =
            Rng(0x9e37_79b9_7f4a_7c15 ^ (si as u64 + 1) ^ stream.wrapping_mul(0x1234_5678_9abc));
        LARGEST.store(0, Ordering::Relaxed);
        let t = std::time::Instant::now();
        for case in 0..per_seed {
            let mut patches = Vec::new();
            for _ in 0..1 + rng.next() % 8 {
                let o = match rng.next() % 10 {
                    0..=2 => rng.next() % size.min(128 << 10),
                    3..=7 => {
                        let (s, l) = used[(rng.next() % used.len() as u64) as usize];
                        s + rng.next() % l.min(64 << 10)
                    }
                    _ => rng.next() % size,
                };
                let b = match rng.next() % 4 {
                    0 => 0,
                    1 => 0xff,
                    _ => rng.next() as u8,
                };
                patches.push((o, b));
            }
            let cut = if rng.next().is_multiple_of(16) {
                rng.next() % size
            } else {
                size
            };
            let m = Mutant {
                base: base.clone(),
                size: cut,
                patches: patches.clone(),
            };
            let c0 = std::time::Instant::now();
            let r = catch_unwind(AssertUnwindSafe(|| layout(&m, &mut Control::none())));
            match r {
                Err(_) => {
                    panic!("seed {si} case {case}: panic with patches {patches:?}, size {cut}")
                }
                Ok(Err(e)) => assert!(
                    e.code().starts_with("ERR_SPARSEKIT_LAYOUT_"),
                    "seed {si} case {case}: uncoded error {e}"
                ),
                Ok(Ok(l)) => {
                    // The used ranges are sorted, disjoint, inside the device and add up.
                    let mut pos = 0;
                    let mut sum = 0;
                    for r in &l.used {
                        assert!(
                            r.offset >= pos && r.length > 0 && r.offset + r.length <= cut,
                            "seed {si} case {case}: {:?}",
                            l.used
                        );
                        pos = r.offset + r.length + 1;
                        sum += r.length;
                    }
                    assert_eq!(sum, l.used_bytes);
                }
            }
            assert!(
                c0.elapsed().as_secs() < 5,
                "seed {si} case {case}: took {:?}",
                c0.elapsed()
            );
            total += 1;
        }
        let largest = LARGEST.load(Ordering::Relaxed);
        assert!(
            largest < 64 << 20,
            "seed {si}: an allocation of {largest} bytes"
        );
        eprintln!(
            "seed {si}: {per_seed} cases in {:?}, largest allocation {largest}",
            t.elapsed()
        );
    }
    eprintln!("{total} cases");
}
