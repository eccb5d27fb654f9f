//! Pulling: manifests and blobs streamed into the store while hashing,
//! layers in parallel, each verified before it becomes visible; partial
//! blobs resume with a Range request.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dockyard_image::digest::Hasher;
use dockyard_image::image::{config_diff_ids, DescriptorInfo, ManifestInfo};
use dockyard_image::progress::Progress;
use dockyard_image::transport::layout::select_platform;
use dockyard_image::{Digest, Image, Platform, Reference, Store};
use futures_util::{stream, StreamExt, TryStreamExt};
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
    /// The image (for `all_platforms`, the one for `platform`/the host).
    pub image: Image,
    /// Digest of what the reference names (an index or a manifest).
    pub digest: Digest,
    /// The name it is stored under.
    pub name: String,
    pub blobs_fetched: usize,
    pub bytes_fetched: u64,
}

fn io_err(path: &std::path::Path, e: std::io::Error) -> RegistryError {
    RegistryError::Image(dockyard_image::Error::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// Counters shared by parallel blob fetches.
#[derive(Default)]
struct Counters {
    blobs: std::sync::atomic::AtomicUsize,
    bytes: std::sync::atomic::AtomicU64,
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
        if store.has_blob(digest) {
            return Ok(0);
        }
        let final_path = store.blob_path(digest);
        let dir = final_path.parent().map(PathBuf::from).unwrap_or_default();
        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        // The partial file is named for the blob so a later run resumes it;
        // a lock keeps two pulls of the same blob from writing it at once.
        let partial = dir.join(format!(".dockyard-tmp-partial-{}", digest.hex()));
        let mut locked = loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&partial)
                .map_err(|e| io_err(&partial, e))?;
            loop {
                use std::os::unix::io::AsRawFd;
                // SAFETY: flock on a descriptor we own; released when it closes.
                if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                    break;
                }
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                return Err(io_err(&partial, e));
            }
            // Another pull may have removed or replaced the partial file while
            // we waited: only the file still at that path is ours to continue.
            use std::os::unix::fs::MetadataExt;
            let same = match (file.metadata(), fs::metadata(&partial)) {
                (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
                _ => false,
            };
            if same {
                break file;
            }
        };
        let file: &mut File = &mut locked;
        if store.has_blob(digest) {
            let _ = fs::remove_file(&partial);
            return Ok(0);
        }
        // Hash what an earlier, interrupted run already wrote.
        let mut hasher = Hasher::new(digest.algorithm());
        let mut have = 0u64;
        {
            file.seek(SeekFrom::Start(0))
                .map_err(|e| io_err(&partial, e))?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = file.read(&mut buf).map_err(|e| io_err(&partial, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                have += n as u64;
            }
        }
        if size.map(|s| have > s).unwrap_or(false) {
            file.set_len(0).map_err(|e| io_err(&partial, e))?;
            hasher = Hasher::new(digest.algorithm());
            have = 0;
        }
        let resumed_from = have;
        let id = digest.short();
        progress.start(&id, size.unwrap_or(0));
        progress.advance(&id, have);
        let what = format!("blob {digest} of {repo}");
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let mut fetched = 0u64;
        let mut attempt = 0u32;
        loop {
            let complete = size.map(|s| have == s).unwrap_or(false);
            if complete {
                break;
            }
            let mut headers = HeaderMap::new();
            if have > 0 {
                headers.insert(
                    RANGE,
                    HeaderValue::from_str(&format!("bytes={have}-"))
                        .map_err(|e| RegistryError::Config(e.to_string()))?,
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
            let status = resp.status();
            if status == StatusCode::RANGE_NOT_SATISFIABLE && have > 0 {
                // Start over without a range.
                file.set_len(0).map_err(|e| io_err(&partial, e))?;
                hasher = Hasher::new(digest.algorithm());
                have = 0;
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
                    file.set_len(0).map_err(|e| io_err(&partial, e))?;
                    hasher = Hasher::new(digest.algorithm());
                    have = 0;
                    continue;
                }
            } else if have > 0 {
                // The registry ignored the range: the body is the whole blob.
                file.set_len(0).map_err(|e| io_err(&partial, e))?;
                hasher = Hasher::new(digest.algorithm());
                progress.advance(&id, 0);
                have = 0;
            }
            file.seek(SeekFrom::Start(have))
                .map_err(|e| io_err(&partial, e))?;
            let mut body = resp.bytes_stream();
            let mut broke = None;
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(bytes) => {
                        if size.map(|s| have + bytes.len() as u64 > s).unwrap_or(false) {
                            broke = None;
                            have += bytes.len() as u64;
                            break;
                        }
                        file.write_all(&bytes).map_err(|e| io_err(&partial, e))?;
                        hasher.update(&bytes);
                        have += bytes.len() as u64;
                        fetched += bytes.len() as u64;
                        progress.advance(&id, bytes.len() as u64);
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
                    tracing::debug!(%digest, have, %reason, "blob transfer broke; resuming");
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
        let actual = hasher.finish();
        let size_ok = size.map(|s| s == have).unwrap_or(true);
        if actual != *digest || !size_ok {
            // Nothing of a bad blob is kept: the next try starts clean.
            let _ = fs::remove_file(&partial);
            drop(locked);
            if resumed_from > 0 && allow_restart {
                // The kept part was bad (e.g. lost in a crash): once more from byte 0.
                tracing::debug!(%digest, resumed_from, "resumed blob failed verification; starting over");
                return Box::pin(self.fetch_blob(repo, digest, size, store, progress, false)).await;
            }
            if !size_ok && actual == *digest {
                return Err(RegistryError::Image(dockyard_image::Error::SizeMismatch {
                    what: what.clone(),
                    expected: size.unwrap_or(0),
                    actual: have,
                }));
            }
            return Err(RegistryError::DigestMismatch {
                registry: self.name.clone(),
                what,
                expected: digest.clone(),
                actual,
            });
        }
        file.sync_all().map_err(|e| io_err(&partial, e))?;
        fs::rename(&partial, &final_path).map_err(|e| io_err(&final_path, e))?;
        drop(locked);
        progress.finish(&id);
        Ok(fetched)
    }

    /// Fetch a small blob (a config) into the store and return its bytes.
    async fn fetch_small_blob(
        &self,
        repo: &str,
        d: &DescriptorInfo,
        store: &Store,
        progress: &dyn Progress,
    ) -> Result<(Vec<u8>, u64)> {
        let n = self
            .fetch_blob_to_store(repo, &d.digest, Some(d.size), store, progress)
            .await?;
        let path = store.blob_path(&d.digest);
        let bytes = fs::read(&path).map_err(|e| io_err(&path, e))?;
        Ok((bytes, n))
    }

    /// Pull `reference` into the store (named by the reference) and return
    /// the image for the requested platform.
    pub async fn pull(
        &self,
        reference: &Reference,
        store: &Store,
        opts: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Pulled> {
        let repo = reference.repository().to_string();
        let tag_or_digest = match (reference.digest(), reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_string(),
        };
        let top = self.fetch_manifest(&repo, &tag_or_digest).await?;
        // Until the image is named, a concurrent prune must not run.
        let _hold = store.writer_lock()?;
        let counters = Counters::default();
        let chosen: FetchedManifest = if top.is_index() {
            let index: Value =
                serde_json::from_slice(&top.bytes).map_err(|e| dockyard_image::Error::Json {
                    what: format!("index {}", top.digest),
                    source: e,
                })?;
            if opts.all_platforms {
                let children: Vec<DescriptorInfo> = index
                    .get("manifests")
                    .and_then(Value::as_array)
                    .map(|l| {
                        l.iter()
                            .filter_map(|m| DescriptorInfo::parse("index entry", m).ok())
                            .collect()
                    })
                    .unwrap_or_default();
                for child in &children {
                    let m = self
                        .fetch_manifest(&repo, &child.digest.to_string())
                        .await?;
                    if m.is_index() {
                        continue;
                    }
                    self.fetch_image_blobs(&repo, &m, store, progress, &counters, false)
                        .await?;
                    store.put_bytes(&m.bytes)?;
                }
            }
            let child = select_platform(&index, &top.digest, opts.platform.as_ref())?;
            self.fetch_manifest(&repo, &child.digest.to_string())
                .await?
        } else {
            top.clone()
        };
        self.fetch_image_blobs(&repo, &chosen, store, progress, &counters, true)
            .await?;
        // Store manifests unchanged, then name what the reference names.
        let top_digest = store.put_bytes(&top.bytes)?;
        store.put_bytes(&chosen.bytes)?;
        let name = reference.to_string();
        let (named_digest, named_bytes, named_type) = if opts.all_platforms || !top.is_index() {
            (top_digest.clone(), &top.bytes, &top.media_type)
        } else {
            (chosen.digest.clone(), &chosen.bytes, &chosen.media_type)
        };
        let desc = serde_json::json!({
            "mediaType": named_type,
            "digest": named_digest.to_string(),
            "size": named_bytes.len(),
            "annotations": { dockyard_image::transport::layout::REF_NAME: name },
        });
        store.name_descriptor(&name, desc)?;
        let image = if opts.all_platforms {
            dockyard_image::transport::layout::read_layout(
                &dockyard_image::transport::layout::LayoutDir(store.root().to_path_buf()),
                Some(&name),
                opts.platform.as_ref(),
            )?
        } else {
            store.get_image(&name)?
        };
        let _ = record_blob_source(
            store,
            &self.name,
            &repo,
            image.layers().iter().map(|l| l.digest()),
        );
        Ok(Pulled {
            image,
            digest: top.digest,
            name,
            blobs_fetched: counters.blobs.load(std::sync::atomic::Ordering::Relaxed),
            bytes_fetched: counters.bytes.load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    async fn fetch_image_blobs(
        &self,
        repo: &str,
        m: &FetchedManifest,
        store: &Store,
        progress: &dyn Progress,
        counters: &Counters,
        strict: bool,
    ) -> Result<()> {
        let info = ManifestInfo::parse(&format!("manifest {}", m.digest), &m.bytes)?;
        let (config, n) = self
            .fetch_small_blob(repo, &info.config, store, progress)
            .await?;
        if n > 0 {
            counters
                .blobs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            counters
                .bytes
                .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        }
        // Every runnable image has a diff_id per layer; an index may also
        // list artifacts (attestations, signatures) whose config is not an
        // image config, so only the chosen image is held to that.
        if strict {
            let config: Value =
                serde_json::from_slice(&config).map_err(|e| dockyard_image::Error::Json {
                    what: format!("config {}", info.config.digest),
                    source: e,
                })?;
            let diff_ids = config_diff_ids("config", &config)?;
            if diff_ids.len() != info.layers.len() {
                return Err(dockyard_image::Error::InvalidImage {
                    what: format!("image {}", m.digest),
                    reason: "manifest and config disagree on the number of layers".into(),
                }
                .into());
            }
        }
        let counters = Arc::new(counters);
        stream::iter(info.layers.iter().map(|l| {
            let counters = Arc::clone(&counters);
            async move {
                let n = self
                    .fetch_blob_to_store(repo, &l.digest, Some(l.size), store, progress)
                    .await?;
                if n > 0 {
                    counters
                        .blobs
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    counters
                        .bytes
                        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
                Ok::<_, RegistryError>(())
            }
        }))
        .buffer_unordered(self.opts.parallel.max(1))
        .try_collect::<Vec<_>>()
        .await?;
        Ok(())
    }
}
