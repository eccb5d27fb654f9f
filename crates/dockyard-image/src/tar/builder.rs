//! `LayerBuilder`: collect files from host directories, in-memory contents
//! and deletions, then write one reproducible layer tar.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::normalize_image_path;
use super::writer::{EntryHeader, EntryKind, TarWriter};
use crate::digest::{unwrap_io, Digest, HashingWriter};
use crate::error::{Error, IoContext, Result};
use crate::image::source_date_epoch;
use crate::layer::{BlobSource, Layer};
use crate::media;

/// How entries are stamped.
#[derive(Clone, Debug)]
pub struct LayerOptions {
    /// mtime of every entry; defaults to `SOURCE_DATE_EPOCH` or 0.
    pub mtime: u64,
    /// Keep host uid/gid instead of 0/0.
    pub keep_owner: bool,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            mtime: source_date_epoch(),
            keep_owner: false,
        }
    }
}

#[derive(Clone, Debug)]
enum Source {
    Dir {
        mode: u32,
        owner: (u64, u64),
    },
    HostFile {
        path: PathBuf,
        size: u64,
        mode: u32,
        owner: (u64, u64),
        inode: Option<(u64, u64)>,
    },
    Bytes {
        data: Vec<u8>,
        mode: u32,
    },
    Symlink {
        target: Vec<u8>,
        owner: (u64, u64),
    },
    Fifo {
        mode: u32,
        owner: (u64, u64),
    },
    /// An empty marker file: `.wh.name` or `.wh..wh..opq`.
    Whiteout,
}

#[derive(Default, Debug)]
pub struct LayerBuilder {
    entries: BTreeMap<Vec<u8>, Source>,
    options: LayerOptions,
}

fn dest_path(dest: &[u8], what: &str) -> Result<Vec<u8>> {
    normalize_image_path(dest).map_err(|reason| Error::UnsafePath {
        path: format!("{what} {}", String::from_utf8_lossy(dest)),
        reason,
    })
}

fn join(base: &[u8], name: &[u8]) -> Vec<u8> {
    if base.is_empty() {
        name.to_vec()
    } else {
        let mut p = base.to_vec();
        p.push(b'/');
        p.extend_from_slice(name);
        p
    }
}

impl LayerBuilder {
    pub fn new(options: LayerOptions) -> LayerBuilder {
        LayerBuilder {
            entries: BTreeMap::new(),
            options,
        }
    }

    /// Add a host file or directory tree at `dest` inside the image. A
    /// directory's contents go under `dest` (`dir` → `/opt/app` puts
    /// `dir/x` at `/opt/app/x`).
    pub fn add_path(&mut self, host: &Path, dest: &str) -> Result<&mut Self> {
        let dest = dest_path(dest.as_bytes(), "destination")?;
        let meta = fs::symlink_metadata(host).at(host)?;
        if meta.is_dir() {
            if !dest.is_empty() {
                self.entries.insert(dest.clone(), self.dir_source(&meta));
            }
            self.walk(host, &dest)?;
        } else {
            if dest.is_empty() {
                return Err(Error::InvalidImagePath {
                    path: host.display().to_string(),
                    reason: "a single file needs a destination path inside the image, not /".into(),
                });
            }
            self.add_host_entry(host, &meta, dest)?;
        }
        Ok(self)
    }

    fn owner(&self, meta: &fs::Metadata) -> (u64, u64) {
        if self.options.keep_owner {
            (u64::from(meta.uid()), u64::from(meta.gid()))
        } else {
            (0, 0)
        }
    }

    fn dir_source(&self, meta: &fs::Metadata) -> Source {
        Source::Dir {
            mode: meta.mode() & 0o7777,
            owner: self.owner(meta),
        }
    }

    fn walk(&mut self, dir: &Path, dest: &[u8]) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .at(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .at(dir)?;
        names.sort();
        for name in names {
            let host = dir.join(&name);
            let meta = fs::symlink_metadata(&host).at(&host)?;
            let path = join(dest, name.as_bytes());
            if meta.is_dir() {
                self.entries.insert(path.clone(), self.dir_source(&meta));
                self.walk(&host, &path)?;
            } else {
                self.add_host_entry(&host, &meta, path)?;
            }
        }
        Ok(())
    }

    fn add_host_entry(&mut self, host: &Path, meta: &fs::Metadata, path: Vec<u8>) -> Result<()> {
        let ft = meta.file_type();
        let owner = self.owner(meta);
        let source = if ft.is_file() {
            Source::HostFile {
                path: host.to_path_buf(),
                size: meta.len(),
                mode: meta.mode() & 0o7777,
                owner,
                inode: (meta.nlink() > 1).then(|| (meta.dev(), meta.ino())),
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(host).at(host)?;
            Source::Symlink {
                target: target.as_os_str().as_bytes().to_vec(),
                owner,
            }
        } else if ft.is_dir() {
            self.dir_source(meta)
        } else if ft.is_fifo() {
            Source::Fifo {
                mode: meta.mode() & 0o7777,
                owner,
            }
        } else if ft.is_socket() {
            // Sockets cannot be stored in a tar; skip them as docker does.
            return Ok(());
        } else {
            return Err(Error::UnsafePath {
                path: host.display().to_string(),
                reason: "device files cannot be added to a layer".into(),
            });
        };
        self.entries.insert(path, source);
        Ok(())
    }

    /// Add a file with the given contents (`/etc/motd` → b"hi").
    pub fn add_contents(
        &mut self,
        dest: &str,
        data: impl Into<Vec<u8>>,
        mode: u32,
    ) -> Result<&mut Self> {
        let path = dest_path(dest.as_bytes(), "file")?;
        if path.is_empty() {
            return Err(Error::InvalidImagePath {
                path: "/".into(),
                reason: "a file cannot be written at /".into(),
            });
        }
        self.entries.insert(
            path,
            Source::Bytes {
                data: data.into(),
                mode: mode & 0o7777,
            },
        );
        Ok(self)
    }

    pub fn add_dir(&mut self, dest: &str, mode: u32) -> Result<&mut Self> {
        let path = dest_path(dest.as_bytes(), "directory")?;
        if !path.is_empty() {
            self.entries.insert(
                path,
                Source::Dir {
                    mode: mode & 0o7777,
                    owner: (0, 0),
                },
            );
        }
        Ok(self)
    }

    pub fn add_symlink(&mut self, dest: &str, target: &str) -> Result<&mut Self> {
        let path = dest_path(dest.as_bytes(), "symlink")?;
        self.entries.insert(
            path,
            Source::Symlink {
                target: target.as_bytes().to_vec(),
                owner: (0, 0),
            },
        );
        Ok(self)
    }

    /// Delete `path` of a lower layer: writes the OCI whiteout `.wh.<name>`.
    pub fn delete(&mut self, dest: &str) -> Result<&mut Self> {
        let path = dest_path(dest.as_bytes(), "deleted path")?;
        let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&b""[..], &path[..]),
        };
        if name.is_empty() {
            return Err(Error::InvalidImagePath {
                path: "/".into(),
                reason: "the root cannot be deleted".into(),
            });
        }
        let mut wh = b".wh.".to_vec();
        wh.extend_from_slice(name);
        self.entries.insert(join(parent, &wh), Source::Whiteout);
        Ok(self)
    }

    /// Hide everything lower layers have under `dir` (opaque whiteout).
    pub fn make_opaque(&mut self, dir: &str) -> Result<&mut Self> {
        let path = dest_path(dir.as_bytes(), "opaque directory")?;
        self.entries
            .insert(join(&path, b".wh..wh..opq"), Source::Whiteout);
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Write the tar to `out`; returns its digest (the diff_id) and size.
    pub fn write_to<W: Write>(&self, out: W) -> Result<(W, Digest, u64)> {
        let mut hashing = HashingWriter::new(out);
        self.write_entries(&mut hashing)
            .map_err(|e| unwrap_io(e, Path::new("layer")))?;
        let (out, digest, size) = hashing.finish();
        Ok((out, digest, size))
    }

    fn write_entries<W: Write>(&self, out: W) -> io::Result<()> {
        // Every parent directory gets an entry (0755 root:root) unless given.
        let mut all: BTreeMap<&[u8], Option<&Source>> = BTreeMap::new();
        for (path, src) in &self.entries {
            let mut i = 0;
            while let Some(pos) = path[i..].iter().position(|&b| b == b'/') {
                all.entry(&path[..i + pos]).or_insert(None);
                i += pos + 1;
            }
            all.insert(path, Some(src));
        }
        let mut tar = TarWriter::new(out);
        let mut first_of_inode: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
        let base = |path: &[u8], kind, mode, owner: (u64, u64), size| EntryHeader {
            path: path.to_vec(),
            kind,
            mode,
            uid: owner.0,
            gid: owner.1,
            uname: String::new(),
            gname: String::new(),
            mtime: self.options.mtime,
            size,
        };
        for (path, src) in all {
            match src {
                None => tar.append(
                    &base(path, EntryKind::Dir, 0o755, (0, 0), 0),
                    &mut io::empty(),
                )?,
                Some(Source::Dir { mode, owner }) => tar.append(
                    &base(path, EntryKind::Dir, *mode, *owner, 0),
                    &mut io::empty(),
                )?,
                Some(Source::HostFile {
                    path: host,
                    size,
                    mode,
                    owner,
                    inode,
                }) => {
                    if let Some(ino) = inode {
                        if let Some(first) = first_of_inode.get(ino) {
                            let h =
                                base(path, EntryKind::Hardlink(first.clone()), *mode, *owner, 0);
                            tar.append(&h, &mut io::empty())?;
                            continue;
                        }
                        first_of_inode.insert(*ino, path.to_vec());
                    }
                    let mut f = File::open(host).map_err(|e| {
                        io::Error::new(e.kind(), format!("{}: {e}", host.display()))
                    })?;
                    tar.append(&base(path, EntryKind::File, *mode, *owner, *size), &mut f)?;
                }
                Some(Source::Bytes { data, mode }) => {
                    let h = base(path, EntryKind::File, *mode, (0, 0), data.len() as u64);
                    tar.append(&h, &mut &data[..])?
                }
                Some(Source::Symlink { target, owner }) => tar.append(
                    &base(path, EntryKind::Symlink(target.clone()), 0o777, *owner, 0),
                    &mut io::empty(),
                )?,
                Some(Source::Fifo { mode, owner }) => tar.append(
                    &base(path, EntryKind::Fifo, *mode, *owner, 0),
                    &mut io::empty(),
                )?,
                Some(Source::Whiteout) => tar.append(
                    &base(path, EntryKind::File, 0o644, (0, 0), 0),
                    &mut io::empty(),
                )?,
            }
        }
        tar.finish()?;
        Ok(())
    }

    /// Write the layer straight into the store (one pass, hashed as it is
    /// written) and return it as an uncompressed OCI layer read from there.
    pub fn build_in_store(&self, store: &crate::store::Store) -> Result<Layer> {
        let (writer, _, _) = self.write_to(store.new_blob_writer()?)?;
        let (digest, path) = writer.commit()?;
        let source = BlobSource::store_blob(&path)?;
        Layer::new(digest.clone(), media::OCI_LAYER.to_string(), digest, source)
    }

    /// Write the layer to a temporary file in `temp_dir` and return it as an
    /// uncompressed OCI layer.
    pub fn build(&self, temp_dir: &Path) -> Result<Layer> {
        let temp = tempfile::Builder::new()
            .prefix(".dockyard-layer-")
            .tempfile_in(temp_dir)
            .at(temp_dir)?;
        let (file, path) = temp.into_parts();
        let writer = io::BufWriter::with_capacity(1 << 20, file);
        let (writer, digest, _size) = self.write_to(writer)?;
        writer
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .at(&*path)?;
        let source = BlobSource::temp_file(path)?;
        Layer::new(digest.clone(), media::OCI_LAYER.to_string(), digest, source)
    }
}
