//! Glue for sparsekit-blocksync: the three sides of the blockcopy protocol over streams
//! (descriptors of pipes the TS layer joins to Node streams, or on Windows the paths of
//! named pipes it listens on; or the CLI's stdin/stdout), and
//! `syncFiles` for a local pair.

// `Failure` is what every glue function returns as its error, boxed or not by job.rs.
#![allow(clippy::result_large_err)]

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;

use napi::bindgen_prelude::*;
use sparsekit_blocksync::sys::{dup_fd, into_fd, open_pipe, pipe, StreamReader, StreamWriter};
use sparsekit_blocksync::{
    checksum, hole_map, open_checksum_input, retrieve, save, sync_files as sync_local,
    ChecksumInput, ChecksumOptions, OpenedInput, ResumeState, RetrieveOptions, SaveOptions,
};
use sparsekit_drives::{self as drives, Safety};
use sparsekit_io::{errno, FileStorage, IoError};

use crate::error::Failure;
use crate::job::{opt_u64, path_arg, spawn, sync_call, to_f64, CancelToken, ProgressFn};

#[napi(object)]
#[derive(Default)]
pub struct NativeSyncOptions {
    /// checksum: first byte hashed.
    pub start: Option<f64>,
    /// checksum: hash up to here; no `rest` is sent.
    pub end: Option<f64>,
    /// checksum: read the destination from this descriptor (a pipe) instead of `dst`.
    pub input_fd: Option<i32>,
    /// retrieve, files: send compressible blocks as `dlzm`.
    pub lzma: Option<bool>,
    /// all: the `--blake3` extension (every side must opt in).
    pub blake3: Option<bool>,
    /// all: the hole-aware extension (every side must opt in).
    pub holes: Option<bool>,
    /// retrieve, save, files: the zstd extension (`dzst` records).
    pub zstd: Option<bool>,
    /// retrieve, save, files: the truncate extension (save makes dst the source's size).
    pub truncate: Option<bool>,
    /// checksum, save: the resume journal (the resume extension; given, it turns resume
    /// on). checksum: default `dst + '.sksync-resume'` when `resume` is set and `dst` is a
    /// file or device; a pipe needs it named.
    pub journal: Option<String>,
    /// retrieve, checksum: the resume extension.
    pub resume: Option<bool>,
}

#[napi(object)]
pub struct NativeSyncResult {
    /// Blocks hashed (checksum), sent (retrieve) or written (save, files).
    pub blocks: f64,
    /// Bytes hashed (checksum), sent before compression (retrieve) or written (save, files).
    pub bytes: f64,
    /// Bytes of the stream written (checksum, retrieve) or read (save); for files, the
    /// block stream.
    pub stream_bytes: f64,
}

/// A pipe for one job: `[readFd, writeFd]`, both close-on-exec and non-blocking. The caller
/// owns both and hands one end to `net.Socket`, the other to a job (which duplicates it).
#[napi]
pub fn sync_pipe(env: Env) -> Result<Vec<i32>> {
    sync_call(&env, || {
        let (r, w) = pipe().map_err(|e| Failure::from_core(&io("pipe", e)))?;
        let fd = |f| into_fd(f).map_err(|e| Failure::from_core(&io("pipe", e)));
        Ok(vec![fd(r)?, fd(w)?])
    })
}

fn io(op: &'static str, e: std::io::Error) -> sparsekit_blocksync::Error {
    sparsekit_blocksync::Error::Io(IoError::new(op, e))
}

/// Duplicate a caller's descriptor now, on the main thread, so the caller may close its own
/// as soon as the call returns.
fn dup(name: &str, fd: i32) -> std::result::Result<File, Failure> {
    if fd < 0 {
        return Err(Failure::invalid_value(format!(
            "The argument '{name}' must be a file descriptor. Received {fd}"
        )));
    }
    dup_fd(fd).map_err(|e| Failure::from_core(&io("fcntl(F_DUPFD_CLOEXEC)", e)))
}

/// A stream argument, turned into a file of our own now, on the main thread: a descriptor
/// (duplicated, so the caller may close its own as soon as the call returns) or the path
/// of a pipe, opened for reading or for `write` (on Windows, a named pipe Node's
/// `net.Server` listens on: node.exe's C runtime descriptors mean nothing to the addon).
fn stream_arg(
    name: &str,
    v: Either<i32, String>,
    write: bool,
) -> std::result::Result<File, Failure> {
    match v {
        Either::A(fd) => dup(name, fd),
        Either::B(path) => open_pipe(std::path::Path::new(&path), write).map_err(|e| {
            Failure::from_core(&sparsekit_blocksync::Error::Io(
                IoError::new("open", e).with_path(std::path::Path::new(&path)),
            ))
        }),
    }
}

fn result(blocks: u64, bytes: u64, stream: u64) -> std::result::Result<NativeSyncResult, Failure> {
    Ok(NativeSyncResult {
        blocks: to_f64("blocks", blocks)?,
        bytes: to_f64("bytes", bytes)?,
        stream_bytes: to_f64("streamBytes", stream)?,
    })
}

fn convert(env: &Env, v: NativeSyncResult) -> Result<napi::sys::napi_value> {
    unsafe { NativeSyncResult::to_napi_value(env.raw(), v) }
}

fn open(
    path: &std::result::Result<PathBuf, Failure>,
    write: bool,
) -> std::result::Result<FileStorage, Failure> {
    let p = path.as_ref().map_err(Clone::clone)?;
    if write {
        return open_destination(p);
    }
    FileStorage::open(p).map_err(|e| Failure::from_core(&sparsekit_blocksync::Error::Io(e)))
}

/// The destination of `save` and `files`, which must exist, checked as every writer of a
/// drive is (`flash`'s checks): a system drive is `ERR_SPARSEKIT_SYSTEM_DRIVE`, a drive
/// with a mounted file system `ERR_SPARSEKIT_DRIVE_BUSY`, and a block device is opened
/// `O_EXCL`, so one held by another user (mounted, in use) is `ERR_SPARSEKIT_DRIVE_BUSY`
/// too. Sync has no force or unmount option: refusal only.
fn open_destination(p: &std::path::Path) -> std::result::Result<FileStorage, Failure> {
    drives::check_destination(p, Safety::default()).map_err(|e| Failure::from_core(&e))?;
    let is_dev = is_block_device(p);
    FileStorage::open_with(p, true, false, is_dev).map_err(|e| {
        if is_dev && e.raw_os_error() == Some(errno::EBUSY) {
            Failure::from_core(&drives::busy(p))
        } else {
            Failure::from_core(&sparsekit_blocksync::Error::Io(e))
        }
    })
}

#[cfg(unix)]
fn is_block_device(p: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device())
}

#[cfg(not(unix))]
fn is_block_device(_p: &std::path::Path) -> bool {
    false
}

fn core(e: sparsekit_blocksync::Error) -> Failure {
    Failure::from_core(&e)
}

/// `checksum`: hash `dst` (a file, a device, or a pipe given by path: read in order, no
/// `rest`) or the stream on `options.inputFd`, and write the hash stream to `output` (a
/// descriptor or a pipe's path, see `stream_arg`).
#[napi(ts_return_type = "Promise<NativeSyncResult>")]
pub fn sync_checksum<'env>(
    env: &'env Env,
    dst: Option<Either<String, Buffer>>,
    output: Either<i32, String>,
    options: Option<NativeSyncOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let o = options.unwrap_or_default();
    let files = (|| {
        let out = stream_arg("output", output, true)?;
        let input = o
            .input_fd
            .map(|fd| dup("options.inputFd", fd))
            .transpose()?;
        let dst = match (&input, dst) {
            (Some(_), _) => None,
            (None, Some(d)) => Some(path_arg("dst", d)?),
            (None, None) => {
                return Err(Failure::invalid_value(
                    "The argument 'dst' must be a path when options.inputFd is not given",
                ))
            }
        };
        Ok((dst, input, out))
    })();
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let (dst, input, out) = files?;
            // The destination: a descriptor, or a path naming a file, a device or a pipe
            // (/dev/stdin, a FIFO, /dev/fd/N), each read as blockcopy reads it.
            let opened = match (&dst, input) {
                (_, Some(inp)) => OpenedInput::Stream(inp),
                (Some(d), None) => open_checksum_input(d).map_err(core)?,
                (None, None) => unreachable!("checked above"),
            };
            let journal = match (&o.journal, &opened, &dst) {
                (Some(j), _, _) => Some(PathBuf::from(j)),
                _ if !o.resume.unwrap_or(false) => None,
                (None, OpenedInput::Storage(_), Some(d)) => {
                    let mut j = d.clone().into_os_string();
                    j.push(".sksync-resume");
                    Some(PathBuf::from(j))
                }
                (None, _, d) => {
                    return Err(Failure::invalid_value(format!(
                        "a resumable checksum of a pipe ({}) needs its journal named \
                         (--journal FILE, options.journal: save's journal): there is no \
                         place beside a pipe for one",
                        d.as_ref()
                            .map_or("a descriptor".into(), |d| format!("'{}'", d.display()))
                    )))
                }
            };
            let resume = match &journal {
                Some(j) => Some(ResumeState::load(j).map_err(core)?),
                None => None,
            };
            let opts = ChecksumOptions {
                start: opt_u64("options.start", o.start)?.unwrap_or(0),
                end: opt_u64("options.end", o.end)?,
                blake3: o.blake3.unwrap_or(false),
                holes: None,
                resume,
            };
            let holes = o.holes.unwrap_or(false);
            let out =
                BufWriter::with_capacity(64 << 10, StreamWriter::new(out, ctl.cancel().clone()));
            let s = match opened {
                OpenedInput::Stream(inp) => {
                    let mut r = BufReader::with_capacity(
                        256 << 10,
                        StreamReader::new(inp, ctl.cancel().clone()),
                    );
                    let opts = ChecksumOptions {
                        holes: holes.then(Vec::new),
                        ..opts
                    };
                    checksum(ChecksumInput::Stream(&mut r), out, &opts, ctl)
                }
                OpenedInput::Storage(f) => {
                    let opts = ChecksumOptions {
                        holes: holes.then(|| hole_map(f.file())),
                        ..opts
                    };
                    checksum(ChecksumInput::Storage(&f), out, &opts, ctl)
                }
            }
            .map_err(core)?;
            result(s.blocks, s.bytes_hashed, s.stream_bytes)
        },
        convert,
    )
}

/// `retrieve`: read the hash stream from `input`, compare with `src`, write the block
/// stream to `output` (each a descriptor or a pipe's path, see `stream_arg`).
#[napi(ts_return_type = "Promise<NativeSyncResult>")]
pub fn sync_retrieve<'env>(
    env: &'env Env,
    src: Either<String, Buffer>,
    input: Either<i32, String>,
    output: Either<i32, String>,
    options: Option<NativeSyncOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let o = options.unwrap_or_default();
    let src = path_arg("src", src);
    let fds = stream_arg("input", input, false)
        .and_then(|i| Ok((i, stream_arg("output", output, true)?)));
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let (inp, out) = fds?;
            let s = open(&src, false)?;
            let r =
                BufReader::with_capacity(64 << 10, StreamReader::new(inp, ctl.cancel().clone()));
            let w =
                BufWriter::with_capacity(256 << 10, StreamWriter::new(out, ctl.cancel().clone()));
            let opts = RetrieveOptions {
                lzma: o.lzma.unwrap_or(false),
                blake3: o.blake3.unwrap_or(false),
                holes: o.holes.unwrap_or(false).then(|| hole_map(s.file())),
                dst_holes: Vec::new(),
                zstd: o.zstd.unwrap_or(false),
                truncate: o.truncate.unwrap_or(false),
                resume: o.resume.unwrap_or(false),
            };
            let sum = retrieve(&s, r, w, &opts, ctl).map_err(core)?;
            result(sum.blocks_sent, sum.bytes_sent, sum.stream_bytes)
        },
        convert,
    )
}

/// `save`: read the block stream from `input` (a descriptor or a pipe's path, see
/// `stream_arg`) and write it into `dst` (which must exist; a drive passes `flash`'s
/// destination checks first, see `open_destination`).
#[napi(ts_return_type = "Promise<NativeSyncResult>")]
pub fn sync_save<'env>(
    env: &'env Env,
    dst: Either<String, Buffer>,
    input: Either<i32, String>,
    options: Option<NativeSyncOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let dst = path_arg("dst", dst);
    let inp = stream_arg("input", input, false);
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let inp = inp?;
            let d = open(&dst, true)?;
            let r =
                BufReader::with_capacity(256 << 10, StreamReader::new(inp, ctl.cancel().clone()));
            let o = options.unwrap_or_default();
            let opts = SaveOptions {
                blake3: o.blake3.unwrap_or(false),
                holes: o.holes.unwrap_or(false),
                zstd: o.zstd.unwrap_or(false),
                truncate: o.truncate.unwrap_or(false),
                resume: o.journal.map(PathBuf::from),
            };
            let sum = save(&d, r, &opts, ctl).map_err(core)?;
            result(sum.blocks_written, sum.bytes_written, sum.stream_bytes)
        },
        convert,
    )
}

/// checksum | retrieve | save of a local pair in one job.
#[napi(ts_return_type = "Promise<NativeSyncResult>")]
pub fn sync_files<'env>(
    env: &'env Env,
    src: Either<String, Buffer>,
    dst: Either<String, Buffer>,
    options: Option<NativeSyncOptions>,
    cancel: Option<&CancelToken>,
    #[napi(ts_arg_type = "(phase: string, bytesDone: number, bytesTotal: number) => void")]
    on_progress: Option<ProgressFn>,
) -> Result<Object<'env>> {
    let o = options.unwrap_or_default();
    let src = path_arg("src", src);
    let dst = path_arg("dst", dst);
    spawn(
        env,
        cancel,
        on_progress,
        move |ctl| {
            let s = open(&src, false)?;
            let d = open(&dst, true)?;
            let holes = o.holes.unwrap_or(false);
            let opts = RetrieveOptions {
                lzma: o.lzma.unwrap_or(false),
                blake3: o.blake3.unwrap_or(false),
                holes: holes.then(|| hole_map(s.file())),
                dst_holes: if holes {
                    hole_map(d.file())
                } else {
                    Vec::new()
                },
                zstd: o.zstd.unwrap_or(false),
                truncate: o.truncate.unwrap_or(false),
                resume: o.resume.unwrap_or(false),
            };
            let sum = sync_local(&s, &d, &opts, ctl).map_err(core)?;
            result(sum.blocks_changed, sum.bytes_changed, sum.bytes_sent)
        },
        convert,
    )
}
