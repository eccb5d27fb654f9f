//! Edits. Each returns a new `Image`; `history` and `rootfs.diff_ids` stay
//! consistent with the layers, and config fields not touched by the edit are
//! kept as they were (including ones this code does not know).

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::image::{rfc3339, source_date_epoch, Image};
use crate::layer::Layer;
use crate::media;
use crate::platform::Platform;

/// One change to the runtime config (`config.config`).
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigEdit {
    /// `KEY=VALUE`, replacing a variable of the same name.
    Env(String, String),
    Entrypoint(Vec<String>),
    Cmd(Vec<String>),
    WorkingDir(String),
    User(String),
    Label(String, String),
    /// `80/tcp`, `53/udp`; a bare number means tcp (see `exposed_ports`).
    ExposedPort(String),
}

/// The `ExposedPorts` keys for a port spec as Docker's `EXPOSE` takes it:
/// `80`, `80/tcp`, `53/udp`, `132/sctp`, `8000-8010/tcp` (a range is one
/// key per port, as Docker writes it).
pub fn exposed_ports(spec: &str) -> Result<Vec<String>> {
    let bad = |reason: &str| Error::InvalidPort {
        input: spec.to_string(),
        reason: reason.to_string(),
    };
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(bad("the protocol must be tcp, udp or sctp"));
    }
    let number = |s: &str| -> Result<u32> {
        let n: u32 = s
            .trim()
            .parse()
            .map_err(|_| bad("the port is not a number"))?;
        if !(1..=65535).contains(&n) {
            return Err(bad("ports are 1 to 65535"));
        }
        Ok(n)
    };
    let (first, last) = match ports.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => {
            let n = number(ports)?;
            (n, n)
        }
    };
    if first > last {
        return Err(bad("a range must go up"));
    }
    Ok((first..=last).map(|p| format!("{p}/{proto}")).collect())
}

/// A command as `--cmd`/`--entrypoint` (and Dockerfile `CMD`) take it: a
/// JSON array of strings (exec form), or a string run by `/bin/sh -c`
/// (shell form), as Docker does.
pub fn command(spec: &str) -> Result<Vec<String>> {
    if spec.trim_start().starts_with('[') {
        return serde_json::from_str::<Vec<String>>(spec).map_err(|e| Error::InvalidCommand {
            input: spec.to_string(),
            reason: format!("not a JSON array of strings: {e}"),
        });
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), spec.to_string()])
}

/// Rewrite an object with its keys in order (Docker writes Labels and
/// ExposedPorts sorted), so the order edits were given in does not change
/// the config's digest.
fn sort_keys(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        let mut entries: Vec<(String, Value)> = std::mem::take(o).into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        o.extend(entries);
    }
}

fn history_created_by_layer(entry: &Value) -> bool {
    !entry
        .get("empty_layer")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

impl Image {
    fn parts(&self) -> (Value, Value, Vec<Layer>) {
        (
            self.manifest_json().clone(),
            self.config_json().clone(),
            self.layers().to_vec(),
        )
    }

    /// Make `history` hold one non-empty entry per layer before an edit that
    /// adds or removes one, so the two stay aligned afterwards.
    fn aligned_history(config: &mut Value, layer_count: usize) -> &mut Vec<Value> {
        if !config.get("history").map(Value::is_array).unwrap_or(false) {
            config["history"] = json!([]);
        }
        let history = config["history"]
            .as_array_mut()
            .unwrap_or_else(|| unreachable!("set above"));
        let have = history
            .iter()
            .filter(|h| history_created_by_layer(h))
            .count();
        for _ in have..layer_count {
            history.push(json!({"created": rfc3339(source_date_epoch()), "created_by": "dockyard: layer without history"}));
        }
        history
    }

    fn diff_ids_mut(config: &mut Value) -> &mut Vec<Value> {
        if !config.get("rootfs").map(Value::is_object).unwrap_or(false) {
            config["rootfs"] = json!({"type": "layers"});
        }
        if !config["rootfs"]
            .get("diff_ids")
            .map(Value::is_array)
            .unwrap_or(false)
        {
            config["rootfs"]["diff_ids"] = json!([]);
        }
        config["rootfs"]["diff_ids"]
            .as_array_mut()
            .unwrap_or_else(|| unreachable!("set above"))
    }

    /// Add `layer` on top. `created_by` goes into the history entry.
    pub fn append_layer(&self, layer: Layer, created_by: &str) -> Image {
        self.append_layers(vec![(layer, created_by.to_string())], source_date_epoch())
    }

    /// Add `layers` on top, bottom first, in one edit: the config is
    /// rebuilt once however many there are. Each gets a history entry
    /// (its `created_by`), all stamped `created` (seconds since 1970), which
    /// the image's `created` becomes.
    pub fn append_layers(&self, new: Vec<(Layer, String)>, created: u64) -> Image {
        let (manifest, mut config, mut layers) = self.parts();
        let created = rfc3339(created);
        let docker = crate::media::is_docker_manifest(self.manifest_media_type());
        for (layer, created_by) in new {
            let n = layers.len();
            Image::aligned_history(&mut config, n).push(json!({
                "created": created,
                "created_by": created_by,
            }));
            Image::diff_ids_mut(&mut config).push(json!(layer.diff_id().to_string()));
            // A new layer in a Docker-family image gets the Docker media type.
            let layer = if docker {
                let mt = layer.compression().layer_media_type(true);
                layer.with_media_type(mt)
            } else {
                layer
            };
            layers.push(layer);
        }
        // The image is as new as its newest layer.
        config["created"] = json!(created);
        Image::rebuild(manifest, config, layers)
    }

    /// Remove the layer at `index` (0 is the base).
    pub fn remove_layer(&self, index: usize) -> Result<Image> {
        let (manifest, mut config, mut layers) = self.parts();
        if index >= layers.len() {
            return Err(Error::LayerIndex {
                index,
                count: layers.len(),
            });
        }
        let n = layers.len();
        let history = Image::aligned_history(&mut config, n);
        let mut seen = 0;
        let mut at = None;
        for (i, h) in history.iter().enumerate() {
            if history_created_by_layer(h) {
                if seen == index {
                    at = Some(i);
                    break;
                }
                seen += 1;
            }
        }
        if let Some(i) = at {
            history.remove(i);
        }
        let ids = Image::diff_ids_mut(&mut config);
        if index < ids.len() {
            ids.remove(index);
        }
        layers.remove(index);
        Ok(Image::rebuild(manifest, config, layers))
    }

    /// Remove the top layer.
    pub fn pop_layer(&self) -> Result<Image> {
        match self.layers().len() {
            0 => Err(Error::LayerIndex { index: 0, count: 0 }),
            n => self.remove_layer(n - 1),
        }
    }

    /// Apply runtime-config edits.
    pub fn with_config_edits(&self, edits: &[ConfigEdit]) -> Image {
        let (manifest, mut config, layers) = self.parts();
        if !config.get("config").map(Value::is_object).unwrap_or(false) {
            config["config"] = json!({});
        }
        let c = config["config"]
            .as_object_mut()
            .unwrap_or_else(|| unreachable!("set above"));
        for edit in edits {
            apply(c, edit);
        }
        for key in ["Labels", "ExposedPorts"] {
            if let Some(v) = c.get_mut(key) {
                sort_keys(v);
            }
        }
        Image::rebuild(manifest, config, layers)
    }

    /// Replace the whole config JSON (layers and diff_ids must still agree).
    pub fn with_config(&self, config: Value) -> Result<Image> {
        let ids = crate::image::config_diff_ids("new config", &config)?;
        let same = ids.len() == self.layers().len()
            && ids.iter().zip(self.layers()).all(|(d, l)| d == l.diff_id());
        if !same {
            return Err(Error::DiffIdsDisagree {
                what: "new config".into(),
            });
        }
        let (manifest, _, layers) = self.parts();
        Ok(Image::rebuild(manifest, config, layers))
    }

    pub fn with_platform(&self, platform: &Platform) -> Image {
        let (manifest, mut config, layers) = self.parts();
        config["os"] = json!(platform.os);
        config["architecture"] = json!(platform.architecture);
        match &platform.variant {
            Some(v) => config["variant"] = json!(v),
            None => {
                if let Some(o) = config.as_object_mut() {
                    o.remove("variant");
                }
            }
        }
        Image::rebuild(manifest, config, layers)
    }

    /// The same image in the other manifest family: Docker schema 2
    /// (`docker == true`) or OCI. Config and layer bytes are unchanged, so
    /// diff_ids and blob digests stay; only media types change (and
    /// manifest annotations, which schema 2 has no place for, are dropped).
    /// Returns the image itself when it already is of that family.
    pub fn with_manifest_family(&self, docker: bool) -> Result<Image> {
        if media::is_docker_manifest(self.manifest_media_type()) == docker {
            return Ok(self.clone());
        }
        let mut manifest = self.manifest_json().clone();
        let (manifest_type, config_type) = if docker {
            (media::DOCKER_MANIFEST, media::DOCKER_CONFIG)
        } else {
            (media::OCI_MANIFEST, media::OCI_CONFIG)
        };
        manifest["mediaType"] = json!(manifest_type);
        manifest["config"]["mediaType"] = json!(config_type);
        if docker {
            if let Some(o) = manifest.as_object_mut() {
                o.remove("annotations");
                o.remove("subject");
                o.remove("artifactType");
            }
        }
        let layers = self
            .layers()
            .iter()
            .map(|l| {
                let mt = l.compression().layer_media_type(docker);
                let l = l.clone().with_media_type(mt);
                if docker {
                    l.with_annotations(None)
                } else {
                    l
                }
            })
            .collect::<Vec<_>>();
        manifest["layers"] = Value::Array(layers.iter().map(Layer::descriptor_json).collect());
        let manifest_raw = serde_json::to_vec(&manifest)
            .unwrap_or_else(|_| unreachable!("a Value always serialises"));
        Image::from_parts(manifest_raw, self.config_raw().to_vec(), layers)
    }

    /// Same content with the `created` time set (reproducible builds).
    pub fn with_created(&self, secs: u64) -> Image {
        let (manifest, mut config, layers) = self.parts();
        config["created"] = json!(rfc3339(secs));
        Image::rebuild(manifest, config, layers)
    }
}

fn apply(c: &mut Map<String, Value>, edit: &ConfigEdit) {
    match edit {
        ConfigEdit::Env(k, v) => {
            let entry = format!("{k}={v}");
            let env = c.entry("Env").or_insert_with(|| json!([]));
            if !env.is_array() {
                *env = json!([]);
            }
            let list = env
                .as_array_mut()
                .unwrap_or_else(|| unreachable!("set above"));
            let prefix = format!("{k}=");
            match list.iter_mut().find(|e| {
                e.as_str()
                    .map(|s| s.starts_with(&prefix) || s == k)
                    .unwrap_or(false)
            }) {
                Some(slot) => *slot = json!(entry),
                None => list.push(json!(entry)),
            }
        }
        ConfigEdit::Entrypoint(v) => {
            c.insert("Entrypoint".into(), json!(v));
        }
        ConfigEdit::Cmd(v) => {
            c.insert("Cmd".into(), json!(v));
        }
        ConfigEdit::WorkingDir(d) => {
            c.insert("WorkingDir".into(), json!(d));
        }
        ConfigEdit::User(u) => {
            c.insert("User".into(), json!(u));
        }
        ConfigEdit::Label(k, v) => {
            let labels = c.entry("Labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            labels[k.as_str()] = json!(v);
        }
        ConfigEdit::ExposedPort(p) => {
            // Unchecked specs are kept as given (callers check with
            // `exposed_ports` first; the CLI does).
            let keys = exposed_ports(p).unwrap_or_else(|_| vec![p.clone()]);
            let ports = c.entry("ExposedPorts").or_insert_with(|| json!({}));
            if !ports.is_object() {
                *ports = json!({});
            }
            for key in keys {
                ports[key.as_str()] = json!({});
            }
        }
    }
}
