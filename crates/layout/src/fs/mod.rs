//! Recognising what is in a partition and walking its used blocks.

mod btrfs;
mod exfat;
mod ext;
mod fat;
mod ntfs;
mod swap;
mod xfs;

use sparsekit_io::Control;

use crate::dev::{Dev, Emit};
use crate::error::Error;
use crate::{FileSystem, State};

/// The first bytes read of every partition: enough for every signature (btrfs's
/// superblock sits at 64 KiB).
const HEAD: u64 = 68 << 10;
/// Runs kept in memory from the checking walk; beyond this the walk runs a second time
/// to emit (so memory stays bounded for file systems with millions of runs).
const KEEP_RUNS: usize = 1 << 20;

/// What an opened file system tells before its walk.
pub(crate) struct Opened {
    pub fs: FileSystem,
    pub label: Option<String>,
    pub uuid: Option<String>,
    /// Set when the file system is dirty: then it is all used.
    pub dirty: Option<String>,
    /// Set for containers whose contents are unknown (LUKS, LVM): all used.
    pub opaque: Option<String>,
    pub walker: Option<Box<dyn Walk>>,
}

impl Opened {
    pub fn new(
        fs: FileSystem,
        label: Option<String>,
        uuid: Option<String>,
        w: Box<dyn Walk>,
    ) -> Self {
        Opened {
            fs,
            label,
            uuid,
            dirty: None,
            opaque: None,
            walker: Some(w),
        }
    }
}

/// A file system's used-block walk, in ascending partition offsets.
pub(crate) trait Walk {
    fn walk(&self, d: &Dev, e: &mut Emit) -> Result<(), Error>;
}

/// What [`read_partition`] found.
pub(crate) struct Found {
    pub filesystem: Option<FileSystem>,
    pub label: Option<String>,
    pub uuid: Option<String>,
    pub used_bytes: u64,
    pub state: State,
    pub reason: Option<String>,
}

/// Whether sector 0 of the device is a file system boot sector (FAT, exFAT, NTFS), whose
/// 0x55AA is not an MBR's.
pub(crate) fn is_boot_sector_fs(whole: &Dev) -> Result<bool, Error> {
    let s0 = whole.read("boot sector", 0, 512)?;
    Ok(fat::detect(&s0) || exfat::detect(&s0) || ntfs::detect(&s0))
}

fn detect(d: &Dev) -> Result<Vec<FileSystem>, Error> {
    let head = d.read("partition start", 0, d.len.min(HEAD))?;
    let mut found = Vec::new();
    if ext::detect(&head) {
        found.push(FileSystem::Ext4);
    }
    if fat::detect(&head) {
        found.push(FileSystem::Vfat);
    }
    if exfat::detect(&head) {
        found.push(FileSystem::Exfat);
    }
    if ntfs::detect(&head) {
        found.push(FileSystem::Ntfs);
    }
    if xfs::detect(&head) {
        found.push(FileSystem::Xfs);
    }
    if btrfs::detect(&head) {
        found.push(FileSystem::Btrfs);
    }
    if swap::detect(&head) {
        found.push(FileSystem::Swap);
    }
    if head.len() >= 6 && (&head[..6] == b"LUKS\xba\xbe" || &head[..6] == b"SKUL\xba\xbe") {
        found.push(FileSystem::CryptoLuks);
    }
    // LVM2: "LABELONE" in one of the first four sectors, "LVM2 001" 24 bytes on.
    if (0..4).any(|s| {
        let o = s * 512;
        head.len() >= o + 32
            && &head[o..o + 8] == b"LABELONE"
            && &head[o + 24..o + 32] == b"LVM2 001"
    }) {
        found.push(FileSystem::Lvm2Member);
    }
    Ok(found)
}

fn open(kind: FileSystem, d: &Dev) -> Result<Opened, Error> {
    match kind {
        FileSystem::Ext2 | FileSystem::Ext3 | FileSystem::Ext4 => ext::open(d),
        FileSystem::Vfat => fat::open(d),
        FileSystem::Exfat => exfat::open(d),
        FileSystem::Ntfs => ntfs::open(d),
        FileSystem::Xfs => xfs::open(d),
        FileSystem::Btrfs => btrfs::open(d),
        FileSystem::Swap => swap::open(d),
        FileSystem::CryptoLuks => Ok(Opened {
            fs: kind,
            label: None,
            uuid: None,
            dirty: None,
            opaque: Some("an encrypted LUKS container: its contents cannot be read".into()),
            walker: None,
        }),
        FileSystem::Lvm2Member => Ok(Opened {
            fs: kind,
            label: None,
            uuid: None,
            dirty: None,
            opaque: Some("an LVM physical volume: its logical volumes are not read".into()),
            walker: None,
        }),
    }
}

/// Errors that stop the whole layout; the rest make the partition all used.
fn fatal(e: &Error) -> bool {
    match e {
        Error::Aborted => true,
        Error::Io(io) => !io.is_eof(),
        _ => false,
    }
}

/// Read one partition: detect, open and walk its file system, sending its used runs
/// (partition-relative, ascending) to `sink`.
pub(crate) fn read_partition(
    d: &Dev,
    ctl: &mut Control,
    device_size: u64,
    sink: &mut dyn FnMut(u64, u64) -> Result<(), Error>,
) -> Result<Found, Error> {
    let all_used = |sink: &mut dyn FnMut(u64, u64) -> Result<(), Error>,
                    fs: Option<FileSystem>,
                    label,
                    uuid,
                    state,
                    reason: String|
     -> Result<Found, Error> {
        sink(0, d.len)?;
        Ok(Found {
            filesystem: fs,
            label,
            uuid,
            used_bytes: d.len,
            state,
            reason: Some(reason),
        })
    };
    let kinds = match detect(d) {
        Ok(k) => k,
        Err(e) if !fatal(&e) => {
            return all_used(
                sink,
                None,
                None,
                None,
                State::Unknown,
                e.shifted(d.base).reason(),
            )
        }
        Err(e) => return Err(e.shifted(d.base)),
    };
    let kind = match kinds.as_slice() {
        [] => {
            return all_used(
                sink,
                None,
                None,
                None,
                State::Unknown,
                "no file system this reader knows".into(),
            )
        }
        [k] => *k,
        many => {
            let names: Vec<_> = many.iter().map(|k| k.name()).collect();
            return all_used(
                sink,
                None,
                None,
                None,
                State::Unknown,
                format!(
                    "signatures of several file systems ({}): which one is live is unknown",
                    names.join(", ")
                ),
            );
        }
    };
    let opened = match open(kind, d) {
        Ok(o) => o,
        Err(e) if fatal(&e) => return Err(e.shifted(d.base)),
        Err(e) => {
            return all_used(
                sink,
                Some(kind),
                None,
                None,
                State::Unknown,
                e.shifted(d.base).reason(),
            )
        }
    };
    let Opened {
        fs,
        label,
        uuid,
        dirty,
        opaque,
        walker,
    } = opened;
    if let Some(why) = dirty {
        return all_used(sink, Some(fs), label, uuid, State::Dirty, why);
    }
    if let Some(why) = opaque {
        return all_used(sink, Some(fs), label, uuid, State::Unknown, why);
    }
    let walker = walker.expect("a readable file system has a walker");

    // Pass 1: check everything and keep the runs (up to KEEP_RUNS).
    let mut kept: Vec<(u64, u64)> = Vec::new();
    let mut overflow = false;
    let used = {
        let mut keep = |s: u64, l: u64| {
            if kept.len() < KEEP_RUNS {
                kept.push((s, l));
            } else {
                overflow = true;
            }
            Ok(())
        };
        let mut e = Emit::new(&mut keep, d.len, ctl, d.base, device_size);
        match walker.walk(d, &mut e).and_then(|_| e.finish()) {
            Ok(()) => e.used,
            Err(err) if fatal(&err) => return Err(err.shifted(d.base)),
            Err(err) => {
                return all_used(
                    sink,
                    Some(fs),
                    label,
                    uuid,
                    State::Unknown,
                    err.shifted(d.base).reason(),
                )
            }
        }
    };
    if !overflow {
        for (s, l) in kept {
            sink(s, l)?;
        }
    } else {
        drop(kept);
        // Pass 2: the metadata passed; emit as we go. A failure now (the device changed
        // under us) cannot take back what was emitted: it fails the whole layout.
        let mut e = Emit::new(sink, d.len, ctl, d.base, device_size);
        walker
            .walk(d, &mut e)
            .and_then(|_| e.finish())
            .map_err(|err| err.shifted(d.base))?;
    }
    Ok(Found {
        filesystem: Some(fs),
        label,
        uuid,
        used_bytes: used,
        state: State::Clean,
        reason: None,
    })
}
