//! The lock file beside a spec, in the format rattler_lock reads and
//! writes (pixi's): the exact packages a build installed, so `--locked`
//! installs them again with no solve.

use std::path::{Path, PathBuf};

use rattler_conda_types::{Matches, RepoDataRecord, Subdir};
use rattler_lock::{CondaPackageData, LockFile, LockFileBuilder, PlatformData, PlatformName};

use crate::error::{Error, Result};
use crate::recorded::ChannelRecording;
use crate::spec::Spec;

/// The environment's name in the lock file.
const ENVIRONMENT: &str = "default";

/// `env.yml` → `env.lock`, beside it.
pub fn lock_path(spec: &Spec) -> PathBuf {
    let stem = spec
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "environment".into());
    spec.dir().join(format!("{stem}.lock"))
}

fn lock_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Lock {
        lock: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The lock's text for `records` solved for `subdir` from the spec's
/// channels with `virtual_packages` (packages of relatively named channels
/// by their path from the spec's folder).
pub fn render(
    spec: &Spec,
    recording: &ChannelRecording,
    subdir: Subdir,
    virtual_packages: &[String],
    records: &[RepoDataRecord],
) -> Result<String> {
    let path = lock_path(spec);
    let mut sorted: Vec<&RepoDataRecord> = records.iter().collect();
    sorted.sort_by(|a, b| {
        a.package_record
            .name
            .as_normalized()
            .cmp(b.package_record.name.as_normalized())
    });
    let name = PlatformName::from(&subdir);
    let mut builder = LockFileBuilder::new()
        .with_platforms(vec![PlatformData {
            name: name.clone(),
            subdir,
            virtual_packages: virtual_packages.to_vec(),
        }])
        .map_err(|e| lock_error(&path, e.to_string()))?
        .with_channels(ENVIRONMENT, spec.channels.iter().map(String::as_str));
    for r in sorted {
        builder
            .add_conda_package(ENVIRONMENT, &name, recording.lock_package(r))
            .map_err(|e| lock_error(&path, e.to_string()))?;
    }
    builder
        .finish()
        .render_to_string()
        .map_err(|e| lock_error(&path, e.to_string()))
}

/// The packages the lock holds for `subdir`, after checking that every
/// dependency of the spec is still met by them.
pub fn locked_records(
    spec: &Spec,
    recording: &ChannelRecording,
    subdir: Subdir,
) -> Result<Vec<RepoDataRecord>> {
    let path = lock_path(spec);
    if !path.exists() {
        return Err(lock_error(
            &path,
            "no lock file: build once without --locked to write it",
        ));
    }
    let lock = LockFile::from_path(&path).map_err(|e| lock_error(&path, e.to_string()))?;
    let env = lock
        .environment(ENVIRONMENT)
        .ok_or_else(|| lock_error(&path, "it has no default environment"))?;
    let platform = lock
        .platform(PlatformName::from(&subdir).as_str())
        .ok_or_else(|| {
            lock_error(
                &path,
                format!("it holds no packages for {subdir}: build again without --locked"),
            )
        })?;
    let records = env
        .conda_packages(platform)
        .ok_or_else(|| lock_error(&path, format!("it holds no packages for {subdir}")))?
        .filter_map(CondaPackageData::as_binary)
        .map(|data| recording.locked_record(&path, data))
        .collect::<Result<Vec<RepoDataRecord>>>()?;
    for dep in &spec.dependencies {
        if !records.iter().any(|r| dep.matches(r)) {
            return Err(lock_error(
                &path,
                format!(
                    "the spec asks for {dep}, which no locked package satisfies: the spec changed since the lock was written; build without --locked to solve again"
                ),
            ));
        }
    }
    Ok(records)
}
