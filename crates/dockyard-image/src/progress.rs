//! Progress reporting hooks; the CLI draws bars, the library only reports.
//! Several blobs may be in flight at once (parallel transfers), so every
//! call names its blob.

use std::io::{self, Read};

pub trait Progress: Send + Sync {
    /// A blob of `total` bytes starts; `id` names it in later calls.
    fn start(&self, id: &str, total: u64);
    /// `n` more bytes of blob `id` were transferred.
    fn advance(&self, id: &str, n: u64);
    /// Blob `id` is done.
    fn finish(&self, id: &str);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: &str, _: u64) {}
    fn finish(&self, _: &str) {}
}

pub struct ProgressReader<'a, R> {
    pub inner: R,
    pub id: String,
    pub progress: &'a dyn Progress,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(&self.id, n as u64);
        Ok(n)
    }
}
