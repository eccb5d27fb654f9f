//! Docker archives. Read: legacy v1.0 (`repositories` + `<id>/json`), v1.2
//! (`manifest.json`) and the combined tar of Docker ≥25. Write: the combined
//! tar (an OCI layout plus `manifest.json` and `repositories`) and plain
//! oci-archives.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde_json::{json, Map, Value};

use super::inflate_ahead::{Claim, InflateAhead, Inflated};
use super::layout::{self, CONTAINERD_NAME, REF_NAME};
use super::tar_index::TarIndex;
use crate::atomic::AtomicFile;
use crate::descriptor::Descriptor;
use crate::digest::{unwrap_io, Algorithm, Digest, HashingReader};
use crate::error::{Error, IoContext, Result};
use crate::image::{config_diff_ids, parse_json, Image};
use crate::index::IndexManifest;
use crate::layer::{BlobSource, Layer};
use crate::manifest::Manifest;
use crate::media::{self, Compression};
use crate::progress::{Phase, Progress, ProgressReader};
use crate::reference::Reference;
use crate::tar::writer::file_header;

const JSON_LIMIT: u64 = 64 << 20;

fn invalid(path: &Path, reason: impl Into<String>) -> Error {
    Error::InvalidArchive {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// A digest spelled in a member name: `blobs/sha256/<hex>`, `<hex>.json`,
/// `<hex>/layer.tar`.
fn digest_in_name(name: &str) -> Option<Digest> {
    if let Some(hex) = name.strip_prefix("blobs/sha256/") {
        return Digest::from_parts(Algorithm::Sha256, hex).ok();
    }
    let stem = name.strip_suffix(".json")?;
    Digest::from_parts(Algorithm::Sha256, stem).ok()
}

/// Read one image (or, from a Docker ≥25 archive, the index it saved)
/// from a docker archive.
pub fn read_docker_archive(path: &Path, wanted: Option<&str>) -> Result<Manifest> {
    refuse_directory(path)?;
    let index = TarIndex::open(path)?;
    // Docker ≥25 (and dockyard) archives carry an OCI layout: its exact
    // manifests and indexes are what the archive holds. Names only
    // manifest.json knows (`@N`, several tags) fall back to it.
    let from_layout = if index.contains("index.json") {
        Some(layout::read_layout(&index, wanted))
    } else {
        None
    };
    if let Some(Ok(m)) = from_layout {
        return Ok(m);
    }
    if index.contains("manifest.json") {
        read_v12(&index, wanted).map(Manifest::Image)
    } else if index.contains("repositories") {
        read_v10(&index, wanted).map(Manifest::Image)
    } else if let Some(result) = from_layout {
        result
    } else {
        Err(invalid(
            path,
            "no manifest.json, repositories or index.json: this tar is not an image archive",
        ))
    }
}

fn read_v12(index: &TarIndex, wanted: Option<&str>) -> Result<Image> {
    let path = &index.path;
    let manifest = parse_json(
        &format!("{} manifest.json", path.display()),
        &index.read("manifest.json", JSON_LIMIT)?,
    )?;
    let entries = manifest
        .as_array()
        .ok_or_else(|| invalid(path, "manifest.json is not a list"))?;
    let tags_of = |e: &Value| -> Vec<String> {
        e.get("RepoTags")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let present: Vec<String> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let tags = tags_of(e);
            if tags.is_empty() {
                format!("@{i} (untagged)")
            } else {
                tags.join(", ")
            }
        })
        .collect();
    let chosen: Vec<&Value> = match wanted {
        None => entries.iter().collect(),
        Some(w) => {
            if let Some(i) = w.strip_prefix('@').and_then(|n| n.parse::<usize>().ok()) {
                entries.get(i).into_iter().collect()
            } else {
                let r = w.parse::<Reference>().ok();
                entries
                    .iter()
                    .filter(|e| {
                        tags_of(e).iter().any(|t| {
                            t == w || r.as_ref().map(|r| r.matches_str(t)).unwrap_or(false)
                        })
                    })
                    .collect()
            }
        }
    };
    let entry = match (chosen.len(), wanted) {
        (1, _) => chosen[0],
        (0, Some(w)) => {
            return Err(Error::ImageNotFound {
                location: path.display().to_string(),
                wanted: w.to_string(),
                present,
            })
        }
        (0, None) => return Err(invalid(path, "manifest.json lists no images")),
        _ => {
            return Err(Error::AmbiguousImage {
                location: path.display().to_string(),
                present,
            })
        }
    };
    let config_name = entry
        .get("Config")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(path, "manifest.json entry has no Config"))?;
    let config_raw = index.read(config_name, JSON_LIMIT)?;
    let config_digest = Digest::sha256_of(&config_raw);
    if let Some(expected) = digest_in_name(config_name) {
        if expected != config_digest {
            return Err(Error::DigestMismatch {
                what: format!("config {config_name} in {}", path.display()),
                expected,
                actual: config_digest,
            });
        }
    }
    let config = parse_json(&format!("config {config_name}"), &config_raw)?;
    let diff_ids = config_diff_ids(&format!("config {config_name}"), &config)?;
    let layer_names: Vec<&str> = entry
        .get("Layers")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(path, "manifest.json entry has no Layers"))?
        .iter()
        .map(|l| {
            l.as_str()
                .ok_or_else(|| invalid(path, "a Layers entry is not a string"))
        })
        .collect::<Result<_>>()?;
    if layer_names.len() != diff_ids.len() {
        return Err(invalid(
            path,
            format!(
                "manifest.json lists {} layers but the config has {} diff_ids",
                layer_names.len(),
                diff_ids.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (name, diff_id) in layer_names.iter().zip(diff_ids) {
        layers.push(archive_layer(index, name, diff_id)?);
    }
    Image::from_config_and_layers(config_raw, layers, false)
}

/// A layer member of a docker archive. Uncompressed tars are identified by
/// their diff_id (verified when read); compressed ones are hashed here.
fn archive_layer(index: &TarIndex, name: &str, diff_id: Digest) -> Result<Layer> {
    let source = index.source(name)?;
    let mut head = [0u8; 4];
    let n = source.open_raw()?.read(&mut head).at(&index.path)?;
    let compression = Compression::sniff(&head[..n]);
    let digest = match compression {
        Compression::None => {
            if let Some(named) = digest_in_name(name).filter(|_| name.starts_with("blobs/")) {
                if named != diff_id {
                    return Err(Error::DigestMismatch {
                        what: format!(
                            "layer {name} in {} vs the config's diff_id",
                            index.path.display()
                        ),
                        expected: diff_id,
                        actual: named,
                    });
                }
            }
            diff_id.clone()
        }
        _ => {
            let mut h = HashingReader::new(source.open_raw()?, Algorithm::Sha256);
            io::copy(&mut h, &mut io::sink()).at(&index.path)?;
            h.finish().0
        }
    };
    Layer::new(
        digest,
        compression.layer_media_type(false).to_string(),
        diff_id,
        source,
    )
}

fn read_v10(index: &TarIndex, wanted: Option<&str>) -> Result<Image> {
    let path = &index.path;
    let repos = parse_json("repositories", &index.read("repositories", JSON_LIMIT)?)?;
    let mut tagged: Vec<(String, String)> = Vec::new();
    for (repo, tags) in repos
        .as_object()
        .ok_or_else(|| invalid(path, "repositories is not an object"))?
    {
        for (tag, id) in tags.as_object().into_iter().flatten() {
            if let Some(id) = id.as_str() {
                tagged.push((format!("{repo}:{tag}"), id.to_string()));
            }
        }
    }
    let present: Vec<String> = tagged.iter().map(|(n, _)| n.clone()).collect();
    let chosen: Vec<&(String, String)> = match wanted {
        None => tagged.iter().collect(),
        Some(w) => {
            let r = w.parse::<Reference>().ok();
            tagged
                .iter()
                .filter(|(n, _)| n == w || r.as_ref().map(|r| r.matches_str(n)).unwrap_or(false))
                .collect()
        }
    };
    // Several tags of one image are one image.
    let mut ids: Vec<&String> = chosen.iter().map(|(_, id)| id).collect();
    ids.sort();
    ids.dedup();
    let top = match (ids.len(), wanted) {
        (1, _) => ids[0].clone(),
        (0, Some(w)) => {
            return Err(Error::ImageNotFound {
                location: path.display().to_string(),
                wanted: w.to_string(),
                present,
            })
        }
        (0, None) => return Err(invalid(path, "repositories names no image")),
        _ => {
            return Err(Error::AmbiguousImage {
                location: path.display().to_string(),
                present,
            })
        }
    };
    // Walk the parent chain from the top, then reverse: base first.
    let mut chain = Vec::new();
    let mut id = Some(top);
    let mut seen = HashSet::new();
    while let Some(current) = id {
        if !seen.insert(current.clone()) {
            return Err(invalid(
                path,
                format!("layer {current} is its own ancestor"),
            ));
        }
        let json = parse_json(
            &format!("{current}/json"),
            &index.read(&format!("{current}/json"), JSON_LIMIT)?,
        )?;
        id = json
            .get("parent")
            .and_then(Value::as_str)
            .map(str::to_string);
        chain.push((current, json));
    }
    chain.reverse();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut history = Vec::new();
    for (id, json) in &chain {
        let name = format!("{id}/layer.tar");
        let source = index.source(&name)?;
        // v1.0 archives record no diff_ids: hash the uncompressed tar.
        let mut plain = crate::compress::decompress_sniffed(source.open_raw()?).at(path)?;
        let mut h = HashingReader::new(&mut plain, Algorithm::Sha256);
        io::copy(&mut h, &mut io::sink())
            .map_err(|e| invalid(path, format!("layer {name}: {e}")))?;
        let diff_id = h.finish().0;
        layers.push(archive_layer(index, &name, diff_id.clone())?);
        diff_ids.push(json!(diff_id.to_string()));
        let mut h = Map::new();
        if let Some(c) = json.get("created") {
            h.insert("created".into(), c.clone());
        }
        if let Some(cmd) = json
            .pointer("/container_config/Cmd")
            .and_then(Value::as_array)
        {
            let parts: Vec<&str> = cmd.iter().filter_map(Value::as_str).collect();
            h.insert("created_by".into(), json!(parts.join(" ")));
        }
        for k in ["author", "comment"] {
            if let Some(v) = json.get(k) {
                h.insert(k.into(), v.clone());
            }
        }
        history.push(Value::Object(h));
    }
    let (_, top_json) = chain.last().ok_or_else(|| invalid(path, "no layers"))?;
    let mut config = top_json.clone();
    if let Some(o) = config.as_object_mut() {
        for k in ["id", "parent", "Size", "layer_id", "checksum", "parent_id"] {
            o.remove(k);
        }
        o.insert(
            "rootfs".into(),
            json!({"type": "layers", "diff_ids": diff_ids}),
        );
        o.insert("history".into(), Value::Array(history));
    }
    let config_raw =
        serde_json::to_vec(&config).unwrap_or_else(|_| unreachable!("a Value always serialises"));
    Image::from_config_and_layers(config_raw, layers, false)
}

/// What goes into a written image tar besides the OCI layout.
pub struct ImageTarOptions<'a> {
    /// Add `manifest.json` and `repositories` (a docker archive).
    pub docker: bool,
    pub reference: Option<&'a Reference>,
    /// `org.opencontainers.image.ref.name` in index.json.
    pub ref_name: Option<String>,
}

/// Writes tar members of an image archive. Members of unknown size (a
/// layer decompressed on the fly) get a placeholder header that is
/// patched once the data is written — no temporary copy of the layer.
struct ArchiveWriter<W: Write + Seek> {
    out: W,
}

impl<W: Write + Seek> ArchiveWriter<W> {
    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % 512) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }

    /// Write a member of known size; returns the offset of its data.
    fn member(&mut self, name: &str, size: u64, data: &mut dyn Read) -> io::Result<u64> {
        self.out.write_all(&file_header(name.as_bytes(), size))?;
        let offset = self.out.stream_position()?;
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        // Read on to the end: a verifying source checks its digest there.
        let extra = io::copy(data, &mut io::sink())?;
        if copied != size || extra != 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name}: expected {size} bytes, read {}", copied + extra),
            ));
        }
        self.pad(size)?;
        Ok(offset)
    }

    /// Write `data` to its end; returns (offset of the data, its size).
    fn member_streamed(&mut self, name: &str, data: &mut dyn Read) -> io::Result<(u64, u64)> {
        let header_at = self.out.stream_position()?;
        self.out.write_all(&file_header(name.as_bytes(), 0))?;
        let size = io::copy(data, &mut self.out)?;
        self.pad(size)?;
        let end = self.out.stream_position()?;
        self.out.seek(SeekFrom::Start(header_at))?;
        self.out.write_all(&file_header(name.as_bytes(), size))?;
        self.out.seek(SeekFrom::Start(end))?;
        Ok((header_at + 512, size))
    }

    fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 1024])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Write `image` as a tar at `dest`: an OCI layout, plus the docker parts
/// when asked. The file appears only when complete and verified.
pub fn write_image_tar(
    dest: &Path,
    image: &Image,
    opts: &ImageTarOptions,
    progress: &dyn Progress,
) -> Result<Image> {
    let mut out = AtomicFile::create(dest)?;
    let written_image;
    {
        let mut tar = ArchiveWriter {
            out: BufWriter::with_capacity(1 << 20, out.writer()),
        };
        let dir = crate::atomic::output_parent(dest)?;
        let docker_plain = |l: &Layer| opts.docker && l.compression() != Compression::None;
        // The distinct layers to inflate, in archive order.
        let mut seen = HashSet::new();
        let to_inflate: Vec<&Layer> = image
            .layers()
            .iter()
            .filter(|l| docker_plain(l) && seen.insert(l.diff_id().clone()))
            .collect();
        let ahead = InflateAhead::new(to_inflate);
        let layers = std::thread::scope(|scope| {
            for _ in 0..ahead.workers() {
                scope.spawn(|| ahead.work(&dir, dest, progress));
            }
            let written = write_layers(&mut tar, image, dest, &ahead, docker_plain, progress);
            if written.is_err() {
                ahead.cancel();
            }
            written
        })?;
        let mut names: HashSet<Digest> = layers.iter().map(|l| l.digest().clone()).collect();
        let image = if opts.docker
            && image
                .layers()
                .iter()
                .any(|l| l.compression() != Compression::None)
        {
            image.with_layer_blobs(layers)?
        } else {
            image.clone()
        };
        for bytes in [image.config_raw(), image.manifest_raw()] {
            let d = Digest::sha256_of(bytes);
            if names.insert(d.clone()) {
                tar.member(&blob_name(&d), bytes.len() as u64, &mut &bytes[..])
                    .at(dest)?;
            }
        }
        let mut desc = Manifest::Image(image.clone())
            .descriptor()
            .with_ref_name(opts.ref_name.as_deref())
            .json;
        if let Some(r) = opts.reference {
            desc["annotations"][CONTAINERD_NAME] = json!(r.to_string());
            if opts.ref_name.is_none() {
                if let Some(t) = r.tag() {
                    desc["annotations"][REF_NAME] = json!(t);
                }
            }
        }
        let index = IndexManifest::new(vec![Descriptor::parse("index.json entry", &desc)?])
            .raw()
            .to_vec();
        tar.member("index.json", index.len() as u64, &mut &index[..])
            .at(dest)?;
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        tar.member("oci-layout", layout.len() as u64, &mut &layout[..])
            .at(dest)?;
        if opts.docker {
            let tags: Vec<String> = opts
                .reference
                .filter(|r| r.tag().is_some())
                .map(|r| {
                    vec![r
                        .with_tag(r.tag().unwrap_or("latest"))
                        .map(|r| r.familiar())
                        .unwrap_or_default()]
                })
                .unwrap_or_default();
            let manifest = json!([{
                "Config": blob_name(&image.config_digest()),
                "RepoTags": tags,
                "Layers": image.layers().iter().map(|l| blob_name(l.digest())).collect::<Vec<_>>(),
            }]);
            let manifest = serde_json::to_vec(&manifest)
                .unwrap_or_else(|_| unreachable!("a Value always serialises"));
            tar.member("manifest.json", manifest.len() as u64, &mut &manifest[..])
                .at(dest)?;
            if let (Some(r), Some(top)) = (opts.reference, image.layers().last()) {
                if let Some(tag) = r.tag() {
                    let familiar = r.familiar();
                    let repo = familiar
                        .rsplit_once(':')
                        .map(|(n, _)| n)
                        .unwrap_or(&familiar);
                    let repos = json!({ repo: { tag: top.diff_id().hex() } });
                    let repos = serde_json::to_vec(&repos)
                        .unwrap_or_else(|_| unreachable!("a Value always serialises"));
                    tar.member("repositories", repos.len() as u64, &mut &repos[..])
                        .at(dest)?;
                }
            }
        }
        tar.finish().at(dest)?;
        written_image = image;
    }
    out.commit_unsynced()?;
    Ok(written_image)
}

/// Write the layer members of `image` in manifest order (each distinct
/// blob once). Compressed layers of a docker archive are written
/// uncompressed: streamed here, or copied from `ahead`'s workers. Returns
/// the layers as they now are in the archive.
fn write_layers<W: Write + Seek>(
    tar: &mut ArchiveWriter<W>,
    image: &Image,
    dest: &Path,
    ahead: &InflateAhead,
    docker_plain: impl Fn(&Layer) -> bool,
    progress: &dyn Progress,
) -> Result<Vec<Layer>> {
    let mut written: HashMap<Digest, Layer> = HashMap::new();
    let mut layers = Vec::with_capacity(image.layers().len());
    let mut inflated = 0;
    for layer in image.layers() {
        let plain = docker_plain(layer);
        let name_digest = if plain {
            layer.diff_id()
        } else {
            layer.digest()
        };
        if let Some(done) = written.get(name_digest) {
            layers.push(done.clone());
            continue;
        }
        let name = blob_name(name_digest);
        let stored = if plain {
            let claim = ahead.claim(inflated);
            inflated += 1;
            let (offset, len) = match claim {
                Claim::Stream => {
                    let mut reader = ProgressReader::new(
                        layer.open_uncompressed()?,
                        progress,
                        layer.digest().short(),
                        Phase::Copy,
                        layer.size(),
                    );
                    let at = tar
                        .member_streamed(&name, &mut reader)
                        .map_err(|e| unwrap_io(e, &layer.source().path()))?;
                    reader.finish();
                    at
                }
                Claim::Inflated(done) => {
                    let Inflated { mut file, len } = done?;
                    file.seek(SeekFrom::Start(0)).at(dest)?;
                    let offset = tar.member(&name, len, &mut file).at(dest)?;
                    (offset, len)
                }
            };
            let source = BlobSource::File {
                path: std::sync::Arc::new(dest.to_path_buf()),
                offset,
                len,
                keep: None,
                store_blob: false,
            };
            let media_type = Compression::None
                .layer_media_type(media::is_docker_manifest(image.manifest_media_type()));
            Layer::new(
                layer.diff_id().clone(),
                media_type.to_string(),
                layer.diff_id().clone(),
                source,
            )?
        } else {
            let mut reader = ProgressReader::new(
                layer.open()?,
                progress,
                layer.digest().short(),
                Phase::Copy,
                layer.size(),
            );
            tar.member(&name, layer.size(), &mut reader)
                .map_err(|e| unwrap_io(e, &layer.source().path()))?;
            reader.finish();
            layer.clone()
        };
        written.insert(name_digest.clone(), stored.clone());
        layers.push(stored);
    }
    Ok(layers)
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().name(), d.hex())
}

/// An archive transport given a directory: name the transport that reads it.
fn refuse_directory(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(invalid(
            path,
            "is a directory, not a tar archive; read an OCI layout directory with oci:DIR",
        ));
    }
    Ok(())
}

/// Read an oci-archive tar.
pub fn read_oci_archive(path: &Path, wanted: Option<&str>) -> Result<Manifest> {
    refuse_directory(path)?;
    let index = TarIndex::open(path)?;
    if !index.contains("index.json") {
        return Err(invalid(path, "no index.json: not an oci-archive"));
    }
    layout::read_layout(&index, wanted)
}

/// Write an oci-archive: a tar of an OCI layout holding `manifest` (an
/// image, a whole index or an artifact), named `ref_name`. The file
/// appears only when complete; every blob is verified as it is copied.
pub fn write_oci_archive(
    dest: &Path,
    manifest: &Manifest,
    ref_name: Option<&str>,
    progress: &dyn Progress,
) -> Result<()> {
    manifest.check_complete(&format!("oci-archive:{}", dest.display()))?;
    let mut out = AtomicFile::create(dest)?;
    {
        let mut tar = ArchiveWriter {
            out: BufWriter::with_capacity(1 << 20, out.writer()),
        };
        for blob in manifest.all_blobs() {
            let mut reader = ProgressReader::new(
                blob.open()?,
                progress,
                blob.descriptor.digest.short(),
                Phase::Copy,
                blob.descriptor.size,
            );
            tar.member(
                &blob_name(&blob.descriptor.digest),
                blob.descriptor.size,
                &mut reader,
            )
            .map_err(|e| unwrap_io(e, &blob.source.path()))?;
            reader.finish();
        }
        let mut names = HashSet::new();
        for m in manifest.manifests_bottom_up() {
            let d = m.digest();
            if names.insert(d.clone()) {
                let bytes = m.raw();
                tar.member(&blob_name(&d), bytes.len() as u64, &mut &bytes[..])
                    .at(dest)?;
            }
        }
        let desc = manifest.descriptor().with_ref_name(ref_name);
        let index = IndexManifest::new(vec![desc]).raw().to_vec();
        tar.member("index.json", index.len() as u64, &mut &index[..])
            .at(dest)?;
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        tar.member("oci-layout", layout.len() as u64, &mut &layout[..])
            .at(dest)?;
        tar.finish().at(dest)?;
    }
    out.commit_unsynced()
}
