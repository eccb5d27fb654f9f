//! dockyard: one API over every image transport — `docker://` registries,
//! docker archives, OCI layouts and archives, the local store, `scratch`.
//!
//! Like go-containerregistry's `crane`, this is the small layer the CLI, the
//! conda builder and the Python bindings stand on: a verb exists here once.
//! A [`Dockyard`] owns the store location, the registry settings and the
//! async runtime, and offers a blocking API; the async registry client
//! (`dockyard_registry`) stays available underneath.
//!
//! ```no_run
//! use dockyard::{ConfigEdit, Dockyard, Mutation, Options, WriteOptions};
//!
//! let dy = Dockyard::new(Options::default());
//! let edited = dy.mutate("docker://localhost:5000/base:1", &Mutation {
//!     add: vec![("site/".into(), "/srv/www".into())],
//!     config: vec![ConfigEdit::Env("MODE".into(), "prod".into())],
//!     ..Mutation::default()
//! })?;
//! let written = dy.write(&edited.into(), "docker://localhost:5000/app:1", &WriteOptions::default())?;
//! println!("{}", written.digest);
//! # Ok::<(), dockyard::Error>(())
//! ```

mod error;
mod inspect;
mod mutation;
mod run;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub use dockyard_image::atomic::remove_temp_files;
pub use dockyard_image::media::Compression;
pub use dockyard_image::mutate::{command, exposed_ports};
pub use dockyard_image::progress::{Phase, Progress, Silent};
pub use dockyard_image::Error as ImageError;
pub use dockyard_image::{
    ConfigEdit, Descriptor, Digest, Image, Index, IndexManifest, Layer, Location, Manifest,
    Platform, Reference, Store,
};
pub use dockyard_registry::{
    read_cert_dir, ClientCert, ClientOptions, Credentials, HostOptions, Registry, RegistryError,
};
pub use dockyard_run::{
    foreground_child, interrupt_foreground, ExportOptions, Mount, Network, RunError, RunOptions,
    RunOutput, Runtime,
};
pub use error::{Error, Result};
pub use inspect::Inspection;
pub use mutation::{LayerRemoval, Mutation};

/// What a `Dockyard` is set up with.
#[derive(Clone)]
pub struct Options {
    /// The store (local cache) directory; default `Store::default_root()`.
    pub store_root: Option<PathBuf>,
    /// How registries are reached (TLS, credentials, parallelism, retries).
    pub registry: ClientOptions,
    /// Where transfer progress is reported.
    pub progress: Arc<dyn Progress>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            store_root: None,
            registry: ClientOptions::default(),
            progress: Arc::new(Silent),
        }
    }
}

/// Which part of a source to open.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// From an index, the image for this platform (default: this host); a
    /// single image must be for it.
    pub platform: Option<Platform>,
    /// Keep a multi-platform index whole (every child).
    pub all_platforms: bool,
}

/// The manifest family to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Oci,
    /// Docker schema 2.
    Docker,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Format, String> {
        match s {
            "oci" => Ok(Format::Oci),
            "v2s2" | "docker" => Ok(Format::Docker),
            other => Err(format!("{other:?}: use oci or v2s2")),
        }
    }
}

/// How to write.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    /// Compression of layers held uncompressed, when pushed.
    pub compression: Compression,
    /// Convert an image's manifest to this family (default: keep).
    pub format: Option<Format>,
    /// For a registry destination: blobs its repository was just seen to
    /// hold (`blobs_present`, asked while the image was built), not asked
    /// again.
    pub known_present: HashSet<Digest>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            compression: Compression::Gzip,
            format: None,
            known_present: HashSet::new(),
        }
    }
}

/// What a registry transfer did.
#[derive(Clone, Debug, Default)]
pub struct Transfer {
    /// Child manifests pushed (for an index).
    pub manifests: usize,
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    pub blobs_mounted: usize,
    pub blobs_existing: usize,
}

/// What `write` and `copy` wrote.
#[derive(Clone, Debug)]
pub struct Written {
    /// The digest of what the destination now names.
    pub digest: Digest,
    /// What was written (a docker archive holds uncompressed layers and a
    /// registry compressed ones, so an image's manifest may have changed).
    pub manifest: Manifest,
    /// Counts, for registry destinations.
    pub transfer: Option<Transfer>,
}

/// What `pull` did.
#[derive(Clone, Debug)]
pub struct Pulled {
    /// What the store now holds under `name`.
    pub manifest: Manifest,
    /// Digest of what the reference names (an index or a manifest).
    pub digest: Digest,
    pub name: String,
    pub blobs_fetched: usize,
    pub bytes_fetched: u64,
}

/// The facade: every verb over every transport.
pub struct Dockyard {
    options: Options,
    runtime: OnceLock<tokio::runtime::Runtime>,
}

impl Dockyard {
    pub fn new(options: Options) -> Dockyard {
        Dockyard {
            options,
            runtime: OnceLock::new(),
        }
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The store directory.
    pub fn store_root(&self) -> PathBuf {
        self.options
            .store_root
            .clone()
            .unwrap_or_else(Store::default_root)
    }

    /// The local store (created on first use).
    pub fn store(&self) -> Result<Store> {
        Ok(Store::open(&self.store_root())?)
    }

    fn progress(&self) -> &dyn Progress {
        self.options.progress.as_ref()
    }

    /// This facade's (multi-threaded) runtime, started on first use.
    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        if self.runtime.get().is_none() {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(Error::Runtime)?;
            let _ = self.runtime.set(rt);
        }
        match self.runtime.get() {
            Some(rt) => Ok(rt),
            None => unreachable!("set above"),
        }
    }

    /// Run a registry future to completion on this facade's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> Result<F::Output> {
        Ok(self.runtime()?.block_on(f))
    }

    /// A client for `registry` with this facade's settings.
    pub fn registry(&self, registry: &str) -> Result<Registry> {
        let opts = self.options.registry.clone();
        Ok(self.block_on(Registry::connect(registry, opts))??)
    }

    /// Parse a transport string (`docker://REF`, `docker-archive:PATH[:REF]`,
    /// `oci:DIR[:REF]`, `oci-archive:PATH[:REF]`, `store:REF`, a bare
    /// reference for the store, or `scratch`).
    pub fn location(&self, s: &str) -> Result<Location> {
        Ok(s.parse::<Location>()?)
    }

    /// Open what `source` names. With `all_platforms`, an index comes back
    /// whole; otherwise the image for the platform is picked from it. An
    /// artifact comes back as it is. A `docker://` source is opened
    /// lazily: manifests and configs are fetched, layers only when written
    /// (and then mounted or streamed when the destination is a registry).
    pub fn open(&self, source: &str, opts: &OpenOptions) -> Result<Manifest> {
        let loc = self.location(source)?;
        let whole = match &loc {
            Location::Registry(r) => {
                let client = self.registry(r.registry())?;
                let handle = self.runtime()?.handle().clone();
                self.block_on(client.open_lazy(
                    r,
                    opts.platform.as_ref(),
                    opts.all_platforms,
                    handle,
                ))??
            }
            Location::Scratch => {
                dockyard_image::image::check_source_date_epoch()?;
                return Ok(Manifest::Image(Image::scratch(
                    opts.platform.as_ref().unwrap_or(&Platform::host()),
                )));
            }
            other => dockyard_image::transport::read(other, &self.read_options(opts))?,
        };
        self.narrow(whole, &loc.to_string(), opts)
    }

    /// One image from `source` (from an index, the one for `platform`,
    /// default this host).
    pub fn open_image(&self, source: &str, platform: Option<&Platform>) -> Result<Image> {
        let opts = OpenOptions {
            platform: platform.cloned(),
            all_platforms: false,
        };
        let m = self.open(source, &opts)?;
        Ok(m.into_image(source, platform)?)
    }

    fn read_options(&self, opts: &OpenOptions) -> dockyard_image::transport::ReadOptions {
        dockyard_image::transport::ReadOptions {
            platform: opts.platform.clone(),
            store_root: Some(self.store_root()),
        }
    }

    /// Apply `--platform` / `--all-platforms` to what a source holds.
    fn narrow(&self, whole: Manifest, what: &str, opts: &OpenOptions) -> Result<Manifest> {
        match whole {
            Manifest::Artifact(_) => Ok(whole),
            // Everything the source holds, as it is.
            _ if opts.all_platforms => Ok(whole),
            m => Ok(Manifest::Image(m.into_image(what, opts.platform.as_ref())?)),
        }
    }

    /// Pull into the store: the image for the platform (or the whole index
    /// with `all_platforms`), named by the reference.
    pub fn pull(&self, reference: &str, opts: &OpenOptions) -> Result<Pulled> {
        let r = parse_registry_reference(reference)?;
        self.pull_reference(&r, opts)
    }

    fn pull_reference(&self, r: &Reference, opts: &OpenOptions) -> Result<Pulled> {
        let client = self.registry(r.registry())?;
        let store = self.store()?;
        let pull_opts = dockyard_registry::PullOptions {
            platform: opts.platform.clone(),
            all_platforms: opts.all_platforms,
        };
        let pulled = self.block_on(client.pull(r, &store, &pull_opts, self.progress()))??;
        let manifest = match (&pulled.manifest, opts.all_platforms) {
            // A single image pulled by tag must be for the platform asked.
            (Manifest::Image(_), _) => {
                self.narrow(pulled.manifest.clone(), &format!("docker://{r}"), opts)?
            }
            _ => pulled.manifest.clone(),
        };
        Ok(Pulled {
            manifest,
            digest: pulled.digest,
            name: pulled.name,
            blobs_fetched: pulled.blobs_fetched,
            bytes_fetched: pulled.bytes_fetched,
        })
    }

    /// Write an image, a whole index or an artifact to `dest`.
    pub fn write(&self, manifest: &Manifest, dest: &str, opts: &WriteOptions) -> Result<Written> {
        let loc = self.location(dest)?;
        let manifest = apply_format(manifest, opts.format, dest)?;
        match &loc {
            Location::Registry(r) => self.push(&manifest, r, opts),
            other => {
                let (manifest, _hold) = self.fetch_remote_blobs(manifest)?;
                let written = dockyard_image::transport::write(
                    &manifest,
                    other,
                    Some(self.store_root()),
                    self.progress(),
                )?;
                Ok(Written {
                    digest: written.digest(),
                    manifest: written,
                    transfer: None,
                })
            }
        }
    }

    /// Which of `digests` a registry destination's repository holds (for
    /// any other destination: none), asked all at once. A build asks this
    /// of the layers it already has while it makes the new ones, and hands
    /// the answer to `write` as `WriteOptions::known_present`, so the push
    /// does not wait for the round.
    pub fn blobs_present(&self, dest: &str, digests: Vec<Digest>) -> Result<HashSet<Digest>> {
        match self.location(dest)? {
            Location::Registry(r) if !digests.is_empty() => {
                let client = self.registry(r.registry())?;
                Ok(self.block_on(client.blobs_present(&r, digests))??)
            }
            _ => Ok(HashSet::new()),
        }
    }

    /// The same tree with every lazily opened registry blob fetched into
    /// the store (resumable, verified) and read from there, and the hold
    /// on the store to keep while the result is in use (so no prune runs).
    /// A purely local tree comes back as it is and never opens the store.
    fn fetch_remote_blobs(
        &self,
        manifest: Manifest,
    ) -> Result<(Manifest, Option<dockyard_image::store::StoreLock>)> {
        let lazy = manifest
            .all_blobs()
            .iter()
            .any(|b| dockyard_registry::lazy::registry_blobs(&b.source).is_some());
        if !lazy {
            return Ok((manifest, None));
        }
        let store = self.store()?;
        let hold = store.writer_lock()?;
        let (local, _) = self.block_on(dockyard_registry::lazy::fetch_into_store(
            &manifest,
            &store,
            self.progress(),
        ))??;
        Ok((local, Some(hold)))
    }

    fn push(&self, manifest: &Manifest, r: &Reference, opts: &WriteOptions) -> Result<Written> {
        let client = self.registry(r.registry())?;
        let store = self.store()?;
        let progress = Arc::clone(&self.options.progress);
        match manifest {
            Manifest::Image(image) => {
                let push_opts = dockyard_registry::PushOptions {
                    compression: opts.compression,
                    known_present: opts.known_present.clone(),
                };
                let pushed =
                    self.block_on(client.push(image, r, &store, &push_opts, progress))??;
                Ok(Written {
                    digest: pushed.digest.clone(),
                    manifest: Manifest::Image(pushed.image),
                    transfer: Some(Transfer {
                        manifests: 0,
                        blobs_uploaded: pushed.blobs_uploaded,
                        bytes_uploaded: pushed.bytes_uploaded,
                        blobs_mounted: pushed.blobs_mounted,
                        blobs_existing: pushed.blobs_existing,
                    }),
                })
            }
            other => {
                let pushed = self.block_on(client.push_manifest(other, r, &store, progress))??;
                Ok(Written {
                    digest: pushed.digest,
                    manifest: other.clone(),
                    transfer: Some(Transfer {
                        manifests: pushed.manifests,
                        blobs_uploaded: pushed.blobs_uploaded,
                        bytes_uploaded: pushed.bytes_uploaded,
                        blobs_mounted: pushed.blobs_mounted,
                        blobs_existing: pushed.blobs_existing,
                    }),
                })
            }
        }
    }

    /// Copy from any transport to any other: one platform by default (the
    /// host's or `platform`), every platform of an index with
    /// `all_platforms` (the index digest is kept).
    pub fn copy(
        &self,
        src: &str,
        dst: &str,
        open: &OpenOptions,
        write: &WriteOptions,
    ) -> Result<Written> {
        // Fail on a bad destination before reading anything.
        self.location(dst)?;
        let manifest = self.open(src, open)?;
        self.write(&manifest, dst, write)
    }

    /// Edit an image from `src` (`scratch` for an empty one): remove
    /// layers, add one layer of host files and deletions, change the config.
    pub fn mutate(&self, src: &str, mutation: &Mutation) -> Result<Image> {
        // `platform` picks from an index; a single image is set to it.
        let whole = self.open(
            src,
            &OpenOptions {
                platform: mutation.platform.clone(),
                all_platforms: true,
            },
        )?;
        let image = match (whole, &mutation.platform) {
            (Manifest::Image(img), Some(p)) if !p.matches(&img.platform()) => img.with_platform(p),
            (m, p) => m.into_image(src, p.as_ref())?,
        };
        mutation.apply(image, &self.store()?)
    }

    /// Describe what `src` names without reading layers (for `docker://`,
    /// only manifests and the config are fetched).
    pub fn inspect(&self, src: &str, platform: Option<&Platform>) -> Result<Inspection> {
        match self.location(src)? {
            Location::Registry(r) => {
                let client = self.registry(r.registry())?;
                let remote = self.block_on(client.inspect(&r, platform))??;
                inspect::from_registry(src, remote)
            }
            loc => {
                let opts = OpenOptions {
                    platform: platform.cloned(),
                    all_platforms: true,
                };
                let whole = match &loc {
                    Location::Scratch => {
                        Manifest::Image(Image::scratch(platform.unwrap_or(&Platform::host())))
                    }
                    other => dockyard_image::transport::read(other, &self.read_options(&opts))?,
                };
                inspect::from_manifest(src, &whole, platform)
            }
        }
    }

    /// Write the flattened root filesystem of the image at `src` into
    /// `dir` (which must not exist or be empty). Returns the image and the
    /// number of layers applied.
    pub fn export(
        &self,
        src: &str,
        dir: &Path,
        platform: Option<&Platform>,
    ) -> Result<(Image, usize)> {
        self.export_with(src, dir, platform, &ExportOptions::default())
    }

    /// `export` with options (`keep_setuid`).
    pub fn export_with(
        &self,
        src: &str,
        dir: &Path,
        platform: Option<&Platform>,
        options: &ExportOptions,
    ) -> Result<(Image, usize)> {
        let image = self.open_image(src, platform)?;
        let (local, _hold) = self.fetch_remote_blobs(Manifest::Image(image))?;
        let image = local.into_image(src, None)?;
        let n = dockyard_run::export_rootfs_with(&image, dir, options, self.progress())?;
        Ok((image, n))
    }

    /// The tags of a repository (`docker://` optional).
    pub fn tags(&self, repository: &str) -> Result<Vec<String>> {
        let r = parse_registry_reference(repository)?;
        let client = self.registry(r.registry())?;
        Ok(self.block_on(client.list_tags(r.repository()))??)
    }

    /// Check credentials against a registry, then store them as Docker
    /// does (through the config's credential helper, else in its `auths`);
    /// returns where they went.
    pub fn login(
        &self,
        registry: &str,
        credentials: Credentials,
    ) -> Result<dockyard_registry::auth::SavedTo> {
        let host = dockyard_registry::auth::registry_of_key(registry);
        let mut opts = self.options.registry.clone();
        opts.credentials = Some(credentials.clone());
        let client = self.block_on(Registry::connect(&host, opts))??;
        self.block_on(client.verify_login(None))??;
        Ok(dockyard_registry::auth::save_credentials(
            &host,
            &credentials,
        )?)
    }

    /// The images the local store holds, by name.
    pub fn cache_list(&self) -> Result<Vec<dockyard_image::store::StoreEntry>> {
        Ok(self.store()?.list()?)
    }

    /// Remove store blobs no named image uses; returns (blobs, bytes).
    /// Cached rootfs trees of `run` are removed too (they are rebuilt on use).
    pub fn cache_prune(&self) -> Result<(usize, u64)> {
        let (blobs, bytes) = self.store()?.prune()?;
        let (trees, tree_bytes) = dockyard_run::prune_rootfs_cache(&self.store_root())?;
        Ok((blobs + trees, bytes + tree_bytes))
    }

    /// Forget a name in the store (its blobs go at the next prune); false
    /// when there was no such name.
    pub fn cache_remove(&self, name: &str) -> Result<bool> {
        Ok(self.store()?.remove_name(name)?)
    }

    /// Forget a registry's stored credentials; false when there were none.
    pub fn logout(&self, registry: &str) -> Result<bool> {
        Ok(dockyard_registry::auth::remove_credentials(registry)?)
    }
}

/// `docker://REF` or a bare reference.
pub fn parse_registry_reference(s: &str) -> Result<Reference> {
    Ok(s.strip_prefix("docker://")
        .unwrap_or(s)
        .parse::<Reference>()?)
}

fn apply_format(manifest: &Manifest, format: Option<Format>, dest: &str) -> Result<Manifest> {
    match (format, manifest) {
        (None, m) => Ok(m.clone()),
        (Some(f), Manifest::Image(img)) => Ok(Manifest::Image(
            img.with_manifest_family(f == Format::Docker)?,
        )),
        (Some(_), Manifest::Index(ix)) => Err(Error::FormatOfIndex {
            what: dest.to_string(),
            index: ix.digest(),
        }),
        (Some(_), Manifest::Artifact(a)) => Err(Error::Image(dockyard_image::Error::NotAnImage {
            what: format!("--format for {dest}"),
            kind: "an artifact",
            media_type: a.artifact_type().to_string(),
        })),
    }
}
