//! Every Linux-specific call of this crate: FIEMAP, SEEK_DATA/SEEK_HOLE, FIGETBSZ
//! (block device sizes come from `sparsekit_io::sys`). Other OSes: sys/macos.rs, sys/windows.rs.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

/// EBADR (a FIEMAP flag refused; the other OS modules define it too).
pub const EBADR: i32 = libc::EBADR;

/// `FS_IOC_FIEMAP = _IOWR('f', 11, struct fiemap)` (linux/fs.h; struct fiemap is 32 bytes).
const FS_IOC_FIEMAP: u64 = 0xC020_660B;
/// `FIGETBSZ = _IO(0x00, 2)` (linux/fs.h): the filesystem block size.
const FIGETBSZ: u64 = 2;

/// `FIEMAP_FLAG_SYNC` (linux/fiemap.h): write dirty pages back before mapping, so delayed
/// allocations are not reported as holes (early kernels returned stale maps without it).
pub const FIEMAP_FLAG_SYNC: u32 = 0x1;
/// `FIEMAP_EXTENT_LAST`: the last extent of the file.
pub const FIEMAP_EXTENT_LAST: u32 = 0x1;
/// `FIEMAP_EXTENT_UNWRITTEN`: allocated but never written (fallocate); reads as zeros.
pub const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
/// `FIEMAP_EXTENT_SHARED`: the blocks are shared with another file (reflink, snapshot).
pub const FIEMAP_EXTENT_SHARED: u32 = 0x2000;

/// Size of `struct fiemap` without its flexible array (linux/fiemap.h).
const FIEMAP_HEADER: usize = 32;
/// Size of `struct fiemap_extent` (linux/fiemap.h).
const FIEMAP_EXTENT_SIZE: usize = 56;

/// One `struct fiemap_extent`, the fields this crate uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawExtent {
    /// `fe_logical`: byte offset in the file.
    pub logical: u64,
    /// `fe_length`: bytes.
    pub length: u64,
    /// `fe_flags`.
    pub flags: u32,
}

/// A reusable FIEMAP request buffer for `capacity` extents, 8-byte aligned.
pub struct FiemapBuf {
    words: Vec<u64>,
    capacity: u32,
}

impl FiemapBuf {
    pub fn new(capacity: u32) -> Self {
        let bytes = FIEMAP_HEADER + FIEMAP_EXTENT_SIZE * capacity as usize;
        FiemapBuf {
            words: vec![0; bytes.div_ceil(8)],
            capacity,
        }
    }

    /// One `FS_IOC_FIEMAP` call for `[start, start + length)`; the extents go to `out`.
    pub fn query(
        &mut self,
        file: &File,
        start: u64,
        length: u64,
        flags: u32,
        out: &mut Vec<RawExtent>,
    ) -> io::Result<()> {
        self.words
            .iter_mut()
            .take(FIEMAP_HEADER / 8)
            .for_each(|w| *w = 0);
        let bytes = as_bytes_mut(&mut self.words);
        bytes[0..8].copy_from_slice(&start.to_ne_bytes()); // fm_start
        bytes[8..16].copy_from_slice(&length.to_ne_bytes()); // fm_length
        bytes[16..20].copy_from_slice(&flags.to_ne_bytes()); // fm_flags
        bytes[24..28].copy_from_slice(&self.capacity.to_ne_bytes()); // fm_extent_count
        loop {
            // SAFETY: the buffer holds a struct fiemap header followed by room for
            // fm_extent_count extents, as the ioctl requires.
            let r = unsafe {
                libc::ioctl(
                    file.as_raw_fd(),
                    FS_IOC_FIEMAP as libc::Ioctl,
                    self.words.as_mut_ptr(),
                )
            };
            if r == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        let bytes = as_bytes_mut(&mut self.words);
        let mapped = u32::from_ne_bytes(bytes[20..24].try_into().unwrap()).min(self.capacity);
        for i in 0..mapped as usize {
            let e = &bytes[FIEMAP_HEADER + i * FIEMAP_EXTENT_SIZE..][..FIEMAP_EXTENT_SIZE];
            out.push(RawExtent {
                logical: u64::from_ne_bytes(e[0..8].try_into().unwrap()),
                length: u64::from_ne_bytes(e[16..24].try_into().unwrap()),
                flags: u32::from_ne_bytes(e[40..44].try_into().unwrap()),
            });
        }
        Ok(())
    }
}

fn as_bytes_mut(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: u64 has no padding and any byte pattern is a valid u8.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8) }
}

/// `lseek(SEEK_DATA / SEEK_HOLE)`: the POSIX call Linux and macOS share.
pub use sparsekit_io::sys::seek;

/// The filesystem block size (`FIGETBSZ`), or `None` if the ioctl is refused.
pub fn fs_block_size(file: &File) -> Option<u64> {
    let mut bs: libc::c_int = 0;
    // SAFETY: FIGETBSZ writes one int.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), FIGETBSZ as libc::Ioctl, &mut bs) };
    (r == 0 && bs > 0).then_some(bs as u64)
}
