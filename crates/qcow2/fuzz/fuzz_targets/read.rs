//! Every read-only operation of the reader on arbitrary bytes: `Ok` or a coded error,
//! never a panic, never a huge allocation (libFuzzer's `-rss_limit_mb`/`-malloc_limit_mb`),
//! never a hang (`-timeout`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sparsekit_io::{Control, MemStorage};
use sparsekit_qcow2::{Image, OpenOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(img) = Image::from_storage(
        Box::new(MemStorage::from_vec(data.to_vec())),
        &OpenOptions::default(),
    ) else {
        return;
    };
    let mut ctl = Control::none();
    let _ = img.map_range(0, 1 << 20, &mut ctl);
    let _ = img.info();
    if img.size() <= 1 << 30 {
        let _ = img.allocation();
    }
    let mut b = vec![0u8; img.size().min(256 << 10) as usize];
    let _ = img.read_at(&mut b, 0);
    let _ = img.check(&mut ctl);
});
