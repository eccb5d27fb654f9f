//! Declarative conda environments → layered images: a spec (conda's
//! `environment.yml` plus an `image:` section) is solved with resolvo,
//! installed with rattler into a staging directory for the in-image
//! prefix, and written as one reusable layer per package plus a top layer,
//! on any base and to any destination the `dockyard` facade takes.

pub mod environment;
pub mod error;
pub mod layers;
pub mod libc;
pub mod lock;
pub mod recorded;
pub mod sbom;
pub mod spec;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;

use dockyard::{ConfigEdit, Dockyard, Image, Location, Platform, WriteOptions, Written};
use dockyard_image::media::Compression;
use dockyard_image::Digest;
use rattler_conda_types::{RepoDataRecord, Subdir};

pub use error::{Error, Result};
pub use layers::EnvLayer;
pub use spec::{Layering, Spec, SpecOverrides};

/// How to build.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Where to write the image (any transport string the facade takes);
    /// default: the store, as `NAME:TAG` from the spec.
    pub destination: Option<String>,
    /// The conda platform (`linux-64`, `linux-aarch64`, …) over the spec's.
    pub platform: Option<String>,
    /// Read channels' repodata from the cache only.
    pub offline: bool,
    /// Also write the SBOM here.
    pub sbom: Option<PathBuf>,
    /// Install exactly the lock beside the spec, without solving.
    pub locked: bool,
    /// Draw the installer's progress bars on stderr (for a terminal).
    pub progress_bars: bool,
    /// How the image is written (compression for a push, manifest format).
    pub write: WriteOptions,
}

/// What a build made.
#[derive(Debug)]
pub struct Built {
    pub image: Image,
    pub written: Written,
    /// Where it was written.
    pub destination: String,
    /// The environment's layers, bottom first (the top layer not included).
    pub layers: Vec<EnvLayer>,
    /// The solved packages.
    pub records: Vec<RepoDataRecord>,
    /// Packages that carry a post-link script (not run).
    pub post_link: Vec<String>,
    /// The lock file written (or, with `locked`, read).
    pub lock: Option<PathBuf>,
}

/// The image platform a conda subdir runs on.
pub fn image_platform(subdir: Subdir) -> Result<Platform> {
    let (arch, variant) = match subdir {
        Subdir::Linux64 => ("amd64", None),
        Subdir::LinuxAarch64 => ("arm64", None),
        Subdir::LinuxPpc64le => ("ppc64le", None),
        Subdir::LinuxS390X => ("s390x", None),
        Subdir::LinuxArmV7l => ("arm", Some("v7")),
        other => {
            return Err(Error::Spec {
                file: PathBuf::from("platform"),
                line: None,
                key: "image.platform".into(),
                message: format!("{other}: images are built for Linux platforms (linux-64, linux-aarch64, linux-ppc64le, linux-s390x, linux-armv7l)"),
            })
        }
    };
    Ok(Platform {
        os: "linux".into(),
        architecture: arch.into(),
        variant: variant.map(str::to_string),
    })
}

/// A base given with a relative path is found beside the spec.
fn base_source(spec: &Spec) -> String {
    let base = spec.image.base.clone().unwrap_or_else(|| "scratch".into());
    for transport in ["docker-archive:", "oci:", "oci-archive:"] {
        if let Some(rest) = base.strip_prefix(transport) {
            if !rest.starts_with('/') {
                return format!("{transport}{}", spec.dir().join(rest).display());
            }
        }
    }
    base
}

/// The Env entries of an image's config, by name.
fn config_env(image: &Image) -> BTreeMap<String, String> {
    image.config_json()["config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str())
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The round of existence checks a push to a registry waits for, asked
/// while the new packages install and layer: which of the pushed forms of
/// the layers taken from the build cache (`diff_ids`) the destination's
/// repository already holds. On another thread, with a facade of its own.
fn ask_registry_early(
    dy: &Dockyard,
    store: &dockyard_image::Store,
    destination: &str,
    diff_ids: &[Digest],
    write: &WriteOptions,
) -> Result<Option<EarlyCheck>> {
    if !matches!(dy.location(destination)?, Location::Registry(_)) {
        return Ok(None);
    }
    let mut pushed = Vec::new();
    for d in diff_ids {
        if write.compression == Compression::None {
            pushed.push(d.clone());
        } else if let Some((digest, _)) = store.lookup_compressed(d, write.compression)? {
            pushed.push(digest);
        }
    }
    if pushed.is_empty() {
        return Ok(None);
    }
    let (options, destination) = (dy.options().clone(), destination.to_string());
    Ok(Some(std::thread::spawn(move || {
        Dockyard::new(options).blobs_present(&destination, pushed)
    })))
}

type EarlyCheck = std::thread::JoinHandle<dockyard::Result<HashSet<Digest>>>;

/// What the early round found; nothing if it failed (the push then asks
/// again, and reports what is wrong).
fn answer_of_early_check(check: EarlyCheck) -> HashSet<Digest> {
    match check.join() {
        Ok(Ok(present)) => present,
        Ok(Err(e)) => {
            tracing::debug!("early existence checks failed: {e}");
            HashSet::new()
        }
        Err(_) => HashSet::new(),
    }
}

/// Build `spec` into an image and write it.
pub fn build(dy: &Dockyard, spec: &Spec, opts: &BuildOptions) -> Result<Built> {
    let subdir_name = opts
        .platform
        .clone()
        .or_else(|| spec.image.platform.clone())
        .unwrap_or_else(|| spec::DEFAULT_PLATFORM.into());
    let subdir = Subdir::from_str(&subdir_name).map_err(|e| Error::Spec {
        file: spec.path.clone(),
        line: None,
        key: "image.platform".into(),
        message: format!("{subdir_name:?}: {e}"),
    })?;
    let platform = image_platform(subdir)?;
    let prefix = spec.prefix().trim_end_matches('/').to_string();
    let destination = match &opts.destination {
        Some(d) => d.clone(),
        None => format!(
            "store:{}:{}",
            spec.image
                .name
                .clone()
                .or_else(|| spec.name.clone())
                .unwrap_or_else(|| "conda-env".into()),
            spec.image.tag.clone().unwrap_or_else(|| "latest".into())
        ),
    };
    // A missing host file fails before anything is solved or downloaded.
    for host in spec.image.files.keys() {
        let path = spec.dir().join(host);
        std::fs::symlink_metadata(&path).map_err(|e| Error::Io { path, source: e })?;
    }
    // A bad destination fails before anything is solved or downloaded.
    match dy.location(&destination)? {
        Location::DockerArchive { path, .. }
        | Location::OciArchive { path, .. }
        | Location::OciDir { path, .. } => {
            dockyard_image::atomic::output_parent(&path)?;
        }
        _ => {}
    }
    let base = dy.open_image(&base_source(spec), Some(&platform))?;

    let cache = environment::CondaCache {
        root: dy.store_root().join("conda"),
    };
    std::fs::create_dir_all(&cache.root).map_err(|e| Error::Io {
        path: cache.root.clone(),
        source: e,
    })?;
    // Unless the spec names them, the base's own C library sets __glibc.
    let virtual_names = match spec.image.virtual_packages.clone() {
        Some(names) => names,
        None => {
            let libc = libc::detect_cached(&base, &dy.store()?);
            tracing::debug!("C library of the base: {libc:?}");
            libc::virtual_packages_for(spec::default_virtual_packages(subdir), libc.as_ref())
        }
    };
    let virtual_packages = environment::virtual_packages(&virtual_names)?;
    let client = environment::channel_client(
        &environment::channels(spec)?,
        dy.options().registry.connect_timeout,
        dy.options().registry.timeout,
    )?;
    // A spec given on the command line has no folder to keep a lock in.
    let lock_path = spec.path.is_file().then(|| lock::lock_path(spec));
    let recording = recorded::ChannelRecording::for_spec(spec, &environment::channels(spec)?)?;
    let records = if opts.locked {
        lock::locked_records(spec, &recording, subdir, &virtual_packages)?
    } else {
        // On a terminal, a spinner while the channels are read and solved
        // (the installer draws its own bars after).
        let spinner = opts.progress_bars.then(|| {
            let s = indicatif::ProgressBar::new_spinner().with_message(format!(
                "solving {} dependencies from {}",
                spec.dependencies.len(),
                spec.channels.join(", ")
            ));
            s.enable_steady_tick(std::time::Duration::from_millis(100));
            s
        });
        let solved = dy.block_on(environment::solve(
            spec,
            subdir,
            virtual_packages,
            &cache,
            &client,
            opts.offline,
        ));
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        solved??
    };
    let lock_text = lock::render(spec, &recording, subdir, &virtual_names, &records)?;
    let lock_digest = dockyard_image::Digest::sha256_of(lock_text.as_bytes());

    let staging = tempfile::Builder::new()
        .prefix(&format!("{}conda-", dockyard_image::atomic::temp_prefix()))
        .tempdir_in(&cache.root)
        .map_err(|e| Error::Io {
            path: cache.root.clone(),
            source: e,
        })?;
    dockyard_image::atomic::register_temp(staging.path());
    let store = dy.store()?;
    // Held from here: no prune may drop a cached layer this build takes.
    let _hold = store.writer_lock()?;
    let room = spec
        .max_layers()
        .saturating_sub(base.layers().len() + 1)
        .max(1);
    // One layer per package: the packages whose layers are cached are not
    // installed again (their records go into conda-meta first).
    let keys = layers::LayerKeys::new(&prefix, spec.image.layering, &records, subdir)?;
    let mut taken = Vec::new();
    if spec.image.layering == spec::Layering::PerPackage && records.len() <= room {
        taken = layers::preinstall_cached(&store, staging.path(), &records, &recording, &keys)?;
        tracing::debug!(
            "{} packages taken from the build cache without installing",
            taken.len()
        );
    }
    let skipped = taken.len();
    let early_check = ask_registry_early(dy, &store, &destination, &taken, &opts.write)?;
    // With every package cached there is nothing to install: the prefix is
    // made as the installer makes one (conda-meta/history, CACHEDIR.TAG).
    let installed = if skipped == records.len() && !records.is_empty() {
        rattler_conda_types::prefix::Prefix::create(staging.path()).map_err(|e| Error::Io {
            path: staging.path().to_path_buf(),
            source: e,
        })?;
        environment::read_prefix_records(staging.path())?
    } else {
        environment::install_runtime()?.block_on(environment::install(
            records.clone(),
            staging.path(),
            &prefix,
            subdir,
            &cache,
            &client,
            opts.progress_bars,
        ))?
    };
    let post_link: Vec<String> = installed
        .iter()
        .filter(|r| {
            let name = r.repodata_record.package_record.name.as_normalized();
            let script = PathBuf::from(format!("bin/.{name}-post-link.sh"));
            r.files.contains(&script)
        })
        .map(|r| layers::package_label(&r.repodata_record.package_record))
        .collect();
    for p in &post_link {
        tracing::warn!("{p}: has a post-link script, which is not run");
    }

    let ordered = layers::stacking_order(&installed);
    let groups = layers::group_packages(&ordered, spec.image.layering, room);
    let env_layers =
        layers::package_layers(&store, staging.path(), &ordered, &groups, &recording, &keys)?;

    // The build time comes from what is built: the newest package.
    let created = records
        .iter()
        .filter_map(|r| r.package_record.timestamp.map(|t| t.timestamp()))
        .max()
        .map(|secs| secs.max(0) as u64)
        .unwrap_or(0);
    let created_text = dockyard_image::image::rfc3339(created);
    let env_name = spec.name.clone().unwrap_or_else(|| "conda-env".into());
    let spec_digest = spec.content_sha256();
    let identity = format!(
        "{}-{}",
        spec_digest.trim_start_matches("sha256:"),
        lock_digest.hex()
    );
    let image_records: Vec<RepoDataRecord> =
        records.iter().map(|r| recording.image_record(r)).collect();
    let sbom = sbom::spdx(&env_name, &identity, &created_text, &image_records);
    let sbom_bytes = serde_json::to_vec_pretty(&sbom)
        .unwrap_or_else(|_| unreachable!("a Value always serialises"));
    let mut extra = BTreeMap::new();
    extra.insert(format!("{prefix}/{}", sbom::SBOM_PATH), sbom_bytes.clone());
    let host_files: Vec<(PathBuf, String)> = spec
        .image
        .files
        .iter()
        .map(|(host, dest)| (spec.dir().join(host), dest.clone()))
        .collect();
    let top = layers::top_layer(
        &store,
        staging.path(),
        &prefix,
        &layers::TopLayerContents {
            records: &installed,
            recording: &recording,
            extra: &extra,
            host_files: &host_files,
        },
        created,
    )?;
    let mut new_layers: Vec<(dockyard::Layer, String)> = env_layers
        .iter()
        .map(|l| (l.layer.clone(), format!("conda: {}", l.packages.join(", "))))
        .collect();
    new_layers.push((
        top,
        format!("conda: environment {env_name} (conda-meta, files, SBOM)"),
    ));
    let image = base.append_layers(new_layers, created);

    let mut edits = Vec::new();
    let base_path = config_env(&base)
        .get("PATH")
        .cloned()
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    edits.push(ConfigEdit::Env(
        "PATH".into(),
        format!("{prefix}/bin:{base_path}"),
    ));
    edits.push(ConfigEdit::Env("CONDA_PREFIX".into(), prefix.clone()));
    for (k, v) in &spec.image.env {
        edits.push(ConfigEdit::Env(k.clone(), v.clone()));
    }
    if let Some(e) = &spec.image.entrypoint {
        edits.push(ConfigEdit::Entrypoint(e.argv()));
        // As a Dockerfile's ENTRYPOINT: the base's Cmd was an argument to
        // the base's entrypoint, not to this one.
        if spec.image.cmd.is_none() {
            edits.push(ConfigEdit::Cmd(Vec::new()));
        }
    }
    if let Some(c) = &spec.image.cmd {
        edits.push(ConfigEdit::Cmd(c.argv()));
    }
    if let Some(w) = &spec.image.workdir {
        edits.push(ConfigEdit::WorkingDir(w.clone()));
    }
    if let Some(u) = &spec.image.user {
        edits.push(ConfigEdit::User(u.clone()));
    }
    for (k, v) in &spec.image.labels {
        edits.push(ConfigEdit::Label(k.clone(), v.clone()));
    }
    edits.push(ConfigEdit::Label(
        "org.dockyard.conda.spec.sha256".into(),
        spec_digest,
    ));
    edits.push(ConfigEdit::Label(
        "org.dockyard.conda.lock.sha256".into(),
        lock_digest.to_string(),
    ));
    let image = image.with_config_edits(&edits);

    let write = WriteOptions {
        known_present: early_check.map(answer_of_early_check).unwrap_or_default(),
        ..opts.write.clone()
    };
    let written = dy.write(&image.clone().into(), &destination, &write)?;
    if let Some(path) = &opts.sbom {
        dockyard_image::atomic::write_atomic(path, &sbom_bytes)?;
    }
    // The lock is written once the image is: a failed build leaves none.
    if let (Some(path), false) = (&lock_path, opts.locked) {
        dockyard_image::atomic::write_atomic(path, lock_text.as_bytes())?;
    }
    drop(staging);
    Ok(Built {
        image,
        written,
        destination,
        layers: env_layers,
        records,
        post_link,
        lock: lock_path,
    })
}

/// Whether `destination` names a registry (the CLI reports uploads then).
pub fn is_registry(destination: &str) -> bool {
    matches!(destination.parse::<Location>(), Ok(Location::Registry(_)))
}
