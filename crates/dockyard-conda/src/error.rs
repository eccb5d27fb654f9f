//! Errors of the conda builder; each names the spec, channel, package or
//! file involved.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}{}: {key}: {message}", .file.display(), .line.map(|l| format!(": line {l}")).unwrap_or_default())]
    Spec {
        file: PathBuf,
        line: Option<usize>,
        key: String,
        message: String,
    },

    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("channel {channel}: {reason}")]
    Channel { channel: String, reason: String },

    #[error("the environment cannot be solved:\n{explanation}")]
    Unsolvable { explanation: String },

    #[error("installing the environment: {reason}")]
    Install { reason: String },

    #[error("{lock}: {reason}")]
    Lock { lock: PathBuf, reason: String },

    #[error(transparent)]
    Dockyard(#[from] dockyard::Error),

    #[error(transparent)]
    Image(#[from] dockyard_image::Error),
}

impl Error {
    /// True when the user's input is at fault (spec, channel, lock) rather
    /// than this machine.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Dockyard(e) => e.is_user_error(),
            Error::Image(e) => e.is_user_error(),
            Error::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
            ),
            Error::Install { .. } => false,
            _ => true,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
