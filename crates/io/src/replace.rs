//! Replacing a regular file whole: write a temporary file beside it, sync it, rename it
//! over the old name and sync the folder (rename(2) is atomic within a filesystem, so a
//! reader or a crash sees the old file or the new one, never a mix). The temporary file
//! is removed when the [`TempBeside`] is dropped without [`TempBeside::persist`].

use std::ffi::OsString;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Context, IoError};

/// A new, empty temporary file in the folder of the file it will replace, named
/// `.NAME.sparsekit-PID-N`.
#[derive(Debug)]
pub struct TempBeside {
    path: PathBuf,
    file: Option<File>,
}

impl TempBeside {
    /// Create the temporary file beside `dst` (`O_CREAT|O_EXCL`, read-write).
    pub fn new(dst: &Path) -> Result<TempBeside, IoError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = dst.file_name().ok_or_else(|| {
            IoError::new(
                "open",
                io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"),
            )
            .with_path(dst)
        })?;
        let dir = dst.parent().unwrap_or(Path::new(""));
        let mut last = None;
        for _ in 0..100 {
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            let mut tmp_name = OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(".sparsekit-{}-{n}", std::process::id()));
            let path = dir.join(tmp_name);
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(TempBeside {
                        path,
                        file: Some(file),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(IoError::new("open", e).with_path(&path)),
            }
        }
        Err(IoError::new("open", last.expect("tried")).with_path(dst))
    }

    /// The temporary file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Take the open file (it stays removed on drop until [`TempBeside::persist`]).
    pub fn take_file(&mut self) -> Option<File> {
        self.file.take()
    }

    /// Give the temporary file `like`'s permissions (when replacing an existing file),
    /// rename it over `dst` and sync `dst`'s folder. The caller has synced the data.
    pub fn persist(mut self, dst: &Path, like: Option<&Metadata>) -> Result<(), IoError> {
        if let Some(m) = like {
            std::fs::set_permissions(&self.path, m.permissions()).op("chmod", &self.path)?;
        }
        self.file = None;
        std::fs::rename(&self.path, dst).op("rename", dst)?;
        self.path = PathBuf::new();
        // The rename itself is durable once the folder is synced.
        if let Some(dir) = dst.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for TempBeside {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_is_removed_persisted_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let dst = dir.path().join("img");
        std::fs::write(&dst, b"old").unwrap();
        let t = TempBeside::new(&dst).unwrap();
        let p = t.path().to_path_buf();
        assert!(p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".img.sparsekit-"));
        drop(t);
        assert!(!p.exists());
        assert_eq!(std::fs::read(&dst).unwrap(), b"old");

        let mut t = TempBeside::new(&dst).unwrap();
        std::io::Write::write_all(&mut t.take_file().unwrap(), b"new").unwrap();
        let meta = std::fs::metadata(&dst).unwrap();
        t.persist(&dst, Some(&meta)).unwrap();
        assert_eq!(std::fs::read(&dst).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_folder_is_an_open_error() {
        let e = TempBeside::new(Path::new("/nonexistent-sparsekit/x")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }
}
