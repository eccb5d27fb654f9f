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

use crate::atomic::write_atomic;
use crate::blob_writer::BlobWriter;
use crate::descriptor::Descriptor;
use crate::digest::{unwrap_io, Digest};
use crate::error::{Error, IoContext, Result};
use crate::image::{parse_json, Image};
use crate::manifest::Manifest;
use crate::media::Compression;
use crate::progress::Progress;
use crate::transport::layout::{self, blob_path, BlobProvider, LayoutDir};

const COMPRESSED_TABLE_PREFIX: &str = "compressed-";
/// Side tables of build results (see `Store::side_table`).
pub const BUILD_CACHE_TABLE_PREFIX: &str = "build-cache-";

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

    /// A writer for blob `digest`: resumable (an interrupted earlier
    /// write continues), locked against a second writer of the same blob
    /// (`None`: another writer holds it now; wait and try again), verified
    /// and renamed into place on `commit`.
    pub fn try_blob_writer(
        &self,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<Option<BlobWriter>> {
        BlobWriter::for_digest(&self.blob_dir(digest.algorithm()), digest, size)
    }

    /// A writer for a sha256 blob whose digest is known only once written
    /// (compression output, a layer being built).
    pub fn new_blob_writer(&self) -> Result<BlobWriter> {
        BlobWriter::anonymous(&self.blob_dir(crate::digest::Algorithm::Sha256))
    }

    fn blob_dir(&self, algorithm: crate::digest::Algorithm) -> PathBuf {
        self.root.join("blobs").join(algorithm.name())
    }

    /// Stream `reader` into the store as `digest`. The blob becomes visible
    /// only once it verified; a concurrent writer of the same blob waits
    /// for the first and then finds it there.
    pub fn put_blob(
        &self,
        digest: &Digest,
        size: Option<u64>,
        mut reader: impl Read,
    ) -> Result<PathBuf> {
        let dest = self.blob_path(digest);
        loop {
            if dest.is_file()
                && size
                    .map(|s| fs::metadata(&dest).map(|m| m.len() == s).unwrap_or(false))
                    .unwrap_or(true)
            {
                return Ok(dest);
            }
            let Some(mut w) = self.try_blob_writer(digest, size)? else {
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            };
            // A reader starts at byte 0: what an earlier writer left goes.
            w.restart()?;
            // A local reader is not resumed: on failure nothing is kept.
            if let Err(e) = io::copy(&mut reader, &mut w) {
                w.discard();
                return Err(unwrap_io(e, &dest));
            }
            return w.commit().map(|(_, p)| p);
        }
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
        self.put(&Manifest::Image(image.clone()), name, progress)
    }

    /// Store an image, a whole index or an artifact, named `name`. Every
    /// blob goes through the store's blob writer (verified as written).
    pub fn put(
        &self,
        manifest: &Manifest,
        name: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<()> {
        manifest.check_complete(&self.location())?;
        let _hold = self.writer_lock()?;
        for blob in manifest.all_blobs() {
            let d = &blob.descriptor;
            if self.has_blob(&d.digest) {
                continue;
            }
            let mut reader = crate::progress::ProgressReader::new(
                blob.source.open_raw()?,
                progress,
                d.digest.short(),
                crate::progress::Phase::Copy,
                d.size,
            );
            self.put_blob(&d.digest, Some(d.size), &mut reader)
                .map_err(|e| match e {
                    Error::DigestMismatch {
                        expected, actual, ..
                    } => Error::DigestMismatch {
                        what: format!("blob {expected} ({})", blob.source.describe()),
                        expected,
                        actual,
                    },
                    other => other,
                })?;
            reader.finish();
        }
        for m in manifest.manifests_bottom_up() {
            self.put_bytes(m.raw())?;
        }
        match name {
            Some(n) => self.name_descriptor(n, &manifest.descriptor()),
            None => {
                let desc = manifest.descriptor();
                layout::update_index_json(&self.root, |list| {
                    if !list
                        .iter()
                        .any(|m| m.digest == desc.digest && m.names().is_empty())
                    {
                        list.push(desc);
                    }
                })
            }
        }
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
    pub fn name_descriptor(&self, name: &str, descriptor: &Descriptor) -> Result<()> {
        if !self.has_blob(&descriptor.digest) {
            return Err(Error::BlobNotStored {
                store: self.root.clone(),
                name: name.to_string(),
                digest: descriptor.digest.clone(),
            });
        }
        let named = descriptor.with_ref_name(Some(name));
        layout::update_index_json(&self.root, |list| {
            list.retain(|m| m.annotation(layout::REF_NAME) != Some(name));
            list.push(named);
        })
    }

    /// What a name (a reference, in any spelling) or digest names: an
    /// image, a whole index or an artifact.
    pub fn get(&self, wanted: &str) -> Result<Manifest> {
        layout::read_layout(self, Some(wanted)).map_err(|e| match e {
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

    /// Read an image by name or digest.
    pub fn get_image(&self, wanted: &str) -> Result<Image> {
        self.get_image_for(wanted, None)
    }

    /// Read an image by name; for a multi-platform index, the image for
    /// `platform` (default: this host).
    pub fn get_image_for(&self, wanted: &str, platform: Option<&crate::Platform>) -> Result<Image> {
        self.get(wanted)?
            .into_image(&format!("store:{wanted}"), platform)
    }

    pub fn list(&self) -> Result<Vec<StoreEntry>> {
        Ok(layout::list_entries(&LayoutDir(self.root.clone()))?
            .into_iter()
            .map(|d| StoreEntry {
                name: layout::entry_name(&d),
                digest: d.digest,
                media_type: d.media_type,
                size: d.size,
            })
            .collect())
    }

    /// Remove a name from the index (blobs stay until `prune`).
    pub fn remove_name(&self, wanted: &str) -> Result<bool> {
        let r = wanted.parse::<crate::Reference>().ok();
        let mut removed = false;
        layout::update_index_json(&self.root, |list| {
            let before = list.len();
            list.retain(|m| {
                let name = m.annotation(layout::REF_NAME).unwrap_or("");
                !(name == wanted || r.as_ref().map(|r| r.matches_str(name)).unwrap_or(false))
            });
            removed = list.len() != before;
        })?;
        Ok(removed)
    }

    /// Every descriptor reachable from `roots` through stored indexes and
    /// manifests (each once). Only manifests and indexes are read, never
    /// layers; blobs that are missing are still listed.
    fn reachable(&self, roots: Vec<Descriptor>) -> Vec<Descriptor> {
        let mut seen: HashSet<Digest> = HashSet::new();
        let mut out = Vec::new();
        let mut stack = roots;
        while let Some(d) = stack.pop() {
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
            if let Ok(children) = crate::manifest::referenced("stored manifest", &bytes) {
                stack.extend(children);
            }
        }
        out
    }

    /// Delete blobs no image in index.json reaches, except the recorded
    /// compressed forms of reachable layers (their records go with them
    /// otherwise). Returns (blobs removed, bytes freed).
    pub fn prune(&self) -> Result<(usize, u64)> {
        let _exclusive = self.lock(true)?;
        let roots = layout::list_entries(&LayoutDir(self.root.clone()))?;
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
        // Build caches are keyed by what was built and name the blob they
        // made in `digest`: a record goes with its blob. Every other table
        // is keyed by the blob it says something about (e.g. which
        // registries hold it): its records go with the blob too.
        for table in fs::read_dir(&tables).at(&tables)?.flatten() {
            let name = table.file_name().to_string_lossy().to_string();
            if name.starts_with(COMPRESSED_TABLE_PREFIX) || !table.path().is_dir() {
                continue;
            }
            let build_cache = name.starts_with(BUILD_CACHE_TABLE_PREFIX);
            let records = self.side_table(&name);
            for rec in fs::read_dir(table.path()).at(table.path())?.flatten() {
                let key = rec.file_name().to_string_lossy().to_string();
                if key.starts_with('.') {
                    continue;
                }
                let blob = if build_cache {
                    records
                        .get(&key)
                        .ok()
                        .flatten()
                        .and_then(|v| v.get("digest").and_then(Value::as_str).map(str::to_string))
                        .and_then(|d| d.parse::<Digest>().ok())
                        .map(|d| d.hex().to_string())
                } else {
                    Some(key.clone())
                };
                if !blob.map(|b| keep.contains(&b)).unwrap_or(false) {
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

    /// A side table: small records keyed by a string, one file each. A
    /// table named `build-cache-…` holds build results: each record names
    /// the blob it made in `digest`, and `prune` drops it with that blob.
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
    /// recompresses. `descriptor` has at least `digest` (and `mediaType`);
    /// the record also keeps the compressor's format version.
    pub fn record_compressed(
        &self,
        diff_id: &Digest,
        compression: Compression,
        descriptor: &Value,
    ) -> Result<()> {
        let mut record = descriptor.clone();
        if let Some(fields) = record.as_object_mut() {
            fields.insert(
                "format".into(),
                crate::compress::format_version(compression).into(),
            );
        }
        self.side_table(&Store::compressed_table(compression))
            .put(diff_id.hex(), &record)
    }

    /// The recorded compressed form of a diff_id, if its blob is stored and
    /// it was written by this version of the compressor (records from before
    /// versions were kept are version 1): an older form would push digests
    /// a fresh store no longer gives.
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
        let mut rec = rec;
        let format = rec
            .as_object_mut()
            .and_then(|fields| fields.remove("format"))
            .and_then(|v| v.as_u64())
            .unwrap_or(1);
        if format != u64::from(crate::compress::format_version(compression)) {
            return Ok(None);
        }
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
    fn has(&self, digest: &Digest) -> bool {
        self.has_blob(digest)
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
            return Err(Error::InvalidKey {
                key: key.to_string(),
            });
        }
        Ok(self.dir.join(key))
    }
    pub fn put(&self, key: &str, value: &Value) -> Result<()> {
        self.write(key, value, true)
    }
    /// `put` without the fsync, for a record that is only a hint (which
    /// repositories hold a blob): a crash may lose it or leave it
    /// unreadable, and its readers treat that as no record.
    pub fn put_hint(&self, key: &str, value: &Value) -> Result<()> {
        self.write(key, value, false)
    }
    fn write(&self, key: &str, value: &Value, durable: bool) -> Result<()> {
        let p = self.path(key)?;
        fs::create_dir_all(&self.dir).at(&self.dir)?;
        let bytes =
            serde_json::to_vec(value).unwrap_or_else(|_| unreachable!("a Value always serialises"));
        let mut f = crate::atomic::AtomicFile::create(&p)?;
        f.write_all(&bytes).at(&p)?;
        if durable {
            f.commit()
        } else {
            f.commit_unsynced()
        }
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
