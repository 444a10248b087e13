//! Mutation fuzzing of valid images (header, L1, L2, refcount, snapshot and data bytes
//! changed at random): every case must return `Ok` or a coded error, never panic, and never
//! allocate 64 MiB or more at once. `SPARSEKIT_LONG_TESTS=1` runs 20x more cases;
//! `SPARSEKIT_FUZZ_CASES=N` runs N cases per seed and `SPARSEKIT_FUZZ_SEED=S` changes the
//! random stream (for long runs without libFuzzer; `fuzz/` holds the cargo-fuzz target).

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{catch_unwind, AssertUnwindSafe};
mod common;

use common::{have_qemu, sh};
use std::sync::atomic::{AtomicUsize, Ordering};

use sparsekit_io::{Control, MemStorage};
use sparsekit_qcow2::{Image, OpenOptions};

/// Largest single allocation seen.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: forwards to the system allocator, only recording sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LARGEST.fetch_max(l.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LARGEST.fetch_max(n, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Small, fast seeds: 512-byte and 4 KiB clusters, compressed, zero, extended L2, snapshots.
const SEEDS: &[&str] = &[
    "qemu-img create -q -f qcow2 -o cluster_size=4k t.qcow2 256k && qemu-io -f qcow2 -c 'write -P 1 0 8k' -c 'write -z 16k 4k' -c 'write -P 2 200k 4k' t.qcow2 && qemu-img snapshot -c s t.qcow2",
    "yes abc | head -c 20000 > r && truncate -s 64k r && qemu-img convert -c -O qcow2 -o cluster_size=4k r t.qcow2",
    "yes abc | head -c 20000 > r && truncate -s 64k r && qemu-img convert -c -O qcow2 -o cluster_size=4k,compression_type=zstd r t.qcow2",
    "qemu-img create -q -f qcow2 -o cluster_size=16k,extended_l2=on t.qcow2 128k && qemu-io -f qcow2 -c 'write -P 1 1k 2k' -c 'write -z 40k 1k' t.qcow2",
    "qemu-img create -q -f qcow2 -o cluster_size=512,compat=0.10 t.qcow2 64k && qemu-io -f qcow2 -c 'write -P 1 0 3k' -c 'write -P 2 40k 1k' t.qcow2",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Every read-only operation on `bytes`; errors are fine, panics are not.
fn run_case(bytes: Vec<u8>) {
    let Ok(img) = Image::from_storage(
        Box::new(MemStorage::from_vec(bytes)),
        &OpenOptions::default(),
    ) else {
        return;
    };
    let mut ctl = Control::none();
    let _ = img.map_range(0, 1 << 20, &mut ctl);
    let _ = img.info();
    if img.size() <= 1 << 30 {
        let _ = img.allocation();
    }
    let mut b = vec![0u8; img.size().min(256 << 10) as usize];
    let _ = img.read_at(&mut b, 0);
    let _ = img.check(&mut ctl);
}

/// Offsets worth mutating: the header cluster's first 512 bytes and the first bytes of
/// every other cluster (tables start there), plus anywhere.
fn pick(rng: &mut Rng, len: usize, cluster: usize) -> usize {
    match rng.below(4) {
        0 => rng.below(512.min(len as u64)) as usize,
        1 | 2 => {
            let clusters = len.div_ceil(cluster);
            let c = rng.below(clusters as u64) as usize;
            (c * cluster + rng.below(64) as usize).min(len - 1)
        }
        _ => rng.below(len as u64) as usize,
    }
}

#[test]
fn mutated_images_never_panic() {
    if !have_qemu() {
        return;
    }
    let long = std::env::var_os("SPARSEKIT_LONG_TESTS").is_some();
    let per_seed: u64 = std::env::var("SPARSEKIT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if long { 400_000 } else { 20_000 });
    let stream: u64 = std::env::var("SPARSEKIT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut total = 0u64;
    for (si, script) in SEEDS.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        sh(dir.path(), &format!("({script}) >/dev/null"));
        let seed = std::fs::read(dir.path().join("t.qcow2")).unwrap();
        let cluster = 1usize << u32::from_be_bytes(seed[20..24].try_into().unwrap());
        // The unmutated seed reads fine.
        run_case(seed.clone());
        let mut rng =
            Rng(0x9e37_79b9_7f4a_7c15 ^ (si as u64 + 1) ^ stream.wrapping_mul(0x1000_0000_01b3));
        for case in 0..per_seed {
            let mut b = seed.clone();
            let n = 1 + rng.below(4);
            let mut edits = Vec::new();
            for _ in 0..n {
                let at = pick(&mut rng, b.len(), cluster);
                let v = match rng.below(3) {
                    0 => b[at] ^ (1 << rng.below(8)),
                    1 => 0xff,
                    _ => rng.next() as u8,
                };
                b[at] = v;
                edits.push((at, v));
            }
            if rng.below(50) == 0 {
                let cut = rng.below(b.len() as u64) as usize;
                b.truncate(cut);
                edits.push((cut, 0));
            }
            let r = catch_unwind(AssertUnwindSafe(|| run_case(b)));
            assert!(
                r.is_ok(),
                "seed {si} case {case} (SPARSEKIT_FUZZ_SEED={stream}): panic with edits (offset, value) {edits:?}"
            );
            total += 1;
        }
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    println!("{total} mutated images; largest allocation {largest} bytes");
    assert!(largest < 64 << 20, "an allocation of {largest} bytes");
}
