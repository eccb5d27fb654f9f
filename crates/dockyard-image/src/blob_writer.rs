//! `BlobWriter`: the one way bytes become a blob of the store. Bytes go to
//! a temporary file beside the final name while they are hashed; `commit`
//! checks the digest and size, fsyncs and renames. A writer for a known
//! digest keeps its partial file (named for the digest, locked while in
//! use) so an interrupted transfer resumes where it stopped; a writer for
//! a blob whose digest is not known yet (compression output, a layer being
//! built) removes its temporary file unless committed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Error, IoContext, Result};

pub struct BlobWriter {
    dir: PathBuf,
    temp: PathBuf,
    /// Buffered: blobs arrive in small network chunks.
    file: io::BufWriter<File>,
    expected: Option<Digest>,
    size: Option<u64>,
    algorithm: Algorithm,
    hasher: Hasher,
    written: u64,
    resumed_from: u64,
    /// Bytes handed to the kernel's writeback so far (see `WRITEBACK_STEP`).
    writeback_from: u64,
    /// Keep the temp file when dropped uncommitted (a resumable partial).
    keep_partial: bool,
    finished: bool,
}

fn partial_name(digest: &Digest) -> String {
    format!(".dockyard-tmp-partial-{}", digest.hex())
}

/// Lock `file` exclusively; `false` when another process holds it.
fn try_lock(file: &File, path: &Path) -> Result<bool> {
    loop {
        // SAFETY: flock on a descriptor we own; released when it closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => return Ok(false),
            io::ErrorKind::Interrupted => continue,
            _ => {
                return Err(Error::Io {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
        }
    }
}

impl BlobWriter {
    /// A resumable writer for `digest` under `dir` (the store's
    /// `blobs/ALG`), or `None` when another writer holds it now (wait and
    /// try again). What an earlier, interrupted writer left is hashed and
    /// kept: `resumed_from()` says how much.
    pub(crate) fn for_digest(
        dir: &Path,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Option<BlobWriter>> {
        fs::create_dir_all(dir).at(dir)?;
        let temp = dir.join(partial_name(digest));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&temp)
            .at(&temp)?;
        if !try_lock(&file, &temp)? {
            return Ok(None);
        }
        // Another writer may have committed or removed the partial file
        // while we opened it: only the file still at that path is ours.
        let same = match (file.metadata(), fs::metadata(&temp)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if !same {
            return Ok(None);
        }
        let mut hasher = Hasher::new(digest.algorithm());
        let mut have = 0u64;
        file.seek(SeekFrom::Start(0)).at(&temp)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).at(&temp)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            have += n as u64;
        }
        let mut w = BlobWriter {
            dir: dir.to_path_buf(),
            temp,
            file: io::BufWriter::with_capacity(1 << 20, file),
            expected: Some(digest.clone()),
            size,
            algorithm: digest.algorithm(),
            hasher,
            written: have,
            resumed_from: have,
            writeback_from: have,
            keep_partial: true,
            finished: false,
        };
        if size.map(|s| have > s).unwrap_or(false) {
            w.restart()?;
        }
        Ok(Some(w))
    }

    /// A writer for a sha256 blob whose digest is known only at the end.
    pub(crate) fn anonymous(dir: &Path) -> Result<BlobWriter> {
        fs::create_dir_all(dir).at(dir)?;
        let (file, temp) = tempfile::Builder::new()
            .prefix(&crate::atomic::temp_prefix())
            .tempfile_in(dir)
            .at(dir)?
            .keep()
            .map_err(|e| e.error)
            .at(dir)?;
        crate::atomic::register_temp(&temp);
        Ok(BlobWriter {
            dir: dir.to_path_buf(),
            temp,
            file: io::BufWriter::with_capacity(1 << 20, file),
            expected: None,
            size: None,
            algorithm: Algorithm::Sha256,
            hasher: Hasher::new(Algorithm::Sha256),
            written: 0,
            resumed_from: 0,
            writeback_from: 0,
            keep_partial: false,
            finished: false,
        })
    }

    /// Bytes already there when this writer started (a resumed partial).
    pub fn resumed_from(&self) -> u64 {
        self.resumed_from
    }
    /// Bytes in the blob so far (including resumed ones).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Throw away what was written and start from byte 0.
    pub fn restart(&mut self) -> Result<()> {
        self.file.flush().at(&self.temp)?;
        let f = self.file.get_mut();
        f.set_len(0).at(&self.temp)?;
        f.seek(SeekFrom::Start(0)).at(&self.temp)?;
        self.hasher = Hasher::new(self.algorithm);
        self.written = 0;
        self.resumed_from = 0;
        self.writeback_from = 0;
        Ok(())
    }

    /// The digest of what was written so far (before `commit`, which
    /// still checks it, fsyncs and renames: a caller can pass the digest
    /// on while the fsync runs).
    pub fn written_digest(&self) -> Digest {
        self.hasher.clone().finish()
    }

    /// A second handle on the file being written, for reading what is in
    /// it while writing goes on (read it positionally: the handles share
    /// one offset). It stays valid after `commit` renames the file.
    pub fn read_handle(&self) -> Result<File> {
        self.file.get_ref().try_clone().at(&self.temp)
    }

    /// Check the digest and size, fsync, and make the blob visible. On a
    /// mismatch nothing is kept (the next try starts clean) and the error
    /// names both digests.
    pub fn commit(mut self) -> Result<(Digest, PathBuf)> {
        self.finished = true;
        let flushed = self
            .file
            .flush()
            .and_then(|_| self.file.get_ref().sync_all());
        if let Err(e) = flushed {
            let _ = fs::remove_file(&self.temp);
            return Err(Error::Io {
                path: self.temp.clone(),
                source: e,
            });
        }
        let hasher = std::mem::replace(&mut self.hasher, Hasher::new(self.algorithm));
        let actual = hasher.finish();
        if let Some(expected) = &self.expected {
            if &actual != expected {
                let _ = fs::remove_file(&self.temp);
                return Err(Error::DigestMismatch {
                    what: format!("blob {expected}"),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        if let Some(size) = self.size {
            if size != self.written {
                let _ = fs::remove_file(&self.temp);
                return Err(Error::SizeMismatch {
                    what: format!("blob {actual}"),
                    expected: size,
                    actual: self.written,
                });
            }
        }
        // Stored blobs are read-only: a layout they are linked into cannot
        // be edited in place, so the cache cannot be corrupted through it.
        let _ = fs::set_permissions(&self.temp, fs::Permissions::from_mode(0o444));
        let dest = self.dir.join(actual.hex());
        crate::atomic::commit_temp(&self.temp, || fs::rename(&self.temp, &dest)).map_err(|e| {
            let _ = fs::remove_file(&self.temp);
            Error::Io {
                path: dest.clone(),
                source: e,
            }
        })?;
        let _ = File::open(&self.dir).and_then(|d| d.sync_all());
        Ok((actual, dest))
    }

    /// Give up: the partial file is removed, even a resumable one.
    pub fn discard(mut self) {
        self.finished = true;
        crate::atomic::unregister_temp(&self.temp);
        let _ = fs::remove_file(&self.temp);
    }
}

/// Every this many bytes the written range is handed to the kernel's
/// writeback, so the fsync in `commit` finds little left to write: the
/// fsync of a large blob had been a wait at the end of every pull and push.
const WRITEBACK_STEP: u64 = 8 << 20;

impl BlobWriter {
    /// Start (not wait for) writeback of what was written since the last
    /// call, once there is a step's worth.
    fn start_writeback(&mut self) -> io::Result<()> {
        let len = self.written.saturating_sub(self.writeback_from);
        if len < WRITEBACK_STEP {
            return Ok(());
        }
        self.file.flush()?;
        #[cfg(target_os = "linux")]
        {
            // SAFETY: a descriptor we own, a range inside the file; the call
            // only schedules writeback. Failure is harmless (commit fsyncs).
            unsafe {
                libc::sync_file_range(
                    self.file.get_ref().as_raw_fd(),
                    self.writeback_from as libc::off64_t,
                    len as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.writeback_from = self.written;
        Ok(())
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        self.start_writeback()?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if self.keep_partial {
            // Left for the next run to resume.
            let _ = self.file.flush();
        } else {
            let _ = fs::remove_file(&self.temp);
        }
    }
}
