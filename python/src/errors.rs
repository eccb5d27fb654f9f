//! One exception hierarchy for every error of the library:
//!
//! ```text
//! DockyardError
//! ├── InvalidInputError   bad reference, transport string, platform, option, spec
//! ├── NotFoundError       no such image, tag, file, platform
//! ├── IntegrityError      digest or size mismatch, corrupt layer or archive
//! ├── RegistryError       what a registry answered (HTTP, network, TLS)
//! │   └── AuthenticationError
//! ├── FileError           reading or writing a local file
//! ├── BuildError          the conda builder (solve, install, lock)
//! └── RunError            running a command (no runtime, bad user or mount)
//! ```
//!
//! Each instance carries `path`, `reference` or `digest` (None when the
//! error names none) besides its message.

use pyo3::create_exception;
use pyo3::prelude::*;

create_exception!(_native, DockyardError, pyo3::exceptions::PyException);
create_exception!(_native, InvalidInputError, DockyardError);
create_exception!(_native, NotFoundError, DockyardError);
create_exception!(_native, IntegrityError, DockyardError);
create_exception!(_native, RegistryError, DockyardError);
create_exception!(_native, AuthenticationError, RegistryError);
create_exception!(_native, FileError, DockyardError);
create_exception!(_native, BuildError, DockyardError);
create_exception!(_native, RunError, DockyardError);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("DockyardError", py.get_type::<DockyardError>())?;
    m.add("InvalidInputError", py.get_type::<InvalidInputError>())?;
    m.add("NotFoundError", py.get_type::<NotFoundError>())?;
    m.add("IntegrityError", py.get_type::<IntegrityError>())?;
    m.add("RegistryError", py.get_type::<RegistryError>())?;
    m.add("AuthenticationError", py.get_type::<AuthenticationError>())?;
    m.add("FileError", py.get_type::<FileError>())?;
    m.add("BuildError", py.get_type::<BuildError>())?;
    m.add("RunError", py.get_type::<RunError>())?;
    Ok(())
}

pub fn invalid_input(message: impl ToString) -> PyErr {
    InvalidInputError::new_err(message.to_string())
}

/// What an error names, set on the exception as attributes.
#[derive(Default)]
struct Names {
    path: Option<String>,
    reference: Option<String>,
    digest: Option<String>,
}

fn with_names(err: PyErr, names: Names) -> PyErr {
    Python::attach(|py| {
        let value = err.value(py);
        let _ = value.setattr("path", names.path);
        let _ = value.setattr("reference", names.reference);
        let _ = value.setattr("digest", names.digest);
    });
    err
}

fn image_error(e: &dockyard::ImageError, message: String) -> PyErr {
    use dockyard::ImageError as E;
    let mut names = Names::default();
    let err = match e {
        E::InvalidDigest { input, .. } => {
            names.digest = Some(input.clone());
            InvalidInputError::new_err(message)
        }
        E::InvalidReference { input, .. } | E::InvalidLocation { input, .. } => {
            names.reference = Some(input.clone());
            InvalidInputError::new_err(message)
        }
        E::InvalidPlatform { .. } | E::LayerIndex { .. } | E::UnsafePath { .. } => {
            InvalidInputError::new_err(message)
        }
        E::DigestMismatch { expected, .. } => {
            names.digest = Some(expected.to_string());
            IntegrityError::new_err(message)
        }
        E::SizeMismatch { .. } | E::CorruptLayer { .. } | E::DiffIdsDisagree { .. } => {
            IntegrityError::new_err(message)
        }
        E::InvalidArchive { path, .. } => {
            names.path = Some(path.display().to_string());
            IntegrityError::new_err(message)
        }
        E::Io { path, source } => {
            names.path = Some(path.display().to_string());
            if source.kind() == std::io::ErrorKind::NotFound {
                NotFoundError::new_err(message)
            } else {
                FileError::new_err(message)
            }
        }
        E::ImageNotFound { location, .. } => {
            names.reference = Some(location.clone());
            NotFoundError::new_err(message)
        }
        E::PlatformNotFound { .. } | E::BlobNotStored { .. } => NotFoundError::new_err(message),
        other if other.is_user_error() => InvalidInputError::new_err(message),
        _ => DockyardError::new_err(message),
    };
    with_names(err, names)
}

/// The exception for a library error.
pub fn to_py(e: dockyard::Error) -> PyErr {
    let message = e.to_string();
    match &e {
        dockyard::Error::Image(inner) => image_error(inner, message),
        dockyard::Error::Registry(r) => {
            let mut names = Names::default();
            let err = match r.as_ref() {
                dockyard::RegistryError::Unauthorized { registry, .. } => {
                    names.reference = Some(registry.clone());
                    AuthenticationError::new_err(message)
                }
                dockyard::RegistryError::Credentials { .. } => {
                    AuthenticationError::new_err(message)
                }
                dockyard::RegistryError::NotFound { registry, what } => {
                    names.reference = Some(format!("{registry}/{what}"));
                    NotFoundError::new_err(message)
                }
                dockyard::RegistryError::DigestMismatch { .. } => IntegrityError::new_err(message),
                _ => RegistryError::new_err(message),
            };
            with_names(err, names)
        }
        dockyard::Error::Run(run) => {
            let mut names = Names::default();
            if let dockyard::RunError::Mount { host, .. } = run {
                names.path = Some(host.display().to_string());
            }
            with_names(RunError::new_err(message), names)
        }
        dockyard::Error::FormatOfIndex { what, .. } => with_names(
            InvalidInputError::new_err(message),
            Names {
                reference: Some(what.clone()),
                ..Names::default()
            },
        ),
        _ => with_names(DockyardError::new_err(message), Names::default()),
    }
}

/// The exception for a conda builder error.
pub fn conda_to_py(e: dockyard_conda::Error) -> PyErr {
    match e {
        dockyard_conda::Error::Dockyard(e) => to_py(e),
        dockyard_conda::Error::Image(e) => to_py(dockyard::Error::Image(e)),
        other => {
            let path = match &other {
                dockyard_conda::Error::Spec { file, .. } => Some(file.display().to_string()),
                dockyard_conda::Error::Io { path, .. } => Some(path.display().to_string()),
                dockyard_conda::Error::Lock { lock, .. } => Some(lock.display().to_string()),
                _ => None,
            };
            with_names(
                BuildError::new_err(other.to_string()),
                Names {
                    path,
                    ..Names::default()
                },
            )
        }
    }
}
