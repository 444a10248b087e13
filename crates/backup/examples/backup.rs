//! Back up an image or device: `cargo run --release --example backup -- SOURCE OUTPUT`,
//! printing when each phase began (bench/backup.sh's runs without Node's start-up).
use sparsekit_io::{Cancel, Control, Phase, Progress};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [source, output] = args.as_slice() else {
        return Err("usage: backup SOURCE OUTPUT".into());
    };
    let t0 = Instant::now();
    let src = sparsekit_backup::open_source(std::path::Path::new(source))?;
    let mut last: Option<Phase> = None;
    let mut ctl = Control::new(Cancel::new(), move |p: Progress| {
        if last != Some(p.phase) {
            eprintln!("{:>6} ms {:?}", t0.elapsed().as_millis(), p.phase);
            last = Some(p.phase);
        }
    });
    let r = sparsekit_backup::backup(
        &src,
        std::path::Path::new(output),
        &sparsekit_backup::BackupOptions::default(),
        &mut ctl,
    )?;
    eprintln!("{:>6} ms end", t0.elapsed().as_millis());
    println!(
        "{} bytes of {} copied; sha256 {}",
        r.bytes_copied, r.image_size, r.sha256
    );
    Ok(())
}
