//! Compressed layers a docker archive must hold uncompressed, inflated in
//! parallel. The archive writer streams layers into the archive in manifest
//! order; worker threads take layers from the last one backwards and
//! inflate each into an anonymous temp file beside the archive, which the
//! writer copies in when it reaches that layer. Member order never changes,
//! so the archive's bytes do not depend on timing or on the core count.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::digest::unwrap_io;
use crate::error::{Error, IoContext, Result};
use crate::layer::Layer;
use crate::progress::{Phase, Progress, ProgressReader};

/// A layer inflated by a worker: the temp file and its length.
pub struct Inflated {
    pub file: File,
    pub len: u64,
}

/// Who writes layer `k` of the archive.
pub enum Claim {
    /// The writer streams it itself.
    Stream,
    /// A worker inflated it (or failed to).
    Inflated(Result<Inflated>),
}

struct Split {
    /// Layers before `front` are the writer's (claimed or done).
    front: usize,
    /// Layers from `back` on are the workers'.
    back: usize,
    done: HashMap<usize, Result<Inflated>>,
}

pub struct InflateAhead<'a> {
    layers: Vec<&'a Layer>,
    split: Mutex<Split>,
    ready: Condvar,
    cancelled: AtomicBool,
}

impl<'a> InflateAhead<'a> {
    /// `layers`: the distinct compressed layers, in the order the writer
    /// will ask for them.
    pub fn new(layers: Vec<&'a Layer>) -> Self {
        let back = layers.len();
        InflateAhead {
            layers,
            split: Mutex::new(Split {
                front: 0,
                back,
                done: HashMap::new(),
            }),
            ready: Condvar::new(),
            cancelled: AtomicBool::new(false),
        }
    }

    /// Worker threads worth starting: one per spare core, and never more
    /// than layers the writer would otherwise wait for.
    pub fn workers(&self) -> usize {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8);
        (cores - 1).min(self.layers.len().saturating_sub(1))
    }

    fn lock(&self) -> MutexGuard<'_, Split> {
        // A worker never panics while holding the lock; if one did, the
        // split is still consistent (it only moves counters).
        self.split.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer asks for layer `k` (in order 0, 1, 2, …).
    pub fn claim(&self, k: usize) -> Claim {
        let mut split = self.lock();
        if k < split.back {
            split.front = k + 1;
            return Claim::Stream;
        }
        loop {
            if let Some(done) = split.done.remove(&k) {
                return Claim::Inflated(done);
            }
            split = self.ready.wait(split).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Stop the workers after their current read (the writer failed).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// A worker: inflate layers from the back into temp files in `dir`
    /// until it meets the writer.
    pub fn work(&self, dir: &Path, archive: &Path, progress: &dyn Progress) {
        loop {
            let k = {
                let mut split = self.lock();
                if split.back <= split.front || self.cancelled.load(Ordering::Relaxed) {
                    return;
                }
                split.back -= 1;
                split.back
            };
            let result = self.inflate(self.layers[k], dir, archive, progress);
            self.lock().done.insert(k, result);
            self.ready.notify_all();
        }
    }

    fn inflate(
        &self,
        layer: &Layer,
        dir: &Path,
        archive: &Path,
        progress: &dyn Progress,
    ) -> Result<Inflated> {
        let source = layer.source().path();
        // Anonymous (O_TMPFILE or unlinked at once): nothing is left behind
        // if the run is interrupted.
        let mut file = tempfile::tempfile_in(dir).at(archive)?;
        let mut reader = ProgressReader::new(
            layer.open_uncompressed()?,
            progress,
            layer.digest().short(),
            Phase::Copy,
            layer.size(),
        );
        let mut out = BufWriter::with_capacity(1 << 20, &mut file);
        let mut buf = vec![0u8; 256 << 10];
        let mut len = 0u64;
        loop {
            if self.cancelled.load(Ordering::Relaxed) {
                return Err(Error::Io {
                    path: archive.to_path_buf(),
                    source: io::Error::new(io::ErrorKind::Interrupted, "cancelled"),
                });
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(unwrap_io(e, &source)),
            };
            out.write_all(&buf[..n]).at(archive)?;
            len += n as u64;
        }
        out.flush().at(archive)?;
        drop(out);
        reader.finish();
        Ok(Inflated { file, len })
    }
}
