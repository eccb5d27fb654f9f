//! `Inspection`: what a source names, described without reading layers —
//! the index (digest, platforms) when there is one, the manifest picked,
//! its config, its layers or (for an artifact) its blobs.

use dockyard_image::image::config_diff_ids;
use dockyard_image::manifest::{classify, referenced, Kind};
use dockyard_image::{Digest, IndexManifest, Manifest, Platform};
use dockyard_registry::manifest::RemoteImage;
use serde_json::{json, Value};

use crate::error::Result;

#[derive(Clone, Debug)]
pub struct Inspection {
    /// The source as the user named it.
    pub source: String,
    /// What the source names, byte for byte (an index or a manifest).
    pub top_raw: Vec<u8>,
    pub top_media_type: String,
    /// For an index: its entries' platforms (as declared) and digests.
    pub platforms: Vec<(Option<Platform>, Digest)>,
    /// The manifest picked (for an index: the one for the platform; `None`
    /// when no platform was asked and none is for this host).
    pub manifest_raw: Option<Vec<u8>>,
    pub manifest_media_type: String,
    /// The image config; `None` for an artifact.
    pub config_raw: Option<Vec<u8>>,
}

impl Inspection {
    pub fn top_digest(&self) -> Digest {
        Digest::sha256_of(&self.top_raw)
    }
    pub fn is_index(&self) -> bool {
        self.manifest_raw.as_deref() != Some(&self.top_raw[..])
    }

    /// A summary for people and scripts (`inspect --json`).
    pub fn summary(&self) -> Result<Value> {
        let what = format!("{} manifest", self.source);
        let index = json!({
            "digest": self.top_digest().to_string(),
            "mediaType": self.top_media_type,
            "manifests": self.platforms.iter().map(|(p, d)| json!({
                "platform": p.as_ref().map(Platform::to_string),
                "digest": d.to_string(),
            })).collect::<Vec<_>>(),
        });
        let Some(manifest_raw) = &self.manifest_raw else {
            return Ok(json!({
                "source": self.source,
                "kind": "index",
                "index": index,
                "note": format!("no image for this host ({}); pick one with --platform", Platform::host()),
            }));
        };
        let manifest: Value =
            serde_json::from_slice(manifest_raw).map_err(|source| dockyard_image::Error::Json {
                what: what.clone(),
                source,
            })?;
        let kind = classify(&what, &manifest, &self.manifest_media_type)?;
        let blobs = referenced(&what, manifest_raw)?;
        let mut out = json!({
            "source": self.source,
            "digest": Digest::sha256_of(manifest_raw).to_string(),
            "mediaType": self.manifest_media_type,
        });
        if self.is_index() {
            out["index"] = index;
        }
        let size = manifest_raw.len() as u64 + blobs.iter().map(|b| b.size).sum::<u64>();
        out["size"] = json!(size);
        if kind != Kind::Image {
            out["kind"] = json!("artifact");
            out["artifactType"] = manifest
                .get("artifactType")
                .cloned()
                .or_else(|| manifest.pointer("/config/mediaType").cloned())
                .unwrap_or(Value::Null);
            if let Some(s) = manifest.get("subject") {
                out["subject"] = s.clone();
            }
            out["blobs"] = json!(blobs
                .iter()
                .map(|b| json!({
                    "digest": b.digest.to_string(),
                    "size": b.size,
                    "mediaType": b.media_type,
                }))
                .collect::<Vec<_>>());
            return Ok(out);
        }
        out["kind"] = json!("image");
        let config_raw = self.config_raw.as_deref().unwrap_or(b"{}");
        let config: Value =
            serde_json::from_slice(config_raw).map_err(|source| dockyard_image::Error::Json {
                what: format!("{} config", self.source),
                source,
            })?;
        let diff_ids = config_diff_ids(&format!("{} config", self.source), &config)?;
        let c = config.get("config").cloned().unwrap_or(Value::Null);
        let pick = |k: &str| c.get(k).cloned().unwrap_or(Value::Null);
        let text = |k: &str| {
            config
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let mut platform = format!("{}/{}", text("os"), text("architecture"));
        if !text("variant").is_empty() {
            platform = format!("{platform}/{}", text("variant"));
        }
        let layers: Vec<_> = blobs.iter().skip(1).collect();
        out["platform"] = json!(platform);
        out["created"] = config.get("created").cloned().unwrap_or(Value::Null);
        out["configDigest"] = json!(blobs.first().map(|c| c.digest.to_string()));
        out["layers"] = json!(layers
            .iter()
            .enumerate()
            .map(|(i, l)| json!({
                "digest": l.digest.to_string(),
                "diffId": diff_ids.get(i).map(|d| d.to_string()),
                "size": l.size,
                "mediaType": l.media_type,
            }))
            .collect::<Vec<_>>());
        out["config"] = json!({
            "Env": pick("Env"),
            "Entrypoint": pick("Entrypoint"),
            "Cmd": pick("Cmd"),
            "WorkingDir": pick("WorkingDir"),
            "User": pick("User"),
            "Labels": pick("Labels"),
            "ExposedPorts": pick("ExposedPorts"),
        });
        Ok(out)
    }
}

fn index_platforms(what: &str, raw: &[u8]) -> Result<Vec<(Option<Platform>, Digest)>> {
    let index = IndexManifest::parse(what, raw.to_vec())?;
    Ok(index
        .manifests()
        .iter()
        .map(|d| (d.platform.clone(), d.digest.clone()))
        .collect())
}

pub(crate) fn from_registry(source: &str, remote: RemoteImage) -> Result<Inspection> {
    let platforms = if remote.top.is_index() {
        index_platforms(&format!("{source} index"), &remote.top.bytes)?
    } else {
        Vec::new()
    };
    let (manifest_raw, manifest_media_type) = match remote.manifest {
        Some(m) => (Some(m.bytes), m.media_type),
        None => (None, String::new()),
    };
    Ok(Inspection {
        source: source.to_string(),
        top_raw: remote.top.bytes,
        top_media_type: remote.top.media_type,
        platforms,
        manifest_raw,
        manifest_media_type,
        config_raw: remote.config,
    })
}

pub(crate) fn from_manifest(
    source: &str,
    whole: &Manifest,
    platform: Option<&Platform>,
) -> Result<Inspection> {
    let (platforms, picked) = match whole {
        Manifest::Index(ix) => {
            let platforms = index_platforms(&format!("{source} index"), ix.raw())?;
            match whole.clone().into_image(source, platform) {
                Ok(image) => (platforms, Some(Manifest::Image(image))),
                // Nothing for this host: the index is still described.
                Err(dockyard_image::Error::PlatformNotFound { .. }) if platform.is_none() => {
                    (platforms, None)
                }
                Err(e) => return Err(e.into()),
            }
        }
        // An artifact is described as it is.
        Manifest::Artifact(_) => (Vec::new(), Some(whole.clone())),
        Manifest::Image(_) => (
            Vec::new(),
            Some(Manifest::Image(whole.clone().into_image(source, platform)?)),
        ),
    };
    let config_raw = match &picked {
        Some(Manifest::Image(img)) => Some(img.config_raw().to_vec()),
        _ => None,
    };
    Ok(Inspection {
        source: source.to_string(),
        top_raw: whole.raw().to_vec(),
        top_media_type: whole.media_type().to_string(),
        platforms,
        manifest_raw: picked.as_ref().map(|m| m.raw().to_vec()),
        manifest_media_type: picked
            .as_ref()
            .map(|m| m.media_type().to_string())
            .unwrap_or_default(),
        config_raw,
    })
}
