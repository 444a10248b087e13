//! [`sync_files`]: the three sides of the protocol in one process, joined by pipes.

use sparsekit_io::{Cancel, Control, Storage};

use crate::checksum::{checksum, ChecksumInput, ChecksumOptions};
use crate::error::Error;
use crate::retrieve::{retrieve, RetrieveOptions};
use crate::save::{save, SaveOptions};

/// What [`sync_files`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncSummary {
    /// Bytes of the block stream (what a network between the two sides would carry one
    /// way; the hash stream adds 80 bytes per destination block the other way).
    pub bytes_sent: u64,
    /// Bytes of the hash stream.
    pub hash_bytes: u64,
    /// Blocks written to the destination.
    pub blocks_changed: u64,
    /// Source bytes written to the destination.
    pub bytes_changed: u64,
}

/// Make `dst` equal to `src` on `[0, src size)` by running `checksum | retrieve | save`
/// in three threads over OS pipes: exactly the streams the shell pipeline carries. `dst`
/// keeps any tail past the source's size (as blockcopy's `save` does). Progress is
/// [`Phase::Send`](sparsekit_io::Phase::Send) from the retrieve side.
pub fn sync_files<S: Storage + ?Sized, D: Storage + ?Sized>(
    src: &S,
    dst: &D,
    opts: &RetrieveOptions,
    ctl: &mut Control<'_>,
) -> Result<SyncSummary, Error> {
    if opts.resume {
        return Err(Error::InvalidArg {
            name: "resume",
            reason: "a local sync has no journal: run checksum, retrieve and save".into(),
        });
    }
    let pipe = |what| std::io::pipe().map_err(|e| Error::Io(sparsekit_io::IoError::new(what, e)));
    let (hash_r, hash_w) = pipe("pipe")?;
    let (block_r, block_w) = pipe("pipe")?;
    let cancel: Cancel = ctl.cancel().clone();
    std::thread::scope(|scope| {
        let c1 = cancel.clone();
        let t_sum = scope.spawn(move || {
            let mut ctl = Control::with_cancel(c1);
            checksum(
                ChecksumInput::Storage(&dst),
                std::io::BufWriter::with_capacity(64 * 1024, hash_w),
                &ChecksumOptions {
                    blake3: opts.blake3,
                    holes: opts.holes.as_ref().map(|_| opts.dst_holes.clone()),
                    ..Default::default()
                },
                &mut ctl,
            )
        });
        let c2 = cancel.clone();
        let t_save = scope.spawn(move || {
            let mut ctl = Control::with_cancel(c2);
            save(
                dst,
                std::io::BufReader::with_capacity(256 * 1024, block_r),
                &SaveOptions {
                    blake3: opts.blake3,
                    holes: opts.holes.is_some(),
                    zstd: opts.zstd,
                    truncate: opts.truncate,
                    resume: None,
                },
                &mut ctl,
            )
        });
        let r = retrieve(
            src,
            std::io::BufReader::with_capacity(64 * 1024, hash_r),
            std::io::BufWriter::with_capacity(256 * 1024, block_w),
            opts,
            ctl,
        );
        if r.is_err() {
            // Unblock the others: they see a closed pipe, and stop at their next check.
            cancel.cancel();
        }
        let s = t_sum.join().unwrap_or(Err(Error::Aborted));
        let w = t_save.join().unwrap_or(Err(Error::Aborted));
        match (s, r, w) {
            (Ok(s), Ok(r), Ok(w)) => Ok(SyncSummary {
                bytes_sent: r.stream_bytes,
                hash_bytes: s.stream_bytes,
                blocks_changed: w.blocks_written,
                bytes_changed: w.bytes_written,
            }),
            (s, r, w) => {
                // One side's failure makes the others see a closed pipe, a cut stream or
                // the cancel flag: report the failure that caused the rest.
                let errs = [s.err(), r.err(), w.err()];
                let consequence = |e: &Error| {
                    matches!(
                        e,
                        Error::StreamIo { .. } | Error::Truncated { .. } | Error::Aborted
                    )
                };
                let root = errs
                    .iter()
                    .position(|e| e.as_ref().is_some_and(|e| !consequence(e)));
                let i = root
                    .or_else(|| errs.iter().position(|e| e.is_some()))
                    .unwrap_or(0);
                Err(errs.into_iter().nth(i).flatten().unwrap_or(Error::Aborted))
            }
        }
    })
}
