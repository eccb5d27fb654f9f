//! The environment spec: conda's `environment.yml` (`name`, `channels`,
//! `dependencies`) plus an `image:` section saying how the image is built.
//! Errors name the file, the line and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rattler_conda_types::{MatchSpec, ParseStrictness};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where a conda environment goes in the image, unless the spec says.
pub const DEFAULT_PREFIX: &str = "/opt/conda";
/// The conda platform built for, unless the spec or `--platform` says.
pub const DEFAULT_PLATFORM: &str = "linux-64";
/// Layers an image may have (the base's included) before the least-shared
/// packages are grouped.
pub const DEFAULT_MAX_LAYERS: usize = 100;

/// How the environment's packages become layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layering {
    /// One layer per package (reused across rebuilds and images), plus one
    /// top layer; grouped above `max_layers`.
    #[default]
    PerPackage,
    /// Every package in one layer, plus the top layer.
    Single,
    /// Packages grouped into at most `max_layers` layers in all.
    Grouped,
}

impl Layering {
    pub fn name(self) -> &'static str {
        match self {
            Layering::PerPackage => "per-package",
            Layering::Single => "single",
            Layering::Grouped => "grouped",
        }
    }
}

/// A command as the spec may write it: a list (exec form) or a string
/// (shell form, run by `/bin/sh -c`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Command {
    Exec(Vec<String>),
    Shell(String),
}

impl Command {
    pub fn argv(&self) -> Vec<String> {
        match self {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
        }
    }
}

/// The `image:` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSection {
    /// Any source dockyard reads, or `scratch` (the default).
    pub base: Option<String>,
    pub name: Option<String>,
    pub tag: Option<String>,
    pub prefix: Option<String>,
    pub platform: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub entrypoint: Option<Command>,
    pub cmd: Option<Command>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Host path (relative to the spec's folder) → image path.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    pub layering: Layering,
    pub max_layers: Option<usize>,
    /// Virtual packages the solve assumes (`__glibc=2.36`); by default
    /// [`default_virtual_packages`].
    pub virtual_packages: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: Option<String>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    dependencies: Vec<serde_yaml::Value>,
    #[serde(default)]
    image: ImageSection,
    /// conda's own key; kept out of the image (the prefix is `image.prefix`).
    #[allow(dead_code)]
    prefix: Option<String>,
    /// conda accepts it; it has no meaning for an image.
    #[allow(dead_code)]
    variables: Option<BTreeMap<String, String>>,
}

/// Settings over a spec's own: what `build -b/--prefix/-i` give.
#[derive(Clone, Debug, Default)]
pub struct SpecOverrides {
    /// The base (any source dockyard reads); a relative path in it is
    /// taken from the current directory, not from the spec's folder.
    pub base: Option<String>,
    pub prefix: Option<String>,
    /// `NAME[:TAG]`.
    pub image: Option<String>,
}

/// A transport string with a relative path made absolute (from the
/// current directory), so the spec's folder does not change its meaning.
fn absolute_source(source: &str) -> String {
    for transport in ["docker-archive:", "oci:", "oci-archive:"] {
        if let Some(rest) = source.strip_prefix(transport) {
            if let Ok(abs) = std::path::absolute(rest) {
                return format!("{transport}{}", abs.display());
            }
        }
    }
    source.to_string()
}

/// A parsed, checked spec.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The file it was read from (errors and relative paths start there).
    pub path: PathBuf,
    pub name: Option<String>,
    /// As written (names, URLs, or paths relative to the spec's folder).
    pub channels: Vec<String>,
    pub dependencies: Vec<MatchSpec>,
    pub image: ImageSection,
}

/// The line (1-based) where `needle` first appears in `text`, if it does.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

impl Spec {
    /// Read and check a spec file.
    pub fn read(path: &Path) -> Result<Spec> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        Spec::parse(path, &text)
    }

    /// Check `text` as the spec at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Spec> {
        let bad = |line: Option<usize>, key: &str, message: String| Error::Spec {
            file: path.to_path_buf(),
            line,
            key: key.to_string(),
            message,
        };
        let raw: RawSpec = serde_yaml::from_str(text).map_err(|e| {
            let message = e.to_string();
            // serde names the key in its message ("unknown field `x`").
            let key = message.split('`').nth(1).unwrap_or("").to_string();
            bad(e.location().map(|l| l.line()), &key, message)
        })?;
        let mut dependencies = Vec::new();
        for dep in &raw.dependencies {
            match dep {
                serde_yaml::Value::String(s) => {
                    let spec = MatchSpec::from_str(s, ParseStrictness::Lenient).map_err(|e| {
                        bad(
                            line_of(text, s),
                            "dependencies",
                            format!("{s:?} is not a conda match spec: {e}"),
                        )
                    })?;
                    dependencies.push(spec);
                }
                serde_yaml::Value::Mapping(m)
                    if m.contains_key(serde_yaml::Value::String("pip".into())) =>
                {
                    return Err(bad(
                        line_of(text, "pip:"),
                        "dependencies.pip",
                        "pip dependencies are not supported yet: list conda packages only".into(),
                    ));
                }
                other => {
                    return Err(bad(
                        None,
                        "dependencies",
                        format!("expected a match spec string, found {other:?}"),
                    ))
                }
            }
        }
        if dependencies.is_empty() {
            return Err(bad(
                line_of(text, "dependencies"),
                "dependencies",
                "no packages to install".into(),
            ));
        }
        let image = raw.image;
        if let Some(prefix) = &image.prefix {
            if !prefix.starts_with('/') || prefix.split('/').any(|c| c == "..") || prefix == "/" {
                return Err(bad(
                    line_of(text, "prefix:"),
                    "image.prefix",
                    format!("{prefix:?} must be an absolute path below / without '..'"),
                ));
            }
        }
        if image.max_layers == Some(0) || image.max_layers == Some(1) {
            return Err(bad(
                line_of(text, "max_layers"),
                "image.max_layers",
                "must be at least 2 (the packages and the top layer)".into(),
            ));
        }
        for (host, dest) in &image.files {
            if !dest.starts_with('/') {
                return Err(bad(
                    line_of(text, host),
                    "image.files",
                    format!("{host}: the image path {dest:?} must be absolute"),
                ));
            }
        }
        if raw.channels.is_empty() {
            return Err(bad(
                line_of(text, "channels"),
                "channels",
                "name at least one channel".into(),
            ));
        }
        Ok(Spec {
            path: path.to_path_buf(),
            name: raw.name,
            channels: raw.channels,
            dependencies,
            image,
        })
    }

    /// The spec a command line means (`build --channel C PACKAGE...`):
    /// the same as a file saying the same (the base, prefix and name are
    /// set on the result, as flags set them over a file's).
    pub fn from_command_line(channels: &[String], packages: &[String]) -> Result<Spec> {
        let mut doc = serde_yaml::Mapping::new();
        let list = |items: &[String]| {
            serde_yaml::Value::Sequence(items.iter().map(|s| s.as_str().into()).collect())
        };
        doc.insert("channels".into(), list(channels));
        doc.insert("dependencies".into(), list(packages));
        let text = serde_yaml::to_string(&doc).map_err(|e| Error::Spec {
            file: PathBuf::from("the command line"),
            line: None,
            key: String::new(),
            message: e.to_string(),
        })?;
        // Relative channel paths start from the current directory.
        Spec::parse(Path::new("./the command line"), &text)
    }

    /// The sha256 of what the spec says, as the image's labels record it:
    /// its keys and values, not its layout or comments, so a spec file and
    /// the command line saying the same (`build -c C PACKAGE...`) build
    /// the same image. The base is left out: where it was read from is no
    /// part of the image, and its layers are in the manifest.
    pub fn content_sha256(&self) -> String {
        let mut image = serde_json::to_value(&self.image)
            .unwrap_or_else(|_| unreachable!("the image section always serialises"));
        if let Some(fields) = image.as_object_mut() {
            fields.remove("base");
        }
        let content = serde_json::json!({
            "name": self.name,
            "channels": self.channels,
            "dependencies": self.dependencies.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "image": image,
        });
        dockyard_image::Digest::sha256_of(content.to_string().as_bytes()).to_string()
    }

    /// Settings given beside the spec (command-line flags, keyword
    /// arguments), over its own.
    pub fn set_overrides(&mut self, o: &SpecOverrides) {
        if let Some(base) = &o.base {
            self.image.base = Some(absolute_source(base));
        }
        if let Some(prefix) = &o.prefix {
            self.image.prefix = Some(prefix.clone());
        }
        if let Some(image) = &o.image {
            match image.rsplit_once(':') {
                Some((name, tag)) if !tag.contains('/') => {
                    self.image.name = Some(name.to_string());
                    self.image.tag = Some(tag.to_string());
                }
                _ => self.image.name = Some(image.clone()),
            }
        }
    }

    /// The folder relative paths in the spec start from.
    pub fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    pub fn prefix(&self) -> &str {
        self.image.prefix.as_deref().unwrap_or(DEFAULT_PREFIX)
    }

    pub fn max_layers(&self) -> usize {
        self.image.max_layers.unwrap_or(DEFAULT_MAX_LAYERS)
    }
}

/// What the solve assumes when the spec names no virtual packages: a
/// Linux with glibc 2.28 (what conda-forge builds for) on the target
/// platform's architecture (not this machine's).
pub fn default_virtual_packages(subdir: rattler_conda_types::Subdir) -> Vec<String> {
    let mut list = vec![
        "__unix".into(),
        "__linux=5.10".into(),
        "__glibc=2.28".into(),
    ];
    if let Some(arch) = subdir.arch() {
        list.push(format!("__archspec=1={arch}"));
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Spec> {
        Spec::parse(Path::new("env.yml"), text)
    }

    #[test]
    fn reads_environment_yml_with_an_image_section() {
        let s = parse(
            "name: demo\nchannels:\n  - ./channel\ndependencies:\n  - greet >=1.0\n  - python=3.12\nimage:\n  base: scratch\n  env:\n    MODE: prod\n  cmd: greet\n  layering: single\n",
        )
        .unwrap();
        assert_eq!(s.dependencies.len(), 2);
        assert_eq!(s.image.layering, Layering::Single);
        assert_eq!(
            s.image.cmd.as_ref().map(Command::argv),
            Some(vec!["/bin/sh".into(), "-c".into(), "greet".into()])
        );
        assert_eq!(s.prefix(), DEFAULT_PREFIX);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse("channels: [c]\ndependencies: [a]\nimage:\n  bsae: x\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("env.yml") && e.contains("line 4") && e.contains("bsae"),
            "{e}"
        );
        let e = parse("channels: [c]\ndependencies:\n  - a\n  - pip:\n    - requests\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4") && e.contains("pip"), "{e}");
        let e = parse("channels: [c]\ndependencies:\n  - ok\n  - 'bad >=>= 1'\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4") && e.contains("bad >=>= 1"), "{e}");
        let e = parse("channels: [c]\ndependencies: [a]\nimage:\n  prefix: opt/x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("image.prefix"), "{e}");
        let e = parse("channels: [c]\ndependencies: [a]\nimage:\n  layering: fancy\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4") && e.contains("fancy"), "{e}");
    }
}
