//! Any bytes as a disk: layout() returns a layout or a coded error, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sparsekit_io::{Control, MemStorage};

fuzz_target!(|data: &[u8]| {
    let disk = MemStorage::from_vec(data.to_vec());
    if let Err(e) = sparsekit_layout::layout(&disk, &mut Control::none()) {
        assert!(e.code().starts_with("ERR_SPARSEKIT_"));
    }
});
