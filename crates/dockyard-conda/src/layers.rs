//! An installed environment as layers: each package's files in a layer of
//! their own (dependencies below dependents), reused byte for byte across
//! rebuilds and images through a build cache in the store; then a top
//! layer with what no package owns (conda-meta, the spec's files, the
//! SBOM).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use dockyard_image::tar::{LayerBuilder, LayerOptions};
use dockyard_image::{BlobSource, Digest, Layer, Store};
use rattler::install::PythonInfo;
use rattler_conda_types::{PackageRecord, PrefixRecord, RepoDataRecord, Subdir};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::recorded::ChannelRecording;
use crate::spec::Layering;

/// Changes whenever the bytes of a package layer would change for the same
/// package (entry order, stamps, ownership): old cache records then miss.
pub const LAYER_FORMAT: &str = "dockyard-conda-layer-1";

/// The store's side table of package layers: cache key → layer.
/// `cache prune` drops a record with the blob it names.
pub const BUILD_CACHE_TABLE: &str = "build-cache-conda-layers";

/// One layer of the environment and the packages in it.
#[derive(Clone, Debug)]
pub struct EnvLayer {
    pub layer: Layer,
    /// `name version build` of each package in it.
    pub packages: Vec<String>,
    /// Taken from the build cache rather than built.
    pub reused: bool,
}

/// `name version build`, as history entries and logs name a package.
pub fn package_label(r: &PackageRecord) -> String {
    format!("{} {} {}", r.name.as_normalized(), r.version, r.build)
}

/// The packages in the order their layers stack: dependencies first.
pub fn stacking_order(records: &[PrefixRecord]) -> Vec<PrefixRecord> {
    PackageRecord::sort_topologically(records.to_vec())
}

/// Which packages share a layer: one group per layer, bottom first.
/// `room` is how many package layers the image may still take.
pub fn group_packages(
    ordered: &[PrefixRecord],
    layering: Layering,
    room: usize,
) -> Vec<Vec<usize>> {
    let n = ordered.len();
    if n == 0 {
        return Vec::new();
    }
    let room = room.max(1);
    match layering {
        Layering::Single => vec![(0..n).collect()],
        Layering::PerPackage | Layering::Grouped if n <= room => (0..n).map(|i| vec![i]).collect(),
        _ => {
            // The packages most depended upon (most likely shared by other
            // images) keep layers of their own; the rest share the top one.
            let mut dependents: HashMap<String, usize> = HashMap::new();
            for r in ordered {
                for dep in &r.repodata_record.package_record.depends {
                    let name = dep.split_whitespace().next().unwrap_or("").to_string();
                    *dependents.entry(name).or_default() += 1;
                }
            }
            let mut by_sharing: Vec<usize> = (0..n).collect();
            by_sharing.sort_by_key(|&i| {
                let name = ordered[i]
                    .repodata_record
                    .package_record
                    .name
                    .as_normalized();
                (
                    std::cmp::Reverse(dependents.get(name).copied().unwrap_or(0)),
                    i,
                )
            });
            let own: BTreeSet<usize> = by_sharing.into_iter().take(room - 1).collect();
            let mut groups: Vec<Vec<usize>> = own.iter().map(|&i| vec![i]).collect();
            groups.push((0..n).filter(|i| !own.contains(i)).collect());
            groups
        }
    }
}

/// What a package layer's bytes depend on besides the package: its cache
/// key is made of these and the package's sha256.
pub struct LayerKeys<'a> {
    /// The in-image prefix (placeholders are rewritten to it).
    pub prefix: &'a str,
    pub layering: Layering,
    /// Where the solved Python puts `noarch: python` packages (its
    /// site-packages and interpreter paths), when the environment has one.
    pub python: Option<String>,
}

impl<'a> LayerKeys<'a> {
    pub fn new(
        prefix: &'a str,
        layering: Layering,
        records: &[RepoDataRecord],
        subdir: Subdir,
    ) -> Result<Self> {
        let python = records
            .iter()
            .find(|r| r.package_record.name.as_normalized() == "python")
            .map(|r| {
                PythonInfo::from_python_record(&r.package_record, subdir)
                    .map(|info| {
                        format!(
                            "{} {}",
                            info.site_packages_path.display(),
                            info.path.display()
                        )
                    })
                    .map_err(|e| Error::Install {
                        reason: format!("{}: {e}", package_label(&r.package_record)),
                    })
            })
            .transpose()?;
        Ok(LayerKeys {
            prefix,
            layering,
            python,
        })
    }

    /// The cache key of a layer of `records`. A `noarch: python` package's
    /// files land where the solved Python says, so its key names that too.
    fn key(&self, records: &[&PackageRecord]) -> Result<String> {
        let mut key = format!(
            "{LAYER_FORMAT}\n{}\n{}\n",
            self.prefix,
            self.layering.name()
        );
        for p in records {
            let sha = p.sha256.map(hex::encode).ok_or_else(|| Error::Install {
                reason: format!(
                    "package {} has no sha256 in its channel's repodata: its layer cannot be cached",
                    package_label(p)
                ),
            })?;
            key.push_str(&sha);
            key.push('\n');
            if p.noarch.is_python() {
                key.push_str(&format!(
                    "python: {}\n",
                    self.python.as_deref().unwrap_or("none")
                ));
            }
        }
        Ok(Digest::sha256_of(key.as_bytes()).hex().to_string())
    }
}

/// A conda-meta record as the build cache keeps it: without the paths of
/// the package cache it was installed from, its channel as the image names
/// it (so a moved checkout still finds it).
fn cacheable_prefix_record(record: &PrefixRecord, recording: &ChannelRecording) -> Option<Value> {
    let mut r = record.clone();
    r.repodata_record = recording.image_record(&record.repodata_record);
    r.package_tarball_full_path = None;
    r.extracted_package_dir = None;
    serde_json::to_value(&r).ok()
}

/// Before installing: write into `staging`'s conda-meta the records of
/// the packages whose layers the build cache already holds (its own layer
/// each, the same repodata record as solved), so the installer treats them
/// as installed and neither fetches, extracts nor copies them; their
/// layers are taken from the cache. Returns those layers' diff_ids.
pub fn preinstall_cached(
    store: &Store,
    staging: &Path,
    records: &[RepoDataRecord],
    recording: &ChannelRecording,
    keys: &LayerKeys,
) -> Result<Vec<Digest>> {
    let table = store.side_table(BUILD_CACHE_TABLE);
    let meta = staging.join("conda-meta");
    let mut taken = Vec::new();
    for r in records {
        let key = keys.key(&[&r.package_record])?;
        let cached = table.get(&key)?;
        let Some(layer) = cached_layer(store, &cached)? else {
            continue;
        };
        let Some(mut record) = cached
            .as_ref()
            .and_then(|v| v.get("prefix_record"))
            .and_then(|v| serde_json::from_value::<PrefixRecord>(v.clone()).ok())
        else {
            continue;
        };
        // The same package from the same channel, wherever the channel sits
        // on this machine now; the record then names where it sits now.
        if record.repodata_record != recording.image_record(r) {
            continue;
        }
        record.repodata_record = r.clone();
        std::fs::create_dir_all(&meta).map_err(|e| Error::Io {
            path: meta.clone(),
            source: e,
        })?;
        // Written plainly: the staging prefix is thrown away after the
        // build, so nothing here is worth an fsync.
        let path = meta.join(record.file_name());
        let bytes = serde_json::to_vec_pretty(&record).map_err(|e| Error::Install {
            reason: format!("conda-meta record {}: {e}", path.display()),
        })?;
        std::fs::write(&path, bytes).map_err(|e| Error::Io { path, source: e })?;
        taken.push(layer.diff_id().clone());
    }
    Ok(taken)
}

/// The files of `records` under `staging`, placed under `prefix`.
fn add_package_files(
    builder: &mut LayerBuilder,
    staging: &Path,
    prefix: &str,
    records: &[&PrefixRecord],
) -> Result<()> {
    for r in records {
        for file in &r.files {
            let host = staging.join(file);
            let dest = format!("{}/{}", prefix.trim_end_matches('/'), file.display());
            builder.add_path(&host, &dest)?;
        }
    }
    Ok(())
}

/// Build (or take from the build cache) the package layers.
pub fn package_layers(
    store: &Store,
    staging: &Path,
    ordered: &[PrefixRecord],
    groups: &[Vec<usize>],
    recording: &ChannelRecording,
    keys: &LayerKeys,
) -> Result<Vec<EnvLayer>> {
    let table = store.side_table(BUILD_CACHE_TABLE);
    let mut out = Vec::new();
    for group in groups {
        let records: Vec<&PrefixRecord> = group.iter().map(|&i| &ordered[i]).collect();
        let packages: Vec<String> = records
            .iter()
            .map(|r| package_label(&r.repodata_record.package_record))
            .collect();
        let package_records: Vec<&PackageRecord> = records
            .iter()
            .map(|r| &r.repodata_record.package_record)
            .collect();
        let key = keys.key(&package_records)?;
        // A layer of one package also keeps its conda-meta record, so a
        // rebuild need not install it again (see `preinstall_cached`).
        let prefix_record = match records.as_slice() {
            [one] => cacheable_prefix_record(one, recording),
            _ => None,
        };
        let cached = table.get(&key)?;
        if let Some(layer) = cached_layer(store, &cached)? {
            if let (Some(mut v), Some(pr)) = (cached, prefix_record) {
                if v.get("prefix_record") != Some(&pr) {
                    v["prefix_record"] = pr;
                    table.put(&key, &v)?;
                }
            }
            out.push(EnvLayer {
                layer,
                packages,
                reused: true,
            });
            continue;
        }
        // Package layers carry no build time: the same package gives the
        // same bytes whenever and into whatever image it is built.
        let mut builder = LayerBuilder::new(LayerOptions {
            mtime: 0,
            keep_owner: false,
        });
        add_package_files(&mut builder, staging, keys.prefix, &records)?;
        let layer = builder.build_in_store(store)?;
        let mut record = json!({
            "digest": layer.digest().to_string(),
            "size": layer.size(),
            "mediaType": layer.media_type(),
            "diff_id": layer.diff_id().to_string(),
            "packages": packages,
        });
        if let Some(pr) = prefix_record {
            record["prefix_record"] = pr;
        }
        table.put(&key, &record)?;
        out.push(EnvLayer {
            layer,
            packages,
            reused: false,
        });
    }
    Ok(out)
}

/// The layer a build-cache record names, when its blob is still stored.
fn cached_layer(store: &Store, record: &Option<Value>) -> Result<Option<Layer>> {
    let Some(v) = record else {
        return Ok(None);
    };
    let field = |k: &str| v.get(k).and_then(Value::as_str);
    let (Some(digest), Some(media_type), Some(diff_id)) =
        (field("digest"), field("mediaType"), field("diff_id"))
    else {
        return Ok(None);
    };
    let (Ok(digest), Ok(diff_id)) = (digest.parse::<Digest>(), diff_id.parse::<Digest>()) else {
        return Ok(None);
    };
    if !store.has_blob(&digest) {
        return Ok(None);
    }
    let source = BlobSource::store_blob(&store.blob_path(&digest))?;
    Ok(Some(Layer::new(
        digest,
        media_type.to_string(),
        diff_id,
        source,
    )?))
}

/// A conda-meta record as the image keeps it: without the paths of the
/// machine that built it (the package cache, the staging directory).
pub fn image_prefix_record(record: &PrefixRecord, recording: &ChannelRecording) -> Result<Vec<u8>> {
    let mut r = record.clone();
    r.repodata_record = recording.image_record(&record.repodata_record);
    r.package_tarball_full_path = None;
    r.extracted_package_dir = None;
    r.link = None;
    let mut v = serde_json::to_value(&r).map_err(|e| Error::Install {
        reason: format!(
            "conda-meta record of {}: {e}",
            package_label(&r.repodata_record.package_record)
        ),
    })?;
    // Sorted keys: the same record always gives the same bytes.
    sort_keys(&mut v);
    let mut bytes =
        serde_json::to_vec_pretty(&v).unwrap_or_else(|_| unreachable!("a Value always serialises"));
    bytes.push(b'\n');
    Ok(bytes)
}

fn sort_keys(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, mut val) in entries {
                sort_keys(&mut val);
                map.insert(k, val);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

/// Every file under `staging` that no package owns (conda-meta and what
/// the installer wrote itself), relative to `staging`.
pub fn unowned_files(staging: &Path, records: &[PrefixRecord]) -> Result<Vec<PathBuf>> {
    let owned: BTreeSet<PathBuf> = records
        .iter()
        .flat_map(|r| r.files.iter().cloned())
        .collect();
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = staging.join(&rel);
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::Io {
            path: dir.clone(),
            source: e,
        })?;
        for entry in entries.flatten() {
            let rel_path = rel.join(entry.file_name());
            let kind = entry.file_type().map_err(|e| Error::Io {
                path: entry.path(),
                source: e,
            })?;
            if kind.is_dir() {
                stack.push(rel_path);
            } else if !owned.contains(&rel_path) {
                out.push(rel_path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A file the installer made in the prefix (conda-meta/history,
/// CACHEDIR.TAG): its mode came from the building user's umask, so the
/// layer gets 0644 (0755 if it is executable) whoever builds it. Symbolic
/// links go as they are.
fn add_installer_file(builder: &mut LayerBuilder, host: &Path, dest: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e| Error::Io {
        path: host.to_path_buf(),
        source: e,
    };
    let meta = std::fs::symlink_metadata(host).map_err(io)?;
    if !meta.is_file() {
        builder.add_path(host, dest)?;
        return Ok(());
    }
    let mode = if meta.permissions().mode() & 0o100 != 0 {
        0o755
    } else {
        0o644
    };
    builder.add_contents(dest, std::fs::read(host).map_err(io)?, mode)?;
    Ok(())
}

/// What the top layer holds besides the installer's own files.
pub struct TopLayerContents<'a> {
    /// The installed packages (their conda-meta records).
    pub records: &'a [PrefixRecord],
    /// How those records name their channels in the image.
    pub recording: &'a ChannelRecording,
    /// In-memory files by image path (the SBOM).
    pub extra: &'a BTreeMap<String, Vec<u8>>,
    /// The spec's files: host path, image path.
    pub host_files: &'a [(PathBuf, String)],
}

/// The top layer: conda-meta (records without host paths), what else the
/// installer wrote, `extra` in-memory files (SBOM) and the spec's files.
pub fn top_layer(
    store: &Store,
    staging: &Path,
    prefix: &str,
    contents: &TopLayerContents,
    mtime: u64,
) -> Result<Layer> {
    let TopLayerContents {
        records,
        recording,
        extra,
        host_files,
    } = *contents;
    let mut builder = LayerBuilder::new(LayerOptions {
        mtime,
        keep_owner: false,
    });
    let prefix = prefix.trim_end_matches('/');
    let by_meta_name: HashMap<String, &PrefixRecord> =
        records.iter().map(|r| (r.file_name(), r)).collect();
    for rel in unowned_files(staging, records)? {
        let dest = format!("{prefix}/{}", rel.display());
        let name = rel.file_name().map(|n| n.to_string_lossy().to_string());
        let is_meta = rel.parent() == Some(Path::new("conda-meta"));
        match name.as_ref().and_then(|n| by_meta_name.get(n)) {
            Some(record) if is_meta => {
                builder.add_contents(&dest, image_prefix_record(record, recording)?, 0o644)?;
            }
            _ => {
                add_installer_file(&mut builder, &staging.join(&rel), &dest)?;
            }
        }
    }
    for (path, bytes) in extra {
        builder.add_contents(path, bytes.clone(), 0o644)?;
    }
    for (host, dest) in host_files {
        builder.add_path(host, dest)?;
    }
    Ok(builder.build_in_store(store)?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_build_cache_is_a_table_prune_knows() {
        assert!(
            super::BUILD_CACHE_TABLE.starts_with(dockyard_image::store::BUILD_CACHE_TABLE_PREFIX)
        );
    }
}
