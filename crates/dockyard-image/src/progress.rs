//! Progress reporting hooks; the CLI draws bars, the library only reports.

use std::io::{self, Read};

pub trait Progress: Send + Sync {
    /// A blob of `total` bytes starts copying.
    fn start(&self, what: &str, total: u64);
    /// `n` more bytes of the current blob were copied.
    fn advance(&self, n: u64);
    /// The current blob is done.
    fn finish(&self);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

pub struct ProgressReader<'a, R> {
    pub inner: R,
    pub progress: &'a dyn Progress,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}
