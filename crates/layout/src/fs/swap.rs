//! Linux swap: only the header page is used (mkswap's layout, util-linux swapheader.h); a
//! hibernation image in it makes it all used.

use super::{Opened, Walk};
use crate::dev::{label, le32, uuid_be, Dev, Emit};
use crate::error::{corrupt, Error};
use crate::FileSystem;

const PAGE_SIZES: [usize; 5] = [4096, 8192, 16384, 32768, 65536];

fn page_size(head: &[u8]) -> Option<(usize, bool)> {
    PAGE_SIZES.iter().find_map(|&p| {
        let sig = head.get(p - 10..p)?;
        if sig == b"SWAPSPACE2" || sig == b"SWAP-SPACE" {
            Some((p, false))
        } else if sig.starts_with(b"S1SUSPEND")
            || sig.starts_with(b"S2SUSPEND")
            || sig.starts_with(b"ULSUSPEND")
            || sig == b"LINHIB0001"
        {
            Some((p, true))
        } else {
            None
        }
    })
}

pub(crate) fn detect(head: &[u8]) -> bool {
    page_size(head).is_some()
}

struct Swap {
    page: u64,
    end: u64,
}

pub(crate) fn open(d: &Dev) -> Result<Opened, Error> {
    let head = d.read("swap header", 0, d.len.min(65536))?;
    let Some((page, hibernated)) = page_size(&head) else {
        return Err(corrupt("swap header", 0, "no swap signature"));
    };
    let version = le32(&head, 1024);
    let last_page = le32(&head, 1028) as u64;
    let end = (last_page + 1).saturating_mul(page as u64);
    if version != 1 || last_page == 0 || end > d.len {
        return Err(corrupt(
            "swap header",
            1024,
            format!("version {version}, last page {last_page} of {page} bytes in a partition of {} bytes", d.len),
        ));
    }
    let mut o = Opened::new(
        FileSystem::Swap,
        label(&head[1052..1068]),
        uuid_be(&head[1036..1052]),
        Box::new(Swap {
            page: page as u64,
            end,
        }),
    );
    if hibernated {
        o.dirty = Some("the swap area holds a hibernation image".into());
    }
    Ok(o)
}

impl Walk for Swap {
    fn walk(&self, _d: &Dev, e: &mut Emit) -> Result<(), Error> {
        e.used(0, self.page)?;
        e.used(self.end, u64::MAX)
    }
}
