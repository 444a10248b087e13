//! The persistent bitmap directory (qcow2.txt "Bitmaps extension", "Bitmap directory").

use sparsekit_io::Storage;

use crate::error::{corrupt, corrupt_range, Result};
use crate::header::{Header, AUTOCLEAR_BITMAPS};

/// Most bitmaps (qemu's `QCOW2_MAX_BITMAPS`).
pub const MAX_BITMAPS: u32 = 65535;
/// Largest bitmap directory: 64 MiB (qemu's `QCOW2_MAX_BITMAP_DIRECTORY_SIZE`).
pub const MAX_BITMAP_DIRECTORY_BYTES: u64 = 64 << 20;
/// Largest bitmap table: 8 Mi entries (qemu's `BME_MAX_TABLE_SIZE`).
pub const MAX_BITMAP_TABLE_ENTRIES: u32 = 0x80_0000;
/// Bitmap flag bit 0: in use (not saved cleanly).
pub const BME_FLAG_IN_USE: u32 = 1;
/// Bitmap flag bit 1: auto (tracks writes).
pub const BME_FLAG_AUTO: u32 = 2;

/// One persistent dirty bitmap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitmap {
    /// Its name.
    pub name: String,
    /// Bytes of guest data per bit.
    pub granularity: u64,
    /// Flag bits (`in-use` 0, `auto` 1).
    pub flags: u32,
    /// Its bitmap table.
    pub table_offset: u64,
    /// Entries of its bitmap table.
    pub table_size: u32,
}

impl Bitmap {
    /// Flag names as `qemu-img info` prints them.
    pub fn flag_names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.flags & BME_FLAG_IN_USE != 0 {
            v.push("in-use");
        }
        if self.flags & BME_FLAG_AUTO != 0 {
            v.push("auto");
        }
        v
    }
}

/// The bitmaps and where their directory is, `(offset, size)`.
pub type Directory = (Vec<Bitmap>, Option<(u64, u64)>);

/// Read the bitmap directory (empty when there is none or the autoclear bit says it is
/// stale, as qemu does). Returns the bitmaps and the directory's `(offset, size)`.
pub fn read_bitmaps<S: Storage + ?Sized>(s: &S, h: &Header, file_size: u64) -> Result<Directory> {
    let Some(ext) = h.bitmaps else {
        return Ok((Vec::new(), None));
    };
    if h.autoclear_features & AUTOCLEAR_BITMAPS == 0 || ext.nb_bitmaps == 0 {
        return Ok((Vec::new(), None));
    }
    let (off, size) = (ext.bitmap_directory_offset, ext.bitmap_directory_size);
    if ext.nb_bitmaps > MAX_BITMAPS {
        return Err(corrupt(
            "bitmaps extension",
            off,
            format!("{} bitmaps, above {MAX_BITMAPS}", ext.nb_bitmaps),
        ));
    }
    if size > MAX_BITMAP_DIRECTORY_BYTES
        || off & (h.cluster_size() - 1) != 0
        || off.checked_add(size).is_none_or(|e| e > file_size)
    {
        return Err(corrupt_range(
            "bitmap directory",
            off,
            size,
            format!("directory of {size} bytes at {off:#x} is unaligned, too big or past the end of the file"),
        ));
    }
    let mut d = vec![0u8; size as usize];
    s.read_exact_at(&mut d, off)?;
    let mut at = 0usize;
    let mut out = Vec::new();
    for i in 0..ext.nb_bitmaps {
        let bad = |what: &str| {
            corrupt(
                "bitmap directory",
                off + at as u64,
                format!("bitmap {i}: {what}"),
            )
        };
        if at + 24 > d.len() {
            return Err(bad("entry runs past the directory"));
        }
        let e = &d[at..];
        let table_offset = u64::from_be_bytes(e[0..8].try_into().expect("8"));
        let table_size = u32::from_be_bytes(e[8..12].try_into().expect("4"));
        let flags = u32::from_be_bytes(e[12..16].try_into().expect("4"));
        let gran_bits = e[17];
        let name_size = u16::from_be_bytes(e[18..20].try_into().expect("2")) as usize;
        let extra = u32::from_be_bytes(e[20..24].try_into().expect("4")) as usize;
        let len = 24 + extra + name_size;
        if at + len > d.len() {
            return Err(bad("entry runs past the directory"));
        }
        if !(9..=31).contains(&gran_bits) {
            return Err(bad(&format!("granularity bits {gran_bits} outside 9..=31")));
        }
        if table_size > MAX_BITMAP_TABLE_ENTRIES {
            return Err(bad(&format!("bitmap table of {table_size} entries")));
        }
        let name = String::from_utf8_lossy(&e[24 + extra..len]).into_owned();
        out.push(Bitmap {
            name,
            granularity: 1 << gran_bits,
            flags,
            table_offset,
            table_size,
        });
        at += len.div_ceil(8) * 8;
    }
    Ok((out, Some((off, size))))
}
