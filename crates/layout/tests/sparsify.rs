//! sparsify: refusals before any write (busy, dirty, a block device without discard), and
//! a discard through a loop device.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{is_root, missing, must, Loop};
use sparsekit_io::Control;
use sparsekit_layout::{sparsify, SparsifyOptions};

const MIB: u64 = 1 << 20;

fn allocated(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().blocks() * 512
}

/// A fully allocated 32 MiB ext4 image (mkfs told not to discard).
fn image(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("s.img");
    must(&format!(
        "fallocate -l 32M '{0}' && mkfs.ext4 -q -F -E nodiscard '{0}'",
        p.display()
    ));
    p
}

fn skip(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIP {test}: needs root");
        return true;
    }
    if let Some(t) = missing(&["mkfs.ext4", "debugfs", "e2fsck", "fallocate", "losetup"]) {
        eprintln!("SKIP {test}: {t} is not installed");
        return true;
    }
    false
}

#[test]
fn refusals_write_nothing() {
    if skip("refusals_write_nothing") {
        return;
    }
    let t = tempfile::tempdir_in("/tmp").unwrap();
    let img = image(t.path());
    let full = allocated(&img);
    assert!(full >= 32 * MIB);
    {
        let lo = Loop::new(&img, 0, 32 * MIB);
        let e = sparsify(&img, &SparsifyOptions::default(), &mut Control::none()).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_LAYOUT_BUSY", "{e}");
        assert!(e.to_string().contains(&lo.0), "{e}");
        // The loop device itself: refused without discard ...
        let dev = Path::new(&lo.0);
        let e = sparsify(dev, &SparsifyOptions::default(), &mut Control::none()).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_LAYOUT_REFUSED", "{e}");
        // ... and busy with discard while mounted.
        let _m = common::Mounted::new("mount", &lo.0, &t.path().join("m"));
        let e = sparsify(
            dev,
            &SparsifyOptions { discard: true },
            &mut Control::none(),
        )
        .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_LAYOUT_BUSY", "{e}");
    }
    assert_eq!(allocated(&img), full);
    must(&format!(
        "debugfs -w -R 'feature needs_recovery' '{}' 2>/dev/null",
        img.display()
    ));
    let e = sparsify(&img, &SparsifyOptions::default(), &mut Control::none()).unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_LAYOUT_DIRTY", "{e}");
    assert_eq!(allocated(&img), full);
}

#[test]
fn discard_through_a_loop_device() {
    if skip("discard_through_a_loop_device") {
        return;
    }
    let t = tempfile::tempdir_in("/tmp").unwrap();
    let img = image(t.path());
    {
        let lo = Loop::new(&img, 0, 32 * MIB);
        let r = sparsify(
            Path::new(&lo.0),
            &SparsifyOptions { discard: true },
            &mut Control::none(),
        )
        .unwrap();
        assert!(r.freed_bytes > 20 * MIB);
        assert_eq!(r.allocated_before, None);
        must(&format!("e2fsck -fn {}", lo.0));
    }
    // The loop driver punched the discarded ranges out of the file.
    assert!(allocated(&img) < 12 * MIB, "{}", allocated(&img));
    must(&format!("e2fsck -fn '{}'", img.display()));
}
