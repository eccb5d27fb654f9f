//! Tests of the offline conda channel fixture: determinism, package contents
//! as rattler reads them, repodata, and a real install with rattler's linker.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use dockyard_testsupport::conda_channel::{
    example_channel, Channel, FileContent, PackageFile, PackageFormat, PackageSpec, PLACEHOLDER,
};
use rattler_conda_types::package::{
    FileMode, HasPrefix, IndexJson, LinkJson, NoArchLinks, PackageFile as _, PathType, PathsJson,
};
use rattler_conda_types::{NoArchType, RepoData};

/// Every regular file under `root`, by relative path, with its bytes.
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root").to_path_buf();
                out.insert(rel, fs::read(&path).expect("read file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(rattler_digest::compute_bytes_digest::<rattler_digest::Sha256>(bytes))
}

fn extract(pkg: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    rattler_package_streaming::fs::extract(pkg, dir.path())
        .unwrap_or_else(|e| panic!("extract {}: {e}", pkg.display()));
    dir
}

fn package(channel: &Channel, subdir: &str, file: &str) -> PathBuf {
    let path = channel.dir().join(subdir).join(file);
    assert!(path.is_file(), "{} missing", path.display());
    path
}

#[test]
fn example_channel_is_byte_identical_across_builds() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let ca = example_channel(&a.path().join("one"));
    let cb = example_channel(&b.path().join("some/other/place"));
    let ta = tree(ca.dir());
    let tb = tree(cb.dir());
    let names: Vec<_> = ta.keys().map(|p| p.display().to_string()).collect();
    assert_eq!(
        names,
        [
            "linux-64/greet-1.0-h0_0.tar.bz2",
            "linux-64/greet-2.0-h0_0.conda",
            "linux-64/hello-1.0-h0_0.conda",
            "linux-64/libgreet-1.0-h0_0.conda",
            "linux-64/postlinker-1.0-h0_0.tar.bz2",
            "linux-64/python-3.12.0-h0_0_cpython.tar.bz2",
            "linux-64/repodata.json",
            "noarch/pyhello-0.1-pyh0_0.conda",
            "noarch/repodata.json",
        ]
    );
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (path, bytes) in &ta {
        assert!(
            bytes == &tb[path],
            "{} differs between builds",
            path.display()
        );
    }
    // Re-indexing changes nothing either.
    ca.index();
    assert_eq!(tree(ca.dir()), ta);
    assert!(ca.url().starts_with("file:///"), "{}", ca.url());
    assert!(ca.url().ends_with("/one"), "{}", ca.url());
}

#[test]
fn libgreet_records_text_and_binary_placeholders() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let channel = example_channel(tmp.path());
    let pkg = extract(&package(&channel, "linux-64", "libgreet-1.0-h0_0.conda"));

    let index = IndexJson::from_package_directory(pkg.path()).expect("index.json");
    assert_eq!(index.name.as_normalized(), "libgreet");
    assert_eq!(index.version.to_string(), "1.0");
    assert_eq!(index.build, "h0_0");
    assert_eq!(index.subdir.as_deref(), Some("linux-64"));
    assert_eq!(index.noarch, NoArchType::none());
    assert!(index.timestamp.is_some());

    let paths = PathsJson::from_package_directory(pkg.path()).expect("paths.json");
    assert_eq!(paths.paths_version, 1);
    let by_path: BTreeMap<_, _> = paths
        .paths
        .iter()
        .map(|e| (e.relative_path.display().to_string(), e))
        .collect();
    assert_eq!(
        by_path.keys().collect::<Vec<_>>(),
        ["lib/libgreet.bin", "lib/libgreet.txt"]
    );
    for (path, mode) in [
        ("lib/libgreet.txt", FileMode::Text),
        ("lib/libgreet.bin", FileMode::Binary),
    ] {
        let entry = by_path[path];
        let placeholder = entry
            .prefix_placeholder
            .as_ref()
            .unwrap_or_else(|| panic!("{path} has no placeholder"));
        assert_eq!(placeholder.placeholder, PLACEHOLDER);
        assert_eq!(placeholder.file_mode, mode, "{path}");
        assert_eq!(entry.path_type, PathType::HardLink);
        let bytes = fs::read(pkg.path().join(path)).expect("file in package");
        assert_eq!(entry.size_in_bytes, Some(bytes.len() as u64));
        assert_eq!(
            entry.sha256.map(hex::encode),
            Some(sha256_hex(&bytes)),
            "{path}"
        );
    }
    let text = fs::read_to_string(pkg.path().join("lib/libgreet.txt")).expect("text");
    assert_eq!(text, format!("data_dir={PLACEHOLDER}/share/greet\n"));
    let bin = fs::read(pkg.path().join("lib/libgreet.bin")).expect("bin");
    assert!(bin.contains(&0), "binary file has NUL bytes");
    let needle = format!("{PLACEHOLDER}/share/greet\0");
    assert!(bin.windows(needle.len()).any(|w| w == needle.as_bytes()));

    let has_prefix = HasPrefix::from_package_directory(pkg.path()).expect("has_prefix");
    let mut modes: Vec<_> = has_prefix
        .files
        .iter()
        .map(|f| {
            (
                f.relative_path.display().to_string(),
                f.file_mode,
                f.prefix.to_string(),
            )
        })
        .collect();
    modes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        modes,
        [
            (
                "lib/libgreet.bin".to_string(),
                FileMode::Binary,
                PLACEHOLDER.to_string()
            ),
            (
                "lib/libgreet.txt".to_string(),
                FileMode::Text,
                PLACEHOLDER.to_string()
            ),
        ]
    );
}

#[test]
fn greet_tar_bz2_has_an_executable_script_with_a_placeholder() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let channel = example_channel(tmp.path());
    let pkg = extract(&package(&channel, "linux-64", "greet-1.0-h0_0.tar.bz2"));
    let index = IndexJson::from_package_directory(pkg.path()).expect("index.json");
    assert_eq!(index.depends, ["libgreet >=1.0"]);
    let script = pkg.path().join("bin/greet");
    let mode = fs::metadata(&script)
        .expect("bin/greet")
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "bin/greet is executable ({mode:o})");
    let text = fs::read_to_string(&script).expect("script");
    assert!(text.starts_with("#!/bin/sh\n"));
    assert!(text.contains(&format!("PREFIX=\"{PLACEHOLDER}\"")));
    let paths = PathsJson::from_package_directory(pkg.path()).expect("paths.json");
    let entry = paths
        .paths
        .iter()
        .find(|e| e.relative_path == Path::new("bin/greet"))
        .expect("bin/greet in paths.json");
    let placeholder = entry.prefix_placeholder.as_ref().expect("placeholder");
    assert_eq!(placeholder.file_mode, FileMode::Text);
    let message = fs::read_to_string(pkg.path().join("share/greet/message.txt")).expect("message");
    assert_eq!(message, "hello from greet\n");

    let pkg2 = extract(&package(&channel, "linux-64", "greet-2.0-h0_0.conda"));
    let message = fs::read_to_string(pkg2.path().join("share/greet/message.txt")).expect("message");
    assert_eq!(message, "hello from greet 2\n");
}

#[test]
fn noarch_python_python_and_postlink_packages() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let channel = example_channel(tmp.path());

    let pkg = extract(&package(&channel, "noarch", "pyhello-0.1-pyh0_0.conda"));
    let index = IndexJson::from_package_directory(pkg.path()).expect("index.json");
    assert!(index.noarch.is_python());
    assert_eq!(index.subdir.as_deref(), Some("noarch"));
    assert_eq!(index.depends, ["python >=3.12"]);
    let paths = PathsJson::from_package_directory(pkg.path()).expect("paths.json");
    let listed: Vec<_> = paths
        .paths
        .iter()
        .map(|e| e.relative_path.clone())
        .collect();
    assert_eq!(listed, [PathBuf::from("site-packages/pyhello/__init__.py")]);
    let link = LinkJson::from_package_directory(pkg.path()).expect("link.json");
    match link.noarch {
        NoArchLinks::Python(eps) => {
            assert_eq!(eps.entry_points.len(), 1);
            assert_eq!(eps.entry_points[0].command, "pyhello");
        }
        NoArchLinks::Generic => panic!("link.json says generic"),
    }

    let py = extract(&package(
        &channel,
        "linux-64",
        "python-3.12.0-h0_0_cpython.tar.bz2",
    ));
    assert!(py.path().join("bin/python3.12").is_file());
    assert_eq!(
        fs::read_link(py.path().join("bin/python")).expect("bin/python symlink"),
        Path::new("python3.12")
    );
    assert!(py.path().join("lib/python3.12/os.py").is_file());
    let paths = PathsJson::from_package_directory(py.path()).expect("paths.json");
    let link = paths
        .paths
        .iter()
        .find(|e| e.relative_path == Path::new("bin/python"))
        .expect("bin/python listed");
    assert_eq!(link.path_type, PathType::SoftLink);

    let pl = extract(&package(
        &channel,
        "linux-64",
        "postlinker-1.0-h0_0.tar.bz2",
    ));
    let script = pl.path().join("bin/.postlinker-post-link.sh");
    assert!(fs::read_to_string(&script)
        .expect("post-link")
        .contains("post-link ran"));
    let paths = PathsJson::from_package_directory(pl.path()).expect("paths.json");
    assert!(paths
        .paths
        .iter()
        .any(|e| e.relative_path == Path::new("bin/.postlinker-post-link.sh")));
}

#[test]
fn repodata_parses_and_matches_the_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let channel = example_channel(tmp.path());
    let mut seen = Vec::new();
    for subdir in ["linux-64", "noarch"] {
        let bytes = fs::read(channel.dir().join(subdir).join("repodata.json")).expect("repodata");
        let repodata: RepoData = serde_json::from_slice(&bytes).expect("RepoData parses");
        assert_eq!(
            repodata.info.as_ref().and_then(|i| i.subdir.as_deref()),
            Some(subdir)
        );
        for (format, map) in [
            (PackageFormat::TarBz2, &repodata.packages),
            (PackageFormat::Conda, &repodata.conda_packages),
        ] {
            for (id, record) in map {
                let file = id.to_file_name();
                assert!(file.ends_with(format.extension()), "{file} under wrong key");
                let bytes = fs::read(channel.dir().join(subdir).join(&file)).expect("package");
                assert_eq!(
                    record.sha256.map(hex::encode),
                    Some(sha256_hex(&bytes)),
                    "{file}"
                );
                assert_eq!(
                    record.md5.map(hex::encode),
                    Some(hex::encode(rattler_digest::compute_bytes_digest::<
                        rattler_digest::Md5,
                    >(&bytes))),
                    "{file}"
                );
                assert_eq!(record.size, Some(bytes.len() as u64), "{file}");
                assert_eq!(record.subdir, subdir);
                assert!(record.timestamp.is_some());
                assert_eq!(
                    record.noarch.is_python(),
                    record.name.as_normalized() == "pyhello"
                );
                seen.push(format!(
                    "{}/{}={}={}",
                    subdir,
                    record.name.as_normalized(),
                    record.version,
                    record.build
                ));
            }
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "linux-64/greet=1.0=h0_0",
            "linux-64/greet=2.0=h0_0",
            "linux-64/hello=1.0=h0_0",
            "linux-64/libgreet=1.0=h0_0",
            "linux-64/postlinker=1.0=h0_0",
            "linux-64/python=3.12.0=h0_0_cpython",
            "noarch/pyhello=0.1=pyh0_0",
        ]
    );
}

#[test]
fn an_empty_channel_still_has_both_repodata_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let channel = Channel::new(tmp.path());
    channel.index();
    for subdir in ["linux-64", "noarch"] {
        let bytes = fs::read(channel.dir().join(subdir).join("repodata.json")).expect("repodata");
        let repodata: RepoData = serde_json::from_slice(&bytes).expect("RepoData parses");
        assert!(repodata.packages.is_empty() && repodata.conda_packages.is_empty());
    }
}

#[test]
fn bad_specs_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut channel = Channel::new(tmp.path());
    let mut pkg = PackageSpec::new("bad", "1.0");
    pkg.files = vec![PackageFile::text("etc/conf", "no placeholder here\n").with_placeholder()];
    let err = channel.try_add(&pkg).expect_err("placeholder missing");
    assert!(err.to_string().contains("does not contain"), "{err}");

    let mut pkg = PackageSpec::new("bad", "1.0");
    pkg.noarch_python = true;
    let err = channel
        .try_add(&pkg)
        .expect_err("noarch python in linux-64");
    assert!(err.to_string().contains("noarch"), "{err}");

    let mut pkg = PackageSpec::new("bad", "1.0");
    pkg.files = vec![PackageFile::text("../escape", "x")];
    assert!(channel.try_add(&pkg).is_err());

    let mut pkg = PackageSpec::new("ok", "1.0");
    pkg.format = PackageFormat::TarBz2;
    pkg.files = vec![PackageFile {
        path: "share/ok.bin".into(),
        content: FileContent::Binary(vec![0, 1, 2]),
        executable: false,
        has_placeholder: false,
    }];
    let path = channel.add(&pkg);
    assert!(path.ends_with("linux-64/ok-1.0-h0_0.tar.bz2"));
}

/// The packages install with rattler's linker: placeholders are rewritten to
/// the target prefix (which differs from the directory linked into), noarch
/// python files land in lib/python3.12/site-packages, and bin/greet runs.
#[tokio::test]
async fn rattler_links_the_packages_into_a_prefix() {
    use rattler::install::{link_package, InstallDriver, InstallOptions, PythonInfo};
    use rattler_conda_types::{prefix::Prefix, Subdir};

    let tmp = tempfile::tempdir().expect("tempdir");
    let channel = example_channel(&tmp.path().join("channel"));
    let python_info =
        PythonInfo::from_version(&"3.12.0".parse().expect("version"), None, Subdir::Linux64)
            .expect("python info");

    let packages = [
        ("linux-64", "libgreet-1.0-h0_0.conda"),
        ("linux-64", "greet-1.0-h0_0.tar.bz2"),
        ("linux-64", "python-3.12.0-h0_0_cpython.tar.bz2"),
        ("noarch", "pyhello-0.1-pyh0_0.conda"),
        ("linux-64", "hello-1.0-h0_0.conda"),
    ];
    let extracted: Vec<_> = packages
        .iter()
        .map(|(subdir, file)| extract(&package(&channel, subdir, file)))
        .collect();

    // 1. Staging directory with the in-image prefix /opt/conda.
    let stage = Prefix::create(tmp.path().join("stage")).expect("stage prefix");
    let driver = InstallDriver::default();
    for pkg in &extracted {
        link_package(
            pkg.path(),
            &stage,
            &driver,
            InstallOptions {
                target_prefix: Some(PathBuf::from("/opt/conda")),
                python_info: Some(python_info.clone()),
                platform: Some(Subdir::Linux64),
                ..InstallOptions::default()
            },
        )
        .await
        .expect("link package");
    }
    let root = stage.path();
    assert_eq!(
        fs::read_to_string(root.join("lib/libgreet.txt")).expect("libgreet.txt"),
        "data_dir=/opt/conda/share/greet\n"
    );
    let original = fs::read(extracted[0].path().join("lib/libgreet.bin")).expect("original");
    let bin = fs::read(root.join("lib/libgreet.bin")).expect("libgreet.bin");
    assert_eq!(
        bin.len(),
        original.len(),
        "binary patching keeps the length"
    );
    let needle = b"/opt/conda/share/greet\0";
    assert!(bin.windows(needle.len()).any(|w| w == needle));
    assert!(!bin
        .windows(PLACEHOLDER.len())
        .any(|w| w == PLACEHOLDER.as_bytes()));
    let greet = fs::read_to_string(root.join("bin/greet")).expect("bin/greet");
    assert!(greet.contains("PREFIX=\"/opt/conda\""), "{greet}");
    assert!(root
        .join("lib/python3.12/site-packages/pyhello/__init__.py")
        .is_file());
    let entry_point = fs::read_to_string(root.join("bin/pyhello")).expect("entry point");
    assert!(
        entry_point.starts_with("#!/opt/conda/bin/python3.12\n"),
        "{entry_point}"
    );

    // 2. Linked into its own prefix, bin/greet runs and finds its message.
    // A fresh driver: its clobber registry remembers the paths linked above.
    let live = Prefix::create(tmp.path().join("live")).expect("live prefix");
    let driver = InstallDriver::default();
    for pkg in &extracted[..2] {
        link_package(pkg.path(), &live, &driver, InstallOptions::default())
            .await
            .expect("link package");
    }
    let out = Command::new("/bin/sh")
        .arg(live.path().join("bin/greet"))
        .output()
        .expect("run bin/greet");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from greet\n");

    // 3. bin/hello, a static program, finds the message through its binary
    // placeholder, rewritten to this prefix (and fails without the file).
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        link_package(
            extracted[4].path(),
            &live,
            &driver,
            InstallOptions::default(),
        )
        .await
        .expect("link hello");
        let hello = live.path().join("bin/hello");
        let out = Command::new(&hello).output().expect("run bin/hello");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from greet\n");
        fs::remove_file(live.path().join("share/greet/message.txt")).expect("remove message");
        let out = Command::new(&hello).output().expect("run bin/hello");
        assert_eq!(out.status.code(), Some(1), "{out:?}");
    }
}

/// The channel the repository ships in examples/conda/channel is what the
/// fixture writes (regenerate it with the write_example_channel example).
#[test]
fn the_shipped_example_channel_is_the_fixture() {
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/conda/channel");
    let tmp = tempfile::tempdir().unwrap();
    dockyard_testsupport::conda_channel::example_channel(tmp.path());
    let files = |root: &std::path::Path| -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for sub in ["linux-64", "noarch"] {
            let mut names: Vec<_> = std::fs::read_dir(root.join(sub))
                .unwrap_or_else(|e| panic!("{}: {e}", root.join(sub).display()))
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect();
            names.sort();
            for n in names {
                out.push((
                    format!("{sub}/{n}"),
                    std::fs::read(root.join(sub).join(&n)).unwrap(),
                ));
            }
        }
        out
    };
    assert_eq!(files(&shipped), files(tmp.path()));
}
