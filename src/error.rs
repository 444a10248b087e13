//! The one place where core errors become JS errors.
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

/// What every core crate's error type offers (see each crate's `Error`).
pub trait CoreError: std::fmt::Display {
    fn raw_os_error(&self) -> Option<i32>;
    fn code(&self) -> &'static str;
    fn path(&self) -> Option<&std::path::Path>;
    fn offset(&self) -> Option<u64>;
    fn syscall(&self) -> Option<&'static str> {
        None
    }
    fn range(&self) -> Option<(u64, u64)> {
        None
    }
}

macro_rules! core_error {
    ($($t:ty),*) => {$(
        impl CoreError for $t {
            fn raw_os_error(&self) -> Option<i32> { <$t>::raw_os_error(self) }
            fn code(&self) -> &'static str { <$t>::code(self) }
            fn path(&self) -> Option<&std::path::Path> { <$t>::path(self) }
            fn offset(&self) -> Option<u64> { <$t>::offset(self) }
            fn syscall(&self) -> Option<&'static str> { <$t>::syscall(self) }
            fn range(&self) -> Option<(u64, u64)> { <$t>::range(self) }
        }
    )*};
}
core_error!(
    sparsekit_blocksync::Error,
    sparsekit_bmap::Error,
    sparsekit_digest::Error,
    sparsekit_extents::Error,
    sparsekit_flash::Error,
    sparsekit_sparse_copy::Error,
    sparsekit_qcow2::Error
);

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
    pub fn from_core<E: CoreError>(e: &E) -> Self {
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

/// Windows: the name Node (libuv's `uv_translate_sys_error`) gives a Win32 error code
/// (`ERROR_FILE_NOT_FOUND` 2 is `ENOENT`, ...); codes that are no Win32 error sparsekit
/// meets are the C runtime's errno values the core crates make themselves (EISDIR 21,
/// ESPIPE 29, ENOSYS 40, EOPNOTSUPP 130).
#[cfg(windows)]
pub fn errno_name(code: i32) -> Option<String> {
    let name = match code {
        2 | 3 | 15 | 123 | 161 => "ENOENT", // FILE/PATH_NOT_FOUND, INVALID_DRIVE/NAME, BAD_PATHNAME
        5 => "EPERM",                       // ACCESS_DENIED
        6 => "EBADF",                       // INVALID_HANDLE
        8 | 14 => "ENOMEM",                 // NOT_ENOUGH_MEMORY, OUTOFMEMORY
        1 => "EISDIR",                      // INVALID_FUNCTION (libuv's reading)
        17 => "EXDEV",                      // NOT_SAME_DEVICE
        19 => "EROFS",                      // WRITE_PROTECT
        23 | 1117 => "EIO",                 // CRC, IO_DEVICE
        32 | 33 | 170 => "EBUSY",           // SHARING/LOCK_VIOLATION, BUSY
        39 | 112 => "ENOSPC",               // HANDLE_DISK_FULL, DISK_FULL
        50 => "ENOTSUP",                    // NOT_SUPPORTED
        80 | 183 => "EEXIST",               // FILE_EXISTS, ALREADY_EXISTS
        87 => "EINVAL",                     // INVALID_PARAMETER
        109 | 232 => "EPIPE",               // BROKEN_PIPE, NO_DATA
        145 => "ENOTEMPTY",                 // DIR_NOT_EMPTY
        206 => "ENAMETOOLONG",              // FILENAME_EXCED_RANGE
        267 => "ENOTDIR",                   // DIRECTORY
        21 => "EISDIR",
        22 => "EINVAL",
        27 => "EFBIG",
        28 => "ENOSPC",
        29 => "ESPIPE",
        40 => "ENOSYS",
        130 => "ENOTSUP",
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
