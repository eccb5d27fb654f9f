//! The facade's error: whatever the layer below said, unchanged, so a
//! caller can match on `PlatformNotFound`, `AmbiguousName`, `Http`, …

use dockyard_image::Digest;
use dockyard_registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Image(#[from] dockyard_image::Error),

    /// A registry's answer (image-model errors the client met come out
    /// as `Image`, so both transports fail the same way).
    #[error(transparent)]
    Registry(Box<RegistryError>),

    /// `run`: no runtime, a bad user or mount, a runtime that failed to start.
    #[error(transparent)]
    Run(dockyard_run::RunError),

    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),

    #[error("{what}: --format converts one image; an index is copied as it is (its digest names its children) — pick one platform with --platform to convert it")]
    FormatOfIndex { what: String, index: Digest },
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Error {
        match e {
            RegistryError::Image(e) => Error::Image(e),
            other => Error::Registry(Box::new(other)),
        }
    }
}

impl From<dockyard_run::RunError> for Error {
    fn from(e: dockyard_run::RunError) -> Error {
        match e {
            dockyard_run::RunError::Image(e) => Error::Image(e),
            other => Error::Run(other),
        }
    }
}

impl Error {
    /// True when the input was at fault (bad name, missing image, wrong
    /// credentials), false for failures of this machine or of dockyard.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Image(e) => e.is_user_error(),
            Error::Registry(e) => e.is_user_error(),
            Error::Runtime(_) => false,
            Error::Run(e) => !matches!(e, dockyard_run::RunError::Spawn { .. }),
            Error::FormatOfIndex { .. } => true,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
