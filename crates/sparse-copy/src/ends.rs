//! Opening and checking the two ends of a copy: what the source is and how long, whether
//! the destination may be written (regular file or block device, never the source itself,
//! large enough), and making it durable. Also what bmap flashing uses for its destination.

use sparsekit_io::sys::{FileTypeExt, MetadataExt};
use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};

use sparsekit_io::{sys as iosys, Context, FileKind};

use crate::{Error, Result};

/// An open copy source.
#[derive(Debug)]
pub struct Source {
    /// The open file (blocking for regular files and block devices).
    pub file: File,
    /// Its metadata at open time.
    pub meta: Metadata,
    /// Its size: `st_size`, or `BLKGETSIZE64` for a block device. Meaningless for a stream.
    pub size: u64,
    /// A regular file whose size says nothing about its content (a file on procfs, sysfs,
    /// ...: `/proc/cpuinfo` says 0 bytes): it is read to end of file instead of mapped.
    pub stream: bool,
}

/// Open `path` as a copy source: a regular file or a block device. Directories fail with
/// EISDIR, FIFOs, sockets and character devices with [`Error::NotAFile`] — opening never
/// blocks on them (`O_NONBLOCK`), so a FIFO with no writer is refused at once.
pub fn open_source(path: &Path) -> Result<Source> {
    let file = iosys::open(path, false, false, false)
        .op("open", path)
        .map_err(Error::Io)?;
    let meta = file.metadata().op("stat", path).map_err(Error::Io)?;
    let kind = FileKind::of(&meta);
    match kind {
        FileKind::Directory => return Err(Error::IsADirectory(path.to_path_buf())),
        FileKind::Regular | FileKind::BlockDevice => {}
        other => {
            return Err(Error::NotAFile {
                path: path.to_path_buf(),
                kind: other.name(),
            })
        }
    }
    let size = if kind == FileKind::BlockDevice {
        iosys::block_device_size(&file)
            .op("ioctl(BLKGETSIZE64)", path)
            .map_err(Error::Io)?
    } else {
        meta.len()
    };
    let stream = kind == FileKind::Regular && iosys::is_synthetic_fs(&file);
    Ok(Source {
        file,
        meta,
        size,
        stream,
    })
}

/// An open copy destination.
#[derive(Debug)]
pub struct Destination {
    /// The path, for messages.
    pub path: PathBuf,
    /// The open file, write-only.
    pub file: File,
    /// Regular file or block device.
    pub kind: FileKind,
    /// Its metadata right after opening.
    pub meta: Metadata,
    /// Whether this call created it.
    pub created: bool,
}

impl Destination {
    /// Whether it is a block device (never truncated, always synced).
    pub fn is_block_device(&self) -> bool {
        self.kind == FileKind::BlockDevice
    }

    /// The size: `st_size`, or `BLKGETSIZE64` for a block device.
    pub fn size(&self) -> Result<u64> {
        if self.is_block_device() {
            iosys::block_device_size(&self.file)
                .op("ioctl(BLKGETSIZE64)", &self.path)
                .map_err(Error::Io)
        } else {
            Ok(self
                .file
                .metadata()
                .op("stat", &self.path)
                .map_err(Error::Io)?
                .len())
        }
    }

    /// Fail with [`Error::OutOfRange`] unless a block device holds `[start, start + len)`
    /// (a regular file grows as needed). Called before anything is written.
    pub fn check_fits(&self, start: u64, len: u64) -> Result<()> {
        if !self.is_block_device() {
            return Ok(());
        }
        let size = self.size()?;
        if start.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::OutOfRange {
                path: self.path.clone(),
                start,
                length: len,
                size,
            });
        }
        Ok(())
    }

    /// `fsync`: the data and metadata reach stable storage.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .op("fsync", &self.path)
            .map_err(Error::Io)
    }
}

/// Open (or create, with `create`) `path` as a copy destination without truncating it: the
/// bytes before the window are kept, and an error later must not have destroyed anything.
/// A block device is opened `O_EXCL`, which the kernel refuses with EBUSY while it is
/// mounted or otherwise claimed, so a copy never writes under a filesystem. Directories,
/// FIFOs, sockets and character devices are refused before anything is opened for writing.
pub fn open_destination(path: &Path, create: bool) -> Result<Destination> {
    let before = match std::fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => None,
        Err(e) => {
            return Err(Error::Io(
                sparsekit_io::IoError::new("stat", e).with_path(path),
            ))
        }
    };
    let bdev = match &before {
        Some(m) => match FileKind::of(m) {
            FileKind::Directory => return Err(Error::IsADirectory(path.to_path_buf())),
            FileKind::Regular => false,
            FileKind::BlockDevice => true,
            other => {
                return Err(Error::NotAFile {
                    path: path.to_path_buf(),
                    kind: other.name(),
                })
            }
        },
        None => false,
    };
    let mut flags = libc::O_WRONLY;
    if bdev {
        flags |= libc::O_EXCL;
    } else if create {
        flags |= libc::O_CREAT;
    }
    let file = iosys::open_flags(path, flags)
        .op("open", path)
        .map_err(Error::Io)?;
    let meta = file.metadata().op("stat", path).map_err(Error::Io)?;
    let kind = FileKind::of(&meta);
    if !kind.is_positional() {
        // Replaced by something else between the stat and the open.
        return Err(Error::NotAFile {
            path: path.to_path_buf(),
            kind: kind.name(),
        });
    }
    Ok(Destination {
        path: path.to_path_buf(),
        file,
        kind,
        meta,
        created: before.is_none(),
    })
}

/// Refuse to copy a file onto itself: the same inode (hard links, symlinks, bind mounts),
/// the same block device, or a loop device whose backing file is the other end (writing
/// the loop device would rewrite the source under the copy).
pub fn check_not_same(src_path: &Path, src: &Source, dst: &Destination) -> Result<()> {
    let same_inode = |a: &Metadata, b: &Metadata| a.dev() == b.dev() && a.ino() == b.ino();
    let s_bdev = src.meta.file_type().is_block_device();
    let same = if dst.is_block_device() {
        s_bdev && src.meta.rdev() == dst.meta.rdev()
    } else {
        same_inode(&src.meta, &dst.meta)
    };
    let backs = |dev: &File, file: &Metadata| -> bool {
        matches!(iosys::loop_backing(dev), Ok(Some((d, i, _))) if d == file.dev() && i == file.ino())
    };
    let looped = (dst.is_block_device() && !s_bdev && backs(&dst.file, &src.meta))
        || (s_bdev && !dst.is_block_device() && backs(&src.file, &dst.meta));
    if same || looped {
        return Err(Error::SameFile {
            src: src_path.to_path_buf(),
            dst: dst.path.clone(),
        });
    }
    Ok(())
}
