//! Progress reporting: the library reports, front ends draw (bars in the
//! CLI, a callback in Python). Several blobs may be in flight at once, so
//! every event names its blob and what is happening to it; byte counts
//! are reported at most about ten times a second per blob (and once at
//! the end), so a callback that takes a lock — Python's GIL — is not
//! called for every 64 KiB.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What is happening to a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Downloaded from a registry.
    Fetch,
    /// Uploaded to a registry.
    Upload,
    /// Copied into a file, layout, archive or the store.
    Copy,
    /// Unpacked into a root filesystem.
    Extract,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Fetch => "fetch",
            Phase::Upload => "upload",
            Phase::Copy => "copy",
            Phase::Extract => "extract",
        }
    }
}

pub trait Progress: Send + Sync {
    /// Blob `id` (of `total` bytes; 0 if unknown) starts `phase`.
    fn start(&self, id: &str, phase: Phase, total: u64);
    /// `done` bytes of blob `id` so far (throttled; see the module doc).
    fn bytes(&self, id: &str, done: u64);
    /// Blob `id` is done.
    fn finish(&self, id: &str);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: Phase, _: u64) {}
    fn bytes(&self, _: &str, _: u64) {}
    fn finish(&self, _: &str) {}
}

const INTERVAL: Duration = Duration::from_millis(100);

/// Counts one blob's bytes and reports them, throttled. Shared by the
/// tasks that move the blob (chunked uploads run in parallel).
pub struct Meter {
    id: String,
    done: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl Meter {
    /// Report the start of `phase` for blob `id`.
    pub fn start(progress: &dyn Progress, id: String, phase: Phase, total: u64) -> Meter {
        progress.start(&id, phase, total);
        Meter {
            id,
            done: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }
    pub fn id(&self) -> &str {
        &self.id
    }
    /// `n` more bytes moved.
    pub fn add(&self, progress: &dyn Progress, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let now = Instant::now();
        let due = match self.last.lock() {
            Ok(mut last) => {
                let due = last
                    .map(|t| now.duration_since(t) >= INTERVAL)
                    .unwrap_or(true);
                if due {
                    *last = Some(now);
                }
                due
            }
            Err(_) => false,
        };
        if due {
            progress.bytes(&self.id, done);
        }
    }
    /// Start counting again from `done` (a resumed or restarted transfer).
    pub fn reset(&self, progress: &dyn Progress, done: u64) {
        self.done.store(done, Ordering::Relaxed);
        progress.bytes(&self.id, done);
    }
    /// The last count, then the end.
    pub fn finish(&self, progress: &dyn Progress) {
        progress.bytes(&self.id, self.done.load(Ordering::Relaxed));
        progress.finish(&self.id);
    }
}

/// A reader that reports what passes through it.
pub struct ProgressReader<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
    meter: Meter,
}

impl<'a, R> ProgressReader<'a, R> {
    /// Reports the start of `phase` for blob `id` now.
    pub fn new(inner: R, progress: &'a dyn Progress, id: String, phase: Phase, total: u64) -> Self {
        ProgressReader {
            inner,
            progress,
            meter: Meter::start(progress, id, phase, total),
        }
    }
    /// Report the end.
    pub fn finish(self) {
        self.meter.finish(self.progress);
    }
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.add(self.progress, n as u64);
        Ok(n)
    }
}
