//! Editing qcow2 images crash-safely: every edit goes through an [`Editor`], which parses
//! the image with the same validating reader as [`Image`] (a corrupt image is refused
//! before anything is written) and keeps refcounts exact.
//!
//! Write ordering (the rule every operation follows): a new structure (refcount block,
//! table, L2 table, header copy) is written and synced before anything points at it;
//! refcounts are raised (and synced) before the new reference is written and lowered only
//! after the old reference is gone and synced; a header field or table entry changes in one
//! aligned write. A crash or failed write at any point thus leaves a valid image whose
//! only possible damage is leaked clusters (refcount above references), which
//! `qemu-img check` accepts and [`repair`] fixes.

mod commit;
mod ops;
mod refcount;

pub use commit::{commit, commit_into, Base, CommitResult, COMMIT_CHUNK};

pub use ops::{
    create, create_bytes, create_on, discard_all, get_extension, repair, resize, set_backing,
    set_extension, snapshot, CreateOptions, EditOptions, Preallocation, RESERVED_EXTENSIONS,
};

use sparsekit_io::Storage;

use crate::error::{refused, Result};
use crate::header::{Header, INCOMPAT_CORRUPT, INCOMPAT_DIRTY};
use crate::image::{Image, OpenOptions};
use crate::BackingPolicy;

pub(crate) use ops::FEATURE_NAMES;
pub(crate) use refcount::Refcounts;

/// An image opened for editing: the validated reader's view plus its refcounts.
pub struct Editor {
    pub(crate) img: Image,
    pub(crate) rc: Refcounts,
}

impl std::fmt::Debug for Editor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Editor").field("img", &self.img).finish()
    }
}

impl Editor {
    /// Parse `storage` (a regular file's or memory) through the validating reader and load
    /// its refcount table. Refuses images marked corrupt and images with the dirty bit
    /// (lazy refcounts not yet rebuilt): their refcounts cannot be trusted.
    pub fn new(storage: Box<dyn Storage>) -> Result<Editor> {
        Self::with_kind(storage, false)
    }

    /// [`Editor::new`] for a storage that is a block device (`true`: never grown; new
    /// clusters go after the last one in use, inside the device).
    pub fn with_kind(storage: Box<dyn Storage>, block_device: bool) -> Result<Editor> {
        let p = storage.path().map(std::path::Path::to_path_buf);
        let opts = OpenOptions {
            backing: BackingPolicy::None,
            ..OpenOptions::default()
        };
        let mut img = Image::from_storage(storage, &opts)?;
        img.is_block_device = block_device;
        let h = img.header();
        if h.incompatible_features & INCOMPAT_CORRUPT != 0 {
            return Err(
                refused("the image is marked corrupt; run qemu-img check -r all first")
                    .with_path(p.as_deref()),
            );
        }
        if h.incompatible_features & INCOMPAT_DIRTY != 0 {
            return Err(refused(
                "the image has the dirty bit (lazy refcounts not rebuilt); run qemu-img check -r all first",
            )
            .with_path(p.as_deref()));
        }
        let rc = Refcounts::load(&img).map_err(|e| e.with_path(p.as_deref()))?;
        Ok(Editor { img, rc })
    }

    /// Parse the image again (after an edit that moved structures).
    pub fn reload(&mut self) -> Result<()> {
        let block = self.img.is_block_device;
        let s = self.img.take_storage();
        *self = Editor::with_kind(s, block)?;
        Ok(())
    }

    /// The header as parsed.
    pub fn header(&self) -> &Header {
        self.img.header()
    }

    /// The image as the reader sees it (stale after an edit until reopened).
    pub fn image(&self) -> &Image {
        &self.img
    }

    pub(crate) fn s(&self) -> &dyn Storage {
        self.img.storage()
    }

    pub(crate) fn write(&self, buf: &[u8], off: u64) -> Result<()> {
        self.s().write_all_at(buf, off)?;
        Ok(())
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.s().flush()?;
        Ok(())
    }
}
