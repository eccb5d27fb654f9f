//! How a build names its packages' channels where it records them. A
//! channel the spec names by a relative path (`./channel`) is kept
//! relative in the lock (`conda: ./channel/noarch/x.conda`, read back
//! from the spec's folder) and appears inside the image (conda-meta, the
//! SBOM) as `file:///` followed by that path (`file:///channel/`): neither
//! the lock nor the image then depends on where the checkout sits, so a
//! moved or second checkout builds the same digest. Every other channel
//! is recorded as it is.

use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use rattler_conda_types::RepoDataRecord;
use rattler_lock::{CondaPackageData, UrlOrPath};
use url::Url;

use crate::error::{Error, Result};
use crate::spec::Spec;

/// A channel named by a path relative to the spec's folder.
#[derive(Clone, Debug)]
struct RelativeChannel {
    /// The path as the lock keeps it: `./channel`, `../shared/channel`.
    lock_path: String,
    /// Where it is on this machine (`file:///…/channel/`).
    base: Url,
    /// How the image names it (`file:///channel/`).
    image_base: Url,
}

/// The spec's relatively named channels, and how each is recorded.
#[derive(Clone, Debug, Default)]
pub struct ChannelRecording {
    /// The spec's folder, absolute: where the lock's paths start.
    root: PathBuf,
    relative: Vec<RelativeChannel>,
}

/// `./a/../b/` → `./b`; leading `..` are kept (the lock's path).
fn lexical_relative(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.last().is_some_and(|p| p != "..") {
                    parts.pop();
                } else {
                    parts.push("..".into());
                }
            }
            Component::Normal(n) => parts.push(n.to_string_lossy().to_string()),
            Component::RootDir | Component::Prefix(_) => {}
        }
    }
    if parts.first().is_some_and(|p| p == "..") {
        parts.join("/")
    } else if parts.is_empty() {
        ".".into()
    } else {
        format!("./{}", parts.join("/"))
    }
}

impl ChannelRecording {
    /// The recording of `spec`'s channels (`channels`: the same, parsed).
    pub fn for_spec(spec: &Spec, channels: &[rattler_conda_types::Channel]) -> Result<Self> {
        let dir = spec.dir();
        let root = std::path::absolute(&dir).map_err(|e| Error::Io {
            path: dir.clone(),
            source: e,
        })?;
        let mut relative = Vec::new();
        for (written, channel) in spec.channels.iter().zip(channels) {
            let path = Path::new(written);
            let is_relative_path = !written.contains("://")
                && !written.starts_with('~')
                && path.is_relative()
                && channel.base_url.url().scheme() == "file";
            if !is_relative_path {
                continue;
            }
            let lock_path = lexical_relative(path);
            // `file:///` and the path without its leading `./` and `..`.
            let inside = lock_path
                .split('/')
                .filter(|p| *p != "." && *p != "..")
                .collect::<Vec<_>>()
                .join("/");
            let image_base = match inside.as_str() {
                "" => "file:///".to_string(),
                path => format!("file:///{path}/"),
            };
            let image_base = Url::parse(&image_base).map_err(|e| Error::Channel {
                channel: written.clone(),
                reason: format!("cannot be named inside the image: {e}"),
            })?;
            relative.push(RelativeChannel {
                lock_path,
                // A channel's base URL always ends in a slash.
                base: Url::from(channel.base_url.url().clone()),
                image_base,
            });
        }
        Ok(ChannelRecording { root, relative })
    }

    /// The relative channel `url` is in, and the rest of it
    /// (`noarch/x.conda`).
    fn relative_of<'a>(&'a self, url: &'a Url) -> Option<(&'a RelativeChannel, &'a str)> {
        self.relative.iter().find_map(|c| {
            url.as_str()
                .strip_prefix(c.base.as_str())
                .map(|rest| (c, rest))
        })
    }

    /// `record` as the image keeps it.
    pub fn image_record(&self, record: &RepoDataRecord) -> RepoDataRecord {
        let mut r = record.clone();
        if let Some((c, rest)) = self.relative_of(&record.url) {
            if let Ok(url) = c.image_base.join(rest) {
                r.url = url;
                r.channel = Some(c.image_base.to_string());
            }
        }
        r
    }

    /// `record` as the lock keeps it.
    pub fn lock_package(&self, record: &RepoDataRecord) -> CondaPackageData {
        let mut data = CondaPackageData::from(record.clone());
        if let (Some((c, rest)), CondaPackageData::Binary(binary)) =
            (self.relative_of(&record.url), &mut data)
        {
            if let Ok(location) = UrlOrPath::from_str(&format!("{}/{rest}", c.lock_path)) {
                binary.location = location;
                binary.channel = None;
            }
        }
        data
    }

    /// A package the lock keeps as a path (relative to the spec's folder)
    /// as a record to install from.
    pub fn locked_record(
        &self,
        lock: &Path,
        data: &rattler_lock::CondaBinaryData,
    ) -> Result<RepoDataRecord> {
        let bad = |reason: String| Error::Lock {
            lock: lock.to_path_buf(),
            reason,
        };
        let Some(path) = data.location.as_path() else {
            return RepoDataRecord::try_from(data).map_err(|e| bad(e.to_string()));
        };
        let text = path.as_str();
        let channel = self.relative.iter().find(|c| {
            text.strip_prefix(c.lock_path.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        });
        // An absolute path stays itself under join.
        let absolute = self.root.join(text);
        let url = Url::from_file_path(&absolute).map_err(|()| {
            bad(format!(
                "package location {text}: not a path a URL can name"
            ))
        })?;
        let channel = match channel {
            Some(c) => Some(c.base.to_string()),
            None if Path::new(text).is_absolute() => data.channel.as_ref().map(|c| c.to_string()),
            None => {
                return Err(bad(format!(
                    "package location {text} is in none of the spec's channels: the spec changed since the lock was written; build without --locked to solve again"
                )))
            }
        };
        Ok(RepoDataRecord {
            package_record: data.package_record.clone(),
            identifier: data.file_name.clone(),
            url,
            channel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::lexical_relative;
    use std::path::Path;

    #[test]
    fn relative_paths_are_kept_lexically() {
        assert_eq!(lexical_relative(Path::new("./channel")), "./channel");
        assert_eq!(lexical_relative(Path::new("channel/")), "./channel");
        assert_eq!(lexical_relative(Path::new("a/../b/./c")), "./b/c");
        assert_eq!(lexical_relative(Path::new("../shared/ch")), "../shared/ch");
        assert_eq!(lexical_relative(Path::new(".")), ".");
    }
}
