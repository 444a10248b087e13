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
use crate::flash::{open_source, run, FlashOptions, FlashReport, Mode, Target};
use crate::source;

/// The removable-media options `bmap copy` shares with [`crate::flash`] (see
/// [`FlashOptions`]): with any of them set, or to a block device (whose first MiB is then
/// written last), a local image goes through the flash engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Media {
    /// [`FlashOptions::seek`].
    pub seek: u64,
    /// [`FlashOptions::sha256`].
    pub sha256: Option<String>,
    /// [`FlashOptions::only_changed`].
    pub only_changed: bool,
    /// [`FlashOptions::unmapped`].
    pub unmapped: crate::Unmapped,
    /// [`FlashOptions::trim`]: without a bmap, only the blocks the image's file systems
    /// use are read and written.
    pub trim: bool,
    /// [`FlashOptions::write_retries`] (default [`crate::WRITE_RETRIES`]).
    pub write_retries: Option<u32>,
    /// [`FlashOptions::retry_delay`] (default 100 ms).
    pub write_retry_delay: Option<std::time::Duration>,
}

/// What [`bmap_copy`] and [`local_bmap_copy`] did, beyond the plain copy's report.
#[derive(Debug)]
pub struct MediaReport {
    /// The copy.
    pub copy: sparsekit_bmap::CopyReport,
    /// Bytes the destination already held ([`Media::only_changed`]).
    pub bytes_skipped: u64,
    /// Writes tried again after a transient error.
    pub retries: u64,
    /// The image's SHA-256, when [`Media::sha256`] was checked.
    pub sha256: Option<String>,
    /// What [`Media::trim`] found (see [`crate::FlashReport::trim`]).
    pub trim: Option<crate::Trim>,
}

/// `bmap copy` of a remote image: `URL.bmap` found beside it (with
/// [`sparsekit_bmap::BmapChoice::Auto`]), the image streamed once (plain, gzip, xz,
/// bzip2, zstd; a zip archive read with range requests), resumed with range requests after
/// a dropped connection, each bmap range's checksum verified as it streams, only mapped
/// ranges written (without a bmap, all-zero blocks stay holes in a file destination), then
/// `fsync` and an optional read-back. The destination is a file (created) or a block
/// device (opened `O_EXCL`, checked to be large enough), as [`sparsekit_bmap::copy`] opens
/// it. This is [`crate::flash_to`] with one destination.
pub fn bmap_copy_media(
    url: &str,
    dst: &Path,
    opts: &sparsekit_bmap::CopyOptions,
    http: &HttpOptions,
    opener: &Arc<dyn Opener>,
    media: &Media,
    ctl: &mut sparsekit_io::Control<'_>,
) -> Result<MediaReport> {
    let client = http::client_for(http, url, ctl.cancel())?;
    let (bmap, bmap_from) = resolve_bmap(&opts.bmap, ctl.cancel(), || -> Result<_> {
        Ok(http::find_bmap(&client, url, http)?.map(|(b, u)| (b, u.into())))
    })?;
    drop(client);
    copy_to(url, dst, (bmap, bmap_from), opts, http, opener, media, ctl)
}

/// `bmap copy` of a local image to a drive on Windows or macOS (where
/// [`Opener::is_drive`] says `dst` is one): the flash writer's checks and device opening
/// (system disk and mounted volumes refused; on Windows the volumes locked and dismounted
/// while writing, on macOS the raw `/dev/rdiskN` written), which `sparsekit_bmap::copy`'s
/// `O_EXCL` open provides on Linux only. The bmap as `sparsekit_bmap::copy` finds it.
pub fn local_bmap_copy_to_drive_media(
    image: &Path,
    dst: &Path,
    opts: &sparsekit_bmap::CopyOptions,
    opener: &Arc<dyn Opener>,
    media: &Media,
    ctl: &mut sparsekit_io::Control<'_>,
) -> Result<MediaReport> {
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
        media,
        ctl,
    )
}

/// `bmap copy` of a local image: [`sparsekit_bmap::copy`], except for a drive only the
/// flash writer may write ([`Opener::is_drive`]), a block device (its first MiB written
/// last), a zip archive, and any [`Media`] option, which the flash engine does (a zip's
/// entry is written, as for a remote zip and for `flash`, never the archive's own bytes).
pub fn local_bmap_copy_media(
    image: &Path,
    dst: &Path,
    opts: &sparsekit_bmap::CopyOptions,
    opener: &Arc<dyn Opener>,
    media: &Media,
    ctl: &mut sparsekit_io::Control<'_>,
) -> Result<MediaReport> {
    let mut head = [0u8; 4];
    let is_zip = std::fs::File::open(image)
        .and_then(|f| {
            use std::io::Read;
            f.take(4).read(&mut head)
        })
        .is_ok_and(|n| source::is_zip(&head[..n]));
    let is_dev = {
        use sparsekit_io::sys::FileTypeExt;
        std::fs::metadata(dst).is_ok_and(|m| m.file_type().is_block_device())
    };
    if is_zip || is_dev || opener.is_drive(dst) || *media != Media::default() {
        local_bmap_copy_to_drive_media(image, dst, opts, opener, media, ctl)
    } else {
        Ok(MediaReport {
            copy: sparsekit_bmap::copy(image, dst, opts, ctl)?,
            bytes_skipped: 0,
            retries: 0,
            sha256: None,
            trim: None,
        })
    }
}

/// The shared end of the two bmap copies above: `source` (a path or URL) with the bmap
/// already resolved, to one destination.
#[allow(clippy::too_many_arguments)]
fn copy_to(
    url: &str,
    dst: &Path,
    (bmap, bmap_from): (Option<Bmap>, Option<PathBuf>),
    opts: &sparsekit_bmap::CopyOptions,
    http: &HttpOptions,
    opener: &Arc<dyn Opener>,
    media: &Media,
    ctl: &mut sparsekit_io::Control<'_>,
) -> Result<MediaReport> {
    let fopts = FlashOptions {
        bmap: match &bmap {
            Some(b) => BmapChoice::Given(Box::new(b.clone())),
            None => BmapChoice::None,
        },
        verify: opts.verify,
        read_back: opts.read_back,
        http: http.clone(),
        opener: opener.clone(),
        seek: media.seek,
        sha256: media.sha256.clone(),
        only_changed: media.only_changed,
        unmapped: media.unmapped,
        trim: media.trim,
        write_retries: media.write_retries.unwrap_or(crate::WRITE_RETRIES),
        retry_delay: media
            .write_retry_delay
            .unwrap_or(FlashOptions::default().retry_delay),
        ..Default::default()
    };
    // Open the source first: an unreachable URL (or one that cannot be trimmed) leaves
    // the destination untouched.
    let opened = open_source(url, &fopts, ctl)?;
    let bmap = opened.bmap.clone();
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
) -> Result<MediaReport> {
    let d = r.destinations.remove(0);
    if let Some(e) = d.error {
        return Err(e);
    }
    let ranges = bmap.as_ref().map_or(0, |b| b.ranges.len() as u64);
    let copy = sparsekit_bmap::CopyReport {
        bytes_written: d.bytes_written,
        image_size: r.image_size,
        bmap_path: bmap_from,
        used_bmap: bmap.is_some() && r.trim.is_none(),
        compression: r.compression,
        ranges_verified: match bmap {
            Some(b) if opts.verify => {
                b.ranges.iter().filter(|r| r.checksum.is_some()).count() as u64
            }
            _ => 0,
        },
        ranges_read_back: if d.verified { ranges.max(1) } else { 0 },
    };
    Ok(MediaReport {
        copy,
        bytes_skipped: d.bytes_skipped,
        retries: d.retries,
        sha256: r.sha256,
        trim: r.trim,
    })
}

/// [`bmap_copy_media`] without [`Media`] options.
pub fn bmap_copy(
    url: &str,
    dst: &Path,
    opts: &sparsekit_bmap::CopyOptions,
    http: &HttpOptions,
    opener: &Arc<dyn Opener>,
    ctl: &mut sparsekit_io::Control<'_>,
) -> Result<sparsekit_bmap::CopyReport> {
    bmap_copy_media(url, dst, opts, http, opener, &Media::default(), ctl).map(|r| r.copy)
}

/// [`local_bmap_copy_media`] without [`Media`] options.
pub fn local_bmap_copy(
    image: &Path,
    dst: &Path,
    opts: &sparsekit_bmap::CopyOptions,
    opener: &Arc<dyn Opener>,
    ctl: &mut sparsekit_io::Control<'_>,
) -> Result<sparsekit_bmap::CopyReport> {
    local_bmap_copy_media(image, dst, opts, opener, &Media::default(), ctl).map(|r| r.copy)
}

/// [`local_bmap_copy_to_drive_media`] without [`Media`] options.
pub fn local_bmap_copy_to_drive(
    image: &Path,
    dst: &Path,
    opts: &sparsekit_bmap::CopyOptions,
    opener: &Arc<dyn Opener>,
    ctl: &mut sparsekit_io::Control<'_>,
) -> Result<sparsekit_bmap::CopyReport> {
    local_bmap_copy_to_drive_media(image, dst, opts, opener, &Media::default(), ctl).map(|r| r.copy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Files;
    use sparsekit_io::{Control, ErrorInfo};

    /// Issue 24: `bmap copy` takes seek and sha256 too (through the engine).
    #[test]
    fn local_copy_with_seek_and_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("os.img");
        let data: Vec<u8> = (0..(2u32 << 20) + 4096)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::fs::write(&img, &data).unwrap();
        let dst = dir.path().join("disk");
        std::fs::write(&dst, vec![0xAAu8; 4 << 20]).unwrap();
        let opener: Arc<dyn Opener> = Arc::new(Files::default());
        let sha = {
            use sha2::Digest;
            sha2::Sha256::digest(&data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let media = Media {
            seek: 65536,
            sha256: Some(sha.clone()),
            ..Media::default()
        };
        let opts = sparsekit_bmap::CopyOptions {
            bmap: BmapChoice::None,
            ..Default::default()
        };
        let r = local_bmap_copy_media(&img, &dst, &opts, &opener, &media, &mut Control::none())
            .unwrap();
        assert_eq!(r.sha256.as_deref(), Some(sha.as_str()));
        let got = std::fs::read(&dst).unwrap();
        assert_eq!(got.len(), 4 << 20);
        assert!(got[..65536].iter().all(|&b| b == 0xAA));
        assert_eq!(&got[65536..65536 + data.len()], &data[..]);
        assert!(got[65536 + data.len()..].iter().all(|&b| b == 0xAA));
        let bad = Media {
            sha256: Some("f".repeat(64)),
            ..media
        };
        let e = local_bmap_copy_media(&img, &dst, &opts, &opener, &bad, &mut Control::none())
            .unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_CHECKSUM_MISMATCH", "{e}");
    }

    /// The retry settings reach the engine through [`Media`]: a destination whose writes
    /// keep failing with EIO is tried `write_retries` more times, then fails naming the
    /// attempts; none at all with 0.
    #[test]
    fn write_retries_through_media() {
        use sparsekit_io::{Fault, Faulty, MemStorage};
        #[derive(Debug)]
        struct Flaky;
        impl Opener for Flaky {
            fn open(&self, _: &Path) -> Result<Box<dyn sparsekit_bmap::Destination>> {
                Ok(Box::new(Faulty::new(
                    MemStorage::new(),
                    Fault::TransientWriteErrors {
                        after: 1,
                        times: 1000,
                        errno: sparsekit_io::errno::EIO,
                    },
                )))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("os.img");
        std::fs::write(&img, vec![0x5au8; 3 << 20]).unwrap();
        let opts = sparsekit_bmap::CopyOptions {
            bmap: BmapChoice::None,
            ..Default::default()
        };
        let opener: Arc<dyn Opener> = Arc::new(Flaky);
        for (retries, attempts) in [(2u32, Some("3 attempts")), (0, None)] {
            let media = Media {
                write_retries: Some(retries),
                write_retry_delay: Some(std::time::Duration::from_millis(1)),
                ..Media::default()
            };
            let e = local_bmap_copy_to_drive_media(
                &img,
                Path::new("flaky"),
                &opts,
                &opener,
                &media,
                &mut Control::none(),
            )
            .unwrap_err();
            assert_eq!(e.code(), "ERR_SPARSEKIT_IO", "{e}");
            assert_eq!(e.to_string().contains("attempts"), retries > 0, "{e}");
            if let Some(a) = attempts {
                assert!(e.to_string().contains(a), "{e}");
            }
        }
    }
}
