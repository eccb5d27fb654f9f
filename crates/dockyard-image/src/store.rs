//! The local content-addressed cache: itself an OCI image layout under
//! `$DOCKYARD_CACHE` (or `~/.cache/dockyard`). Blobs are written to a temp
//! file beside their final name, verified, fsynced and renamed; index.json
//! changes take a file lock; side tables are small files written the same
//! atomic way.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::atomic::{write_atomic, AtomicFile};
use crate::digest::{unwrap_io, Digest, VerifyingReader};
use crate::error::{Error, IoContext, Result};
use crate::image::{parse_json, DescriptorInfo, Image};
use crate::media::Compression;
use crate::progress::Progress;
use crate::transport::layout::{self, blob_path, BlobProvider, LayoutDir};

const COMPRESSED_TABLE_PREFIX: &str = "compressed-";

pub struct Store {
    root: PathBuf,
}

/// An image the store holds under a name.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StoreEntry {
    pub name: String,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
}

impl Store {
    /// The default location: `$DOCKYARD_CACHE`, else `$XDG_CACHE_HOME/dockyard`,
    /// else `~/.cache/dockyard`.
    pub fn default_root() -> PathBuf {
        if let Some(p) = std::env::var_os("DOCKYARD_CACHE").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
            return PathBuf::from(p).join("dockyard");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        home.join(".cache").join("dockyard")
    }

    pub fn open_default() -> Result<Store> {
        Store::open(&Store::default_root())
    }

    /// Open (creating if needed) a store at `root`.
    pub fn open(root: &Path) -> Result<Store> {
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).at(&blobs)?;
        fs::create_dir_all(root.join("dockyard")).at(root)?;
        let layout_file = root.join("oci-layout");
        if !layout_file.exists() {
            write_atomic(&layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        if !root.join("index.json").exists() {
            layout::update_index_json(root, |_| {})?;
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        blob_path(&self.root, digest)
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Stream `reader` into the store as `digest`. The blob becomes visible
    /// only once it verified; a concurrent writer of the same blob is fine
    /// (both renames put identical bytes in place).
    pub fn put_blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
        reader: impl Read,
    ) -> Result<PathBuf> {
        let dest = self.blob_path(digest);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        if dest.is_file()
            && size
                .map(|s| fs::metadata(&dest).map(|m| m.len() == s).unwrap_or(false))
                .unwrap_or(true)
        {
            return Ok(dest);
        }
        let mut f = AtomicFile::create(&dest)?;
        let mut v = VerifyingReader::new(reader, digest.clone(), size, format!("blob {digest}"));
        {
            let mut w = io::BufWriter::with_capacity(1 << 20, f.file());
            io::copy(&mut v, &mut w).map_err(|e| unwrap_io(e, &dest))?;
            w.flush().at(&dest)?;
        }
        f.commit()?;
        Ok(dest)
    }

    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::sha256_of(bytes);
        self.put_blob(&d, Some(bytes.len() as u64), bytes)?;
        Ok(d)
    }

    /// Store an image and name it `name` (a normalised reference string).
    pub fn put_image(
        &self,
        image: &Image,
        name: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<()> {
        let _hold = self.writer_lock()?;
        layout::write_layout_dir(&self.root, image, name, progress)
    }

    fn lock(&self, exclusive: bool) -> Result<StoreLock> {
        use std::os::unix::io::AsRawFd;
        let p = self.root.join(".store.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .at(&p)?;
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        loop {
            // SAFETY: flock on a descriptor we own; released when it closes.
            if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
                return Ok(StoreLock { _file: file });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Error::Io { path: p, source: e });
            }
        }
    }

    /// Hold while adding blobs that will be named (shared among writers).
    pub fn writer_lock(&self) -> Result<StoreLock> {
        self.lock(false)
    }

    /// Name a manifest or index already in the store (replacing what the
    /// name pointed at before).
    pub fn name_descriptor(&self, name: &str, descriptor: Value) -> Result<()> {
        let d = DescriptorInfo::parse("descriptor", &descriptor)?;
        if !self.has_blob(&d.digest) {
            return Err(Error::InvalidImage {
                what: format!("the store ({})", self.root.display()),
                reason: format!("cannot name {name}: blob {} is not stored", d.digest),
            });
        }
        layout::update_index_json(&self.root, |list| {
            list.retain(|m| {
                m.get("annotations")
                    .and_then(|a| a.get(layout::REF_NAME))
                    .and_then(Value::as_str)
                    != Some(name)
            });
            list.push(descriptor);
        })
    }

    /// Read an image by name (a reference, in any spelling) or digest.
    pub fn get_image(&self, wanted: &str) -> Result<Image> {
        self.get_image_for(wanted, None)
    }

    /// Read an image by name; for a multi-platform index, the image for
    /// `platform` (default: this host).
    pub fn get_image_for(&self, wanted: &str, platform: Option<&crate::Platform>) -> Result<Image> {
        layout::read_layout(self, Some(wanted), platform).map_err(|e| match e {
            Error::ImageNotFound {
                wanted, present, ..
            } => Error::ImageNotFound {
                location: format!("the store ({})", self.root.display()),
                wanted,
                present,
            },
            other => other,
        })
    }

    pub fn list(&self) -> Result<Vec<StoreEntry>> {
        let entries = layout::list_entries(&LayoutDir(self.root.clone()))?;
        entries
            .into_iter()
            .map(|(name, v)| {
                let d = DescriptorInfo::parse("store index.json", &v)?;
                Ok(StoreEntry {
                    name,
                    digest: d.digest,
                    media_type: d.media_type,
                    size: d.size,
                })
            })
            .collect()
    }

    /// Remove a name from the index (blobs stay until `prune`).
    pub fn remove_name(&self, wanted: &str) -> Result<bool> {
        let r = wanted.parse::<crate::Reference>().ok();
        let mut removed = false;
        layout::update_index_json(&self.root, |list| {
            let before = list.len();
            list.retain(|m| {
                let name = m
                    .pointer(&format!(
                        "/annotations/{}",
                        layout::REF_NAME.replace('/', "~1")
                    ))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                !(name == wanted || r.as_ref().map(|r| r.matches_str(name)).unwrap_or(false))
            });
            removed = list.len() != before;
        })?;
        Ok(removed)
    }

    /// Every descriptor reachable from `roots` through stored indexes and
    /// manifests (each once). Only manifests and indexes are read, never
    /// layers; blobs that are missing are still listed.
    fn reachable(&self, roots: Vec<Value>) -> Vec<DescriptorInfo> {
        let mut seen: HashSet<Digest> = HashSet::new();
        let mut out = Vec::new();
        let mut stack = roots;
        while let Some(desc) = stack.pop() {
            let Ok(d) = DescriptorInfo::parse("store descriptor", &desc) else {
                continue;
            };
            if !seen.insert(d.digest.clone()) {
                continue;
            }
            let is_json_manifest = crate::media::is_index(&d.media_type)
                || crate::media::is_manifest(&d.media_type)
                || (d.media_type.is_empty() && d.size <= 4 << 20);
            out.push(d.clone());
            if !is_json_manifest || d.size > 4 << 20 {
                continue;
            }
            let Ok(bytes) = fs::read(self.blob_path(&d.digest)) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            if let Some(children) = v.get("manifests").and_then(Value::as_array) {
                stack.extend(children.iter().cloned());
            }
            if let Some(c) = v.get("config") {
                stack.push(c.clone());
            }
            if let Some(ls) = v.get("layers").and_then(Value::as_array) {
                stack.extend(ls.iter().cloned());
            }
        }
        out
    }

    /// Copy what a stored manifest or index reaches (every platform of an
    /// index) into the OCI layout `dir`, named `ref_name`. Blobs are linked
    /// when the filesystem allows, else copied.
    pub fn copy_tree_to_layout(
        &self,
        root: &Value,
        dir: &Path,
        ref_name: Option<&str>,
    ) -> Result<()> {
        crate::atomic::output_parent(dir)?;
        let blobs = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).at(&blobs)?;
        let layout_file = dir.join("oci-layout");
        if !layout_file.exists() {
            write_atomic(&layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        for d in self.reachable(vec![root.clone()]) {
            let src = self.blob_path(&d.digest);
            if !src.is_file() {
                return Err(Error::InvalidImage {
                    what: format!("the store ({})", self.root.display()),
                    reason: format!("blob {} is not stored", d.digest),
                });
            }
            let dest = blob_path(dir, &d.digest);
            if dest.is_file() {
                continue;
            }
            if fs::hard_link(&src, &dest).is_err() {
                let mut f = AtomicFile::create(&dest)?;
                let mut r = fs::File::open(&src).at(&src)?;
                io::copy(&mut r, f.file()).at(&dest)?;
                f.commit()?;
            }
        }
        let mut desc = root.clone();
        if let Some(name) = ref_name {
            desc["annotations"] = serde_json::json!({ layout::REF_NAME: name });
        }
        let digest = DescriptorInfo::parse("descriptor", root)?
            .digest
            .to_string();
        layout::update_index_json(dir, |list| {
            list.retain(|m| {
                let same_name = ref_name.is_some()
                    && m.get("annotations")
                        .and_then(|a| a.get(layout::REF_NAME))
                        .and_then(Value::as_str)
                        == ref_name;
                let same_unnamed =
                    ref_name.is_none() && m.get("digest").and_then(Value::as_str) == Some(&digest);
                !(same_name || same_unnamed)
            });
            list.push(desc);
        })
    }

    /// Delete blobs no image in index.json reaches, except the recorded
    /// compressed forms of reachable layers (their records go with them
    /// otherwise). Returns (blobs removed, bytes freed).
    pub fn prune(&self) -> Result<(usize, u64)> {
        let _exclusive = self.lock(true)?;
        let provider = LayoutDir(self.root.clone());
        let index = parse_json("store index.json", &provider.index_json()?)?;
        let roots: Vec<Value> = index
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut keep: HashSet<String> = self
            .reachable(roots)
            .into_iter()
            .map(|d| d.digest.hex().to_string())
            .collect();
        // Compressed forms of layers still in use stay; stale records go.
        let tables = self.root.join("dockyard");
        for table in fs::read_dir(&tables).at(&tables)?.flatten() {
            let name = table.file_name().to_string_lossy().to_string();
            if !name.starts_with(COMPRESSED_TABLE_PREFIX) {
                continue;
            }
            let records = self.side_table(&name);
            for rec in fs::read_dir(table.path()).at(table.path())?.flatten() {
                let key = rec.file_name().to_string_lossy().to_string();
                if key.starts_with('.') {
                    continue;
                }
                if keep.contains(&key) {
                    if let Ok(Some(v)) = records.get(&key) {
                        if let Some(d) = v
                            .get("digest")
                            .and_then(Value::as_str)
                            .and_then(|d| d.parse::<Digest>().ok())
                        {
                            keep.insert(d.hex().to_string());
                        }
                    }
                } else {
                    fs::remove_file(rec.path()).at(rec.path())?;
                }
            }
        }
        let dir = self.root.join("blobs").join("sha256");
        let mut removed = 0;
        let mut freed = 0;
        for entry in fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let name = entry.file_name().to_string_lossy().to_string();
            // Temp files belong to writers that may be running now.
            if name.starts_with(".dockyard-tmp-") || keep.contains(&name) {
                continue;
            }
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(entry.path()).at(entry.path())?;
            removed += 1;
            freed += len;
        }
        Ok((removed, freed))
    }

    /// A side table: small records keyed by a string, one file each.
    pub fn side_table(&self, name: &str) -> SideTable {
        SideTable {
            dir: self.root.join("dockyard").join(name),
        }
    }

    fn compressed_table(compression: Compression) -> String {
        let name = match compression {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        };
        format!("{COMPRESSED_TABLE_PREFIX}{name}")
    }

    /// Remember which compressed blob holds a diff_id, so a re-push never
    /// recompresses. `descriptor` has at least `digest` (and `mediaType`).
    pub fn record_compressed(
        &self,
        diff_id: &Digest,
        compression: Compression,
        descriptor: &Value,
    ) -> Result<()> {
        self.side_table(&Store::compressed_table(compression))
            .put(diff_id.hex(), descriptor)
    }

    /// The recorded compressed form of a diff_id, if its blob is stored.
    pub fn lookup_compressed(
        &self,
        diff_id: &Digest,
        compression: Compression,
    ) -> Result<Option<(Digest, Value)>> {
        let Some(rec) = self
            .side_table(&Store::compressed_table(compression))
            .get(diff_id.hex())?
        else {
            return Ok(None);
        };
        let digest = rec
            .get("digest")
            .and_then(Value::as_str)
            .and_then(|d| d.parse::<Digest>().ok());
        Ok(digest.filter(|d| self.has_blob(d)).map(|d| (d, rec)))
    }
}

/// The store is a layout whose blobs were verified when written.
impl BlobProvider for Store {
    fn location(&self) -> String {
        format!("the store ({})", self.root.display())
    }
    fn blob(&self, digest: &Digest) -> Result<crate::layer::BlobSource> {
        let p = self.blob_path(digest);
        if !p.is_file() {
            return Err(Error::InvalidArchive {
                path: self.root.clone(),
                reason: format!("blob {digest} is missing from the store"),
            });
        }
        crate::layer::BlobSource::store_blob(&p)
    }
    fn index_json(&self) -> Result<Vec<u8>> {
        LayoutDir(self.root.clone()).index_json()
    }
}

/// A hold on the whole store. Writers take it shared from their first blob
/// until the image is named, so a concurrent `prune` (which takes it
/// exclusive) never deletes blobs that are about to be referenced.
pub struct StoreLock {
    _file: fs::File,
}

pub struct SideTable {
    dir: PathBuf,
}

impl SideTable {
    fn path(&self, key: &str) -> Result<PathBuf> {
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            || key.starts_with('.')
        {
            return Err(Error::Usage(format!("invalid side-table key {key:?}")));
        }
        Ok(self.dir.join(key))
    }
    pub fn put(&self, key: &str, value: &Value) -> Result<()> {
        let p = self.path(key)?;
        fs::create_dir_all(&self.dir).at(&self.dir)?;
        let bytes =
            serde_json::to_vec(value).unwrap_or_else(|_| unreachable!("a Value always serialises"));
        write_atomic(&p, &bytes)
    }
    pub fn get(&self, key: &str) -> Result<Option<Value>> {
        let p = self.path(key)?;
        match fs::read(&p) {
            Ok(b) => parse_json(&p.display().to_string(), &b).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io { path: p, source: e }),
        }
    }
}
