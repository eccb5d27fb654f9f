//! A layer: its blob (compressed or not), its diff_id, and where its bytes live.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::digest::{Digest, VerifyingReader};
use crate::error::{Error, IoContext, Result};
use crate::media::Compression;

/// Blobs that live in a registry repository, read on demand. The registry
/// client implements it; this crate only knows where the bytes are.
pub trait RemoteBlobs: Send + Sync + std::fmt::Debug {
    /// The registry as users name it (`ghcr.io`, `127.0.0.1:5000`).
    fn registry(&self) -> &str;
    fn repository(&self) -> &str;
    /// Stream a blob (unverified: `Layer::open` and `Blob::open` verify).
    fn open(&self, digest: &Digest, size: u64) -> io::Result<Box<dyn Read + Send>>;
    /// For the registry client to find its own type again.
    fn as_any(&self) -> &dyn std::any::Any;
}

/// Where a blob's bytes are: a whole file, a byte range of a file (a member of
/// an uncompressed tar archive), memory (small blobs only), or a registry
/// (an image opened lazily: nothing is fetched until a writer needs it).
#[derive(Clone, Debug)]
pub enum BlobSource {
    Remote {
        remote: Arc<dyn RemoteBlobs>,
        digest: Digest,
        len: u64,
    },
    File {
        path: Arc<PathBuf>,
        offset: u64,
        len: u64,
        /// Keeps a temporary file alive as long as a layer refers to it.
        keep: Option<Arc<tempfile::TempPath>>,
        /// A content-addressed store blob, verified when it was written: a
        /// writer may link it instead of copying.
        store_blob: bool,
    },
    Bytes(Arc<Vec<u8>>),
}

impl BlobSource {
    pub fn whole_file(path: &Path) -> Result<BlobSource> {
        let len = std::fs::metadata(path).at(path)?.len();
        Ok(BlobSource::File {
            path: Arc::new(path.to_path_buf()),
            offset: 0,
            len,
            keep: None,
            store_blob: false,
        })
    }
    /// A blob of the store (verified when written).
    pub fn store_blob(path: &Path) -> Result<BlobSource> {
        let len = std::fs::metadata(path).at(path)?.len();
        Ok(BlobSource::File {
            path: Arc::new(path.to_path_buf()),
            offset: 0,
            len,
            keep: None,
            store_blob: true,
        })
    }
    /// The path of a whole verified store blob, for linking.
    pub fn linkable_store_blob(&self) -> Option<&Path> {
        match self {
            BlobSource::File {
                path,
                offset: 0,
                keep: None,
                store_blob: true,
                ..
            } => Some(path.as_path()),
            _ => None,
        }
    }
    pub fn temp_file(temp: tempfile::TempPath) -> Result<BlobSource> {
        let len = std::fs::metadata(&temp).at(&*temp)?.len();
        Ok(BlobSource::File {
            path: Arc::new(temp.to_path_buf()),
            offset: 0,
            len,
            keep: Some(Arc::new(temp)),
            store_blob: false,
        })
    }
    pub fn len(&self) -> u64 {
        match self {
            BlobSource::File { len, .. } | BlobSource::Remote { len, .. } => *len,
            BlobSource::Bytes(b) => b.len() as u64,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A name for error messages.
    pub fn describe(&self) -> String {
        match self {
            BlobSource::File {
                path, offset: 0, ..
            } => path.display().to_string(),
            BlobSource::File { path, offset, .. } => {
                format!("{} at offset {offset}", path.display())
            }
            BlobSource::Bytes(_) => "memory".into(),
            BlobSource::Remote { remote, digest, .. } => {
                format!("{}/{}@{digest}", remote.registry(), remote.repository())
            }
        }
    }
    pub fn path(&self) -> PathBuf {
        match self {
            BlobSource::File { path, .. } => path.to_path_buf(),
            BlobSource::Bytes(_) => PathBuf::from("<memory>"),
            BlobSource::Remote { .. } => PathBuf::from(self.describe()),
        }
    }
    /// Open the raw bytes, unverified.
    pub fn open_raw(&self) -> Result<Box<dyn Read + Send>> {
        match self {
            BlobSource::File {
                path, offset, len, ..
            } => {
                let mut f = File::open(path.as_path()).at(path.as_path())?;
                if *offset > 0 {
                    f.seek(SeekFrom::Start(*offset)).at(path.as_path())?;
                }
                Ok(Box::new(f.take(*len)))
            }
            BlobSource::Bytes(b) => Ok(Box::new(io::Cursor::new(SharedBytes(Arc::clone(b))))),
            BlobSource::Remote {
                remote,
                digest,
                len,
            } => remote.open(digest, *len).map_err(|source| Error::Io {
                path: self.path(),
                source,
            }),
        }
    }
    /// Read all bytes (for small blobs: manifests, configs).
    pub fn read_all(&self, limit: u64) -> Result<Vec<u8>> {
        if self.len() > limit {
            return Err(Error::TooLarge {
                what: self.describe(),
                size: self.len(),
                limit,
            });
        }
        let mut out = Vec::with_capacity(self.len() as usize);
        self.open_raw()?.read_to_end(&mut out).at(self.path())?;
        Ok(out)
    }
}

/// A layer of an image.
#[derive(Clone, Debug)]
pub struct Layer {
    /// Digest of the blob as stored (compressed if `compression` says so).
    digest: Digest,
    size: u64,
    media_type: String,
    compression: Compression,
    /// Digest of the uncompressed tar.
    diff_id: Digest,
    source: BlobSource,
    annotations: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Layer {
    pub fn new(
        digest: Digest,
        media_type: String,
        diff_id: Digest,
        source: BlobSource,
    ) -> Result<Layer> {
        let compression = Compression::of_layer_media_type(&media_type).ok_or_else(|| {
            Error::UnsupportedMediaType {
                what: format!("layer {digest}"),
                media_type: media_type.clone(),
            }
        })?;
        Ok(Layer {
            size: source.len(),
            digest,
            media_type,
            compression,
            diff_id,
            source,
            annotations: None,
        })
    }
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn media_type(&self) -> &str {
        &self.media_type
    }
    pub fn compression(&self) -> Compression {
        self.compression
    }
    pub fn diff_id(&self) -> &Digest {
        &self.diff_id
    }
    pub fn source(&self) -> &BlobSource {
        &self.source
    }
    pub fn annotations(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.annotations.as_ref()
    }
    pub fn with_annotations(
        mut self,
        a: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Layer {
        self.annotations = a;
        self
    }
    /// The same layer with its bytes found elsewhere (the same digest).
    pub fn with_source(mut self, source: BlobSource) -> Layer {
        self.source = source;
        self
    }
    /// Same layer, other media type of the same compression (OCI ↔ Docker).
    pub fn with_media_type(mut self, media_type: &str) -> Layer {
        self.media_type = media_type.to_string();
        self
    }
    /// The blob, verified against its digest and size as it is read.
    pub fn open(&self) -> Result<VerifyingReader<Box<dyn Read + Send>>> {
        Ok(VerifyingReader::new(
            self.source.open_raw()?,
            self.digest.clone(),
            Some(self.size),
            format!("layer {} ({})", self.digest, self.source.describe()),
        ))
    }
    /// The uncompressed tar, verified against the diff_id as it is read.
    pub fn open_uncompressed(&self) -> Result<Box<dyn Read + Send>> {
        if self.compression == Compression::None {
            return Ok(Box::new(self.open()?));
        }
        self.open_uncompressed_from(self.source.open_raw()?)
    }

    /// The uncompressed tar of `raw` (this layer's stored bytes, e.g.
    /// wrapped to count them), verified against the diff_id as it is read.
    pub fn open_uncompressed_from<'a>(
        &self,
        raw: Box<dyn Read + Send + 'a>,
    ) -> Result<Box<dyn Read + Send + 'a>> {
        let plain = decompress_send(raw, self.compression).at(self.source.path())?;
        Ok(Box::new(VerifyingReader::new(
            plain,
            self.diff_id.clone(),
            None,
            format!(
                "uncompressed layer {} ({})",
                self.digest,
                self.source.describe()
            ),
        )))
    }
    /// The layer's descriptor, typed.
    pub fn descriptor(&self) -> crate::descriptor::Descriptor {
        crate::descriptor::Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            annotations: self.annotations.clone(),
            platform: None,
            artifact_type: None,
            json: self.descriptor_json(),
        }
    }
    /// The descriptor of this layer as it appears in a manifest.
    pub fn descriptor_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("mediaType".into(), self.media_type.clone().into());
        m.insert("digest".into(), self.digest.to_string().into());
        m.insert("size".into(), self.size.into());
        if let Some(a) = &self.annotations {
            m.insert("annotations".into(), serde_json::Value::Object(a.clone()));
        }
        serde_json::Value::Object(m)
    }
}

fn decompress_send<'a>(
    raw: Box<dyn Read + Send + 'a>,
    compression: Compression,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match compression {
        Compression::None => raw,
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(1 << 16, raw),
        )),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(raw)?),
    })
}

/// `Arc<Vec<u8>>` as a byte slice, so a `Cursor` can read it without copying.
struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
