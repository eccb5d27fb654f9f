//! Where images are read from and written to, named as skopeo names them:
//! `docker-archive:PATH[:REF]`, `oci:DIR[:REF]`, `oci-archive:PATH[:REF]`,
//! `store:REF`, `docker://REF`, and `scratch`.

pub mod archive;
mod inflate_ahead;
pub mod layout;
pub mod tar_index;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::image::Image;
use crate::manifest::Manifest;
use crate::platform::Platform;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::store::Store;

#[derive(Clone, Debug, PartialEq)]
pub enum Location {
    DockerArchive {
        path: PathBuf,
        reference: Option<String>,
    },
    OciDir {
        path: PathBuf,
        reference: Option<String>,
    },
    OciArchive {
        path: PathBuf,
        reference: Option<String>,
    },
    Store(Reference),
    Registry(Reference),
    Scratch,
}

fn path_and_ref(s: &str, transport: &str) -> Result<(PathBuf, Option<String>)> {
    let (path, reference) = match s.split_once(':') {
        Some((p, r)) => (p, Some(r.to_string()).filter(|r| !r.is_empty())),
        None => (s, None),
    };
    if path.is_empty() {
        return Err(Error::InvalidLocation {
            input: format!("{transport}:"),
            reason: format!("needs a path, e.g. {transport}:image.tar"),
        });
    }
    Ok((PathBuf::from(path), reference))
}

impl FromStr for Location {
    type Err = Error;
    fn from_str(s: &str) -> Result<Location> {
        if s == "scratch" {
            return Ok(Location::Scratch);
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            let (path, reference) = path_and_ref(rest, "docker-archive")?;
            return Ok(Location::DockerArchive { path, reference });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, reference) = path_and_ref(rest, "oci-archive")?;
            return Ok(Location::OciArchive { path, reference });
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            let (path, reference) = path_and_ref(rest, "oci")?;
            return Ok(Location::OciDir { path, reference });
        }
        if let Some(rest) = s.strip_prefix("store:") {
            return Ok(Location::Store(rest.parse()?));
        }
        if let Some(rest) = s.strip_prefix("docker://") {
            return Ok(Location::Registry(rest.parse()?));
        }
        if let Some((t, _)) = s.split_once(':') {
            if !t.contains('.')
                && !t.contains('/')
                && [
                    "docker",
                    "dir",
                    "containers-storage",
                    "docker-daemon",
                    "oci-layout",
                ]
                .contains(&t)
            {
                return Err(Error::InvalidLocation {
                    input: s.to_string(),
                    reason: format!("transport {t:?} is not supported; use docker-archive:, oci:, oci-archive:, store:, docker:// or scratch"),
                });
            }
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(Error::InvalidLocation {
                input: s.to_string(),
                reason: format!("unknown transport {scheme}://; use docker://, docker-archive:, oci:, oci-archive:, store: or scratch"),
            });
        }
        if let Some((t, rest)) = s.split_once(':') {
            // `localhost:5001/x` is a registry host and port, not a transport.
            let port_follows = rest
                .split('/')
                .next()
                .map(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .unwrap_or(false);
            let looks_like_transport = !t.is_empty()
                && !port_follows
                && t.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                && (rest.contains('/') || rest.ends_with(".tar") || rest.ends_with(".tar.gz"));
            if looks_like_transport && !t.contains('.') {
                return Err(Error::InvalidLocation {
                    input: s.to_string(),
                    reason: format!("unknown transport {t}:; use docker://, docker-archive:, oci:, oci-archive:, store: or scratch"),
                });
            }
        }
        // A bare reference names an image in the local store.
        let path = std::path::Path::new(s);
        if (s.contains('/') || s.ends_with(".tar")) && path.exists() {
            let hint = if path.is_dir() {
                "oci:"
            } else {
                "docker-archive: or oci-archive:"
            };
            return Err(Error::InvalidLocation {
                input: s.to_string(),
                reason: format!("a path, not an image reference: prefix it with {hint}"),
            });
        }
        Ok(Location::Store(s.parse()?))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_ref = |f: &mut fmt::Formatter<'_>, t: &str, p: &PathBuf, r: &Option<String>| {
            write!(f, "{t}:{}", p.display())?;
            if let Some(r) = r {
                write!(f, ":{r}")?;
            }
            Ok(())
        };
        match self {
            Location::DockerArchive { path, reference } => {
                with_ref(f, "docker-archive", path, reference)
            }
            Location::OciDir { path, reference } => with_ref(f, "oci", path, reference),
            Location::OciArchive { path, reference } => with_ref(f, "oci-archive", path, reference),
            Location::Store(r) => write!(f, "store:{r}"),
            Location::Registry(r) => write!(f, "docker://{r}"),
            Location::Scratch => write!(f, "scratch"),
        }
    }
}

/// Options for reading.
#[derive(Default, Clone)]
pub struct ReadOptions {
    /// Which image of a multi-platform index (default: this host).
    pub platform: Option<Platform>,
    /// Store root (default: `Store::default_root()`).
    pub store_root: Option<PathBuf>,
}

fn store(root: &Option<PathBuf>) -> Result<Store> {
    match root {
        Some(r) => Store::open(r),
        None => Store::open_default(),
    }
}

fn registry_unsupported(r: &Reference) -> Error {
    Error::InvalidLocation {
        input: format!("docker://{r}"),
        reason: "registries are reached through the `dockyard` crate's facade, not dockyard-image"
            .into(),
    }
}

/// Read what a location names: an image, a whole index, or an artifact.
/// Nothing is read from layers yet: their bytes are verified when a writer
/// streams them.
pub fn read(loc: &Location, opts: &ReadOptions) -> Result<Manifest> {
    match loc {
        Location::Scratch => Ok(Manifest::Image(Image::scratch(
            opts.platform.as_ref().unwrap_or(&Platform::host()),
        ))),
        Location::DockerArchive { path, reference } => {
            archive::read_docker_archive(path, reference.as_deref())
        }
        Location::OciArchive { path, reference } => {
            archive::read_oci_archive(path, reference.as_deref())
        }
        Location::OciDir { path, reference } => {
            layout::read_layout(&layout::LayoutDir(path.clone()), reference.as_deref())
        }
        Location::Store(r) => store(&opts.store_root)?.get(&r.to_string()),
        Location::Registry(r) => Err(registry_unsupported(r)),
    }
}

/// Read one image from a location: from an index, the one for
/// `opts.platform` (default: this host); a single image must match the
/// platform asked for.
pub fn read_image(loc: &Location, opts: &ReadOptions) -> Result<Image> {
    if let Location::Scratch = loc {
        return Ok(Image::scratch(
            opts.platform.as_ref().unwrap_or(&Platform::host()),
        ));
    }
    read(loc, opts)?.into_image(&loc.to_string(), opts.platform.as_ref())
}

/// Write an image, a whole index or an artifact to a location. A docker
/// archive holds one image (Docker loads images, not indexes); it is an
/// error to give it anything else. Returns the manifest as written (a
/// docker archive holds uncompressed layers, so its manifest may differ).
pub fn write(
    manifest: &Manifest,
    loc: &Location,
    store_root: Option<PathBuf>,
    progress: &dyn Progress,
) -> Result<Manifest> {
    match (loc, manifest) {
        (Location::DockerArchive { path, reference }, Manifest::Image(image)) => {
            let r = reference
                .as_deref()
                .map(str::parse::<Reference>)
                .transpose()?;
            let opts = archive::ImageTarOptions {
                docker: true,
                reference: r.as_ref(),
                ref_name: None,
            };
            archive::write_image_tar(path, image, &opts, progress).map(Manifest::Image)
        }
        (Location::DockerArchive { .. }, Manifest::Index(ix)) => Err(Error::CannotHoldIndex {
            destination: loc.to_string(),
            index: ix.digest(),
        }),
        (Location::DockerArchive { .. }, other) => Err(Error::NotAnImage {
            what: format!("what is written to {loc}"),
            kind: other.kind_name(),
            media_type: other.media_type().to_string(),
        }),
        (Location::OciArchive { path, reference }, m) => {
            archive::write_oci_archive(path, m, reference.as_deref(), progress)?;
            Ok(m.clone())
        }
        (Location::OciDir { path, reference }, m) => {
            layout::write_layout_dir(path, m, reference.as_deref(), progress)?;
            Ok(m.clone())
        }
        (Location::Store(r), m) => {
            store(&store_root)?.put(m, Some(&r.to_string()), progress)?;
            Ok(m.clone())
        }
        (Location::Scratch, _) => Err(Error::InvalidLocation {
            input: "scratch".into(),
            reason: "scratch can be read (an empty image), not written to".into(),
        }),
        (Location::Registry(r), _) => Err(registry_unsupported(r)),
    }
}

/// Write one image; returns the image as written.
pub fn write_image(
    image: &Image,
    loc: &Location,
    store_root: Option<PathBuf>,
    progress: &dyn Progress,
) -> Result<Image> {
    match write(&Manifest::Image(image.clone()), loc, store_root, progress)? {
        Manifest::Image(i) => Ok(i),
        _ => unreachable!("writing an image gives an image"),
    }
}
