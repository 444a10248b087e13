//! qemu-compatible image locking: OFD byte-range locks on the image file, as qemu's
//! `raw_apply_lock_bytes`/`raw_check_lock_bytes` (block/file-posix.c) take them. Byte
//! `100 + i` is read-locked for each permission bit `i` held, byte `200 + i` for each
//! permission not shared with others (bit 0 consistent read, 1 write, 2 write unchanged,
//! 3 resize, 4 graph modification). A qemu writer holds 100, 101, 103, 201 and 203.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};
use crate::sys;

/// First byte of the "permission held" locks.
pub const LOCK_PERM_BASE: u64 = 100;
/// First byte of the "permission not shared" locks.
pub const LOCK_SHARED_BASE: u64 = 200;

const PERM_NAMES: [&str; 5] = [
    "consistent read",
    "write",
    "write unchanged",
    "resize",
    "change children",
];

/// What the holder does with the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Reading: holds consistent read (byte 100), shares everything.
    Read,
    /// Editing, as a qemu writer: holds consistent read, write and resize (100, 101, 103)
    /// and shares neither write nor resize (201, 203).
    Write,
}

impl LockMode {
    /// (permissions held, permissions not shared), as bit masks.
    fn masks(self) -> (u32, u32) {
        match self {
            LockMode::Read => (0b0001, 0),
            LockMode::Write => (0b1011, 0b1010),
        }
    }
}

/// Locks held on an image file; released when dropped (the descriptor closes).
#[derive(Debug)]
pub struct ImageLock {
    _file: File,
}

impl ImageLock {
    /// Take qemu's locks for `mode` on `path`, refusing with [`Error::Locked`] when another
    /// process holds a conflicting one. `force` skips the conflict test and takes no lock
    /// (dangerous: editing an image a running VM writes corrupts it).
    pub fn acquire(path: &Path, mode: LockMode, force: bool) -> Result<Option<ImageLock>> {
        if force {
            return Ok(None);
        }
        // A conflict is tried again a few times, 20 ms apart: a descriptor of our own that
        // was just closed can live on for an instant in a child another thread forked
        // (between fork and exec), holding its locks. A running qemu holds them for good.
        let mut tries = 0;
        loop {
            match Self::try_acquire(path, mode) {
                Err(Error::Locked { .. }) if tries < 5 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => return r.map(Some),
            }
        }
    }

    fn try_acquire(path: &Path, mode: LockMode) -> Result<ImageLock> {
        let file = File::open(path)
            .map_err(|e| Error::Io(sparsekit_io::IoError::new("open", e).with_path(path)))?;
        let (held, unshared) = mode.masks();
        let io = |e: std::io::Error| {
            Error::Io(sparsekit_io::IoError::new("fcntl(F_OFD_SETLK)", e).with_path(path))
        };
        // Take first, then test, as qemu does: a lock taken by both at once shows to one.
        for i in 0..5u64 {
            if held & (1 << i) != 0 {
                sys::ofd_read_lock(&file, LOCK_PERM_BASE + i).map_err(io)?;
            }
            if unshared & (1 << i) != 0 {
                sys::ofd_read_lock(&file, LOCK_SHARED_BASE + i).map_err(io)?;
            }
        }
        for i in 0..5u64 {
            let name = PERM_NAMES[i as usize];
            // We hold i: nobody may refuse to share it.
            if held & (1 << i) != 0 && sys::ofd_locked(&file, LOCK_SHARED_BASE + i).map_err(io)? {
                return Err(Error::Locked {
                    path: Some(path.to_path_buf()),
                    detail: format!(
                        "another process does not share the \"{name}\" permission (byte {})",
                        LOCK_SHARED_BASE + i
                    ),
                });
            }
            // We do not share i: nobody may hold it.
            if unshared & (1 << i) != 0 && sys::ofd_locked(&file, LOCK_PERM_BASE + i).map_err(io)? {
                return Err(Error::Locked {
                    path: Some(path.to_path_buf()),
                    detail: format!(
                        "another process holds the \"{name}\" permission (byte {})",
                        LOCK_PERM_BASE + i
                    ),
                });
            }
        }
        Ok(ImageLock { _file: file })
    }
}
