//! Partition tables: MBR (with the EBR chain of an extended partition) and GPT (both
//! headers, both CRCs, protective or hybrid MBR). Everything here checks before it trusts:
//! a table that fails is a coded error, since nothing on the device can then be placed.

use crate::dev::{le16, le32, le64, Dev};
use crate::error::{corrupt, unsupported, Error};
use crate::Table;

/// The MBR boot signature (bytes 510..512).
const BOOT_SIGNATURE: [u8; 2] = [0x55, 0xaa];
/// MBR partition types of extended partitions (DOS, Windows LBA, Linux).
const EXTENDED_TYPES: [u8; 3] = [0x05, 0x0f, 0x85];
/// The protective MBR's partition type (UEFI spec 5.2.3).
const GPT_PROTECTIVE: u8 = 0xee;
/// At most this many logical partitions: an EBR chain longer than this is a loop or an
/// attack (Linux stops at 256 partitions too).
const MAX_LOGICAL: usize = 252;
/// GPT header signature (UEFI spec 5.3.2).
const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
/// The GPT header's fixed fields end here (UEFI spec table 5-5).
const GPT_HEADER_MIN: u32 = 92;
/// Largest partition entry array read (the spec's usual one is 16 KiB).
const MAX_GPT_ARRAY: u64 = 4 << 20;

/// One partition as the table describes it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub number: u32,
    pub start: u64,
    pub length: u64,
    pub type_: String,
    pub name: Option<String>,
    pub partuuid: Option<String>,
}

/// What the table reader found.
pub(crate) struct Parsed {
    pub table: Table,
    pub sector_size: u32,
    pub entries: Vec<Entry>,
    pub hybrid_mbr: bool,
    pub warnings: Vec<String>,
}

#[derive(Clone, Copy)]
struct MbrEntry {
    status: u8,
    kind: u8,
    lba: u32,
    sectors: u32,
}

fn mbr_entries(sector: &[u8]) -> [MbrEntry; 4] {
    std::array::from_fn(|i| {
        let e = &sector[446 + 16 * i..462 + 16 * i];
        MbrEntry {
            status: e[0],
            kind: e[4],
            lba: le32(e, 8),
            sectors: le32(e, 12),
        }
    })
}

/// Whether the four entries could be an MBR's: status 0x00 or 0x80, and every used entry
/// has sectors.
fn plausible_mbr(es: &[MbrEntry; 4]) -> bool {
    es.iter().all(|e| {
        (e.status == 0 || e.status == 0x80) && (e.kind == 0 || (e.sectors != 0 && e.lba != 0))
    })
}

/// Read the table of `whole` (the entire device). `looks_like_vbr` says whether sector 0
/// is a file system's boot sector (FAT, NTFS, exFAT): then a 0x55AA signature is that
/// boot sector's, not an MBR's.
pub(crate) fn read(whole: &Dev, looks_like_vbr: bool) -> Result<Parsed, Error> {
    let size = whole.len;
    let mut warnings = Vec::new();
    if size < 512 {
        return Ok(Parsed {
            table: Table::None,
            sector_size: 512,
            entries: Vec::new(),
            hybrid_mbr: false,
            warnings,
        });
    }
    let s0 = whole.read("MBR", 0, 512)?;
    let has_sig = s0[510..512] == BOOT_SIGNATURE;
    let mbr = mbr_entries(&s0);
    let protective = has_sig && mbr.iter().any(|e| e.kind == GPT_PROTECTIVE);

    // GPT: with 512-byte sectors, or 4 KiB ones (4Kn disks).
    for ss in [512u64, 4096] {
        if size < ss * 2 {
            continue;
        }
        let primary = whole.read("GPT header", ss, ss)?;
        let last_lba = size / ss - 1;
        if &primary[..8] != GPT_SIGNATURE {
            if protective && ss == 512 {
                // Maybe a 4Kn disk; or the primary header is gone: try the backup.
                if let Ok(Some(g)) = read_gpt_header(whole, ss, last_lba, last_lba) {
                    warnings
                        .push("the primary GPT header is missing; using the backup header".into());
                    return finish_gpt(whole, ss, g, &s0, has_sig, warnings);
                }
            }
            continue;
        }
        let (hdr, from_backup) = match read_gpt_header(whole, ss, 1, last_lba) {
            Ok(Some(h)) => (h, false),
            Ok(None) | Err(_) => {
                let why = match read_gpt_header(whole, ss, 1, last_lba) {
                    Err(e) => e.to_string(),
                    _ => "bad".into(),
                };
                match read_gpt_header(whole, ss, last_lba, last_lba) {
                    Ok(Some(b)) => {
                        warnings.push(format!("the primary GPT header is corrupt ({why}); using the backup header"));
                        (b, true)
                    }
                    _ => {
                        return Err(corrupt(
                            "GPT header",
                            ss,
                            format!("the primary GPT header is corrupt ({why}) and there is no valid backup header at LBA {last_lba}"),
                        ))
                    }
                }
            }
        };
        if !from_backup {
            // The backup header must exist where the primary says, with the same entries.
            match hdr.alternate_lba {
                a if a > last_lba => warnings.push(format!(
                    "the backup GPT header should be at LBA {a}, past the end of the device (LBA {last_lba}): the image looks truncated"
                )),
                a => match read_gpt_header(whole, ss, a, last_lba) {
                    Ok(Some(b)) if b.entries_crc == hdr.entries_crc && b.alternate_lba == 1 => {}
                    Ok(Some(_)) => warnings.push(format!("the backup GPT header at LBA {a} does not match the primary one")),
                    Ok(None) => warnings.push(format!("no backup GPT header at LBA {a}")),
                    Err(e) => warnings.push(format!("the backup GPT header at LBA {a} is corrupt: {e}")),
                },
            }
        }
        return finish_gpt(whole, ss, hdr, &s0, has_sig, warnings);
    }
    if protective {
        return Err(corrupt(
            "GPT header",
            512,
            "the MBR is a protective MBR (type 0xee) but there is no valid GPT header",
        ));
    }
    // A boot sector with a BIOS parameter block can also hold a partition table (MBRs that
    // carry a BPB for USB-FDD/USB-HDD booting): as Linux's msdos parser does, valid boot
    // indicators and sane entries make it a partition table; a file system there would
    // then only be read inside the partitions (the safe reading: a fake BPB must never
    // make a whole disk's partitions look like free FAT clusters). Entries past the end
    // of the device cannot be a real table on this device: then it is the boot sector.
    let entries_fit = mbr
        .iter()
        .all(|e| e.kind == 0 || (e.lba as u64 + e.sectors as u64) * 512 <= size);
    if !has_sig
        || !plausible_mbr(&mbr)
        || mbr.iter().all(|e| e.kind == 0)
        || (looks_like_vbr && !entries_fit)
    {
        return Ok(Parsed {
            table: Table::None,
            sector_size: 512,
            entries: Vec::new(),
            hybrid_mbr: false,
            warnings,
        });
    }
    read_mbr(whole, &mbr, warnings)
}

fn read_mbr(whole: &Dev, mbr: &[MbrEntry; 4], warnings: Vec<String>) -> Result<Parsed, Error> {
    let ss = 512u64;
    let mut entries = Vec::new();
    let mut extended = None;
    for (i, e) in mbr.iter().enumerate() {
        if e.kind == 0 {
            continue;
        }
        let start = e.lba as u64 * ss;
        let length = e.sectors as u64 * ss;
        if EXTENDED_TYPES.contains(&e.kind) {
            if extended.is_some() {
                return Err(corrupt(
                    "MBR",
                    446 + 16 * i as u64,
                    "more than one extended partition",
                ));
            }
            extended = Some((start, length));
            continue;
        }
        entries.push(Entry {
            number: i as u32 + 1,
            start,
            length,
            type_: format!("0x{:02x}", e.kind),
            name: None,
            partuuid: None,
        });
    }
    if let Some((ext_start, ext_len)) = extended {
        let ext_end = ext_start.saturating_add(ext_len);
        if ext_end > whole.len {
            return Err(corrupt(
                "MBR",
                446,
                format!("the extended partition ends at byte {ext_end}, past the end of the device ({} bytes): truncated image?", whole.len),
            ));
        }
        let mut ebr = ext_start;
        let mut seen = std::collections::HashSet::new();
        let mut number = 5;
        loop {
            if !seen.insert(ebr) || seen.len() > MAX_LOGICAL {
                return Err(corrupt(
                    "EBR",
                    ebr,
                    format!("the chain of extended boot records loops back to offset {ebr} (or has more than {MAX_LOGICAL} links)"),
                ));
            }
            let s = whole.read("EBR", ebr, 512)?;
            if s[510..512] != BOOT_SIGNATURE {
                return Err(corrupt("EBR", ebr, "no 0x55AA signature"));
            }
            let es = mbr_entries(&s);
            let (l, next) = (es[0], es[1]);
            if l.kind != 0 {
                let start = ebr + l.lba as u64 * ss;
                let length = l.sectors as u64 * ss;
                if l.lba == 0 || start.saturating_add(length) > ext_end || l.sectors == 0 {
                    return Err(corrupt(
                        "EBR",
                        ebr + 446,
                        format!("logical partition {number} ({start}+{length}) is not inside the extended partition ({ext_start}+{ext_len})"),
                    ));
                }
                entries.push(Entry {
                    number,
                    start,
                    length,
                    type_: format!("0x{:02x}", l.kind),
                    name: None,
                    partuuid: None,
                });
                number += 1;
            }
            if next.kind == 0 {
                break;
            }
            if !EXTENDED_TYPES.contains(&next.kind) {
                return Err(corrupt(
                    "EBR",
                    ebr + 462,
                    format!(
                        "the link entry has type 0x{:02x}, not an extended type",
                        next.kind
                    ),
                ));
            }
            let n = ext_start + next.lba as u64 * ss;
            if next.lba == 0 || n >= ext_end {
                return Err(corrupt(
                    "EBR",
                    ebr + 462,
                    format!("the next EBR at offset {n} is outside the extended partition"),
                ));
            }
            ebr = n;
        }
    }
    Ok(Parsed {
        table: Table::Mbr,
        sector_size: 512,
        entries,
        hybrid_mbr: false,
        warnings,
    })
}

struct GptHeader {
    alternate_lba: u64,
    first_usable: u64,
    last_usable: u64,
    entries_lba: u64,
    num_entries: u32,
    entry_size: u32,
    entries_crc: u32,
}

/// The GPT header at `lba` when its signature, CRC and fields check; `Ok(None)` when
/// there is no signature.
fn read_gpt_header(
    whole: &Dev,
    ss: u64,
    lba: u64,
    last_lba: u64,
) -> Result<Option<GptHeader>, Error> {
    let off = lba * ss;
    let h = whole.read("GPT header", off, ss)?;
    if &h[..8] != GPT_SIGNATURE {
        return Ok(None);
    }
    let header_size = le32(&h, 12);
    if header_size < GPT_HEADER_MIN || header_size as u64 > ss {
        return Err(corrupt(
            "GPT header",
            off,
            format!("header size {header_size} is not within {GPT_HEADER_MIN}..={ss}"),
        ));
    }
    let mut copy = h[..header_size as usize].to_vec();
    copy[16..20].fill(0);
    let crc = crc32fast::hash(&copy);
    if crc != le32(&h, 16) {
        return Err(corrupt(
            "GPT header",
            off,
            format!(
                "header CRC32 is {:#010x}, computed {crc:#010x}",
                le32(&h, 16)
            ),
        ));
    }
    let my_lba = le64(&h, 24);
    if my_lba != lba {
        return Err(corrupt(
            "GPT header",
            off,
            format!("the header at LBA {lba} says it is at LBA {my_lba}"),
        ));
    }
    let g = GptHeader {
        alternate_lba: le64(&h, 32),
        first_usable: le64(&h, 40),
        last_usable: le64(&h, 48),
        entries_lba: le64(&h, 72),
        num_entries: le32(&h, 80),
        entry_size: le32(&h, 84),
        entries_crc: le32(&h, 88),
    };
    if g.entry_size < 128 || !g.entry_size.is_power_of_two() || g.entry_size > 4096 {
        return Err(unsupported(
            "GPT header",
            off,
            format!("partition entry size {}", g.entry_size),
        ));
    }
    let array = g.num_entries as u64 * g.entry_size as u64;
    if array > MAX_GPT_ARRAY {
        return Err(corrupt(
            "GPT header",
            off,
            format!(
                "{} entries of {} bytes is more than {MAX_GPT_ARRAY} bytes",
                g.num_entries, g.entry_size
            ),
        ));
    }
    // A last usable LBA past the device is a truncated image: the header is still good
    // (partitions past the end are refused later, one by one).
    if g.first_usable > g.last_usable || g.first_usable > last_lba {
        return Err(corrupt(
            "GPT header",
            off,
            format!(
                "usable LBAs {}..={} do not fit the device (last LBA {last_lba})",
                g.first_usable, g.last_usable
            ),
        ));
    }
    let array_sectors = array.div_ceil(ss);
    let array_end = g.entries_lba.saturating_add(array_sectors);
    if g.entries_lba <= 1 && lba == 1 || array_end > last_lba + 1 {
        return Err(corrupt(
            "GPT header",
            off,
            format!(
                "the partition entry array at LBA {} is outside the device",
                g.entries_lba
            ),
        ));
    }
    if !(array_end <= g.first_usable || g.entries_lba > g.last_usable) {
        return Err(corrupt(
            "GPT header",
            off,
            format!(
                "the partition entry array at LBA {} overlaps the usable area",
                g.entries_lba
            ),
        ));
    }
    // The usable area must end before the other copy's entry array and header: a
    // partition over the backup GPT would let a file system call it free.
    let other_ok = if lba == 1 {
        g.last_usable.saturating_add(array_sectors) < g.alternate_lba
    } else {
        g.alternate_lba < g.first_usable
    };
    if !other_ok {
        return Err(corrupt(
            "GPT header",
            off,
            format!(
                "usable LBAs {}..={} reach the other GPT header at LBA {} or its entries",
                g.first_usable, g.last_usable, g.alternate_lba
            ),
        ));
    }
    let entries = whole.read("GPT partition entries", g.entries_lba * ss, array)?;
    let ecrc = crc32fast::hash(&entries);
    if ecrc != g.entries_crc {
        return Err(corrupt(
            "GPT partition entries",
            g.entries_lba * ss,
            format!(
                "entry array CRC32 is {:#010x}, computed {ecrc:#010x}",
                g.entries_crc
            ),
        ));
    }
    Ok(Some(g))
}

fn finish_gpt(
    whole: &Dev,
    ss: u64,
    g: GptHeader,
    s0: &[u8],
    has_sig: bool,
    mut warnings: Vec<String>,
) -> Result<Parsed, Error> {
    let array = g.num_entries as u64 * g.entry_size as u64;
    let off = g.entries_lba * ss;
    let raw = whole.read("GPT partition entries", off, array)?;
    let mut entries = Vec::new();
    for i in 0..g.num_entries as usize {
        let e = &raw[i * g.entry_size as usize..(i + 1) * g.entry_size as usize];
        let type_guid: [u8; 16] = e[..16].try_into().unwrap();
        if type_guid == [0; 16] {
            continue;
        }
        let first = le64(e, 32);
        let last = le64(e, 40);
        let eoff = off + (i * g.entry_size as usize) as u64;
        if first > last || first < g.first_usable || last > g.last_usable {
            return Err(corrupt(
                "GPT partition entry",
                eoff,
                format!(
                    "partition {} spans LBAs {first}..={last}, outside the usable LBAs {}..={}",
                    i + 1,
                    g.first_usable,
                    g.last_usable
                ),
            ));
        }
        entries.push(Entry {
            number: i as u32 + 1,
            start: first * ss,
            length: (last - first + 1) * ss,
            type_: guid_le(&type_guid),
            name: crate::dev::label16(&e[56..128]),
            partuuid: Some(guid_le(&e[16..32].try_into().unwrap())),
        });
    }
    // The MBR: protective (one 0xee entry) or hybrid (0xee plus entries that must agree
    // with the GPT: an MBR partition that cuts through a GPT partition is a contradiction).
    let mut hybrid = false;
    if has_sig {
        let mbr = mbr_entries(s0);
        if !mbr.iter().any(|e| e.kind == GPT_PROTECTIVE) {
            warnings.push("the MBR is not a protective MBR (no 0xee entry)".into());
        }
        for (i, e) in mbr.iter().enumerate() {
            if e.kind == 0 || e.kind == GPT_PROTECTIVE {
                continue;
            }
            hybrid = true;
            let start = e.lba as u64 * 512;
            let end = start + e.sectors as u64 * 512;
            let agrees = entries.iter().all(|p| {
                let pend = p.start + p.length;
                end <= p.start || start >= pend || (start == p.start && end == pend)
            });
            if !agrees {
                return Err(corrupt(
                    "hybrid MBR",
                    446 + 16 * i as u64,
                    format!("MBR partition {} ({start}..{end}) overlaps a GPT partition without matching it", i + 1),
                ));
            }
        }
    } else {
        warnings.push("no MBR boot signature in front of the GPT".into());
    }
    let _ = le16;
    Ok(Parsed {
        table: Table::Gpt,
        sector_size: ss as u32,
        entries,
        hybrid_mbr: hybrid,
        warnings,
    })
}

/// A GPT GUID (mixed-endian on disk) in its usual lowercase text form.
fn guid_le(b: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes_le(*b).hyphenated().to_string()
}

/// Friendly names of common partition types.
pub(crate) fn type_name(t: &str) -> Option<&'static str> {
    Some(match t {
        "0fc63daf-8483-4772-8e79-3d69d8477de4" => "Linux filesystem",
        "c12a7328-f81f-11d2-ba4b-00a0c93ec93b" => "EFI System",
        "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7" => "Microsoft basic data",
        "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f" => "Linux swap",
        "e6d6d379-f507-44c2-a23c-238f2a3df928" => "Linux LVM",
        "ca7d7ccb-63ed-4c53-861c-1742536059cc" => "Linux LUKS",
        "a19d880f-05fc-4d3b-a006-743f0f84911e" => "Linux RAID",
        "21686148-6449-6e6f-744e-656564454649" => "BIOS boot",
        "e3c9e316-0b5c-4db8-817d-f92df00215ae" => "Microsoft reserved",
        "de94bba4-06d1-4d40-a16a-bfd50179d6ac" => "Windows recovery environment",
        "4f68bce3-e8cd-4db1-96e7-fbcaf984b709" => "Linux root (x86-64)",
        "0x83" => "Linux",
        "0x82" => "Linux swap",
        "0x8e" => "Linux LVM",
        "0xfd" => "Linux raid autodetect",
        "0x07" => "HPFS/NTFS/exFAT",
        "0x0b" => "W95 FAT32",
        "0x0c" => "W95 FAT32 (LBA)",
        "0x0e" => "W95 FAT16 (LBA)",
        "0x06" => "FAT16",
        "0x04" => "FAT16 <32M",
        "0x01" => "FAT12",
        "0xef" => "EFI (FAT-12/16/32)",
        "0xee" => "GPT",
        _ => return None,
    })
}
