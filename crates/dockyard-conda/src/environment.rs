//! Solve a spec against its channels (resolvo) and install the solution
//! into a staging directory with rattler's installer, placeholders
//! rewritten to the prefix the environment will have inside the image.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rattler::install::{Installer, LinkOptions};
use rattler::package_cache::PackageCache;
use rattler_conda_types::{
    Channel, ChannelConfig, GenericVirtualPackage, PrefixRecord, RepoDataRecord, Subdir,
};
use rattler_repodata_gateway::fetch::CacheAction;
use rattler_repodata_gateway::{Gateway, SourceConfig};
use rattler_solve::{SolverImpl, SolverTask};

use crate::error::{Error, Result};
use crate::spec::Spec;

/// Where the builder keeps what it downloads: repodata and packages,
/// under the store's directory.
#[derive(Clone, Debug)]
pub struct CondaCache {
    pub root: PathBuf,
}

impl CondaCache {
    pub fn repodata(&self) -> PathBuf {
        self.root.join("repodata")
    }
    pub fn packages(&self) -> PathBuf {
        self.root.join("pkgs")
    }
}

/// The channels of a spec, relative paths taken from the spec's folder.
pub fn channels(spec: &Spec) -> Result<Vec<Channel>> {
    let dir = spec.dir();
    let root = std::path::absolute(&dir).map_err(|e| Error::Io {
        path: dir.clone(),
        source: e,
    })?;
    let config = ChannelConfig::default_with_root_dir(root);
    spec.channels
        .iter()
        .map(|c| {
            Channel::from_str(c, &config).map_err(|e| Error::Channel {
                channel: c.clone(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Parse `__name=version[=build]` virtual packages.
pub fn virtual_packages(list: &[String]) -> Result<Vec<GenericVirtualPackage>> {
    list.iter()
        .map(|v| {
            serde_json::from_value(serde_json::Value::String(v.clone())).map_err(|e| Error::Spec {
                file: PathBuf::from("virtual_packages"),
                line: None,
                key: "image.virtual_packages".into(),
                message: format!("{v:?}: {e}"),
            })
        })
        .collect()
}

/// The HTTP client channels are read with: one that does not answer its
/// connection within `connect`, or sends nothing for `idle`, is an error
/// rather than a wait (as with the registry client's timeouts). With only
/// local channels nothing is fetched over HTTP, so the client reads no TLS
/// roots (rattler's default client would read every file of the system's
/// CA directory on each build, a rebuild's cost).
pub fn channel_client(
    channels: &[Channel],
    connect: Duration,
    idle: Duration,
) -> Result<rattler_reqwest::Client> {
    let mut builder = rattler_reqwest::Client::builder()
        .user_agent(concat!("dockyard/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect)
        .read_timeout(idle);
    if channels.iter().all(|c| c.base_url.url().scheme() == "file") {
        builder = builder.tls_certs_only([]);
    }
    builder.build().map_err(|e| Error::Install {
        reason: format!(
            "cannot set up the HTTP client for channels: {}",
            describe(&e)
        ),
    })
}

/// Solve `spec` for `subdir` (and noarch). With `offline`, only cached
/// repodata is read.
pub async fn solve(
    spec: &Spec,
    subdir: Subdir,
    virtual_packages: Vec<GenericVirtualPackage>,
    cache: &CondaCache,
    client: &rattler_reqwest::Client,
    offline: bool,
) -> Result<Vec<RepoDataRecord>> {
    let channels = channels(spec)?;
    let mut source_config = SourceConfig::default();
    if offline {
        source_config.cache_action = CacheAction::ForceCacheOnly;
    }
    let gateway = Gateway::builder()
        .with_client(client.clone())
        .with_cache_dir(cache.repodata())
        .with_package_cache(PackageCache::new(cache.packages()))
        .with_channel_config(rattler_repodata_gateway::ChannelConfig {
            default: source_config,
            per_channel: Default::default(),
        })
        .finish();
    let repodata = gateway
        .query(
            channels.clone(),
            [subdir, Subdir::NoArch],
            spec.dependencies.clone(),
        )
        .recursive(true)
        .execute()
        .await
        .map_err(|e| {
            let reason = describe(&e);
            Error::Channel {
                channel: failed_channels(spec, &channels, &reason),
                reason,
            }
        })?;
    let task = SolverTask {
        virtual_packages,
        specs: spec.dependencies.clone(),
        ..SolverTask::from_iter(repodata.repodata.iter())
    };
    let solved = rattler_solve::resolvo::Solver
        .solve(task)
        .map_err(|e| match e {
            rattler_solve::SolveError::Unsolvable(lines) => Error::Unsolvable {
                explanation: lines.join("\n"),
            },
            other => Error::Unsolvable {
                explanation: other.to_string(),
            },
        })?;
    Ok(solved.records)
}

/// The spec's channels a fetch error is about: those whose address it
/// names (as the spec writes them), else all of them.
fn failed_channels(spec: &Spec, channels: &[Channel], reason: &str) -> String {
    let named: Vec<&str> = spec
        .channels
        .iter()
        .zip(channels)
        .filter(|(_, c)| reason.contains(c.base_url.url().as_str().trim_end_matches('/')))
        .map(|(written, _)| written.as_str())
        .collect();
    if named.is_empty() {
        spec.channels.join(", ")
    } else {
        named.join(", ")
    }
}

/// An error and its causes on one line.
pub(crate) fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

/// Packages extracted at once. rattler extracts each package in a
/// blocking task, and each holds a zstd window (up to 8 MB for conda's
/// level 19, up to the package's size): the blocking pool's size bounds
/// the memory an install takes, whatever the number of packages.
const EXTRACTIONS_AT_ONCE: usize = 4;

/// The runtime installs run on: its blocking pool is `EXTRACTIONS_AT_ONCE`.
pub fn install_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(EXTRACTIONS_AT_ONCE)
        .enable_all()
        .build()
        .map_err(|e| Error::Install {
            reason: format!("cannot start the install runtime: {e}"),
        })
}

/// Install `records` into `staging` as an environment that will live at
/// `prefix`: text and binary placeholders are rewritten to `prefix`,
/// never to the staging path. Link scripts are not run.
pub async fn install(
    records: Vec<RepoDataRecord>,
    staging: &Path,
    prefix: &str,
    subdir: Subdir,
    cache: &CondaCache,
    client: &rattler_reqwest::Client,
    progress_bars: bool,
) -> Result<Vec<PrefixRecord>> {
    let mut installer = Installer::new()
        .with_package_cache(PackageCache::new(cache.packages()))
        .with_target_platform(subdir)
        .with_alternative_target_prefix(prefix)
        .with_execute_link_scripts(false)
        // Staged files are read into layers: copies, never links into the
        // package cache that a later build could see changed.
        .with_link_options(LinkOptions {
            allow_symbolic_links: Some(false),
            allow_hard_links: Some(false),
            allow_ref_links: Some(false),
        });
    installer.set_download_client(client.clone());
    if progress_bars {
        installer.set_reporter(rattler::install::IndicatifReporter::builder().finish());
    }
    installer
        .install(staging, records)
        .await
        .map_err(|e| Error::Install {
            reason: describe(&e),
        })?;
    read_prefix_records(staging)
}

/// The conda-meta records of an installed environment, by package name.
pub fn read_prefix_records(prefix_dir: &Path) -> Result<Vec<PrefixRecord>> {
    let meta = prefix_dir.join("conda-meta");
    let entries = std::fs::read_dir(&meta).map_err(|e| Error::Io {
        path: meta.clone(),
        source: e,
    })?;
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().map(|e| e == "json").unwrap_or(false) {
            records.push(PrefixRecord::from_path(&path).map_err(|e| Error::Io {
                path: path.clone(),
                source: e,
            })?);
        }
    }
    records.sort_by(|a, b| {
        a.repodata_record
            .package_record
            .name
            .as_normalized()
            .cmp(b.repodata_record.package_record.name.as_normalized())
    });
    Ok(records)
}
