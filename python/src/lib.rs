//! `dockyard._native`: the Python bindings, a thin layer over the
//! `dockyard` facade. Every long call releases the GIL; blobs never pass
//! through Python (layers are streamed by the library between files, the
//! store and registries); errors become the exception classes of
//! `errors.rs`, carrying the path, reference or digest they name.

mod errors;
mod progress;

use std::path::PathBuf;
use std::sync::Arc;

use dockyard::{
    ConfigEdit, Dockyard, LayerRemoval, Manifest, Mount, Mutation, OpenOptions, Platform,
    RunOptions, WriteOptions,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use errors::{invalid_input, to_py};

fn json_to_py<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let text = std::str::from_utf8(raw).map_err(|e| invalid_input(format!("not UTF-8: {e}")))?;
    py.import("json")?.call_method1("loads", (text,))
}

fn py_to_json(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let text: String = py
        .import("json")?
        .call_method1("dumps", (value,))?
        .extract()?;
    serde_json::from_str(&text).map_err(|e| invalid_input(format!("not JSON: {e}")))
}

fn parse_platform(p: Option<&str>) -> PyResult<Option<Platform>> {
    p.map(|p| p.parse::<Platform>())
        .transpose()
        .map_err(|e| to_py(dockyard::Error::Image(e)))
}

/// A handle on the library: the store, registry settings, progress.
#[pyclass(module = "dockyard._native", frozen, subclass)]
struct Client {
    dy: Arc<Dockyard>,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (store=None, username=None, password=None, plain_http=false, insecure=false, ca_certs=Vec::new(), progress=None))]
    fn new(
        store: Option<PathBuf>,
        username: Option<String>,
        password: Option<String>,
        plain_http: bool,
        insecure: bool,
        ca_certs: Vec<PathBuf>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Client> {
        let mut registry = dockyard::ClientOptions {
            plain_http,
            insecure_skip_tls_verify: insecure,
            ca_certs,
            ..dockyard::ClientOptions::default()
        };
        registry.credentials = match (username, password) {
            (Some(username), Some(password)) => Some(dockyard::Credentials { username, password }),
            (None, None) => None,
            _ => return Err(invalid_input("give both username and password, or neither")),
        };
        let progress: Arc<dyn dockyard::Progress> = match progress {
            Some(cb) => Arc::new(progress::PyProgress::new(cb)),
            None => Arc::new(dockyard::Silent),
        };
        Ok(Client {
            dy: Arc::new(Dockyard::new(dockyard::Options {
                store_root: store,
                registry,
                progress,
            })),
        })
    }

    /// The store (cache) directory.
    #[getter]
    fn store(&self) -> PathBuf {
        self.dy.store_root()
    }

    /// Open any transport string (`docker://REF` lazily: layers are
    /// fetched only when written, mounted when pushed to the same registry).
    #[pyo3(signature = (source, platform=None))]
    fn open(&self, py: Python<'_>, source: String, platform: Option<String>) -> PyResult<Image> {
        let platform = parse_platform(platform.as_deref())?;
        let dy = Arc::clone(&self.dy);
        let image = py
            .detach(|| dy.open_image(&source, platform.as_ref()))
            .map_err(to_py)?;
        Ok(Image {
            dy: Arc::clone(&self.dy),
            image,
        })
    }

    /// Pull into the store (every layer downloaded and verified) and open it.
    #[pyo3(signature = (reference, platform=None))]
    fn pull(&self, py: Python<'_>, reference: String, platform: Option<String>) -> PyResult<Image> {
        let platform = parse_platform(platform.as_deref())?;
        let dy = Arc::clone(&self.dy);
        let image = py
            .detach(|| -> dockyard::Result<dockyard::Image> {
                let opts = OpenOptions {
                    platform: platform.clone(),
                    all_platforms: false,
                };
                let pulled = dy.pull(&reference, &opts)?;
                Ok(pulled.manifest.into_image(&reference, platform.as_ref())?)
            })
            .map_err(to_py)?;
        Ok(Image {
            dy: Arc::clone(&self.dy),
            image,
        })
    }

    /// Every image a docker archive holds, in its order, each with the
    /// first name the archive gives it.
    fn archive_images(
        &self,
        py: Python<'_>,
        path: PathBuf,
    ) -> PyResult<Vec<(Image, Option<String>)>> {
        let dy = Arc::clone(&self.dy);
        let images = py
            .detach(
                || -> dockyard::Result<Vec<(dockyard::Image, Option<String>)>> {
                    let src = format!("docker-archive:{}", path.display());
                    match dy.open_image(&src, None) {
                        Ok(img) => Ok(vec![(img, None)]),
                        Err(dockyard::Error::Image(dockyard::ImageError::AmbiguousImage {
                            present,
                            ..
                        })) => present
                            .iter()
                            .enumerate()
                            .map(|(i, names)| {
                                // `a:1, b:2` or `@3 (untagged)`.
                                let name = names
                                    .split(", ")
                                    .next()
                                    .filter(|n| !n.starts_with('@'))
                                    .map(str::to_string);
                                Ok((dy.open_image(&format!("{src}:@{i}"), None)?, name))
                            })
                            .collect(),
                        Err(e) => Err(e),
                    }
                },
            )
            .map_err(to_py)?;
        Ok(images
            .into_iter()
            .map(|(image, name)| {
                (
                    Image {
                        dy: Arc::clone(&self.dy),
                        image,
                    },
                    name,
                )
            })
            .collect())
    }

    /// Build a conda environment spec into an image; written to `output`
    /// (any destination) or, without one, to the store as NAME:TAG. Without
    /// a spec file, `packages` (match specs) from `channels` make one, as
    /// `dockyard build -c CHANNEL PACKAGE...` does; `base`, `prefix` and
    /// `image` (NAME[:TAG]) go over the spec's.
    #[pyo3(signature = (spec=None, output=None, locked=false, offline=false, sbom=None, platform=None, *, packages=None, channels=None, base=None, prefix=None, image=None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments
    fn build(
        &self,
        py: Python<'_>,
        spec: Option<PathBuf>,
        output: Option<String>,
        locked: bool,
        offline: bool,
        sbom: Option<PathBuf>,
        platform: Option<String>,
        packages: Option<Vec<String>>,
        channels: Option<Vec<String>>,
        base: Option<String>,
        prefix: Option<String>,
        image: Option<String>,
    ) -> PyResult<Image> {
        let dy = Arc::clone(&self.dy);
        let read = match (spec, packages) {
            (Some(path), None) => dockyard_conda::Spec::read(&path),
            (None, Some(packages)) if channels.as_ref().is_some_and(|c| !c.is_empty()) => {
                dockyard_conda::Spec::from_command_line(&channels.unwrap_or_default(), &packages)
            }
            (None, Some(_)) => {
                return Err(PyValueError::new_err(
                    "build(packages=...) needs channels=[...] to find them in",
                ))
            }
            _ => {
                return Err(PyValueError::new_err(
                    "build takes a spec file, or packages=[...] with channels=[...], not both",
                ))
            }
        };
        let image = py
            .detach(|| -> Result<dockyard::Image, dockyard_conda::Error> {
                let mut spec = read?;
                spec.set_overrides(&dockyard_conda::SpecOverrides {
                    base,
                    prefix,
                    image,
                });
                let built = dockyard_conda::build(
                    &dy,
                    &spec,
                    &dockyard_conda::BuildOptions {
                        destination: output,
                        platform,
                        offline,
                        sbom,
                        locked,
                        progress_bars: false,
                        write: Default::default(),
                    },
                )?;
                Ok(built.image)
            })
            .map_err(errors::conda_to_py)?;
        Ok(Image {
            dy: Arc::clone(&self.dy),
            image,
        })
    }
}

/// One image: its manifest and config as read, layers where they are
/// (a file, the store, a registry). Edits return a new `Image`.
#[pyclass(module = "dockyard._native", frozen)]
struct Image {
    dy: Arc<Dockyard>,
    image: dockyard::Image,
}

impl Image {
    fn with(&self, image: dockyard::Image) -> Image {
        Image {
            dy: Arc::clone(&self.dy),
            image,
        }
    }

    fn mutate(&self, py: Python<'_>, mutation: Mutation) -> PyResult<Image> {
        let dy = Arc::clone(&self.dy);
        let image = self.image.clone();
        let edited = py
            .detach(|| -> dockyard::Result<dockyard::Image> {
                let store = dy.store()?;
                mutation.apply(image, &store)
            })
            .map_err(to_py)?;
        Ok(self.with(edited))
    }
}

#[pymethods]
impl Image {
    /// `sha256:…` of the manifest.
    #[getter]
    fn digest(&self) -> String {
        self.image.digest().to_string()
    }

    /// The config document (a new dict each time; edit with `with_config`
    /// or `set_config`).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, self.image.config_raw())
    }

    #[getter]
    fn manifest<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_to_py(py, self.image.manifest_raw())
    }

    /// `os/arch[/variant]`.
    #[getter]
    fn platform(&self) -> String {
        self.image.platform().to_string()
    }

    /// The layers, base first: dicts of digest, diff_id, size, media_type.
    #[getter]
    fn layers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for l in self.image.layers() {
            let d = PyDict::new(py);
            d.set_item("digest", l.digest().to_string())?;
            d.set_item("diff_id", l.diff_id().to_string())?;
            d.set_item("size", l.size())?;
            d.set_item("media_type", l.media_type().to_string())?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// A new layer of host files: a directory's contents go into `dest`,
    /// a file into `dest` (or inside it when it is a directory).
    #[pyo3(signature = (path, dest="/".to_string()))]
    fn append_layer_path(&self, py: Python<'_>, path: PathBuf, dest: String) -> PyResult<Image> {
        self.mutate(
            py,
            Mutation {
                add: vec![(path, dest)],
                ..Mutation::default()
            },
        )
    }

    /// A new layer of files given by their bytes: `{"/etc/motd": b"hi"}`.
    fn append_layer_contents(&self, py: Python<'_>, files: &Bound<'_, PyDict>) -> PyResult<Image> {
        let mut contents = Vec::new();
        for (k, v) in files.iter() {
            let path: String = k.extract()?;
            let data: Vec<u8> = if let Ok(b) = v.cast::<PyBytes>() {
                b.as_bytes().to_vec()
            } else if let Ok(s) = v.extract::<String>() {
                s.into_bytes()
            } else {
                return Err(invalid_input(format!(
                    "{path}: contents must be bytes or str"
                )));
            };
            contents.push((path, data));
        }
        self.mutate(
            py,
            Mutation {
                contents,
                ..Mutation::default()
            },
        )
    }

    /// Remove the layer at `index` (base = 0; -1, the default, is the top).
    #[pyo3(signature = (index=-1))]
    fn remove_layer(&self, py: Python<'_>, index: i64) -> PyResult<Image> {
        let n = self.image.layers().len() as i64;
        let at = if index < 0 { n + index } else { index };
        if at < 0 || at >= n {
            return Err(to_py(dockyard::Error::Image(
                dockyard::ImageError::LayerIndex {
                    index: index.unsigned_abs() as usize,
                    count: n as usize,
                },
            )));
        }
        self.mutate(
            py,
            Mutation {
                remove_layers: vec![LayerRemoval::At(at as usize)],
                ..Mutation::default()
            },
        )
    }

    /// Change config fields: `env` (dict, replacing variables of the same
    /// name), `entrypoint`/`cmd` (lists), `workdir`, `user`, `labels`
    /// (dict), `exposed_ports` (list of `80/tcp`…).
    #[pyo3(signature = (env=None, entrypoint=None, cmd=None, workdir=None, user=None, labels=None, exposed_ports=None))]
    #[allow(clippy::too_many_arguments)]
    fn with_config(
        &self,
        py: Python<'_>,
        env: Option<std::collections::BTreeMap<String, String>>,
        entrypoint: Option<Vec<String>>,
        cmd: Option<Vec<String>>,
        workdir: Option<String>,
        user: Option<String>,
        labels: Option<std::collections::BTreeMap<String, String>>,
        exposed_ports: Option<Vec<String>>,
    ) -> PyResult<Image> {
        let mut edits = Vec::new();
        for (k, v) in env.unwrap_or_default() {
            edits.push(ConfigEdit::Env(k, v));
        }
        if let Some(e) = entrypoint {
            edits.push(ConfigEdit::Entrypoint(e));
        }
        if let Some(c) = cmd {
            edits.push(ConfigEdit::Cmd(c));
        }
        if let Some(w) = workdir {
            edits.push(ConfigEdit::WorkingDir(w));
        }
        if let Some(u) = user {
            edits.push(ConfigEdit::User(u));
        }
        for (k, v) in labels.unwrap_or_default() {
            edits.push(ConfigEdit::Label(k, v));
        }
        for p in exposed_ports.unwrap_or_default() {
            edits.push(ConfigEdit::ExposedPort(p));
        }
        self.mutate(
            py,
            Mutation {
                config: edits,
                ..Mutation::default()
            },
        )
    }

    /// Replace the whole config document (its diff_ids must still name
    /// the layers); fields it does not change are kept as given.
    fn set_config(&self, py: Python<'_>, config: &Bound<'_, PyAny>) -> PyResult<Image> {
        let value = py_to_json(py, config)?;
        let edited = self
            .image
            .with_config(value)
            .map_err(|e| to_py(dockyard::Error::Image(e)))?;
        Ok(self.with(edited))
    }

    /// Write to any destination (`docker-archive:PATH[:REF]`, `oci:DIR[:REF]`,
    /// `oci-archive:…`, `docker://REF`, `store:REF`); returns the digest
    /// of what was written.
    #[pyo3(signature = (dest, format=None, compression="gzip".to_string()))]
    fn write(
        &self,
        py: Python<'_>,
        dest: String,
        format: Option<String>,
        compression: String,
    ) -> PyResult<String> {
        let format = format
            .map(|f| f.parse::<dockyard::Format>().map_err(invalid_input))
            .transpose()?;
        let compression = match compression.as_str() {
            "gzip" => dockyard::Compression::Gzip,
            "zstd" => dockyard::Compression::Zstd,
            "none" => dockyard::Compression::None,
            other => {
                return Err(invalid_input(format!(
                    "compression {other:?}: use gzip, zstd or none"
                )))
            }
        };
        let dy = Arc::clone(&self.dy);
        let manifest = Manifest::Image(self.image.clone());
        let written = py
            .detach(|| {
                dy.write(
                    &manifest,
                    &dest,
                    &WriteOptions {
                        compression,
                        format,
                        ..WriteOptions::default()
                    },
                )
            })
            .map_err(to_py)?;
        Ok(written.digest.to_string())
    }

    /// Run a command (a list; empty: the image's Entrypoint/Cmd) without a
    /// daemon. Returns (exit code, stdout, stderr) with `capture`, else
    /// (exit code, b"", b"") with output passed through.
    #[pyo3(signature = (command=Vec::new(), entrypoint=None, env=None, workdir=None, user=None, mounts=Vec::new(), network="none".to_string(), runtime="auto".to_string(), capture=true))]
    #[allow(clippy::too_many_arguments)]
    fn run<'py>(
        &self,
        py: Python<'py>,
        command: Vec<String>,
        entrypoint: Option<Vec<String>>,
        env: Option<std::collections::BTreeMap<String, String>>,
        workdir: Option<String>,
        user: Option<String>,
        mounts: Vec<String>,
        network: String,
        runtime: String,
        capture: bool,
    ) -> PyResult<(i32, Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let opts = RunOptions {
            command,
            entrypoint,
            env: env.unwrap_or_default().into_iter().collect(),
            workdir,
            user,
            mounts: mounts
                .iter()
                .map(|m| m.parse::<Mount>().map_err(invalid_input))
                .collect::<PyResult<_>>()?,
            network: network.parse().map_err(invalid_input)?,
            runtime: runtime.parse().map_err(invalid_input)?,
            capture,
        };
        let dy = Arc::clone(&self.dy);
        let image = self.image.clone();
        let what = format!("image {}", image.digest());
        let out = py
            .detach(|| dy.run_image(image, &what, &opts))
            .map_err(to_py)?;
        Ok((
            out.code,
            PyBytes::new(py, &out.stdout),
            PyBytes::new(py, &out.stderr),
        ))
    }

    fn __repr__(&self) -> String {
        format!(
            "<dockyard Image {} {} layers {}>",
            self.image.digest().short(),
            self.image.layers().len(),
            self.image.platform()
        )
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    m.add_class::<Image>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    Ok(())
}
