//! Print the layout of an image or device: `cargo run --example layout -- IMAGE`;
//! `--sparsify IMAGE` punches its free ranges (bench/layout.sh times both).
use sparsekit_io::{Control, FileStorage};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--sparsify") {
        let path = args.get(1).ok_or("usage: layout --sparsify IMAGE")?;
        let r = sparsekit_layout::sparsify(
            std::path::Path::new(path),
            &sparsekit_layout::SparsifyOptions::default(),
            &mut Control::none(),
        )?;
        println!(
            "freed {} bytes; allocated {:?} -> {:?}",
            r.freed_bytes, r.allocated_before, r.allocated_after
        );
        return Ok(());
    }
    let path = args.pop().ok_or("usage: layout IMAGE")?;
    let s = FileStorage::open(std::path::Path::new(&path))?;
    let l = sparsekit_layout::layout(&s, &mut Control::none())?;
    println!(
        "size {} table {} sector {} hybrid {}",
        l.size,
        l.table.name(),
        l.sector_size,
        l.hybrid_mbr
    );
    for w in &l.warnings {
        println!("warning: {w}");
    }
    for p in &l.partitions {
        println!(
            "#{} start {} length {} type {} ({:?}) fs {:?} label {:?} uuid {:?} used {} state {} {}",
            p.number,
            p.start,
            p.length,
            p.type_,
            p.type_name,
            p.filesystem.map(|f| f.name()),
            p.label,
            p.uuid,
            p.used_bytes,
            p.state.name(),
            p.reason.as_deref().unwrap_or("")
        );
    }
    println!("used {} bytes in {} ranges", l.used_bytes, l.used.len());
    if std::env::var_os("RANGES").is_some() {
        for r in &l.used {
            println!("{} {}", r.offset, r.length);
        }
    }
    Ok(())
}
