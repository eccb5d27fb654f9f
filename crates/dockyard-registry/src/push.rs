//! Pushing: blobs the registry has are skipped (HEAD), blobs known in
//! another repository of the same registry are mounted, the rest uploaded
//! (monolithic when small, PATCH chunks when large), then the manifest.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dockyard_image::compress::{compress_into, looks_incompressible};
use dockyard_image::digest::unwrap_io;
use dockyard_image::media::{self, Compression};
use dockyard_image::progress::{Meter, Phase, Progress, ProgressReader, Silent};
use dockyard_image::{BlobSource, Digest, Image, Layer, Manifest, Reference, Store};
use futures_util::{stream, StreamExt, TryStreamExt};
use reqwest::header::{
    HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION,
};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::AsyncSeekExt;
use url::Url;

use crate::client::{Registry, Scope};
use crate::error::{RegistryError, Result};
use crate::sources::{known_sources, record_blob_source};

#[derive(Clone, Debug)]
pub struct PushOptions {
    /// How layers that exist only uncompressed are compressed.
    pub compression: Compression,
    /// Blobs the repository was just seen to hold (by `blobs_present`,
    /// asked while the image was being built): not asked again.
    pub known_present: HashSet<Digest>,
}

/// HEAD requests in flight when asking which layers a repository has.
const EXISTENCE_CHECKS_AT_ONCE: usize = 32;

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            compression: Compression::Gzip,
            known_present: HashSet::new(),
        }
    }
}

/// What a push did.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub digest: Digest,
    /// The image as pushed (compressed layers where they were not).
    pub image: Image,
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    pub blobs_mounted: usize,
    pub blobs_existing: usize,
}

/// Where upload progress and byte counts go.
#[derive(Clone)]
struct UploadMeter {
    progress: Arc<dyn Progress>,
    bytes: Arc<AtomicU64>,
}

/// What pushing a multi-platform index did.
#[derive(Clone, Debug)]
pub struct PushedIndex {
    pub digest: Digest,
    /// Child manifests pushed.
    pub manifests: usize,
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    pub blobs_mounted: usize,
    pub blobs_existing: usize,
}

#[derive(Default)]
struct PushCounters {
    uploaded: AtomicUsize,
    mounted: AtomicUsize,
    existing: AtomicUsize,
}

enum BlobOutcome {
    Existing,
    Mounted,
    Uploaded,
}

/// The compressed form of an uncompressed layer: from the store's side
/// table when it was compressed before, else compressed now (deterministic)
/// and remembered.
pub fn compressed_layer(
    store: &Store,
    layer: &Layer,
    compression: Compression,
    docker: bool,
) -> Result<Layer> {
    let _hold = store.writer_lock()?;
    match remembered_layer(store, layer, compression, docker)? {
        Some(compressed) => Ok(compressed),
        None => compress_layer(store, layer, compression, docker, None, None, &Silent),
    }
}

/// The compressed form the store remembers for `layer`, if any (callers
/// hold the store's writer lock).
fn remembered_layer(
    store: &Store,
    layer: &Layer,
    compression: Compression,
    docker: bool,
) -> Result<Option<Layer>> {
    let media_type = compression.layer_media_type(docker).to_string();
    let Some((digest, _)) = store.lookup_compressed(layer.diff_id(), compression)? else {
        return Ok(None);
    };
    let source = BlobSource::whole_file(&store.blob_path(&digest))?;
    Ok(Some(Layer::new(
        digest,
        media_type,
        layer.diff_id().clone(),
        source,
    )?))
}

/// Compress `layer` into the store and remember it (callers hold the
/// store's writer lock). The source is read once, verified against the
/// diff_id as it is; the compressed bytes are hashed as they are written.
/// With `follow`, a `BlobFeed` on the blob file is sent there before the
/// first byte, so an upload can read the compressed bytes as they land
/// (never holding the compression back: the file is the buffer); with
/// `compressed`, the digest is sent there as soon as the last byte is
/// written, before the blob's fsync. Progress is that of the layer read
/// (its size is known; the compressed size is not until the end).
fn compress_layer(
    store: &Store,
    layer: &Layer,
    compression: Compression,
    docker: bool,
    follow: Option<tokio::sync::oneshot::Sender<BlobFeed>>,
    compressed: Option<tokio::sync::oneshot::Sender<Digest>>,
    progress: &dyn Progress,
) -> Result<Layer> {
    let media_type = compression.layer_media_type(docker).to_string();
    let mut reader = ProgressReader::new(
        layer.open_uncompressed()?,
        progress,
        layer.digest().short(),
        Phase::Upload,
        layer.size(),
    );
    let blob = store.new_blob_writer()?;
    let (written, _) = tokio::sync::watch::channel(Written::default());
    if let Some(to) = follow {
        let _ = to.send(BlobFeed {
            file: blob.read_handle()?,
            sent: 0,
            written: written.subscribe(),
        });
    }
    let out = Published { blob, written };
    let writer = compress_into(&mut reader, out, compression)
        .and_then(Published::complete)
        .map_err(|e| unwrap_io(e, &layer.source().path()))?;
    reader.finish();
    if let Some(to) = compressed {
        let _ = to.send(writer.written_digest());
    }
    let (digest, dest) = writer.commit()?;
    let size = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    store.record_compressed(
        layer.diff_id(),
        compression,
        &json!({"digest": digest.to_string(), "mediaType": media_type, "size": size}),
    )?;
    let source = BlobSource::whole_file(&dest)?;
    Ok(Layer::new(
        digest,
        media_type,
        layer.diff_id().clone(),
        source,
    )?)
}

/// How a push compresses the layers it holds uncompressed: the form, and
/// the turns they take (one compresses at a time, on every core).
struct Compressing {
    compression: Compression,
    docker: bool,
    turns: tokio::sync::Semaphore,
}

/// Layers from this size on are sampled for the order they compress in
/// (a smaller one's upload is too short to matter).
const SAMPLED_LAYER_SIZE: u64 = 16 << 20;

/// How much of a blob being written is in its file.
#[derive(Clone, Copy, Debug, Default)]
struct Written {
    bytes: u64,
    /// The writer has written its last byte.
    complete: bool,
}

/// A blob writer that says, after each write, how much is in the file.
struct Published {
    blob: dockyard_image::blob_writer::BlobWriter,
    written: tokio::sync::watch::Sender<Written>,
}

impl Published {
    fn complete(mut self) -> std::io::Result<dockyard_image::blob_writer::BlobWriter> {
        use std::io::Write;
        self.blob.flush()?;
        self.written.send_replace(Written {
            bytes: self.blob.written(),
            complete: true,
        });
        Ok(self.blob)
    }
}

impl std::io::Write for Published {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.blob.write(buf)?;
        // Into the file now, so a follower can read it (compressors write
        // whole members or frames: this is no small-write flush).
        self.blob.flush()?;
        self.written.send_replace(Written {
            bytes: self.blob.written(),
            complete: false,
        });
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.blob.flush()
    }
}

/// Bytes read back from a blob file as its writer fills it, for a
/// streamed upload.
struct BlobFeed {
    file: std::fs::File,
    sent: u64,
    written: tokio::sync::watch::Receiver<Written>,
}

/// Upload pieces read from a followed blob file.
const FEED_PIECE: u64 = 256 << 10;

impl BlobFeed {
    /// Whether anything is left to send (waits for the writer to say).
    async fn more(&mut self) -> std::io::Result<bool> {
        loop {
            let now = *self.written.borrow_and_update();
            if self.sent < now.bytes {
                return Ok(true);
            }
            if now.complete {
                return Ok(false);
            }
            if self.written.changed().await.is_err() {
                let last = *self.written.borrow();
                if !last.complete && self.sent >= last.bytes {
                    return Err(std::io::Error::other(
                        "the compression stopped before its end",
                    ));
                }
            }
        }
    }

    /// The next piece of at most `left` bytes; None at the end of the data
    /// or of this request's share.
    async fn take(&mut self, left: u64) -> Option<std::io::Result<bytes::Bytes>> {
        if left == 0 {
            return None;
        }
        match self.more().await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(Err(e)),
        }
        let available = self.written.borrow().bytes - self.sent;
        let len = available.min(left).min(FEED_PIECE) as usize;
        let mut piece = vec![0u8; len];
        // A page-cache read of at most FEED_PIECE bytes: short enough to
        // do on the async side.
        if let Err(e) = std::os::unix::fs::FileExt::read_exact_at(&self.file, &mut piece, self.sent)
        {
            return Some(Err(e));
        }
        self.sent += len as u64;
        Some(Ok(bytes::Bytes::from(piece)))
    }
}

fn header(v: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(v).map_err(|e| RegistryError::Internal {
        reason: e.to_string(),
    })
}

/// A request body streaming `len` bytes of a blob from `offset`.
fn blob_body(
    source: &BlobSource,
    offset: u64,
    len: u64,
    counter: Arc<AtomicU64>,
    progress: Option<(Arc<dyn Progress>, Arc<Meter>)>,
) -> Result<reqwest::Body> {
    match source {
        BlobSource::Bytes(b) => {
            let start = offset as usize;
            let end = (offset + len) as usize;
            let slice = b.get(start..end).unwrap_or_default().to_vec();
            counter.fetch_add(slice.len() as u64, Ordering::Relaxed);
            if let Some((p, m)) = &progress {
                m.add(p.as_ref(), slice.len() as u64);
            }
            Ok(reqwest::Body::from(slice))
        }
        BlobSource::File {
            path, offset: base, ..
        } => {
            let path = Arc::clone(path);
            let start = base + offset;
            let s = stream::once(async move {
                let mut f = tokio::fs::File::open(path.as_path()).await?;
                f.seek(std::io::SeekFrom::Start(start)).await?;
                Ok::<_, std::io::Error>(tokio_util::io::ReaderStream::with_capacity(
                    tokio::io::AsyncReadExt::take(f, len),
                    1 << 16,
                ))
            })
            .try_flatten()
            .inspect_ok(move |chunk| {
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if let Some((p, m)) = &progress {
                    m.add(p.as_ref(), chunk.len() as u64);
                }
            });
            Ok(reqwest::Body::wrap_stream(s))
        }
        BlobSource::Remote {
            digest, len: total, ..
        } => {
            // Registry to registry: the bytes stream through, never to disk.
            let Some(from) = crate::lazy::registry_blobs(source) else {
                return Err(RegistryError::Internal {
                    reason: format!(
                        "blob {digest}: its source ({}) is not a registry this client can read",
                        source.describe()
                    ),
                });
            };
            let client = from.client.clone();
            let repo = from.repo.clone();
            let digest = digest.clone();
            let total = *total;
            let s = stream::once(async move {
                client.blob_stream(&repo, &digest, offset, len, total).await
            })
            .try_flatten()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .inspect_ok(move |chunk| {
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if let Some((p, m)) = &progress {
                    m.add(p.as_ref(), chunk.len() as u64);
                }
            });
            Ok(reqwest::Body::wrap_stream(s))
        }
    }
}

impl Registry {
    fn location(&self, resp: &reqwest::Response, base: &Url, what: &str) -> Result<Url> {
        let loc = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol {
                registry: self.name.clone(),
                what: what.into(),
                reason: format!(
                    "HTTP {} upload response without a Location header",
                    resp.status().as_u16()
                ),
            })?;
        // Absolute or relative; host and port kept exactly as given.
        base.join(loc).map_err(|e| RegistryError::Protocol {
            registry: self.name.clone(),
            what: what.into(),
            reason: format!("bad upload Location {loc:?}: {e}"),
        })
    }

    /// Push one blob unless the registry has it; returns what happened.
    async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        source: &BlobSource,
        store: &Store,
        meter: &UploadMeter,
    ) -> Result<BlobOutcome> {
        self.push_blob_checked(repo, digest, size, source, store, meter, false)
            .await
    }

    /// `push_blob`; with `known_absent` the repository was just asked and
    /// has no such blob, so it is not asked again.
    #[allow(clippy::too_many_arguments)]
    async fn push_blob_checked(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        source: &BlobSource,
        store: &Store,
        meter: &UploadMeter,
        known_absent: bool,
    ) -> Result<BlobOutcome> {
        let progress = &meter.progress;
        let scope = Scope::push(repo);
        if !known_absent && self.has_blob(repo, digest, &scope).await? {
            return Ok(BlobOutcome::Existing);
        }
        let what = format!("upload of blob {digest} to {repo}");
        // Mount from the repository a lazily opened image came from, or
        // from one known to hold the blob.
        let mut candidates: Vec<String> = crate::lazy::registry_blobs(source)
            .filter(|r| r.client.name() == self.name && r.repo != repo)
            .map(|r| r.repo.clone())
            .into_iter()
            .collect();
        for known in known_sources(store, &self.name, digest, repo) {
            if !candidates.contains(&known) {
                candidates.push(known);
            }
        }
        let mut session: Option<Url> = None;
        for from in candidates.into_iter().take(3) {
            let mut url = self.url(&format!("v2/{repo}/blobs/uploads/"))?;
            url.query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", &from);
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_LENGTH, header("0")?);
            let resp = self
                .send(
                    Method::POST,
                    url.clone(),
                    &Scope::mount(repo, &from),
                    headers,
                    None,
                    &what,
                )
                .await;
            // A refused mount (source gone, private, other credentials) is
            // not an error: the blob is uploaded instead.
            let Ok(resp) = resp else {
                tracing::debug!(%digest, from, "mount refused; uploading");
                continue;
            };
            match resp.status() {
                StatusCode::CREATED => return Ok(BlobOutcome::Mounted),
                StatusCode::ACCEPTED => {
                    session = Some(self.location(&resp, &url, &what)?);
                    break;
                }
                _ => continue,
            }
        }
        let mut last_err = None;
        for round in 0..3u32 {
            if round > 0 {
                tokio::time::sleep(self.backoff(round, None)).await;
            }
            let start = match session.take() {
                Some(s) => s,
                None => {
                    let url = self.url(&format!("v2/{repo}/blobs/uploads/"))?;
                    let mut headers = HeaderMap::new();
                    headers.insert(CONTENT_LENGTH, header("0")?);
                    let resp = self
                        .send(Method::POST, url.clone(), &scope, headers, None, &what)
                        .await?;
                    let resp = self.check(resp, &what).await?;
                    self.location(&resp, &url, &what)?
                }
            };
            let blob_meter = Arc::new(Meter::start(
                progress.as_ref(),
                digest.short(),
                Phase::Upload,
                size,
            ));
            match self
                .upload(
                    start,
                    digest,
                    size,
                    source,
                    &scope,
                    &what,
                    meter,
                    &blob_meter,
                )
                .await
            {
                Ok(()) => {
                    blob_meter.finish(progress.as_ref());
                    return Ok(BlobOutcome::Uploaded);
                }
                Err(
                    e @ (RegistryError::Unauthorized { .. }
                    | RegistryError::Image(_)
                    | RegistryError::Credentials { .. }
                    | RegistryError::Tls { .. }
                    | RegistryError::Internal { .. }),
                ) => return Err(e),
                Err(e) => {
                    tracing::debug!(%digest, error = %e, "upload failed; starting a new upload session");
                    blob_meter.finish(progress.as_ref());
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| RegistryError::Internal {
            reason: "upload failed".into(),
        }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload(
        &self,
        mut location: Url,
        digest: &Digest,
        size: u64,
        source: &BlobSource,
        scope: &Scope,
        what: &str,
        meter: &UploadMeter,
        blob_meter: &Arc<Meter>,
    ) -> Result<()> {
        let (progress, counter) = (&meter.progress, &meter.bytes);
        let chunk = self.opts.chunk_size.max(1);
        let octet = header("application/octet-stream")?;
        if size > chunk {
            let mut offset = 0u64;
            while offset < size {
                let len = chunk.min(size - offset);
                let mut headers = HeaderMap::new();
                headers.insert(CONTENT_TYPE, octet.clone());
                headers.insert(CONTENT_LENGTH, header(&len.to_string())?);
                headers.insert(
                    CONTENT_RANGE,
                    header(&format!("{}-{}", offset, offset + len - 1))?,
                );
                let make = || {
                    blob_body(
                        source,
                        offset,
                        len,
                        Arc::clone(counter),
                        Some((Arc::clone(progress), Arc::clone(blob_meter))),
                    )
                };
                let resp = self
                    .send(
                        Method::PATCH,
                        location.clone(),
                        scope,
                        headers,
                        Some(&make),
                        what,
                    )
                    .await?;
                let resp = self.check(resp, what).await?;
                location = self.location(&resp, &location, what)?;
                offset += len;
            }
            let mut url = location.clone();
            url.query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_LENGTH, header("0")?);
            let resp = self
                .send(Method::PUT, url, scope, headers, None, what)
                .await?;
            self.check(resp, what).await?;
        } else {
            let mut url = location.clone();
            url.query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, octet);
            headers.insert(CONTENT_LENGTH, header(&size.to_string())?);
            let make = || {
                blob_body(
                    source,
                    0,
                    size,
                    Arc::clone(counter),
                    Some((Arc::clone(progress), Arc::clone(blob_meter))),
                )
            };
            let resp = self
                .send(Method::PUT, url, scope, headers, Some(&make), what)
                .await?;
            self.check(resp, what).await?;
        }
        Ok(())
    }

    /// Push a layer held uncompressed that the store has no compressed
    /// form of: it is compressed into the store while the upload reads the
    /// compressed bytes back from the blob file as they land, in streamed
    /// PATCH requests — its digest is known only at the end, so there is
    /// nothing to ask the registry first — and the upload is committed with
    /// that digest. If the stream fails, the blob is pushed again from the
    /// store, with the usual retries.
    async fn push_compressing(
        &self,
        repo: &str,
        layer: Layer,
        how: &Compressing,
        store: &Store,
        meter: &UploadMeter,
    ) -> Result<(Layer, BlobOutcome)> {
        let (compression, docker) = (how.compression, how.docker);
        let root = store.root().to_path_buf();
        let blocking_err = |e: tokio::task::JoinError| RegistryError::Internal {
            reason: format!("compression task failed: {e}"),
        };
        // One layer compresses at a time (on every core), in the order the
        // layers asked, while the layers before it finish uploading.
        let turn = how
            .turns
            .acquire()
            .await
            .map_err(|e| RegistryError::Internal {
                reason: format!("compression queue: {e}"),
            })?;
        let (feed_tx, feed_rx) = tokio::sync::oneshot::channel::<BlobFeed>();
        let (digest_tx, digest_rx) = tokio::sync::oneshot::channel::<Digest>();
        let task = {
            let (layer, progress) = (layer.clone(), Arc::clone(&meter.progress));
            tokio::task::spawn_blocking(move || {
                let store = Store::open(&root)?;
                let _hold = store.writer_lock()?;
                compress_layer(
                    &store,
                    &layer,
                    compression,
                    docker,
                    Some(feed_tx),
                    Some(digest_tx),
                    progress.as_ref(),
                )
            })
        };
        // The next layer compresses as soon as this one's last byte is
        // written — while this upload catches up from the file, and while
        // the blob is fsynced into the store.
        let compressed_digest = async {
            let digest = digest_rx.await;
            drop(turn);
            digest
        };
        let (streamed, digest) = tokio::join!(
            self.upload_stream(repo, feed_rx, &meter.bytes, layer.digest().short()),
            compressed_digest
        );
        let committed = match (streamed, &digest) {
            (Ok(location), Ok(digest)) => self.commit_upload(repo, location, digest).await,
            (Err(e), _) => Err(e),
            (Ok(_), Err(_)) => Err(RegistryError::Internal {
                reason: "the compression stopped before its end".into(),
            }),
        };
        let compressed = task.await.map_err(blocking_err)??;
        match committed {
            Ok(()) => Ok((compressed, BlobOutcome::Uploaded)),
            Err(e) => {
                tracing::debug!(digest = %compressed.digest(), error = %e, "streamed upload failed; pushing from the store");
                let o = self
                    .push_blob(
                        repo,
                        compressed.digest(),
                        compressed.size(),
                        compressed.source(),
                        store,
                        meter,
                    )
                    .await?;
                Ok((compressed, o))
            }
        }
    }

    /// Open an upload session and send everything the feed yields, in
    /// streamed PATCH requests of at most the chunk size each (their length
    /// is not known before they are sent); returns where the session
    /// continues.
    async fn upload_stream(
        &self,
        repo: &str,
        feed: tokio::sync::oneshot::Receiver<BlobFeed>,
        counter: &Arc<AtomicU64>,
        id: String,
    ) -> Result<Url> {
        let scope = Scope::push(repo);
        let what = format!("streamed upload of layer {id} to {repo}");
        let url = self.url(&format!("v2/{repo}/blobs/uploads/"))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, header("0")?);
        let resp = self
            .send(Method::POST, url.clone(), &scope, headers, None, &what)
            .await?;
        let resp = self.check(resp, &what).await?;
        let mut location = self.location(&resp, &url, &what)?;
        let feed = feed.await.map_err(|_| RegistryError::Internal {
            reason: "the compression stopped before its start".into(),
        })?;
        let feed = Arc::new(tokio::sync::Mutex::new(feed));
        let limit = self.opts.chunk_size.max(1);
        // Nothing more to send (not even an empty first request) ends it.
        while feed
            .lock()
            .await
            .more()
            .await
            .map_err(|e| RegistryError::Internal {
                reason: format!("{what}: {e}"),
            })?
        {
            // A request body can be sent once: a retry of it fails, and the
            // caller pushes from the store instead.
            let once = std::sync::Mutex::new(Some(Arc::clone(&feed)));
            let make = || {
                let feed = once.lock().ok().and_then(|mut f| f.take()).ok_or_else(|| {
                    RegistryError::Internal {
                        reason: "a streamed upload cannot be resent".into(),
                    }
                })?;
                let counter = Arc::clone(counter);
                let s = stream::unfold((feed, limit, false), |(feed, left, failed)| async move {
                    if failed {
                        return None;
                    }
                    let piece = feed.lock().await.take(left).await?;
                    let (left, failed) = match &piece {
                        Ok(p) => (left - p.len() as u64, false),
                        Err(_) => (left, true),
                    };
                    Some((piece, (feed, left, failed)))
                })
                .inspect_ok(move |piece| {
                    counter.fetch_add(piece.len() as u64, Ordering::Relaxed);
                });
                Ok(reqwest::Body::wrap_stream(s))
            };
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, header("application/octet-stream")?);
            let resp = self
                .send(
                    Method::PATCH,
                    location.clone(),
                    &scope,
                    headers,
                    Some(&make),
                    &what,
                )
                .await?;
            let resp = self.check(resp, &what).await?;
            location = self.location(&resp, &location, &what)?;
        }
        Ok(location)
    }

    /// Close an upload session: the registry checks the digest and keeps
    /// the blob.
    async fn commit_upload(&self, repo: &str, mut location: Url, digest: &Digest) -> Result<()> {
        let what = format!("upload of blob {digest} to {repo}");
        location
            .query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, header("0")?);
        let resp = self
            .send(
                Method::PUT,
                location,
                &Scope::push(repo),
                headers,
                None,
                &what,
            )
            .await?;
        self.check(resp, &what).await?;
        Ok(())
    }

    /// Which of `digests` the repository of `reference` holds, asked all
    /// at once (a build asks this of its cached layers while it makes the
    /// new ones, and hands the answer to `push` as `known_present`).
    pub async fn blobs_present(
        &self,
        reference: &Reference,
        digests: Vec<Digest>,
    ) -> Result<HashSet<Digest>> {
        let repo = reference.repository().to_string();
        self.present_in(&repo, &Scope::push(&repo), digests).await
    }

    async fn present_in(
        &self,
        repo: &str,
        scope: &Scope,
        digests: Vec<Digest>,
    ) -> Result<HashSet<Digest>> {
        stream::iter(digests)
            .map(|d| async move { Ok::<_, RegistryError>((self.has_blob(repo, &d, scope).await?, d)) })
            .buffer_unordered(EXISTENCE_CHECKS_AT_ONCE)
            .try_filter_map(|(has, d)| async move { Ok(has.then_some(d)) })
            .try_collect()
            .await
    }

    /// Push `image` as `reference`. Layers held only uncompressed are
    /// compressed first (and the result remembered in the store).
    pub async fn push(
        &self,
        image: &Image,
        reference: &Reference,
        store: &Store,
        opts: &PushOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<Pushed> {
        let repo = reference.repository().to_string();
        let docker = media::is_docker_manifest(image.manifest_media_type());
        // Layers streamed from another registry go across as they are
        // (recompressing them would change digests and break signatures).
        let held_uncompressed = |l: &Layer| {
            l.compression() == Compression::None && !matches!(l.source(), BlobSource::Remote { .. })
        };
        let compress = opts.compression != Compression::None;
        let opts_compression = opts.compression;
        let recompressed = compress && image.layers().iter().any(held_uncompressed);
        // The digest a reference names is checked before any upload when it
        // is known; with layers to compress, once they are.
        let check_digest = |image: &Image| match reference.digest() {
            Some(d) if *d != image.digest() => Err(RegistryError::DigestReference {
                reference: reference.to_string(),
                actual: image.digest(),
            }),
            _ => Ok(()),
        };
        if !recompressed {
            check_digest(image)?;
        }
        let counters = Arc::new(PushCounters::default());
        let bytes = Arc::new(AtomicU64::new(0));
        let tally = |outcome: BlobOutcome, counters: &PushCounters| match outcome {
            BlobOutcome::Existing => counters.existing.fetch_add(1, Ordering::Relaxed),
            BlobOutcome::Mounted => counters.mounted.fetch_add(1, Ordering::Relaxed),
            BlobOutcome::Uploaded => counters.uploaded.fetch_add(1, Ordering::Relaxed),
        };
        let meter = UploadMeter {
            progress: Arc::clone(&progress),
            bytes: Arc::clone(&bytes),
        };
        let compressing = Compressing {
            compression: opts.compression,
            docker,
            turns: tokio::sync::Semaphore::new(1),
        };
        // The compressed forms the store remembers, looked up before any
        // layer starts: only the layers left take compression turns.
        let layers: Vec<Layer> = if compress {
            let (root, all) = (store.root().to_path_buf(), image.layers().to_vec());
            tokio::task::spawn_blocking(move || -> Result<Vec<Layer>> {
                let store = Store::open(&root)?;
                let _hold = store.writer_lock()?;
                all.into_iter()
                    .map(|l| {
                        Ok(match held_uncompressed(&l) {
                            true => {
                                remembered_layer(&store, &l, opts_compression, docker)?.unwrap_or(l)
                            }
                            false => l,
                        })
                    })
                    .collect()
            })
            .await
            .map_err(|e| RegistryError::Internal {
                reason: format!("store lookup failed: {e}"),
            })??
        } else {
            image.layers().to_vec()
        };
        let needs_compression = |l: &Layer| compress && held_uncompressed(l);
        // Layers that look incompressible compress first: stored rather than
        // deflated, they compress in a fraction of their upload time, so
        // their upload overlaps the compression of the others instead of
        // trailing it. The order is scheduling only: the bytes, and the
        // manifest's order, are the same.
        let compress_first: HashSet<usize> = {
            let sampled: Vec<(usize, Layer)> = layers
                .iter()
                .enumerate()
                .filter(|(_, l)| needs_compression(l) && l.size() >= SAMPLED_LAYER_SIZE)
                .map(|(i, l)| (i, l.clone()))
                .collect();
            tokio::task::spawn_blocking(move || {
                sampled
                    .into_iter()
                    .filter(|(_, l)| {
                        // A layer that cannot be read fails where it is compressed.
                        l.open_uncompressed()
                            .ok()
                            .and_then(|r| looks_incompressible(r).ok())
                            .unwrap_or(false)
                    })
                    .map(|(i, _)| i)
                    .collect()
            })
            .await
            .map_err(|e| RegistryError::Internal {
                reason: format!("layer sampling failed: {e}"),
            })?
        };
        // Which of the other layers the repository already has, asked all
        // at once: a rebuild of a many-layer image (one layer per conda
        // package) then waits for one round of HEADs, not one per
        // `parallel` layers. The layers to compress need no asking (their
        // digest is known only once compressed): they start at once, their
        // compression and upload overlapping the round.
        let scope = Scope::push(&repo);
        let asked: Vec<Digest> = layers
            .iter()
            .filter(|l| !needs_compression(l) && !opts.known_present.contains(l.digest()))
            .map(|l| l.digest().clone())
            .collect();
        let (present_tx, present_rx) = tokio::sync::watch::channel(None::<Arc<HashSet<Digest>>>);
        let existence_round = async {
            let mut present = self.present_in(&repo, &scope, asked).await?;
            present.extend(opts.known_present.iter().cloned());
            let _ = present_tx.send(Some(Arc::new(present)));
            Ok::<_, RegistryError>(())
        };
        let mut order: Vec<(usize, Layer)> = layers.into_iter().enumerate().collect();
        order.sort_by_key(|(i, l)| (!needs_compression(l), !compress_first.contains(i)));
        let layer_pushes = stream::iter(order.into_iter().map(|(i, l)| {
            let counters = Arc::clone(&counters);
            let (repo, meter, compressing) = (repo.clone(), &meter, &compressing);
            let mut present = present_rx.clone();
            async move {
                let (l, o) = if needs_compression(&l) {
                    self.push_compressing(&repo, l, compressing, store, meter)
                        .await?
                } else {
                    // A failed round ends the push with its own error.
                    let known = present
                        .wait_for(Option::is_some)
                        .await
                        .map_err(|_| RegistryError::Internal {
                            reason: "the existence checks stopped".into(),
                        })?
                        .clone()
                        .unwrap_or_default();
                    if known.contains(l.digest()) {
                        (l, BlobOutcome::Existing)
                    } else {
                        let o = self
                            .push_blob_checked(
                                &repo,
                                l.digest(),
                                l.size(),
                                l.source(),
                                store,
                                meter,
                                true,
                            )
                            .await?;
                        (l, o)
                    }
                };
                tally(o, &counters);
                Ok::<_, RegistryError>((i, l))
            }
        }))
        // Ordered, so the compression turns are taken in this order.
        .buffered(self.opts.parallel.max(1))
        .try_collect::<Vec<(usize, Layer)>>();
        // The config does not change with the layers' compression (it names
        // their diff_ids): it goes up beside them.
        let config_push = async {
            let config = BlobSource::Bytes(Arc::new(image.config_raw().to_vec()));
            let o = self
                .push_blob(
                    &repo,
                    &image.config_digest(),
                    image.config_raw().len() as u64,
                    &config,
                    store,
                    &meter,
                )
                .await?;
            tally(o, &counters);
            Ok::<_, RegistryError>(())
        };
        let ((), mut layers, ()) = tokio::try_join!(existence_round, layer_pushes, config_push)?;
        // The manifest lists the layers as the image does.
        layers.sort_by_key(|(i, _)| *i);
        let layers: Vec<Layer> = layers.into_iter().map(|(_, l)| l).collect();
        let image = if recompressed {
            let image = image.with_layer_blobs(layers)?;
            check_digest(&image)?;
            image
        } else {
            image.clone()
        };
        let tag = reference.push_target();
        let digest = self
            .put_manifest(
                &repo,
                &tag,
                image.manifest_raw(),
                image.manifest_media_type(),
            )
            .await?;
        let mut all: Vec<Digest> = image.layers().iter().map(|l| l.digest().clone()).collect();
        all.push(image.config_digest());
        let _ = record_blob_source(store, &self.name, &repo, all.iter());
        Ok(Pushed {
            digest,
            image,
            blobs_uploaded: counters.uploaded.load(Ordering::Relaxed),
            bytes_uploaded: bytes.load(Ordering::Relaxed),
            blobs_mounted: counters.mounted.load(Ordering::Relaxed),
            blobs_existing: counters.existing.load(Ordering::Relaxed),
        })
    }
}

impl Registry {
    /// Push an index or an artifact whole, as `reference`: the blobs of
    /// every manifest in the tree, each child manifest by its digest
    /// (children before the indexes naming them), then the root under the
    /// reference's tag. Everything is pushed byte for byte, so the digests
    /// stay what they were. (Images go through `push`, which also
    /// compresses layers held uncompressed.)
    pub async fn push_manifest(
        &self,
        manifest: &Manifest,
        reference: &Reference,
        store: &Store,
        progress: Arc<dyn Progress>,
    ) -> Result<PushedIndex> {
        manifest.check_complete(&format!("docker://{reference}"))?;
        let repo = reference.repository().to_string();
        let counters = PushCounters::default();
        let meter = UploadMeter {
            progress: Arc::clone(&progress),
            bytes: Arc::new(AtomicU64::new(0)),
        };
        let tree = manifest.manifests_bottom_up();
        let root_digest = manifest.digest();
        let mut children = 0;
        for m in &tree {
            let blobs = m.own_blobs();
            stream::iter(blobs.iter().map(|b| {
                let repo = repo.clone();
                let meter = &meter;
                let counters = &counters;
                async move {
                    let o = self
                        .push_blob(
                            &repo,
                            &b.descriptor.digest,
                            b.descriptor.size,
                            &b.source,
                            store,
                            meter,
                        )
                        .await?;
                    match o {
                        BlobOutcome::Existing => counters.existing.fetch_add(1, Ordering::Relaxed),
                        BlobOutcome::Mounted => counters.mounted.fetch_add(1, Ordering::Relaxed),
                        BlobOutcome::Uploaded => counters.uploaded.fetch_add(1, Ordering::Relaxed),
                    };
                    Ok::<_, RegistryError>(())
                }
            }))
            .buffer_unordered(self.opts.parallel.max(1))
            .try_collect::<Vec<_>>()
            .await?;
            if m.digest() != root_digest {
                self.put_manifest(&repo, &m.digest().to_string(), m.raw(), m.media_type())
                    .await?;
                children += 1;
            }
        }
        let tag = reference.push_target();
        let digest = self
            .put_manifest(&repo, &tag, manifest.raw(), manifest.media_type())
            .await?;
        let blobs: Vec<Digest> = manifest
            .all_blobs()
            .into_iter()
            .map(|b| b.descriptor.digest)
            .collect();
        let _ = record_blob_source(store, &self.name, &repo, blobs.iter());
        Ok(PushedIndex {
            digest,
            manifests: children,
            blobs_uploaded: counters.uploaded.load(Ordering::Relaxed),
            bytes_uploaded: meter.bytes.load(Ordering::Relaxed),
            blobs_mounted: counters.mounted.load(Ordering::Relaxed),
            blobs_existing: counters.existing.load(Ordering::Relaxed),
        })
    }
}
