//! Remote images through the flash engine: bmap copy of a URL, zip archives over HTTP
//! (read with range requests through their central directory). The range-request storage
//! itself is tested in crates/http/tests/storage.rs.

use sparsekit_testfs::http as common;

use sparsekit_io::ErrorInfo;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{allocated, image, Server};
use sparsekit_bmap::{BmapChoice, CopyOptions};
use sparsekit_flash::{bmap_copy, FlashOptions, HttpOptions};
use sparsekit_io::Control;

fn http() -> HttpOptions {
    HttpOptions {
        retries: 3,
        retry_delay: Duration::from_millis(5),
        timeout: Duration::from_secs(20),
        ..Default::default()
    }
}

#[test]
fn bmap_copy_of_a_url_plain_with_bmap_and_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("os.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(20 << 20).unwrap();
    let data = image(4 << 20, 5);
    use std::os::unix::fs::FileExt;
    f.write_all_at(&data, 2 << 20).unwrap();
    f.write_all_at(&data[..1 << 20], 15 << 20).unwrap();
    drop(f);
    let bytes = std::fs::read(&img).unwrap();
    let bmap = sparsekit_bmap::create(&img, &Default::default(), &mut Control::none()).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    let srv = Server::start(HashMap::from([
        ("os.img".to_string(), bytes.clone()),
        ("os.img.bmap".to_string(), bmap.to_xml().into_bytes()),
        ("os.img.gz".to_string(), gz.finish().unwrap()),
    ]));
    srv.b.drops.store(2, Ordering::SeqCst);
    let dst = dir.path().join("a");
    let opts = CopyOptions {
        read_back: true,
        create_files: true,
        ..Default::default()
    };
    let r = bmap_copy(
        &srv.url("os.img"),
        &dst,
        &opts,
        &http(),
        &files(),
        &mut Control::none(),
    )
    .unwrap();
    assert!(r.used_bmap);
    assert_eq!(
        r.bmap_path.as_deref(),
        Some(Path::new(&srv.url("os.img.bmap")))
    );
    assert_eq!(r.bytes_written, bmap.mapped_bytes());
    assert_eq!(r.ranges_verified, bmap.ranges.len() as u64);
    assert!(r.ranges_read_back > 0);
    assert!(std::fs::read(&dst).unwrap() == bytes);
    assert!(allocated(&dst) <= bmap.mapped_bytes() + (1 << 20));
    // gzip without a bmap beside it: the whole stream, zero blocks left as holes.
    let dst = dir.path().join("b");
    let r = bmap_copy(
        &srv.url("os.img.gz"),
        &dst,
        &files_ok(),
        &http(),
        &files(),
        &mut Control::none(),
    )
    .unwrap();
    assert!(!r.used_bmap);
    assert_eq!(r.compression, Some(sparsekit_bmap::Compression::Gzip));
    assert_eq!(r.image_size, bytes.len() as u64);
    assert!(std::fs::read(&dst).unwrap() == bytes);
    assert!(allocated(&dst) < 8 << 20, "{}", allocated(&dst));
    // A bad checksum in the bmap: the copy fails naming the range.
    let mut bad = bmap.clone();
    bad.ranges[0].checksum = Some("0".repeat(64));
    let e = bmap_copy(
        &srv.url("os.img"),
        &dir.path().join("c"),
        &CopyOptions {
            bmap: BmapChoice::Given(Box::new(bad)),
            ..files_ok()
        },
        &http(),
        &files(),
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_CHECKSUM_MISMATCH", "{e}");
}

#[test]
fn zip_over_http_through_its_central_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = image(5 << 20, 8);
    std::fs::write(dir.path().join("os.img"), &data).unwrap();
    std::fs::write(dir.path().join("README"), b"hello").unwrap();
    let zip = |args: &[&str]| {
        std::process::Command::new("zip")
            .current_dir(dir.path())
            .arg("-q")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    if !zip(&["-6", "d.zip", "README", "os.img"]) || !zip(&["-0", "s.zip", "os.img", "README"]) {
        eprintln!("SKIP zip_over_http_through_its_central_directory: no zip command");
        return;
    }
    let rd = |n: &str| std::fs::read(dir.path().join(n)).unwrap();
    let srv = Server::start(HashMap::from([
        ("d.zip".to_string(), rd("d.zip")),
        ("s.zip".to_string(), rd("s.zip")),
    ]));
    for z in ["d.zip", "s.zip"] {
        srv.b.drops.store(2, Ordering::SeqCst);
        let dst = dir.path().join(format!("{z}.out"));
        let r = sparsekit_flash::flash(
            &srv.url(z),
            std::slice::from_ref(&dst),
            &FlashOptions {
                http: http(),
                opener: std::sync::Arc::new(sparsekit_flash::Files { create_files: true }),
                ..Default::default()
            },
            None,
            &mut Control::none(),
        )
        .unwrap_or_else(|e| panic!("{z}: {e}"));
        assert!(
            r.destinations[0].error.is_none(),
            "{z}: {:?}",
            r.destinations[0].error
        );
        assert_eq!(r.zip_entry.as_deref(), Some("os.img"));
        assert!(std::fs::read(&dst).unwrap() == data, "{z}");
        // bmap copy reads it the same way.
        let dst = dir.path().join(format!("{z}.copy"));
        bmap_copy(
            &srv.url(z),
            &dst,
            &files_ok(),
            &http(),
            &files(),
            &mut Control::none(),
        )
        .unwrap();
        assert!(std::fs::read(&dst).unwrap() == data, "{z}");
    }
    // A named entry.
    let dst = dir.path().join("readme.out");
    let r = sparsekit_flash::flash(
        &srv.url("d.zip"),
        std::slice::from_ref(&dst),
        &FlashOptions {
            http: http(),
            zip_entry: Some("README".into()),
            opener: std::sync::Arc::new(sparsekit_flash::Files { create_files: true }),
            ..Default::default()
        },
        None,
        &mut Control::none(),
    )
    .unwrap();
    assert!(r.destinations[0].error.is_none());
    assert_eq!(std::fs::read(&dst).unwrap(), b"hello");
    // Without range support a zip cannot be read: the clear refusal.
    srv.b.ranges.store(false, Ordering::SeqCst);
    let e = sparsekit_flash::flash(
        &srv.url("d.zip"),
        &[dir.path().join("x")],
        &FlashOptions {
            http: http(),
            ..Default::default()
        },
        None,
        &mut Control::none(),
    )
    .unwrap_err();
    assert_eq!(e.code(), "ERR_SPARSEKIT_HTTP_NO_RANGES", "{e}");
}

/// Copy options for writing into new files in a temp folder.
fn files_ok() -> CopyOptions {
    CopyOptions {
        create_files: true,
        ..CopyOptions::default()
    }
}

/// Destinations as plain files, created when missing.
fn files() -> std::sync::Arc<dyn sparsekit_flash::Opener> {
    std::sync::Arc::new(sparsekit_flash::Files { create_files: true })
}
