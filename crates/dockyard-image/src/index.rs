//! Indexes: an OCI image index or a Docker manifest list, parsed once with
//! its raw bytes kept (`IndexManifest`), and the same with its children
//! loaded (`Index`). `select` and `images` are the only way code here walks
//! one.

use std::sync::Arc;

use serde_json::Value;

use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{parse_json, Image};
use crate::manifest::Manifest;
use crate::media;
use crate::platform::Platform;

/// The platform an attestation or signature entry declares: not an image.
fn is_unknown_platform(p: &Platform) -> bool {
    p.os == "unknown" || p.architecture == "unknown"
}

/// An index document: its bytes exactly as read and its entries.
#[derive(Clone, Debug)]
pub struct IndexManifest {
    raw: Arc<Vec<u8>>,
    media_type: String,
    manifests: Vec<Descriptor>,
}

impl IndexManifest {
    /// Parse an index. `what` names it in errors.
    pub fn parse(what: &str, raw: Vec<u8>) -> Result<IndexManifest> {
        let value = parse_json(what, &raw)?;
        let list = value
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::MalformedDocument {
                what: what.to_string(),
                reason: "index has no manifests list".into(),
            })?;
        let manifests = list
            .iter()
            .map(|m| Descriptor::parse(&format!("{what} entry"), m))
            .collect::<Result<Vec<_>>>()?;
        let media_type = value
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or(media::OCI_INDEX)
            .to_string();
        Ok(IndexManifest {
            raw: Arc::new(raw),
            media_type,
            manifests,
        })
    }

    /// A new OCI index of these entries.
    pub fn new(entries: Vec<Descriptor>) -> IndexManifest {
        let raw = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": entries.iter().map(|d| &d.json).collect::<Vec<_>>(),
        }))
        .unwrap_or_else(|_| unreachable!("a Value always serialises"));
        IndexManifest {
            raw: Arc::new(raw),
            media_type: media::OCI_INDEX.to_string(),
            manifests: entries,
        }
    }

    /// The same index (its other fields kept) listing `entries` instead;
    /// written indented, as a layout's index.json is for people to read.
    pub fn with_manifests(&self, entries: Vec<Descriptor>) -> IndexManifest {
        let mut value: Value =
            serde_json::from_slice(&self.raw).unwrap_or_else(|_| serde_json::json!({}));
        value["manifests"] = Value::Array(entries.iter().map(|d| d.json.clone()).collect());
        let raw = serde_json::to_vec_pretty(&value)
            .unwrap_or_else(|_| unreachable!("a Value always serialises"));
        IndexManifest {
            raw: Arc::new(raw),
            media_type: self.media_type.clone(),
            manifests: entries,
        }
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
    /// The entries, in order.
    pub fn manifests(&self) -> &[Descriptor] {
        &self.manifests
    }

    /// The entry to use for `want`. Entries without a `platform` field are
    /// candidates too: `platform_of` may supply their platform (from their
    /// config); one that stays unknown is picked only when it is the one
    /// image entry. Attestations (`unknown/unknown`) are never picked.
    pub fn select(
        &self,
        what: &str,
        want: &Platform,
        platform_of: &dyn Fn(&Descriptor) -> Option<Platform>,
    ) -> Result<&Descriptor> {
        self.select_among(what, want, platform_of, &|_| true)
    }

    /// `select` among the entries `held` accepts (the others are listed
    /// as not held).
    pub fn select_among(
        &self,
        what: &str,
        want: &Platform,
        platform_of: &dyn Fn(&Descriptor) -> Option<Platform>,
        held: &dyn Fn(&Descriptor) -> bool,
    ) -> Result<&Descriptor> {
        let mut best: Option<(u32, &Descriptor)> = None;
        let mut unplaced = Vec::new();
        let mut available = Vec::new();
        for d in &self.manifests {
            if !held(d) {
                if let Some(p) = &d.platform {
                    if !is_unknown_platform(p) {
                        available.push(format!("{p} (listed, not held here)"));
                    }
                }
                continue;
            }
            let platform = d.platform.clone().or_else(|| platform_of(d));
            match platform {
                Some(p) if is_unknown_platform(&p) => continue,
                Some(p) => {
                    if let Some(rank) = want.match_rank(&p) {
                        if best.map(|(r, _)| rank < r).unwrap_or(true) {
                            best = Some((rank, d));
                        }
                    }
                    available.push(p.to_string());
                }
                None if media::is_index(&d.media_type)
                    || media::is_manifest(&d.media_type)
                    || d.media_type.is_empty() =>
                {
                    unplaced.push(d)
                }
                None => {}
            }
        }
        if let Some((_, d)) = best {
            return Ok(d);
        }
        if available.is_empty() && unplaced.len() == 1 {
            return Ok(unplaced[0]);
        }
        if !unplaced.is_empty() {
            available.push(format!("{} without a platform", unplaced.len()));
        }
        Err(Error::PlatformNotFound {
            what: format!("{what} (index {})", self.digest()),
            wanted: want.to_string(),
            available,
        })
    }
}

/// An index with its children loaded (manifests and configs read; layer
/// bytes stay where they are until written). A child whose manifest the
/// source does not hold (a `docker save` of one platform of a
/// multi-platform image keeps the whole index) is `None`.
#[derive(Clone, Debug)]
pub struct Index {
    manifest: IndexManifest,
    children: Vec<Option<Manifest>>,
}

impl Index {
    /// Pair an index document with its children, checking each child is
    /// the one its entry names.
    pub fn new(manifest: IndexManifest, children: Vec<Option<Manifest>>) -> Result<Index> {
        if children.len() != manifest.manifests.len() {
            return Err(Error::MalformedDocument {
                what: format!("index {}", manifest.digest()),
                reason: format!(
                    "{} entries but {} children",
                    manifest.manifests.len(),
                    children.len()
                ),
            });
        }
        for (d, c) in manifest.manifests.iter().zip(&children) {
            if let Some(c) = c {
                let actual = Digest::compute(d.digest.algorithm(), c.raw());
                if actual != d.digest {
                    return Err(Error::DigestMismatch {
                        what: format!("entry of index {}", manifest.digest()),
                        expected: d.digest.clone(),
                        actual,
                    });
                }
            }
        }
        Ok(Index { manifest, children })
    }

    /// A new OCI index of `children`. An image's entry declares its
    /// config's platform unless `declare_platforms` is false (entries
    /// without a `platform` field exist in the wild and must still work).
    pub fn build(children: Vec<Manifest>, declare_platforms: bool) -> Result<Index> {
        let entries = children
            .iter()
            .map(|c| match (c, declare_platforms) {
                (Manifest::Image(img), true) => c.descriptor().with_platform(&img.platform()),
                _ => c.descriptor(),
            })
            .collect();
        Index::new(
            IndexManifest::new(entries),
            children.into_iter().map(Some).collect(),
        )
    }

    /// The same index with each child replaced by `f(child)` (which must
    /// keep its manifest bytes: the index names them by digest).
    pub fn with_children(&self, f: &mut dyn FnMut(&Manifest) -> Result<Manifest>) -> Result<Index> {
        let children = self
            .children
            .iter()
            .map(|c| c.as_ref().map(&mut *f).transpose())
            .collect::<Result<Vec<_>>>()?;
        Index::new(self.manifest.clone(), children)
    }

    pub fn manifest(&self) -> &IndexManifest {
        &self.manifest
    }
    pub fn raw(&self) -> &[u8] {
        self.manifest.raw()
    }
    pub fn digest(&self) -> Digest {
        self.manifest.digest()
    }
    pub fn media_type(&self) -> &str {
        self.manifest.media_type()
    }
    /// Entries with their loaded children (`None`: not held by the source).
    pub fn children(&self) -> impl Iterator<Item = (&Descriptor, Option<&Manifest>)> {
        self.manifest
            .manifests
            .iter()
            .zip(self.children.iter().map(Option::as_ref))
    }
    /// Entries whose manifest the source does not hold.
    pub fn missing(&self) -> Vec<&Descriptor> {
        self.children()
            .filter(|(_, c)| c.is_none())
            .map(|(d, _)| d)
            .collect()
    }

    /// The image for `want`, following nested indexes.
    pub fn select(&self, want: &Platform) -> Result<&Image> {
        let platform_of = |d: &Descriptor| -> Option<Platform> {
            match self.child(&d.digest)? {
                Manifest::Image(img) => Some(img.platform()).filter(|p| !p.os.is_empty()),
                Manifest::Index(ix) => ix.select(want).ok().map(Image::platform),
                Manifest::Artifact(_) => Some(Platform {
                    os: "unknown".into(),
                    architecture: "unknown".into(),
                    variant: None,
                }),
            }
        };
        let what = "image index";
        let held = |d: &Descriptor| self.child(&d.digest).is_some();
        let d = self
            .manifest
            .select_among(what, want, &platform_of, &held)?;
        match self.child(&d.digest) {
            Some(Manifest::Image(img)) => Ok(img),
            Some(Manifest::Index(ix)) => ix.select(want),
            Some(Manifest::Artifact(a)) => Err(Error::NotAnImage {
                what: format!("entry {} of index {}", d.digest, self.digest()),
                kind: "an artifact",
                media_type: a.artifact_type().to_string(),
            }),
            None => Err(Error::ChildNotHeld {
                index: format!("index {}", self.digest()),
                platform: want.to_string(),
                digest: d.digest.clone(),
            }),
        }
    }

    fn child(&self, digest: &Digest) -> Option<&Manifest> {
        self.children()
            .find(|(d, _)| &d.digest == digest)
            .and_then(|(_, c)| c)
    }

    /// Every image in the tree (nested indexes followed), in entry order.
    pub fn images(&self) -> Vec<&Image> {
        let mut out = Vec::new();
        for (_, c) in self.children() {
            match c {
                Some(Manifest::Image(i)) => out.push(i),
                Some(Manifest::Index(ix)) => out.extend(ix.images()),
                _ => {}
            }
        }
        out
    }

    /// The platforms of the images it holds, in entry order.
    pub fn platforms(&self) -> Vec<Platform> {
        self.images().into_iter().map(Image::platform).collect()
    }
}
