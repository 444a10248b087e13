//! `copy` parses its bmap with the caller's cancel token: an aborted copy stops in the
//! parse (a large bmap takes a second or more), before the destination is written.

use sparsekit_io::ErrorInfo;
use std::fs;

use sparsekit_bmap::{copy, BmapChoice, CopyOptions, Error};
use sparsekit_io::{Cancel, Control};

#[test]
fn bmap_parse_in_copy_honours_abort() {
    let d = tempfile::Builder::new()
        .prefix("sparsekit-bmap-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let img = d.path().join("disk.img");
    fs::write(&img, vec![7u8; 8192]).unwrap();
    // A bmap that does not parse: only a parse that looks at the token first says Aborted.
    let bad = d.path().join("disk.img.bmap");
    fs::write(
        &bad,
        "<bmap version=\"2.0\"><ImageSize>x</ImageSize></bmap>",
    )
    .unwrap();
    // An existing destination (copy may refuse to create files), left as it was.
    let dst = d.path().join("out.img");
    fs::write(&dst, b"keep").unwrap();
    for choice in [BmapChoice::Auto, BmapChoice::Path(bad.clone())] {
        let opts = CopyOptions {
            bmap: choice,
            ..CopyOptions::default()
        };
        let e = copy(&img, &dst, &opts, &mut Control::none()).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_BMAP_INVALID", "{e}");
        let cancel = Cancel::new();
        cancel.cancel();
        let e = copy(&img, &dst, &opts, &mut Control::with_cancel(cancel)).unwrap_err();
        assert!(matches!(e, Error::Aborted), "{e}");
        assert_eq!(fs::read(&dst).unwrap(), b"keep");
    }
}
