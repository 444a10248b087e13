//! The OS calls of the Windows drive listing and of writing a disk; the logic is
//! [`crate::drives::windows`], tested on every OS. Every call cites its header
//! (learn.microsoft.com, Win32 API).
//!
//! Disks are found by probing `\\.\PhysicalDrive0` to `\\.\PhysicalDrive63` (plus any
//! higher number a volume's extents name): the disk class driver numbers disks densely
//! from 0, these are the numbers `DISK_EXTENT.DiskNumber` uses, and probing needs no
//! SetupAPI (setupapi.h `SetupDiGetClassDevsW` with `GUID_DEVINTERFACE_DISK` would find
//! the same disks through device interface paths, one more library and more code). A
//! disk that does not exist fails `CreateFileW` with ERROR_FILE_NOT_FOUND and is skipped.
//!
//! Every query handle is opened with no access rights (`dwDesiredAccess` 0): the ioctls
//! used for listing are `FILE_ANY_ACCESS`, so listing works without administrator rights.
//! Writing needs them (opening a disk for writing does).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use windows_sys::Win32::Foundation::{
    ERROR_INSUFFICIENT_BUFFER, ERROR_MORE_DATA, ERROR_NO_MORE_FILES, ERROR_SUCCESS,
    ERROR_WRITE_PROTECT, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    FindFirstVolumeW, FindNextVolumeW, FindVolumeClose, GetVolumeNameForVolumeMountPointW,
    GetVolumePathNameW, GetVolumePathNamesForVolumeNameW, QueryDosDeviceW, FILE_FLAG_NO_BUFFERING,
    FILE_FLAG_WRITE_THROUGH, FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE,
    IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS,
};
use windows_sys::Win32::System::Ioctl::{
    FSCTL_ALLOW_EXTENDED_DASD_IO, FSCTL_DISMOUNT_VOLUME, FSCTL_LOCK_VOLUME,
    IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, IOCTL_DISK_IS_WRITABLE, IOCTL_DISK_UPDATE_PROPERTIES,
    IOCTL_STORAGE_GET_DEVICE_NUMBER, IOCTL_STORAGE_QUERY_PROPERTY,
};
use windows_sys::Win32::System::Registry::{
    RegGetValueW, HKEY_LOCAL_MACHINE, RRF_RT_REG_MULTI_SZ, RRF_RT_REG_SZ,
};
use windows_sys::Win32::System::SystemInformation::GetSystemWindowsDirectoryW;

use crate::drives::windows::{
    self as logic, parse_access_alignment, parse_device_descriptor, parse_device_number,
    parse_disk_extents, parse_geometry_ex, parse_multi_sz, volume_device, DevicePath, Disk,
    SystemInfo, Volume,
};
use crate::drives::{Drive, Safety};
use crate::sector::SectorAligned;
use crate::{Error, Result};
use sparsekit_io::sys::{device_io_control, FileExt as _};
use sparsekit_io::{IoError, Storage};

/// Disk numbers probed: `\\.\PhysicalDrive0` to `\\.\PhysicalDrive63`.
const PROBE_DISKS: u32 = 64;
/// Largest output buffer any query here grows to.
const MAX_OUT: usize = 64 << 10;
/// `MAX_PATH` plus room: volume GUID names are 49 characters.
const NAME_LEN: usize = 1024;
/// `FSCTL_LOCK_VOLUME` attempts (Microsoft's sample retries a locked volume), 100 ms apart.
const LOCK_TRIES: u32 = 20;
/// `StorageDeviceProperty` and `StorageAccessAlignmentProperty` (winioctl.h
/// `STORAGE_PROPERTY_ID`).
const STORAGE_DEVICE_PROPERTY: u32 = 0;
const STORAGE_ACCESS_ALIGNMENT_PROPERTY: u32 = 6;

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn from_wide(w: &[u16]) -> String {
    let end = w.iter().position(|&c| c == 0).unwrap_or(w.len());
    String::from_utf16_lossy(&w[..end])
}

/// A handle for queries only (`CreateFileW`, fileapi.h, `dwDesiredAccess` 0), shared with
/// everyone.
fn open_query(path: &str) -> io::Result<File> {
    OpenOptions::new()
        .access_mode(0)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
        .open(path)
}

/// `DeviceIoControl` (ioapiset.h) with `input`, into a buffer grown on
/// ERROR_INSUFFICIENT_BUFFER / ERROR_MORE_DATA up to [`MAX_OUT`]; the bytes returned.
fn ioctl_bytes(f: &File, code: u32, input: &[u8], start: usize) -> io::Result<Vec<u8>> {
    let mut cap = start;
    loop {
        let mut out = vec![0u8; cap];
        // SAFETY: input and output are plain byte buffers of the lengths given.
        let r = unsafe {
            device_io_control(
                f,
                code,
                input.as_ptr().cast(),
                input.len(),
                out.as_mut_ptr().cast(),
                out.len(),
            )
        };
        match r {
            Ok(n) => {
                out.truncate(n as usize);
                return Ok(out);
            }
            Err(e)
                if cap < MAX_OUT
                    && matches!(
                        e.raw_os_error().map(|c| c as u32),
                        Some(ERROR_INSUFFICIENT_BUFFER | ERROR_MORE_DATA)
                    ) =>
            {
                cap = (cap * 4).max(256);
            }
            Err(e) => return Err(e),
        }
    }
}

/// `IOCTL_STORAGE_QUERY_PROPERTY` (winioctl.h) with a `STORAGE_PROPERTY_QUERY` of
/// `property` and `PropertyStandardQuery` (12 bytes: PropertyId, QueryType,
/// AdditionalParameters[1] padded).
fn query_property(f: &File, property: u32) -> io::Result<Vec<u8>> {
    let mut q = [0u8; 12];
    q[0..4].copy_from_slice(&property.to_le_bytes());
    ioctl_bytes(f, IOCTL_STORAGE_QUERY_PROPERTY, &q, 1024)
}

/// One disk, or `None` when `\\.\PhysicalDriveN` does not open or has no size (an empty
/// card reader: `IOCTL_DISK_GET_DRIVE_GEOMETRY_EX` fails with ERROR_NOT_READY).
fn disk(n: u32) -> Option<Disk> {
    let f = open_query(&format!(r"\\.\PhysicalDrive{n}")).ok()?;
    // IOCTL_DISK_GET_DRIVE_GEOMETRY_EX (winioctl.h, FILE_ANY_ACCESS): DISK_GEOMETRY_EX.
    let (size, sector) = ioctl_bytes(&f, IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, &[], 256)
        .ok()
        .and_then(|b| parse_geometry_ex(&b))?;
    if size == 0 {
        return None;
    }
    let descriptor = query_property(&f, STORAGE_DEVICE_PROPERTY)
        .ok()
        .and_then(|b| parse_device_descriptor(&b));
    let physical = query_property(&f, STORAGE_ACCESS_ALIGNMENT_PROPERTY)
        .ok()
        .and_then(|b| parse_access_alignment(&b))
        .map_or(sector, |(_, p)| p);
    // IOCTL_DISK_IS_WRITABLE (winioctl.h): fails with ERROR_WRITE_PROTECT when the medium
    // is write-protected (an SD card's switch).
    let read_only = matches!(
        ioctl_bytes(&f, IOCTL_DISK_IS_WRITABLE, &[], 0),
        Err(e) if e.raw_os_error() == Some(ERROR_WRITE_PROTECT as i32)
    );
    Some(Disk {
        number: n,
        size,
        sector_size: sector,
        physical_sector_size: physical,
        descriptor,
        read_only,
    })
}

/// Every volume's GUID name: `FindFirstVolumeW` / `FindNextVolumeW` / `FindVolumeClose`
/// (fileapi.h).
fn volume_names() -> io::Result<Vec<String>> {
    let mut buf = vec![0u16; NAME_LEN];
    // SAFETY: the buffer holds NAME_LEN wide characters.
    let h = unsafe { FindFirstVolumeW(buf.as_mut_ptr(), NAME_LEN as u32) };
    if h == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    let mut names = vec![from_wide(&buf)];
    loop {
        // SAFETY: as above, on the search handle.
        if unsafe { FindNextVolumeW(h, buf.as_mut_ptr(), NAME_LEN as u32) } == 0 {
            let e = io::Error::last_os_error();
            // SAFETY: closing the search handle once.
            unsafe { FindVolumeClose(h) };
            if e.raw_os_error() == Some(ERROR_NO_MORE_FILES as i32) {
                return Ok(names);
            }
            return Err(e);
        }
        names.push(from_wide(&buf));
        if names.len() > 4096 {
            // SAFETY: closing the search handle once.
            unsafe { FindVolumeClose(h) };
            return Ok(names);
        }
    }
}

/// A volume's mount points: `GetVolumePathNamesForVolumeNameW` (fileapi.h), a
/// `REG_MULTI_SZ`-style list, the buffer grown to the length it asks for.
fn mount_points(name: &str) -> Vec<String> {
    let w = wide(name);
    let mut len = 512u32;
    for _ in 0..4 {
        let mut buf = vec![0u16; len as usize];
        let mut need = 0u32;
        // SAFETY: the buffer holds `len` wide characters.
        let ok = unsafe {
            GetVolumePathNamesForVolumeNameW(w.as_ptr(), buf.as_mut_ptr(), len, &mut need)
        };
        if ok != 0 {
            return parse_multi_sz(&buf);
        }
        if io::Error::last_os_error().raw_os_error() != Some(ERROR_MORE_DATA as i32) {
            return Vec::new();
        }
        len = need.max(len.saturating_mul(2)).min(1 << 16);
    }
    Vec::new()
}

/// `QueryDosDeviceW` (fileapi.h) of `Volume{GUID}`: the NT device, `\Device\HarddiskVolumeN`.
fn nt_device(name: &str) -> Option<String> {
    let short = volume_device(name);
    let short = short.strip_prefix(r"\\?\")?;
    let w = wide(short);
    let mut buf = vec![0u16; NAME_LEN];
    // SAFETY: the buffer holds NAME_LEN wide characters.
    let n = unsafe { QueryDosDeviceW(w.as_ptr(), buf.as_mut_ptr(), NAME_LEN as u32) };
    (n > 0).then(|| from_wide(&buf))
}

/// Every volume with its disk extents (`IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS`, winioctl.h),
/// partition number (`IOCTL_STORAGE_GET_DEVICE_NUMBER`), mount points and NT device.
/// Volumes that answer no extents (optical drives, RAM disks) have none.
pub fn volumes() -> io::Result<Vec<Volume>> {
    Ok(volume_names()?
        .into_iter()
        .map(|name| {
            let f = open_query(&volume_device(&name)).ok();
            let extents = f
                .as_ref()
                .and_then(|f| {
                    ioctl_bytes(f, IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS, &[], 8 + 24 * 4).ok()
                })
                .map(|b| parse_disk_extents(&b))
                .unwrap_or_default();
            let partition_number = f
                .as_ref()
                .and_then(|f| ioctl_bytes(f, IOCTL_STORAGE_GET_DEVICE_NUMBER, &[], 12).ok())
                .and_then(|b| parse_device_number(&b))
                .map(|(_, p)| p)
                .filter(|&p| p != 0 && p != u32::MAX);
            Volume {
                nt_device: nt_device(&name),
                mountpoints: mount_points(&name),
                extents,
                partition_number,
                name,
            }
        })
        .collect())
}

/// The GUID name of the volume holding `path`: `GetVolumePathNameW` (its mount point),
/// then `GetVolumeNameForVolumeMountPointW` (fileapi.h).
fn volume_of(path: &str) -> Option<String> {
    let w = wide(path);
    let mut mp = vec![0u16; NAME_LEN];
    // SAFETY: the buffer holds NAME_LEN wide characters.
    if unsafe { GetVolumePathNameW(w.as_ptr(), mp.as_mut_ptr(), NAME_LEN as u32) } == 0 {
        return None;
    }
    let mut name = vec![0u16; NAME_LEN];
    // SAFETY: `mp` is NUL-terminated; the output holds NAME_LEN wide characters.
    if unsafe { GetVolumeNameForVolumeMountPointW(mp.as_ptr(), name.as_mut_ptr(), NAME_LEN as u32) }
        == 0
    {
        return None;
    }
    Some(from_wide(&name))
}

/// `RegGetValueW` (winreg.h) of `HKEY_LOCAL_MACHINE\key\value` with the type restriction
/// `flags`, as UTF-16 units.
fn registry(key: &str, value: &str, flags: u32) -> Option<Vec<u16>> {
    let (k, v) = (wide(key), wide(value));
    let mut bytes = 0u32;
    // SAFETY: a size query (no data buffer).
    let r = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            k.as_ptr(),
            v.as_ptr(),
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut bytes,
        )
    };
    if r != ERROR_SUCCESS || bytes as usize > MAX_OUT {
        return None;
    }
    let mut buf = vec![0u16; (bytes as usize).div_ceil(2) + 1];
    let mut len = (buf.len() * 2) as u32;
    // SAFETY: the buffer holds `len` bytes.
    let r = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            k.as_ptr(),
            v.as_ptr(),
            flags,
            std::ptr::null_mut(),
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != ERROR_SUCCESS {
        return None;
    }
    buf.truncate((len as usize / 2).min(buf.len()));
    Some(buf)
}

/// What holds the running system: the Windows directory (`GetSystemWindowsDirectoryW`,
/// sysinfoapi.h) and its volume; the system partition (`HKLM\SYSTEM\Setup`
/// `SystemPartition`, the NT device the boot manager is on); the page files
/// (`HKLM\SYSTEM\CurrentControlSet\Control\Session Manager\Memory Management`
/// `ExistingPageFiles`) and their volumes.
pub fn system_info() -> SystemInfo {
    let mut buf = vec![0u16; NAME_LEN];
    // SAFETY: the buffer holds NAME_LEN wide characters.
    let n = unsafe { GetSystemWindowsDirectoryW(buf.as_mut_ptr(), NAME_LEN as u32) };
    let windows_dir = (n > 0 && (n as usize) < NAME_LEN).then(|| from_wide(&buf));
    let windows_volume = windows_dir
        .as_deref()
        .and_then(|d| volume_of(&format!("{d}\\")));
    let system_partition = registry(r"SYSTEM\Setup", "SystemPartition", RRF_RT_REG_SZ)
        .map(|w| from_wide(&w))
        .filter(|s| !s.is_empty());
    let pagefiles = registry(
        r"SYSTEM\CurrentControlSet\Control\Session Manager\Memory Management",
        "ExistingPageFiles",
        RRF_RT_REG_MULTI_SZ,
    )
    .map(|w| parse_multi_sz(&w))
    .unwrap_or_default()
    .iter()
    .filter_map(|e| logic::pagefile_path(e))
    .filter_map(|f| Some((volume_of(&f)?, f)))
    .collect();
    SystemInfo {
        windows_dir,
        windows_volume,
        system_partition,
        pagefiles,
    }
}

/// The drive listing on Windows (see [`crate::drives::list`]). A volume enumeration that
/// fails (wine without a volume manager) leaves every disk without volumes, and so every
/// disk a system disk (the Windows directory's volume is on no known disk).
pub fn list_drives() -> Result<Vec<Drive>> {
    let vols = volumes().unwrap_or_default();
    let mut numbers: Vec<u32> = (0..PROBE_DISKS).collect();
    for v in &vols {
        for e in &v.extents {
            if e.disk <= logic::MAX_DISK_NUMBER && !numbers.contains(&e.disk) {
                numbers.push(e.disk);
            }
        }
    }
    let disks: Vec<Disk> = numbers.into_iter().filter_map(disk).collect();
    Ok(logic::assemble(disks, &vols, &system_info()))
}

/// The volumes of a disk held offline while it is written: each opened for reading and
/// writing, locked (`FSCTL_LOCK_VOLUME`) and dismounted (`FSCTL_DISMOUNT_VOLUME`,
/// winioctl.h). The handles stay open as long as this lives (closing them unlocks, and
/// Windows mounts what the disk then holds); while locked, no one else can open files on
/// the volumes and Windows lets sectors inside them be written.
#[derive(Debug, Default)]
pub struct VolumeLocks {
    held: Vec<File>,
}

/// `FSCTL_LOCK_VOLUME`, retried while ERROR_ACCESS_DENIED (files open on the volume),
/// then `FSCTL_DISMOUNT_VOLUME`. With `force`, a volume that will not lock is dismounted
/// anyway (its open handles become invalid).
fn lock_and_dismount(f: &File, force: bool) -> io::Result<()> {
    let call = |code: u32| {
        // SAFETY: no buffers.
        unsafe { device_io_control(f, code, std::ptr::null(), 0, std::ptr::null_mut(), 0) }
    };
    let mut locked = call(FSCTL_LOCK_VOLUME);
    for _ in 1..LOCK_TRIES {
        if locked.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        locked = call(FSCTL_LOCK_VOLUME);
    }
    if let Err(e) = locked {
        if !force {
            return Err(e);
        }
    }
    call(FSCTL_DISMOUNT_VOLUME).map(drop)
}

fn open_rw(path: &str, unbuffered: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true)
        .write(true)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE);
    if unbuffered {
        o.custom_flags(FILE_FLAG_NO_BUFFERING | FILE_FLAG_WRITE_THROUGH);
    }
    o.open(path)
}

/// Lock and dismount every volume with an extent on disk `disk`. A volume that does not
/// open (no administrator rights) fails with [`Error::Io`], one that does not lock (files
/// open on it) with [`Error::DriveBusy`]; a volume list that cannot be read fails too
/// (nothing would say which volumes to take offline).
pub fn lock_disk_volumes(path: &Path, disk: u32, force: bool) -> Result<VolumeLocks> {
    let vols = volumes().map_err(|e| IoError::new("FindFirstVolumeW", e).with_path(path))?;
    let mut locks = VolumeLocks::default();
    for v in vols
        .iter()
        .filter(|v| v.extents.iter().any(|e| e.disk == disk))
    {
        let dev = volume_device(&v.name);
        let f = open_rw(&dev, false)
            .map_err(|e| Error::Io(IoError::new("CreateFileW", e).with_path(Path::new(&dev))))?;
        lock_and_dismount(&f, force).map_err(|e| busy(path, &dev, e))?;
        locks.held.push(f);
    }
    Ok(locks)
}

fn busy(path: &Path, what: &str, e: io::Error) -> Error {
    Error::DriveBusy {
        path: path.to_path_buf(),
        reason: format!("cannot lock and dismount {what}: {e}"),
        errno: e.raw_os_error(),
    }
}

/// A disk or volume opened for writing with `FILE_FLAG_NO_BUFFERING |
/// FILE_FLAG_WRITE_THROUGH` (fileapi.h `CreateFileW`): every transfer must be
/// sector-aligned, which [`SectorAligned`] around it guarantees. Holds the
/// [`VolumeLocks`] for as long as it lives.
#[derive(Debug)]
pub struct RawDevice {
    file: File,
    path: PathBuf,
    size: u64,
    /// A whole disk: its partition table may have changed.
    disk: bool,
    _locks: VolumeLocks,
}

impl Drop for RawDevice {
    /// A disk's new partition table is read by Windows only when asked:
    /// `IOCTL_DISK_UPDATE_PROPERTIES` (winioctl.h), once the writing and reading back are
    /// over and before the volume locks are released (the fields drop after this), so the
    /// new volumes mount when the old ones are let go. Failure only delays that.
    fn drop(&mut self) {
        if self.disk {
            // SAFETY: no buffers.
            let _ = unsafe {
                device_io_control(
                    &self.file,
                    IOCTL_DISK_UPDATE_PROPERTIES,
                    std::ptr::null(),
                    0,
                    std::ptr::null_mut(),
                    0,
                )
            };
        }
    }
}

impl Storage for RawDevice {
    fn size(&self) -> std::result::Result<u64, IoError> {
        Ok(self.size)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::result::Result<usize, IoError> {
        if offset >= self.size {
            return Ok(0);
        }
        let n = buf.len().min((self.size - offset) as usize);
        self.file
            .read_at(&mut buf[..n], offset)
            .map_err(|e| IoError::new("ReadFile", e).with_path(&self.path).at(offset))
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::result::Result<usize, IoError> {
        if offset.saturating_add(buf.len() as u64) > self.size {
            return Err(
                IoError::from_errno("WriteFile", sparsekit_io::errno::ENOSPC)
                    .with_path(&self.path)
                    .at(offset),
            );
        }
        self.file.write_at(buf, offset).map_err(|e| {
            IoError::new("WriteFile", e)
                .with_path(&self.path)
                .at(offset)
        })
    }
    /// `FlushFileBuffers` (fileapi.h).
    fn flush(&self) -> std::result::Result<(), IoError> {
        self.file
            .sync_all()
            .map_err(|e| IoError::new("FlushFileBuffers", e).with_path(&self.path))
    }
    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }
}

/// Open a disk or volume destination for writing, after [`crate::drives::check_destination`]
/// passed: a disk's volumes are locked and dismounted first (busy volumes fail with
/// [`Error::DriveBusy`] unless `safety.force`); a drive-letter or GUID volume is opened,
/// locked and dismounted through the handle that writes it, with
/// `FSCTL_ALLOW_EXTENDED_DASD_IO` (winioctl.h) so its last sectors (past the file
/// system's end) can be written. The size is `IOCTL_DISK_GET_LENGTH_INFO`, the sector size
/// the listing's (`DISK_GEOMETRY.BytesPerSector`).
pub fn open_device(
    path: &Path,
    dev: &DevicePath,
    safety: Safety,
) -> Result<SectorAligned<RawDevice>> {
    let io = |op: &'static str, e: io::Error| Error::Io(IoError::new(op, e).with_path(path));
    let (file, locks, sector) = match dev {
        DevicePath::Disk(n) => {
            let locks = lock_disk_volumes(path, *n, safety.force)?;
            let f = open_rw(&format!(r"\\.\PhysicalDrive{n}"), true)
                .map_err(|e| io("CreateFileW", e))?;
            let sector = ioctl_bytes(&f, IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, &[], 256)
                .ok()
                .and_then(|b| parse_geometry_ex(&b))
                .map_or(4096, |(_, s)| s);
            (f, locks, sector)
        }
        DevicePath::Letter(_) | DevicePath::Volume(_) => {
            let p = match dev {
                DevicePath::Letter(c) => format!(r"\\.\{c}:"),
                DevicePath::Volume(g) => format!(r"\\?\{g}"),
                _ => unreachable!(),
            };
            let f = open_rw(&p, true).map_err(|e| io("CreateFileW", e))?;
            lock_and_dismount(&f, safety.force).map_err(|e| busy(path, &p, e))?;
            // SAFETY: no buffers.
            unsafe {
                device_io_control(
                    &f,
                    FSCTL_ALLOW_EXTENDED_DASD_IO,
                    std::ptr::null(),
                    0,
                    std::ptr::null_mut(),
                    0,
                )
            }
            .map_err(|e| io("DeviceIoControl(FSCTL_ALLOW_EXTENDED_DASD_IO)", e))?;
            let sector = sparsekit_io::sys::block_sizes(&f).map_or(4096, |(l, _)| l);
            (f, VolumeLocks::default(), sector)
        }
        DevicePath::Other(name) => {
            return Err(Error::Unsupported {
                what: format!("writing to the device '{name}'"),
            })
        }
    };
    let size = sparsekit_io::sys::block_device_size(&file)
        .map_err(|e| io("DeviceIoControl(IOCTL_DISK_GET_LENGTH_INFO)", e))?;
    Ok(SectorAligned::new(
        RawDevice {
            file,
            path: path.to_path_buf(),
            size,
            disk: matches!(dev, DevicePath::Disk(_)),
            _locks: locks,
        },
        sector,
        true,
    ))
}
