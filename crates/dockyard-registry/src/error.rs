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

    #[error("{registry}: {what}: HTTP {status}: {body}")]
    Http {
        registry: String,
        what: String,
        status: u16,
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

    #[error("{0}")]
    Config(String),
}

impl RegistryError {
    /// True for errors caused by the user's input (bad name, missing image,
    /// wrong credentials) rather than by this program or the machine.
    pub fn is_user_error(&self) -> bool {
        match self {
            RegistryError::Image(e) => e.is_user_error(),
            RegistryError::Unauthorized { .. }
            | RegistryError::NotFound { .. }
            | RegistryError::Config(_)
            | RegistryError::DigestMismatch { .. } => true,
            RegistryError::Http { status, .. } => (400..500).contains(status),
            RegistryError::Network { .. } | RegistryError::RetriesExhausted { .. } => true,
        }
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
