//! Pulling: manifests and blobs streamed into the store while hashing,
//! layers in parallel, each verified before it becomes visible; partial
//! blobs resume with a Range request.

use std::io::Write;
use std::time::Duration;

use std::collections::HashMap;

use dockyard_image::image::ManifestInfo;
use dockyard_image::manifest::{classify, Kind};
use dockyard_image::progress::{Meter, Phase, Progress};
use dockyard_image::{Digest, Image, IndexManifest, Manifest, Platform, Reference, Store};
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_RANGE, RANGE};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::client::{describe, Registry, Scope};
use crate::error::{RegistryError, Result};
use crate::manifest::FetchedManifest;
use crate::sources::record_blob_source;

#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// The platform to take from an index (default: this host).
    pub platform: Option<Platform>,
    /// Keep the whole index and every platform's image.
    pub all_platforms: bool,
}

/// What a pull did.
#[derive(Clone, Debug)]
pub struct Pulled {
    /// What the store now names: an image, a whole index, or an artifact.
    pub manifest: Manifest,
    /// The image for the platform asked (default: this host), when there
    /// is one.
    pub image: Option<Image>,
    /// Digest of what the reference names (an index or a manifest).
    pub digest: Digest,
    /// The name it is stored under.
    pub name: String,
    pub blobs_fetched: usize,
    pub bytes_fetched: u64,
}

/// Counters shared by parallel blob fetches.
#[derive(Default)]
pub(crate) struct Counters {
    blobs: std::sync::atomic::AtomicUsize,
    bytes: std::sync::atomic::AtomicU64,
}

impl Counters {
    /// Count `blobs` fetched with `bytes` between them.
    pub(crate) fn add(&self, blobs: usize, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.blobs.fetch_add(blobs, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }
}

impl Registry {
    /// Fetch one blob into the store (no-op if it is there), verified.
    pub async fn fetch_blob_to_store(
        &self,
        repo: &str,
        digest: &Digest,
        size: Option<u64>,
        store: &Store,
        progress: &dyn Progress,
    ) -> Result<u64> {
        self.fetch_blob(repo, digest, size, store, progress, true)
            .await
    }

    async fn fetch_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: Option<u64>,
        store: &Store,
        progress: &dyn Progress,
        allow_restart: bool,
    ) -> Result<u64> {
        // One writer per blob across processes: wait for another pull of
        // the same blob, then find it stored.
        let mut writer = loop {
            if store.has_blob(digest) {
                return Ok(0);
            }
            match store.try_blob_writer(digest, size)? {
                Some(w) => break w,
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        if store.has_blob(digest) {
            writer.discard();
            return Ok(0);
        }
        let resumed_from = writer.resumed_from();
        let meter = Meter::start(progress, digest.short(), Phase::Fetch, size.unwrap_or(0));
        meter.reset(progress, resumed_from);
        let what = format!("blob {digest} of {repo}");
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let mut fetched = 0u64;
        let mut attempt = 0u32;
        let write_err = |e: std::io::Error| {
            RegistryError::Image(dockyard_image::Error::Io {
                path: store.blob_path(digest),
                source: e,
            })
        };
        loop {
            let have = writer.written();
            if size.map(|s| have == s).unwrap_or(false) {
                break;
            }
            let mut headers = HeaderMap::new();
            if have > 0 {
                headers.insert(
                    RANGE,
                    HeaderValue::from_str(&format!("bytes={have}-")).map_err(|e| {
                        RegistryError::Internal {
                            reason: e.to_string(),
                        }
                    })?,
                );
            }
            let resp = self
                .send(
                    Method::GET,
                    url.clone(),
                    &Scope::pull(repo),
                    headers,
                    None,
                    &what,
                )
                .await?;
            if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
                writer.restart()?;
                meter.reset(progress, 0);
                continue;
            }
            let resp = self.check(resp, &what).await?;
            if resp.status() == StatusCode::PARTIAL_CONTENT {
                let start = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.strip_prefix("bytes "))
                    .and_then(|s| s.split('-').next())
                    .and_then(|s| s.parse::<u64>().ok());
                if start != Some(have) {
                    writer.restart()?;
                    meter.reset(progress, 0);
                    continue;
                }
            } else if have > 0 {
                // The registry ignored the range: the body is the whole blob.
                writer.restart()?;
                meter.reset(progress, 0);
            }
            let mut body = resp.bytes_stream();
            let mut broke = None;
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(bytes) => {
                        if size
                            .map(|s| writer.written() + bytes.len() as u64 > s)
                            .unwrap_or(false)
                        {
                            // More than the descriptor says: commit will refuse it.
                            writer.write_all(&bytes).map_err(write_err)?;
                            break;
                        }
                        writer.write_all(&bytes).map_err(write_err)?;
                        fetched += bytes.len() as u64;
                        meter.add(progress, bytes.len() as u64);
                    }
                    Err(e) => {
                        broke = Some(describe(&e));
                        break;
                    }
                }
            }
            match broke {
                None => break,
                Some(reason) => {
                    attempt += 1;
                    tracing::debug!(%digest, have = writer.written(), %reason, "blob transfer broke; resuming");
                    if attempt >= self.opts.attempts {
                        return Err(RegistryError::RetriesExhausted {
                            registry: self.name.clone(),
                            what,
                            attempts: attempt,
                            last: reason,
                        });
                    }
                    tokio::time::sleep(self.backoff(attempt, None)).await;
                }
            }
        }
        match writer.commit() {
            Ok(_) => {
                meter.finish(progress);
                Ok(fetched)
            }
            // The kept part was bad (e.g. lost in a crash): once more from byte 0.
            Err(_) if resumed_from > 0 && allow_restart => {
                tracing::debug!(%digest, resumed_from, "resumed blob failed verification; starting over");
                Box::pin(self.fetch_blob(repo, digest, size, store, progress, false)).await
            }
            Err(dockyard_image::Error::DigestMismatch {
                expected, actual, ..
            }) => Err(RegistryError::DigestMismatch {
                registry: self.name.clone(),
                what,
                expected,
                actual,
            }),
            Err(dockyard_image::Error::SizeMismatch {
                expected, actual, ..
            }) => Err(RegistryError::Image(dockyard_image::Error::SizeMismatch {
                what,
                expected,
                actual,
            })),
            Err(e) => Err(e.into()),
        }
    }

    /// The child of `index` for `want`, following nested indexes. Entries
    /// without a `platform` field are placed by their config's os and
    /// architecture (fetched only when such entries exist).
    pub async fn select_child(
        &self,
        repo: &str,
        index: &IndexManifest,
        want: &Platform,
    ) -> Result<FetchedManifest> {
        let mut index = index.clone();
        for _depth in 0..4 {
            let mut placed: HashMap<Digest, Platform> = HashMap::new();
            for d in index.manifests().iter().filter(|d| d.platform.is_none()) {
                let m = self.fetch_manifest(repo, &d.digest.to_string()).await?;
                match self.manifest_platform(repo, &m).await? {
                    (Kind::Image, Some(p)) => {
                        placed.insert(d.digest.clone(), p);
                    }
                    // Never picked for a platform (as Index::select treats them).
                    (Kind::Artifact, _) => {
                        placed.insert(
                            d.digest.clone(),
                            Platform {
                                os: "unknown".into(),
                                architecture: "unknown".into(),
                                variant: None,
                            },
                        );
                    }
                    _ => {}
                }
            }
            let what = format!("{}/{repo}", self.name);
            let chosen = index
                .select(&what, want, &|d| placed.get(&d.digest).cloned())?
                .clone();
            let m = self
                .fetch_manifest(repo, &chosen.digest.to_string())
                .await?;
            if !m.is_index() {
                return Ok(m);
            }
            index = IndexManifest::parse(&format!("index {}", m.digest), m.bytes)?;
        }
        Err(dockyard_image::Error::NestedTooDeep {
            index: format!("index {}", index.digest()),
        }
        .into())
    }

    /// Pull `reference` into the store, named by the reference: the image
    /// for the platform asked (default: this host), or with `all_platforms`
    /// the whole index. Artifacts are pulled blob for blob.
    pub async fn pull(
        &self,
        reference: &Reference,
        store: &Store,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Pulled> {
        let repo = reference.repository().to_string();
        let top = self
            .fetch_manifest(&repo, &reference.fetch_target())
            .await?;
        // Until the image is named, a concurrent prune must not run.
        let _hold = store.writer_lock()?;
        let chosen = if top.is_index() && !opts.all_platforms {
            let index = IndexManifest::parse(&format!("index {}", top.digest), top.bytes.clone())?;
            let host = Platform::host();
            let want = opts.platform.as_ref().unwrap_or(&host);
            self.select_child(&repo, &index, want).await?
        } else {
            top.clone()
        };
        // The walk of a lazy open: manifests and configs, no layers yet.
        let opened = self
            .open_tree(chosen, &repo, tokio::runtime::Handle::current())
            .await?;
        // A single image must be for the platform asked before its layers
        // are downloaded (as `docker pull --platform` checks).
        if let (false, Some(want), Manifest::Image(image)) =
            (top.is_index(), &opts.platform, &opened)
        {
            let have = image.platform();
            if !want.matches(&have) {
                return Err(dockyard_image::Error::PlatformNotFound {
                    what: format!("docker://{reference} (image {})", image.digest()),
                    wanted: want.to_string(),
                    available: vec![have.to_string()],
                }
                .into());
            }
        }
        let counters = Counters::default();
        for m in opened.manifests_bottom_up() {
            if let Manifest::Image(image) = m {
                if !store.has_blob(&image.config_digest()) {
                    counters.add(1, image.config_raw().len() as u64);
                }
            }
        }
        let (local, fetched) = crate::lazy::fetch_into_store(&opened, store, progress).await?;
        counters.add(fetched.blobs, fetched.bytes);
        let name = reference.to_string();
        store.put(&local, Some(&name), progress)?;
        let manifest = store.get(&name)?;
        let image = match (&manifest, &opts.platform) {
            (Manifest::Image(_), Some(p)) if !top.is_index() => Some(
                manifest
                    .clone()
                    .into_image(&format!("docker://{reference}"), Some(p))?,
            ),
            (Manifest::Artifact(_), _) => None,
            _ => manifest
                .clone()
                .into_image(&format!("docker://{reference}"), opts.platform.as_ref())
                .ok(),
        };
        let blobs: Vec<Digest> = manifest
            .all_blobs()
            .into_iter()
            .map(|b| b.descriptor.digest)
            .collect();
        let _ = record_blob_source(store, &self.name, &repo, blobs.iter());
        Ok(Pulled {
            manifest,
            image,
            digest: top.digest,
            name,
            blobs_fetched: counters.blobs.load(std::sync::atomic::Ordering::Relaxed),
            bytes_fetched: counters.bytes.load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// What a manifest is and, for an image, the platform its config
    /// names (the config is fetched, not stored).
    async fn manifest_platform(
        &self,
        repo: &str,
        m: &FetchedManifest,
    ) -> Result<(Kind, Option<Platform>)> {
        let what = format!("manifest {}", m.digest);
        let value: Value =
            serde_json::from_slice(&m.bytes).map_err(|e| dockyard_image::Error::Json {
                what: what.clone(),
                source: e,
            })?;
        let kind = classify(&what, &value, &m.media_type)?;
        if kind != Kind::Image {
            return Ok((kind, None));
        }
        let info = ManifestInfo::from_value(&what, &value)?;
        let config = self.fetch_blob_bytes(repo, &info.config, 64 << 20).await?;
        let config: Value =
            serde_json::from_slice(&config).map_err(|e| dockyard_image::Error::Json {
                what: format!("config {}", info.config.digest),
                source: e,
            })?;
        Ok((kind, Platform::from_config(&config)))
    }
}
