//! The paths of an image's merged filesystem (layers applied base first,
//! whiteouts and opaque directories honoured), from tar headers read once
//! per image — what `mutate --add` needs to copy a file *into* a directory
//! (or through a symlinked one) the way Dockerfile COPY does.

use std::collections::BTreeMap;
use std::io::Read;

use crate::error::{Error, IoContext, Result};
use crate::image::Image;

/// The kind of an entry in the merged filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathKind {
    Dir,
    File,
    Symlink(String),
    Other,
}

use crate::transport::tar_index::clean_name as clean;

/// Every path of an image's merged filesystem and what it is.
#[derive(Clone, Debug, Default)]
pub struct PathIndex {
    entries: BTreeMap<String, PathKind>,
}

impl PathIndex {
    /// Forget `path` and everything below it.
    fn remove_tree(&mut self, path: &str) {
        self.entries.remove(path);
        self.remove_below(path);
    }

    /// Forget everything below `dir` (`""` is the root).
    fn remove_below(&mut self, dir: &str) {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let doomed: Vec<String> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.entries.remove(&k);
        }
    }

    fn apply_layer(&mut self, reader: Box<dyn Read + Send + '_>, what: &str) -> Result<()> {
        let mut archive = tar::Archive::new(reader);
        let mut added: Vec<(String, PathKind)> = Vec::new();
        let mut opaque = Vec::new();
        let mut whiteouts = Vec::new();
        for entry in archive.entries().at(what)? {
            let entry = entry.at(what)?;
            let name = clean(&String::from_utf8_lossy(&entry.path_bytes()));
            let (dir, base) = match name.rsplit_once('/') {
                Some((d, b)) => (d.to_string(), b.to_string()),
                None => (String::new(), name.clone()),
            };
            if base == ".wh..wh..opq" {
                opaque.push(dir);
                continue;
            }
            if let Some(hidden) = base.strip_prefix(".wh.") {
                whiteouts.push(if dir.is_empty() {
                    hidden.to_string()
                } else {
                    format!("{dir}/{hidden}")
                });
                continue;
            }
            if name.is_empty() {
                continue;
            }
            let t = entry.header().entry_type();
            let kind = if t.is_dir() {
                PathKind::Dir
            } else if t.is_symlink() {
                PathKind::Symlink(
                    entry
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).to_string())
                        .unwrap_or_default(),
                )
            } else if t.is_file() || t.is_hard_link() {
                PathKind::File
            } else {
                PathKind::Other
            };
            added.push((name, kind));
        }
        // Deletions speak of lower layers; then this layer's entries.
        for d in opaque {
            self.remove_below(&d);
        }
        for w in whiteouts {
            self.remove_tree(&w);
        }
        for (name, kind) in added {
            if kind != PathKind::Dir {
                // A non-directory replaces whatever tree was there.
                self.remove_below(&name);
            }
            self.entries.insert(name, kind);
        }
        Ok(())
    }

    /// What is at `path` itself (a final symlink not followed).
    pub fn kind(&self, path: &str) -> Option<&PathKind> {
        let p = clean(path);
        if p.is_empty() {
            return Some(&PathKind::Dir);
        }
        self.entries.get(&p)
    }

    /// Where `path` leads with every symlink on the way followed (as COPY
    /// follows `/bin` → `usr/bin`, also as a parent), as an absolute path,
    /// and what is there (`None`: nothing, or a parent is not a directory).
    pub fn resolve(&self, path: &str) -> Result<(String, Option<PathKind>)> {
        let mut pending: Vec<String> = clean(path).split('/').rev().map(str::to_string).collect();
        pending.retain(|c| !c.is_empty());
        let mut at = String::new();
        let mut hops = 0;
        let mut kind = Some(PathKind::Dir);
        while let Some(comp) = pending.pop() {
            let next = if at.is_empty() {
                comp.clone()
            } else {
                format!("{at}/{comp}")
            };
            match self.entries.get(&next) {
                Some(PathKind::Symlink(target)) => {
                    hops += 1;
                    if hops > 40 {
                        return Err(Error::InvalidImagePath {
                            path: format!("/{}", clean(path)),
                            reason: "too many levels of symbolic links".into(),
                        });
                    }
                    let base = if target.starts_with('/') {
                        ""
                    } else {
                        at.as_str()
                    };
                    let joined = clean(&format!("{base}/{target}"));
                    // Walk the target from the root, then what remained.
                    for c in joined.split('/').rev().filter(|c| !c.is_empty()) {
                        pending.push(c.to_string());
                    }
                    at = String::new();
                    kind = Some(PathKind::Dir);
                }
                Some(k) => {
                    kind = Some(k.clone());
                    at = next;
                    if *k != PathKind::Dir && !pending.is_empty() {
                        // A parent that is not a directory: nothing below.
                        pending.reverse();
                        return Ok((format!("/{at}/{}", pending.join("/")), None));
                    }
                }
                None => {
                    pending.reverse();
                    let rest = std::iter::once(comp)
                        .chain(pending)
                        .collect::<Vec<_>>()
                        .join("/");
                    let full = if at.is_empty() {
                        rest
                    } else {
                        format!("{at}/{rest}")
                    };
                    return Ok((format!("/{full}"), None));
                }
            }
        }
        Ok((format!("/{at}"), kind))
    }
}

impl Image {
    /// The merged filesystem's paths, from every layer's tar headers.
    pub fn path_index(&self) -> Result<PathIndex> {
        let mut index = PathIndex::default();
        for layer in self.layers() {
            let what = format!("layer {}", layer.digest());
            index.apply_layer(layer.open_uncompressed()?, &what)?;
        }
        Ok(index)
    }

    /// True when some layer's bytes are still in a registry (opened
    /// lazily): reading its paths would download it.
    pub fn has_remote_layers(&self) -> bool {
        self.layers()
            .iter()
            .any(|l| matches!(l.source(), crate::layer::BlobSource::Remote { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Platform;
    use crate::tar::{LayerBuilder, LayerOptions};

    #[test]
    fn merged_view_follows_whiteouts_opaque_dirs_and_symlinked_parents() {
        let tmp = tempfile::tempdir().unwrap();
        let mut base = LayerBuilder::new(LayerOptions::default());
        base.add_contents("/usr/lib/x/libc.so", "c", 0o644)
            .unwrap()
            .add_symlink("/lib", "usr/lib")
            .unwrap()
            .add_contents("/opt/a/keep", "k", 0o644)
            .unwrap()
            .add_contents("/opt/b/gone", "g", 0o644)
            .unwrap()
            .add_contents("/etc/old", "o", 0o644)
            .unwrap()
            .add_contents("/srv/cfg/inner", "i", 0o644)
            .unwrap();
        let mut top = LayerBuilder::new(LayerOptions::default());
        top.delete("/etc/old")
            .unwrap()
            .make_opaque("/opt/b")
            .unwrap()
            .add_contents("/srv/cfg", "now a file", 0o644)
            .unwrap();
        let image = Image::scratch(&Platform::host())
            .append_layer(base.build(tmp.path()).unwrap(), "base")
            .append_layer(top.build(tmp.path()).unwrap(), "top");
        let ix = image.path_index().unwrap();
        assert_eq!(ix.kind("/etc/old"), None, "whiteout");
        assert_eq!(ix.kind("/opt/b/gone"), None, "opaque dir");
        assert_eq!(ix.kind("/opt/a/keep"), Some(&PathKind::File));
        assert_eq!(ix.kind("/srv/cfg/inner"), None, "parent replaced by a file");
        assert_eq!(ix.kind("/lib"), Some(&PathKind::Symlink("usr/lib".into())));
        // Symlinks followed as a parent and at the end.
        assert_eq!(
            ix.resolve("/lib/x").unwrap(),
            ("/usr/lib/x".to_string(), Some(PathKind::Dir))
        );
        assert_eq!(
            ix.resolve("/lib").unwrap(),
            ("/usr/lib".to_string(), Some(PathKind::Dir))
        );
        assert_eq!(
            ix.resolve("/lib/x/new").unwrap(),
            ("/usr/lib/x/new".to_string(), None)
        );
        assert_eq!(ix.resolve("/srv/cfg/x").unwrap().1, None);
    }
}
