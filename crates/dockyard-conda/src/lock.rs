//! The lock file beside a spec, in the format rattler_lock reads and
//! writes (pixi's): the exact packages a build installed, so `--locked`
//! installs them again with no solve.

use std::path::{Path, PathBuf};

use rattler_conda_types::{
    GenericVirtualPackage, MatchSpec, Matches, PackageRecord, ParseStrictness, RepoDataRecord,
    Subdir,
};
use rattler_lock::{CondaPackageData, LockFile, LockFileBuilder, PlatformData, PlatformName};

use crate::error::{Error, Result};
use crate::layers::package_label;
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

/// The packages the lock holds for `subdir`, after checking that it still
/// fits the spec: the same channels, every dependency of the spec met by
/// them, no package the spec no longer needs, and every virtual package
/// they ask for (`__glibc >=2.17`, say) provided by `virtual_packages`.
pub fn locked_records(
    spec: &Spec,
    recording: &ChannelRecording,
    subdir: Subdir,
    virtual_packages: &[GenericVirtualPackage],
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
    let stale = |what: String| {
        lock_error(
            &path,
            format!("{what}: the spec changed since the lock was written; build without --locked to solve again"),
        )
    };
    let locked_channels: Vec<&str> = env.channels().iter().map(|c| c.url.as_str()).collect();
    if locked_channels != spec.channels.iter().map(String::as_str).collect::<Vec<_>>() {
        return Err(stale(format!(
            "the spec's channels are [{}], the lock's [{}]",
            spec.channels.join(", "),
            locked_channels.join(", ")
        )));
    }
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
    // The packages the spec's dependencies need, through the locked
    // packages' own dependencies.
    let mut needed = vec![false; records.len()];
    let mut wanted: Vec<MatchSpec> = Vec::new();
    for dep in &spec.dependencies {
        if !records.iter().any(|r| dep.matches(r)) {
            return Err(stale(format!(
                "the spec asks for {dep}, which no locked package satisfies"
            )));
        }
        wanted.push(dep.clone());
    }
    while let Some(dep) = wanted.pop() {
        for (i, r) in records.iter().enumerate() {
            if !needed[i] && dep.matches(r) {
                needed[i] = true;
                for d in &r.package_record.depends {
                    let Ok(d) = MatchSpec::from_str(d, ParseStrictness::Lenient) else {
                        continue;
                    };
                    if is_virtual(&d) {
                        check_virtual(&path, r, &d, virtual_packages)?;
                    } else {
                        wanted.push(d);
                    }
                }
            }
        }
    }
    if let Some(extra) = records.iter().zip(&needed).find(|(_, n)| !**n) {
        return Err(stale(format!(
            "the lock holds {}, which nothing in the spec needs any more",
            extra.0.package_record.name.as_normalized()
        )));
    }
    Ok(records)
}

fn is_virtual(dep: &MatchSpec) -> bool {
    dep.name
        .as_exact()
        .is_some_and(|n| n.as_normalized().starts_with("__"))
}

/// A locked package's dependency on a virtual package is met by this
/// build's virtual packages (the base's C library may be older than the
/// one the lock was solved for).
fn check_virtual(
    path: &Path,
    record: &RepoDataRecord,
    dep: &MatchSpec,
    virtual_packages: &[GenericVirtualPackage],
) -> Result<()> {
    let met = virtual_packages.iter().any(|v| {
        dep.matches(&PackageRecord::new(
            v.name.clone(),
            v.version.clone(),
            v.build_string.clone(),
        ))
    });
    if met {
        return Ok(());
    }
    let provided: Vec<String> = virtual_packages.iter().map(|v| v.to_string()).collect();
    Err(lock_error(
        path,
        format!(
            "locked package {} needs {dep}, which this build does not provide (its virtual packages: {}); set image.virtual_packages or build without --locked to solve again",
            package_label(&record.package_record),
            if provided.is_empty() { "none".to_string() } else { provided.join(", ") }
        ),
    ))
}
