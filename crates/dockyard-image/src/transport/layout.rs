//! OCI image layouts: a directory (`oci:DIR[:REF]`) or a tar of one
//! (`oci-archive:PATH[:REF]`, and the OCI half of Docker ≥25 archives).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::tar_index::TarIndex;
use crate::atomic::{write_atomic, AtomicFile};
use crate::descriptor::Descriptor;
use crate::digest::{unwrap_io, Digest};
use crate::error::{Error, IoContext, Result};
use crate::image::{config_diff_ids, parse_json, Image, ManifestInfo};
use crate::index::{Index, IndexManifest};
use crate::layer::{BlobSource, Layer};
use crate::manifest::{classify, referenced, Artifact, Blob, Kind, Manifest};
use crate::media;
use crate::progress::{Phase, Progress, ProgressReader};
use crate::reference::Reference;

pub use crate::descriptor::{CONTAINERD_NAME, REF_NAME};
const MANIFEST_LIMIT: u64 = 4 << 20;
const CONFIG_LIMIT: u64 = 64 << 20;

/// Somewhere blobs and an `index.json` can be read from.
pub trait BlobProvider {
    fn location(&self) -> String;
    fn blob(&self, digest: &Digest) -> Result<BlobSource>;
    /// Whether the blob is there at all.
    fn has(&self, digest: &Digest) -> bool;
    fn index_json(&self) -> Result<Vec<u8>>;
}

/// A layout directory on disk.
pub struct LayoutDir(pub PathBuf);

impl BlobProvider for LayoutDir {
    fn location(&self) -> String {
        self.0.display().to_string()
    }
    fn blob(&self, digest: &Digest) -> Result<BlobSource> {
        let p = blob_path(&self.0, digest);
        if !p.exists() {
            return Err(Error::InvalidArchive {
                path: self.0.clone(),
                reason: format!("blob {digest} is missing"),
            });
        }
        BlobSource::whole_file(&p)
    }
    fn has(&self, digest: &Digest) -> bool {
        blob_path(&self.0, digest).is_file()
    }
    fn index_json(&self) -> Result<Vec<u8>> {
        let p = self.0.join("index.json");
        if self.0.is_file() {
            return Err(Error::InvalidArchive {
                path: self.0.clone(),
                reason: "is a file, not an OCI layout directory; read a tar with docker-archive: or oci-archive:".into(),
            });
        }
        if !p.exists() {
            return Err(Error::InvalidArchive {
                path: self.0.clone(),
                reason: "no index.json: not an OCI image layout".into(),
            });
        }
        fs::read(&p).at(p)
    }
}

impl BlobProvider for TarIndex {
    fn location(&self) -> String {
        self.path.display().to_string()
    }
    fn blob(&self, digest: &Digest) -> Result<BlobSource> {
        self.source(&format!(
            "blobs/{}/{}",
            digest.algorithm().name(),
            digest.hex()
        ))
    }
    fn has(&self, digest: &Digest) -> bool {
        self.contains(&format!(
            "blobs/{}/{}",
            digest.algorithm().name(),
            digest.hex()
        ))
    }
    fn index_json(&self) -> Result<Vec<u8>> {
        if !self.contains("index.json") {
            return Err(Error::InvalidArchive {
                path: self.path.clone(),
                reason: "no index.json: not an OCI image archive".into(),
            });
        }
        self.read("index.json", MANIFEST_LIMIT)
    }
}

pub fn blob_path(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs")
        .join(digest.algorithm().name())
        .join(digest.hex())
}

/// Read a small blob whole and check it against its descriptor.
pub fn read_verified(
    p: &dyn BlobProvider,
    d: &Descriptor,
    what: &str,
    limit: u64,
) -> Result<Vec<u8>> {
    let bytes = p.blob(&d.digest)?.read_all(limit)?;
    let actual = Digest::compute(d.digest.algorithm(), &bytes);
    if actual != d.digest {
        return Err(Error::DigestMismatch {
            what: format!("{what} in {}", p.location()),
            expected: d.digest.clone(),
            actual,
        });
    }
    if bytes.len() as u64 != d.size {
        return Err(Error::SizeMismatch {
            what: format!("{what} {} in {}", d.digest, p.location()),
            expected: d.size,
            actual: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

fn entry_matches(desc: &Descriptor, wanted: &str) -> bool {
    let names = desc.names();
    if names.iter().any(|n| n == wanted) {
        return true;
    }
    if let Ok(d) = wanted.parse::<Digest>() {
        return desc.digest == d;
    }
    match wanted.parse::<Reference>() {
        Ok(r) => names.iter().any(|n| r.matches_str(n)),
        Err(_) => false,
    }
}

/// The entries of a layout's index.json.
pub fn list_entries(p: &dyn BlobProvider) -> Result<Vec<Descriptor>> {
    let what = format!("{} index.json", p.location());
    Ok(IndexManifest::parse(&what, p.index_json()?)?
        .manifests()
        .to_vec())
}

/// The name a user would give for an entry (for messages and `cache ls`).
pub fn entry_name(d: &Descriptor) -> String {
    d.names()
        .into_iter()
        .next()
        .unwrap_or_else(|| d.digest.to_string())
}

/// The entry of a layout's index.json that `wanted` names (ref name, full
/// reference, digest, or `NAME@DIGEST`); without a name the layout must
/// hold exactly one.
pub fn find_entry(p: &dyn BlobProvider, wanted: Option<&str>) -> Result<Descriptor> {
    let entries = list_entries(p)?;
    let mut chosen: Vec<&Descriptor> = entries
        .iter()
        .filter(|d| wanted.map(|w| entry_matches(d, w)).unwrap_or(true))
        .collect();
    // `NAME@DIGEST` picks one of several entries of the same name.
    if chosen.is_empty() {
        if let Some((name, digest)) = wanted.and_then(|w| w.rsplit_once('@')) {
            if let Ok(digest) = digest.parse::<Digest>() {
                chosen = entries
                    .iter()
                    .filter(|d| entry_matches(d, name) && d.digest == digest)
                    .collect();
            }
        }
    }
    let present = || entries.iter().map(entry_name).collect::<Vec<_>>();
    let mut digests: Vec<Digest> = chosen.iter().map(|d| d.digest.clone()).collect();
    digests.dedup();
    match (digests.len(), wanted) {
        (1, _) => Ok(chosen[0].clone()),
        (0, Some(w)) => Err(Error::ImageNotFound {
            location: p.location(),
            wanted: w.to_string(),
            present: present(),
        }),
        (0, None) => Err(Error::InvalidArchive {
            path: p.location().into(),
            reason: "index.json lists no images".into(),
        }),
        (_, Some(w)) => Err(Error::AmbiguousName {
            location: p.location(),
            name: w.to_string(),
            digests,
        }),
        (_, None) => Err(Error::AmbiguousImage {
            location: p.location(),
            present: present(),
        }),
    }
}

/// Read what a layout entry names: an image, an index (every child
/// loaded) or an artifact.
pub fn read_layout(p: &dyn BlobProvider, wanted: Option<&str>) -> Result<Manifest> {
    let desc = find_entry(p, wanted)?;
    read_manifest(p, &desc, 0)
}

/// Read the manifest `desc` names from a provider, with its children.
pub fn read_manifest(p: &dyn BlobProvider, desc: &Descriptor, depth: usize) -> Result<Manifest> {
    let raw = read_verified(p, desc, "manifest", MANIFEST_LIMIT)?;
    let what = format!("manifest {} in {}", desc.digest, p.location());
    let value = parse_json(&what, &raw)?;
    match classify(&what, &value, &desc.media_type)? {
        Kind::Index => {
            if depth > 4 {
                return Err(Error::NestedTooDeep {
                    index: format!("index {}", desc.digest),
                });
            }
            let index = IndexManifest::parse(&what, raw)?;
            let mut children = Vec::new();
            for d in index.manifests() {
                // A saved archive may keep the whole index but only the
                // manifests of the platforms it holds.
                children.push(if p.has(&d.digest) {
                    Some(read_manifest(p, d, depth + 1)?)
                } else {
                    None
                });
            }
            Ok(Manifest::Index(Index::new(index, children)?))
        }
        Kind::Artifact => {
            let mut sources = Vec::new();
            for d in referenced(&what, &raw)? {
                sources.push(p.blob(&d.digest)?);
            }
            Ok(Manifest::Artifact(Artifact::new(
                raw,
                &desc.media_type,
                sources,
            )?))
        }
        Kind::Image => read_image_manifest(p, desc, raw, &value).map(Manifest::Image),
    }
}

fn read_image_manifest(
    p: &dyn BlobProvider,
    desc: &Descriptor,
    raw: Vec<u8>,
    value: &Value,
) -> Result<Image> {
    let info = ManifestInfo::from_value(&format!("manifest {}", desc.digest), value)?;
    let config_raw = read_verified(p, &info.config, "image config", CONFIG_LIMIT)?;
    let config = parse_json(&format!("image config {}", info.config.digest), &config_raw)?;
    let diff_ids = config_diff_ids(&format!("image config {}", info.config.digest), &config)?;
    if diff_ids.len() != info.layers.len() {
        return Err(Error::LayerCountMismatch {
            image: format!("image {}", desc.digest),
            layers: info.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    let mut layers = Vec::with_capacity(info.layers.len());
    for (l, diff_id) in info.layers.iter().zip(diff_ids) {
        let source = p.blob(&l.digest)?;
        if source.len() != l.size {
            return Err(Error::SizeMismatch {
                what: format!("layer {} in {}", l.digest, p.location()),
                expected: l.size,
                actual: source.len(),
            });
        }
        let compression = media::Compression::of_layer_media_type(&l.media_type);
        // An uncompressed layer's digest is its diff_id.
        if compression == Some(media::Compression::None) && l.digest != diff_id {
            return Err(Error::DigestMismatch {
                what: format!("uncompressed layer {} vs its diff_id", l.digest),
                expected: diff_id,
                actual: l.digest.clone(),
            });
        }
        layers.push(
            Layer::new(l.digest.clone(), l.media_type.clone(), diff_id, source)?
                .with_annotations(l.annotations.clone()),
        );
    }
    Image::from_parts(raw, config_raw, layers)
}

/// Copy a blob into `dest` (atomically), verifying as it streams.
pub fn copy_blob_to_file(blob: &Blob, dest: &Path, progress: &dyn Progress) -> Result<()> {
    let mut f = AtomicFile::create(dest)?;
    let mut reader = ProgressReader::new(
        blob.open()?,
        progress,
        blob.descriptor.digest.short(),
        Phase::Copy,
        blob.descriptor.size,
    );
    let mut w = io::BufWriter::with_capacity(1 << 20, f.writer());
    io::copy(&mut reader, &mut w).map_err(|e| unwrap_io(e, &blob.source.path()))?;
    w.flush().at(dest)?;
    drop(w);
    reader.finish();
    f.commit()
}

/// An exclusive lock on a layout directory, held while it lives.
struct DirLock {
    _file: fs::File,
}

fn flock_exclusive(file: &fs::File) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor we own; released when it closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Lock the directory itself, so no lock file is left in a user's layout.
/// Where a directory cannot be locked (NFS emulates flock with fcntl,
/// which needs a file open for writing) a `.dockyard-index.lock` file is
/// locked instead and left in place: removing it would let two writers in.
fn lock_dir(dir: &Path) -> Result<DirLock> {
    let file = fs::File::open(dir).at(dir)?;
    if flock_exclusive(&file).is_ok() {
        return Ok(DirLock { _file: file });
    }
    let lock_path = dir.join(".dockyard-index.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .at(&lock_path)?;
    flock_exclusive(&file).at(&lock_path)?;
    Ok(DirLock { _file: file })
}

/// Run `edit` on a layout's index.json entries under a file lock.
pub fn update_index_json(dir: &Path, edit: impl FnOnce(&mut Vec<Descriptor>)) -> Result<()> {
    let _lock = lock_dir(dir)?;
    let index_path = dir.join("index.json");
    let index = if index_path.exists() {
        IndexManifest::parse(
            &index_path.display().to_string(),
            fs::read(&index_path).at(&index_path)?,
        )?
    } else {
        IndexManifest::new(Vec::new())
    };
    let mut entries = index.manifests().to_vec();
    edit(&mut entries);
    write_atomic(&index_path, index.with_manifests(entries).raw())
}

/// Write `manifest` (an image, a whole index, or an artifact) into the
/// layout at `dir` (created if missing; its parent must exist), named
/// `ref_name`. Blobs already there are not rewritten. A new layout is
/// built in a temporary directory and renamed into place when complete,
/// so a failed copy leaves nothing behind.
pub fn write_layout_dir(
    dir: &Path,
    manifest: &Manifest,
    ref_name: Option<&str>,
    progress: &dyn Progress,
) -> Result<()> {
    manifest.check_complete(&format!("oci:{}", dir.display()))?;
    let parent = crate::atomic::output_parent(dir)?;
    if dir.exists() {
        return fill_layout_dir(dir, manifest, ref_name, progress);
    }
    crate::atomic::remove_stale_temps(&parent);
    let temp = tempfile::Builder::new()
        .prefix(&format!("{}layout-", crate::atomic::temp_prefix()))
        .tempdir_in(&parent)
        .at(&parent)?;
    crate::atomic::register_temp(temp.path());
    let filled = fill_layout_dir(temp.path(), manifest, ref_name, progress)
        .and_then(|_| crate::atomic::apply_umask(temp.path(), true).at(temp.path()));
    if let Err(e) = filled {
        crate::atomic::unregister_temp(temp.path());
        return Err(crate::atomic::in_final_dir(e, temp.path(), dir));
    }
    let built = temp.keep();
    crate::atomic::commit_temp(&built, || fs::rename(&built, dir)).map_err(|e| {
        let _ = fs::remove_dir_all(&built);
        Error::Io {
            path: dir.to_path_buf(),
            source: e,
        }
    })
}

fn fill_layout_dir(
    dir: &Path,
    manifest: &Manifest,
    ref_name: Option<&str>,
    progress: &dyn Progress,
) -> Result<()> {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).at(&blobs)?;
    let layout_file = dir.join("oci-layout");
    if !layout_file.exists() {
        write_atomic(&layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    }
    for blob in manifest.all_blobs() {
        let dest = blob_path(dir, &blob.descriptor.digest);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        let present = fs::metadata(&dest)
            .map(|m| m.len() == blob.descriptor.size)
            .unwrap_or(false);
        if present {
            continue;
        }
        // A verified store blob on the same filesystem is linked, not copied.
        let linked = blob
            .source
            .linkable_store_blob()
            .map(|src| fs::hard_link(src, &dest).is_ok())
            .unwrap_or(false);
        if !linked {
            copy_blob_to_file(&blob, &dest, progress)?;
        }
    }
    for m in manifest.manifests_bottom_up() {
        let dest = blob_path(dir, &m.digest());
        if !dest.exists() {
            write_atomic(&dest, m.raw())?;
        }
    }
    let desc = manifest.descriptor().with_ref_name(ref_name);
    let digest = manifest.digest();
    update_index_json(dir, |list| {
        list.retain(|m| match ref_name {
            Some(r) => m.names().iter().all(|n| n != r),
            None => m.digest != digest || !m.names().is_empty(),
        });
        list.push(desc);
    })
}
