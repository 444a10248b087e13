//! Every SHA3-512 kernel this CPU can run (scalar and, with AVX2, the 4-way one; issue #26)
//! against the FIPS 202 / NIST SHA3-512 test vectors and against the `sha3` crate on random
//! inputs, and against each other. The kernels not available here (no AVX2; AVX-512 has no
//! kernel) are named in the output.

mod common;

use common::noise;
use sha3::{Digest, Sha3_512};
use sparsekit_blocksync::Sha3Kernel;

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn reference(m: &[u8]) -> [u8; 64] {
    Sha3_512::digest(m).into()
}

fn kernels() -> Vec<Sha3Kernel> {
    let k = Sha3Kernel::available();
    println!(
        "kernels on this CPU: {:?} (best: {})",
        k.iter().map(|k| k.name()).collect::<Vec<_>>(),
        Sha3Kernel::best().name()
    );
    assert_eq!(k[0], Sha3Kernel::Scalar);
    assert!(k.contains(&Sha3Kernel::best()));
    k
}

#[test]
fn nist_vectors_on_every_kernel() {
    // FIPS 202 SHA3-512 examples (NIST CSRC "SHA3-512_Msg0/24/448/1600" and the
    // million-'a' vector), cross-checked with OpenSSL (python3 hashlib.sha3_512).
    let vectors: [(&[u8], &str); 4] = [
        (
            b"",
            "a69f73cca23a9ac5c8b567dc185a756e97c982164fe25859e0d1dcc1475c80a6\
             15b2123af1f5f94c11e3e9402c3ac558f500199d95b6d3e301758586281dcd26",
        ),
        (
            b"abc",
            "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e\
             10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0",
        ),
        (
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "04a371e84ecfb5b8b77cb48610fca8182dd457ce6f326a0fd3d7ec2f1e91636d\
             ee691fbe0c985302ba1b0d8dc78c086346b533b49c030d99a27daf1139d6e75e",
        ),
        (
            b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno\
              ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
            "afebb2ef542e6579c50cad06d2e578f9f8dd6881d7dc824d26360feebf18a4fa\
             73e3261122948efcfd492e74e82e2189ed0fb440d187f382270cb455f21dd185",
        ),
    ];
    let million_a = vec![b'a'; 1_000_000];
    let million_a_digest = "3c3a876da14034ab60627c077bb98f7e120a2a5370212dffb3385a18d4f38859\
                            ed311d0a9d5141ce9cc5c66ee689b266a8aa18ace8282a0e0db596c90b0a7b87";
    let all: Vec<(&[u8], &str)> = vectors
        .iter()
        .copied()
        .chain([(&million_a[..], million_a_digest)])
        .collect();
    assert_eq!(all[2].0.len() * 8, 448);
    assert_eq!(all[3].0.len() * 8, 896);
    for k in kernels() {
        for (i, &(m, want)) in all.iter().enumerate() {
            // The vector in every lane, and in lane i % 4 among random messages of its length
            // (a lane mix-up would show).
            let same = k.sha3_512_x4([m, m, m, m]);
            for (lane, d) in same.iter().enumerate() {
                assert_eq!(hex(d), want, "kernel {}, vector {i}, lane {lane}", k.name());
            }
            let others: Vec<Vec<u8>> = (0..4).map(|j| noise(m.len(), j + 10 * i as u64)).collect();
            let mut ms: [&[u8]; 4] = [&others[0], &others[1], &others[2], &others[3]];
            ms[i % 4] = m;
            let got = k.sha3_512_x4(ms);
            assert_eq!(
                hex(&got[i % 4]),
                want,
                "kernel {}, vector {i} among others",
                k.name()
            );
            for lane in 0..4 {
                assert_eq!(
                    got[lane],
                    reference(ms[lane]),
                    "kernel {}, lane {lane}",
                    k.name()
                );
            }
        }
    }
}

#[test]
fn random_inputs_equal_across_kernels_and_the_sha3_crate() {
    let ks = kernels();
    // Lengths: every one up to three blocks of the 72-byte rate, the 128 KiB block and its
    // neighbours, and 200 random ones below 200 000 bytes (about a second in all).
    let mut lens: Vec<usize> = (0..=3 * 72 + 1).collect();
    lens.extend([131_071, 131_072, 131_073, 72 * 1821, 72 * 1821 + 71]);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        lens.push((x % 200_000) as usize);
    }
    for (i, &len) in lens.iter().enumerate() {
        let v: Vec<Vec<u8>> = (0..4).map(|j| noise(len, 4 * i as u64 + j)).collect();
        let m = [&v[0][..], &v[1][..], &v[2][..], &v[3][..]];
        let want: Vec<[u8; 64]> = m.iter().map(|x| reference(x)).collect();
        for &k in &ks {
            let got = k.sha3_512_x4(m);
            assert_eq!(got.to_vec(), want, "kernel {}, length {len}", k.name());
        }
        assert_eq!(
            sparsekit_blocksync::sha3_512_x4(m).to_vec(),
            want,
            "best kernel, length {len}"
        );
        assert_eq!(
            sparsekit_blocksync::sha3_512(m[0]),
            want[0],
            "sha3_512, length {len}"
        );
    }
}

#[test]
fn unequal_lengths_on_every_kernel() {
    let a = noise(100, 1);
    let b = noise(73, 2);
    let c = noise(0, 3);
    let d = noise(131_072, 4);
    let m = [&a[..], &b[..], &c[..], &d[..]];
    for k in kernels() {
        let got = k.sha3_512_x4(m);
        for lane in 0..4 {
            assert_eq!(
                got[lane],
                reference(m[lane]),
                "kernel {}, lane {lane}",
                k.name()
            );
        }
    }
}
