use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::Error;

/// A hash algorithm sparsekit can compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// SHA-256 (FIPS 180-4); bmap 2.0 range checksums.
    Sha256,
    /// SHA-1; only for reading bmap 1.3 files.
    Sha1,
    /// SHA3-512 (FIPS 202); the blockcopy protocol's block hash.
    Sha3_512,
    /// BLAKE3, 256-bit output.
    Blake3,
}

impl Algorithm {
    /// The name used on the command line and in the JS API (`sha256`, `sha1`, `sha3-512`, `blake3`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha1 => "sha1",
            Algorithm::Sha3_512 => "sha3-512",
            Algorithm::Blake3 => "blake3",
        }
    }

    /// Digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Algorithm::Sha256 | Algorithm::Blake3 => 32,
            Algorithm::Sha1 => 20,
            Algorithm::Sha3_512 => 64,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.to_ascii_lowercase().as_str() {
            "sha256" | "sha-256" => Ok(Algorithm::Sha256),
            "sha1" | "sha-1" => Ok(Algorithm::Sha1),
            "sha3-512" | "sha3_512" => Ok(Algorithm::Sha3_512),
            "blake3" => Ok(Algorithm::Blake3),
            _ => Err(Error::UnknownAlgorithm(s.to_string())),
        }
    }
}

/// An incremental hasher for any [`Algorithm`].
#[derive(Clone)]
pub struct Hasher(Inner);

#[derive(Clone)]
enum Inner {
    Sha256(sha2::Sha256),
    Sha1(sha1::Sha1),
    Sha3_512(sha3::Sha3_512),
    // Boxed: blake3::Hasher is ~1.9 KiB and would make every Hasher that large.
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(algorithm: Algorithm) -> Self {
        Hasher(match algorithm {
            Algorithm::Sha256 => Inner::Sha256(sha2::Sha256::new()),
            Algorithm::Sha1 => Inner::Sha1(sha1::Sha1::new()),
            Algorithm::Sha3_512 => Inner::Sha3_512(sha3::Sha3_512::new()),
            Algorithm::Blake3 => Inner::Blake3(Box::default()),
        })
    }

    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            Inner::Sha256(h) => h.update(data),
            Inner::Sha1(h) => h.update(data),
            Inner::Sha3_512(h) => h.update(data),
            // Large inputs: blake3's SIMD path works per call, so one call per chunk is best.
            Inner::Blake3(h) => {
                h.update(data);
            }
        }
    }

    /// Finish and return the raw digest.
    pub fn finish(self) -> Vec<u8> {
        match self.0 {
            Inner::Sha256(h) => h.finalize().to_vec(),
            Inner::Sha1(h) => h.finalize().to_vec(),
            Inner::Sha3_512(h) => h.finalize().to_vec(),
            Inner::Blake3(h) => h.finalize().as_bytes().to_vec(),
        }
    }

    /// Finish and return the digest as lowercase hex.
    pub fn finish_hex(self) -> String {
        hex::encode(self.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_of(a: Algorithm, data: &[u8]) -> String {
        let mut h = Hasher::new(a);
        h.update(data);
        h.finish_hex()
    }

    #[test]
    fn names_round_trip() {
        for a in [
            Algorithm::Sha256,
            Algorithm::Sha1,
            Algorithm::Sha3_512,
            Algorithm::Blake3,
        ] {
            assert_eq!(a.name().parse::<Algorithm>().unwrap(), a);
            assert_eq!(hex_of(a, b"").len(), a.output_len() * 2);
        }
        assert!(
            matches!("md5".parse::<Algorithm>(), Err(Error::UnknownAlgorithm(s)) if s == "md5")
        );
    }

    #[test]
    fn known_vectors() {
        assert_eq!(
            hex_of(Algorithm::Sha1, b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex_of(Algorithm::Sha3_512, b""),
            "a69f73cca23a9ac5c8b567dc185a756e97c982164fe25859e0d1dcc1475c80a6\
             15b2123af1f5f94c11e3e9402c3ac558f500199d95b6d3e301758586281dcd26"
        );
        // BLAKE3 official test_vectors.json: input length 0 and 1 (byte 0).
        assert_eq!(
            hex_of(Algorithm::Blake3, b""),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(
            hex_of(Algorithm::Blake3, &[0]),
            "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"
        );
    }
}
