//! Where images are read from and written to, named as skopeo names them:
//! `docker-archive:PATH[:REF]`, `oci:DIR[:REF]`, `oci-archive:PATH[:REF]`,
//! `store:REF`, `docker://REF`, and `scratch`.

pub mod archive;
pub mod layout;
pub mod tar_index;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::image::Image;
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
        return Err(Error::Usage(format!(
            "{transport}: needs a path, e.g. {transport}:image.tar"
        )));
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
                return Err(Error::Usage(format!(
                    "{s}: transport {t:?} is not supported; use docker-archive:, oci:, oci-archive:, store:, docker:// or scratch"
                )));
            }
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(Error::Usage(format!(
                "{s}: unknown transport {scheme}://; use docker://, docker-archive:, oci:, oci-archive:, store: or scratch"
            )));
        }
        if let Some((t, rest)) = s.split_once(':') {
            let looks_like_transport = !t.is_empty()
                && t.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                && (rest.contains('/') || rest.ends_with(".tar") || rest.ends_with(".tar.gz"));
            if looks_like_transport && !t.contains('.') {
                return Err(Error::Usage(format!(
                    "{s}: unknown transport {t}:; use docker://, docker-archive:, oci:, oci-archive:, store: or scratch"
                )));
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
            return Err(Error::Usage(format!(
                "{s} is a path, not an image reference: prefix it with {hint}"
            )));
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
    Error::Usage(format!(
        "docker://{r}: registry transfers are not built into this dockyard yet"
    ))
}

/// Read an image from a location. Nothing is read from layers yet: their
/// bytes are verified when streamed by a writer.
pub fn read_image(loc: &Location, opts: &ReadOptions) -> Result<Image> {
    match loc {
        Location::Scratch => Ok(Image::scratch(
            opts.platform.as_ref().unwrap_or(&Platform::host()),
        )),
        Location::DockerArchive { path, reference } => {
            archive::read_docker_archive(path, reference.as_deref())
        }
        Location::OciArchive { path, reference } => {
            archive::read_oci_archive(path, reference.as_deref())
        }
        Location::OciDir { path, reference } => layout::read_layout(
            &layout::LayoutDir(path.clone()),
            reference.as_deref(),
            opts.platform.as_ref(),
        ),
        Location::Store(r) => {
            store(&opts.store_root)?.get_image_for(&r.to_string(), opts.platform.as_ref())
        }
        Location::Registry(r) => Err(registry_unsupported(r)),
    }
}

/// Write an image to a location; returns the image as written (a docker
/// archive holds uncompressed layers, so its manifest may differ).
pub fn write_image(
    image: &Image,
    loc: &Location,
    store_root: Option<PathBuf>,
    progress: &dyn Progress,
) -> Result<Image> {
    match loc {
        Location::Scratch => Err(Error::Usage("scratch cannot be written to".into())),
        Location::DockerArchive { path, reference } => {
            let r = reference
                .as_deref()
                .map(str::parse::<Reference>)
                .transpose()?;
            let opts = archive::ImageTarOptions {
                docker: true,
                reference: r.as_ref(),
                ref_name: None,
            };
            archive::write_image_tar(path, image, &opts, progress)
        }
        Location::OciArchive { path, reference } => {
            let opts = archive::ImageTarOptions {
                docker: false,
                reference: None,
                ref_name: reference.clone(),
            };
            archive::write_image_tar(path, image, &opts, progress)
        }
        Location::OciDir { path, reference } => {
            layout::write_layout_dir(path, image, reference.as_deref(), progress)?;
            Ok(image.clone())
        }
        Location::Store(r) => {
            store(&store_root)?.put_image(image, Some(&r.to_string()), progress)?;
            Ok(image.clone())
        }
        Location::Registry(r) => Err(registry_unsupported(r)),
    }
}
