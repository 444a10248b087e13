use crate::sys::{FileExt, FileTypeExt};
use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};

use crate::error::Context;
use crate::{sys, IoError, Storage};

/// What a path names, as far as positional I/O cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    Regular,
    /// A block device (sized by `BLKGETSIZE64`, never truncated).
    BlockDevice,
    /// A directory.
    Directory,
    /// A FIFO (named pipe).
    Fifo,
    /// A character device (`/dev/zero`, a tty).
    CharDevice,
    /// A socket.
    Socket,
}

impl FileKind {
    /// The kind of file `meta` describes.
    pub fn of(meta: &Metadata) -> FileKind {
        let t = meta.file_type();
        if t.is_file() {
            FileKind::Regular
        } else if t.is_dir() {
            FileKind::Directory
        } else if t.is_block_device() {
            FileKind::BlockDevice
        } else if t.is_fifo() {
            FileKind::Fifo
        } else if t.is_char_device() {
            FileKind::CharDevice
        } else {
            FileKind::Socket
        }
    }

    /// `regular file`, `block device`, `directory`, `fifo`, `character device`, `socket`.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Regular => "regular file",
            FileKind::BlockDevice => "block device",
            FileKind::Directory => "directory",
            FileKind::Fifo => "fifo",
            FileKind::CharDevice => "character device",
            FileKind::Socket => "socket",
        }
    }

    /// Regular files and block devices can be read and written at offsets.
    pub fn is_positional(self) -> bool {
        matches!(self, FileKind::Regular | FileKind::BlockDevice)
    }
}

/// [`Storage`] over a regular file or a block device.
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    path: PathBuf,
    kind: FileKind,
}

impl FileStorage {
    /// Open for reading. Directories fail with EISDIR, streams (FIFOs, sockets, character
    /// devices) with ESPIPE: they have no offsets. Opening never blocks (see [`sys::open`]).
    pub fn open(path: &Path) -> Result<Self, IoError> {
        Self::open_with(path, false, false, false)
    }

    /// Open an existing file or device for reading and writing.
    pub fn open_rw(path: &Path) -> Result<Self, IoError> {
        Self::open_with(path, true, false, false)
    }

    /// Open with every choice: `write`, `create` (regular files) and `excl_device`
    /// (`O_EXCL`: a mounted or otherwise held block device fails with EBUSY).
    pub fn open_with(
        path: &Path,
        write: bool,
        create: bool,
        excl_device: bool,
    ) -> Result<Self, IoError> {
        let file = sys::open(path, write, create, excl_device).op("open", path)?;
        Self::from_file(file, path)
    }

    /// Wrap an open file; `path` is for messages.
    pub fn from_file(file: File, path: &Path) -> Result<Self, IoError> {
        let meta = file.metadata().op("stat", path)?;
        let kind = FileKind::of(&meta);
        match kind {
            FileKind::Directory => {
                Err(IoError::from_errno("open", crate::errno::EISDIR).with_path(path))
            }
            k if !k.is_positional() => {
                Err(IoError::from_errno("open", crate::errno::ESPIPE).with_path(path))
            }
            _ => Ok(FileStorage {
                file,
                path: path.to_path_buf(),
                kind,
            }),
        }
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Regular file or block device.
    pub fn kind(&self) -> FileKind {
        self.kind
    }

    /// Give the file back.
    pub fn into_file(self) -> File {
        self.file
    }
}

impl Storage for FileStorage {
    fn size(&self) -> Result<u64, IoError> {
        match self.kind {
            FileKind::BlockDevice => {
                sys::block_device_size(&self.file).op("ioctl(BLKGETSIZE64)", &self.path)
            }
            _ => Ok(self.file.metadata().op("stat", &self.path)?.len()),
        }
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, IoError> {
        loop {
            match self.file.read_at(buf, offset) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => return r.op_at("read", &self.path, offset),
            }
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize, IoError> {
        loop {
            match self.file.write_at(buf, offset) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => return r.op_at("write", &self.path, offset),
            }
        }
    }

    fn flush(&self) -> Result<(), IoError> {
        self.file.sync_all().op("fsync", &self.path)
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }

    /// Block devices: `BLKZEROOUT` (the device's write-zeroes or discard-zeroes command)
    /// when aligned to 512 bytes. Regular files: `FALLOC_FL_ZERO_RANGE` (ext4, XFS) inside
    /// the file, else writing zeros (btrfs and tmpfs answer EOPNOTSUPP). Either way the
    /// kernel's refusal only means "write zeros instead".
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), IoError> {
        if len == 0 {
            return Ok(());
        }
        let fast = match self.kind {
            FileKind::BlockDevice if offset.is_multiple_of(512) && len.is_multiple_of(512) => {
                sys::blk_zeroout(&self.file, offset, len).is_ok()
            }
            FileKind::Regular => sys::fallocate(
                &self.file,
                sys::FALLOC_FL_ZERO_RANGE | sys::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            )
            .is_ok(),
            _ => false,
        };
        if fast {
            return Ok(());
        }
        crate::storage::write_zeroes_by_writing(self, offset, len)
    }

    /// `fallocate(PUNCH_HOLE | KEEP_SIZE)`; on a block device the kernel turns it into a
    /// zeroing discard (Linux 4.9). EOPNOTSUPP where the filesystem cannot.
    fn punch_hole(&self, offset: u64, len: u64) -> Result<(), IoError> {
        if len == 0 {
            return Ok(());
        }
        sys::fallocate(
            &self.file,
            sys::FALLOC_FL_PUNCH_HOLE | sys::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
        .op_at("fallocate(PUNCH_HOLE)", &self.path, offset)
    }

    fn set_len(&self, len: u64) -> Result<(), IoError> {
        if self.kind == FileKind::BlockDevice {
            return Err(
                IoError::from_errno("ftruncate", crate::errno::EINVAL).with_path(&self.path)
            );
        }
        self.file.set_len(len).op("ftruncate", &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn punch_and_zero_keep_size() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let s = FileStorage::open_rw(t.path()).unwrap();
        s.write_all_at(&vec![7u8; 1 << 20], 0).unwrap();
        s.flush().unwrap();
        s.punch_hole(0, 512 * 1024).unwrap();
        s.write_zeroes(512 * 1024, 4096).unwrap();
        assert_eq!(s.size().unwrap(), 1 << 20);
        let mut b = vec![1u8; 4096];
        s.read_exact_at(&mut b, 512 * 1024).unwrap();
        assert!(b.iter().all(|&x| x == 0));
        s.read_exact_at(&mut b, 0).unwrap();
        assert!(b.iter().all(|&x| x == 0));
        let blocks = std::fs::metadata(t.path()).unwrap().blocks();
        assert!(blocks < 2048, "hole punched: {blocks} sectors");
    }

    #[test]
    fn directories_and_streams_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = FileStorage::open(d.path()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EISDIR));
        let e = FileStorage::open(Path::new("/dev/null")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ESPIPE));
        let e = FileStorage::open(Path::new("/nonexistent/x")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        assert_eq!(e.path.as_deref(), Some(Path::new("/nonexistent/x")));
    }
}
