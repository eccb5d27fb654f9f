//! What a path is in an image's merged filesystem (layers applied top
//! down, whiteouts and opaque directories honoured, symlinks followed),
//! found by reading tar headers — what `mutate --add` needs to copy a file
//! *into* a directory the way Dockerfile COPY does.

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

/// `/a/b/` → `a/b`: the form tar member names take.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// What one layer says about `path`.
enum Verdict {
    Is(PathKind),
    /// Deleted here (whiteout of it or an ancestor, or an opaque
    /// ancestor directory that does not hold it).
    Gone,
    Silent,
}

fn layer_verdict(reader: Box<dyn Read + Send + '_>, path: &str, what: &str) -> Result<Verdict> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().at(what)?;
    let ancestors: Vec<String> = {
        let mut v = Vec::new();
        let mut p = path;
        while let Some((parent, _)) = p.rsplit_once('/') {
            v.push(parent.to_string());
            p = parent;
        }
        v
    };
    let mut found = None;
    let mut gone = false;
    for entry in entries {
        let entry = entry.at(what)?;
        let name = clean(&String::from_utf8_lossy(&entry.path_bytes()));
        let (dir, base) = match name.rsplit_once('/') {
            Some((d, b)) => (d.to_string(), b.to_string()),
            None => (String::new(), name.clone()),
        };
        if base == ".wh..wh..opq" {
            // An opaque directory hides what lower layers had inside it.
            if ancestors.contains(&dir) || (dir.is_empty() && !path.is_empty()) {
                gone = true;
            }
            continue;
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            let target = if dir.is_empty() {
                hidden.to_string()
            } else {
                format!("{dir}/{hidden}")
            };
            if target == path || ancestors.contains(&target) {
                gone = true;
            }
            continue;
        }
        if name == path {
            let t = entry.header().entry_type();
            found = Some(if t.is_dir() {
                PathKind::Dir
            } else if t.is_symlink() {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).to_string())
                    .unwrap_or_default();
                PathKind::Symlink(target)
            } else if t.is_file() || t.is_hard_link() {
                PathKind::File
            } else {
                PathKind::Other
            });
        }
    }
    Ok(match (found, gone) {
        (Some(k), _) => Verdict::Is(k),
        (None, true) => Verdict::Gone,
        (None, false) => Verdict::Silent,
    })
}

impl Image {
    /// What `path` is in the merged filesystem, without following a final
    /// symlink; `None` when it does not exist. Reads layers from the top
    /// down and stops at the first that decides.
    pub fn path_kind(&self, path: &str) -> Result<Option<PathKind>> {
        let path = clean(path);
        if path.is_empty() {
            return Ok(Some(PathKind::Dir));
        }
        for layer in self.layers().iter().rev() {
            let what = format!("layer {}", layer.digest());
            match layer_verdict(layer.open_uncompressed()?, &path, &what)? {
                Verdict::Is(k) => return Ok(Some(k)),
                Verdict::Gone => return Ok(None),
                Verdict::Silent => {}
            }
        }
        Ok(None)
    }

    /// Where `path` leads once symlinks are followed (as COPY follows a
    /// destination like `/bin` → `usr/bin`), as an absolute path, and what
    /// is there.
    pub fn resolve_path(&self, path: &str) -> Result<(String, Option<PathKind>)> {
        let mut path = clean(path);
        for _ in 0..16 {
            match self.path_kind(&path)? {
                Some(PathKind::Symlink(target)) => {
                    path = if target.starts_with('/') {
                        clean(&target)
                    } else {
                        let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                        clean(&format!("{parent}/{target}"))
                    };
                }
                other => return Ok((format!("/{path}"), other)),
            }
        }
        Err(Error::InvalidImagePath {
            path: format!("/{path}"),
            reason: "too many levels of symbolic links".into(),
        })
    }
}
