//! `Manifest`: whatever a manifest digest names — an image, an index of
//! manifests, or an artifact (a manifest whose config is not an image
//! config: signatures, attestations, SBOMs, Helm charts…). Artifacts are
//! copied blob for blob; only images can be run, exported or edited.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{parse_json, Image};
use crate::index::Index;
use crate::layer::BlobSource;
use crate::media::{self, Compression};
use crate::platform::Platform;

/// What kind of document a manifest's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Index,
    Image,
    Artifact,
}

/// Tell an index, an image manifest and an artifact manifest apart.
/// `media_type` is the type the document was served or described with,
/// used when the document does not say.
pub fn classify(what: &str, value: &Value, media_type: &str) -> Result<Kind> {
    if !value.is_object() {
        return Err(Error::MalformedDocument {
            what: what.to_string(),
            reason: "manifest is not a JSON object".into(),
        });
    }
    match value.get("schemaVersion").and_then(Value::as_u64) {
        Some(2) => {}
        Some(1) => {
            return Err(Error::UnsupportedMediaType {
                what: what.to_string(),
                media_type:
                    "Docker schema 1 manifest (deprecated; re-push the image with a current client)"
                        .into(),
            })
        }
        _ => {
            return Err(Error::MalformedDocument {
                what: what.to_string(),
                reason: "manifest has no schemaVersion 2".into(),
            })
        }
    }
    let declared = value
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or(media_type);
    if media::is_index(declared) || value.get("manifests").is_some() {
        return Ok(Kind::Index);
    }
    if !declared.is_empty() && !media::is_manifest(declared) {
        return Err(Error::UnsupportedMediaType {
            what: what.to_string(),
            media_type: declared.to_string(),
        });
    }
    let config_type = value
        .pointer("/config/mediaType")
        .and_then(Value::as_str)
        .unwrap_or(media::OCI_CONFIG);
    let layers_are_layers = value
        .get("layers")
        .and_then(Value::as_array)
        .map(|ls| {
            ls.iter().all(|l| {
                l.get("mediaType")
                    .and_then(Value::as_str)
                    .and_then(Compression::of_layer_media_type)
                    .is_some()
            })
        })
        .unwrap_or(false);
    let image_config = config_type == media::OCI_CONFIG || config_type == media::DOCKER_CONFIG;
    if image_config && layers_are_layers && value.get("artifactType").is_none() {
        Ok(Kind::Image)
    } else {
        Ok(Kind::Artifact)
    }
}

/// The descriptors a manifest or index document points at (an index's
/// entries; a manifest's config and layers — not its `subject`, which it
/// refers to rather than contains).
pub fn referenced(what: &str, raw: &[u8]) -> Result<Vec<Descriptor>> {
    let value = parse_json(what, raw)?;
    let mut out = Vec::new();
    let lists = ["manifests", "layers", "blobs"];
    if let Some(c) = value.get("config") {
        out.push(Descriptor::parse(&format!("{what} config"), c)?);
    }
    for key in lists {
        for d in value
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.push(Descriptor::parse(&format!("{what} {key} entry"), d)?);
        }
    }
    Ok(out)
}

/// A blob of a manifest and where its bytes are.
#[derive(Clone, Debug)]
pub struct Blob {
    pub descriptor: Descriptor,
    pub source: BlobSource,
}

impl Blob {
    /// The bytes, verified against the digest and size as they are read.
    pub fn open(&self) -> Result<crate::digest::VerifyingReader<Box<dyn std::io::Read + Send>>> {
        Ok(crate::digest::VerifyingReader::new(
            self.source.open_raw()?,
            self.descriptor.digest.clone(),
            Some(self.descriptor.size),
            format!(
                "blob {} ({})",
                self.descriptor.digest,
                self.source.describe()
            ),
        ))
    }
}

/// A manifest that is not an image: kept byte for byte with its blobs.
#[derive(Clone, Debug)]
pub struct Artifact {
    raw: Arc<Vec<u8>>,
    media_type: String,
    artifact_type: String,
    blobs: Vec<Blob>,
}

impl Artifact {
    /// Pair an artifact manifest with the sources of the blobs it lists
    /// (config first, then layers, in the manifest's order).
    pub fn new(raw: Vec<u8>, media_type: &str, sources: Vec<BlobSource>) -> Result<Artifact> {
        let digest = Digest::sha256_of(&raw);
        let what = format!("artifact {digest}");
        let value = parse_json(&what, &raw)?;
        let descriptors = referenced(&what, &raw)?;
        if descriptors.len() != sources.len() {
            return Err(Error::MalformedDocument {
                what,
                reason: format!(
                    "{} blobs listed, {} found",
                    descriptors.len(),
                    sources.len()
                ),
            });
        }
        let mut blobs = Vec::new();
        for (descriptor, source) in descriptors.into_iter().zip(sources) {
            if source.len() != descriptor.size {
                return Err(Error::SizeMismatch {
                    what: format!(
                        "blob {} of {what} ({})",
                        descriptor.digest,
                        source.describe()
                    ),
                    expected: descriptor.size,
                    actual: source.len(),
                });
            }
            blobs.push(Blob { descriptor, source });
        }
        let media_type = value
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or(media_type)
            .to_string();
        let artifact_type = value
            .get("artifactType")
            .and_then(Value::as_str)
            .or_else(|| value.pointer("/config/mediaType").and_then(Value::as_str))
            .unwrap_or("")
            .to_string();
        Ok(Artifact {
            raw: Arc::new(raw),
            media_type,
            artifact_type,
            blobs,
        })
    }
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }
    pub fn digest(&self) -> Digest {
        Digest::sha256_of(&self.raw)
    }
    pub fn media_type(&self) -> &str {
        &self.media_type
    }
    /// `artifactType`, else the config's media type (as the spec says).
    pub fn artifact_type(&self) -> &str {
        &self.artifact_type
    }
    /// Config first, then layers.
    pub fn blobs(&self) -> &[Blob] {
        &self.blobs
    }
}

/// Anything a manifest digest can name.
#[derive(Clone, Debug)]
pub enum Manifest {
    Image(Image),
    Index(Index),
    Artifact(Artifact),
}

impl Manifest {
    pub fn raw(&self) -> &[u8] {
        match self {
            Manifest::Image(i) => i.manifest_raw(),
            Manifest::Index(i) => i.raw(),
            Manifest::Artifact(a) => a.raw(),
        }
    }
    pub fn digest(&self) -> Digest {
        Digest::sha256_of(self.raw())
    }
    pub fn media_type(&self) -> &str {
        match self {
            Manifest::Image(i) => i.manifest_media_type(),
            Manifest::Index(i) => i.media_type(),
            Manifest::Artifact(a) => a.media_type(),
        }
    }
    /// "an image", "an index", "an artifact".
    pub fn kind_name(&self) -> &'static str {
        match self {
            Manifest::Image(_) => "an image",
            Manifest::Index(_) => "a multi-platform index",
            Manifest::Artifact(_) => "an artifact",
        }
    }
    /// The descriptor that names this manifest in an index.json.
    pub fn descriptor(&self) -> Descriptor {
        let mut d = Descriptor::of_bytes(self.media_type(), self.raw());
        if let Manifest::Artifact(a) = self {
            if !a.artifact_type().is_empty() {
                d.artifact_type = Some(a.artifact_type().to_string());
                d.json["artifactType"] = Value::String(a.artifact_type().to_string());
            }
        }
        d
    }

    /// The image for `platform`: from an index, the entry for it (default:
    /// this host); a single image must be for that platform when one is
    /// asked for (as `docker pull --platform` insists).
    pub fn into_image(self, what: &str, platform: Option<&Platform>) -> Result<Image> {
        match self {
            Manifest::Image(img) => {
                if let Some(want) = platform {
                    let have = img.platform();
                    let known = !have.os.is_empty() && !have.architecture.is_empty();
                    if known && !want.matches(&have) {
                        return Err(Error::PlatformNotFound {
                            what: format!("{what} (image {})", img.digest()),
                            wanted: want.to_string(),
                            available: vec![have.to_string()],
                        });
                    }
                }
                Ok(img)
            }
            Manifest::Index(ix) => {
                let host = Platform::host();
                ix.select(platform.unwrap_or(&host))
                    .cloned()
                    .map_err(|e| match e {
                        Error::PlatformNotFound {
                            wanted, available, ..
                        } => Error::PlatformNotFound {
                            what: format!("{what} (index {})", ix.digest()),
                            wanted,
                            available,
                        },
                        other => other,
                    })
            }
            Manifest::Artifact(a) => Err(Error::NotAnImage {
                what: what.to_string(),
                kind: "an artifact",
                media_type: a.artifact_type().to_string(),
            }),
        }
    }

    /// The same tree (every manifest byte for byte) with blob bytes found
    /// elsewhere: `source_of` gives a new source for a blob, or `None` to
    /// keep it. Used to swap registry sources for store blobs once fetched.
    pub fn with_blob_sources(
        &self,
        source_of: &mut dyn FnMut(&Descriptor, &BlobSource) -> Result<Option<BlobSource>>,
    ) -> Result<Manifest> {
        Ok(match self {
            Manifest::Image(img) => Manifest::Image(
                img.with_layer_sources(&mut |l| source_of(&l.descriptor(), l.source()))?,
            ),
            Manifest::Artifact(a) => {
                let mut a = a.clone();
                for b in &mut a.blobs {
                    if let Some(s) = source_of(&b.descriptor, &b.source)? {
                        b.source = s;
                    }
                }
                Manifest::Artifact(a)
            }
            Manifest::Index(ix) => {
                Manifest::Index(ix.with_children(&mut |c| c.with_blob_sources(source_of))?)
            }
        })
    }

    /// Every manifest of the tree, children before their index, each once:
    /// the order a registry needs them pushed in.
    pub fn manifests_bottom_up(&self) -> Vec<&Manifest> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        fn walk<'a>(m: &'a Manifest, seen: &mut HashSet<Digest>, out: &mut Vec<&'a Manifest>) {
            if let Manifest::Index(ix) = m {
                for (_, c) in ix.children() {
                    if let Some(c) = c {
                        walk(c, seen, out);
                    }
                }
            }
            if seen.insert(m.digest()) {
                out.push(m);
            }
        }
        walk(self, &mut seen, &mut out);
        out
    }

    /// The blobs (configs and layers, not manifests) of one manifest.
    pub fn own_blobs(&self) -> Vec<Blob> {
        match self {
            Manifest::Image(img) => {
                let config = img.config_raw().to_vec();
                let mut out = vec![Blob {
                    descriptor: Descriptor::of_bytes(&img.config_media_type(), &config),
                    source: BlobSource::Bytes(Arc::new(config)),
                }];
                for l in img.layers() {
                    out.push(Blob {
                        descriptor: l.descriptor(),
                        source: l.source().clone(),
                    });
                }
                out
            }
            Manifest::Artifact(a) => a.blobs().to_vec(),
            Manifest::Index(_) => Vec::new(),
        }
    }

    /// Every blob of the tree, each once.
    pub fn all_blobs(&self) -> Vec<Blob> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for m in self.manifests_bottom_up() {
            for b in m.own_blobs() {
                if seen.insert(b.descriptor.digest.clone()) {
                    out.push(b);
                }
            }
        }
        out
    }

    /// Entries of indexes in the tree whose manifests the source lacks.
    pub fn missing_children(&self) -> Vec<Descriptor> {
        self.manifests_bottom_up()
            .into_iter()
            .filter_map(|m| match m {
                Manifest::Index(ix) => Some(ix.missing().into_iter().cloned().collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// Refuse to write a tree that names manifests it does not hold.
    pub fn check_complete(&self, destination: &str) -> Result<()> {
        let missing = self.missing_children();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::IncompleteIndex {
            index: format!("index {}", self.digest()),
            destination: destination.to_string(),
            missing: missing
                .iter()
                .map(|d| match &d.platform {
                    Some(p) => format!("{p} {}", d.digest),
                    None => d.digest.to_string(),
                })
                .collect(),
        })
    }
}

impl From<Image> for Manifest {
    fn from(i: Image) -> Manifest {
        Manifest::Image(i)
    }
}
