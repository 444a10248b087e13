//! `cargo run --release --example qcow2 -- info|map|check|convert IMAGE [OUT]`, and the
//! edits `create IMAGE SIZE`, `resize IMAGE SIZE`, `rebase IMAGE NAME FORMAT`,
//! `commit IMAGE`: the crate's operations from the shell, for benchmarks against qemu-img.

use std::time::Instant;

use sparsekit_io::Control;
use sparsekit_qcow2::{
    commit, convert, create, map_json, resize, set_backing, ConvertOptions, CreateOptions,
    EditOptions, Image, OpenOptions,
};

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
    let arg = |i: usize| args.get(i).map(String::as_str).ok_or("missing argument");
    let edit = EditOptions::default();
    let done = |cmd: &str| eprintln!("{cmd}: {:.3} s", t.elapsed().as_secs_f64());
    match cmd {
        "create" => {
            let o = CreateOptions {
                size: arg(2)?.parse()?,
                ..CreateOptions::default()
            };
            create(path.as_ref(), &o, &edit)?;
            done(cmd);
            return Ok(());
        }
        "resize" => {
            resize(path.as_ref(), arg(2)?.parse()?, &edit)?;
            done(cmd);
            return Ok(());
        }
        "rebase" => {
            set_backing(path.as_ref(), Some(arg(2)?), Some(arg(3)?), &edit)?;
            done(cmd);
            return Ok(());
        }
        "commit" => {
            println!("{:?}", commit(path.as_ref(), &edit, &mut Control::none())?);
            done(cmd);
            return Ok(());
        }
        _ => {}
    }
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
