//! Every Linux-specific call of this crate (and the ones other crates share): opening without
//! blocking on FIFOs, block device sizes and zeroing, fallocate, poll, loop device backing
//! files. Other OSes have their own module with the same functions: sys/macos.rs,
//! sys/windows.rs.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Positional I/O and `stat` fields under the names every platform module exports (the
/// Windows module defines traits of the same names).
pub use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt};

/// `BLKGETSIZE64 = _IOR(0x12, 114, size_t)` (linux/fs.h) on 64-bit architectures.
const BLKGETSIZE64: u64 = 0x8008_1272;
/// `BLKSSZGET = _IO(0x12, 104)` (linux/fs.h): logical sector size (int).
const BLKSSZGET: u64 = 0x1268;
/// `BLKPBSZGET = _IO(0x12, 123)` (linux/fs.h): physical sector size (unsigned int).
const BLKPBSZGET: u64 = 0x127B;
/// `BLKZEROOUT = _IO(0x12, 127)` (linux/fs.h): zero a byte range `{start, len}` (u64[2]),
/// with the device's write-zeroes command where it has one (Linux 3.7).
const BLKZEROOUT: u64 = 0x127F;
/// `LOOP_GET_STATUS64 = 0x4C05` (linux/loop.h): `struct loop_info64` of a loop device.
const LOOP_GET_STATUS64: u64 = 0x4C05;
/// The loop driver's block major (linux/major.h `LOOP_MAJOR`).
const LOOP_MAJOR: u32 = 7;

/// `FALLOC_FL_KEEP_SIZE` (linux/falloc.h).
pub const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
/// `FALLOC_FL_PUNCH_HOLE` (linux/falloc.h), always with KEEP_SIZE (Linux 2.6.38; ext4 3.0,
/// XFS, btrfs 3.7, tmpfs 3.5; block devices 4.9).
pub const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;
/// `FALLOC_FL_ZERO_RANGE` (linux/falloc.h, Linux 3.15; ext4, XFS; not btrfs or tmpfs, which
/// answer EOPNOTSUPP).
pub const FALLOC_FL_ZERO_RANGE: i32 = 0x10;

#[path = "sys/posix.rs"]
mod posix;
pub use posix::{open, open_flags, physical_memory, poll_readable, seek, set_nonblocking};

/// The size in bytes of a block device (`BLKGETSIZE64`; its `st_size` is 0).
pub fn block_device_size(file: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64 as libc::Ioctl, &mut size) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(size)
}

/// A block device's logical and physical sector sizes (`BLKSSZGET`, `BLKPBSZGET`): the
/// alignment `O_DIRECT` needs, and the size writes should come in.
pub fn block_sizes(file: &File) -> io::Result<(u32, u32)> {
    let mut logical: libc::c_int = 0;
    let mut physical: libc::c_uint = 0;
    // SAFETY: each ioctl writes one int.
    unsafe {
        if libc::ioctl(file.as_raw_fd(), BLKSSZGET as libc::Ioctl, &mut logical) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::ioctl(file.as_raw_fd(), BLKPBSZGET as libc::Ioctl, &mut physical) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((logical as u32, physical))
}

/// `fallocate(fd, mode, offset, len)`, retried on EINTR.
pub fn fallocate(file: &File, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    };
    loop {
        // SAFETY: plain syscall.
        if unsafe { libc::fallocate(file.as_raw_fd(), mode, off, len) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// `BLKZEROOUT` over `[offset, offset + len)` of a block device (both 512-byte aligned,
/// else EINVAL).
pub fn blk_zeroout(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: BLKZEROOUT reads a u64[2].
    let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKZEROOUT as libc::Ioctl, range.as_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What a loop device reads and writes: the backing file's device and inode numbers and
/// the offset into it. `Ok(None)` when `file` is no loop device or has no backing file.
pub fn loop_backing(file: &File) -> io::Result<Option<(u64, u64, u64)>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = file.metadata()?;
    if !meta.file_type().is_block_device() || libc::major(meta.rdev()) != LOOP_MAJOR {
        return Ok(None);
    }
    // struct loop_info64 (linux/loop.h): lo_device, lo_inode, lo_rdevice, lo_offset,
    // lo_sizelimit (u64 each), 4 u32, 64+64+32 bytes of names and key, lo_init[2] (u64):
    // 232 bytes. Only the first four fields are read.
    let mut info = [0u64; 29];
    // SAFETY: the buffer is 232 bytes, as LOOP_GET_STATUS64 writes.
    let r = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            LOOP_GET_STATUS64 as libc::Ioctl,
            info.as_mut_ptr(),
        )
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        // ENXIO: a loop device with no file attached.
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some((info[0], info[1], info[3])))
}

/// Filesystems whose files' sizes say nothing about their content (`statfs` `f_type`,
/// linux/magic.h): procfs files report 0 bytes, sysfs attributes 4096, whatever they hold.
const SYNTHETIC_FS: [i64; 9] = [
    0x9fa0,      // PROC_SUPER_MAGIC
    0x6265_6572, // SYSFS_MAGIC
    0x6462_6720, // DEBUGFS_MAGIC
    0x7472_6163, // TRACEFS_MAGIC
    0x7363_6673, // SECURITYFS_MAGIC
    0x6367_7270, // CGROUP2_SUPER_MAGIC
    0x0027_e0eb, // CGROUP_SUPER_MAGIC
    0x6265_6570, // CONFIGFS_MAGIC
    0xcafe_4a11, // BPF_FS_MAGIC
];

/// Whether `file` lives on procfs, sysfs or a similar filesystem whose file sizes are not
/// the size of their content: such files must be read to end of file (coreutils' `cp`
/// and `cat` do), never trusted for their `st_size`.
pub fn is_synthetic_fs(file: &File) -> bool {
    // SAFETY: fstatfs fills the struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)]
    SYNTHETIC_FS.contains(&(st.f_type as i64))
}

/// Open `path` for writing with `O_DIRECT` (open(2)): writes go from the caller's buffer
/// to the device without a copy into the page cache. Buffers, offsets and lengths must be
/// aligned to the device's logical block size (a [`crate::PageBuf`] and page multiples
/// cover every device); a device or filesystem that refuses a transfer says EINVAL.
pub fn open_direct(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

/// Open `path` for reading with `O_DIRECT`: reads go from the device into the caller's
/// buffer, without a copy through (or eviction from) the page cache. The same alignment
/// rules as [`open_direct`]; a file system without it (tmpfs) fails with EINVAL.
pub fn open_direct_read(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
}

fn fadvise(file: &File, offset: u64, len: u64, advice: libc::c_int) -> io::Result<()> {
    let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: plain syscall on a valid descriptor; it returns the error number.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), off, len, advice) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Page-cache hint: `posix_fadvise(POSIX_FADV_DONTNEED)` (linux/fadvise.h): evict the
/// clean cached pages of `[offset, offset + len)` so that the next read goes to the
/// device. Dirty pages are not dropped (mm/fadvise.c only invalidates what writeback
/// finished), so callers `fsync` first. Works on regular files and on block devices (their
/// page cache is the bdev inode's mapping).
pub fn drop_cache(file: &File, offset: u64, len: u64) -> io::Result<()> {
    fadvise(file, offset, len, libc::POSIX_FADV_DONTNEED)
}

/// Page-cache hint: `posix_fadvise(POSIX_FADV_SEQUENTIAL)`: double the read-ahead window
/// for a file read front to back (a compressed image). Callers ignore failures.
pub fn sequential(file: &File) -> io::Result<()> {
    fadvise(file, 0, 0, libc::POSIX_FADV_SEQUENTIAL)
}

/// Page-cache hint: `posix_fadvise(POSIX_FADV_WILLNEED)` (linux/fadvise.h): start reading
/// `[offset, offset + len)` into the page cache without waiting, so a reader that hashes
/// what it read finds the next range there. Callers ignore failures.
pub fn will_need(file: &File, offset: u64, len: u64) -> io::Result<()> {
    fadvise(file, offset, len, libc::POSIX_FADV_WILLNEED)
}

/// Page-cache hint: `sync_file_range(SYNC_FILE_RANGE_WRITE)` (linux/fs.h, Linux 2.6.17):
/// start writeback of the dirty pages of `[offset, offset + len)` without waiting for it.
/// A copy writes far less than `dirty_background_ratio` of RAM, so without this the kernel
/// would start no writeback before the final `fsync`, which would then write everything
/// while the copy waits; kicked per chunk, the device writes while the next ranges are
/// read. Durability still comes from `fsync`; any descriptor of the file works (it acts on
/// the inode's page cache). Callers ignore failures (EINVAL where a file system lacks it).
pub fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    // SAFETY: plain syscall on a valid descriptor.
    let r =
        unsafe { libc::sync_file_range(file.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Lower the calling thread's scheduling priority by `by` nice steps
/// (`setpriority(PRIO_PROCESS, gettid(), nice + by)`: on Linux a thread id names one
/// thread). For bulk workers whose output a serial computation waits on less than that
/// computation itself: on a machine with few cores the scheduler then gives the serial
/// chain the core it needs, and the workers the rest. Callers ignore failures.
pub fn lower_thread_priority(by: i32) -> io::Result<()> {
    // SAFETY: plain syscalls; errno is checked where -1 is ambiguous.
    unsafe {
        // The syscall, not glibc's gettid(): that wrapper came with glibc 2.30, and the
        // prebuilt binaries run on glibc 2.17.
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if now == -1 && *libc::__errno_location() != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setpriority(libc::PRIO_PROCESS, tid, (now + by).min(19)) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `sync_file_range(SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
/// SYNC_FILE_RANGE_WAIT_AFTER)` (linux/fs.h): write the dirty pages of `[offset, offset +
/// len)` and wait for them, reporting a write error of that range (EIO from a failing
/// drive, ENOSPC from a full loop backing file): since Linux 4.13 the wait checks the
/// mapping's error sequence (`file_check_and_advance_wb_err`) as seen by this descriptor,
/// so a descriptor opened for the checks alone sees errors of writes made through another
/// one (the page cache of a block device is shared by all its openers).
pub fn wait_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let (Ok(off), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    };
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    loop {
        // SAFETY: plain syscall on a valid descriptor.
        if unsafe { libc::sync_file_range(file.as_raw_fd(), off, len, flags) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    /// The nice value of the calling thread (field 19 of /proc/thread-self/stat).
    fn my_nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name (field 2) is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn a_lowered_thread_alone_runs_nicer() {
        let before = my_nice();
        let (start, after) = std::thread::spawn(move || {
            let start = my_nice();
            lower_thread_priority(3).unwrap();
            (start, my_nice())
        })
        .join()
        .unwrap();
        assert_eq!(after, (start + 3).min(19), "the thread's own nice");
        assert_eq!(my_nice(), before, "the calling thread is unchanged");
        assert!(physical_memory().is_some_and(|m| m >= 64 << 20));
    }

    #[test]
    fn fifo_open_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: plain syscall.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let f = open(&p, false, false, false).unwrap();
        // No writer: nothing to read, and poll says so without blocking.
        assert!(!poll_readable(&f, 10).unwrap());
    }

    #[test]
    fn regular_files_lose_nonblock() {
        let t = tempfile::NamedTempFile::new().unwrap();
        let f = open(t.path(), true, false, false).unwrap();
        // SAFETY: fcntl on a valid fd.
        let fl = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(fl & libc::O_NONBLOCK, 0);
        assert_eq!(loop_backing(&f).unwrap(), None);
        assert!(!is_synthetic_fs(&f));
        let cpu = open(Path::new("/proc/cpuinfo"), false, false, false).unwrap();
        assert!(is_synthetic_fs(&cpu));
    }
}
