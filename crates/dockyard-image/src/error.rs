//! The one error type of the image crate. Every variant names the file,
//! reference or digest it is about, so the CLI can print it as is.

use std::path::PathBuf;

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest { input: String, reason: String },

    #[error("invalid image reference {input:?}: {reason}")]
    InvalidReference { input: String, reason: String },

    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },

    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: not a valid image archive or layout: {reason}")]
    InvalidArchive { path: PathBuf, reason: String },

    #[error("{what}: malformed JSON: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// A manifest, index, config or descriptor whose JSON parses but does
    /// not have the shape its media type requires.
    #[error("{what}: {reason}")]
    MalformedDocument { what: String, reason: String },

    #[error("{image}: manifest lists {layers} layers but the config lists {diff_ids} diff_ids")]
    LayerCountMismatch {
        image: String,
        layers: usize,
        diff_ids: usize,
    },

    #[error("{what}: rootfs.diff_ids do not match the image's layers")]
    DiffIdsDisagree { what: String },

    #[error("{index}: indexes nested too deeply")]
    NestedTooDeep { index: String },

    #[error("{index}: cannot write it whole to {destination}: the source does not hold {} of its entries ({}); pick one platform with --platform", .missing.len(), .missing.join(", "))]
    IncompleteIndex {
        index: String,
        destination: String,
        missing: Vec<String>,
    },

    #[error("{index}: the image for {platform} ({digest}) is listed but not held here")]
    ChildNotHeld {
        index: String,
        platform: String,
        digest: Digest,
    },

    #[error("{store}: cannot name {name}: blob {digest} is not stored")]
    BlobNotStored {
        store: PathBuf,
        name: String,
        digest: Digest,
    },

    #[error("{what}: {size} bytes is more than the {limit} allowed here")]
    TooLarge { what: String, size: u64, limit: u64 },

    #[error("{layer}: {reason}")]
    CorruptLayer { layer: String, reason: String },

    #[error("{location}: no image named {wanted}; present: {}", format_present(.present))]
    ImageNotFound {
        location: String,
        wanted: String,
        present: Vec<String>,
    },

    #[error("{location} holds {} images; name one of: {}", .present.len(), format_present(.present))]
    AmbiguousImage {
        location: String,
        present: Vec<String>,
    },

    #[error("unsupported media type {media_type} in {what}")]
    UnsupportedMediaType { what: String, media_type: String },

    #[error("layer index {index} is out of range: the image has {count} layers")]
    LayerIndex { index: usize, count: usize },

    #[error("{path}: unsafe path in layer: {reason}")]
    UnsafePath { path: String, reason: String },

    #[error("invalid platform {input:?}: expected os/arch[/variant], e.g. linux/arm64")]
    InvalidPlatform { input: String },

    #[error("{what}: no image for platform {wanted}; available: {}", format_present(.available))]
    PlatformNotFound {
        what: String,
        wanted: String,
        available: Vec<String>,
    },

    #[error("{location}: {name} names {} entries ({}); pick one as NAME@DIGEST or by digest", .digests.len(), .digests.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))]
    AmbiguousName {
        location: String,
        name: String,
        digests: Vec<Digest>,
    },

    #[error("{input}: {reason}")]
    InvalidLocation { input: String, reason: String },

    #[error("{destination} cannot hold a multi-platform index ({index}); write it to oci:, oci-archive:, store: or docker://, or pick one platform with --platform")]
    CannotHoldIndex { destination: String, index: Digest },

    #[error("{what} is {kind} ({media_type}), not a runnable image")]
    NotAnImage {
        what: String,
        kind: &'static str,
        media_type: String,
    },

    #[error("{path}: {reason}")]
    InvalidImagePath { path: String, reason: String },

    #[error("{path}: exists and is {reason}")]
    OutputExists { path: PathBuf, reason: &'static str },

    #[error("SOURCE_DATE_EPOCH={value:?} is not a number of seconds since 1970")]
    InvalidSourceDateEpoch { value: String },

    #[error("invalid port {input:?}: {reason} (e.g. 80, 80/tcp, 53/udp, 8000-8010/tcp)")]
    InvalidPort { input: String, reason: String },

    #[error("invalid command {input:?}: {reason}")]
    InvalidCommand { input: String, reason: String },

    #[error("invalid side-table key {key:?}")]
    InvalidKey { key: String },
}

fn format_present(present: &[String]) -> String {
    if present.is_empty() {
        "(none)".to_string()
    } else {
        present.join(", ")
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a path to an `io::Error`.
pub trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.into(),
            source,
        })
    }
}

impl Error {
    /// True when the error is the user's input (bad file, bad name, not found),
    /// false for failures of this machine (disk, internal).
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Error::Io { source, .. } if !matches!(source.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            | std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            | std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::InvalidInput))
    }
}
