//! How the extents of a file are found ([`Method`]); parsed from its name in map.rs.

/// How the extents are found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Method {
    /// FIEMAP, then SEEK_DATA/SEEK_HOLE, then [`Method::None`]: the first that works.
    #[default]
    Auto,
    /// The `FS_IOC_FIEMAP` ioctl: reports unwritten (preallocated) and shared extents.
    Fiemap,
    /// `lseek` with `SEEK_DATA`/`SEEK_HOLE`: preallocated ranges usually come back as holes.
    Seek,
    /// No mapping: the whole window is one data extent.
    None,
}

impl Method {
    /// The method's name as accepted by `str::parse`: `auto`, `fiemap`, `seek`, `none`.
    pub fn name(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Fiemap => "fiemap",
            Method::Seek => "seek",
            Method::None => "none",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
