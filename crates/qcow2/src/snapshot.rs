//! The internal snapshot table (qcow2.txt "Snapshots"), read with every length bounded.

use sparsekit_io::Storage;

use crate::error::{corrupt, corrupt_range, Result};
use crate::header::{Header, MAX_L1_TABLE_BYTES};

/// Bytes of the fixed part of a snapshot table entry.
pub const SNAPSHOT_FIXED_SIZE: u64 = 40;
/// Most extra data per entry (qemu's `QCOW_MAX_SNAPSHOT_EXTRA_DATA`).
pub const MAX_SNAPSHOT_EXTRA: u32 = 1024;
/// Largest snapshot table: 64 MiB (qemu's `QCOW_MAX_SNAPSHOTS_SIZE`).
pub const MAX_SNAPSHOT_TABLE_BYTES: u64 = 64 << 20;

/// One internal snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Where its entry starts in the image file.
    pub entry_offset: u64,
    /// Its L1 table (cluster aligned).
    pub l1_table_offset: u64,
    /// Entries of its L1 table.
    pub l1_size: u32,
    /// The unique id string.
    pub id: String,
    /// The name.
    pub name: String,
    /// Creation time, seconds since the epoch.
    pub date_sec: u32,
    /// Creation time, nanoseconds.
    pub date_nsec: u32,
    /// Guest clock at creation, nanoseconds.
    pub vm_clock_nsec: u64,
    /// Bytes of saved VM state (the 64-bit extra field when present).
    pub vm_state_size: u64,
    /// Virtual disk size at creation (extra data; the header's size if absent).
    pub disk_size: Option<u64>,
    /// Instruction count for record/replay, when recorded (extra data; -1 = none).
    pub icount: Option<u64>,
    /// The raw extra data.
    pub extra: Vec<u8>,
}

struct Cursor<'a, S: ?Sized> {
    s: &'a S,
    at: u64,
    end: u64,
}

impl<S: Storage + ?Sized> Cursor<'_, S> {
    fn take(&mut self, n: u64, what: &str) -> Result<Vec<u8>> {
        let to = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.end)
            .ok_or_else(|| {
                corrupt_range(
                    "snapshot table",
                    self.at,
                    n,
                    format!("{what} runs past the end of the table or file"),
                )
            })?;
        let mut v = vec![0u8; n as usize];
        self.s.read_exact_at(&mut v, self.at)?;
        self.at = to;
        Ok(v)
    }
}

/// Read the snapshot table of `h`; never reads more than [`MAX_SNAPSHOT_TABLE_BYTES`].
/// Returns the snapshots and the table's size in bytes.
pub fn read_snapshots<S: Storage + ?Sized>(
    s: &S,
    h: &Header,
    file_size: u64,
) -> Result<(Vec<Snapshot>, u64)> {
    let mut out = Vec::with_capacity((h.nb_snapshots as usize).min(1024));
    if h.nb_snapshots == 0 {
        return Ok((out, 0));
    }
    let start = h.snapshots_offset;
    let end = start
        .saturating_add(MAX_SNAPSHOT_TABLE_BYTES)
        .min(file_size);
    let mut c = Cursor { s, at: start, end };
    let mut unpadded_end = start;
    for i in 0..h.nb_snapshots {
        let entry_offset = c.at;
        let f = c.take(SNAPSHOT_FIXED_SIZE, "snapshot entry")?;
        let be32 = |at: usize| u32::from_be_bytes(f[at..at + 4].try_into().expect("4"));
        let be64 = |at: usize| u64::from_be_bytes(f[at..at + 8].try_into().expect("8"));
        let be16 = |at: usize| u16::from_be_bytes(f[at..at + 2].try_into().expect("2"));
        let l1_table_offset = be64(0);
        let l1_size = be32(8);
        let id_len = be16(12);
        let name_len = be16(14);
        let extra_len = be32(36);
        if extra_len > MAX_SNAPSHOT_EXTRA {
            return Err(corrupt(
                "snapshot entry",
                entry_offset + 36,
                format!("snapshot {i}: extra_data_size {extra_len} above {MAX_SNAPSHOT_EXTRA}"),
            ));
        }
        if u64::from(l1_size) * 8 > MAX_L1_TABLE_BYTES {
            return Err(corrupt(
                "snapshot entry",
                entry_offset + 8,
                format!("snapshot {i}: l1_size {l1_size} too large"),
            ));
        }
        if l1_table_offset & (h.cluster_size() - 1) != 0 {
            return Err(corrupt(
                "snapshot entry",
                entry_offset,
                format!(
                    "snapshot {i}: L1 table offset {l1_table_offset:#x} is not cluster aligned"
                ),
            ));
        }
        let extra = c.take(u64::from(extra_len), "extra data")?;
        let xbe64 = |at: usize| {
            (extra.len() >= at + 8)
                .then(|| u64::from_be_bytes(extra[at..at + 8].try_into().expect("8")))
        };
        let id = c.take(u64::from(id_len), "id")?;
        let name = c.take(u64::from(name_len), "name")?;
        // Entries are padded to 8 bytes.
        unpadded_end = c.at;
        let used = c.at - entry_offset;
        let pad = used.div_ceil(8) * 8 - used;
        // The padding is not read: after the last entry the file may end before it.
        c.at = c.at.saturating_add(pad);
        out.push(Snapshot {
            entry_offset,
            l1_table_offset,
            l1_size,
            id: String::from_utf8_lossy(&id).into_owned(),
            name: String::from_utf8_lossy(&name).into_owned(),
            date_sec: be32(16),
            date_nsec: be32(20),
            vm_clock_nsec: be64(24),
            vm_state_size: xbe64(0).unwrap_or(u64::from(be32(32))),
            disk_size: xbe64(8),
            icount: xbe64(16),
            extra,
        });
    }
    // As qemu counts it: the last entry's padding is not part of the table.
    Ok((out, unpadded_end - start))
}
