//! Compressed clusters (qcow2.txt "Compressed Clusters Descriptor"): raw deflate or one
//! zstd frame, decompressing to exactly one cluster and never more.

use std::io::Read;

use miniz_oxide::inflate::core::{decompress as inflate, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use crate::header::CompressionType;

/// Decompress `input` into exactly `cluster` bytes; anything else (a bad stream, a stream
/// that ends early or would inflate past one cluster) is an error text.
pub fn decompress(kind: CompressionType, input: &[u8], cluster: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; cluster];
    match kind {
        CompressionType::Zlib => {
            let mut d = Box::<DecompressorOxide>::default();
            // Raw deflate (no zlib header): qemu uses window bits -12. The whole output
            // buffer is given at once, so it is "non-wrapping".
            let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
            let (status, _, written) = inflate(&mut d, input, &mut out, 0, flags);
            match status {
                TINFLStatus::Done if written == cluster => Ok(out),
                TINFLStatus::Done => Err(format!(
                    "deflate stream ends after {written} of {cluster} bytes"
                )),
                TINFLStatus::HasMoreOutput => Err(format!(
                    "deflate stream inflates past one cluster ({cluster} bytes)"
                )),
                TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => Err(
                    format!("deflate stream truncated after {written} of {cluster} bytes"),
                ),
                s => Err(format!("bad deflate stream ({s:?})")),
            }
        }
        CompressionType::Zstd => {
            let mut dec = ruzstd::decoding::StreamingDecoder::new(input)
                .map_err(|e| format!("bad zstd frame header: {e}"))?;
            let mut done = 0;
            while done < cluster {
                match dec.read(&mut out[done..]) {
                    Ok(0) => {
                        return Err(format!("zstd frame ends after {done} of {cluster} bytes"))
                    }
                    Ok(n) => done += n,
                    Err(e) => return Err(format!("bad zstd stream: {e}")),
                }
            }
            let mut extra = [0u8; 1];
            match dec.read(&mut extra) {
                Ok(0) => Ok(out),
                Ok(_) => Err(format!(
                    "zstd frame decompresses past one cluster ({cluster} bytes)"
                )),
                Err(e) => Err(format!("bad zstd stream: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deflate_roundtrip_and_overflow() {
        let data = vec![7u8; 4096];
        let c = miniz_oxide::deflate::compress_to_vec(&data, 6);
        assert_eq!(decompress(CompressionType::Zlib, &c, 4096).unwrap(), data);
        assert!(decompress(CompressionType::Zlib, &c, 2048)
            .unwrap_err()
            .contains("past one cluster"));
        assert!(decompress(CompressionType::Zlib, &c, 8192)
            .unwrap_err()
            .contains("ends after"));
        assert!(decompress(CompressionType::Zlib, &c[..c.len() / 2], 4096).is_err());
        assert!(decompress(CompressionType::Zlib, &[0xff; 64], 4096).is_err());
    }

    #[test]
    fn zstd_garbage() {
        assert!(decompress(CompressionType::Zstd, &[0xff; 64], 4096).is_err());
        assert!(decompress(CompressionType::Zstd, &[], 4096).is_err());
    }
}
