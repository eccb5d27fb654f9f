//! Flatten an image's layers into a directory, applying OCI whiteouts.
//!
//! Layer paths are untrusted: absolute paths, `..`, writing through a
//! symlink, hardlinks that leave the root and device nodes are refused with
//! an error naming the entry. The rootfs is built in a temporary directory
//! beside the destination and renamed into place only when complete, so a
//! refused image leaves nothing behind.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use dockyard_image::error::{Error, IoContext, Result};
use dockyard_image::progress::Progress;
use dockyard_image::Image;

fn unsafe_path(path: &[u8], reason: impl Into<String>) -> Error {
    Error::UnsafePath {
        path: String::from_utf8_lossy(path).into_owned(),
        reason: reason.into(),
    }
}

/// Split an entry path into safe components (no root, no `..`).
fn components(raw: &[u8]) -> Result<Vec<Vec<u8>>> {
    if raw.starts_with(b"/") {
        return Err(unsafe_path(raw, "absolute path"));
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(unsafe_path(raw, "'..' leaves the root")),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

struct Rootfs<'a> {
    root: &'a Path,
    /// Paths written by the current layer: whiteouts only hide lower layers.
    this_layer: HashSet<Vec<u8>>,
    dir_modes: Vec<(PathBuf, u32)>,
    is_root: bool,
    /// Keep setuid/setgid bits (as root they are always kept).
    keep_setuid: bool,
    /// Directory mtimes, set last (writing children changes them).
    dir_times: Vec<(PathBuf, u64)>,
}

/// Set a path's mtime (and atime) without following a symlink.
fn set_mtime(path: &Path, secs: u64) -> Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::Io {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"),
    })?;
    let t = libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: c is a valid NUL-terminated path and `times` holds two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(Error::Io {
            path: path.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

impl Rootfs<'_> {
    /// The host path of `comps`, creating missing parent directories and
    /// refusing to pass through a symlink or a non-directory.
    fn prepare_parent(&self, raw: &[u8], comps: &[Vec<u8>]) -> Result<PathBuf> {
        let mut p = self.root.to_path_buf();
        for c in &comps[..comps.len().saturating_sub(1)] {
            p.push(OsStr::from_bytes(c));
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(unsafe_path(
                        raw,
                        format!("goes through the symlink {}", String::from_utf8_lossy(c)),
                    ))
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(unsafe_path(raw, "a parent is not a directory")),
                Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&p).at(&p)?,
                Err(e) => return Err(Error::Io { path: p, source: e }),
            }
        }
        if let Some(last) = comps.last() {
            p.push(OsStr::from_bytes(last));
        }
        Ok(p)
    }

    fn remove_existing(path: &Path) -> Result<()> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(path).at(path),
            Ok(_) => fs::remove_file(path).at(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io {
                path: path.into(),
                source: e,
            }),
        }
    }

    fn apply_layer(&mut self, reader: impl Read, layer_name: &str) -> Result<()> {
        self.this_layer.clear();
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|e| Error::CorruptLayer {
            layer: layer_name.into(),
            reason: format!("not a tar: {e}"),
        })?;
        for entry in entries {
            let entry = entry.map_err(|e| layer_error(layer_name, e))?;
            self.apply_entry(entry, layer_name).map_err(|e| match e {
                Error::UnsafePath { path, reason } => Error::UnsafePath {
                    path: format!("{layer_name}: {path}"),
                    reason,
                },
                other => other,
            })?;
        }
        // Read to the end so the layer's digest is verified.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| layer_error(layer_name, e))?;
        Ok(())
    }

    fn apply_entry<R: Read>(&mut self, mut entry: tar::Entry<R>, layer_name: &str) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let comps = components(&raw)?;
        let Some(name) = comps.last().cloned() else {
            return Ok(()); // the root itself
        };
        let parent_key = comps[..comps.len() - 1].join(&b'/');
        if name == b".wh..wh..opq" {
            let dir = self.prepare_parent(&raw, &comps)?;
            let dir = dir
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| self.root.to_path_buf());
            if let Ok(list) = fs::read_dir(&dir) {
                for child in list {
                    let child = child.at(&dir)?;
                    let mut key = parent_key.clone();
                    if !key.is_empty() {
                        key.push(b'/');
                    }
                    key.extend_from_slice(child.file_name().as_bytes());
                    if !self.this_layer.contains(&key) {
                        Self::remove_existing(&child.path())?;
                    }
                }
            }
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
                return Err(unsafe_path(&raw, "whiteout of an invalid name"));
            }
            let mut target = comps.clone();
            *target
                .last_mut()
                .unwrap_or_else(|| unreachable!("non-empty")) = hidden.to_vec();
            let key = target.join(&b'/');
            if !self.this_layer.contains(&key) {
                let p = self.prepare_parent(&raw, &target)?;
                Self::remove_existing(&p)?;
            }
            return Ok(());
        }
        let path = self.prepare_parent(&raw, &comps)?;
        let key = comps.join(&b'/');
        let header = entry.header().clone();
        let mut mode = header.mode().map_err(|e| layer_error(layer_name, e))? & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let kind = header.entry_type();
        // setuid/setgid files owned by the wrong user are a hazard: kept
        // only where ownership is kept too (root), or when asked. (A
        // directory's setgid bit only passes its group on: kept.)
        if !self.is_root && !self.keep_setuid && kind != tar::EntryType::Directory {
            mode &= !0o6000;
        }
        match kind {
            tar::EntryType::Directory => {
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        Self::remove_existing(&path)?;
                        fs::create_dir(&path).at(&path)?;
                    }
                    Err(_) => fs::create_dir(&path).at(&path)?,
                }
                self.dir_modes.push((path.clone(), mode));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                Self::remove_existing(&path)?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&path)
                    .at(&path)?;
                let mut out = dockyard_image::atomic::OutputWriter::new(&mut f, &path);
                io::copy(&mut entry, &mut out).map_err(|e| layer_error(layer_name, e))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_path(&raw, "symlink without a target"))?
                    .into_owned();
                Self::remove_existing(&path)?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path).at(&path)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_path(&raw, "hardlink without a target"))?
                    .into_owned();
                let tcomps =
                    components(target.strip_prefix(b"/").unwrap_or(&target)).map_err(|_| {
                        unsafe_path(
                            &raw,
                            format!(
                                "hardlink to {} leaves the root",
                                String::from_utf8_lossy(&target)
                            ),
                        )
                    })?;
                if tcomps.is_empty() {
                    return Err(unsafe_path(&raw, "hardlink to the root"));
                }
                let tpath = self.prepare_parent(&target, &tcomps)?;
                let m = fs::symlink_metadata(&tpath).map_err(|_| {
                    unsafe_path(
                        &raw,
                        format!(
                            "hardlink target {} does not exist",
                            String::from_utf8_lossy(&target)
                        ),
                    )
                })?;
                if m.is_dir() {
                    return Err(unsafe_path(&raw, "hardlink to a directory"));
                }
                Self::remove_existing(&path)?;
                fs::hard_link(&tpath, &path).at(&path)?;
            }
            tar::EntryType::Fifo => {
                Self::remove_existing(&path)?;
                let c = std::ffi::CString::new(path.as_os_str().as_bytes())
                    .map_err(|_| unsafe_path(&raw, "NUL in path"))?;
                // SAFETY: c is a valid NUL-terminated path.
                if unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) } != 0 {
                    return Err(Error::Io {
                        path,
                        source: io::Error::last_os_error(),
                    });
                }
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(unsafe_path(
                    &raw,
                    "device nodes are not allowed in an exported rootfs",
                ));
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {
                return Ok(());
            }
            other => {
                return Err(unsafe_path(
                    &raw,
                    format!("unsupported tar entry type {other:?}"),
                ));
            }
        }
        if self.is_root && kind != tar::EntryType::Link {
            let uid = header.uid().unwrap_or(0) as libc::uid_t;
            let gid = header.gid().unwrap_or(0) as libc::gid_t;
            let c = std::ffi::CString::new(path.as_os_str().as_bytes())
                .map_err(|_| unsafe_path(&raw, "NUL in path"))?;
            // SAFETY: c is a valid NUL-terminated path; lchown does not follow symlinks.
            unsafe { libc::lchown(c.as_ptr(), uid, gid) };
        }
        // The mode after the owner: a chown clears setuid/setgid bits.
        if matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).at(&path)?;
        }
        // The mtime the layer gives (as docker export and umoci unpack
        // keep it); directories get theirs once their children are written.
        match kind {
            tar::EntryType::Directory => self.dir_times.push((path.clone(), mtime)),
            tar::EntryType::Link => {}
            _ => set_mtime(&path, mtime)?,
        }
        self.this_layer.insert(key);
        Ok(())
    }
}

/// True when every component of `path` below `root` is a directory, not a
/// symlink (checked without following links).
fn is_real_dir_below(root: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(root) else {
        return false;
    };
    let mut p = root.to_path_buf();
    for c in rel.components() {
        p.push(c);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() && !m.file_type().is_symlink() => {}
            _ => return false,
        }
    }
    true
}

fn layer_error(layer: &str, e: io::Error) -> Error {
    if e.get_ref().map(|i| i.is::<Error>()).unwrap_or(false) {
        if let Some(Ok(inner)) = e.into_inner().map(|b| b.downcast::<Error>()) {
            return *inner;
        }
        return Error::CorruptLayer {
            layer: layer.into(),
            reason: "unreadable".into(),
        };
    }
    Error::CorruptLayer {
        layer: layer.into(),
        reason: format!("corrupt or truncated layer: {e}"),
    }
}

/// How to export.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// Keep setuid/setgid bits when not running as root (files then belong
    /// to the user running the export, not to their owner in the image).
    pub keep_setuid: bool,
}

/// Export the flattened rootfs of `image` into `dest`, which must not exist
/// (or be an empty directory). Returns the number of layers applied.
/// Files keep the mode and mtime their layer gives. As root they keep
/// their owners too; otherwise they belong to the user running the export
/// and lose setuid/setgid bits unless `keep_setuid`.
pub fn export_rootfs(image: &Image, dest: &Path, progress: &dyn Progress) -> Result<usize> {
    export_rootfs_with(image, dest, &ExportOptions::default(), progress)
}

/// `export_rootfs` with options.
pub fn export_rootfs_with(
    image: &Image,
    dest: &Path,
    options: &ExportOptions,
    progress: &dyn Progress,
) -> Result<usize> {
    let parent = dockyard_image::atomic::output_parent(dest)?;
    if let Ok(mut list) = fs::read_dir(dest) {
        if list.next().is_some() {
            return Err(Error::OutputExists {
                path: dest.to_path_buf(),
                reason: "not empty",
            });
        }
    } else if dest.exists() {
        return Err(Error::OutputExists {
            path: dest.to_path_buf(),
            reason: "not a directory",
        });
    }
    dockyard_image::atomic::remove_stale_temps(&parent);
    let temp = tempfile::Builder::new()
        .prefix(&format!("{}export-", dockyard_image::atomic::temp_prefix()))
        .tempdir_in(&parent)
        .at(&parent)?;
    dockyard_image::atomic::register_temp(temp.path());
    // Errors inside the directory being built name the one the user asked for.
    let fill = || -> Result<()> {
        let mut fs_state = Rootfs {
            root: temp.path(),
            this_layer: HashSet::new(),
            dir_modes: Vec::new(),
            is_root: unsafe { libc::geteuid() } == 0,
            keep_setuid: options.keep_setuid,
            dir_times: Vec::new(),
        };
        for layer in image.layers() {
            let name = format!("layer {}", layer.digest());
            // Counted in the layer's stored bytes, as its size is.
            let id = layer.digest().short();
            let raw = dockyard_image::progress::ProgressReader::new(
                layer.source().open_raw()?,
                progress,
                id.clone(),
                dockyard_image::progress::Phase::Extract,
                layer.size(),
            );
            let reader = layer.open_uncompressed_from(Box::new(raw))?;
            fs_state.apply_layer(reader, &name)?;
            progress.finish(&id);
        }
        // Directory modes last, deepest first, so read-only dirs did not block children.
        let mut modes = std::mem::take(&mut fs_state.dir_modes);
        modes.reverse();
        for (p, mode) in modes {
            // A later entry may have replaced a parent with a symlink: only a
            // path of real directories inside the root gets its mode.
            if is_real_dir_below(temp.path(), &p) {
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)).at(&p)?;
            }
        }
        let mut times = std::mem::take(&mut fs_state.dir_times);
        times.reverse();
        let mut done = HashSet::new();
        for (p, mtime) in times {
            // The newest layer's time for a directory is the one that counts.
            if done.insert(p.clone()) && is_real_dir_below(temp.path(), &p) {
                set_mtime(&p, mtime)?;
            }
        }
        Ok(())
    };
    fill().map_err(|e| dockyard_image::atomic::in_final_dir(e, temp.path(), dest))?;
    // The new directory itself gets the mode any tool's output would.
    dockyard_image::atomic::apply_umask(temp.path(), true).at(temp.path())?;
    let built = temp.keep();
    if dest.exists() {
        fs::remove_dir(dest).at(dest)?;
    }
    if let Err(e) = dockyard_image::atomic::commit_temp(&built, || fs::rename(&built, dest)) {
        let _ = fs::remove_dir_all(&built);
        return Err(Error::Io {
            path: dest.into(),
            source: e,
        });
    }
    Ok(image.layers().len())
}
