//! Registry images opened lazily: manifests and configs are fetched, layer
//! bytes stay in the registry until something needs them. A push to the
//! same registry mounts them across repositories; a push to another one
//! streams them registry to registry; a local writer fetches them into the
//! store first (resumable, verified) — nothing else touches the disk.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;
use dockyard_image::image::ManifestInfo;
use dockyard_image::manifest::{classify, referenced, Kind};
use dockyard_image::progress::Progress;
use dockyard_image::{
    Artifact, BlobSource, Digest, Image, Index, IndexManifest, Layer, Manifest, Platform,
    Reference, RemoteBlobs, Store,
};
use futures_util::{stream, StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderValue, RANGE};
use reqwest::Method;
use serde_json::Value;
use tokio::runtime::Handle;

use crate::client::{Registry, Scope};
use crate::error::{RegistryError, Result};
use crate::manifest::FetchedManifest;
use crate::sources::record_blob_source;

/// The blobs of one repository of one registry.
pub struct RegistryBlobs {
    pub(crate) client: Registry,
    pub(crate) repo: String,
    handle: Handle,
}

impl std::fmt::Debug for RegistryBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RegistryBlobs({}/{})", self.client.name(), self.repo)
    }
}

/// Reads chunks a fetching task sends; the channel is bounded, so memory
/// stays flat however slow the reader. The reader counts bytes: a stream
/// that ends early is an error, never a short blob.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
    left: u64,
    what: String,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            // Called from plain threads (and spawn_blocking), never from
            // async tasks: registry pushes stream without this reader.
            match self.rx.blocking_recv() {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => return Err(e),
                None if self.left == 0 => return Ok(0),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "{}: the transfer ended {} bytes early",
                            self.what, self.left
                        ),
                    ))
                }
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        self.left = self.left.saturating_sub(n as u64);
        Ok(n)
    }
}

impl RemoteBlobs for RegistryBlobs {
    fn registry(&self) -> &str {
        self.client.name()
    }
    fn repository(&self) -> &str {
        &self.repo
    }
    fn open(&self, digest: &Digest, size: u64) -> io::Result<Box<dyn Read + Send>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(8);
        let client = self.client.clone();
        let repo = self.repo.clone();
        let blob = digest.clone();
        self.handle.spawn(async move {
            let mut body = match client.blob_stream(&repo, &blob, 0, size, size).await {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| io::Error::other(e.to_string()));
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Box::new(ChannelReader {
            rx,
            chunk: Bytes::new(),
            left: size,
            what: format!("blob {digest} of {}/{}", self.client.name(), self.repo),
        }))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Find our own registry source behind a blob source.
pub fn registry_blobs(source: &BlobSource) -> Option<&RegistryBlobs> {
    match source {
        BlobSource::Remote { remote, .. } => remote.as_any().downcast_ref::<RegistryBlobs>(),
        _ => None,
    }
}

type ByteStream = futures_util::stream::BoxStream<'static, Result<Bytes>>;

impl Registry {
    /// A stream of `len` bytes of a `total`-byte blob from `offset` (a
    /// Range request unless it is the whole blob).
    pub async fn blob_stream(
        &self,
        repo: &str,
        digest: &Digest,
        offset: u64,
        len: u64,
        total: u64,
    ) -> Result<ByteStream> {
        let ranged = offset > 0 || len < total;
        let what = format!("blob {digest} of {repo}");
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let mut headers = HeaderMap::new();
        if ranged {
            headers.insert(
                RANGE,
                HeaderValue::from_str(&format!("bytes={offset}-{}", offset + len - 1)).map_err(
                    |e| RegistryError::Internal {
                        reason: e.to_string(),
                    },
                )?,
            );
        }
        let resp = self
            .send(Method::GET, url, &Scope::pull(repo), headers, None, &what)
            .await?;
        let resp = self.check(resp, &what).await?;
        if ranged && resp.status() != reqwest::StatusCode::PARTIAL_CONTENT {
            return Err(RegistryError::Protocol {
                registry: self.name.clone(),
                what,
                reason: "the registry ignored a Range request".into(),
            });
        }
        let name = self.name.clone();
        Ok(resp
            .bytes_stream()
            .map_err(move |e| RegistryError::Network {
                registry: name.clone(),
                what: what.clone(),
                reason: crate::client::describe(&e),
            })
            .boxed())
    }

    /// Open `reference` without fetching layers: the image for `platform`
    /// (default: this host), or with `all_platforms` the whole index.
    /// `handle` is the multi-threaded runtime later reads run on.
    pub async fn open_lazy(
        &self,
        reference: &Reference,
        platform: Option<&Platform>,
        all_platforms: bool,
        handle: Handle,
    ) -> Result<Manifest> {
        let repo = reference.repository().to_string();
        let tag_or_digest = reference.fetch_target();
        let top = self.fetch_manifest(&repo, &tag_or_digest).await?;
        let chosen = if top.is_index() && !all_platforms {
            let index = IndexManifest::parse(&format!("index {}", top.digest), top.bytes.clone())?;
            let host = Platform::host();
            self.select_child(&repo, &index, platform.unwrap_or(&host))
                .await?
        } else {
            top
        };
        self.open_tree(chosen, &repo, handle).await
    }

    /// The tree `m` heads: manifests and configs fetched, layer blobs left
    /// in the registry.
    pub(crate) async fn open_tree(
        &self,
        m: FetchedManifest,
        repo: &str,
        handle: Handle,
    ) -> Result<Manifest> {
        let remote = Arc::new(RegistryBlobs {
            client: self.clone(),
            repo: repo.to_string(),
            handle,
        });
        self.lazy_manifest(m, &remote, 0).await
    }

    fn lazy_manifest<'a>(
        &'a self,
        m: FetchedManifest,
        remote: &'a Arc<RegistryBlobs>,
        depth: usize,
    ) -> futures_util::future::BoxFuture<'a, Result<Manifest>> {
        Box::pin(async move {
            let repo = remote.repo.as_str();
            let what = format!("manifest {} of {}/{repo}", m.digest, self.name);
            let value: Value =
                serde_json::from_slice(&m.bytes).map_err(|e| dockyard_image::Error::Json {
                    what: what.clone(),
                    source: e,
                })?;
            let source = |digest: &Digest, len: u64| BlobSource::Remote {
                remote: Arc::clone(remote) as Arc<dyn RemoteBlobs>,
                digest: digest.clone(),
                len,
            };
            match classify(&what, &value, &m.media_type)? {
                Kind::Index => {
                    if depth > 4 {
                        return Err(dockyard_image::Error::NestedTooDeep { index: what }.into());
                    }
                    let index = IndexManifest::parse(&what, m.bytes)?;
                    let mut children = Vec::new();
                    for d in index.manifests() {
                        let c = self.fetch_manifest(repo, &d.digest.to_string()).await?;
                        children.push(Some(self.lazy_manifest(c, remote, depth + 1).await?));
                    }
                    Ok(Manifest::Index(Index::new(index, children)?))
                }
                Kind::Artifact => {
                    let sources = referenced(&what, &m.bytes)?
                        .iter()
                        .map(|d| source(&d.digest, d.size))
                        .collect();
                    Ok(Manifest::Artifact(Artifact::new(
                        m.bytes,
                        &m.media_type,
                        sources,
                    )?))
                }
                Kind::Image => {
                    let info = ManifestInfo::from_value(&what, &value)?;
                    let config = self.fetch_blob_bytes(repo, &info.config, 64 << 20).await?;
                    let config_value: Value = serde_json::from_slice(&config).map_err(|e| {
                        dockyard_image::Error::Json {
                            what: format!("config {}", info.config.digest),
                            source: e,
                        }
                    })?;
                    let diff_ids = dockyard_image::image::config_diff_ids(
                        &format!("config {}", info.config.digest),
                        &config_value,
                    )?;
                    if diff_ids.len() != info.layers.len() {
                        return Err(dockyard_image::Error::LayerCountMismatch {
                            image: what,
                            layers: info.layers.len(),
                            diff_ids: diff_ids.len(),
                        }
                        .into());
                    }
                    let mut layers = Vec::new();
                    for (l, diff_id) in info.layers.iter().zip(diff_ids) {
                        layers.push(
                            Layer::new(
                                l.digest.clone(),
                                l.media_type.clone(),
                                diff_id,
                                source(&l.digest, l.size),
                            )?
                            .with_annotations(l.annotations.clone()),
                        );
                    }
                    Ok(Manifest::Image(Image::from_parts(m.bytes, config, layers)?))
                }
            }
        })
    }
}

/// What fetching registry blobs into the store did.
#[derive(Clone, Debug, Default)]
pub struct Fetched {
    pub blobs: usize,
    pub bytes: u64,
}

/// Fetch every registry blob of `manifest` into the store (resumed with
/// Range after a failure, verified) and return the same tree reading from
/// the store. Hold `store.writer_lock()` until the result is written.
pub async fn fetch_into_store(
    manifest: &Manifest,
    store: &Store,
    progress: &dyn Progress,
) -> Result<(Manifest, Fetched)> {
    let blobs = manifest.all_blobs();
    let remote: Vec<(Digest, u64, &RegistryBlobs)> = blobs
        .iter()
        .filter_map(|b| {
            registry_blobs(&b.source).map(|r| (b.descriptor.digest.clone(), b.descriptor.size, r))
        })
        .collect();
    let parallel = remote
        .first()
        .map(|(_, _, r)| r.client.opts.parallel.max(1))
        .unwrap_or(1);
    let counts: Vec<u64> = stream::iter(remote.iter().map(|(d, size, r)| async move {
        let n = r
            .client
            .fetch_blob_to_store(&r.repo, d, Some(*size), store, progress)
            .await?;
        let _ = record_blob_source(store, r.client.name(), &r.repo, std::iter::once(d));
        Ok::<_, RegistryError>(n)
    }))
    .buffer_unordered(parallel)
    .try_collect()
    .await?;
    let fetched = Fetched {
        blobs: counts.iter().filter(|n| **n > 0).count(),
        bytes: counts.iter().sum(),
    };
    let local = manifest.with_blob_sources(&mut |d, s| {
        if registry_blobs(s).is_none() {
            return Ok(None);
        }
        BlobSource::store_blob(&store.blob_path(&d.digest)).map(Some)
    })?;
    Ok((local, fetched))
}
