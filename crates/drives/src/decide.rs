//! The refusal decision shared by every OS once the drive(s) a destination concerns are
//! known.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::types::{Drive, Safety};

/// Unmounts the file system mounted at a path ([`crate::sys::umount`], or a test's stand-in).
pub type Unmount<'a> = &'a dyn Fn(&Path) -> std::io::Result<()>;

/// The refusal decision once the drive(s) a destination concerns are known, on every OS:
/// a system drive fails with [`Error::SystemDrive`] unless `safety.force`; mount points
/// fail with [`Error::DriveBusy`] unless `safety.force` or `safety.unmount`. With
/// `unmount`, `umount` is called for each mount point, deepest first; `None` means the
/// writer takes the volumes offline itself when it opens the drive (Windows: locked and
/// dismounted for as long as the write lasts), so the check passes.
pub fn decide(
    path: &Path,
    drives: &[&Drive],
    mounted: Vec<PathBuf>,
    safety: Safety,
    umount: Option<Unmount<'_>>,
) -> Result<()> {
    let mut reasons: Vec<String> = Vec::new();
    for d in drives.iter().filter(|d| d.is_system) {
        for r in &d.system_reasons {
            if !reasons.contains(r) {
                reasons.push(r.clone());
            }
        }
    }
    if drives.iter().any(|d| d.is_system) && !safety.force {
        return Err(Error::SystemDrive {
            path: path.to_path_buf(),
            reason: reasons.join(", "),
        });
    }
    if mounted.is_empty() {
        return Ok(());
    }
    if safety.unmount {
        let Some(umount) = umount else {
            return Ok(());
        };
        let mut mps = mounted;
        // Deepest first: /mnt/a/b before /mnt/a.
        mps.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        mps.dedup();
        for mp in mps {
            umount(&mp).map_err(|e| Error::DriveBusy {
                path: path.to_path_buf(),
                reason: format!("cannot unmount '{}': {e}", mp.display()),
                errno: e.raw_os_error(),
            })?;
        }
        return Ok(());
    }
    if safety.force {
        return Ok(());
    }
    let list: Vec<String> = mounted
        .iter()
        .map(|p| format!("'{}'", p.display()))
        .collect();
    Err(Error::DriveBusy {
        path: path.to_path_buf(),
        reason: format!("mounted at {}", list.join(", ")),
        errno: None,
    })
}
