//! OCI image layouts: a directory (`oci:DIR[:REF]`) or a tar of one
//! (`oci-archive:PATH[:REF]`, and the OCI half of Docker ≥25 archives).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::tar_index::TarIndex;
use crate::atomic::{write_atomic, AtomicFile};
use crate::digest::{unwrap_io, Digest};
use crate::error::{Error, IoContext, Result};
use crate::image::{config_diff_ids, parse_json, DescriptorInfo, Image, ManifestInfo};
use crate::layer::{BlobSource, Layer};
use crate::media;
use crate::platform::Platform;
use crate::progress::{Progress, ProgressReader};
use crate::reference::Reference;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
const MANIFEST_LIMIT: u64 = 4 << 20;
const CONFIG_LIMIT: u64 = 64 << 20;

/// Somewhere blobs and an `index.json` can be read from.
pub trait BlobProvider {
    fn location(&self) -> String;
    fn blob(&self, digest: &Digest) -> Result<BlobSource>;
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
    fn index_json(&self) -> Result<Vec<u8>> {
        let p = self.0.join("index.json");
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
    d: &DescriptorInfo,
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

/// The name a user would give for an index entry.
fn entry_names(desc: &Value) -> Vec<String> {
    let a = desc.get("annotations");
    [REF_NAME, CONTAINERD_NAME]
        .iter()
        .filter_map(|k| {
            a.and_then(|a| a.get(*k))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

fn entry_matches(desc: &Value, wanted: &str) -> bool {
    let names = entry_names(desc);
    if names.iter().any(|n| n == wanted) {
        return true;
    }
    if let Ok(d) = wanted.parse::<Digest>() {
        return desc.get("digest").and_then(Value::as_str) == Some(&d.to_string());
    }
    match wanted.parse::<Reference>() {
        Ok(r) => names.iter().any(|n| r.matches_str(n)),
        Err(_) => false,
    }
}

/// List the images an index names (for messages and `cache ls`).
pub fn list_entries(p: &dyn BlobProvider) -> Result<Vec<(String, Value)>> {
    let index = parse_json(&format!("{} index.json", p.location()), &p.index_json()?)?;
    let manifests = index
        .get("manifests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(manifests
        .into_iter()
        .map(|m| {
            let name = entry_names(&m).into_iter().next().unwrap_or_else(|| {
                m.get("digest")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string()
            });
            (name, m)
        })
        .collect())
}

/// Read one image from a layout. `wanted` picks an entry by name (ref name,
/// full reference or digest); without it the layout must hold exactly one.
pub fn read_layout(
    p: &dyn BlobProvider,
    wanted: Option<&str>,
    platform: Option<&Platform>,
) -> Result<Image> {
    let entries = list_entries(p)?;
    let chosen: Vec<&Value> = match wanted {
        Some(w) => entries
            .iter()
            .filter(|(_, d)| entry_matches(d, w))
            .map(|(_, d)| d)
            .collect(),
        None => entries.iter().map(|(_, d)| d).collect(),
    };
    let present = || entries.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    let desc = match (chosen.len(), wanted) {
        (1, _) => chosen[0],
        (0, Some(w)) => {
            return Err(Error::ImageNotFound {
                location: p.location(),
                wanted: w.to_string(),
                present: present(),
            })
        }
        (0, None) => {
            return Err(Error::InvalidArchive {
                path: p.location().into(),
                reason: "index.json lists no images".into(),
            })
        }
        _ => {
            return Err(Error::AmbiguousImage {
                location: p.location(),
                present: present(),
            })
        }
    };
    let desc = DescriptorInfo::parse("index.json entry", desc)?;
    read_manifest_descriptor(p, &desc, platform, 0)
}

fn read_manifest_descriptor(
    p: &dyn BlobProvider,
    desc: &DescriptorInfo,
    platform: Option<&Platform>,
    depth: usize,
) -> Result<Image> {
    let raw = read_verified(p, desc, "manifest", MANIFEST_LIMIT)?;
    let value = parse_json(&format!("manifest {}", desc.digest), &raw)?;
    let media_type = value
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or(&desc.media_type)
        .to_string();
    if media::is_index(&media_type) || value.get("manifests").is_some() {
        if depth > 4 {
            return Err(Error::InvalidImage {
                what: format!("index {}", desc.digest),
                reason: "indexes nested too deeply".into(),
            });
        }
        let child = select_platform(&value, &desc.digest, platform)?;
        return read_manifest_descriptor(p, &child, platform, depth + 1);
    }
    let info = ManifestInfo::from_value(&format!("manifest {}", desc.digest), &value)?;
    let config_raw = read_verified(p, &info.config, "image config", CONFIG_LIMIT)?;
    let config = parse_json(&format!("image config {}", info.config.digest), &config_raw)?;
    let diff_ids = config_diff_ids(&format!("image config {}", info.config.digest), &config)?;
    if diff_ids.len() != info.layers.len() {
        return Err(Error::InvalidImage {
            what: format!("image {}", desc.digest),
            reason: format!(
                "manifest lists {} layers but the config lists {} diff_ids",
                info.layers.len(),
                diff_ids.len()
            ),
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

/// Pick the manifest for a platform from an index (default: this host).
pub fn select_platform(
    index: &Value,
    index_digest: &Digest,
    platform: Option<&Platform>,
) -> Result<DescriptorInfo> {
    let host = Platform::host();
    let want = platform.unwrap_or(&host);
    let manifests = index
        .get("manifests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut available = Vec::new();
    let mut best: Option<(u8, &Value)> = None;
    for m in &manifests {
        let Some(pf) = m.get("platform") else {
            continue;
        };
        let s = |k: &str| pf.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (os, arch, variant) = (s("os"), s("architecture"), s("variant"));
        if os == "unknown" {
            continue; // attestations
        }
        available.push(if variant.is_empty() {
            format!("{os}/{arch}")
        } else {
            format!("{os}/{arch}/{variant}")
        });
        if os == want.os && arch == want.architecture {
            let score = match (&want.variant, variant.as_str()) {
                (Some(v), got) if v == got => 3,
                (None, "") => 3,
                (None, _) => 2,
                (Some(_), "") => 1,
                _ => 0,
            };
            if score > 0 && best.map(|(s, _)| score > s).unwrap_or(true) {
                best = Some((score, m));
            }
        }
    }
    match best {
        Some((_, m)) => DescriptorInfo::parse("index entry", m),
        None => Err(Error::InvalidImage {
            what: format!("index {index_digest}"),
            reason: format!(
                "no image for platform {want}; available: {}",
                if available.is_empty() {
                    "(none)".to_string()
                } else {
                    available.join(", ")
                }
            ),
        }),
    }
}

/// Copy a layer blob into `dest` (atomically), verifying as it streams.
pub fn copy_blob_to_file(layer: &Layer, dest: &Path, progress: &dyn Progress) -> Result<()> {
    let mut f = AtomicFile::create(dest)?;
    let id = layer.digest().short();
    progress.start(&id, layer.size());
    let mut reader = ProgressReader {
        id: id.clone(),
        inner: layer.open()?,
        progress,
    };
    let mut w = io::BufWriter::with_capacity(1 << 20, f.file());
    io::copy(&mut reader, &mut w).map_err(|e| unwrap_io(e, &layer.source().path()))?;
    w.flush().at(dest)?;
    drop(w);
    progress.finish(&id);
    f.commit()
}

/// Run `edit` on a layout's index.json under a file lock.
pub fn update_index_json(dir: &Path, edit: impl FnOnce(&mut Vec<Value>)) -> Result<()> {
    let lock_path = dir.join(".index.json.lock");
    let lock_file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .at(&lock_path)?;
    let mut lock = fd_lock::RwLock::new(lock_file);
    let _guard = lock.write().at(&lock_path)?;
    let index_path = dir.join("index.json");
    let mut index = if index_path.exists() {
        parse_json(
            &index_path.display().to_string(),
            &fs::read(&index_path).at(&index_path)?,
        )?
    } else {
        json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": []})
    };
    if !index.get("manifests").map(Value::is_array).unwrap_or(false) {
        index["manifests"] = json!([]);
    }
    if let Some(list) = index["manifests"].as_array_mut() {
        edit(list);
    }
    let bytes = serde_json::to_vec_pretty(&index)
        .unwrap_or_else(|_| unreachable!("a Value always serialises"));
    write_atomic(&index_path, &bytes)
}

pub fn manifest_descriptor(image: &Image, ref_name: Option<&str>) -> Value {
    let mut d = json!({
        "mediaType": image.manifest_media_type(),
        "digest": image.digest().to_string(),
        "size": image.manifest_raw().len(),
    });
    if let Some(r) = ref_name {
        d["annotations"] = json!({ REF_NAME: r });
    }
    d
}

/// Write `image` into the layout at `dir` (created if missing; its parent
/// must exist), tagged `ref_name`. Blobs already there are not rewritten.
/// A new layout is built in a temporary directory and renamed into place
/// when complete, so a failed copy leaves nothing behind.
pub fn write_layout_dir(
    dir: &Path,
    image: &Image,
    ref_name: Option<&str>,
    progress: &dyn Progress,
) -> Result<()> {
    let parent = crate::atomic::output_parent(dir)?;
    if dir.exists() {
        return fill_layout_dir(dir, image, ref_name, progress);
    }
    let temp = tempfile::Builder::new()
        .prefix(".dockyard-tmp-layout-")
        .tempdir_in(&parent)
        .at(&parent)?;
    fill_layout_dir(temp.path(), image, ref_name, progress)?;
    let built = temp.keep();
    fs::rename(&built, dir).map_err(|e| {
        let _ = fs::remove_dir_all(&built);
        Error::Io {
            path: dir.to_path_buf(),
            source: e,
        }
    })
}

fn fill_layout_dir(
    dir: &Path,
    image: &Image,
    ref_name: Option<&str>,
    progress: &dyn Progress,
) -> Result<()> {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).at(&blobs)?;
    let layout_file = dir.join("oci-layout");
    if !layout_file.exists() {
        write_atomic(&layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    }
    for layer in image.layers() {
        let dest = blob_path(dir, layer.digest());
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        let present = fs::metadata(&dest)
            .map(|m| m.len() == layer.size())
            .unwrap_or(false);
        if present {
            continue;
        }
        // A verified store blob on the same filesystem is linked, not copied.
        let linked = layer
            .source()
            .linkable_store_blob()
            .map(|src| fs::hard_link(src, &dest).is_ok())
            .unwrap_or(false);
        if !linked {
            copy_blob_to_file(layer, &dest, progress)?;
        }
    }
    for bytes in [image.config_raw(), image.manifest_raw()] {
        let dest = blob_path(dir, &Digest::sha256_of(bytes));
        if !dest.exists() {
            write_atomic(&dest, bytes)?;
        }
    }
    let desc = manifest_descriptor(image, ref_name);
    let digest = image.digest().to_string();
    update_index_json(dir, |list| {
        list.retain(|m| match ref_name {
            Some(r) => entry_names(m).iter().all(|n| n != r),
            None => {
                m.get("digest").and_then(Value::as_str) != Some(&digest)
                    || !entry_names(m).is_empty()
            }
        });
        list.push(desc);
    })
}
