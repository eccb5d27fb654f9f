//! `Descriptor`: what a manifest or index says about a blob it points at
//! (media type, digest, size, and for index entries the platform), with the
//! descriptor's own JSON kept so fields this code does not know survive.

use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::platform::Platform;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Clone, Debug)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub annotations: Option<Map<String, Value>>,
    /// The platform an index entry declares (absent on many entries).
    pub platform: Option<Platform>,
    pub artifact_type: Option<String>,
    /// The descriptor exactly as read.
    pub json: Value,
}

fn invalid(what: &str, reason: String) -> Error {
    Error::MalformedDocument {
        what: what.to_string(),
        reason,
    }
}

impl Descriptor {
    pub fn parse(what: &str, v: &Value) -> Result<Descriptor> {
        let digest = v
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(what, "descriptor has no digest".into()))?
            .parse::<Digest>()?;
        let size = v
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| invalid(what, format!("descriptor {digest} has no valid size")))?;
        let text = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
        let platform = v.get("platform").and_then(|p| {
            Some(Platform {
                os: text(p, "os")?,
                architecture: text(p, "architecture")?,
                variant: text(p, "variant").filter(|s| !s.is_empty()),
            })
        });
        Ok(Descriptor {
            media_type: text(v, "mediaType").unwrap_or_default(),
            digest,
            size,
            annotations: v.get("annotations").and_then(Value::as_object).cloned(),
            platform,
            artifact_type: text(v, "artifactType"),
            json: v.clone(),
        })
    }

    /// A new descriptor for bytes held in memory.
    pub fn of_bytes(media_type: &str, bytes: &[u8]) -> Descriptor {
        let digest = Digest::sha256_of(bytes);
        let json = serde_json::json!({
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": bytes.len(),
        });
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: bytes.len() as u64,
            annotations: None,
            platform: None,
            artifact_type: None,
            json,
        }
    }

    /// An annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key)?.as_str()
    }

    /// The names a user gives this entry of a layout's index.json: its
    /// `org.opencontainers.image.ref.name` and containerd's image name.
    pub fn names(&self) -> Vec<String> {
        [REF_NAME, CONTAINERD_NAME]
            .iter()
            .filter_map(|k| self.annotation(k).map(str::to_string))
            .collect()
    }

    /// The same descriptor declaring `platform` (as an index entry).
    pub fn with_platform(&self, platform: &Platform) -> Descriptor {
        let mut d = self.clone();
        let mut p = serde_json::json!({"architecture": platform.architecture, "os": platform.os});
        if let Some(v) = &platform.variant {
            p["variant"] = Value::String(v.clone());
        }
        d.json["platform"] = p;
        d.platform = Some(platform.clone());
        d
    }

    /// The same descriptor named `ref_name` (other annotations kept; a
    /// containerd name is dropped, as it would name something else).
    pub fn with_ref_name(&self, ref_name: Option<&str>) -> Descriptor {
        let mut d = self.clone();
        let mut ann = d.annotations.take().unwrap_or_default();
        ann.remove(REF_NAME);
        ann.remove(CONTAINERD_NAME);
        if let Some(r) = ref_name {
            ann.insert(REF_NAME.into(), Value::String(r.to_string()));
        }
        if let Some(o) = d.json.as_object_mut() {
            if ann.is_empty() {
                o.remove("annotations");
            } else {
                o.insert("annotations".into(), Value::Object(ann.clone()));
            }
        }
        d.annotations = Some(ann).filter(|a| !a.is_empty());
        d
    }
}
