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
    /// A second descriptor for reads past the page cache ([`FileStorage::read_direct`]).
    direct: Option<Direct>,
}

/// The `O_DIRECT` descriptor of a [`FileStorage`] and the alignment its reads need.
#[derive(Debug)]
struct Direct {
    file: File,
    /// Offsets and lengths must be multiples of this (the device's logical block size; a
    /// page for regular files); buffers are page-aligned.
    align: u64,
    /// Set once the OS refused an aligned read (EINVAL): buffered reads from then on.
    off: std::sync::atomic::AtomicBool,
}

impl Direct {
    /// Whether a read of `buf` at `offset` goes through this descriptor: it is aligned (a
    /// page-aligned buffer, offset and length in whole blocks) and the OS has not refused one.
    fn serves(&self, buf: &[u8], offset: u64) -> bool {
        (buf.as_ptr() as usize).is_multiple_of(crate::PAGE)
            && offset.is_multiple_of(self.align)
            && (buf.len() as u64).is_multiple_of(self.align)
            && !self.off.load(std::sync::atomic::Ordering::Relaxed)
    }
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

    /// Open a destination that an image is written into: an existing file or device, for
    /// reading and writing (`excl_device`: `O_EXCL` on a block device). A missing path fails
    /// with `ENOENT` unless `create_files`, and a path in the OS's device namespace (under
    /// `/dev`, `\\.\`) is never created: a drive that vanished (a card pulled after it was
    /// listed, a mistyped `/dev/sdX`) must not turn into a regular file that then "flashes"
    /// successfully.
    ///
    /// The file is opened without `O_CREAT` first, so a path that vanishes between a caller's
    /// checks and this call is still refused.
    pub fn open_destination(
        path: &Path,
        create_files: bool,
        excl_device: bool,
    ) -> Result<Self, IoError> {
        match Self::open_with(path, true, false, excl_device) {
            Err(e) if e.raw_os_error() == Some(crate::errno::ENOENT) => {
                if is_device_namespace(path) {
                    Err(e.with_hint(
                        "no such drive (removed, or a mistyped name); paths in the device \
                         namespace are never created as files",
                    ))
                } else if !create_files {
                    Err(e.with_hint(
                        "the destination does not exist (a drive that was removed, or a \
                         mistyped path); to write the image into a new regular file, ask for \
                         it (createFiles: true; CLI --create)",
                    ))
                } else {
                    Self::open_with(path, true, true, false)
                }
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(crate::errno::EACCES) | Some(crate::errno::EPERM)
                ) && is_device_namespace(path) =>
            {
                Err(e.with_hint(if cfg!(windows) {
                    "writing a drive needs an elevated (administrator) process"
                } else {
                    "writing a drive needs root (sudo), membership of the group that owns \
                     the device (often 'disk'), or an elevated helper process"
                }))
            }
            r => r,
        }
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
                direct: None,
            }),
        }
    }

    /// Read past the page cache from now on where the OS allows (`O_DIRECT` on Linux,
    /// `F_NOCACHE` on macOS; not on Windows): a second descriptor of the same path serves
    /// each read whose buffer is page-aligned and whose offset and length are multiples of
    /// the device's logical block size ([`crate::PageBuf`]s of whole blocks); other reads,
    /// and all reads once the OS refuses one, use the buffered descriptor. A drive read
    /// once from end to end (a backup) then costs no copy through the page cache and does
    /// not evict what the rest of the system cached. Writes are unchanged (the kernel
    /// writes back dirty cached pages of a range before a direct read of it).
    pub fn read_direct(mut self) -> Self {
        let align = match self.kind {
            FileKind::BlockDevice => {
                sys::block_sizes(&self.file).map_or(4096, |(l, _)| u64::from(l))
            }
            _ => crate::PAGE as u64,
        };
        if let Ok(file) = sys::open_direct_read(&self.path) {
            self.direct = Some(Direct {
                file,
                align: align.max(512),
                off: std::sync::atomic::AtomicBool::new(false),
            });
        }
        self
    }

    /// Whether aligned reads go past the page cache ([`FileStorage::read_direct`] was
    /// asked, the OS opened the second descriptor and has not refused a read since).
    pub fn reads_direct(&self) -> bool {
        self.direct
            .as_ref()
            .is_some_and(|d| !d.off.load(std::sync::atomic::Ordering::Relaxed))
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
        let direct = self.direct.as_ref().filter(|d| d.serves(buf, offset));
        let file = direct.map_or(&self.file, |d| &d.file);
        loop {
            match file.read_at(buf, offset) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(crate::errno::EINVAL) && direct.is_some() => {
                    // Refused past the cache: buffered from now on (this read included).
                    if let Some(d) = direct {
                        d.off.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    return self.read_at(buf, offset);
                }
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

/// Whether `path` names something in the OS's device namespace, which sparsekit never
/// creates as a regular file: on Unix a path under `/dev` (its folder resolved, so
/// `/tmp/../dev/sdz` and a symlink to `/dev` count), on Windows `\\.\…` and the
/// `\\?\` forms other than a drive letter or UNC path (`\\?\C:\…`, `\\?\UNC\…`).
pub fn is_device_namespace(path: &Path) -> bool {
    let s = path.to_string_lossy();
    if cfg!(windows) {
        let s = s.replace('/', "\\");
        if s.starts_with("\\\\.\\") {
            return true;
        }
        if let Some(rest) = s.strip_prefix("\\\\?\\") {
            let b = rest.as_bytes();
            let drive = b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':';
            return !drive && !rest.to_ascii_uppercase().starts_with("UNC\\");
        }
        return false;
    }
    let under_dev = |p: &Path| p.starts_with("/dev");
    if under_dev(path) {
        return true;
    }
    // Resolve the folder (the path itself does not exist): `..` and symlinks.
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::canonicalize(parent).is_ok_and(|p| under_dev(&p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn destination_missing_is_enoent_unless_asked() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("new.img");
        let e = FileStorage::open_destination(&p, false, false).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
        assert!(e.to_string().contains("createFiles"), "{e}");
        assert!(!p.exists());
        FileStorage::open_destination(&p, true, false).unwrap();
        assert!(p.exists());
        // Existing: opened, not truncated.
        std::fs::write(&p, b"keep").unwrap();
        let s = FileStorage::open_destination(&p, false, false).unwrap();
        assert_eq!(s.size().unwrap(), 4);
    }

    #[test]
    fn device_namespace_is_never_created() {
        let p = Path::new("/dev/sparsekit-unit-test-missing");
        let e = FileStorage::open_destination(p, true, false).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e}");
        assert!(!p.exists());
        assert!(is_device_namespace(Path::new("/dev/sdzz")));
        assert!(is_device_namespace(Path::new("/dev/../dev/x")));
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("devlink");
        std::os::unix::fs::symlink("/dev", &link).unwrap();
        assert!(is_device_namespace(&link.join("sdzz")));
        assert!(!is_device_namespace(&d.path().join("x.img")));
        assert!(!is_device_namespace(Path::new("/devices/x")));
    }

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
    fn direct_reads_see_every_write_and_unaligned_reads_still_work() {
        // A disk file system: tmpfs has no O_DIRECT.
        let d = tempfile::tempdir_in("/var/tmp").unwrap();
        let p = d.path().join("direct.img");
        let w = FileStorage::open_destination(&p, true, false).unwrap();
        let data: Vec<u8> = (0..(1u32 << 20))
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect();
        w.write_all_at(&data, 0).unwrap();
        let r = FileStorage::open(&p).unwrap().read_direct();
        if !r.reads_direct() {
            eprintln!("SKIP direct reads: /var/tmp's file system refuses O_DIRECT here");
            return;
        }
        // Aligned: the direct descriptor. The bytes were only written to the page cache
        // (no fsync): the kernel writes them back before it reads the device.
        let mut b = crate::PageBuf::new(1 << 20);
        r.read_exact_at(&mut b[..], 0).unwrap();
        assert!(b[..] == data[..]);
        // Overwritten through the cache, read again past it.
        w.write_all_at(&[0xAB; 4096], 8192).unwrap();
        r.read_exact_at(&mut b[..8192], 8192).unwrap();
        assert!(b[..4096].iter().all(|&x| x == 0xAB));
        assert!(b[4096..8192] == data[12288..16384]);
        // Unaligned offset, length and buffer: the buffered descriptor, same bytes.
        let mut v = vec![0u8; 1000];
        r.read_exact_at(&mut v[1..], 4097).unwrap();
        assert!(v[1..] == data[4097..5096]);
        assert!(
            r.reads_direct(),
            "an unaligned read does not switch direct reads off"
        );
        // Past the end: short, as buffered.
        assert_eq!(r.read_at(&mut b[..8192], (1 << 20) - 4096).unwrap(), 4096);
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
