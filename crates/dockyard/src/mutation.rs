//! `Mutation`: the edits `mutate` makes, in the order it makes them —
//! remove layers, add one layer (host files and deletions), edit the
//! config, set the manifest family.

use std::path::{Path, PathBuf};

use dockyard_image::paths::{PathIndex, PathKind};
use dockyard_image::tar::{LayerBuilder, LayerOptions};
use dockyard_image::{ConfigEdit, Image, Platform, Store};

use crate::error::Result;

/// Which layer to remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerRemoval {
    /// The top layer.
    Top,
    /// The layer at this index (0 = base).
    At(usize),
}

#[derive(Clone, Debug, Default)]
pub struct Mutation {
    /// The image to start from in an index (and the platform of `scratch`).
    pub platform: Option<Platform>,
    /// Applied first, in order.
    pub remove_layers: Vec<LayerRemoval>,
    /// Host path → image path, all into one new layer.
    pub add: Vec<(PathBuf, String)>,
    /// Files given by their bytes (image path → contents, mode 0644), in
    /// the same new layer.
    pub contents: Vec<(String, Vec<u8>)>,
    /// Image paths deleted (whiteouts in the new layer).
    pub delete: Vec<String>,
    pub config: Vec<ConfigEdit>,
    /// Manifest family: Docker schema 2 (`true`) or OCI (`false`).
    pub docker_format: Option<bool>,
}

/// Where a host path goes, as Dockerfile COPY decides: a file copied to
/// `DEST/` or to a directory of the image lands inside it, a directory's
/// contents go into DEST; symlinks in DEST (`/bin` → `usr/bin`, also as a
/// parent) are followed, so neither replaces a directory or a symlink of
/// the image. `index` is `None` when the image's paths are not read (see
/// `Mutation::apply`): DEST is then taken as written.
fn copy_destination(index: Option<&PathIndex>, host: &Path, dest: &str) -> Result<String> {
    // The host entry itself: a symlink is copied as a symlink.
    let host_is_dir = std::fs::symlink_metadata(host)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    let trimmed = dest.trim_end_matches('/');
    let resolved = match index {
        Some(ix) => ix.resolve(trimmed)?,
        None => (format!("/{}", trimmed.trim_start_matches('/')), None),
    };
    if host_is_dir {
        return Ok(resolved.0);
    }
    let name = host
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let into_dir = dest.ends_with('/') || trimmed.is_empty() || resolved.1 == Some(PathKind::Dir);
    if into_dir {
        Ok(format!("{}/{name}", resolved.0.trim_end_matches('/')))
    } else {
        Ok(resolved.0)
    }
}

impl Mutation {
    /// Apply to `image`; a new layer is built straight into `store`.
    pub fn apply(&self, mut image: Image, store: &Store) -> Result<Image> {
        dockyard_image::image::check_source_date_epoch()?;
        for edit in &self.config {
            if let ConfigEdit::ExposedPort(p) = edit {
                dockyard_image::mutate::exposed_ports(p)?;
            }
        }
        for r in &self.remove_layers {
            image = match r {
                LayerRemoval::Top => image.pop_layer()?,
                LayerRemoval::At(i) => image.remove_layer(*i)?,
            };
        }
        if !self.add.is_empty() || !self.delete.is_empty() || !self.contents.is_empty() {
            let mut builder = LayerBuilder::new(LayerOptions::default());
            // History names what was added by kind and destination, not
            // by host path, so the same files from another folder give
            // the same image; the layer's digest names the content.
            let mut described = Vec::new();
            // The image's paths are read (all layers' headers) when a file
            // is added or a path deleted, or when the layers are local. A
            // directory added to an image opened lazily from a registry
            // does not download its base layers: DEST is taken as written.
            let needs_paths = !self.delete.is_empty()
                || !image.has_remote_layers()
                || self.add.iter().any(|(h, _)| {
                    !std::fs::symlink_metadata(h)
                        .map(|m| m.is_dir())
                        .unwrap_or(false)
                });
            let index = if needs_paths {
                Some(image.path_index()?)
            } else {
                None
            };
            for (host, dest) in &self.add {
                let dest = copy_destination(index.as_ref(), host, dest)?;
                builder.add_path(host, &dest)?;
                let kind = if host.is_dir() { "dir" } else { "file" };
                described.push(format!("ADD {kind} in {dest}"));
            }
            for (dest, data) in &self.contents {
                // Symlinked parents of the image are followed, as for --add.
                let dest = match index.as_ref() {
                    Some(ix) => ix.resolve(dest)?.0,
                    None => dest.clone(),
                };
                builder.add_contents(&dest, data.clone(), 0o644)?;
                described.push(format!("ADD bytes in {dest}"));
            }
            for path in &self.delete {
                if index.as_ref().and_then(|ix| ix.kind(path)).is_none() {
                    tracing::warn!(
                        "--delete {path}: the image has no such path; nothing to delete"
                    );
                }
                builder.delete(path)?;
                described.push(format!("DELETE {path}"));
            }
            let layer = builder.build_in_store(store)?;
            let created_by = format!(
                "dockyard mutate {}: {}",
                layer.diff_id(),
                described.join("; ")
            );
            image = image.append_layer(layer, &created_by);
        }
        if !self.config.is_empty() {
            image = image.with_config_edits(&self.config);
        }
        if let Some(docker) = self.docker_format {
            image = image.with_manifest_family(docker)?;
        }
        Ok(image)
    }
}
