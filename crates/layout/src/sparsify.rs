//! Punching the free blocks of an image file (or discarding them on a block device):
//! `virt-sparsify --in-place` without a VM.

use std::fs;
use std::path::Path;

use sparsekit_io::{Control, FileStorage, IoError, Phase, Storage};

use crate::error::Error;
use crate::{layout, Layout, State};

/// Options of [`sparsify`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SparsifyOptions {
    /// Allow a block device: its free ranges are discarded (`fallocate(PUNCH_HOLE)`, which
    /// the kernel turns into a zeroing discard). Without it a block device is refused.
    pub discard: bool,
}

/// What [`sparsify`] did.
#[derive(Clone, Debug)]
pub struct Sparsified {
    /// The layout it worked from (with its used ranges).
    pub layout: Layout,
    /// Bytes of free ranges punched (or discarded).
    pub freed_bytes: u64,
    /// Bytes the file had allocated before and after (regular files).
    pub allocated_before: Option<u64>,
    /// See `allocated_before`.
    pub allocated_after: Option<u64>,
}

/// Punch every range [`layout`] calls free out of the image file at `path` (or discard it
/// on a block device with [`SparsifyOptions::discard`]), so it reads as zeros and takes no
/// space. Checked before the first write: a file attached to a loop device or mounted
/// (a FUSE mount of the file) is [`Error::Busy`], as is a block device that cannot be
/// opened exclusively (mounted, claimed); a dirty file system is [`Error::Dirty`]; a
/// block device without `discard` is [`Error::Refused`]. Progress: [`Phase::Map`] for the
/// layout, then [`Phase::Write`] over the free bytes.
pub fn sparsify(
    path: &Path,
    opts: &SparsifyOptions,
    ctl: &mut Control,
) -> Result<Sparsified, Error> {
    sparsify_inner(path, opts, ctl).map_err(|e| e.with_path(Some(path)))
}

fn allocated(path: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.blocks() * 512)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

fn sparsify_inner(
    path: &Path,
    opts: &SparsifyOptions,
    ctl: &mut Control,
) -> Result<Sparsified, Error> {
    let meta = fs::metadata(path).map_err(|e| IoError::new("stat", e).with_path(path))?;
    let kind = sparsekit_io::FileKind::of(&meta);
    let storage = match kind {
        sparsekit_io::FileKind::Regular => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                let loops = crate::sys::attached_loops(meta.dev(), meta.ino());
                if !loops.is_empty() {
                    return Err(Error::Busy {
                        path: None,
                        detail: format!(
                            "the image is attached to {}: detach it (losetup -d) first",
                            loops.join(", ")
                        ),
                    });
                }
            }
            if let Some(at) = crate::sys::mounted_at(path) {
                return Err(Error::Busy {
                    path: None,
                    detail: format!("the image is mounted at {at}: unmount it first"),
                });
            }
            FileStorage::open_rw(path)?
        }
        sparsekit_io::FileKind::BlockDevice => {
            if !opts.discard {
                return Err(Error::Refused {
                    path: None,
                    detail: "a block device is only sparsified with discard: true (its free ranges are discarded and read as zeros)".into(),
                });
            }
            let f = crate::sys::open_exclusive(path).map_err(|e| {
                if e.raw_os_error() == Some(libc::EBUSY) {
                    Error::Busy {
                        path: None,
                        detail: "the device or one of its partitions is mounted or in use".into(),
                    }
                } else {
                    Error::Io(IoError::new("open", e).with_path(path))
                }
            })?;
            FileStorage::from_file(f, path)?
        }
        other => {
            return Err(Error::Refused {
                path: None,
                detail: format!(
                    "a {} is neither an image file nor a block device",
                    other.name()
                ),
            })
        }
    };
    let before = allocated(path);
    let l = layout(&storage, ctl)?;
    if let Some(p) = l.partitions.iter().find(|p| p.state == State::Dirty) {
        return Err(Error::Dirty {
            path: None,
            filesystem: p.filesystem.map(|f| f.name()).unwrap_or("unknown"),
            offset: p.start,
            detail: p.reason.clone().unwrap_or_default(),
        });
    }
    let mut gaps = Vec::new();
    let mut pos = 0;
    for r in &l.used {
        if r.offset > pos {
            gaps.push((pos, r.offset - pos));
        }
        pos = r.offset + r.length;
    }
    if pos < l.size {
        gaps.push((pos, l.size - pos));
    }
    let total: u64 = gaps.iter().map(|g| g.1).sum();
    let mut done = 0;
    ctl.report(Phase::Write, 0, Some(total))?;
    for (o, n) in gaps {
        storage.punch_hole(o, n)?;
        done += n;
        ctl.report(Phase::Write, done, Some(total))?;
    }
    // No fsync: a punch lost in a crash leaves free space allocated with its old bytes,
    // which is what it was before; nothing the file systems use is touched either way.
    Ok(Sparsified {
        layout: l,
        freed_bytes: total,
        allocated_before: before,
        allocated_after: allocated(path),
    })
}
