//! The OS calls of the Windows drive listing and of writing a disk: each returns what the
//! OS answered (bytes, names, handles); the logic that reads them is
//! [`crate::windows`], tested on every OS. Every call cites its header
//! (learn.microsoft.com, Win32 API).
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
    IOCTL_STORAGE_EJECT_MEDIA, IOCTL_STORAGE_GET_DEVICE_NUMBER, IOCTL_STORAGE_MEDIA_REMOVAL,
    IOCTL_STORAGE_QUERY_PROPERTY,
};
use windows_sys::Win32::System::Registry::{
    RegGetValueW, HKEY_LOCAL_MACHINE, RRF_RT_REG_MULTI_SZ, RRF_RT_REG_SZ,
};
use windows_sys::Win32::System::SystemInformation::GetSystemWindowsDirectoryW;

use sparsekit_io::sys::{device_io_control, FileExt as _};
use sparsekit_io::{IoError, Storage};

/// Largest output buffer any query here grows to.
pub const MAX_OUT: usize = 64 << 10;
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
pub fn open_query(path: &str) -> io::Result<File> {
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

/// `IOCTL_DISK_GET_DRIVE_GEOMETRY_EX` (winioctl.h, `FILE_ANY_ACCESS`): a
/// `DISK_GEOMETRY_EX`. Fails with ERROR_NOT_READY for an empty card reader.
pub fn geometry_ex(f: &File) -> io::Result<Vec<u8>> {
    ioctl_bytes(f, IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, &[], 256)
}

/// `IOCTL_STORAGE_QUERY_PROPERTY` of `StorageDeviceProperty`: a
/// `STORAGE_DEVICE_DESCRIPTOR` (winioctl.h).
pub fn device_descriptor(f: &File) -> io::Result<Vec<u8>> {
    query_property(f, STORAGE_DEVICE_PROPERTY)
}

/// `IOCTL_STORAGE_QUERY_PROPERTY` of `StorageAccessAlignmentProperty`: a
/// `STORAGE_ACCESS_ALIGNMENT_DESCRIPTOR` (winioctl.h).
pub fn access_alignment(f: &File) -> io::Result<Vec<u8>> {
    query_property(f, STORAGE_ACCESS_ALIGNMENT_PROPERTY)
}

/// `IOCTL_DISK_IS_WRITABLE` (winioctl.h): fails with ERROR_WRITE_PROTECT when the medium
/// is write-protected (an SD card's switch).
pub fn write_protected(f: &File) -> bool {
    matches!(
        ioctl_bytes(f, IOCTL_DISK_IS_WRITABLE, &[], 0),
        Err(e) if e.raw_os_error() == Some(ERROR_WRITE_PROTECT as i32)
    )
}

/// `IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS` (winioctl.h): a `VOLUME_DISK_EXTENTS`.
pub fn volume_disk_extents(f: &File) -> io::Result<Vec<u8>> {
    ioctl_bytes(f, IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS, &[], 8 + 24 * 4)
}

/// `IOCTL_STORAGE_GET_DEVICE_NUMBER` (winioctl.h): a `STORAGE_DEVICE_NUMBER`.
pub fn device_number(f: &File) -> io::Result<Vec<u8>> {
    ioctl_bytes(f, IOCTL_STORAGE_GET_DEVICE_NUMBER, &[], 12)
}

/// Every volume's GUID name: `FindFirstVolumeW` / `FindNextVolumeW` / `FindVolumeClose`
/// (fileapi.h).
pub fn volume_names() -> io::Result<Vec<String>> {
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
/// `REG_MULTI_SZ`-style list as UTF-16 units (empty on failure), the buffer grown to the
/// length it asks for.
pub fn volume_path_names(name: &str) -> Vec<u16> {
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
            return buf;
        }
        if io::Error::last_os_error().raw_os_error() != Some(ERROR_MORE_DATA as i32) {
            return Vec::new();
        }
        len = need.max(len.saturating_mul(2)).min(1 << 16);
    }
    Vec::new()
}

/// `QueryDosDeviceW` (fileapi.h) of a DOS device name (`Volume{GUID}`): the NT device,
/// `\\Device\\HarddiskVolumeN`.
pub fn query_dos_device(short: &str) -> Option<String> {
    let w = wide(short);
    let mut buf = vec![0u16; NAME_LEN];
    // SAFETY: the buffer holds NAME_LEN wide characters.
    let n = unsafe { QueryDosDeviceW(w.as_ptr(), buf.as_mut_ptr(), NAME_LEN as u32) };
    (n > 0).then(|| from_wide(&buf))
}

/// The GUID name of the volume holding `path`: `GetVolumePathNameW` (its mount point),
/// then `GetVolumeNameForVolumeMountPointW` (fileapi.h).
pub fn volume_of(path: &str) -> Option<String> {
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
pub fn registry(key: &str, value: &str, flags: u32) -> Option<Vec<u16>> {
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

/// `HKEY_LOCAL_MACHINE\\key\\value` as a string (`REG_SZ`).
pub fn registry_sz(key: &str, value: &str) -> Option<String> {
    registry(key, value, RRF_RT_REG_SZ).map(|w| from_wide(&w))
}

/// `HKEY_LOCAL_MACHINE\\key\\value` of type `REG_MULTI_SZ`, as UTF-16 units.
pub fn registry_multi_sz(key: &str, value: &str) -> Option<Vec<u16>> {
    registry(key, value, RRF_RT_REG_MULTI_SZ)
}

/// The Windows directory: `GetSystemWindowsDirectoryW` (sysinfoapi.h).
pub fn windows_directory() -> Option<String> {
    let mut buf = vec![0u16; NAME_LEN];
    // SAFETY: the buffer holds NAME_LEN wide characters.
    let n = unsafe { GetSystemWindowsDirectoryW(buf.as_mut_ptr(), NAME_LEN as u32) };
    (n > 0 && (n as usize) < NAME_LEN).then(|| from_wide(&buf))
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

impl VolumeLocks {
    /// Keep `f` (a locked volume's handle) open as long as this lives.
    pub fn hold(&mut self, f: File) {
        self.held.push(f);
    }
}

/// `FSCTL_LOCK_VOLUME`, retried while ERROR_ACCESS_DENIED (files open on the volume),
/// then `FSCTL_DISMOUNT_VOLUME`. With `force`, a volume that will not lock is dismounted
/// anyway (its open handles become invalid).
pub fn lock_and_dismount(f: &File, force: bool) -> io::Result<()> {
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

/// A disk or volume opened for reading and writing (`CreateFileW`, fileapi.h), shared
/// for reading and writing; `unbuffered`: `FILE_FLAG_NO_BUFFERING |
/// FILE_FLAG_WRITE_THROUGH`.
pub fn open_rw(path: &str, unbuffered: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true)
        .write(true)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE);
    if unbuffered {
        o.custom_flags(FILE_FLAG_NO_BUFFERING | FILE_FLAG_WRITE_THROUGH);
    }
    o.open(path)
}

/// `FSCTL_ALLOW_EXTENDED_DASD_IO` (winioctl.h): let a volume handle reach the sectors
/// past the file system's end.
pub fn allow_extended_dasd_io(f: &File) -> io::Result<()> {
    // SAFETY: no buffers.
    unsafe {
        device_io_control(
            f,
            FSCTL_ALLOW_EXTENDED_DASD_IO,
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
            0,
        )
    }
    .map(drop)
}

/// A disk or volume opened for writing with `FILE_FLAG_NO_BUFFERING |
/// FILE_FLAG_WRITE_THROUGH` (fileapi.h `CreateFileW`): every transfer must be
/// sector-aligned, which [`crate::SectorAligned`] around it guarantees. Holds the
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

impl RawDevice {
    /// `file` (opened by [`open_rw`]) of `size` bytes, written as `path`; `disk`: a whole
    /// disk (its partition table is re-read when dropped); `locks` are held until then.
    pub fn new(file: File, path: PathBuf, size: u64, disk: bool, locks: VolumeLocks) -> Self {
        RawDevice {
            file,
            path,
            size,
            disk,
            _locks: locks,
        }
    }
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

/// Flush and eject the disk `\\.\PhysicalDriveN` (after a flash): `FlushFileBuffers`
/// (fileapi.h), `IOCTL_STORAGE_MEDIA_REMOVAL` with `PreventMediaRemoval` FALSE (a
/// `PREVENT_MEDIA_REMOVAL`, one BOOLEAN; a device that knows no removal lock refuses it,
/// which is ignored), then `IOCTL_STORAGE_EJECT_MEDIA` (winioctl.h). The failed call's name
/// with the error.
pub fn eject_disk(n: u32) -> Result<(), (&'static str, io::Error)> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
        .open(format!(r"\\.\PhysicalDrive{n}"))
        .map_err(|e| ("CreateFileW", e))?;
    f.sync_all().map_err(|e| ("FlushFileBuffers", e))?;
    let allow = [0u8; 1];
    // SAFETY: the input is one BOOLEAN (PREVENT_MEDIA_REMOVAL); no output.
    let _ = unsafe {
        device_io_control(
            &f,
            IOCTL_STORAGE_MEDIA_REMOVAL,
            allow.as_ptr().cast(),
            allow.len(),
            std::ptr::null_mut(),
            0,
        )
    };
    // SAFETY: no input, no output.
    unsafe {
        device_io_control(
            &f,
            IOCTL_STORAGE_EJECT_MEDIA,
            std::ptr::null(),
            0,
            std::ptr::null_mut(),
            0,
        )
    }
    .map(|_| ())
    .map_err(|e| ("DeviceIoControl(IOCTL_STORAGE_EJECT_MEDIA)", e))
}
