//! The Windows side of [`crate::sys`]: the same functions as the Linux module, on Win32.
//! Paths go to the OS as wide strings (std's `OpenOptions` converts them). Every call cites
//! its documentation (learn.microsoft.com, "Win32 API", header in brackets).
//!
//! - Positional I/O: [`FileExt`] over `seek_read`/`seek_write` (`ReadFile`/`WriteFile` with
//!   an `OVERLAPPED` offset; they also move the file pointer, which sparsekit never uses).
//! - Block devices (`\\.\PhysicalDriveN`): size by `IOCTL_DISK_GET_LENGTH_INFO`, sector size
//!   by `IOCTL_DISK_GET_DRIVE_GEOMETRY` (winioctl.h). std reports them as neither file nor
//!   directory, so [`FileTypeExt::is_block_device`] answers false: callers treat them as
//!   streams or files; flashing physical drives is not offered on Windows.
//! - Holes: `FSCTL_SET_SPARSE` + `FSCTL_SET_ZERO_DATA` (winioctl.h) for punch and zero.
//! - No FIFOs in the file system namespace: [`poll_readable`] peeks anonymous pipes with
//!   `PeekNamedPipe` (namedpipeapi.h).
//! - `dev`/`ino` come from `GetFileInformationByHandle` (volume serial number and file
//!   index) through std's `windows_by_handle` API, unstable: the Windows build compiles std
//!   itself (`-Zbuild-std`, `RUSTC_BOOTSTRAP=1`, see scripts/prebuilt) and enables it.

use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::windows::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt};
use std::os::windows::io::AsRawHandle;
use std::path::Path;

use windows_sys::Win32::Foundation::{ERROR_BROKEN_PIPE, ERROR_MORE_DATA, HANDLE};
use windows_sys::Win32::Storage::FileSystem::{
    GetFileType, FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, FILE_TYPE_PIPE,
};
use windows_sys::Win32::System::Ioctl::{
    DISK_GEOMETRY, FILE_ALLOCATED_RANGE_BUFFER, FILE_ZERO_DATA_INFORMATION,
    FSCTL_QUERY_ALLOCATED_RANGES, FSCTL_SET_SPARSE, FSCTL_SET_ZERO_DATA, GET_LENGTH_INFORMATION,
    IOCTL_DISK_GET_DRIVE_GEOMETRY, IOCTL_DISK_GET_LENGTH_INFO,
};
use windows_sys::Win32::System::Pipes::PeekNamedPipe;
use windows_sys::Win32::System::IO::DeviceIoControl;

/// `FALLOC_FL_KEEP_SIZE`, kept for the callers' sake: every mode here keeps the size.
pub const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
/// Punch a hole: `FSCTL_SET_SPARSE`, then `FSCTL_SET_ZERO_DATA` (NTFS, ReFS deallocate the
/// range of a sparse file).
pub const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;
/// Zero a range: `FSCTL_SET_ZERO_DATA` on the file as it is (a non-sparse file gets zeros
/// written by the file system).
pub const FALLOC_FL_ZERO_RANGE: i32 = 0x10;

/// Positional reads and writes (the names of `std::os::unix::fs::FileExt`), over
/// `seek_read`/`seek_write`.
pub trait FileExt {
    /// Read up to `buf.len()` bytes at `offset`; `Ok(0)` at or past the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Write up to `buf.len()` bytes at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// Fill `buf` from `offset` (UnexpectedEof if the file ends first).
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "failed to fill whole buffer",
                    ))
                }
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    /// Write all of `buf` at `offset`.
    fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, offset) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl FileExt for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.seek_read(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.seek_write(buf, offset)
    }
}

/// The Unix file types Windows has none of in its file system namespace: all false.
pub trait FileTypeExt {
    /// Always false (physical drives are not reported as such by std).
    fn is_block_device(&self) -> bool;
    /// Always false.
    fn is_char_device(&self) -> bool;
    /// Always false.
    fn is_fifo(&self) -> bool;
    /// Always false.
    fn is_socket(&self) -> bool;
}

impl FileTypeExt for std::fs::FileType {
    fn is_block_device(&self) -> bool {
        false
    }
    fn is_char_device(&self) -> bool {
        false
    }
    fn is_fifo(&self) -> bool {
        false
    }
    fn is_socket(&self) -> bool {
        false
    }
}

/// The `stat` fields sparsekit reads, from what Windows keeps.
pub trait MetadataExt {
    /// The volume serial number (`BY_HANDLE_FILE_INFORMATION`); 0 when unknown.
    fn dev(&self) -> u64;
    /// The file index, unique on its volume; 0 when unknown.
    fn ino(&self) -> u64;
    /// No device numbers on Windows: 0.
    fn rdev(&self) -> u64;
    /// 512-byte units: the size rounded up (std's metadata has no allocation size; the
    /// extent map asks the file system with `FSCTL_QUERY_ALLOCATED_RANGES` instead).
    fn blocks(&self) -> u64;
    /// 4096, the NTFS default cluster size.
    fn blksize(&self) -> u64;
    /// `0o444` for read-only files, else `0o666`.
    fn mode(&self) -> u32;
}

impl MetadataExt for Metadata {
    fn dev(&self) -> u64 {
        self.volume_serial_number().map_or(0, u64::from)
    }
    fn ino(&self) -> u64 {
        self.file_index().unwrap_or(0)
    }
    fn rdev(&self) -> u64 {
        0
    }
    fn blocks(&self) -> u64 {
        self.file_size().div_ceil(512)
    }
    fn blksize(&self) -> u64 {
        4096
    }
    fn mode(&self) -> u32 {
        if self.permissions().readonly() {
            0o444
        } else {
            0o666
        }
    }
}

/// `DeviceIoControl` (ioapiset.h) with an input and an output buffer; the bytes returned.
///
/// # Safety
/// `input` and `output` must be what `code` reads and writes.
pub unsafe fn device_io_control(
    file: &File,
    code: u32,
    input: *const core::ffi::c_void,
    input_len: usize,
    output: *mut core::ffi::c_void,
    output_len: usize,
) -> io::Result<u32> {
    let mut returned = 0u32;
    // SAFETY: the caller vouches for the buffers; the handle is open.
    let ok = unsafe {
        DeviceIoControl(
            file.as_raw_handle() as HANDLE,
            code,
            input,
            input_len as u32,
            output,
            output_len as u32,
            &mut returned,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(returned)
}

/// Open `path` for reading (and writing, with `write`); `create` creates a missing file.
/// Other handles may read, write and delete meanwhile (the POSIX behaviour); `excl_device`
/// shares nothing (a held drive fails with ERROR_SHARING_VIOLATION).
pub fn open(path: &Path, write: bool, create: bool, excl_device: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(write).create(create && write);
    o.share_mode(if excl_device {
        0
    } else {
        FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE
    });
    directory_is_eisdir(path, o.open(path))
}

/// `CreateFileW` refuses a directory without `FILE_FLAG_BACKUP_SEMANTICS` with
/// `ERROR_ACCESS_DENIED`, the error of a real permission problem too: when the path is a
/// directory, say so instead (`EISDIR`, as on Linux and as Node names it on Windows).
fn directory_is_eisdir(path: &Path, r: io::Result<File>) -> io::Result<File> {
    match r {
        Err(e)
            if e.raw_os_error()
                == Some(windows_sys::Win32::Foundation::ERROR_ACCESS_DENIED as i32)
                && std::fs::metadata(path).is_ok_and(|m| m.is_dir()) =>
        {
            Err(io::Error::from_raw_os_error(crate::errno::EISDIR))
        }
        r => r,
    }
}

/// [`open`] with the access mode and creation flags given as `open(2)` flags (the C
/// runtime's `O_*` values, as the `libc` crate defines them for Windows).
pub fn open_flags(path: &Path, flags: i32) -> io::Result<File> {
    let mut o = OpenOptions::new();
    let acc = flags & (libc::O_RDONLY | libc::O_WRONLY | libc::O_RDWR);
    o.read(acc != libc::O_WRONLY)
        .write(acc != libc::O_RDONLY)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE);
    if flags & libc::O_CREAT != 0 {
        if flags & libc::O_EXCL != 0 {
            o.create_new(true);
        } else {
            o.create(true);
        }
    }
    if flags & libc::O_TRUNC != 0 {
        o.truncate(true);
    }
    directory_is_eisdir(path, o.open(path))
}

/// No `O_NONBLOCK` on Windows handles: [`poll_readable`] waits instead. Always Ok.
pub fn set_nonblocking(_file: &File, _on: bool) -> io::Result<()> {
    Ok(())
}

/// Wait up to `timeout_ms` for a pipe to hold data or be closed (`PeekNamedPipe`,
/// namedpipeapi.h, every 5 ms); other handles are always readable.
pub fn poll_readable(file: &File, timeout_ms: i32) -> io::Result<bool> {
    let h = file.as_raw_handle() as HANDLE;
    // SAFETY: GetFileType (fileapi.h) on an open handle.
    if unsafe { GetFileType(h) } != FILE_TYPE_PIPE {
        return Ok(true);
    }
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms.max(0) as u64);
    loop {
        let mut avail = 0u32;
        // SAFETY: no buffer, only the count of available bytes.
        let ok = unsafe {
            PeekNamedPipe(
                h,
                std::ptr::null_mut(),
                0,
                std::ptr::null_mut(),
                &mut avail,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            let e = io::Error::last_os_error();
            // The writer is gone: the next read returns end of file.
            if e.raw_os_error() == Some(ERROR_BROKEN_PIPE as i32) {
                return Ok(true);
            }
            return Err(e);
        }
        if avail > 0 {
            return Ok(true);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The size in bytes of a disk (`IOCTL_DISK_GET_LENGTH_INFO`, winioctl.h).
pub fn block_device_size(file: &File) -> io::Result<u64> {
    let mut info = GET_LENGTH_INFORMATION { Length: 0 };
    // SAFETY: the ioctl writes one GET_LENGTH_INFORMATION.
    unsafe {
        device_io_control(
            file,
            IOCTL_DISK_GET_LENGTH_INFO,
            std::ptr::null(),
            0,
            (&mut info as *mut GET_LENGTH_INFORMATION).cast(),
            std::mem::size_of::<GET_LENGTH_INFORMATION>(),
        )?;
    }
    Ok(info.Length as u64)
}

/// A disk's sector size, logical and physical alike (`IOCTL_DISK_GET_DRIVE_GEOMETRY`,
/// winioctl.h: `BytesPerSector`).
pub fn block_sizes(file: &File) -> io::Result<(u32, u32)> {
    // SAFETY: zeroed plain-data struct, written by the ioctl.
    let mut g: DISK_GEOMETRY = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl writes one DISK_GEOMETRY.
    unsafe {
        device_io_control(
            file,
            IOCTL_DISK_GET_DRIVE_GEOMETRY,
            std::ptr::null(),
            0,
            (&mut g as *mut DISK_GEOMETRY).cast(),
            std::mem::size_of::<DISK_GEOMETRY>(),
        )?;
    }
    Ok((g.BytesPerSector, g.BytesPerSector))
}

/// Mark a file sparse (`FSCTL_SET_SPARSE`, winioctl.h; no input buffer means "sparse").
pub fn set_sparse(file: &File) -> io::Result<()> {
    // SAFETY: no buffers.
    unsafe {
        device_io_control(
            file,
            FSCTL_SET_SPARSE,
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
            0,
        )
    }
    .map(drop)
}

/// Zero `[offset, offset + len)` (`FSCTL_SET_ZERO_DATA`, winioctl.h): a sparse file's
/// clusters in the range are deallocated, a non-sparse file's are written with zeros.
pub fn set_zero_data(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let end = offset
        .checked_add(len)
        .filter(|&e| e <= i64::MAX as u64)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let z = FILE_ZERO_DATA_INFORMATION {
        FileOffset: offset as i64,
        BeyondFinalZero: end as i64,
    };
    // SAFETY: the ioctl reads one FILE_ZERO_DATA_INFORMATION.
    unsafe {
        device_io_control(
            file,
            FSCTL_SET_ZERO_DATA,
            (&z as *const FILE_ZERO_DATA_INFORMATION).cast(),
            std::mem::size_of::<FILE_ZERO_DATA_INFORMATION>(),
            std::ptr::null_mut(),
            0,
        )
    }
    .map(drop)
}

/// `fallocate` modes on Windows: `FALLOC_FL_PUNCH_HOLE` marks the file sparse and zeroes
/// the range (deallocating it), `FALLOC_FL_ZERO_RANGE` zeroes it as the file is; both keep
/// the size (`FSCTL_SET_ZERO_DATA` never extends a file: the range is cut at its end).
/// Any other mode is `Unsupported`.
pub fn fallocate(file: &File, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    let size = file.metadata()?.len();
    let len = len.min(size.saturating_sub(offset));
    if mode & FALLOC_FL_PUNCH_HOLE != 0 {
        set_sparse(file)?;
    } else if mode & FALLOC_FL_ZERO_RANGE == 0 {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    if len == 0 {
        return Ok(());
    }
    set_zero_data(file, offset, len)
}

/// No zeroing command for disks here: `Unsupported`, and the caller writes zeros.
pub fn blk_zeroout(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// No loop devices on Windows: `Ok(None)`.
pub fn loop_backing(_file: &File) -> io::Result<Option<(u64, u64, u64)>> {
    Ok(None)
}

/// No procfs or sysfs on Windows: false.
pub fn is_synthetic_fs(_file: &File) -> bool {
    false
}

/// The first allocated range of `file` that ends after `offset`, as `(start, end)`, from
/// `FSCTL_QUERY_ALLOCATED_RANGES` over `[offset, size)`; `None` when there is none.
fn first_range(file: &File, offset: u64, size: u64) -> io::Result<Option<(u64, u64)>> {
    let query = FILE_ALLOCATED_RANGE_BUFFER {
        FileOffset: offset as i64,
        Length: (size - offset) as i64,
    };
    let mut out = [FILE_ALLOCATED_RANGE_BUFFER {
        FileOffset: 0,
        Length: 0,
    }; 8];
    // SAFETY: the ioctl reads one FILE_ALLOCATED_RANGE_BUFFER and writes up to 8.
    let got = unsafe {
        device_io_control(
            file,
            FSCTL_QUERY_ALLOCATED_RANGES,
            (&query as *const FILE_ALLOCATED_RANGE_BUFFER).cast(),
            std::mem::size_of::<FILE_ALLOCATED_RANGE_BUFFER>(),
            out.as_mut_ptr().cast(),
            std::mem::size_of_val(&out),
        )
    };
    let bytes = match got {
        Ok(n) => n as usize,
        // The buffer is full and more ranges follow: the first ones are there.
        Err(e) if e.raw_os_error() == Some(ERROR_MORE_DATA as i32) => std::mem::size_of_val(&out),
        // ERROR_INVALID_FUNCTION, ERROR_NOT_SUPPORTED, ...: this file system cannot tell.
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io::Error::from_raw_os_error(crate::errno::EOPNOTSUPP))
        }
        Err(e) => return Err(e),
    };
    let n = bytes / std::mem::size_of::<FILE_ALLOCATED_RANGE_BUFFER>();
    Ok(out[..n.min(out.len())]
        .iter()
        .map(|r| {
            (
                r.FileOffset.max(0) as u64,
                r.FileOffset.saturating_add(r.Length).max(0) as u64,
            )
        })
        .find(|&(s, e)| e > offset && e > s)
        .map(|(s, e)| (s.max(offset), e.min(size))))
}

/// `lseek(SEEK_DATA / SEEK_HOLE)` semantics from `FSCTL_QUERY_ALLOCATED_RANGES`: the next
/// data (or hole) at or after `offset`; `Ok(None)` at or past the end of the file (ENXIO),
/// and for SEEK_DATA when only holes follow. The end of the file counts as a hole.
pub fn seek_allocated(file: &File, offset: u64, hole: bool) -> io::Result<Option<u64>> {
    let size = file.metadata()?.len();
    if offset >= size {
        return Ok(None);
    }
    if !hole {
        return Ok(first_range(file, offset, size)?.map(|(s, _)| s));
    }
    let mut pos = offset;
    while pos < size {
        match first_range(file, pos, size)? {
            Some((s, e)) if s <= pos => pos = e,
            _ => return Ok(Some(pos)),
        }
    }
    Ok(Some(size))
}

/// Unbuffered writes (`FILE_FLAG_NO_BUFFERING`) are not offered on Windows yet:
/// `Unsupported`, and the caller writes through its buffered handle.
pub fn open_direct(_path: &Path) -> io::Result<File> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Unbuffered reads are not offered on Windows yet: `Unsupported`, and the caller reads
/// through its buffered handle.
pub fn open_direct_read(_path: &Path) -> io::Result<File> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Page-cache hint: Windows has no call that evicts a range of a file from the cache, so
/// nothing is done (a read-back then reads through the system cache: it checks what the
/// file system holds, not the medium).
pub fn drop_cache(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

/// Page-cache hint: no read-ahead advice for an open handle: `Unsupported`.
pub fn sequential(_file: &File) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Page-cache hint: no read-ahead request for a range of an open handle: `Unsupported`.
pub fn will_need(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Page-cache hint: no asynchronous writeback start: `Unsupported`.
pub fn start_writeback(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// No ranged write-back wait on Windows, and the flash writer's checks hold a read-only
/// handle, which `FlushFileBuffers` (fileapi.h) refuses (ERROR_ACCESS_DENIED): nothing is
/// waited for here. Write errors surface at the write itself on disks (opened
/// `FILE_FLAG_WRITE_THROUGH | FILE_FLAG_NO_BUFFERING`) and at the destination's final
/// flush, through the writer's handle, on files.
pub fn wait_writeback(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}

/// Thread priority: left as it is on Windows.
pub fn lower_thread_priority(_by: i32) -> io::Result<()> {
    Ok(())
}

/// The machine's physical memory: not asked on Windows yet (`None`: callers use their
/// smaller default).
pub fn physical_memory() -> Option<u64> {
    None
}
