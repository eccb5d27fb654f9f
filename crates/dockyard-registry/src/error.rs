//! Errors of the registry client. They name the registry, repository or
//! digest involved and never carry credentials or tokens.

use dockyard_image::Digest;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Image(#[from] dockyard_image::Error),

    #[error("{registry}: {reason}")]
    Unauthorized { registry: String, reason: String },

    #[error("{what}: not found on {registry}")]
    NotFound { registry: String, what: String },

    #[error("{what}: HTTP {status}{}: {body} ({url})", format_codes(.codes))]
    Http {
        what: String,
        status: u16,
        /// The registry's error codes (`MANIFEST_UNKNOWN`, `DENIED`, …).
        codes: Vec<String>,
        /// The URL asked, without its query.
        url: String,
        body: String,
    },

    #[error("{registry}: {what}: {reason}")]
    Network {
        registry: String,
        what: String,
        reason: String,
    },

    #[error("{registry}: {what}: gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        registry: String,
        what: String,
        attempts: u32,
        last: String,
    },

    #[error("digest mismatch for {what} from {registry}: expected {expected}, got {actual}")]
    DigestMismatch {
        registry: String,
        what: String,
        expected: Digest,
        actual: Digest,
    },

    #[error("credentials: {reason}")]
    Credentials { reason: String },

    #[error("TLS: {reason}")]
    Tls { reason: String },

    #[error("invalid registry host {host:?}: {reason}")]
    InvalidHost { host: String, reason: String },

    #[error("{registry}: {what}: {reason}")]
    Protocol {
        registry: String,
        what: String,
        reason: String,
    },

    #[error("cannot push to {reference}: the image's digest is {actual}")]
    DigestReference { reference: String, actual: Digest },

    #[error("{url} answered HTTP {status}: this host is not a container registry (no registry API at /v2/)")]
    NotARegistry { url: String, status: u16 },

    #[error("internal error: {reason}")]
    Internal { reason: String },
}

fn format_codes(codes: &[String]) -> String {
    if codes.is_empty() {
        String::new()
    } else {
        format!(" {}", codes.join(", "))
    }
}

impl RegistryError {
    /// True for errors caused by the user's input (bad name, missing image,
    /// wrong credentials) rather than by this program or the machine.
    pub fn is_user_error(&self) -> bool {
        match self {
            RegistryError::Image(e) => e.is_user_error(),
            RegistryError::Unauthorized { .. }
            | RegistryError::NotFound { .. }
            | RegistryError::Credentials { .. }
            | RegistryError::Tls { .. }
            | RegistryError::InvalidHost { .. }
            | RegistryError::Protocol { .. }
            | RegistryError::DigestReference { .. }
            | RegistryError::NotARegistry { .. }
            | RegistryError::DigestMismatch { .. } => true,
            RegistryError::Internal { .. } => false,
            RegistryError::Http { status, .. } => (400..500).contains(status),
            RegistryError::Network { .. } | RegistryError::RetriesExhausted { .. } => true,
        }
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
