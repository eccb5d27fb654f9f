//! Fetching and putting manifests (all four media types), verified.

use dockyard_image::media;
use dockyard_image::Digest;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::Method;

use crate::client::{Registry, Scope};
use crate::error::{RegistryError, Result};

/// Every manifest media type we read.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";
const MANIFEST_LIMIT: usize = 4 << 20;

/// A manifest as the registry served it.
#[derive(Clone, Debug)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

impl FetchedManifest {
    pub fn is_index(&self) -> bool {
        media::is_index(&self.media_type)
    }
}

impl Registry {
    /// GET a manifest by tag or digest. A digest reference is verified; so is
    /// the registry's `Docker-Content-Digest` header.
    pub async fn fetch_manifest(&self, repo: &str, reference: &str) -> Result<FetchedManifest> {
        let what = format!("manifest {repo}:{reference}");
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let resp = self
            .get_ok(url, &Scope::pull(repo), Some(ACCEPT_MANIFESTS), &what)
            .await?;
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string());
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<Digest>().ok());
        let mut bytes = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RegistryError::Network {
                registry: self.name.clone(),
                what: what.clone(),
                reason: crate::client::describe(&e),
            })?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MANIFEST_LIMIT {
                return Err(RegistryError::Protocol {
                    registry: self.name.clone(),
                    what,
                    reason: format!("manifest larger than {MANIFEST_LIMIT} bytes"),
                });
            }
        }
        let digest = Digest::sha256_of(&bytes);
        // Verify with whatever algorithm the reference or header names.
        if let Ok(expected) = reference.parse::<Digest>() {
            let actual = Digest::compute(expected.algorithm(), &bytes);
            if expected != actual {
                return Err(RegistryError::DigestMismatch {
                    registry: self.name.clone(),
                    what,
                    expected,
                    actual,
                });
            }
        }
        if let Some(h) = header_digest {
            let actual = Digest::compute(h.algorithm(), &bytes);
            if h != actual {
                return Err(RegistryError::DigestMismatch {
                    registry: self.name.clone(),
                    what,
                    expected: h,
                    actual,
                });
            }
        }
        let parsed: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            RegistryError::Image(dockyard_image::Error::Json {
                what: what.clone(),
                source: e,
            })
        })?;
        if parsed.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
            return Err(RegistryError::Image(dockyard_image::Error::UnsupportedMediaType {
                what,
                media_type: "Docker schema 1 manifest (deprecated and unsupported; re-push the image with a current client)".into(),
            }));
        }
        let media_type = parsed
            .get("mediaType")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .or(header_type)
            .unwrap_or_else(|| {
                if parsed.get("manifests").is_some() {
                    media::OCI_INDEX.to_string()
                } else {
                    media::OCI_MANIFEST.to_string()
                }
            });
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// PUT a manifest under a tag or its digest; returns the digest the
    /// registry reports (checked against ours).
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest> {
        let what = format!("manifest {repo}:{reference}");
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(media_type).map_err(|e| RegistryError::Internal {
                reason: format!("media type {media_type:?}: {e}"),
            })?,
        );
        let body = bytes.to_vec();
        let make = move || Ok(reqwest::Body::from(body.clone()));
        let resp = self
            .send(
                Method::PUT,
                url,
                &Scope::push(repo),
                headers,
                Some(&make),
                &what,
            )
            .await?;
        let resp = self.check(resp, &what).await?;
        let ours = Digest::sha256_of(bytes);
        if let Some(theirs) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<Digest>().ok())
        {
            if theirs != ours {
                return Err(RegistryError::DigestMismatch {
                    registry: self.name.clone(),
                    what,
                    expected: ours,
                    actual: theirs,
                });
            }
        }
        Ok(ours)
    }

    /// Whether the registry has a blob (HEAD).
    pub async fn has_blob(&self, repo: &str, digest: &Digest, scope: &Scope) -> Result<bool> {
        let what = format!("blob {digest}");
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let resp = self
            .send(Method::HEAD, url, scope, HeaderMap::new(), None, &what)
            .await?;
        match resp.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => self.check(resp, &what).await.map(|_| false),
        }
    }
}

/// A remote image's manifests and config, without its layers.
#[derive(Clone, Debug)]
pub struct RemoteImage {
    /// What the reference names (an index or a manifest), as served.
    pub top: FetchedManifest,
    /// The manifest picked (for an index: the one for the platform; `None`
    /// when no platform was asked and none is for this host).
    pub manifest: Option<FetchedManifest>,
    /// The image config; `None` when the manifest is an artifact.
    pub config: Option<Vec<u8>>,
}

impl Registry {
    /// GET a small blob (a config) whole, verified against its descriptor.
    pub async fn fetch_blob_bytes(
        &self,
        repo: &str,
        d: &dockyard_image::Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>> {
        let what = format!("blob {} of {repo}", d.digest);
        if d.size > limit {
            return Err(RegistryError::Protocol {
                registry: self.name.clone(),
                what,
                reason: format!("{} bytes is more than the {limit} allowed here", d.size),
            });
        }
        let url = self.url(&format!("v2/{repo}/blobs/{}", d.digest))?;
        let resp = self.get_ok(url, &Scope::pull(repo), None, &what).await?;
        let mut bytes = Vec::with_capacity(d.size as usize);
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| RegistryError::Network {
                registry: self.name.clone(),
                what: what.clone(),
                reason: crate::client::describe(&e),
            })?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > d.size {
                break;
            }
        }
        let actual = Digest::compute(d.digest.algorithm(), &bytes);
        if actual != d.digest {
            return Err(RegistryError::DigestMismatch {
                registry: self.name.clone(),
                what,
                expected: d.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Manifest(s) and config of `reference`, for inspection: from an
    /// index, the entry for `platform` (default: this host).
    pub async fn inspect(
        &self,
        reference: &dockyard_image::Reference,
        platform: Option<&dockyard_image::Platform>,
    ) -> Result<RemoteImage> {
        let repo = reference.repository();
        let tag_or_digest = reference.fetch_target();
        let top = self.fetch_manifest(repo, &tag_or_digest).await?;
        let manifest = if top.is_index() {
            let index = dockyard_image::IndexManifest::parse(
                &format!("index {}", top.digest),
                top.bytes.clone(),
            )?;
            let host = dockyard_image::Platform::host();
            match self
                .select_child(repo, &index, platform.unwrap_or(&host))
                .await
            {
                Ok(m) => m,
                // Nothing for this host: the index is still described.
                Err(RegistryError::Image(dockyard_image::Error::PlatformNotFound { .. }))
                    if platform.is_none() =>
                {
                    return Ok(RemoteImage {
                        top,
                        manifest: None,
                        config: None,
                    })
                }
                Err(e) => return Err(e),
            }
        } else {
            top.clone()
        };
        let what = format!("manifest {}", manifest.digest);
        let value: serde_json::Value =
            serde_json::from_slice(&manifest.bytes).map_err(|e| dockyard_image::Error::Json {
                what: what.clone(),
                source: e,
            })?;
        let config = match dockyard_image::manifest::classify(&what, &value, &manifest.media_type)?
        {
            dockyard_image::manifest::Kind::Image => {
                let info = dockyard_image::image::ManifestInfo::from_value(&what, &value)?;
                Some(self.fetch_blob_bytes(repo, &info.config, 64 << 20).await?)
            }
            _ => None,
        };
        Ok(RemoteImage {
            top,
            manifest: Some(manifest),
            config,
        })
    }
}
