//! `cargo run --release --example qcow2_import -- import SRC DST [none|zlib|zstd] [THREADS]`
//! and `... export SRC > OUT`: the writer from the shell, for benchmarks against
//! `qemu-img convert -O qcow2 [-c]`. SRC is a raw file or device, or a qcow2 image.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use sparsekit_io::Control;
use sparsekit_qcow2::{
    export_stream, import_image, CompressionType, Image, ImportOptions, OpenOptions, Source,
    StorageSource,
};

fn open(p: &str) -> Result<Box<dyn Source>, Box<dyn std::error::Error>> {
    Ok(match Image::open(p, &OpenOptions::default()) {
        Ok(i) => Box::new(i),
        Err(sparsekit_qcow2::Error::NotQcow2 { .. }) => {
            Box::new(StorageSource::open(Path::new(p))?)
        }
        Err(e) => return Err(e.into()),
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        a.get(i)
            .map(String::as_str)
            .ok_or("usage: qcow2_import import SRC DST [none|zlib|zstd] [THREADS] | export SRC")
    };
    let t = Instant::now();
    let src = open(arg(1)?)?;
    match arg(0)? {
        "import" => {
            let o = ImportOptions {
                compression: match a.get(3).map(String::as_str) {
                    None | Some("none") => None,
                    Some("zlib") => Some(CompressionType::Zlib),
                    Some("zstd") => Some(CompressionType::Zstd),
                    Some(x) => return Err(format!("unknown compression {x}").into()),
                },
                threads: a.get(4).map(|s| s.parse()).transpose()?.unwrap_or(0),
                ..ImportOptions::default()
            };
            let r = import_image(&*src, Path::new(arg(2)?), &o, &mut Control::none())?;
            eprintln!("import: {:.3} s, {r:?}", t.elapsed().as_secs_f64());
        }
        "export" => {
            let mut s = export_stream(src, None, &ImportOptions::default(), &mut Control::none())?;
            let out = std::io::stdout();
            let mut out = out.lock();
            while let Some(c) = s.next_chunk()? {
                out.write_all(&c)?;
            }
            eprintln!(
                "export: {:.3} s, {} bytes",
                t.elapsed().as_secs_f64(),
                s.len()
            );
        }
        c => return Err(format!("unknown command {c}").into()),
    }
    Ok(())
}
