//! What the OS says about an image or device before it is written: loop devices backed by
//! a file, mounts of a file, exclusive opens of block devices (Linux).

use std::fs::File;
use std::path::Path;

/// The loop devices (`/dev/loopN`) whose backing file is the file with `(dev, ino)`.
#[cfg(target_os = "linux")]
pub(crate) fn attached_loops(dev: u64, ino: u64) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let node = format!("/dev/{name}");
        let Ok(f) = File::open(&node) else { continue };
        if let Ok(Some((d, i, _))) = sparsekit_io::sys::loop_backing(&f) {
            if d == dev && i == ino {
                out.push(node);
            }
        }
    }
    out.sort();
    out
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn attached_loops(_dev: u64, _ino: u64) -> Vec<String> {
    Vec::new()
}

/// Where `path` itself is mounted (a FUSE file system such as exfat-fuse or fuse2fs
/// mounts an image file directly): the mount point, from /proc/self/mountinfo.
#[cfg(target_os = "linux")]
pub(crate) fn mounted_at(path: &Path) -> Option<String> {
    let canon = std::fs::canonicalize(path).ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in info.lines() {
        let mut halves = line.splitn(2, " - ");
        let (left, right) = (halves.next()?, halves.next().unwrap_or(""));
        let source = right.split(' ').nth(1).unwrap_or("");
        if Path::new(&unescape(source)) == canon {
            return left.split(' ').nth(4).map(unescape);
        }
    }
    None
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn mounted_at(_path: &Path) -> Option<String> {
    None
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
#[cfg(target_os = "linux")]
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Open a block device for writing with `O_EXCL`: Linux refuses (EBUSY) when it or one of
/// its partitions is mounted or otherwise claimed (a device-mapper or md holder).
#[cfg(target_os = "linux")]
pub(crate) fn open_exclusive(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_EXCL)
        .open(path)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn open_exclusive(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
}
