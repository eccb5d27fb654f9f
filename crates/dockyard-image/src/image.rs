//! `Image`: an immutable manifest + config + ordered layers, base first.
//!
//! The raw manifest and config bytes are kept exactly as read; they are
//! serialised anew only after an edit, so digests, field order and fields
//! this code does not know survive a round trip.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::layer::{BlobSource, Layer};
use crate::media;
use crate::platform::Platform;

#[derive(Clone, Debug)]
pub struct Image {
    manifest_raw: Arc<Vec<u8>>,
    manifest: Value,
    config_raw: Arc<Vec<u8>>,
    config: Value,
    layers: Vec<Layer>,
}

pub(crate) fn parse_json(what: &str, bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json {
        what: what.to_string(),
        source,
    })
}

fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::MalformedDocument {
        what: what.into(),
        reason: reason.into(),
    }
}

/// A manifest, checked to be an image manifest we can read.
#[derive(Clone, Debug)]
pub struct ManifestInfo {
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl ManifestInfo {
    pub fn parse(what: &str, raw: &[u8]) -> Result<ManifestInfo> {
        let v = parse_json(what, raw)?;
        Self::from_value(what, &v)
    }
    pub fn from_value(what: &str, v: &Value) -> Result<ManifestInfo> {
        if !v.is_object() {
            return Err(invalid(what, "manifest is not a JSON object"));
        }
        match v.get("schemaVersion").and_then(Value::as_u64) {
            Some(2) => {}
            Some(1) => return Err(Error::UnsupportedMediaType {
                what: what.to_string(),
                media_type:
                    "Docker schema 1 manifest (deprecated; re-push the image with a current client)"
                        .into(),
            }),
            _ => return Err(invalid(what, "manifest has no schemaVersion 2")),
        }
        let media_type = v
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or(media::OCI_MANIFEST)
            .to_string();
        if media::is_index(&media_type) || v.get("manifests").is_some() {
            return Err(invalid(
                what,
                "this is an index of manifests, not an image manifest",
            ));
        }
        if !media::is_manifest(&media_type) {
            return Err(Error::UnsupportedMediaType {
                what: what.to_string(),
                media_type,
            });
        }
        let config = Descriptor::parse(
            &format!("{what} config"),
            v.get("config")
                .ok_or_else(|| invalid(what, "manifest has no config"))?,
        )?;
        let layers = v
            .get("layers")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(what, "manifest has no layers list"))?
            .iter()
            .map(|l| Descriptor::parse(&format!("{what} layer"), l))
            .collect::<Result<Vec<_>>>()?;
        Ok(ManifestInfo {
            media_type,
            config,
            layers,
        })
    }
}

/// Read `rootfs.diff_ids` from a config.
pub fn config_diff_ids(what: &str, config: &Value) -> Result<Vec<Digest>> {
    let ids = config
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(Value::as_array);
    match ids {
        None => Ok(Vec::new()),
        Some(ids) => ids
            .iter()
            .map(|d| {
                d.as_str()
                    .ok_or_else(|| invalid(what, "rootfs.diff_ids holds a non-string"))?
                    .parse::<Digest>()
            })
            .collect(),
    }
}

/// The created timestamp for things we author: `SOURCE_DATE_EPOCH` or 0.
/// An unparsable value counts as 0 here; `check_source_date_epoch` is
/// how entry points refuse it.
pub fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// Refuse a `SOURCE_DATE_EPOCH` that is set but is not a count of seconds
/// (a reproducible build must not quietly fall back to 1970).
pub fn check_source_date_epoch() -> Result<()> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if v.trim().parse::<u64>().is_err() => {
            Err(Error::InvalidSourceDateEpoch { value: v })
        }
        _ => Ok(()),
    }
}

/// RFC 3339 UTC for a unix time, without pulling in a date crate.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

impl Image {
    /// Assemble an image from what a transport read, checking that the
    /// manifest, config and layers agree (config digest, layer digests,
    /// diff_ids).
    pub fn from_parts(
        manifest_raw: Vec<u8>,
        config_raw: Vec<u8>,
        layers: Vec<Layer>,
    ) -> Result<Image> {
        let manifest = parse_json("manifest", &manifest_raw)?;
        let info = ManifestInfo::from_value("manifest", &manifest)?;
        let actual = Digest::compute(info.config.digest.algorithm(), &config_raw);
        if actual != info.config.digest {
            return Err(Error::DigestMismatch {
                what: "image config".into(),
                expected: info.config.digest,
                actual,
            });
        }
        if info.config.size != config_raw.len() as u64 {
            return Err(Error::SizeMismatch {
                what: format!("image config {}", info.config.digest),
                expected: info.config.size,
                actual: config_raw.len() as u64,
            });
        }
        let config = parse_json(&format!("image config {}", info.config.digest), &config_raw)?;
        if !config.is_object() {
            return Err(invalid("image config", "not a JSON object"));
        }
        let diff_ids = config_diff_ids("image config", &config)?;
        if info.layers.len() != layers.len() || diff_ids.len() != layers.len() {
            return Err(invalid(
                "image",
                format!(
                    "manifest lists {} layers, config lists {} diff_ids, {} layers found",
                    info.layers.len(),
                    diff_ids.len(),
                    layers.len()
                ),
            ));
        }
        for (i, (d, l)) in info.layers.iter().zip(&layers).enumerate() {
            if &d.digest != l.digest() || &diff_ids[i] != l.diff_id() {
                return Err(invalid(
                    "image",
                    format!(
                        "layer {i} ({}) does not match the manifest/config",
                        l.digest()
                    ),
                ));
            }
        }
        Ok(Image {
            manifest_raw: Arc::new(manifest_raw),
            manifest,
            config_raw: Arc::new(config_raw),
            config,
            layers,
        })
    }

    /// An empty image for a platform (the `scratch` source).
    pub fn scratch(platform: &Platform) -> Image {
        let mut config = json!({
            "created": rfc3339(source_date_epoch()),
            "architecture": platform.architecture,
            "os": platform.os,
        });
        if let Some(v) = &platform.variant {
            config["variant"] = json!(v);
        }
        config["config"] = json!({});
        config["rootfs"] = json!({"type": "layers", "diff_ids": []});
        config["history"] = json!([]);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {},
            "layers": [],
        });
        Image::rebuild(manifest, config, Vec::new())
    }

    /// Serialise a new manifest and config for edited contents. The old
    /// manifest's other fields (annotations, …) are kept.
    pub(crate) fn rebuild(mut manifest: Value, config: Value, layers: Vec<Layer>) -> Image {
        let config_raw = serde_json::to_vec(&config)
            .unwrap_or_else(|_| unreachable!("a Value always serialises"));
        let docker =
            manifest.get("mediaType").and_then(Value::as_str) == Some(media::DOCKER_MANIFEST);
        let config_media_type = manifest
            .get("config")
            .and_then(|c| c.get("mediaType"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| {
                if docker {
                    media::DOCKER_CONFIG
                } else {
                    media::OCI_CONFIG
                }
                .to_string()
            });
        let config_digest = Digest::sha256_of(&config_raw);
        let mut config_desc = manifest.get("config").cloned().unwrap_or_else(|| json!({}));
        if !config_desc.is_object() {
            config_desc = json!({});
        }
        config_desc["mediaType"] = json!(config_media_type);
        config_desc["digest"] = json!(config_digest.to_string());
        config_desc["size"] = json!(config_raw.len());
        manifest["config"] = config_desc;
        manifest["layers"] = Value::Array(layers.iter().map(Layer::descriptor_json).collect());
        let manifest_raw = serde_json::to_vec(&manifest)
            .unwrap_or_else(|_| unreachable!("a Value always serialises"));
        Image {
            manifest_raw: Arc::new(manifest_raw),
            manifest,
            config_raw: Arc::new(config_raw),
            config,
            layers,
        }
    }

    /// Digest of the manifest: the image's identity.
    pub fn digest(&self) -> Digest {
        Digest::sha256_of(&self.manifest_raw)
    }
    pub fn manifest_raw(&self) -> &[u8] {
        &self.manifest_raw
    }
    pub fn manifest_json(&self) -> &Value {
        &self.manifest
    }
    pub fn manifest_media_type(&self) -> &str {
        self.manifest
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or(media::OCI_MANIFEST)
    }
    pub fn config_raw(&self) -> &[u8] {
        &self.config_raw
    }
    pub fn config_json(&self) -> &Value {
        &self.config
    }
    pub fn config_digest(&self) -> Digest {
        Digest::sha256_of(&self.config_raw)
    }
    pub fn config_media_type(&self) -> String {
        self.manifest
            .get("config")
            .and_then(|c| c.get("mediaType"))
            .and_then(Value::as_str)
            .unwrap_or(media::OCI_CONFIG)
            .to_string()
    }
    /// The config parsed into oci-spec's type, for typed reading.
    pub fn config(&self) -> Result<oci_spec::image::ImageConfiguration> {
        serde_json::from_slice(&self.config_raw).map_err(|source| Error::Json {
            what: format!("image config {}", self.config_digest()),
            source,
        })
    }
    /// The manifest parsed into oci-spec's type.
    pub fn manifest(&self) -> Result<oci_spec::image::ImageManifest> {
        serde_json::from_slice(&self.manifest_raw).map_err(|source| Error::Json {
            what: format!("manifest {}", self.digest()),
            source,
        })
    }
    /// Layers, base first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
    /// The platform the config names (empty fields when it names none).
    pub fn platform(&self) -> Platform {
        Platform::from_config(&self.config).unwrap_or(Platform {
            os: String::new(),
            architecture: String::new(),
            variant: None,
        })
    }
    /// The size of manifest + config + layers as stored.
    pub fn total_size(&self) -> u64 {
        self.manifest_raw.len() as u64
            + self.config_raw.len() as u64
            + self.layers.iter().map(Layer::size).sum::<u64>()
    }
}

impl Image {
    /// Wrap existing config bytes (kept byte for byte) and layers in a new
    /// manifest of the OCI family (or Docker's when `docker`).
    pub fn from_config_and_layers(
        config_raw: Vec<u8>,
        layers: Vec<Layer>,
        docker: bool,
    ) -> Result<Image> {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": if docker { media::DOCKER_MANIFEST } else { media::OCI_MANIFEST },
            "config": {
                "mediaType": if docker { media::DOCKER_CONFIG } else { media::OCI_CONFIG },
                "digest": Digest::sha256_of(&config_raw).to_string(),
                "size": config_raw.len(),
            },
            "layers": layers.iter().map(Layer::descriptor_json).collect::<Vec<_>>(),
        });
        let manifest_raw = serde_json::to_vec(&manifest)
            .unwrap_or_else(|_| unreachable!("a Value always serialises"));
        Image::from_parts(manifest_raw, config_raw, layers)
    }

    /// The same image (manifest and config byte for byte) with its layer
    /// bytes found elsewhere: `source_of` gives a new source for a layer
    /// or `None` to keep it.
    pub fn with_layer_sources(
        &self,
        source_of: &mut dyn FnMut(&Layer) -> Result<Option<BlobSource>>,
    ) -> Result<Image> {
        let mut image = self.clone();
        for layer in &mut image.layers {
            if let Some(s) = source_of(layer)? {
                if s.len() != layer.size() {
                    return Err(Error::SizeMismatch {
                        what: format!("layer {} ({})", layer.digest(), s.describe()),
                        expected: layer.size(),
                        actual: s.len(),
                    });
                }
                *layer = layer.clone().with_source(s);
            }
        }
        Ok(image)
    }

    /// The same config (byte for byte) over other blobs of the same layers
    /// (e.g. uncompressed instead of gzip): a new manifest.
    pub fn with_layer_blobs(&self, layers: Vec<Layer>) -> Result<Image> {
        let mut manifest = self.manifest.clone();
        manifest["layers"] = Value::Array(layers.iter().map(Layer::descriptor_json).collect());
        let manifest_raw = serde_json::to_vec(&manifest)
            .unwrap_or_else(|_| unreachable!("a Value always serialises"));
        Image::from_parts(manifest_raw, self.config_raw.to_vec(), layers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn schema1_and_indexes_are_refused_clearly() {
        let schema1 = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        let err = ManifestInfo::parse("manifest m", schema1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("schema 1") && err.contains("manifest m"),
            "{err}"
        );
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let err = ManifestInfo::parse("manifest i", index)
            .unwrap_err()
            .to_string();
        assert!(err.contains("index"), "{err}");
        let weird =
            br#"{"schemaVersion":2,"mediaType":"application/x-unknown","config":{},"layers":[]}"#;
        let err = ManifestInfo::parse("manifest w", weird)
            .unwrap_err()
            .to_string();
        assert!(err.contains("application/x-unknown"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn manifest_parsing_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = ManifestInfo::parse("fuzz", &bytes);
        }

        #[test]
        fn json_shaped_manifests_never_panic(s in r#"\{"schemaVersion":[0-9],"mediaType":"[a-z./+]{0,30}","config":\{"digest":"[a-z0-9:]{0,80}","size":-?[0-9]{0,5}\},"layers":\[[^\]]{0,60}\]\}"#) {
            let _ = ManifestInfo::parse("fuzz", s.as_bytes());
        }
    }

    #[test]
    fn scratch_is_consistent() {
        let img = Image::scratch(&Platform::host());
        let again = Image::from_parts(
            img.manifest_raw().to_vec(),
            img.config_raw().to_vec(),
            vec![],
        )
        .unwrap();
        assert_eq!(img.digest(), again.digest());
        assert_eq!(img.platform(), Platform::host());
    }
}
