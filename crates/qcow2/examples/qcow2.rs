//! `cargo run --release --example qcow2 -- info|map|check|convert IMAGE [OUT]`: the crate's
//! operations from the shell, for benchmarks against qemu-img.

use std::time::Instant;

use sparsekit_io::Control;
use sparsekit_qcow2::{convert, map_json, ConvertOptions, Image, OpenOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, path) = match (args.first(), args.get(1)) {
        (Some(c), Some(p)) => (c.as_str(), p.as_str()),
        _ => {
            eprintln!("usage: qcow2 info|map|check|convert IMAGE [OUT]");
            std::process::exit(2);
        }
    };
    let t = Instant::now();
    let img = Image::open(path, &OpenOptions::default())?;
    let mut ctl = Control::none();
    match cmd {
        "info" => println!("{:?}", img.info()?),
        "map" => print!("{}", map_json(&img.map(&mut ctl)?)),
        "check" => println!("{:?}", img.check(&mut ctl)?),
        "convert" => {
            let out = args.get(2).ok_or("convert needs OUT")?;
            println!(
                "{:?}",
                convert(&img, out.as_ref(), &ConvertOptions::default(), &mut ctl)?
            );
        }
        _ => return Err(format!("unknown command {cmd}").into()),
    }
    eprintln!("{cmd}: {:.3} s", t.elapsed().as_secs_f64());
    Ok(())
}
