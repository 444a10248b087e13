//! Shared helpers of the layout tests: shell commands, tools, images.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Run `cmd` with bash; Ok(stdout) on success, Err(stdout+stderr) otherwise.
pub fn sh(cmd: &str) -> Result<String, String> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .env("MTOOLS_SKIP_CHECK", "1")
        // mkfs.xfs refuses file systems under 300 MB unless it runs under xfstests.
        .env("TEST_DIR", "1")
        .env("TEST_DEV", "1")
        .env("QA_CHECK_FS", "1")
        .output()
        .map_err(|e| e.to_string())?;
    let so = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(so)
    } else {
        Err(format!(
            "`{cmd}` failed ({}):\n{so}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Like [`sh`], panicking on failure.
pub fn must(cmd: &str) -> String {
    sh(cmd).unwrap_or_else(|e| panic!("{e}"))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The first missing tool of `tools`, if any.
pub fn missing(tools: &[&str]) -> Option<String> {
    tools
        .iter()
        .find(|t| sh(&format!("command -v {t}")).is_err())
        .map(|t| t.to_string())
}

/// A loop device over `[start, start + len)` of `img`, detached on drop.
pub struct Loop(pub String);

impl Loop {
    pub fn new(img: &Path, start: u64, len: u64) -> Loop {
        let dev = must(&format!(
            "losetup -f --show -o {start} --sizelimit {len} '{}'",
            img.display()
        ));
        Loop(dev.trim().to_string())
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = sh(&format!("losetup -d {}", self.0));
        // The kernel detaches only when the last opener (udev's probe, a just-unmounted file
        // system) lets go: wait until the device no longer names its backing file, so the
        // next step does not see the image still attached.
        let name = self.0.trim_start_matches("/dev/");
        let backing = format!("/sys/block/{name}/loop/backing_file");
        for _ in 0..100 {
            if !Path::new(&backing).exists() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        eprintln!("{} still attached 5 s after losetup -d", self.0);
    }
}

/// A mount, unmounted on drop.
pub struct Mounted(pub PathBuf);

impl Mounted {
    pub fn new(cmd_prefix: &str, dev: &str, dir: &Path) -> Mounted {
        std::fs::create_dir_all(dir).unwrap();
        must(&format!("{cmd_prefix} {dev} '{}'", dir.display()));
        Mounted(dir.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        for _ in 0..50 {
            if sh(&format!("umount '{}'", self.0.display())).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// xorshift64* bytes.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn fill(&mut self, b: &mut [u8]) {
        for c in b.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}
