//! SHA3-512 of four equal-length messages at once: Keccak-f[1600] on four states in the
//! four 64-bit lanes of AVX2 registers (FIPS 202), chosen at run time. SHA3-512's rate is
//! 72 bytes, so a 128 KiB block is 1 821 permutations: the permutation is the whole cost.
//! The rounds go plane by plane from one state array into another (the five `D` values and
//! one plane's five lanes live at a time, the column parities gathered as the planes are
//! written), so the 16 ymm registers hold what is being worked on and each lane is loaded and
//! stored once per round; computing all 25 rotated lanes first spilled about 80 moves a round
//! and ran at 60% of this speed. On an AMD EPYC (Zen 3) one core hashes about 3x the bytes
//! OpenSSL 3.0's SHA3-512 does (bench/blocksync.sh).
//! Everywhere else (no AVX2, other architectures) [`sha3_512_x4`] hashes one by one with
//! [`sha3_512`], the scalar digest of one message (the `sha3` crate). [`Sha3Kernel`] names
//! the kernels; the fastest one the CPU has is chosen once, at run time.

use sha3::{Digest, Sha3_512};

use crate::record::DIGEST_LEN;

/// SHA3-512 of `data`: the digest the protocol carries for every block.
pub fn sha3_512(data: &[u8]) -> [u8; DIGEST_LEN] {
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(&Sha3_512::digest(data));
    out
}

/// SHA3-512 rate: 1600 - 2 * 512 bits = 72 bytes, 9 lanes.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const RATE: usize = 72;

/// A SHA3-512 kernel: the code that hashes four equal-length messages. [`Sha3Kernel::best`]
/// picks the fastest one the running CPU has, once; [`Sha3Kernel::available`] lists every
/// one it can run (the tests run them all against each other and the NIST vectors).
///
/// There is no AVX-512 kernel: none could be run or verified where this was written (no
/// AVX-512 CPU, and qemu 7.2's TCG does not implement AVX-512).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sha3Kernel {
    /// One message at a time, the `sha3` crate (every CPU).
    Scalar,
    /// Four messages in the four 64-bit lanes of AVX2 registers (x86_64 with AVX2).
    Avx2x4,
}

impl Sha3Kernel {
    /// Every kernel this CPU can run, slowest first.
    pub fn available() -> Vec<Sha3Kernel> {
        let mut v = vec![Sha3Kernel::Scalar];
        if avx2_detected() {
            v.push(Sha3Kernel::Avx2x4);
        }
        v
    }

    /// The fastest kernel this CPU can run (AVX2 -> scalar), detected once.
    /// `SPARSEKIT_NO_AVX2` set in the environment forces the scalar one.
    pub fn best() -> Sha3Kernel {
        static BEST: std::sync::OnceLock<Sha3Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let no_avx2 = std::env::var_os("SPARSEKIT_NO_AVX2").is_some();
            if !no_avx2 && avx2_detected() {
                Sha3Kernel::Avx2x4
            } else {
                Sha3Kernel::Scalar
            }
        })
    }

    /// A short name for reports: `scalar`, `avx2x4`.
    pub fn name(self) -> &'static str {
        match self {
            Sha3Kernel::Scalar => "scalar",
            Sha3Kernel::Avx2x4 => "avx2x4",
        }
    }

    /// SHA3-512 of four messages with this kernel; the digests in order. Messages of
    /// different lengths, or a kernel this CPU lacks, go one by one through the scalar one.
    pub fn sha3_512_x4(self, m: [&[u8]; 4]) -> [[u8; DIGEST_LEN]; 4] {
        let same = m.iter().all(|x| x.len() == m[0].len());
        match self {
            #[cfg(target_arch = "x86_64")]
            Sha3Kernel::Avx2x4 if same && avx2_detected() => {
                // SAFETY: AVX2 is present (checked at run time).
                unsafe { avx2::sha3_512_x4(m) }
            }
            _ => [
                sha3_512(m[0]),
                sha3_512(m[1]),
                sha3_512(m[2]),
                sha3_512(m[3]),
            ],
        }
    }
}

/// Whether the CPU has AVX2 (cached by std).
fn avx2_detected() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// SHA3-512 of four messages of the same length with the fastest kernel of this CPU
/// ([`Sha3Kernel::best`]); the digests in order.
pub fn sha3_512_x4(m: [&[u8]; 4]) -> [[u8; DIGEST_LEN]; 4] {
    Sha3Kernel::best().sha3_512_x4(m)
}

/// Whether the 4-way AVX2 Keccak is used on this CPU.
pub fn has_avx2() -> bool {
    Sha3Kernel::best() == Sha3Kernel::Avx2x4
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{DIGEST_LEN, RATE};

    /// Round constants of Keccak-f[1600] (FIPS 202, 3.2.5).
    const RC: [u64; 24] = [
        0x0000000000000001,
        0x0000000000008082,
        0x800000000000808a,
        0x8000000080008000,
        0x000000000000808b,
        0x0000000080000001,
        0x8000000080008081,
        0x8000000000008009,
        0x000000000000008a,
        0x0000000000000088,
        0x0000000080008009,
        0x000000008000000a,
        0x000000008000808b,
        0x800000000000008b,
        0x8000000000008089,
        0x8000000000008003,
        0x8000000000008002,
        0x8000000000000080,
        0x000000000000800a,
        0x800000008000000a,
        0x8000000080008081,
        0x8000000000008080,
        0x0000000080000001,
        0x8000000080008008,
    ];

    #[inline(always)]
    unsafe fn rol<const L: i32, const R: i32>(v: __m256i) -> __m256i {
        _mm256_or_si256(_mm256_slli_epi64::<L>(v), _mm256_srli_epi64::<R>(v))
    }

    #[inline(always)]
    unsafe fn xor5(a: &[__m256i; 25], x: usize) -> __m256i {
        _mm256_xor_si256(
            _mm256_xor_si256(
                _mm256_xor_si256(a[x], a[x + 5]),
                _mm256_xor_si256(a[x + 10], a[x + 15]),
            ),
            a[x + 20],
        )
    }

    /// theta's column parities `C[x]` of a state.
    #[inline(always)]
    unsafe fn parities(a: &[__m256i; 25]) -> [__m256i; 5] {
        [xor5(a, 0), xor5(a, 1), xor5(a, 2), xor5(a, 3), xor5(a, 4)]
    }

    /// One round (theta, rho, pi, chi, iota) from `a` into `e`, plane by plane: each output
    /// plane needs only the five `D` values and its five inputs live, so the state is read
    /// and written once per round instead of spilling 25 lanes plus temporaries around 16
    /// registers. `c` holds `a`'s column parities on entry and `e`'s on return (computed
    /// while the planes are produced).
    #[inline(always)]
    unsafe fn round(a: &[__m256i; 25], e: &mut [__m256i; 25], c: &mut [__m256i; 5], rc: u64) {
        let x = _mm256_xor_si256;
        let d0 = x(c[4], rol::<1, 63>(c[1]));
        let d1 = x(c[0], rol::<1, 63>(c[2]));
        let d2 = x(c[1], rol::<1, 63>(c[3]));
        let d3 = x(c[2], rol::<1, 63>(c[4]));
        let d4 = x(c[3], rol::<1, 63>(c[0]));
        #[inline(always)]
        unsafe fn chi(e: &mut [__m256i; 25], c: &mut [__m256i; 5], y: usize, b: [__m256i; 5]) {
            for i in 0..5 {
                let v = _mm256_xor_si256(b[i], _mm256_andnot_si256(b[(i + 1) % 5], b[(i + 2) % 5]));
                e[5 * y + i] = v;
                c[i] = _mm256_xor_si256(c[i], v);
            }
        }
        let b = [
            x(a[0], d0),
            rol::<44, 20>(x(a[6], d1)),
            rol::<43, 21>(x(a[12], d2)),
            rol::<21, 43>(x(a[18], d3)),
            rol::<14, 50>(x(a[24], d4)),
        ];
        // chi on plane 0, then iota on lane 0 (before it enters the parities).
        for i in 0..5 {
            let mut v = x(b[i], _mm256_andnot_si256(b[(i + 1) % 5], b[(i + 2) % 5]));
            if i == 0 {
                v = x(v, _mm256_set1_epi64x(rc as i64));
            }
            e[i] = v;
            c[i] = v;
        }
        chi(
            e,
            c,
            1,
            [
                rol::<28, 36>(x(a[3], d3)),
                rol::<20, 44>(x(a[9], d4)),
                rol::<3, 61>(x(a[10], d0)),
                rol::<45, 19>(x(a[16], d1)),
                rol::<61, 3>(x(a[22], d2)),
            ],
        );
        chi(
            e,
            c,
            2,
            [
                rol::<1, 63>(x(a[1], d1)),
                rol::<6, 58>(x(a[7], d2)),
                rol::<25, 39>(x(a[13], d3)),
                rol::<8, 56>(x(a[19], d4)),
                rol::<18, 46>(x(a[20], d0)),
            ],
        );
        chi(
            e,
            c,
            3,
            [
                rol::<27, 37>(x(a[4], d4)),
                rol::<36, 28>(x(a[5], d0)),
                rol::<10, 54>(x(a[11], d1)),
                rol::<15, 49>(x(a[17], d2)),
                rol::<56, 8>(x(a[23], d3)),
            ],
        );
        chi(
            e,
            c,
            4,
            [
                rol::<62, 2>(x(a[2], d2)),
                rol::<55, 9>(x(a[8], d3)),
                rol::<39, 25>(x(a[14], d4)),
                rol::<41, 23>(x(a[15], d0)),
                rol::<2, 62>(x(a[21], d1)),
            ],
        );
    }

    /// Keccak-f[1600] on four states at once; lane `x + 5y` of state `k` is 64-bit
    /// element `k` of `a[x + 5y]`. Rounds alternate between `a` and a second state.
    #[target_feature(enable = "avx2")]
    unsafe fn keccak_f1600_x4(a: &mut [__m256i; 25]) {
        let mut e = [_mm256_setzero_si256(); 25];
        let mut c = parities(a);
        for r in (0..24).step_by(2) {
            round(a, &mut e, &mut c, RC[r]);
            round(&e, a, &mut c, RC[r + 1]);
        }
    }

    #[inline(always)]
    unsafe fn load4(m: &[&[u8; RATE]; 4], off: usize) -> __m256i {
        let w = |k: usize| i64::from_le_bytes(m[k][off..off + 8].try_into().unwrap());
        _mm256_set_epi64x(w(3), w(2), w(1), w(0))
    }

    #[target_feature(enable = "avx2")]
    unsafe fn absorb(a: &mut [__m256i; 25], m: &[&[u8]; 4], off: usize) {
        // One bounds check per message and block; the nine lane loads need none.
        let b = |k: usize| -> &[u8; RATE] { m[k][off..off + RATE].try_into().unwrap() };
        let blk = [b(0), b(1), b(2), b(3)];
        for (i, lane) in a.iter_mut().take(RATE / 8).enumerate() {
            *lane = _mm256_xor_si256(*lane, load4(&blk, 8 * i));
        }
        keccak_f1600_x4(a);
    }

    /// SHA3-512 of four messages of equal length.
    #[target_feature(enable = "avx2")]
    pub unsafe fn sha3_512_x4(m: [&[u8]; 4]) -> [[u8; DIGEST_LEN]; 4] {
        let len = m[0].len();
        let mut a = [_mm256_setzero_si256(); 25];
        let full = len / RATE * RATE;
        let mut off = 0;
        while off < full {
            absorb(&mut a, &m, off);
            off += RATE;
        }
        // The last, padded block (FIPS 202 B.2: SHA3 suffix 01, then pad10*1: 0x06 ... 0x80).
        let mut last = [[0u8; RATE]; 4];
        for k in 0..4 {
            let tail = &m[k][full..];
            last[k][..tail.len()].copy_from_slice(tail);
            last[k][tail.len()] ^= 0x06;
            last[k][RATE - 1] ^= 0x80;
        }
        let lm = [&last[0][..], &last[1][..], &last[2][..], &last[3][..]];
        absorb(&mut a, &lm, 0);
        let mut out = [[0u8; DIGEST_LEN]; 4];
        for i in 0..DIGEST_LEN / 8 {
            let mut w = [0u64; 4];
            _mm256_storeu_si256(w.as_mut_ptr() as *mut __m256i, a[i]);
            for k in 0..4 {
                out[k][8 * i..8 * i + 8].copy_from_slice(&w[k].to_le_bytes());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn check(len: usize, seed: u64) {
        let v: Vec<Vec<u8>> = (0..4).map(|k| noise(len, seed * 4 + k)).collect();
        let got = sha3_512_x4([&v[0], &v[1], &v[2], &v[3]]);
        for k in 0..4 {
            assert_eq!(got[k], sha3_512(&v[k]), "length {len}, message {k}");
        }
    }

    #[test]
    fn equals_sha3_crate_around_every_rate_boundary() {
        if !has_avx2() {
            println!("no AVX2 on this CPU: the scalar path is what runs (and is the reference)");
        }
        for len in 0..=4 * RATE + 1 {
            check(len, len as u64);
        }
        for len in [131_072, 131_071, 131_073, 37_856, 299_999] {
            check(len, len as u64);
        }
    }

    #[test]
    fn equals_sha3_crate_on_random_lengths() {
        // 500 calls of four inputs each: 2 000 random inputs of lengths 0..300 000 (about
        // 4 s of one core; the edge lengths are in the test above); SPARSEKIT_LONG_TESTS=1
        // makes it 100 000.
        let long = std::env::var_os("SPARSEKIT_LONG_TESTS").is_some();
        let (n, max) = if long {
            (25_000, 300_000)
        } else {
            (500, 300_000)
        };
        let mut x = 0x1234_5678_9abc_def1u64;
        for i in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            check((x % max) as usize, i);
        }
    }

    #[test]
    fn unequal_lengths_fall_back() {
        let a = noise(100, 1);
        let b = noise(200, 2);
        let got = sha3_512_x4([&a, &b, &a, &b]);
        assert_eq!(got[1], sha3_512(&b));
        assert_eq!(got[2], sha3_512(&a));
    }
}
