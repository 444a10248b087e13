//! The one place where core errors become JS errors: [`Failure::from_core`] builds every
//! one from a core crate's [`ErrorInfo`].
//!
//! Every rejection is a JS `Error` with `code` (the errno name such as `ENOENT` for OS errors,
//! `ERR_SPARSEKIT_*` otherwise) and, when known, `errno` (negative, as Node's fs does),
//! `syscall` (the failed OS call), `path`, `offset` and `range` (`{ start, length }` when a
//! byte range is at fault). `ERR_INVALID_ARG_VALUE` is a `TypeError` and `ERR_OUT_OF_RANGE`
//! a `RangeError`, as in Node.

use napi::bindgen_prelude::*;
use napi::JsValue;

/// A failure on its way to JS: built on the worker thread, turned into a JS object on the
/// main thread by [`Failure::into_napi`].
#[derive(Debug, Clone)]
pub struct Failure {
    pub code: String,
    pub message: String,
    pub errno: Option<i32>,
    pub path: Option<String>,
    pub offset: Option<u64>,
    pub syscall: Option<&'static str>,
    pub range: Option<(u64, u64)>,
    pub kind: FailureKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Error,
    TypeError,
    RangeError,
}

/// The contract every core crate's error implements (`code`, errno, `path`, `offset`,
/// `syscall`, `range`): [`Failure::from_core`] turns any of them into a JS error.
pub use sparsekit_io::ErrorInfo;

impl Failure {
    /// A failure with `code`; its class follows from the code (Node's conventions).
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Failure {
            code: code.to_string(),
            message: message.into(),
            errno: None,
            path: None,
            offset: None,
            syscall: None,
            range: None,
            kind: kind_of(code),
        }
    }

    pub fn aborted() -> Self {
        Failure::new("ERR_SPARSEKIT_ABORTED", "the operation was aborted")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Failure::new("ERR_SPARSEKIT_INTERNAL", message)
    }

    pub fn invalid_value(message: impl Into<String>) -> Self {
        Failure::new("ERR_INVALID_ARG_VALUE", message)
    }

    pub fn out_of_range(message: impl Into<String>) -> Self {
        Failure::new("ERR_OUT_OF_RANGE", message)
    }

    /// OS errors keep their errno name as `code`; everything else uses the crate's code.
    pub fn from_core<E: ErrorInfo + ?Sized>(e: &E) -> Self {
        let errno = e.raw_os_error();
        // A plain OS failure is known by its errno name; our own codes (UNSUPPORTED,
        // OUT_OF_RANGE, ...) win even when an errno explains them, and keep `errno`.
        let name = errno
            .and_then(errno_name)
            .filter(|_| e.code() == "ERR_SPARSEKIT_IO");
        let code = name.clone().unwrap_or_else(|| e.code().to_string());
        let message = match name {
            Some(name) => format!("{name}: {e}"),
            None => e.to_string(),
        };
        Failure {
            kind: kind_of(&code),
            code,
            message,
            errno,
            path: e.path().map(|p| p.to_string_lossy().into_owned()),
            offset: e.offset(),
            syscall: e.syscall().filter(|_| errno.is_some()),
            range: e.range(),
        }
    }

    /// Build the JS error object and wrap it so napi-rs throws or rejects with it as is.
    pub fn into_napi(self, env: &Env) -> Error {
        match self.build(env) {
            Ok(e) => e,
            Err(e) => e,
        }
    }

    fn build(self, env: &Env) -> Result<Error> {
        let mut obj = match self.kind {
            FailureKind::Error => {
                env.create_error(Error::new(Status::GenericFailure, self.message))?
            }
            FailureKind::TypeError => {
                let js = JsTypeError::from(Error::new(Status::InvalidArg, self.message));
                Object::from_unknown(js.into_unknown(*env))?
            }
            FailureKind::RangeError => {
                let js = JsRangeError::from(Error::new(Status::InvalidArg, self.message));
                Object::from_unknown(js.into_unknown(*env))?
            }
        };
        obj.set("code", self.code)?;
        if let Some(errno) = self.errno {
            obj.set("errno", -errno)?;
        }
        if let Some(path) = self.path {
            obj.set("path", path)?;
        }
        if let Some(offset) = self.offset {
            obj.set("offset", offset as f64)?;
        }
        if let Some(syscall) = self.syscall {
            obj.set("syscall", syscall)?;
        }
        if let Some((start, length)) = self.range {
            let mut r = Object::new(env)?;
            r.set("start", start as f64)?;
            r.set("length", length as f64)?;
            obj.set("range", r)?;
        }
        Ok(Error::from(obj.to_unknown()))
    }
}

/// Node's class for a code: argument values are `TypeError`s, ranges `RangeError`s.
fn kind_of(code: &str) -> FailureKind {
    match code {
        "ERR_INVALID_ARG_VALUE" | "ERR_INVALID_ARG_TYPE" => FailureKind::TypeError,
        "ERR_OUT_OF_RANGE" => FailureKind::RangeError,
        _ => FailureKind::Error,
    }
}

/// `ENOENT` for 2, and so on: the names Node uses in `err.code`.
#[cfg(unix)]
pub fn errno_name(errno: i32) -> Option<String> {
    let e = nix::errno::Errno::from_raw(errno);
    if e == nix::errno::Errno::UnknownErrno {
        return None;
    }
    // Linux defines EOPNOTSUPP == ENOTSUP; Node calls it ENOTSUP.
    let name = format!("{e:?}");
    Some(if name == "EOPNOTSUPP" {
        "ENOTSUP".to_string()
    } else {
        name
    })
}

/// Windows: the name Node gives a Win32 error (winerror.h), exactly as libuv's
/// `uv_translate_sys_error` (src/win/error.c) does, e.g. `ERROR_FILE_NOT_FOUND` is
/// `ENOENT` and `ERROR_BROKEN_PIPE` is `EOF`. Three errors libuv leaves unnamed get the
/// names of the errno values the core crates make them for (`sparsekit_io::errno`):
/// `ERROR_SEEK_ON_DEVICE` `ESPIPE`, `ERROR_FILE_TOO_LARGE` `EFBIG`,
/// `ERROR_CALL_NOT_IMPLEMENTED` `ENOSYS`. Any other code keeps `ERR_SPARSEKIT_IO` with the
/// system's message.
#[cfg(windows)]
pub fn errno_name(code: i32) -> Option<String> {
    use windows_sys::Win32::Foundation::*;
    let Ok(code) = u32::try_from(code) else {
        return None;
    };
    let name = match code {
        ERROR_NOACCESS
        | ERROR_ELEVATION_REQUIRED
        | ERROR_CANT_ACCESS_FILE
        | ERROR_ACCESS_DENIED => "EACCES",
        ERROR_INVALID_FLAGS | ERROR_INVALID_HANDLE => "EBADF",
        ERROR_LOCK_VIOLATION | ERROR_PIPE_BUSY | ERROR_SHARING_VIOLATION => "EBUSY",
        ERROR_OPERATION_ABORTED => "ECANCELED",
        ERROR_NO_UNICODE_TRANSLATION => "ECHARSET",
        ERROR_ALREADY_EXISTS | ERROR_FILE_EXISTS => "EEXIST",
        ERROR_BUFFER_OVERFLOW => "EFAULT",
        ERROR_INSUFFICIENT_BUFFER
        | ERROR_INVALID_DATA
        | ERROR_INVALID_PARAMETER
        | ERROR_SYMLINK_NOT_SUPPORTED => "EINVAL",
        ERROR_BEGINNING_OF_MEDIA
        | ERROR_BUS_RESET
        | ERROR_CRC
        | ERROR_DEVICE_DOOR_OPEN
        | ERROR_DEVICE_REQUIRES_CLEANING
        | ERROR_DISK_CORRUPT
        | ERROR_EOM_OVERFLOW
        | ERROR_FILEMARK_DETECTED
        | ERROR_GEN_FAILURE
        | ERROR_INVALID_BLOCK_LENGTH
        | ERROR_IO_DEVICE
        | ERROR_NO_DATA_DETECTED
        | ERROR_NO_SIGNAL_SENT
        | ERROR_OPEN_FAILED
        | ERROR_SETMARK_DETECTED
        | ERROR_SIGNAL_REFUSED => "EIO",
        ERROR_CANT_RESOLVE_FILENAME => "ELOOP",
        ERROR_TOO_MANY_OPEN_FILES => "EMFILE",
        ERROR_FILENAME_EXCED_RANGE => "ENAMETOOLONG",
        ERROR_BAD_PATHNAME
        | ERROR_DIRECTORY
        | ERROR_ENVVAR_NOT_FOUND
        | ERROR_FILE_NOT_FOUND
        | ERROR_INVALID_NAME
        | ERROR_INVALID_DRIVE
        | ERROR_INVALID_REPARSE_DATA
        | ERROR_MOD_NOT_FOUND
        | ERROR_PATH_NOT_FOUND => "ENOENT",
        ERROR_NOT_ENOUGH_MEMORY | ERROR_OUTOFMEMORY => "ENOMEM",
        ERROR_CANNOT_MAKE
        | ERROR_DISK_FULL
        | ERROR_EA_TABLE_FULL
        | ERROR_END_OF_MEDIA
        | ERROR_HANDLE_DISK_FULL => "ENOSPC",
        ERROR_NOT_CONNECTED => "ENOTCONN",
        ERROR_DIR_NOT_EMPTY => "ENOTEMPTY",
        ERROR_NOT_SUPPORTED => "ENOTSUP",
        ERROR_BROKEN_PIPE => "EOF",
        ERROR_PRIVILEGE_NOT_HELD => "EPERM",
        ERROR_BAD_PIPE | ERROR_NO_DATA | ERROR_PIPE_NOT_CONNECTED => "EPIPE",
        ERROR_WRITE_PROTECT => "EROFS",
        ERROR_SEM_TIMEOUT => "ETIMEDOUT",
        ERROR_NOT_SAME_DEVICE => "EXDEV",
        ERROR_INVALID_FUNCTION => "EISDIR",
        ERROR_META_EXPANSION_TOO_LONG => "E2BIG",
        // Not libuv's: the errno values sparsekit_io::errno stands for.
        ERROR_SEEK_ON_DEVICE => "ESPIPE",
        ERROR_FILE_TOO_LARGE => "EFBIG",
        ERROR_CALL_NOT_IMPLEMENTED => "ENOSYS",
        _ => return None,
    };
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names_match_node() {
        assert_eq!(errno_name(2).as_deref(), Some("ENOENT"));
        assert_eq!(errno_name(21).as_deref(), Some("EISDIR"));
        assert_eq!(errno_name(28).as_deref(), Some("ENOSPC"));
        assert_eq!(errno_name(95).as_deref(), Some("ENOTSUP"));
        assert_eq!(errno_name(100_000), None);
    }

    #[test]
    fn own_codes_win_over_errno() {
        let e = sparsekit_extents::map_path(
            std::path::Path::new("/proc/self/status"),
            &sparsekit_extents::MapOptions {
                method: sparsekit_extents::Method::Fiemap,
                ..Default::default()
            },
        )
        .unwrap_err();
        let f = Failure::from_core(&e);
        assert_eq!(f.code, "ERR_SPARSEKIT_UNSUPPORTED", "{f:?}");
        let missing =
            sparsekit_extents::map_path(std::path::Path::new("/nonexistent"), &Default::default())
                .unwrap_err();
        let f = Failure::from_core(&missing);
        assert_eq!((f.code.as_str(), f.errno), ("ENOENT", Some(2)));
        assert!(f.message.starts_with("ENOENT: "), "{}", f.message);
        assert_eq!(f.path.as_deref(), Some("/nonexistent"));
        assert_eq!(f.syscall, Some("open"));
    }
}
