//! Offline conda channels for tests: real `.conda` and `.tar.bz2` packages
//! written with `rattler_package_streaming`, and a `repodata.json` per
//! subdir, all byte-for-byte deterministic.
//!
//! A package is laid out the way conda-build lays it out: `info/index.json`,
//! `info/paths.json` (with `prefix_placeholder` and `file_mode` for files that
//! carry the build prefix), `info/has_prefix`, `info/files`, `info/link.json`
//! for `noarch: python`, and the files themselves. A `noarch: python`
//! package keeps its modules under `site-packages/` (and scripts under
//! `python-scripts/`); the installer moves them to the solved Python's
//! `lib/pythonX.Y/site-packages/` (and `bin/`).
//!
//! [`example_channel`] builds a small channel with every case an installer
//! must handle: text and binary placeholders, a shell tool, a stand-in Python
//! with a noarch Python package, a post-link script and two versions of one
//! package.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use rattler_conda_types::compression_level::CompressionLevel;
use rattler_conda_types::package::CondaArchiveType;
use rattler_digest::{Md5, Sha256};
use serde_json::{json, Value};

/// The prefix placeholder conda-build writes into files that refer to the
/// environment's prefix; installers replace it with the install prefix.
pub const PLACEHOLDER: &str = "/opt/anaconda1anaconda2anaconda3";

/// The fixed build time of every fixture package (2024-01-01T00:00:00Z), in
/// milliseconds as `index.json` and `repodata.json` record it. Archive member
/// mtimes use the same instant.
pub const FIXED_TIMESTAMP_MS: u64 = 1_704_067_200_000;

/// The archive format a package is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackageFormat {
    /// `.conda`: a zip holding `info-*.tar.zst` and `pkg-*.tar.zst`.
    Conda,
    /// `.tar.bz2`: the legacy single-tarball format.
    TarBz2,
}

impl PackageFormat {
    /// The file name extension, with its leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            PackageFormat::Conda => ".conda",
            PackageFormat::TarBz2 => ".tar.bz2",
        }
    }

    /// The `repodata.json` key the package is listed under.
    pub fn repodata_key(self) -> &'static str {
        match self {
            PackageFormat::Conda => "packages.conda",
            PackageFormat::TarBz2 => "packages",
        }
    }
}

/// What a file in a package holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileContent {
    /// A text file. With a placeholder it is patched in text mode.
    Text(String),
    /// A binary file. With a placeholder it is patched in binary mode (the
    /// NUL-terminated string holding the placeholder keeps its length).
    Binary(Vec<u8>),
    /// A symbolic link to this target (relative, e.g. `python3.12`);
    /// `paths.json` records it as `softlink`.
    Symlink(String),
}

/// One file of a package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageFile {
    /// Path relative to the prefix (or, for `noarch: python`, to the package
    /// root: `site-packages/...`, `python-scripts/...`), e.g. `bin/greet`.
    pub path: String,
    pub content: FileContent,
    /// Mode 0755 instead of 0644.
    pub executable: bool,
    /// The content contains [`PLACEHOLDER`]; recorded in `paths.json` and
    /// `info/has_prefix` with file mode `text` for [`FileContent::Text`] and
    /// `binary` for [`FileContent::Binary`].
    pub has_placeholder: bool,
}

impl PackageFile {
    /// A plain text file.
    pub fn text(path: &str, content: &str) -> Self {
        PackageFile {
            path: path.to_string(),
            content: FileContent::Text(content.to_string()),
            executable: false,
            has_placeholder: false,
        }
    }

    /// A plain binary file.
    pub fn binary(path: &str, content: &[u8]) -> Self {
        PackageFile {
            path: path.to_string(),
            content: FileContent::Binary(content.to_vec()),
            executable: false,
            has_placeholder: false,
        }
    }

    /// A symbolic link at `path` pointing to `target`.
    pub fn symlink(path: &str, target: &str) -> Self {
        PackageFile {
            path: path.to_string(),
            content: FileContent::Symlink(target.to_string()),
            executable: false,
            has_placeholder: false,
        }
    }

    /// The same file, executable.
    pub fn executable(mut self) -> Self {
        self.executable = true;
        self
    }

    /// The same file, marked as carrying [`PLACEHOLDER`].
    pub fn with_placeholder(mut self) -> Self {
        self.has_placeholder = true;
        self
    }

    fn file_mode(&self) -> Option<&'static str> {
        match (&self.content, self.has_placeholder) {
            (FileContent::Text(_), true) => Some("text"),
            (FileContent::Binary(_), true) => Some("binary"),
            _ => None,
        }
    }
}

/// A package to write into a [`Channel`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageSpec {
    pub name: String,
    pub version: String,
    pub build: String,
    pub build_number: u64,
    /// Match specs, e.g. `libgreet >=1.0`.
    pub depends: Vec<String>,
    pub license: Option<String>,
    /// `noarch: python` (then `subdir` must be `noarch`).
    pub noarch_python: bool,
    /// Entry points of a `noarch: python` package (`name = module:func`),
    /// written to `info/link.json`.
    pub entry_points: Vec<String>,
    /// `linux-64`, `noarch`, ...
    pub subdir: String,
    pub files: Vec<PackageFile>,
    /// The text of `bin/.NAME-post-link.sh`, if the package has one.
    pub post_link: Option<String>,
    pub format: PackageFormat,
}

impl PackageSpec {
    /// A `linux-64` `.conda` package with build `h0_0`, no files, no
    /// dependencies and license `MIT`.
    pub fn new(name: &str, version: &str) -> Self {
        PackageSpec {
            name: name.to_string(),
            version: version.to_string(),
            build: "h0_0".to_string(),
            build_number: 0,
            depends: Vec::new(),
            license: Some("MIT".to_string()),
            noarch_python: false,
            entry_points: Vec::new(),
            subdir: "linux-64".to_string(),
            files: Vec::new(),
            post_link: None,
            format: PackageFormat::Conda,
        }
    }

    /// `NAME-VERSION-BUILD.conda` or `.tar.bz2`.
    pub fn file_name(&self) -> String {
        format!(
            "{}-{}-{}{}",
            self.name,
            self.version,
            self.build,
            self.format.extension()
        )
    }

    /// `NAME-VERSION-BUILD`.
    pub fn dist_name(&self) -> String {
        format!("{}-{}-{}", self.name, self.version, self.build)
    }

    /// Every file of the package, the post-link script included, sorted by
    /// path.
    pub fn all_files(&self) -> Vec<PackageFile> {
        let mut files = self.files.clone();
        if let Some(script) = &self.post_link {
            files.push(
                PackageFile::text(&format!("bin/.{}-post-link.sh", self.name), script).executable(),
            );
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files
    }
}

/// A local conda channel in a directory, addressable as a `file://` URL.
#[derive(Clone, Debug)]
pub struct Channel {
    dir: PathBuf,
}

impl Channel {
    /// A channel in `dir` (created if missing). Existing packages in it are
    /// kept and indexed by [`Channel::index`].
    pub fn new(dir: &Path) -> Channel {
        fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("cannot create channel directory {}: {e}", dir.display()));
        let dir = fs::canonicalize(dir)
            .unwrap_or_else(|e| panic!("cannot resolve channel directory {}: {e}", dir.display()));
        Channel { dir }
    }

    /// The channel's directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `file:///abs/dir`.
    pub fn url(&self) -> String {
        url::Url::from_file_path(&self.dir)
            .unwrap_or_else(|()| panic!("{} is not an absolute path", self.dir.display()))
            .to_string()
    }

    /// Write `pkg` as `DIR/SUBDIR/NAME-VERSION-BUILD.{conda,tar.bz2}` and
    /// return its path. Call [`Channel::index`] afterwards.
    pub fn add(&mut self, pkg: &PackageSpec) -> PathBuf {
        self.try_add(pkg)
            .unwrap_or_else(|e| panic!("cannot write conda package {}: {e}", pkg.file_name()))
    }

    /// [`Channel::add`] returning errors.
    pub fn try_add(&mut self, pkg: &PackageSpec) -> io::Result<PathBuf> {
        validate(pkg)?;
        let subdir = self.dir.join(&pkg.subdir);
        fs::create_dir_all(&subdir)?;
        let staging = tempfile::tempdir()?;
        let paths = stage_package(pkg, staging.path())?;

        let timestamp = jiff::Timestamp::from_second((FIXED_TIMESTAMP_MS / 1000) as i64)
            .map_err(|e| io::Error::other(format!("fixed timestamp: {e}")))?;
        let out_path = subdir.join(pkg.file_name());
        // Write next to the destination, then rename: a reader never sees a
        // half-written package.
        let mut out = tempfile::NamedTempFile::new_in(&subdir)?;
        match pkg.format {
            PackageFormat::Conda => rattler_package_streaming::write::write_conda_package(
                &mut out,
                staging.path(),
                &paths,
                CompressionLevel::Default,
                // One worker: the zstd frame layout must not depend on the
                // machine's core count.
                Some(1),
                &pkg.dist_name(),
                Some(&timestamp),
                None,
            )?,
            PackageFormat::TarBz2 => rattler_package_streaming::write::write_tar_bz2_package(
                &mut out,
                staging.path(),
                &paths,
                CompressionLevel::Default,
                Some(&timestamp),
                None,
            )?,
        }
        out.as_file().sync_all()?;
        out.persist(&out_path).map_err(|e| e.error)?;
        fs::set_permissions(&out_path, fs::Permissions::from_mode(0o644))?;
        Ok(out_path)
    }

    /// Write `repodata.json` in every subdir of the channel; `linux-64` and
    /// `noarch` always exist, empty if they hold no package.
    pub fn index(&self) {
        self.try_index()
            .unwrap_or_else(|e| panic!("cannot index channel {}: {e}", self.dir.display()));
    }

    /// [`Channel::index`] returning errors.
    pub fn try_index(&self) -> io::Result<()> {
        let mut subdirs = vec!["linux-64".to_string(), "noarch".to_string()];
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !subdirs.contains(&name) {
                    subdirs.push(name);
                }
            }
        }
        for subdir in subdirs {
            let dir = self.dir.join(&subdir);
            fs::create_dir_all(&dir)?;
            let repodata = repodata_for(&dir, &subdir)?;
            let mut bytes = serde_json::to_vec_pretty(&repodata).map_err(io::Error::other)?;
            bytes.push(b'\n');
            let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
            tmp.write_all(&bytes)?;
            tmp.as_file().sync_all()?;
            let path = dir.join("repodata.json");
            tmp.persist(&path).map_err(|e| e.error)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        }
        Ok(())
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn validate(pkg: &PackageSpec) -> io::Result<()> {
    if pkg.noarch_python && pkg.subdir != "noarch" {
        return Err(invalid(format!(
            "{}: a noarch: python package belongs in subdir noarch, not {}",
            pkg.name, pkg.subdir
        )));
    }
    if !pkg.entry_points.is_empty() && !pkg.noarch_python {
        return Err(invalid(format!(
            "{}: entry points are only written for noarch: python packages",
            pkg.name
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for file in pkg.all_files() {
        let path = Path::new(&file.path);
        if file.path.is_empty()
            || path.is_absolute()
            || path
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(invalid(format!(
                "{}: bad file path {:?}",
                pkg.name, file.path
            )));
        }
        if path.starts_with("info") {
            return Err(invalid(format!(
                "{}: {} is in info/, which the builder writes",
                pkg.name, file.path
            )));
        }
        if !seen.insert(file.path.clone()) {
            return Err(invalid(format!(
                "{}: duplicate file {}",
                pkg.name, file.path
            )));
        }
        if file.has_placeholder {
            let bytes: &[u8] = match &file.content {
                FileContent::Text(t) => t.as_bytes(),
                FileContent::Binary(b) => b,
                FileContent::Symlink(_) => {
                    return Err(invalid(format!(
                        "{}: symlink {} cannot carry a placeholder",
                        pkg.name, file.path
                    )))
                }
            };
            if !bytes
                .windows(PLACEHOLDER.len())
                .any(|w| w == PLACEHOLDER.as_bytes())
            {
                return Err(invalid(format!(
                    "{}: {} is marked has_placeholder but does not contain {PLACEHOLDER}",
                    pkg.name, file.path
                )));
            }
        }
    }
    Ok(())
}

fn hex_digest<D: rattler_digest::digest::Digest + Default>(bytes: &[u8]) -> String {
    hex::encode(rattler_digest::compute_bytes_digest::<D>(bytes))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, bytes)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn json_bytes(value: &Value) -> io::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Lay the package out in `root` and return the absolute paths to archive.
fn stage_package(pkg: &PackageSpec, root: &Path) -> io::Result<Vec<PathBuf>> {
    let files = pkg.all_files();
    let mut archived = Vec::new();
    let mut paths_entries = Vec::new();
    let mut has_prefix = String::new();

    for file in &files {
        let dest = root.join(&file.path);
        let mut entry = BTreeMap::new();
        entry.insert("_path", json!(file.path));
        match &file.content {
            FileContent::Symlink(target) => {
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent)?;
                }
                symlink(target, &dest)?;
                entry.insert("path_type", json!("softlink"));
            }
            FileContent::Text(_) | FileContent::Binary(_) => {
                let bytes: &[u8] = match &file.content {
                    FileContent::Text(t) => t.as_bytes(),
                    FileContent::Binary(b) => b,
                    FileContent::Symlink(_) => unreachable!("handled above"),
                };
                write_file(&dest, bytes, if file.executable { 0o755 } else { 0o644 })?;
                entry.insert("path_type", json!("hardlink"));
                entry.insert("sha256", json!(hex_digest::<Sha256>(bytes)));
                entry.insert("size_in_bytes", json!(bytes.len()));
                if let Some(mode) = file.file_mode() {
                    entry.insert("file_mode", json!(mode));
                    entry.insert("prefix_placeholder", json!(PLACEHOLDER));
                    has_prefix.push_str(&format!("{PLACEHOLDER} {mode} {}\n", file.path));
                }
            }
        }
        paths_entries.push(Value::from(serde_json::Map::from_iter(
            entry.into_iter().map(|(k, v)| (k.to_string(), v)),
        )));
        archived.push(dest);
    }

    let info = root.join("info");
    fs::create_dir_all(&info)?;

    let mut index = serde_json::Map::new();
    let mut put = |k: &str, v: Value| {
        index.insert(k.to_string(), v);
    };
    // Keys in alphabetical order, as conda-build writes them.
    if pkg.subdir != "noarch" {
        let (platform, arch) = pkg
            .subdir
            .split_once('-')
            .map(|(p, a)| {
                let arch = match a {
                    "64" => "x86_64",
                    "32" => "x86",
                    other => other,
                };
                (p.to_string(), arch.to_string())
            })
            .unwrap_or_else(|| (pkg.subdir.clone(), String::new()));
        put("arch", json!(arch));
        put("build", json!(pkg.build));
        put("build_number", json!(pkg.build_number));
        put("depends", json!(pkg.depends));
        if let Some(license) = &pkg.license {
            put("license", json!(license));
        }
        put("name", json!(pkg.name));
        put("platform", json!(platform));
    } else {
        put("arch", Value::Null);
        put("build", json!(pkg.build));
        put("build_number", json!(pkg.build_number));
        put("depends", json!(pkg.depends));
        if let Some(license) = &pkg.license {
            put("license", json!(license));
        }
        put("name", json!(pkg.name));
        put(
            "noarch",
            json!(if pkg.noarch_python {
                "python"
            } else {
                "generic"
            }),
        );
        put("platform", Value::Null);
    }
    put("subdir", json!(pkg.subdir));
    put("timestamp", json!(FIXED_TIMESTAMP_MS));
    put("version", json!(pkg.version));
    write_file(
        &info.join("index.json"),
        &json_bytes(&Value::Object(index))?,
        0o644,
    )?;
    archived.push(info.join("index.json"));

    let paths_json = json!({ "paths": paths_entries, "paths_version": 1 });
    write_file(&info.join("paths.json"), &json_bytes(&paths_json)?, 0o644)?;
    archived.push(info.join("paths.json"));

    let mut files_list = String::new();
    for file in &files {
        files_list.push_str(&file.path);
        files_list.push('\n');
    }
    write_file(&info.join("files"), files_list.as_bytes(), 0o644)?;
    archived.push(info.join("files"));

    if !has_prefix.is_empty() {
        write_file(&info.join("has_prefix"), has_prefix.as_bytes(), 0o644)?;
        archived.push(info.join("has_prefix"));
    }

    if pkg.noarch_python {
        let entry_points = pkg.entry_points.clone();
        let link = json!({
            "noarch": { "entry_points": entry_points, "type": "python" },
            "package_metadata_version": 1,
        });
        write_file(&info.join("link.json"), &json_bytes(&link)?, 0o644)?;
        archived.push(info.join("link.json"));
    }

    let about = json!({
        "license": pkg.license,
        "summary": format!("{} test fixture package", pkg.name),
    });
    write_file(&info.join("about.json"), &json_bytes(&about)?, 0o644)?;
    archived.push(info.join("about.json"));

    Ok(archived)
}

/// The `repodata.json` of one subdir directory: each package's
/// `info/index.json` plus `md5`, `sha256` and `size` of the archive.
fn repodata_for(dir: &Path, subdir: &str) -> io::Result<Value> {
    let mut names: Vec<String> = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".conda") || name.ends_with(".tar.bz2") {
            names.push(name);
        }
    }
    names.sort();

    let mut packages = serde_json::Map::new();
    let mut conda_packages = serde_json::Map::new();
    for name in names {
        let path = dir.join(&name);
        let bytes = fs::read(&path)?;
        let archive_type = CondaArchiveType::try_from(path.as_path())
            .ok_or_else(|| invalid(format!("{name}: not a conda package name")))?;
        let index_bytes = rattler_package_streaming::seek::read_package_file_content(
            io::Cursor::new(&bytes),
            archive_type,
            "info/index.json",
        )
        .map_err(|e| io::Error::other(format!("{name}: cannot read info/index.json: {e}")))?;
        let index: BTreeMap<String, Value> = serde_json::from_slice(&index_bytes)
            .map_err(|e| io::Error::other(format!("{name}: bad info/index.json: {e}")))?;
        let mut record = index;
        record.insert("md5".into(), json!(hex_digest::<Md5>(&bytes)));
        record.insert("sha256".into(), json!(hex_digest::<Sha256>(&bytes)));
        record.insert("size".into(), json!(bytes.len()));
        let record = Value::Object(record.into_iter().collect());
        match archive_type {
            CondaArchiveType::Conda => conda_packages.insert(name, record),
            CondaArchiveType::TarBz2 => packages.insert(name, record),
        };
    }

    Ok(json!({
        "info": { "subdir": subdir },
        "packages": packages,
        "packages.conda": conda_packages,
        "removed": [],
        "repodata_version": 1,
    }))
}

/// The packages of [`example_channel`], for tests that need to tweak one
/// (say, a new build of `libgreet`) and write it into another channel.
pub fn example_packages() -> Vec<PackageSpec> {
    let mut packages = Vec::new();

    // libgreet: text and binary placeholders.
    let mut libgreet = PackageSpec::new("libgreet", "1.0");
    libgreet.format = PackageFormat::Conda;
    let mut bin = Vec::new();
    bin.extend_from_slice(b"\x7fGRT\x00\x01\x00\x00");
    bin.extend_from_slice(PLACEHOLDER.as_bytes());
    bin.extend_from_slice(b"/share/greet\x00");
    bin.extend_from_slice(&[0u8; 16]);
    bin.extend_from_slice(b"version=1.0\x00\xff\xfe\x00\x01");
    libgreet.files = vec![
        PackageFile::text(
            "lib/libgreet.txt",
            &format!("data_dir={PLACEHOLDER}/share/greet\n"),
        )
        .with_placeholder(),
        PackageFile::binary("lib/libgreet.bin", &bin).with_placeholder(),
    ];
    packages.push(libgreet);

    // greet 1.0 and 2.0: a shell tool finding its data through a text placeholder.
    for (version, message, format) in [
        ("1.0", "hello from greet\n", PackageFormat::TarBz2),
        ("2.0", "hello from greet 2\n", PackageFormat::Conda),
    ] {
        let mut greet = PackageSpec::new("greet", version);
        greet.format = format;
        greet.depends = vec!["libgreet >=1.0".to_string()];
        greet.files = vec![
            PackageFile::text("bin/greet", &greet_script())
                .executable()
                .with_placeholder(),
            PackageFile::text("share/greet/message.txt", message),
        ];
        packages.push(greet);
    }

    // hello 1.0: greet's message printed by a static program, so an image
    // of it runs on scratch; the message's path is a binary placeholder.
    let mut hello = PackageSpec::new("hello", "1.0");
    hello.format = PackageFormat::Conda;
    hello.depends = vec!["greet".to_string()];
    hello.files = vec![PackageFile::binary("bin/hello", &static_hello_program())
        .executable()
        .with_placeholder()];
    packages.push(hello);

    // python 3.12.0: a stand-in interpreter, enough for solving and noarch
    // python linking (bin/python3.12, lib/python3.12/).
    let mut python = PackageSpec::new("python", "3.12.0");
    python.build = "h0_0_cpython".to_string();
    python.license = Some("Python-2.0".to_string());
    python.format = PackageFormat::TarBz2;
    python.files = vec![
        PackageFile::text(
            "bin/python3.12",
            "#!/bin/sh\n\
             # Stand-in for CPython 3.12 in dockyard's test channel: it runs nothing.\n\
             case \"$1\" in\n\
             --version|-V) echo 'Python 3.12.0' ;;\n\
             *) echo 'stand-in python 3.12.0 (dockyard test fixture)' ;;\n\
             esac\n",
        )
        .executable(),
        PackageFile::symlink("bin/python", "python3.12"),
        PackageFile::symlink("bin/python3", "python3.12"),
        PackageFile::text("lib/python3.12/os.py", ""),
    ];
    packages.push(python);

    // pyhello: noarch: python, files under site-packages/.
    let mut pyhello = PackageSpec::new("pyhello", "0.1");
    pyhello.build = "pyh0_0".to_string();
    pyhello.subdir = "noarch".to_string();
    pyhello.noarch_python = true;
    pyhello.format = PackageFormat::Conda;
    pyhello.depends = vec!["python >=3.12".to_string()];
    pyhello.entry_points = vec!["pyhello = pyhello:main".to_string()];
    pyhello.files = vec![PackageFile::text(
        "site-packages/pyhello/__init__.py",
        "def main():\n    print(\"hello from pyhello\")\n",
    )];
    packages.push(pyhello);

    // postlinker: a post-link script (installers must not run it here).
    let mut postlinker = PackageSpec::new("postlinker", "1.0");
    postlinker.format = PackageFormat::TarBz2;
    postlinker.files = vec![PackageFile::text(
        "share/postlinker/README",
        "postlinker ships a post-link script\n",
    )];
    postlinker.post_link = Some(
        "#!/bin/sh\necho \"postlinker post-link ran\" >> \"$PREFIX/.messages.txt\"\n".to_string(),
    );
    packages.push(postlinker);

    packages
}

/// A static x86-64 Linux program of 300 bytes, with no C library: it
/// prints `PLACEHOLDER/share/greet/message.txt` (its path a NUL-terminated
/// string after the code, which a binary placeholder rewrite shortens and
/// pads) and exits 0, or exits 1 if the file cannot be read or written
/// out. The code, assembled from (Intel syntax):
///
/// ```text
///       lea rdi, [rip + path]   ; open(path, O_RDONLY)
///       xor esi, esi
///       mov eax, 2
///       syscall
///       test eax, eax
///       js fail
///       mov r12d, eax           ; the file
/// again:
///       mov edi, r12d           ; read(file, 0x500000, 4096)
///       mov esi, 0x500000
///       mov edx, 4096
///       xor eax, eax
///       syscall
///       test rax, rax
///       js fail
///       jz done
///       mov rdx, rax            ; write(1, 0x500000, n)
///       mov edi, 1
///       mov esi, 0x500000
///       mov eax, 1
///       syscall
///       test rax, rax
///       js fail
///       jmp again
/// done: xor edi, edi            ; exit(0)
///       mov eax, 60
///       syscall
/// fail: mov edi, 1              ; exit(1)
///       mov eax, 60
///       syscall
/// path:
/// ```
///
/// One read-execute segment at 0x400000 holds the headers, the code and the
/// path; a second, read-write and not in the file, is the buffer at
/// 0x500000.
fn static_hello_program() -> Vec<u8> {
    const CODE: [u8; 95] = [
        0x48, 0x8d, 0x3d, 0x58, 0x00, 0x00, 0x00, 0x31, 0xf6, 0xb8, 0x02, 0x00, 0x00, 0x00, 0x0f,
        0x05, 0x85, 0xc0, 0x78, 0x3f, 0x41, 0x89, 0xc4, 0x44, 0x89, 0xe7, 0xbe, 0x00, 0x00, 0x50,
        0x00, 0xba, 0x00, 0x10, 0x00, 0x00, 0x31, 0xc0, 0x0f, 0x05, 0x48, 0x85, 0xc0, 0x78, 0x26,
        0x74, 0x1b, 0x48, 0x89, 0xc2, 0xbf, 0x01, 0x00, 0x00, 0x00, 0xbe, 0x00, 0x00, 0x50, 0x00,
        0xb8, 0x01, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x48, 0x85, 0xc0, 0x78, 0x0b, 0xeb, 0xcd, 0x31,
        0xff, 0xb8, 0x3c, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xbf, 0x01, 0x00, 0x00, 0x00, 0xb8, 0x3c,
        0x00, 0x00, 0x00, 0x0f, 0x05,
    ];
    const BASE: u64 = 0x40_0000;
    const BUFFER: u64 = 0x50_0000;
    const HEADERS: u64 = 64 + 2 * 56;
    let path = format!("{PLACEHOLDER}/share/greet/message.txt\0");
    let size = HEADERS + CODE.len() as u64 + path.len() as u64;
    let mut elf = Vec::new();
    // ELF header: 64-bit, little-endian, version 1, System V; an x86-64
    // executable entered at the code, its program headers right after.
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&2u16.to_le_bytes());
    elf.extend_from_slice(&0x3eu16.to_le_bytes());
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(BASE + HEADERS).to_le_bytes());
    elf.extend_from_slice(&64u64.to_le_bytes());
    elf.extend_from_slice(&0u64.to_le_bytes());
    elf.extend_from_slice(&0u32.to_le_bytes());
    for half in [64u16, 56, 2, 64, 0, 0] {
        elf.extend_from_slice(&half.to_le_bytes());
    }
    // PT_LOAD segments: (flags, file size, address, memory size).
    for (flags, file_size, address, memory) in [(5u32, size, BASE, size), (6, 0, BUFFER, 4096)] {
        elf.extend_from_slice(&1u32.to_le_bytes());
        elf.extend_from_slice(&flags.to_le_bytes());
        for field in [0, address, address, file_size, memory, 0x1000u64] {
            elf.extend_from_slice(&field.to_le_bytes());
        }
    }
    elf.extend_from_slice(&CODE);
    elf.extend_from_slice(path.as_bytes());
    elf
}

fn greet_script() -> String {
    format!(
        "#!/bin/sh\n\
         # greet: print the message this package installed.\n\
         PREFIX=\"{PLACEHOLDER}\"\n\
         while IFS= read -r line; do\n\
         \x20   printf '%s\\n' \"$line\"\n\
         done < \"$PREFIX/share/greet/message.txt\"\n"
    )
}

/// A small realistic channel in `dir`, written and indexed:
///
/// - `libgreet 1.0` (linux-64, `.conda`): `lib/libgreet.txt` with a text
///   placeholder, `lib/libgreet.bin` with a binary (C-string) placeholder.
/// - `greet 1.0` (linux-64, `.tar.bz2`) and `greet 2.0` (`.conda`), both
///   depending on `libgreet >=1.0`: `bin/greet`, a `#!/bin/sh` script that
///   prints `$PREFIX/share/greet/message.txt`, its prefix set by a text
///   placeholder; the message is `hello from greet\n` or `hello from greet 2\n`.
/// - `hello 1.0` (linux-64, `.conda`), depending on `greet`: `bin/hello`, a
///   300-byte static x86-64 program that prints greet's message, its path
///   set by a binary placeholder (an image of it runs on scratch).
/// - `python 3.12.0` (linux-64, `.tar.bz2`): a stand-in (`bin/python3.12` sh
///   script, `bin/python` and `bin/python3` symlinks, `lib/python3.12/os.py`).
/// - `pyhello 0.1` (`noarch: python`, `.conda`), depending on `python >=3.12`:
///   `site-packages/pyhello/__init__.py` and an entry point `pyhello`.
/// - `postlinker 1.0` (linux-64, `.tar.bz2`) with `bin/.postlinker-post-link.sh`.
pub fn example_channel(dir: &Path) -> Channel {
    let mut channel = Channel::new(dir);
    for pkg in example_packages() {
        channel.add(&pkg);
    }
    channel.index();
    channel
}
