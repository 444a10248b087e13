//! Real filesystems for the integration tests: loop-mounted images and tmpfs, cleaned up in
//! `Drop` even when a test fails. Tests that cannot get one print `SKIP <test>: <reason>`.
#![allow(clippy::single_range_in_vec_init, missing_docs)]

pub mod http;
pub mod sector;

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A filesystem to test on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fs {
    Ext4,
    /// ext4 with 1 KiB blocks: 100 000 one-block extents fit in a small image.
    Ext4Small,
    Xfs,
    Btrfs,
    /// tmpfs of the given size in MiB.
    Tmpfs(u32),
}

/// Run a command; `Err` carries its stderr.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn is_root() -> bool {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A mounted filesystem in its own temporary directory.
pub struct Mount {
    pub path: PathBuf,
    pub loopdev: Option<String>,
    mounted: bool,
    // Dropped after `Drop::drop` has unmounted: holds the image and the mount point.
    _dir: tempfile::TempDir,
}

impl Mount {
    /// Mount a fresh `fs`, or print `SKIP <test>: <reason>` and return `None`.
    pub fn new(fs: Fs, test: &str) -> Option<Mount> {
        match Self::try_new(fs) {
            Ok(m) => Some(m),
            Err(reason) => {
                eprintln!("SKIP {test}: {reason}");
                None
            }
        }
    }

    fn try_new(fs: Fs) -> Result<Mount, String> {
        if !is_root() {
            return Err("not root (mounting needs root)".into());
        }
        let dir = tempfile::Builder::new()
            .prefix("sparsekit-fs-")
            .tempdir_in("/var/tmp")
            .map_err(|e| format!("tempdir: {e}"))?;
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).map_err(|e| format!("mkdir: {e}"))?;
        let mut m = Mount {
            path,
            loopdev: None,
            mounted: false,
            _dir: dir,
        };
        let mnt = m.path.to_str().unwrap().to_owned();
        if let Fs::Tmpfs(mib) = fs {
            run(
                "mount",
                &["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs", &mnt],
            )?;
            m.mounted = true;
            return Ok(m);
        }
        let mib: u64 = match fs {
            Fs::Ext4 => 64,
            Fs::Ext4Small => 256,
            Fs::Xfs => 300,
            Fs::Btrfs => 160,
            Fs::Tmpfs(_) => unreachable!(),
        };
        let img = m._dir.path().join("fs.img");
        File::create(&img)
            .and_then(|f| f.set_len(mib << 20))
            .map_err(|e| format!("image: {e}"))?;
        let dev = run("losetup", &["-f", "--show", img.to_str().unwrap()])?
            .trim()
            .to_owned();
        m.loopdev = Some(dev.clone());
        match fs {
            Fs::Ext4 => run("mkfs.ext4", &["-q", "-F", &dev]),
            Fs::Ext4Small => run("mkfs.ext4", &["-q", "-F", "-b", "1024", &dev]),
            Fs::Xfs => run("mkfs.xfs", &["-q", "-f", "-m", "reflink=1", &dev]),
            Fs::Btrfs => run("mkfs.btrfs", &["-q", "-f", &dev]),
            Fs::Tmpfs(_) => unreachable!(),
        }?;
        run("mount", &[&dev, &mnt])?;
        m.mounted = true;
        Ok(m)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted {
            let p = self.path.to_str().unwrap();
            if run("umount", &[p]).is_err() {
                // Busy (a file still open by a failed test): detach lazily.
                let _ = run("umount", &["-l", p]);
            }
        }
        if let Some(dev) = &self.loopdev {
            let _ = run("losetup", &["-d", dev]);
        }
    }
}

/// A loop device over a fresh file of `size` bytes, detached in `Drop`.
pub struct LoopDev {
    pub dev: PathBuf,
    pub backing: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopDev {
    pub fn new(size: u64, fill: u8, test: &str) -> Option<LoopDev> {
        if !is_root() {
            eprintln!("SKIP {test}: not root (losetup needs root)");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("sparsekit-loop-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let backing = dir.path().join("dev.img");
        std::fs::write(&backing, vec![fill; size as usize]).unwrap();
        match run("losetup", &["-f", "--show", backing.to_str().unwrap()]) {
            Ok(dev) => Some(LoopDev {
                dev: PathBuf::from(dev.trim()),
                backing,
                _dir: dir,
            }),
            Err(e) => {
                eprintln!("SKIP {test}: {e}");
                None
            }
        }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = run("losetup", &["-d", self.dev.to_str().unwrap()]);
    }
}

/// `st_blocks` of a file once it is on disk: before writeback, ext4 counts delayed
/// allocations without the extent-tree blocks they will need.
pub fn blocks(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let f = File::open(p).unwrap();
    f.sync_all().unwrap();
    f.metadata().unwrap().blocks()
}

/// A byte pattern without zero bytes (so any zero in a data range is a bug).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u8) | 1
        })
        .collect()
}

/// `fallocate(mode)` on a range, as the test files need preallocated extents.
pub fn fallocate(f: &File, mode: i32, offset: u64, len: u64) {
    use std::os::unix::io::AsRawFd;
    // SAFETY: plain syscall on a valid descriptor.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, offset as i64, len as i64) };
    assert_eq!(r, 0, "fallocate: {}", std::io::Error::last_os_error());
}

const K: u64 = 1024;
const M: u64 = 1024 * 1024;

/// A test file and the data ranges it must map to (unwritten counted as holes), plus the
/// unwritten ranges FIEMAP must report.
pub struct Case {
    pub name: &'static str,
    pub data: Vec<Range<u64>>,
    pub unwritten: Vec<Range<u64>>,
}

fn write_at(f: &File, offset: u64, len: u64, seed: u64) {
    f.write_all_at(&pattern(len as usize, seed), offset)
        .unwrap();
}

/// Build the standard file set in `dir`.
pub fn make_cases(dir: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let new = |name: &str| {
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join(name))
            .unwrap()
    };

    new("empty");
    cases.push(Case {
        name: "empty",
        data: vec![],
        unwritten: vec![],
    });

    let f = new("one");
    write_at(&f, 0, 64 * K, 1);
    cases.push(Case {
        name: "one",
        data: vec![0..64 * K],
        unwritten: vec![],
    });

    let f = new("dense");
    for i in 0..256 {
        write_at(&f, i * 4 * K, 4 * K, i);
    }
    cases.push(Case {
        name: "dense",
        data: vec![0..M],
        unwritten: vec![],
    });

    let f = new("trailing_hole");
    write_at(&f, 0, 8 * K, 2);
    f.set_len(M).unwrap();
    cases.push(Case {
        name: "trailing_hole",
        data: vec![0..8 * K],
        unwritten: vec![],
    });

    let f = new("unaligned");
    write_at(&f, M + 5, 1000, 3);
    cases.push(Case {
        name: "unaligned",
        data: vec![M..M + 1005],
        unwritten: vec![],
    });

    let f = new("holes_mix");
    write_at(&f, 0, 4 * K, 4);
    write_at(&f, 64 * K, 12 * K, 5);
    write_at(&f, M, 4 * K, 6);
    f.set_len(2 * M + 123).unwrap();
    cases.push(Case {
        name: "holes_mix",
        data: vec![0..4 * K, 64 * K..76 * K, M..M + 4 * K],
        unwritten: vec![],
    });

    let f = new("prealloc");
    fallocate(&f, 0, 0, M);
    write_at(&f, 512 * K, 256 * K, 7);
    f.sync_all().unwrap();
    cases.push(Case {
        name: "prealloc",
        data: vec![512 * K..768 * K],
        unwritten: vec![0..512 * K, 768 * K..M],
    });

    let f = new("prealloc_keep_size");
    write_at(&f, 0, 4 * K, 8);
    fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 0, M);
    f.sync_all().unwrap();
    cases.push(Case {
        name: "prealloc_keep_size",
        data: vec![0..4 * K],
        unwritten: vec![],
    });
    cases
}
