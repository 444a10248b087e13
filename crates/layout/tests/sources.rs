//! layout() reads any `Storage`: an image served over HTTP with range requests, and the
//! guest disk of a qcow2 image, give the same layout as the raw file.

mod common;

use std::collections::HashMap;

use common::{missing, must};
use sparsekit_io::{Cancel, Control, IoError, MemStorage, Storage};
use sparsekit_layout::{layout, State};

/// An ext4 image in a GPT, 24 MiB: (bytes, path of the file in `dir`).
fn image(dir: &std::path::Path) -> Vec<u8> {
    let img = dir.join("d.img");
    let e = dir.join("e.img");
    must(&format!(
        "truncate -s 24M '{0}' && printf 'label: gpt\\nsize=16MiB\\n' | sfdisk -q '{0}' && truncate -s 16M '{1}' && mkfs.ext4 -q -F '{1}' && dd if='{1}' of='{0}' bs=1M seek=1 conv=notrunc status=none",
        img.display(),
        e.display()
    ));
    std::fs::read(&img).unwrap()
}

#[test]
fn over_http() {
    if let Some(t) = missing(&["sfdisk", "mkfs.ext4"]) {
        eprintln!("SKIP over_http: {t} is not installed");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let bytes = image(t.path());
    let want = layout(&MemStorage::from_vec(bytes.clone()), &mut Control::none()).unwrap();
    assert_eq!(want.partitions[0].state, State::Clean);
    let server =
        sparsekit_testfs::http::Server::start(HashMap::from([("d.img".to_string(), bytes)]));
    let s =
        sparsekit_http::HttpStorage::open(&server.url("d.img"), &Default::default(), Cancel::new())
            .unwrap();
    let got = layout(&s, &mut Control::none()).unwrap();
    assert_eq!(got.used, want.used);
    assert_eq!(got.partitions[0].used_bytes, want.partitions[0].used_bytes);
    eprintln!("over HTTP: {} requests", s.requests());
}

/// A qcow2 image's guest disk as a `Storage`.
struct Guest(sparsekit_qcow2::Image);

impl Storage for Guest {
    fn size(&self) -> Result<u64, IoError> {
        Ok(self.0.size())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, IoError> {
        let n = (buf.len() as u64).min(self.0.size().saturating_sub(offset)) as usize;
        self.0
            .read_at(&mut buf[..n], offset)
            .map_err(|e| IoError::new("read", std::io::Error::other(e.to_string())).at(offset))?;
        Ok(n)
    }
    fn write_at(&self, _: &[u8], _: u64) -> Result<usize, IoError> {
        Err(IoError::from_errno("write", 30))
    }
    fn flush(&self) -> Result<(), IoError> {
        Ok(())
    }
}

#[test]
fn qcow2_guest() {
    if let Some(t) = missing(&["sfdisk", "mkfs.ext4", "qemu-img"]) {
        eprintln!("SKIP qcow2_guest: {t} is not installed");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let bytes = image(t.path());
    let want = layout(&MemStorage::from_vec(bytes), &mut Control::none()).unwrap();
    let q = t.path().join("d.qcow2");
    must(&format!(
        "qemu-img convert -q -O qcow2 '{}' '{}'",
        t.path().join("d.img").display(),
        q.display()
    ));
    let img = sparsekit_qcow2::Image::open(&q, &Default::default()).unwrap();
    let got = layout(&Guest(img), &mut Control::none()).unwrap();
    assert_eq!(got.used, want.used);
    assert_eq!(got.partitions[0].state, State::Clean);
}
