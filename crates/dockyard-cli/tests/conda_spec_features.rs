//! Features of `dockyard build` the other conda tests leave alone: the
//! spec's `files` (in the top layer, host stamps dropped, a missing one a
//! clear error), `entrypoint`/`workdir`/`user` in the config, the spec's
//! and the lock's sha256 labels, the default layer limit with 120
//! packages, what the build cache's keys hold (prefix, layering), the
//! SBOM's content against the channel's repodata, and the library entry
//! point `dockyard_conda::build` called from Rust.
//!
//! Every build here is on `scratch` (or a base made with `dockyard
//! mutate`), so no test needs a tool beyond the binary.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use dockyard_testsupport::conda_channel::{
    example_channel, Channel, PackageFile, PackageSpec, FIXED_TIMESTAMP_MS,
};
use dockyard_testsupport::{config_diff_ids as diff_ids, config_layer_history as layer_history};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

struct Fx {
    tmp: tempfile::TempDir,
}

impl Fx {
    /// A folder with the example channel in `channel/`.
    fn new() -> Fx {
        let fx = Fx {
            tmp: tempfile::tempdir().unwrap(),
        };
        example_channel(&fx.path("channel"));
        fx
    }
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    fn cmd_with_cache(&self, cache: &str) -> Command {
        let mut c = Command::cargo_bin("dockyard").unwrap();
        c.env("DOCKYARD_CACHE", self.path(cache))
            .env_remove("SOURCE_DATE_EPOCH")
            .current_dir(self.tmp.path());
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd_with_cache("cache").args(args).output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "dockyard {args:?} failed ({}):\n{}",
            out.status,
            text(&out.stderr)
        );
        out
    }
    fn spec(&self, name: &str, body: &str) -> String {
        let path = self.path(name);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, body).unwrap();
        name.to_string()
    }
    fn config(&self, src: &str) -> Value {
        serde_json::from_slice(&self.ok(&["inspect", "--config", src]).stdout).unwrap()
    }
    fn manifest(&self, src: &str) -> Value {
        serde_json::from_slice(&self.ok(&["inspect", "--raw", src]).stdout).unwrap()
    }
    /// A base of `n` layers (one `mutate --add` each), as a docker archive.
    fn base_of(&self, n: usize) -> String {
        let mut src = "scratch".to_string();
        for i in 0..n {
            let dir = self.path(&format!("base-layer-{i}"));
            std::fs::create_dir_all(dir.join("etc")).unwrap();
            std::fs::write(dir.join(format!("etc/base-{i}")), format!("layer {i}\n")).unwrap();
            let dest = format!("docker-archive:base-{i}.tar:base:{i}");
            self.ok(&[
                "mutate",
                &src,
                &dest,
                "--add",
                &format!("{}:/", dir.display()),
            ]);
            src = dest;
        }
        assert_eq!(diff_ids(&self.config(&src)).len(), n, "the base's layers");
        src
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn digest_of(out: &Output) -> String {
    text(&out.stdout)
        .trim()
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn labels(config: &Value) -> (String, String) {
    let l = &config["config"]["Labels"];
    (
        l["org.dockyard.conda.spec.sha256"]
            .as_str()
            .unwrap_or_else(|| panic!("no spec label: {config}"))
            .to_string(),
        l["org.dockyard.conda.lock.sha256"]
            .as_str()
            .unwrap_or_else(|| panic!("no lock label: {config}"))
            .to_string(),
    )
}

/// The `(reused, new)` counts of the build log's summary line.
fn reuse(out: &Output) -> (usize, usize) {
    let log = text(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.starts_with("built "))
        .unwrap_or_else(|| panic!("no summary line in: {log}"));
    let inner = line
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(inner, _)| inner)
        .unwrap_or_else(|| panic!("{line}"));
    let nums: Vec<usize> = inner
        .split(", ")
        .map(|part| part.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert!(
        inner.ends_with(" new") && inner.contains(" reused, "),
        "{line}"
    );
    (nums[0], nums[1])
}

/// One entry of a layer tarball.
#[derive(Debug)]
struct Entry {
    path: String,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    data: Vec<u8>,
}

/// The entries of every layer of the image in the OCI layout `dir` under
/// `tag`, bottom first, read from the layout's blobs.
fn layer_entries(fx: &Fx, dir: &str, tag: &str) -> Vec<Vec<Entry>> {
    let manifest = fx.manifest(&format!("oci:{dir}:{tag}"));
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let digest = l["digest"].as_str().unwrap();
            let media_type = l["mediaType"].as_str().unwrap();
            let hex = digest.strip_prefix("sha256:").unwrap();
            let blob = std::fs::read(fx.path(dir).join("blobs/sha256").join(hex)).unwrap();
            assert_eq!(
                sha256_hex(&blob),
                hex,
                "the blob is what the manifest names"
            );
            let plain: Vec<u8> = if blob.starts_with(&[0x1f, 0x8b]) {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&blob[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            } else {
                assert!(
                    !media_type.contains("zstd"),
                    "{media_type}: this test reads gzip or plain tar layers"
                );
                blob
            };
            let mut archive = tar::Archive::new(&plain[..]);
            archive
                .entries()
                .unwrap()
                .map(|e| {
                    let mut e = e.unwrap();
                    let path = e.path().unwrap().to_string_lossy().to_string();
                    let path = path
                        .trim_start_matches("./")
                        .trim_start_matches('/')
                        .trim_end_matches('/')
                        .to_string();
                    let header = e.header().clone();
                    let mut data = Vec::new();
                    e.read_to_end(&mut data).unwrap();
                    Entry {
                        path,
                        mode: header.mode().unwrap(),
                        uid: header.uid().unwrap(),
                        gid: header.gid().unwrap(),
                        mtime: header.mtime().unwrap(),
                        data,
                    }
                })
                .collect()
        })
        .collect()
}

/// The newest fixture package's time: every image of the example channel
/// is stamped with it.
const CREATED: u64 = FIXED_TIMESTAMP_MS / 1000;

// ---------------------------------------------------------------------------
// 1. image.files

const FILES_SPEC: &str = "name: files-env
channels:
  - ./channel
dependencies:
  - greet=1.0
image:
  base: scratch
  files:
    motd.txt: /etc/motd
    run.sh: /usr/local/bin/run.sh
    conf: /etc/app
";

#[test]
fn spec_files_land_in_the_top_layer_from_the_specs_folder_without_host_stamps() {
    let fx = Fx::new();
    // The spec and its files in a folder of their own, built from the
    // folder above: host paths start at the spec's folder. A decoy of the
    // same name where dockyard runs must not be taken.
    example_channel(&fx.path("proj/channel"));
    let spec = fx.spec("proj/env.yml", FILES_SPEC);
    std::fs::write(fx.path("motd.txt"), "the wrong motd\n").unwrap();
    std::fs::write(fx.path("proj/motd.txt"), "welcome to files-env\n").unwrap();
    std::fs::write(fx.path("proj/run.sh"), "#!/bin/sh\necho run\n").unwrap();
    std::fs::set_permissions(
        fx.path("proj/run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::create_dir_all(fx.path("proj/conf/nested")).unwrap();
    std::fs::write(fx.path("proj/conf/app.conf"), "level=1\n").unwrap();
    std::fs::write(fx.path("proj/conf/nested/deep.conf"), "depth=2\n").unwrap();

    let first = fx.ok(&["build", &spec, "--oci", "out"]);
    assert_eq!(reuse(&first), (0, 2), "greet and libgreet");

    // What a user gets.
    fx.ok(&["export", "oci:out:latest", "root"]);
    let root = fx.path("root");
    assert_eq!(read(&root.join("etc/motd")), "welcome to files-env\n");
    assert_eq!(
        read(&root.join("usr/local/bin/run.sh")),
        "#!/bin/sh\necho run\n"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(root.join("usr/local/bin/run.sh"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o755, "the executable bit is kept");
    assert_eq!(read(&root.join("etc/app/app.conf")), "level=1\n");
    assert_eq!(read(&root.join("etc/app/nested/deep.conf")), "depth=2\n");
    assert!(root.join("opt/conda/bin/greet").is_file());

    // Where they are: the top layer (with conda-meta and the SBOM), no
    // package layer; owned by root, stamped with the image's time.
    let layers = layer_entries(&fx, "out", "latest");
    assert_eq!(layers.len(), 3, "greet, libgreet, top");
    let ours = [
        "etc/motd",
        "usr/local/bin/run.sh",
        "etc/app/app.conf",
        "etc/app/nested/deep.conf",
    ];
    let (top, packages) = layers.split_last().unwrap();
    assert!(
        top.iter()
            .any(|e| e.path == "opt/conda/conda-meta/sbom.spdx.json"),
        "the last layer is the top layer"
    );
    for want in ours {
        let e = top
            .iter()
            .find(|e| e.path == want)
            .unwrap_or_else(|| panic!("{want} not in the top layer: {top:#?}"));
        assert_eq!((e.uid, e.gid), (0, 0), "{want}");
        assert_eq!(e.mtime, CREATED, "{want}: the image's time, not the host's");
        for layer in packages {
            assert!(
                !layer.iter().any(|p| p.path == want),
                "{want} in a package layer"
            );
        }
    }
    let run = top
        .iter()
        .find(|e| e.path == "usr/local/bin/run.sh")
        .unwrap();
    assert_eq!(run.mode & 0o777, 0o755);
    assert_eq!(run.data, b"#!/bin/sh\necho run\n");

    // The host files' times are no part of the image: touched, the same
    // digest. Their content is: changed, a new top layer only.
    let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    for f in ["proj/motd.txt", "proj/conf/app.conf"] {
        std::fs::File::options()
            .write(true)
            .open(fx.path(f))
            .unwrap()
            .set_modified(when)
            .unwrap();
    }
    let touched = fx.ok(&["build", &spec, "--oci", "out-touched"]);
    assert_eq!(digest_of(&touched), digest_of(&first));
    std::fs::write(fx.path("proj/motd.txt"), "a new motd\n").unwrap();
    let changed = fx.ok(&["build", &spec, "--oci", "out-changed"]);
    assert_ne!(digest_of(&changed), digest_of(&first));
    assert_eq!(reuse(&changed), (2, 0), "only the top layer changes");
    let before = diff_ids(&fx.config("oci:out:latest"));
    let after = diff_ids(&fx.config("oci:out-changed:latest"));
    assert_eq!(before[..2], after[..2]);
    assert_ne!(before[2], after[2]);
    let top = layer_entries(&fx, "out-changed", "latest").pop().unwrap();
    let motd = top.iter().find(|e| e.path == "etc/motd").unwrap();
    assert_eq!(motd.data, b"a new motd\n");
}

#[test]
fn a_missing_spec_file_or_a_relative_image_path_is_a_clear_error_and_nothing_is_written() {
    let fx = Fx::new();
    std::fs::create_dir_all(fx.path("proj")).unwrap();
    example_channel(&fx.path("proj/channel"));
    let spec = fx.spec(
        "proj/missing.yml",
        "channels: [./channel]\ndependencies: [greet=1.0]\nimage:\n  files:\n    not-there.txt: /etc/not-there\n",
    );
    // To a layout, an archive, and the store (the default).
    for to in [&["--oci", "bad-layout"][..], &["-o", "bad.tar"], &[]] {
        let out = fx.run(&[&["build", spec.as_str()][..], to].concat());
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{to:?}: {err}");
        assert!(err.contains("proj/not-there.txt"), "names the file: {err}");
        assert!(!err.contains("built "), "{err}");
        assert!(out.stdout.is_empty(), "no digest printed");
        if let Some(dest) = to.get(1) {
            assert!(!fx.path(dest).exists(), "{dest} written");
        }
    }
    let listed = text(&fx.ok(&["cache", "ls"]).stdout);
    assert!(
        !listed.contains("conda-env"),
        "nothing named in the store: {listed}"
    );
    // Found missing before the solve: no lock, no layer built.
    assert!(!fx.path("proj/missing.lock").exists(), "a lock was written");
    assert!(
        !fx.path("cache/dockyard/build-cache-conda-layers").exists(),
        "layers were built"
    );

    // An image path that is not absolute: refused when the spec is read,
    // naming the file, the line and the key.
    let spec = fx.spec(
        "proj/relative.yml",
        "channels: [./channel]\ndependencies: [greet=1.0]\nimage:\n  files:\n    motd.txt: etc/motd\n",
    );
    let out = fx.run(&["build", &spec, "--oci", "bad-layout"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in ["relative.yml", "line 5", "image.files", "must be absolute"] {
        assert!(err.contains(needle), "{needle:?} in {err}");
    }
    assert!(!fx.path("bad-layout").exists());
    assert!(!fx.path("proj/relative.lock").exists(), "nothing solved");
}

// ---------------------------------------------------------------------------
// 2. entrypoint, cmd, workdir, user

#[test]
fn entrypoint_cmd_workdir_and_user_go_into_the_config() {
    let fx = Fx::new();
    let base = "channels: [./channel]\ndependencies: [greet=1.0]\nimage:\n  base: scratch\n";
    let exec = fx.spec(
        "exec.yml",
        &format!(
            "{base}  entrypoint: [greet, --loud]\n  cmd: [--times, '2']\n  workdir: /work/dir\n  user: '1000:100'\n"
        ),
    );
    fx.ok(&["build", &exec, "--oci", "exec"]);
    let c = &fx.config("oci:exec:latest")["config"];
    assert_eq!(c["Entrypoint"], json!(["greet", "--loud"]));
    assert_eq!(c["Cmd"], json!(["--times", "2"]));
    assert_eq!(c["WorkingDir"], "/work/dir");
    assert_eq!(c["User"], "1000:100");

    // Strings are the shell form, run by /bin/sh -c.
    let shell = fx.spec(
        "shell.yml",
        &format!(
            "{base}  entrypoint: greet --loud | tr a-z A-Z\n  cmd: \"echo $HOME\"\n  user: app\n"
        ),
    );
    fx.ok(&["build", &shell, "--oci", "shell"]);
    let c = &fx.config("oci:shell:latest")["config"];
    assert_eq!(
        c["Entrypoint"],
        json!(["/bin/sh", "-c", "greet --loud | tr a-z A-Z"])
    );
    assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo $HOME"]));
    assert_eq!(c["User"], "app");

    // An entrypoint resets the base's Cmd (an argument to the base's own
    // entrypoint), as a Dockerfile's ENTRYPOINT does.
    fx.ok(&[
        "mutate",
        "scratch",
        "docker-archive:cmd-base.tar",
        "--cmd",
        "[\"old-cmd\"]",
    ]);
    let reset = fx.spec(
        "reset.yml",
        "channels: [./channel]\ndependencies: [greet=1.0]\nimage:\n  base: docker-archive:cmd-base.tar\n  entrypoint: [greet]\n",
    );
    fx.ok(&["build", &reset, "--oci", "reset"]);
    let c = &fx.config("oci:reset:latest")["config"];
    assert_eq!(c["Entrypoint"], json!(["greet"]));
    assert_eq!(c["Cmd"], json!([]), "{c}");

    // Unset, none of them is there.
    let plain = fx.spec("plain.yml", base);
    fx.ok(&["build", &plain, "--oci", "plain"]);
    let c = &fx.config("oci:plain:latest")["config"];
    for key in ["Entrypoint", "Cmd", "WorkingDir", "User"] {
        assert!(c[key].is_null(), "{key}: {c}");
    }
}

// ---------------------------------------------------------------------------
// 3. the spec's and the lock's sha256 labels

const LABEL_SPEC: &str = "name: labelled
channels:
  - ./channel
dependencies:
  - greet=1.0
  - postlinker
image:
  base: scratch
  env:
    MODE: a
";

#[test]
fn the_spec_label_follows_what_the_spec_says_and_the_lock_label_is_the_locks_sha256() {
    let fx = Fx::new();
    let build = |body: &str, out: &str| -> (String, String) {
        let spec = fx.spec("env.yml", body);
        fx.ok(&["build", &spec, "--oci", out]);
        let (spec_label, lock_label) = labels(&fx.config(&format!("oci:{out}:latest")));
        assert!(is_sha256_digest(&spec_label), "{spec_label}");
        assert!(is_sha256_digest(&lock_label), "{lock_label}");
        // The lock written beside the spec, byte for byte.
        let lock = std::fs::read(fx.path("env.lock")).unwrap();
        assert_eq!(
            lock_label,
            format!("sha256:{}", sha256_hex(&lock)),
            "{out}: the lock label is the sha256 of env.lock"
        );
        (spec_label, lock_label)
    };
    let (spec_a, lock_a) = build(LABEL_SPEC, "a");
    assert_ne!(spec_a, lock_a);

    // Comments, blank lines, flow style, other indentation and key order:
    // the same spec.
    let relaid = "# labelled, relaid\n\nimage:   # how the image is made\n    env: {MODE: a}\n    base: scratch\n\nname: labelled\ndependencies: [greet=1.0, postlinker]   # two packages\nchannels: [./channel]\n";
    assert_eq!(build(relaid, "relaid"), (spec_a.clone(), lock_a.clone()));

    // The base is no part of it either.
    let base = fx.base_of(1);
    let (spec_based, _) = build(
        &LABEL_SPEC.replace("base: scratch", &format!("base: {base}")),
        "based",
    );
    assert_eq!(
        spec_based, spec_a,
        "where the base is read from is left out"
    );

    // An env var: another spec, the same lock.
    let (spec_b, lock_b) = build(&LABEL_SPEC.replace("MODE: a", "MODE: b"), "b");
    assert_ne!(spec_b, spec_a);
    assert_eq!(lock_b, lock_a, "the same packages, the same lock");

    // A dependency: another spec and another lock.
    let (spec_c, lock_c) = build(&LABEL_SPEC.replace("greet=1.0", "greet=2.0"), "c");
    assert_ne!(spec_c, spec_a);
    assert_ne!(spec_c, spec_b);
    assert_ne!(lock_c, lock_a);
    let (spec_d, _) = build(&LABEL_SPEC.replace("  - postlinker\n", ""), "d");
    assert!(![&spec_a, &spec_b, &spec_c].contains(&&spec_d));

    // Back to the first: the first labels again.
    assert_eq!(build(LABEL_SPEC, "again"), (spec_a, lock_a));
}

// ---------------------------------------------------------------------------
// 4. the default layer limit

const MANY: usize = 120;

fn many_channel(dir: &Path) {
    let mut channel = Channel::new(dir);
    for i in 0..MANY {
        let mut pkg = PackageSpec::new(&format!("pkg{i:03}"), "1.0");
        pkg.files = vec![PackageFile::text(
            &format!("share/many/pkg{i:03}.txt"),
            &format!("package {i}\n"),
        )];
        channel.add(&pkg);
    }
    channel.index();
}

/// Checks an image of the 120 packages on a base of `base_layers` layers:
/// 100 layers in all, the most the default allows; the history names
/// every package once, the leftovers sharing the last package layer.
fn check_many(fx: &Fx, out: &Output, layout: &str, base_layers: usize) {
    // The default max_layers (100) counts the base and the top layer: room
    // for 100 - base - 1 package layers, all but the last of one package.
    let package_layers = 100 - base_layers - 1;
    let shared = MANY - (package_layers - 1);
    let log = text(&out.stderr);
    assert!(
        log.contains(&format!(
            "built {MANY} packages in {package_layers} layers ("
        )),
        "{log}"
    );
    let config = fx.config(&format!("oci:{layout}:latest"));
    assert_eq!(diff_ids(&config).len(), 100, "at most 100 layers, and used");
    let history = layer_history(&config);
    assert_eq!(history.len(), 100, "{history:#?}");
    let conda: Vec<&String> = history[base_layers..]
        .iter()
        .filter(|h| h.starts_with("conda: "))
        .collect();
    assert_eq!(conda.len(), package_layers + 1, "{history:#?}");
    assert!(
        conda.last().unwrap().starts_with("conda: environment "),
        "{history:#?}"
    );
    let mut named: Vec<String> = Vec::new();
    let mut sizes: Vec<usize> = Vec::new();
    for h in &conda[..package_layers] {
        let labels: Vec<String> = h
            .strip_prefix("conda: ")
            .unwrap()
            .split(", ")
            .map(str::to_string)
            .collect();
        sizes.push(labels.len());
        named.extend(labels);
    }
    assert_eq!(
        sizes.iter().filter(|&&s| s == 1).count(),
        package_layers - 1,
        "{sizes:?}"
    );
    assert_eq!(*sizes.last().unwrap(), shared, "{sizes:?}");
    let want: BTreeSet<String> = (0..MANY).map(|i| format!("pkg{i:03} 1.0 h0_0")).collect();
    assert_eq!(named.len(), MANY, "each package in one layer");
    assert_eq!(named.into_iter().collect::<BTreeSet<_>>(), want);

    // Every package's file is in the image.
    let root = fx.path(&format!("{layout}-root"));
    fx.ok(&[
        "export",
        &format!("oci:{layout}:latest"),
        &root.to_string_lossy(),
    ]);
    for i in 0..MANY {
        assert_eq!(
            read(&root.join(format!("opt/conda/share/many/pkg{i:03}.txt"))),
            format!("package {i}\n")
        );
    }
}

#[test]
fn one_hundred_and_twenty_packages_stay_within_the_default_hundred_layers() {
    let fx = Fx::new();
    many_channel(&fx.path("many"));
    let deps: String = (0..MANY).map(|i| format!("  - pkg{i:03}\n")).collect();
    let body =
        format!("name: many\nchannels:\n  - ./many\ndependencies:\n{deps}image:\n  base: BASE\n");
    let t = std::time::Instant::now();
    let spec = fx.spec("many.yml", &body.replace("BASE", "scratch"));
    let out = fx.ok(&["build", &spec, "--oci", "on-scratch"]);
    assert_eq!(reuse(&out), (0, 99));
    check_many(&fx, &out, "on-scratch", 0);
    eprintln!("120 packages on scratch: {:?}", t.elapsed());

    // On a base of 3 layers: 3 fewer package layers, still 100 in all. The
    // packages keeping a layer of their own are the same ones, so their
    // layers are reused.
    let base = fx.base_of(3);
    let spec = fx.spec("many-based.yml", &body.replace("BASE", &base));
    let out = fx.ok(&["build", &spec, "--oci", "on-base"]);
    check_many(&fx, &out, "on-base", 3);
    assert_eq!(reuse(&out), (95, 1));
    let base_ids = diff_ids(&fx.config(&base));
    let ids = diff_ids(&fx.config("oci:on-base:latest"));
    assert_eq!(ids[..3], base_ids[..], "on the base's layers");
    let on_scratch = diff_ids(&fx.config("oci:on-scratch:latest"));
    assert_eq!(ids[3..98], on_scratch[..95], "the same own layers");
    eprintln!("120 packages, both builds: {:?}", t.elapsed());
}

// ---------------------------------------------------------------------------
// 5. what the build cache's keys hold

const SPEC: &str = "name: greet-env
channels:
  - ./channel
dependencies:
  - greet=1.0
  - pyhello
  - postlinker
image:
  base: scratch
";

#[test]
fn the_prefix_and_the_layering_are_part_of_every_layers_cache_key() {
    let fx = Fx::new();
    let build = |name: &str, body: &str| {
        let spec = fx.spec(name, body);
        reuse(&fx.ok(&["build", &spec, "--oci", &format!("out-{name}")]))
    };
    assert_eq!(build("a.yml", SPEC), (0, 5));
    assert_eq!(build("a.yml", SPEC), (5, 0), "nothing changed: all reused");
    let other_prefix = format!("{SPEC}  prefix: /opt/other\n");
    assert_eq!(
        build("b.yml", &other_prefix),
        (0, 5),
        "another prefix: every package layer new"
    );
    fx.ok(&["export", "oci:out-b.yml:latest", "b-root"]);
    let greet = read(&fx.path("b-root/opt/other/bin/greet"));
    assert!(greet.contains("PREFIX=\"/opt/other\""), "{greet}");
    assert!(!fx.path("b-root/opt/conda").exists());
    assert_eq!(build("b.yml", &other_prefix), (5, 0));
    assert_eq!(build("a.yml", SPEC), (5, 0), "the first prefix's are kept");

    // single after per-package: one new layer, nothing reused; then reused.
    let single = format!("{SPEC}  layering: single\n");
    assert_eq!(build("c.yml", &single), (0, 1));
    assert_eq!(build("c.yml", &single), (1, 0));
    // Even for one package, whose layer holds the same files either way,
    // the layering is in the key.
    let one = "channels: [./channel]\ndependencies: [postlinker]\nimage:\n  base: scratch\n";
    assert_eq!(build("d.yml", one), (1, 0), "postlinker's layer from a.yml");
    assert_eq!(
        build("e.yml", &format!("{one}  layering: single\n")),
        (0, 1)
    );
    assert_eq!(
        build("e.yml", &format!("{one}  layering: single\n")),
        (1, 0)
    );
}

// ---------------------------------------------------------------------------
// 6. the SBOM

/// The channel's repodata records by package name (every subdir).
fn repodata(channel: &Path) -> BTreeMap<String, (String, String, Value)> {
    let mut out = BTreeMap::new();
    for subdir in ["linux-64", "noarch"] {
        let repodata: Value =
            serde_json::from_str(&read(&channel.join(subdir).join("repodata.json"))).unwrap();
        for key in ["packages", "packages.conda"] {
            for (file, record) in repodata[key].as_object().unwrap() {
                let name = record["name"].as_str().unwrap().to_string();
                let version = record["version"].as_str().unwrap();
                // greet has two versions; the spec asks for 1.0.
                if name == "greet" && version != "1.0" {
                    continue;
                }
                out.insert(name, (subdir.to_string(), file.clone(), record.clone()));
            }
        }
    }
    out
}

#[test]
fn the_sbom_lists_every_package_as_the_channel_describes_it() {
    let fx = Fx::new();
    let spec = fx.spec("env.yml", SPEC);
    fx.ok(&["build", &spec, "--oci", "out", "--sbom", "sbom.json"]);
    let beside = std::fs::read(fx.path("sbom.json")).unwrap();
    let sbom: Value = serde_json::from_slice(&beside).unwrap();
    let channel = repodata(&fx.path("channel"));

    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    assert_eq!(sbom["dataLicense"], "CC0-1.0");
    assert_eq!(sbom["SPDXID"], "SPDXRef-DOCUMENT");
    assert_eq!(sbom["name"], "greet-env");
    assert_eq!(
        sbom["creationInfo"]["created"], "2024-01-01T00:00:00Z",
        "the newest package's time"
    );
    assert!(sbom["creationInfo"]["creators"][0]
        .as_str()
        .unwrap()
        .starts_with("Tool: dockyard-"));
    // Named after the spec and the lock, as the labels say.
    let config = fx.config("oci:out:latest");
    let (spec_label, lock_label) = labels(&config);
    assert_eq!(
        sbom["documentNamespace"],
        format!(
            "https://spdx.org/spdxdocs/dockyard-conda-greet-env-{}-{}",
            spec_label.trim_start_matches("sha256:"),
            lock_label.trim_start_matches("sha256:")
        )
    );

    let packages = sbom["packages"].as_array().unwrap();
    let names: Vec<&str> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["greet", "libgreet", "postlinker", "pyhello", "python"]
    );
    let mut ids = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap();
        let (subdir, file, record) = &channel[name];
        let version = record["version"].as_str().unwrap();
        let build = record["build"].as_str().unwrap();
        assert_eq!(p["versionInfo"], version, "{name}");
        let license = if name == "python" {
            "Python-2.0"
        } else {
            "MIT"
        };
        assert_eq!(record["license"], license, "the fixture's license");
        assert_eq!(p["licenseDeclared"], license, "{name}");
        assert_eq!(p["licenseConcluded"], "NOASSERTION", "{name}");
        assert_eq!(p["copyrightText"], "NOASSERTION", "{name}");
        assert_eq!(p["filesAnalyzed"], false, "{name}");
        let sha = record["sha256"].as_str().unwrap();
        assert_eq!(sha.len(), 64);
        assert_eq!(
            p["checksums"],
            json!([{"algorithm": "SHA256", "checksumValue": sha}]),
            "{name}: the archive's sha256 from repodata.json"
        );
        // And that is the archive's: the channel's file hashes to it.
        let archive = std::fs::read(fx.path("channel").join(subdir).join(file)).unwrap();
        assert_eq!(sha256_hex(&archive), *sha, "{name}");
        assert_eq!(
            p["downloadLocation"],
            format!("file:///channel/{subdir}/{file}"),
            "{name}"
        );
        assert_eq!(
            p["comment"],
            format!("conda package {name} {version} {build} from file:///channel/"),
            "{name}: the build string and the channel"
        );
        assert_eq!(
            p["externalRefs"],
            json!([{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("pkg:conda/{name}@{version}?build={build}&subdir={subdir}"),
            }]),
            "{name}"
        );
        let id = format!("SPDXRef-Package-{name}-{version}-{build}").replace('_', "-");
        assert_eq!(p["SPDXID"], id, "{name}");
        ids.push(Value::String(id));
    }
    assert_eq!(sbom["documentDescribes"], Value::Array(ids));
    assert_eq!(
        sbom["packages"][3]["externalRefs"][0]["referenceLocator"],
        "pkg:conda/pyhello@0.1?build=pyh0_0&subdir=noarch"
    );

    // The SBOM in the image is the same file, byte for byte, in the top layer.
    fx.ok(&["export", "oci:out:latest", "root"]);
    let inside = std::fs::read(fx.path("root/opt/conda/conda-meta/sbom.spdx.json")).unwrap();
    assert_eq!(
        inside, beside,
        "the SBOM inside and beside are the same bytes"
    );
    let top = layer_entries(&fx, "out", "latest").pop().unwrap();
    let entry = top
        .iter()
        .find(|e| e.path == "opt/conda/conda-meta/sbom.spdx.json")
        .expect("the SBOM in the top layer");
    assert_eq!(entry.data, beside);
    assert_eq!(entry.mode & 0o777, 0o644);
}

// ---------------------------------------------------------------------------
// 7. the library entry point

#[test]
fn dockyard_conda_build_from_rust_writes_what_inspect_reads() {
    let fx = Fx::new();
    fx.spec("env.yml", SPEC);
    let store = fx.path("library-store");
    let dy = dockyard::Dockyard::new(dockyard::Options {
        store_root: Some(store.clone()),
        ..Default::default()
    });
    let spec = dockyard_conda::Spec::read(&fx.path("env.yml")).unwrap();
    let destination = format!("oci:{}:lib", fx.path("lib-out").display());
    let opts = dockyard_conda::BuildOptions {
        destination: Some(destination.clone()),
        ..Default::default()
    };
    let built = dockyard_conda::build(&dy, &spec, &opts).unwrap();

    assert_eq!(built.destination, destination);
    let mut names: Vec<String> = built
        .records
        .iter()
        .map(|r| r.package_record.name.as_normalized().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["greet", "libgreet", "postlinker", "pyhello", "python"]
    );
    assert_eq!(built.layers.len(), 5, "one layer per package");
    assert!(built
        .layers
        .iter()
        .all(|l| l.packages.len() == 1 && !l.reused));
    let layered: BTreeSet<&str> = built
        .layers
        .iter()
        .map(|l| l.packages[0].split(' ').next().unwrap())
        .collect();
    assert_eq!(layered.len(), 5);
    // Dependencies below dependents.
    let at = |n: &str| {
        built
            .layers
            .iter()
            .position(|l| l.packages[0].starts_with(&format!("{n} ")))
            .unwrap()
    };
    assert!(at("libgreet") < at("greet"));
    assert!(at("python") < at("pyhello"));
    assert_eq!(built.post_link, ["postlinker 1.0 h0_0"]);
    assert_eq!(built.lock.as_deref(), Some(fx.path("env.lock").as_path()));
    assert!(fx.path("env.lock").is_file());
    assert_eq!(
        built.image.layers().len(),
        6,
        "5 packages and the top layer"
    );

    // What was written is what the CLI reads there.
    let src = "oci:lib-out:lib";
    let raw = fx.ok(&["inspect", "--raw", src]).stdout;
    let written = built.written.digest.to_string();
    assert_eq!(written, format!("sha256:{}", sha256_hex(&raw)));
    let summary: Value =
        serde_json::from_slice(&fx.ok(&["inspect", "--json", src]).stdout).unwrap();
    assert_eq!(summary["digest"], written);
    let config = fx.config(src);
    let ids = diff_ids(&config);
    let image_ids: Vec<String> = built
        .image
        .layers()
        .iter()
        .map(|l| l.diff_id().to_string())
        .collect();
    assert_eq!(ids, image_ids);
    for (layer, id) in built.layers.iter().zip(&ids) {
        assert_eq!(layer.layer.diff_id().to_string(), *id);
    }

    // The given store was used (not the user's cache): its build cache
    // holds the five layers, and a second build takes them all.
    let table = store.join("dockyard/build-cache-conda-layers");
    assert_eq!(std::fs::read_dir(&table).unwrap().count(), 5);
    let again = dockyard_conda::build(&dy, &spec, &opts).unwrap();
    assert!(again.layers.iter().all(|l| l.reused));
    assert_eq!(again.written.digest, built.written.digest);

    // And the CLI builds the same image from the same spec.
    let cli = fx.ok(&["build", "env.yml", "--oci", "cli-out"]);
    assert_eq!(digest_of(&cli), written);
}
