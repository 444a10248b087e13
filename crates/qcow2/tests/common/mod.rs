//! Helpers shared by the qemu oracle tests: each test file uses a part of them.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Whether `qemu-img` runs here; prints why the caller skips when it does not.
pub fn have_qemu() -> bool {
    let ok = Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("skipped: qemu-img is not installed (Debian qemu-utils)");
    }
    ok
}

fn run(dir: &Path, cmd: &str) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Run `sh -c cmd` in `dir`, panicking with its output on failure; returns stdout.
pub fn sh(dir: &Path, cmd: &str) -> String {
    let o = run(dir, cmd);
    assert!(
        o.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Exit code and stdout followed by stderr, for commands that exit non-zero on purpose.
pub fn status(dir: &Path, cmd: &str) -> (i32, String) {
    let o = run(dir, cmd);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// Exit code and stdout alone (for JSON output of commands that exit non-zero).
pub fn status_stdout(dir: &Path, cmd: &str) -> (i32, String) {
    let o = run(dir, cmd);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8(o.stdout).unwrap(),
    )
}

/// A fresh temporary folder for a test that needs qemu-img, or `None` (reason printed)
/// when qemu-img is not installed.
pub fn qemu_folder() -> Option<tempfile::TempDir> {
    have_qemu().then(|| tempfile::tempdir().unwrap())
}
