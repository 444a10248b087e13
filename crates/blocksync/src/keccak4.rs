//! SHA3-512 of four equal-length messages at once: Keccak-f[1600] on four states in the
//! four 64-bit lanes of AVX2 registers (FIPS 202), chosen at run time. SHA3-512's rate is
//! 72 bytes, so a 128 KiB block is 1 821 permutations: the permutation is the whole cost,
//! and four of them in one instruction stream run about twice as fast as one scalar one.
//! Everywhere else (no AVX2, other architectures) [`sha3_512_x4`] hashes one by one.

use crate::hash::sha3_512;
use crate::record::DIGEST_LEN;

/// SHA3-512 rate: 1600 - 2 * 512 bits = 72 bytes, 9 lanes.
const RATE: usize = 72;

/// SHA3-512 of four messages of the same length; the digests in order. Uses AVX2 when the
/// CPU has it, the scalar `sha3` crate otherwise.
pub fn sha3_512_x4(m: [&[u8]; 4]) -> [[u8; DIGEST_LEN]; 4] {
    let same = m.iter().all(|x| x.len() == m[0].len());
    #[cfg(target_arch = "x86_64")]
    if same && has_avx2() {
        // SAFETY: AVX2 is present (checked at run time).
        return unsafe { avx2::sha3_512_x4(m) };
    }
    let _ = same;
    [
        sha3_512(m[0]),
        sha3_512(m[1]),
        sha3_512(m[2]),
        sha3_512(m[3]),
    ]
}

/// Whether the 4-way AVX2 Keccak is used on this CPU.
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::env::var_os("SPARSEKIT_NO_AVX2").is_some() {
            return false;
        }
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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

    /// Keccak-f[1600] on four states at once; lane `x + 5y` of state `k` is 64-bit
    /// element `k` of `a[x + 5y]`.
    #[target_feature(enable = "avx2")]
    unsafe fn keccak_f1600_x4(a: &mut [__m256i; 25]) {
        for rc in RC {
            // theta
            let c = [xor5(a, 0), xor5(a, 1), xor5(a, 2), xor5(a, 3), xor5(a, 4)];
            for x in 0..5 {
                let d = _mm256_xor_si256(c[(x + 4) % 5], rol::<1, 63>(c[(x + 1) % 5]));
                for y in 0..5 {
                    a[x + 5 * y] = _mm256_xor_si256(a[x + 5 * y], d);
                }
            }
            // rho and pi, then chi
            let b0 = a[0];
            let b1 = rol::<44, 20>(a[6]);
            let b2 = rol::<43, 21>(a[12]);
            let b3 = rol::<21, 43>(a[18]);
            let b4 = rol::<14, 50>(a[24]);
            let b5 = rol::<28, 36>(a[3]);
            let b6 = rol::<20, 44>(a[9]);
            let b7 = rol::<3, 61>(a[10]);
            let b8 = rol::<45, 19>(a[16]);
            let b9 = rol::<61, 3>(a[22]);
            let b10 = rol::<1, 63>(a[1]);
            let b11 = rol::<6, 58>(a[7]);
            let b12 = rol::<25, 39>(a[13]);
            let b13 = rol::<8, 56>(a[19]);
            let b14 = rol::<18, 46>(a[20]);
            let b15 = rol::<27, 37>(a[4]);
            let b16 = rol::<36, 28>(a[5]);
            let b17 = rol::<10, 54>(a[11]);
            let b18 = rol::<15, 49>(a[17]);
            let b19 = rol::<56, 8>(a[23]);
            let b20 = rol::<62, 2>(a[2]);
            let b21 = rol::<55, 9>(a[8]);
            let b22 = rol::<39, 25>(a[14]);
            let b23 = rol::<41, 23>(a[15]);
            let b24 = rol::<2, 62>(a[21]);
            a[0] = _mm256_xor_si256(b0, _mm256_andnot_si256(b1, b2));
            a[1] = _mm256_xor_si256(b1, _mm256_andnot_si256(b2, b3));
            a[2] = _mm256_xor_si256(b2, _mm256_andnot_si256(b3, b4));
            a[3] = _mm256_xor_si256(b3, _mm256_andnot_si256(b4, b0));
            a[4] = _mm256_xor_si256(b4, _mm256_andnot_si256(b0, b1));
            a[5] = _mm256_xor_si256(b5, _mm256_andnot_si256(b6, b7));
            a[6] = _mm256_xor_si256(b6, _mm256_andnot_si256(b7, b8));
            a[7] = _mm256_xor_si256(b7, _mm256_andnot_si256(b8, b9));
            a[8] = _mm256_xor_si256(b8, _mm256_andnot_si256(b9, b5));
            a[9] = _mm256_xor_si256(b9, _mm256_andnot_si256(b5, b6));
            a[10] = _mm256_xor_si256(b10, _mm256_andnot_si256(b11, b12));
            a[11] = _mm256_xor_si256(b11, _mm256_andnot_si256(b12, b13));
            a[12] = _mm256_xor_si256(b12, _mm256_andnot_si256(b13, b14));
            a[13] = _mm256_xor_si256(b13, _mm256_andnot_si256(b14, b10));
            a[14] = _mm256_xor_si256(b14, _mm256_andnot_si256(b10, b11));
            a[15] = _mm256_xor_si256(b15, _mm256_andnot_si256(b16, b17));
            a[16] = _mm256_xor_si256(b16, _mm256_andnot_si256(b17, b18));
            a[17] = _mm256_xor_si256(b17, _mm256_andnot_si256(b18, b19));
            a[18] = _mm256_xor_si256(b18, _mm256_andnot_si256(b19, b15));
            a[19] = _mm256_xor_si256(b19, _mm256_andnot_si256(b15, b16));
            a[20] = _mm256_xor_si256(b20, _mm256_andnot_si256(b21, b22));
            a[21] = _mm256_xor_si256(b21, _mm256_andnot_si256(b22, b23));
            a[22] = _mm256_xor_si256(b22, _mm256_andnot_si256(b23, b24));
            a[23] = _mm256_xor_si256(b23, _mm256_andnot_si256(b24, b20));
            a[24] = _mm256_xor_si256(b24, _mm256_andnot_si256(b20, b21));
            // iota
            a[0] = _mm256_xor_si256(a[0], _mm256_set1_epi64x(rc as i64));
        }
    }

    #[inline(always)]
    unsafe fn load4(m: &[&[u8]; 4], off: usize) -> __m256i {
        let w = |k: usize| i64::from_le_bytes(m[k][off..off + 8].try_into().unwrap());
        _mm256_set_epi64x(w(3), w(2), w(1), w(0))
    }

    #[target_feature(enable = "avx2")]
    unsafe fn absorb(a: &mut [__m256i; 25], m: &[&[u8]; 4], off: usize) {
        for (i, lane) in a.iter_mut().take(RATE / 8).enumerate() {
            *lane = _mm256_xor_si256(*lane, load4(m, off + 8 * i));
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
        // SPARSEKIT_LONG_TESTS=1: the 10 000 inputs of lengths 0..300 000 (minutes).
        let long = std::env::var_os("SPARSEKIT_LONG_TESTS").is_some();
        let (n, max) = if long {
            (2_500, 300_000)
        } else {
            (200, 20_000)
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
