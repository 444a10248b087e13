//! First-boot customisation: files written into a FAT partition of a disk image or drive
//! without mounting it (Raspberry Pi Imager's `firstrun.sh` and cloud-init files,
//! balenaOS's `config.json`).
//!
//! [`customize_fat`] takes the partition as a [`Storage`] (a [`sparsekit_io::Window`] of
//! the disk) and a [`Customization`]: files to write whole (subdirectories created as
//! needed, long names kept) or delete, and text to append once to a file such as
//! `cmdline.txt`. Before the first write it checks every path, refuses a volume marked
//! dirty, and checks that the new contents fit in the free clusters
//! ([`Error::NoSpace`], `ENOSPC` naming the file). After writing it unmounts the volume (FSInfo
//! updated, clean flag set), flushes the storage and reads every file back by content.
//!
//! ```
//! use sparsekit_customize::{customize_fat, Customization};
//! use sparsekit_io::MemStorage;
//! # let part = MemStorage::from_vec(sparsekit_customize::testing::blank_fat(8 << 20));
//! // `part`: the FAT partition, e.g. a `sparsekit_io::Window` of a disk image.
//! let mut c = Customization::default();
//! c.files.push(("firstrun.sh".into(), Some(b"#!/bin/sh\necho hello\n".to_vec())));
//! c.files.push(("overlays/extra/my config.txt".into(), Some(b"x=1\n".to_vec())));
//! let report = customize_fat(&part, &c)?;
//! assert_eq!(report.written, ["firstrun.sh", "overlays/extra/my config.txt"]);
//! # Ok::<(), sparsekit_customize::Error>(())
//! ```
#![deny(missing_docs)]

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sparsekit_io::{ErrorInfo, IoError, Storage, StorageCursor};

/// What to change in the partition.
#[derive(Clone, Debug, Default)]
pub struct Customization {
    /// Files by path inside the partition (`/`-separated, relative): `Some(bytes)` writes
    /// the file whole (replacing one that exists), `None` deletes it (nothing happens when
    /// it is missing). Applied in order.
    pub files: Vec<(String, Option<Vec<u8>>)>,
    /// Text appended to an existing one-line file (`cmdline.txt`): added before its final
    /// newline, and only once (a file that already contains the text is left as it is).
    pub append: Vec<(String, String)>,
}

/// What was done.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Files written, in order.
    pub written: Vec<String>,
    /// Files deleted (those that existed).
    pub deleted: Vec<String>,
    /// Files appended to.
    pub appended: Vec<String>,
    /// Files whose text was already there (nothing appended).
    pub already: Vec<String>,
}

/// What can go wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the storage failed.
    Io(IoError),
    /// A path that cannot name a file inside the partition (absolute after the leading
    /// `/` is removed, `..`, an empty or over-long component, a character FAT refuses).
    /// Code `ERR_INVALID_ARG_VALUE`.
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The partition holds no FAT file system this library reads, or one whose metadata
    /// is inconsistent. Code `ERR_SPARSEKIT_CUSTOMIZE_FAT`.
    NotFat {
        /// The disk or image.
        path: Option<PathBuf>,
        /// What the FAT library said.
        message: String,
    },
    /// The volume is marked dirty or as having had I/O errors (not cleanly unmounted):
    /// refused, as writing into it could lose data. Code `ERR_SPARSEKIT_CUSTOMIZE_DIRTY`.
    Dirty {
        /// The disk or image.
        path: Option<PathBuf>,
    },
    /// The new contents do not fit in the free clusters. Nothing was written. Code
    /// `ENOSPC` (errno ENOSPC).
    NoSpace {
        /// The first file that does not fit.
        file: String,
        /// Bytes the new contents need (whole clusters).
        needed: u64,
        /// Bytes free (whole clusters, counting those the replaced files free).
        free: u64,
    },
    /// A file to append to does not exist. Code `ENOENT`.
    Missing {
        /// The file inside the partition.
        file: String,
    },
    /// A file failed on the FAT level (a name that exists as a directory, a full root
    /// directory of FAT12/16). Code `ERR_SPARSEKIT_CUSTOMIZE_FAT`.
    File {
        /// The file inside the partition.
        file: String,
        /// What the FAT library said.
        message: String,
    },
    /// The disk has no FAT partition, or the partition asked for holds none. Nothing was
    /// written. Code `ERR_SPARSEKIT_CUSTOMIZE_NO_FAT`.
    NoFat {
        /// The disk or image.
        path: Option<PathBuf>,
        /// The partition asked for.
        partition: Option<u32>,
        /// What the disk holds (`mbr: 1 vfat, 2 ext4`).
        found: String,
    },
    /// Reading the partition table failed.
    Layout(sparsekit_layout::Error),
    /// A file read back differs from what was written. Code
    /// `ERR_SPARSEKIT_CHECKSUM_MISMATCH`.
    ReadBack {
        /// The file inside the partition.
        file: String,
    },
}

/// `Result` of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => e.fmt(f),
            Error::BadPath { path, reason } => {
                write!(
                    f,
                    "customize: {path:?} is not a path inside the partition: {reason}"
                )
            }
            Error::NotFat { path, message } => write!(
                f,
                "customize: no usable FAT file system in the partition of {}: {message}",
                sparsekit_io::Quoted(path)
            ),
            Error::Dirty { path } => write!(
                f,
                "customize: the FAT file system of {} is marked dirty (not cleanly unmounted); \
                 check it with fsck.fat first",
                sparsekit_io::Quoted(path)
            ),
            Error::NoSpace { file, needed, free } => write!(
                f,
                "customize: '{file}' does not fit: the new files need {needed} bytes of \
                 clusters and the partition has {free} free; nothing was written"
            ),
            Error::Missing { file } => {
                write!(
                    f,
                    "customize: cannot append to '{file}': no such file in the partition"
                )
            }
            Error::File { file, message } => write!(f, "customize: '{file}': {message}"),
            Error::NoFat {
                path,
                partition: Some(n),
                found,
            } => write!(
                f,
                "customize: partition {n} of {} holds no FAT file system ({found})",
                sparsekit_io::Quoted(path)
            ),
            Error::NoFat { path, found, .. } => write!(
                f,
                "customize: {} has no FAT partition to customise ({found})",
                sparsekit_io::Quoted(path)
            ),
            Error::Layout(e) => e.fmt(f),
            Error::ReadBack { file } => write!(
                f,
                "customize: '{file}' reads back different from what was written"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Layout(e) => Some(e),
            _ => None,
        }
    }
}

impl ErrorInfo for Error {
    fn code(&self) -> &'static str {
        match self {
            Error::Io(_) => "ERR_SPARSEKIT_IO",
            Error::BadPath { .. } => "ERR_INVALID_ARG_VALUE",
            Error::NotFat { .. } | Error::File { .. } => "ERR_SPARSEKIT_CUSTOMIZE_FAT",
            Error::Dirty { .. } => "ERR_SPARSEKIT_CUSTOMIZE_DIRTY",
            Error::NoSpace { .. } | Error::Missing { .. } => "ERR_SPARSEKIT_IO",
            Error::ReadBack { .. } => "ERR_SPARSEKIT_CHECKSUM_MISMATCH",
            Error::NoFat { .. } => "ERR_SPARSEKIT_CUSTOMIZE_NO_FAT",
            Error::Layout(e) => e.code(),
        }
    }
    fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io(e) => e.raw_os_error(),
            Error::Layout(e) => e.raw_os_error(),
            Error::Missing { .. } => Some(sparsekit_io::errno::ENOENT),
            Error::NoSpace { .. } => Some(sparsekit_io::errno::ENOSPC),
            _ => None,
        }
    }
    fn path(&self) -> Option<&Path> {
        match self {
            Error::Io(e) => e.path.as_deref(),
            Error::NotFat { path, .. } | Error::Dirty { path } | Error::NoFat { path, .. } => {
                path.as_deref()
            }
            Error::Layout(e) => e.path(),
            _ => None,
        }
    }
    fn offset(&self) -> Option<u64> {
        match self {
            Error::Io(e) => e.offset,
            Error::Layout(e) => e.offset(),
            _ => None,
        }
    }
    fn syscall(&self) -> Option<&'static str> {
        match self {
            Error::Io(e) => e.syscall(),
            Error::Layout(e) => e.syscall(),
            _ => None,
        }
    }
}

/// An `io::Error` of the FAT library: the storage's own error when it carries one, else
/// `other` with the library's message.
fn fat_error(e: io::Error, other: impl FnOnce(String) -> Error) -> Error {
    match IoError::recover(e) {
        Ok(io) => Error::Io(io),
        Err(e) => other(e.to_string()),
    }
}

/// Characters FAT long names cannot hold (and control characters).
const FORBIDDEN: &[char] = &['"', '*', ':', '<', '>', '?', '\\', '|'];

/// `path` as its components, checked.
fn components(path: &str) -> Result<Vec<&str>> {
    let bad = |reason| Error::BadPath {
        path: path.to_string(),
        reason,
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if parts.iter().all(|p| p.is_empty()) {
        return Err(bad("it is empty"));
    }
    for p in &parts {
        if p.is_empty() {
            return Err(bad("it has an empty component (`//` or a trailing `/`)"));
        }
        if *p == "." || *p == ".." {
            return Err(bad("`.` and `..` are not allowed"));
        }
        if p.chars().count() > 255 {
            return Err(bad("a component is longer than 255 characters"));
        }
        if p.chars().any(|c| c.is_control() || FORBIDDEN.contains(&c)) {
            return Err(bad(
                "FAT names cannot hold control characters or \" * : < > ? \\ |",
            ));
        }
        if p.ends_with(' ') || p.ends_with('.') {
            return Err(bad("FAT names cannot end with a space or a dot"));
        }
    }
    Ok(parts)
}

/// `text` appended once to `old`, before its final newlines; `None` when `old` already
/// holds it.
fn appended(old: &[u8], text: &str) -> Option<Vec<u8>> {
    let needle = text.trim();
    if needle.is_empty() || old.windows(needle.len()).any(|w| w == needle.as_bytes()) {
        return None;
    }
    let body_end = old
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    let mut out = old[..body_end].to_vec();
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&old[body_end..]);
    Some(out)
}

/// The partition as the FAT library sees it: every write's start is noted while a
/// directory is being created, so that [`fix_dots`] can find the new directory's first
/// entries.
///
/// fatfs 0.3.6 (the latest release) writes a long-name entry before each of a new
/// directory's `.` and `..` entries (rafalh/rust-fatfs#117, fixed only in its unreleased
/// tree), which `fsck.fat` reports and Windows' chkdsk rejects: `.` and `..` must be the
/// directory's first two entries.
struct Watched<'a> {
    part: &'a dyn Storage,
    writes: std::sync::Mutex<Option<Vec<u64>>>,
}

impl Storage for Watched<'_> {
    fn size(&self) -> std::result::Result<u64, IoError> {
        self.part.size()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::result::Result<usize, IoError> {
        self.part.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::result::Result<usize, IoError> {
        if let Some(w) = self
            .writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            w.push(offset);
        }
        self.part.write_at(buf, offset)
    }
    fn flush(&self) -> std::result::Result<(), IoError> {
        self.part.flush()
    }
    fn path(&self) -> Option<&Path> {
        self.part.path()
    }
}

/// Whether `e` (128 bytes) is the start of a directory as fatfs 0.3.6 makes it: a
/// long-name entry for ".", the "." entry, a long-name entry for "..", the ".." entry.
fn lfn_dots(e: &[u8; 128]) -> bool {
    let lfn = |x: &[u8], dots: usize| {
        x[0] == 0x41
            && x[11] == 0x0F
            && (0..dots).all(|i| x[1 + 2 * i] == b'.' && x[2 + 2 * i] == 0)
            && x[1 + 2 * dots] == 0
            && x[2 + 2 * dots] == 0
    };
    let sfn = |x: &[u8], name: &[u8; 11]| &x[..11] == name && x[11] & 0x10 != 0;
    lfn(&e[0..32], 1)
        && sfn(&e[32..64], b".          ")
        && lfn(&e[64..96], 2)
        && sfn(&e[96..128], b"..         ")
}

/// Rewrite a new directory's first entries as `.`, `..`, then free (see [`Watched`]):
/// looked for at the starts of the writes made while it was created. In a directory of
/// the root, `..` names cluster 0 (the FAT specification; fatfs writes the FAT32 root's
/// cluster, which `fsck.fat` also reports).
fn fix_dots(w: &Watched<'_>, starts: Vec<u64>, parent_is_root: bool) -> Result<()> {
    let mut starts = starts;
    starts.sort_unstable();
    starts.dedup();
    for at in starts {
        let mut e = [0u8; 128];
        if w.part.read_exact_at(&mut e, at).is_err() || !lfn_dots(&e) {
            continue;
        }
        let mut fixed = [0u8; 128];
        fixed[..32].copy_from_slice(&e[32..64]);
        fixed[32..64].copy_from_slice(&e[96..128]);
        if parent_is_root {
            // First cluster, high and low words.
            fixed[32 + 20..32 + 22].fill(0);
            fixed[32 + 26..32 + 28].fill(0);
        }
        w.part.write_all_at(&fixed, at).map_err(Error::Io)?;
    }
    Ok(())
}

type Fs<'a> = fatfs::FileSystem<StorageCursor<&'a Watched<'a>>>;

fn open<'a>(part: &'a Watched<'a>) -> Result<Fs<'a>> {
    let label = part.path().map(Path::to_path_buf);
    let fs =
        fatfs::FileSystem::new(StorageCursor::new(part), fatfs::FsOptions::new()).map_err(|e| {
            fat_error(e, |message| Error::NotFat {
                path: label.clone(),
                message,
            })
        })?;
    Ok(fs)
}

/// The bytes of `file` in the partition, or `None` when it does not exist.
fn read(fs: &Fs<'_>, file: &str) -> Result<Option<Vec<u8>>> {
    let mut f = match fs.root_dir().open_file(file) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(fat_error(e, |message| Error::File {
                file: file.to_string(),
                message,
            }))
        }
    };
    let mut v = Vec::new();
    f.read_to_end(&mut v).map_err(|e| {
        fat_error(e, |message| Error::File {
            file: file.to_string(),
            message,
        })
    })?;
    Ok(Some(v))
}

/// Write `data` as `file` whole, creating the directories above it.
fn write(fs: &Fs<'_>, w: &Watched<'_>, parts: &[&str], file: &str, data: &[u8]) -> Result<()> {
    let err = |e: io::Error| {
        fat_error(e, |message| Error::File {
            file: file.to_string(),
            message,
        })
    };
    let mut dir = fs.root_dir();
    for (depth, p) in parts[..parts.len() - 1].iter().enumerate() {
        *w.writes.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
        let made = dir.create_dir(p);
        let starts = w.writes.lock().unwrap_or_else(|e| e.into_inner()).take();
        dir = made.map_err(err)?;
        fix_dots(w, starts.unwrap_or_default(), depth == 0)?;
    }
    let mut f = dir.create_file(parts[parts.len() - 1]).map_err(err)?;
    f.seek(SeekFrom::Start(0)).map_err(err)?;
    f.truncate().map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.flush().map_err(err)?;
    Ok(())
}

/// Where the FAT partition is: `partition` (its number, as Linux numbers it) or the first
/// partition holding FAT, read from the disk's table ([`sparsekit_layout`]).
/// [`Error::NoFat`] when there is none; a disk without a table whose whole device is FAT
/// is partition 0.
pub fn find_fat(
    disk: &dyn Storage,
    partition: Option<u32>,
    ctl: &mut sparsekit_io::Control,
) -> Result<(u64, u64)> {
    let l = sparsekit_layout::layout(disk, ctl).map_err(Error::Layout)?;
    let is_fat =
        |p: &sparsekit_layout::Partition| p.filesystem == Some(sparsekit_layout::FileSystem::Vfat);
    let found = || {
        let parts: Vec<String> = l
            .partitions
            .iter()
            .map(|p| {
                format!(
                    "{} {}",
                    p.number,
                    p.filesystem.map_or("no file system", |f| f.name())
                )
            })
            .collect();
        format!("{}: {}", l.table.name(), parts.join(", "))
    };
    let chosen = match partition {
        Some(n) => l.partitions.iter().find(|p| p.number == n && is_fat(p)),
        None => l.partitions.iter().find(|p| is_fat(p)),
    };
    match chosen {
        Some(p) => Ok((p.start, p.length)),
        None => Err(Error::NoFat {
            path: disk.path().map(Path::to_path_buf),
            partition,
            found: found(),
        }),
    }
}

/// [`customize_fat`] of the FAT partition of a whole disk or image ([`find_fat`]); the
/// partition's place on the disk comes back with the report.
pub fn customize_disk(
    disk: &dyn Storage,
    partition: Option<u32>,
    c: &Customization,
    ctl: &mut sparsekit_io::Control,
) -> Result<(Report, (u64, u64))> {
    // Paths first: a bad one is refused before the disk is read.
    for (p, _) in &c.files {
        components(p)?;
    }
    for (p, _) in &c.append {
        components(p)?;
    }
    let (start, len) = find_fat(disk, partition, ctl)?;
    let part = sparsekit_io::Window::new(disk, start, len).map_err(Error::Io)?;
    Ok((customize_fat(&part, c)?, (start, len)))
}

/// One file's change: its path, the path's components, the new contents (`None`: delete).
type Step<'a> = (String, Vec<&'a str>, Option<Vec<u8>>);

/// Apply `c` to the FAT file system in `part` (see the crate documentation).
pub fn customize_fat(part: &dyn Storage, c: &Customization) -> Result<Report> {
    let label = part.path().map(Path::to_path_buf);
    // Every path checked before the volume is opened.
    let files = c
        .files
        .iter()
        .map(|(p, d)| Ok((p.trim_start_matches('/').to_string(), components(p)?, d)))
        .collect::<Result<Vec<_>>>()?;
    let appends = c
        .append
        .iter()
        .map(|(p, t)| Ok((p.trim_start_matches('/').to_string(), components(p)?, t)))
        .collect::<Result<Vec<_>>>()?;

    let watched = Watched {
        part,
        writes: std::sync::Mutex::new(None),
    };
    let fs = open(&watched)?;
    let flags = fs.read_status_flags().map_err(|e| {
        fat_error(e, |message| Error::NotFat {
            path: label.clone(),
            message,
        })
    })?;
    if flags.dirty() || flags.io_error() {
        return Err(Error::Dirty { path: label });
    }

    // The final contents of every file that changes, and whether the new data fits.
    let mut plan: Vec<Step<'_>> = Vec::new();
    for (file, parts, data) in &files {
        plan.push((file.clone(), parts.clone(), (*data).clone()));
    }
    let mut report = Report::default();
    for (file, parts, text) in &appends {
        // The file as it will be after the writes above.
        let old = match plan.iter().rev().find(|(f, _, _)| f == file) {
            Some((_, _, d)) => d.clone(),
            None => read(&fs, file)?,
        };
        let Some(old) = old else {
            return Err(Error::Missing { file: file.clone() });
        };
        match appended(&old, text) {
            Some(new) => {
                plan.push((file.clone(), parts.clone(), Some(new)));
                report.appended.push(file.clone());
            }
            None => report.already.push(file.clone()),
        }
    }
    let stats = fs.stats().map_err(|e| {
        fat_error(e, |message| Error::NotFat {
            path: label.clone(),
            message,
        })
    })?;
    let cluster = u64::from(stats.cluster_size());
    let clusters = |n: u64| n.div_ceil(cluster);
    let mut free = u64::from(stats.free_clusters());
    // Clusters the replaced and deleted files give back.
    for (file, _, _) in &plan {
        if let Ok(f) = fs.root_dir().open_file(file) {
            drop(f);
            if let Some(old) = read(&fs, file)? {
                free += clusters(old.len() as u64);
            }
        }
    }
    // Each new file's clusters, plus one for each directory that may need to grow or be
    // created (a safe margin: FAT directories grow a cluster at a time).
    let mut needed = 0u64;
    for (file, parts, data) in &plan {
        if let Some(d) = data {
            needed += clusters(d.len() as u64) + parts.len() as u64;
            if needed > free {
                return Err(Error::NoSpace {
                    file: file.clone(),
                    needed: needed * cluster,
                    free: free * cluster,
                });
            }
        }
    }

    // The writes, in order: deletions first where asked, then contents.
    for (file, parts, data) in &plan {
        match data {
            Some(d) => {
                write(&fs, &watched, parts, file, d)?;
                if !report.appended.contains(file) && !report.written.contains(file) {
                    report.written.push(file.clone());
                }
            }
            None => match fs.root_dir().remove(file) {
                Ok(()) => report.deleted.push(file.clone()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(fat_error(e, |message| Error::File {
                        file: file.clone(),
                        message,
                    }))
                }
            },
        }
    }
    fs.unmount().map_err(|e| {
        fat_error(e, |message| Error::NotFat {
            path: label.clone(),
            message,
        })
    })?;
    part.flush().map_err(Error::Io)?;

    // Read back by content, through a fresh mount of the volume.
    let fs = open(&watched)?;
    let mut last: Vec<(&String, &Option<Vec<u8>>)> = Vec::new();
    for (file, _, data) in plan.iter().rev() {
        if !last.iter().any(|(f, _)| *f == file) {
            last.push((file, data));
        }
    }
    for (file, data) in last {
        if read(&fs, file)? != *data {
            return Err(Error::ReadBack { file: file.clone() });
        }
    }
    Ok(report)
}

/// `password` hashed with SHA-512-crypt (`$6$rounds=5000$salt$...`), what glibc's
/// `crypt(3)` and `openssl passwd -6` compute: the form cloud-init's `passwd`,
/// `chpasswd -e` and Raspberry Pi OS's `userconf` take. `salt`: 1 to 12 random bytes (the
/// caller draws them), written in the hash as up to 16 crypt-base64 characters.
pub fn hash_password(password: &str, salt: &[u8]) -> Result<String> {
    use sha_crypt::PasswordHasher;
    if !(1..=12).contains(&salt.len()) {
        return Err(Error::BadPath {
            path: format!("{} salt bytes", salt.len()),
            reason: "a salt is 1 to 12 bytes",
        });
    }
    sha_crypt::ShaCrypt::default()
        .hash_password_with_salt(password.as_bytes(), salt)
        .map(|h| h.as_str().to_string())
        .map_err(|e| Error::File {
            file: "password".into(),
            message: e.to_string(),
        })
}

/// Helpers for tests and examples.
#[doc(hidden)]
pub mod testing {
    /// A blank FAT volume of `size` bytes, formatted by the FAT library (the type follows
    /// from the size).
    pub fn blank_fat(size: usize) -> Vec<u8> {
        let mut v = std::io::Cursor::new(vec![0u8; size]);
        fatfs::format_volume(&mut v, fatfs::FormatVolumeOptions::new()).expect("format");
        v.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparsekit_io::MemStorage;

    #[test]
    fn paths_are_checked_before_anything_is_opened() {
        for p in [
            "",
            "/",
            "a//b",
            "a/../b",
            "a/./b",
            "x:y",
            "tab\there",
            "name.",
            "dir/",
        ] {
            let c = Customization {
                files: vec![(p.into(), Some(vec![1]))],
                ..Default::default()
            };
            // Not a FAT volume at all: the path error comes first.
            let e = customize_fat(&MemStorage::from_vec(vec![0; 4096]), &c).unwrap_err();
            assert_eq!(e.code(), "ERR_INVALID_ARG_VALUE", "{p:?}: {e}");
        }
    }

    #[test]
    fn password_hash_is_what_openssl_computes() {
        for (pw, salt) in [
            ("password", &b"0123456789ab"[..]),
            ("pä ss\"w'rd", b"x"),
            ("x", b"salt"),
        ] {
            let h = hash_password(pw, salt).unwrap();
            let f: Vec<&str> = h.split('$').collect();
            assert_eq!((f[1], f[2]), ("6", "rounds=5000"), "{h}");
            let Ok(o) = std::process::Command::new("openssl")
                .args(["passwd", "-6", "-salt", f[3], pw])
                .output()
            else {
                eprintln!("SKIP password_hash_is_what_openssl_computes: no openssl");
                return;
            };
            let theirs = String::from_utf8(o.stdout).unwrap();
            assert_eq!(theirs.trim(), format!("$6${}${}", f[3], f[4]), "{pw:?}");
        }
        assert!(hash_password("x", b"").is_err());
        assert!(hash_password("x", &[0; 13]).is_err());
    }

    #[test]
    fn append_is_once_and_before_the_newline() {
        assert_eq!(
            appended(b"console=tty1 root=/dev/mmcblk0p2\n", " quiet").unwrap(),
            b"console=tty1 root=/dev/mmcblk0p2 quiet\n"
        );
        assert_eq!(appended(b"a quiet b\n", " quiet"), None);
        assert_eq!(appended(b"x", " y").unwrap(), b"x y");
    }

    #[test]
    fn write_replace_delete_append_and_read_back() {
        let part = MemStorage::from_vec(testing::blank_fat(16 << 20));
        let mut c = Customization::default();
        c.files
            .push(("cmdline.txt".into(), Some(b"root=/dev/sda2\n".to_vec())));
        c.files
            .push(("a/b/long file name.json".into(), Some(vec![5; 70_000])));
        let r = customize_fat(&part, &c).unwrap();
        assert_eq!(r.written, ["cmdline.txt", "a/b/long file name.json"]);

        let mut c = Customization::default();
        c.files
            .push(("a/b/long file name.json".into(), Some(b"{}".to_vec())));
        c.files.push(("gone.txt".into(), None));
        c.append
            .push(("cmdline.txt".into(), " init=/firstrun.sh".into()));
        let r = customize_fat(&part, &c).unwrap();
        assert_eq!(r.appended, ["cmdline.txt"]);
        assert!(r.deleted.is_empty());
        // Idempotent: the text is there already.
        let r = customize_fat(&part, &c).unwrap();
        assert_eq!(r.already, ["cmdline.txt"]);
        let w = Watched {
            part: &part,
            writes: std::sync::Mutex::new(None),
        };
        let fs = open(&w).unwrap();
        assert_eq!(
            read(&fs, "cmdline.txt").unwrap().unwrap(),
            b"root=/dev/sda2 init=/firstrun.sh\n"
        );
        assert_eq!(
            read(&fs, "a/b/long file name.json").unwrap().unwrap(),
            b"{}"
        );
    }

    #[test]
    fn too_large_is_refused_before_writing() {
        let img = testing::blank_fat(2 << 20);
        let part = MemStorage::from_vec(img.clone());
        let c = Customization {
            files: vec![("big.bin".into(), Some(vec![1; 4 << 20]))],
            ..Default::default()
        };
        let e = customize_fat(&part, &c).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(sparsekit_io::errno::ENOSPC), "{e}");
        assert!(e.to_string().contains("big.bin"), "{e}");
        let mut now = vec![0u8; img.len()];
        part.read_exact_at(&mut now, 0).unwrap();
        assert!(now == img, "nothing written");
    }

    #[test]
    fn not_fat_and_missing_append_target_are_coded() {
        let c = Customization {
            files: vec![("x".into(), Some(vec![1]))],
            ..Default::default()
        };
        let e = customize_fat(&MemStorage::from_vec(vec![0; 1 << 20]), &c).unwrap_err();
        assert_eq!(e.code(), "ERR_SPARSEKIT_CUSTOMIZE_FAT", "{e}");
        let part = MemStorage::from_vec(testing::blank_fat(4 << 20));
        let c = Customization {
            append: vec![("cmdline.txt".into(), " x".into())],
            ..Default::default()
        };
        let e = customize_fat(&part, &c).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(sparsekit_io::errno::ENOENT), "{e}");
    }
}
