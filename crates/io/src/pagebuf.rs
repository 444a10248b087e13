//! A byte buffer whose contents start on a page boundary.
//!
//! The kernel copies between the page cache and a page-aligned buffer about 3-4x faster
//! than into the 16-byte-offset blocks `malloc` returns for large sizes (`pread` of 1 GiB
//! from a warm cache: 0.45 s of system time into those, 0.12 s page-aligned; AMD EPYC,
//! Linux 6.18), and `O_DIRECT` needs aligned buffers at all.

/// The alignment of a [`PageBuf`]'s contents (the page size of x86-64 and of most arm64
/// kernels; a multiple of every block device's logical block size).
pub const PAGE: usize = 4096;

/// A byte buffer whose contents start on a [`PAGE`] boundary; grows (reallocating) when
/// resized past its capacity, and keeps its allocation when shrunk.
#[derive(Default)]
pub struct PageBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl PageBuf {
    /// An empty buffer that has allocated nothing (usable in `const` and `thread_local!`
    /// initialisers).
    pub const fn empty() -> PageBuf {
        PageBuf {
            raw: Vec::new(),
            start: 0,
            len: 0,
        }
    }

    /// A zeroed buffer of `len` bytes.
    pub fn new(len: usize) -> PageBuf {
        let mut b = PageBuf::default();
        b.resize(len);
        b
    }

    /// Make the buffer `len` bytes long; the contents are unspecified (zeros when it grew).
    pub fn resize(&mut self, len: usize) {
        if self.capacity() < len {
            self.raw = vec![0u8; len + PAGE];
            self.start = self.raw.as_ptr().align_offset(PAGE).min(PAGE);
        }
        self.len = len;
    }

    /// Shorten the buffer to `len` bytes (nothing happens when it is not longer).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The most bytes the buffer holds without reallocating.
    pub fn capacity(&self) -> usize {
        self.raw.len().saturating_sub(PAGE)
    }
}

impl std::ops::Deref for PageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
}

impl std::ops::DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

impl From<&[u8]> for PageBuf {
    /// A page-aligned copy of `bytes` (for small pieces, such as table clusters, that
    /// travel with the large ones).
    fn from(bytes: &[u8]) -> PageBuf {
        let mut b = PageBuf::empty();
        b.resize(bytes.len());
        b.copy_from_slice(bytes);
        b
    }
}

impl AsRef<[u8]> for PageBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for PageBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageBuf").field("len", &self.len).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_at_every_size_and_after_growing() {
        let mut b = PageBuf::new(0);
        assert_eq!(b.len(), 0);
        for len in [1, 100, PAGE, 128 << 10, 3, 1 << 20] {
            b.resize(len);
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % PAGE, 0, "len {len}");
            b[len - 1] = 7;
        }
        assert!(b.capacity() >= 1 << 20);
        assert!(PageBuf::new(5).iter().all(|&x| x == 0));
        let c = PageBuf::from(&[1u8, 2, 3][..]);
        assert_eq!((&c[..], c.as_ptr() as usize % PAGE), (&[1u8, 2, 3][..], 0));
        b.truncate(2);
        assert_eq!(b.len(), 2);
        assert_eq!(PageBuf::empty().capacity(), 0);
    }
}
