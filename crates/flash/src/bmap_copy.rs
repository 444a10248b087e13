//! `bmap copy` through the flash engine: a remote image ([`bmap_copy`]), and a local one
//! where only the flash engine may write or read it ([`local_bmap_copy`]: a drive on
//! Windows or macOS, a zip archive's entry). The bmap is resolved once
//! ([`sparsekit_bmap::resolve_bmap`]) and the source written to one destination.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sparsekit_bmap::{resolve_bmap, Bmap, BmapChoice};
use sparsekit_http::{self as http, HttpOptions};

use crate::dest::Opener;
use crate::error::{Error, Result};
use crate::flash::{run, FlashOptions, FlashReport, Mode, Target};
use crate::source;

/// `bmap copy` of a remote image: `URL.bmap` found beside it (with
/// [`sparsekit_bmap::BmapChoice::Auto`]), the image streamed once (plain, gzip, xz,
/// bzip2, zstd; a zip archive read with range requests), resumed with range requests after
/// a dropped connection, each bmap range's checksum verified as it streams, only mapped
/// ranges written (without a bmap, all-zero blocks stay holes in a file destination), then
/// `fsync` and an optional read-back. The destination is a file (created) or a block
/// device (opened `O_EXCL`, checked to be large enough), as [`sparsekit_bmap::copy`] opens
/// it. This is [`crate::flash_to`] with one destination.
pub fn bmap_copy(
    url: &str,
    dst: &Path,
    opts: &sparsekit_bmap::CopyOptions,
    http: &HttpOptions,
    opener: &Arc<dyn Opener>,
    ctl: &mut sparsekit_io::Control<'_>,
) -> Result<sparsekit_bmap::CopyReport> {
    let client = http::client_for(http, url, ctl.cancel())?;
    let (bmap, bmap_from) = resolve_bmap(&opts.bmap, ctl.cancel(), || -> Result<_> {
        Ok(http::find_bmap(&client, url, http)?.map(|(b, u)| (b, u.into())))
    })?;
    drop(client);
    copy_to(url, dst, (bmap, bmap_from), opts, http, opener, ctl)
}

/// `bmap copy` of a local image to a drive on Windows or macOS (where
/// [`Opener::is_drive`] says `dst` is one): the flash writer's checks and device opening
/// (system disk and mounted volumes refused; on Windows the volumes locked and dismounted
/// while writing, on macOS the raw `/dev/rdiskN` written), which `sparsekit_bmap::copy`'s
/// `O_EXCL` open provides on Linux only. The bmap as `sparsekit_bmap::copy` finds it.
pub fn local_bmap_copy_to_drive(
    image: &Path,
    dst: &Path,
    opts: &sparsekit_bmap::CopyOptions,
    opener: &Arc<dyn Opener>,
    ctl: &mut sparsekit_io::Control<'_>,
) -> Result<sparsekit_bmap::CopyReport> {
    let cancel = ctl.cancel().clone();
    let (bmap, bmap_from) = resolve_bmap(&opts.bmap, &cancel, || -> Result<_> {
        Ok(sparsekit_bmap::local_bmap(image, &cancel)?)
    })?;
    let source = image.to_str().ok_or_else(|| Error::InvalidArg {
        name: "image",
        value: format!("'{}' is not valid UTF-8", image.display()),
    })?;
    copy_to(
        source,
        dst,
        (bmap, bmap_from),
        opts,
        &HttpOptions::default(),
        opener,
        ctl,
    )
}

/// `bmap copy` of a local image: [`sparsekit_bmap::copy`], except for a drive only the
/// flash writer may write ([`Opener::is_drive`]) and a zip archive, which the flash engine
/// opens (its entry is written, as for a remote zip and for `flash`, never the archive's
/// own bytes).
pub fn local_bmap_copy(
    image: &Path,
    dst: &Path,
    opts: &sparsekit_bmap::CopyOptions,
    opener: &Arc<dyn Opener>,
    ctl: &mut sparsekit_io::Control<'_>,
) -> Result<sparsekit_bmap::CopyReport> {
    let mut head = [0u8; 4];
    let is_zip = std::fs::File::open(image)
        .and_then(|f| {
            use std::io::Read;
            f.take(4).read(&mut head)
        })
        .is_ok_and(|n| source::is_zip(&head[..n]));
    if is_zip || opener.is_drive(dst) {
        local_bmap_copy_to_drive(image, dst, opts, opener, ctl)
    } else {
        Ok(sparsekit_bmap::copy(image, dst, opts, ctl)?)
    }
}

/// The shared end of the two bmap copies above: `source` (a path or URL) with the bmap
/// already resolved, to one destination.
fn copy_to(
    url: &str,
    dst: &Path,
    (bmap, bmap_from): (Option<Bmap>, Option<PathBuf>),
    opts: &sparsekit_bmap::CopyOptions,
    http: &HttpOptions,
    opener: &Arc<dyn Opener>,
    ctl: &mut sparsekit_io::Control<'_>,
) -> Result<sparsekit_bmap::CopyReport> {
    let fopts = FlashOptions {
        bmap: match &bmap {
            Some(b) => BmapChoice::Given(Box::new(b.clone())),
            None => BmapChoice::None,
        },
        verify: opts.verify,
        read_back: opts.read_back,
        http: http.clone(),
        opener: opener.clone(),
        ..Default::default()
    };
    // Open the source first: an unreachable URL leaves the destination untouched.
    let opened = source::open(url, &fopts.bmap, None, http, ctl.cancel())?;
    // The opener's checks and opening: with the addon's, Windows disks and volumes
    // (locked and dismounted while writing) and macOS disks, the system disk and mounted
    // volumes refused.
    let targets = vec![Target {
        path: dst.to_path_buf(),
        dst: Ok(opener.open(dst)?),
    }];
    finish(
        run(opened, targets, &fopts, Mode::Write, None, ctl)?,
        &bmap,
        bmap_from,
        opts,
    )
}

/// The copy report of [`bmap_copy`]'s one destination.
fn finish(
    mut r: FlashReport,
    bmap: &Option<Bmap>,
    bmap_from: Option<PathBuf>,
    opts: &sparsekit_bmap::CopyOptions,
) -> Result<sparsekit_bmap::CopyReport> {
    let d = r.destinations.remove(0);
    if let Some(e) = d.error {
        return Err(e);
    }
    let ranges = bmap.as_ref().map_or(0, |b| b.ranges.len() as u64);
    Ok(sparsekit_bmap::CopyReport {
        bytes_written: d.bytes_written,
        image_size: r.image_size,
        bmap_path: bmap_from,
        used_bmap: bmap.is_some(),
        compression: r.compression,
        ranges_verified: match bmap {
            Some(b) if opts.verify => {
                b.ranges.iter().filter(|r| r.checksum.is_some()).count() as u64
            }
            _ => 0,
        },
        ranges_read_back: if d.verified { ranges.max(1) } else { 0 },
    })
}
