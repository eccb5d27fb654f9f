//! Files that appear whole or not at all: written to a temp file in the
//! destination directory, fsynced, then renamed over the final name.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{IoContext, Result};

/// The directory an output at `dest` goes into; it must exist (outputs are
/// never written into directories created on the user's behalf).
pub fn output_parent(dest: &Path) -> Result<PathBuf> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(crate::error::Error::Io {
            path: dir,
            source: io::Error::new(io::ErrorKind::NotFound, "output directory does not exist"),
        });
    }
    Ok(dir)
}

/// The process's umask, read without changing it (`/proc/self/status`;
/// 022 where that is not available).
pub fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o022)
    })
}

/// Give a file or directory we made through a private temporary the mode
/// any other tool's output would have: 0666 (files) or 0777 (directories)
/// less the umask.
pub fn apply_umask(path: &Path, dir: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let base = if dir { 0o777 } else { 0o666 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(base & !umask()))
}

/// Temporary files and directories of this process, removed by
/// `remove_temp_files` when a signal ends it (destructors do not run then).
static TEMPS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// The prefix of this process's temporary names: `.dockyard-tmp-PID-`, so
/// a later run can tell which leftovers belong to processes now gone.
pub fn temp_prefix() -> String {
    format!(".dockyard-tmp-{}-", std::process::id())
}

/// Note a temporary path to remove if a signal ends the process.
pub fn register_temp(path: &Path) {
    if let Ok(mut t) = TEMPS.lock() {
        t.push(path.to_path_buf());
    }
}

/// The temporary path became an output (renamed) or was removed.
pub fn unregister_temp(path: &Path) {
    if let Ok(mut t) = TEMPS.lock() {
        t.retain(|p| p != path);
    }
}

/// Rename a registered temporary into place (`rename` does it) and forget
/// it — never while a signal is removing temporaries, so an output is
/// either renamed whole or removed, not emptied after its rename.
pub fn commit_temp<T>(path: &Path, rename: impl FnOnce() -> T) -> T {
    let mut temps = TEMPS.lock().unwrap_or_else(|e| e.into_inner());
    let result = rename();
    temps.retain(|p| p != path);
    result
}

/// Remove every registered temporary (on SIGINT/SIGTERM). The process is
/// ending: the registry stays locked, so nothing is renamed afterwards.
pub fn remove_temp_files() {
    let temps = TEMPS.lock().unwrap_or_else(|e| e.into_inner());
    for p in temps.iter() {
        let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
    }
    std::mem::forget(temps);
}

/// Remove temporaries in `dir` left by dockyard processes that no longer
/// run (killed before they could clean up): named for a process that does
/// not exist, owned by this user, and untouched for an hour — a pid alone
/// says nothing across containers sharing a folder.
pub fn remove_stale_temps(dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    let Ok(list) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in list.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name
            .strip_prefix(".dockyard-tmp-")
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(p, _)| p.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        let idle = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .map(|age| age > std::time::Duration::from_secs(3600))
            .unwrap_or(false);
        if meta.uid() != me || !idle {
            continue;
        }
        // SAFETY: kill with signal 0 only asks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let p = entry.path();
            let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
        }
    }
}

pub struct AtomicFile {
    temp: NamedTempFile,
    dest: PathBuf,
}

impl AtomicFile {
    /// Start writing `dest`; its directory must exist.
    pub fn create(dest: &Path) -> Result<AtomicFile> {
        if dest.is_dir() || dest.as_os_str().to_string_lossy().ends_with('/') {
            return Err(crate::error::Error::InvalidLocation {
                input: dest.display().to_string(),
                reason: "names a directory; name the file to write, e.g. DIR/image.tar".into(),
            });
        }
        let dir = output_parent(dest)?;
        remove_stale_temps(&dir);
        let temp = tempfile::Builder::new()
            .prefix(&temp_prefix())
            .tempfile_in(&dir)
            .at(dest)?;
        register_temp(temp.path());
        Ok(AtomicFile {
            temp,
            dest: dest.to_path_buf(),
        })
    }
    pub fn path(&self) -> &Path {
        &self.dest
    }
    pub fn file(&mut self) -> &mut File {
        self.temp.as_file_mut()
    }
    /// The temp file as a writer whose failures name the destination.
    pub fn writer(&mut self) -> OutputWriter<'_, &mut File> {
        OutputWriter::new(self.temp.as_file_mut(), &self.dest)
    }
    /// Rename into place without fsync: for outputs handed to the user
    /// (archives), where a crash must not leave a half file under the final
    /// name but power-loss durability is not promised (as with cp or
    /// skopeo). The store uses `commit`.
    pub fn commit_unsynced(self) -> Result<()> {
        apply_umask(self.temp.path(), false).at(&self.dest)?;
        let temp_path = self.temp.path().to_path_buf();
        let dest = self.dest.clone();
        let temp = self.temp;
        commit_temp(&temp_path, || temp.persist(&dest))
            .map_err(|e| e.error)
            .at(&self.dest)?;
        Ok(())
    }

    /// fsync and rename into place.
    pub fn commit(self) -> Result<()> {
        apply_umask(self.temp.path(), false).at(&self.dest)?;
        self.temp.as_file().sync_all().at(&self.dest)?;
        let temp_path = self.temp.path().to_path_buf();
        let dest = self.dest.clone();
        let temp = self.temp;
        commit_temp(&temp_path, || temp.persist(&dest))
            .map_err(|e| e.error)
            .at(&self.dest)?;
        if let Some(dir) = self.dest.parent() {
            // Make the rename itself durable; failure here is not worth an error.
            let _ = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
            .and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let dest = &self.dest;
        self.temp.write(buf).map_err(|e| output_failed(e, dest))
    }
    fn flush(&mut self) -> io::Result<()> {
        let dest = &self.dest;
        self.temp.flush().map_err(|e| output_failed(e, dest))
    }
}

/// A writer whose failures name the file being written. A copy reads one
/// file and writes another; an `io::copy` error alone does not say which
/// side failed, so a full disk would be reported against the source.
/// The error carries `Error::Io { path: OUTPUT }`, which
/// `digest::unwrap_io` (and every caller that unwraps inner errors)
/// reports as it is.
pub struct OutputWriter<'a, W> {
    inner: W,
    path: &'a Path,
}

impl<'a, W: Write> OutputWriter<'a, W> {
    pub fn new(inner: W, path: &'a Path) -> Self {
        OutputWriter { inner, path }
    }
}

impl<W: Write> Write for OutputWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner
            .write(buf)
            .map_err(|e| output_failed(e, self.path))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush().map_err(|e| output_failed(e, self.path))
    }
}

impl<W: io::Seek> io::Seek for OutputWriter<'_, W> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.inner
            .seek(pos)
            .map_err(|e| output_failed(e, self.path))
    }
}

/// An error about a path inside a directory built aside (a temporary
/// renamed into place when complete) told as the path the user named.
pub fn in_final_dir(e: crate::error::Error, temp: &Path, dest: &Path) -> crate::error::Error {
    match e {
        crate::error::Error::Io { path, source } => {
            let path = match path.strip_prefix(temp) {
                Ok(rest) => dest.join(rest),
                Err(_) => path,
            };
            crate::error::Error::Io { path, source }
        }
        other => other,
    }
}

fn output_failed(e: io::Error, path: &Path) -> io::Error {
    if e.get_ref()
        .map(|i| i.is::<crate::error::Error>())
        .unwrap_or(false)
    {
        return e;
    }
    io::Error::new(
        e.kind(),
        crate::error::Error::Io {
            path: path.to_path_buf(),
            source: e,
        },
    )
}

/// Write `bytes` to `dest` atomically.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(dest)?;
    f.write_all(bytes).at(dest)?;
    f.commit()
}
