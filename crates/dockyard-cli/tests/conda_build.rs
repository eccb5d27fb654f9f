//! `dockyard build`: a conda environment spec solved, installed (prefix
//! placeholders rewritten to the in-image prefix) and layered one package
//! per layer on a busybox base, from a real local channel of `.conda` and
//! `.tar.bz2` packages. The image runs in dockerd; skopeo and umoci read
//! it; rebuilds reuse every unchanged package layer; the lock and the
//! SBOM say what is inside.

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use dockyard_testsupport::conda_channel::{example_channel, PLACEHOLDER};
use dockyard_testsupport::{busybox_rootfs, require_tool, run_ok, Dockerd};
use serde_json::Value;

struct Fx {
    tmp: tempfile::TempDir,
}

impl Fx {
    /// A folder with the example channel in `channel/` and a busybox base
    /// archive `busybox.tar`.
    fn new() -> Option<Fx> {
        let fx = Fx {
            tmp: tempfile::tempdir().unwrap(),
        };
        example_channel(&fx.path("channel"));
        let rootfs = busybox_rootfs(&fx.path("base"))?;
        let out = fx.run(&[
            "mutate",
            "scratch",
            "docker-archive:busybox.tar:busybox:1",
            "--add",
            &format!("{}:/", rootfs.display()),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        Some(fx)
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
        std::fs::write(self.path(name), body).unwrap();
        name.to_string()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn digest_of(out: &Output) -> String {
    text(&out.stdout)
        .trim()
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}

const SPEC: &str = "name: greet-env
channels:
  - ./channel
dependencies:
  - greet=1.0
  - pyhello
  - postlinker
image:
  base: docker-archive:busybox.tar
  name: greet-env
  tag: '1'
  cmd: [greet]
  env:
    MODE: test
  labels:
    org.example.team: data
";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn builds_an_environment_that_runs_with_its_prefix_rewritten() {
    let Some(fx) = Fx::new() else { return };
    let spec = fx.spec("env.yml", SPEC);
    let out = fx.ok(&["build", &spec, "-o", "env.tar", "--sbom", "sbom.json"]);
    let log = text(&out.stderr);
    assert!(log.contains("postlinker"), "post-link warning: {log}");

    // The rootfs as a user gets it.
    fx.ok(&["export", "docker-archive:env.tar", "root"]);
    let root = fx.path("root");
    let prefix = root.join("opt/conda");
    let greet = read(&prefix.join("bin/greet"));
    assert!(greet.contains("PREFIX=\"/opt/conda\""), "{greet}");
    assert!(!greet.contains(PLACEHOLDER), "{greet}");
    let cache = fx.path("cache").display().to_string();
    assert!(!greet.contains(&cache), "the staging path leaked: {greet}");
    assert_eq!(
        read(&prefix.join("lib/libgreet.txt")),
        "data_dir=/opt/conda/share/greet\n"
    );
    let bin = std::fs::read(prefix.join("lib/libgreet.bin")).unwrap();
    let at = bin
        .windows(b"/opt/conda/share/greet\0".len())
        .position(|w| w == b"/opt/conda/share/greet\0")
        .expect("binary placeholder rewritten to the prefix, NUL-terminated");
    assert!(at > 0);
    assert!(
        !bin.windows(PLACEHOLDER.len())
            .any(|w| w == PLACEHOLDER.as_bytes()),
        "binary placeholder left"
    );
    // noarch: python in the solved python's site-packages.
    assert!(prefix
        .join("lib/python3.12/site-packages/pyhello/__init__.py")
        .is_file());
    // The post-link script was not run.
    assert!(!prefix.join(".messages.txt").exists());
    // conda-meta: a record per package, no path of the building machine.
    let meta: Vec<PathBuf> = std::fs::read_dir(prefix.join("conda-meta"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().map(|e| e == "json").unwrap_or(false))
        .collect();
    let records: Vec<Value> = meta
        .iter()
        .filter(|p| !p.ends_with("sbom.spdx.json"))
        .map(|p| serde_json::from_str(&read(p)).unwrap())
        .collect();
    assert_eq!(records.len(), 5, "{meta:?}");
    for (p, r) in meta.iter().zip(&records) {
        let s = r.to_string();
        // The channel's URL stays (it is where the package came from);
        // the cache, the staging directory and the extracted package do not.
        assert!(!s.contains(&cache), "{}: {s}", p.display());
        for host_field in [
            "extracted_package_dir",
            "package_tarball_full_path",
            "\"link\"",
        ] {
            assert!(
                !s.contains(host_field),
                "{}: {host_field} in {s}",
                p.display()
            );
        }
        assert!(r["files"]
            .as_array()
            .map(|f| !f.is_empty())
            .unwrap_or(false));
    }
    // The SBOM, inside and beside.
    let sbom: Value =
        serde_json::from_str(&read(&prefix.join("conda-meta/sbom.spdx.json"))).unwrap();
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    let names: Vec<&str> = sbom["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["greet", "libgreet", "postlinker", "pyhello", "python"]
    );
    assert!(
        sbom["packages"][0]["checksums"][0]["checksumValue"]
            .as_str()
            .unwrap()
            .len()
            == 64
    );
    let beside: Value = serde_json::from_str(&read(&fx.path("sbom.json"))).unwrap();
    assert_eq!(beside, sbom);
    // The lock beside the spec, in rattler's format.
    let lock = read(&fx.path("env.lock"));
    assert!(
        lock.contains("greet-1.0") && lock.contains("version:"),
        "{lock}"
    );

    // Config: PATH with the prefix first, CONDA_PREFIX, the spec's env,
    // labels, a history entry per package layer.
    let out = fx.ok(&["inspect", "--config", "docker-archive:env.tar"]);
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        env.iter().any(|e| e.starts_with("PATH=/opt/conda/bin:")),
        "{env:?}"
    );
    assert!(env.contains(&"CONDA_PREFIX=/opt/conda"), "{env:?}");
    assert!(env.contains(&"MODE=test"), "{env:?}");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["greet"]));
    assert_eq!(config["config"]["Labels"]["org.example.team"], "data");
    assert!(config["config"]["Labels"]["org.dockyard.conda.lock.sha256"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let history: Vec<&str> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str())
        .collect();
    assert!(
        history.iter().any(|h| h.starts_with("conda: greet 1.0 ")),
        "{history:?}"
    );
    // busybox + 5 packages + the top layer.
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 7);

    // Independent readers accept it.
    if require_tool("skopeo") {
        run_ok(std::process::Command::new("skopeo").args([
            "copy",
            &format!("docker-archive:{}", fx.path("env.tar").display()),
            &format!("oci:{}:x", fx.path("skopeo-layout").display()),
        ]));
    }
    if require_tool("umoci") {
        fx.ok(&["build", &spec, "--oci", "layout"]);
        run_ok(std::process::Command::new("umoci").args([
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:1", fx.path("layout").display()),
            &fx.path("bundle").display().to_string(),
        ]));
        assert!(fx.path("bundle/rootfs/opt/conda/bin/greet").is_file());
    }
    // And it runs: the tool finds its files under /opt/conda.
    if let Some(daemon) = Dockerd::start() {
        run_ok(daemon.docker().args(["load", "-i"]).arg(fx.path("env.tar")));
        let out = run_ok(
            daemon
                .docker()
                .args(["run", "--rm", "--network", "none", "greet-env:1"]),
        );
        assert_eq!(text(&out.stdout), "hello from greet\n");
    }
}

/// The layer diff_ids of an image.
fn diff_ids(fx: &Fx, src: &str) -> Vec<String> {
    let out = fx.ok(&["inspect", "--config", src]);
    let config: Value = serde_json::from_slice(&out.stdout).unwrap();
    config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d.as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_rebuild_after_one_package_changes_reuses_every_other_layer_and_pushes_only_the_new() {
    use dockyard_testsupport::registry::{Fault, FaultProxy, Mode, RegistryGuard};
    let Some(fx) = Fx::new() else { return };
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let proxy = FaultProxy::start(registry.port(), Fault::None);
    let spec = fx.spec("env.yml", SPEC);
    let first = fx.ok(&[
        "build",
        &spec,
        "--push",
        &format!("{}/envs/greet:1", proxy.host()),
    ]);
    assert!(
        text(&first.stderr).contains("0 reused, 5 new"),
        "{}",
        text(&first.stderr)
    );
    // A blob upload ends with the PUT that names its digest (streamed
    // uploads send PATCHes before it).
    let finished = |r: &dockyard_testsupport::registry::Recorded| {
        r.is_upload() && r.method == "PUT" && r.path.contains("digest=")
    };
    let uploads_first = proxy.requests().iter().filter(|r| finished(r)).count();
    assert!(
        uploads_first >= 8,
        "busybox, 5 packages, top, config: {uploads_first}"
    );
    proxy.clear_requests();

    // greet 1.0 → 2.0: one package layer and the top layer are new.
    fx.spec("env.yml", &SPEC.replace("greet=1.0", "greet=2.0"));
    let second = fx.ok(&[
        "build",
        &spec,
        "--push",
        &format!("{}/envs/greet:2", proxy.host()),
    ]);
    let log = text(&second.stderr);
    assert!(log.contains("4 reused, 1 new"), "{log}");
    let uploaded: Vec<String> = proxy
        .requests()
        .iter()
        .filter(|r| finished(r))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    // The greet 2.0 layer, the top layer and the config: nothing else.
    assert_eq!(uploaded.len(), 3, "{uploaded:#?}");
    // The layers taken from the build cache were asked about while greet
    // 2.0 was installed (busybox and 4 packages), and none twice: the push
    // was handed the answer.
    let heads: Vec<String> = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "HEAD" && r.path.contains("/blobs/"))
        .map(|r| r.path.clone())
        .collect();
    let distinct: std::collections::BTreeSet<&String> = heads.iter().collect();
    assert_eq!(
        distinct.len(),
        heads.len(),
        "a blob asked twice: {heads:#?}"
    );
    assert!(heads.len() >= 5, "{heads:#?}");

    // The stored image's layers: all but greet's and the top one are the
    // first build's, byte for byte.
    let one = diff_ids(&fx, &format!("docker://{}/envs/greet:1", registry.host()));
    let two = diff_ids(&fx, &format!("docker://{}/envs/greet:2", registry.host()));
    let shared = two.iter().filter(|d| one.contains(d)).count();
    assert_eq!(
        (one.len(), two.len(), shared),
        (7, 7, 5),
        "{one:#?}\n{two:#?}"
    );

    // Cached packages are not installed again, and that changes no byte:
    // back to greet 1.0 gives the first image, and greet 2.0 built with a
    // fresh cache gives the second.
    fx.spec("env.yml", SPEC);
    let third = fx.ok(&[
        "build",
        &spec,
        "--push",
        &format!("{}/envs/greet:3", proxy.host()),
    ]);
    assert!(
        text(&third.stderr).contains("5 reused, 0 new"),
        "{}",
        text(&third.stderr)
    );
    assert_eq!(digest_of(&third), digest_of(&first));
    fx.spec("env.yml", &SPEC.replace("greet=1.0", "greet=2.0"));
    let cold = fx
        .cmd_with_cache("fresh-cache")
        .args([
            "build",
            &spec,
            "--push",
            &format!("{}/envs/greet:4", proxy.host()),
        ])
        .output()
        .unwrap();
    assert!(cold.status.success(), "{}", text(&cold.stderr));
    assert_eq!(digest_of(&cold), digest_of(&second));
}

#[test]
fn the_same_spec_and_lock_give_the_same_digest_with_fresh_caches_and_other_clocks() {
    let Some(fx) = Fx::new() else { return };
    let spec = fx.spec("env.yml", SPEC);
    // Each build under its own umask too: what the installer writes (its
    // history, CACHEDIR.TAG) must not carry the building user's.
    let build = |cache: &str, epoch: &str, tmp: &str, umask: &str| {
        std::fs::create_dir_all(fx.path(tmp)).unwrap();
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\"")])
            .arg(assert_cmd::cargo::cargo_bin("dockyard"))
            .args(["build", &spec, "--oci", &format!("out-{cache}")])
            .env("DOCKYARD_CACHE", fx.path(cache))
            .env("SOURCE_DATE_EPOCH", epoch)
            .env("TMPDIR", fx.path(tmp))
            .current_dir(fx.tmp.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        digest_of(&out)
    };
    let a = build("cache-a", "1", "tmp-a", "022");
    let b = build("cache-b", "1700000000", "tmp-b", "077");
    assert_eq!(a, b, "two fresh caches, two clocks, two umasks: one digest");
    // --locked installs the lock: the same image again.
    let out = fx.ok(&["build", &spec, "--locked", "--oci", "out-locked"]);
    assert_eq!(digest_of(&out), a);

    // Package layers do not depend on the base: on scratch they are the
    // same blobs as on busybox. Nor does the top layer (conda-meta and the
    // SBOM), since where the base was read from is no part of the spec's
    // sha256.
    let on_scratch = fx.spec(
        "scratch.yml",
        &SPEC.replace("base: docker-archive:busybox.tar", "base: scratch"),
    );
    fx.ok(&["build", &on_scratch, "--oci", "out-scratch"]);
    let busybox = diff_ids(&fx, "oci:out-cache-a:1");
    let scratch = diff_ids(&fx, "oci:out-scratch:1");
    let shared = scratch.iter().filter(|d| busybox.contains(d)).count();
    assert_eq!(
        (scratch.len(), shared),
        (6, 6),
        "the five package layers and the top layer are shared"
    );
}

#[test]
fn a_moved_checkout_builds_the_same_digest_from_its_lock_and_cache() {
    let Some(fx) = Fx::new() else { return };
    let spec = fx.spec("env.yml", SPEC);
    let first = digest_of(&fx.ok(&["build", &spec, "--oci", "out"]));
    let lock = read(&fx.path("env.lock"));
    let here = fx.tmp.path().to_string_lossy().to_string();
    assert!(lock.contains("conda: ./channel/"), "{lock}");
    assert!(!lock.contains(&here), "the lock names no host path: {lock}");

    // The checkout moves: the old channel path is gone.
    let moved = fx.path("elsewhere/project");
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::rename(fx.path("channel"), moved.join("channel")).unwrap();
    for f in ["busybox.tar", "env.yml", "env.lock"] {
        std::fs::copy(fx.path(f), moved.join(f)).unwrap();
    }
    let spec = "elsewhere/project/env.yml";
    // With the build cache the old place filled, and with a fresh one.
    let warm = fx.ok(&[
        "build",
        spec,
        "--locked",
        "--oci",
        "out-warm",
        "--sbom",
        "sbom.json",
    ]);
    assert_eq!(digest_of(&warm), first, "the lock read from its new place");
    let out = fx
        .cmd_with_cache("fresh-cache")
        .args(["build", spec, "--locked", "--oci", "out-fresh"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        digest_of(&out),
        first,
        "fetched through the lock's relative paths"
    );
    // Solving again there writes the same lock.
    let solved = fx.ok(&["build", spec, "--oci", "out-solved"]);
    assert_eq!(digest_of(&solved), first);
    assert_eq!(read(&moved.join("env.lock")), lock);

    // Inside the image the channel is named by its path from the spec.
    let sbom: Value = serde_json::from_str(&read(&fx.path("sbom.json"))).unwrap();
    let locations: Vec<&str> = sbom["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["downloadLocation"].as_str().unwrap())
        .collect();
    assert!(!locations.is_empty());
    for l in &locations {
        assert!(l.starts_with("file:///channel/"), "{l}");
    }
}

#[test]
fn bad_specs_unsolvable_requests_dead_channels_and_stale_locks_are_clear_errors() {
    let Some(fx) = Fx::new() else { return };
    let fails = |args: &[&str], needles: &[&str]| {
        let out = fx.run(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: expected {n:?} in: {err}");
        }
    };
    let spec = fx.spec("typo.yml", &SPEC.replace("  cmd:", "  cmnd:"));
    fails(&["build", &spec], &["typo.yml", "line 12", "cmnd"]);
    let spec = fx.spec(
        "pip.yml",
        &SPEC.replace("  - postlinker\n", "  - pip:\n    - requests\n"),
    );
    fails(&["build", &spec], &["pip.yml", "line 7", "pip"]);
    let spec = fx.spec("bad.yml", &SPEC.replace("greet=1.0", "greet>=>=1"));
    fails(&["build", &spec], &["bad.yml", "line 5", "greet>=>=1"]);
    // A missing output folder: refused before anything is built.
    let spec = fx.spec("env.yml", SPEC);
    fails(&["build", &spec, "-o", "missing/out.tar"], &["missing"]);
    assert!(
        !fx.path("cache/dockyard/build-cache-conda-layers").exists(),
        "nothing was built"
    );
    let spec = fx.spec("unsat.yml", &SPEC.replace("greet=1.0", "greet=9"));
    fails(&["build", &spec], &["cannot be solved", "greet"]);
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = fx.spec(
        "dead.yml",
        &SPEC.replace("./channel", &format!("http://127.0.0.1:{dead}/channel")),
    );
    let t = std::time::Instant::now();
    fails(&["build", &spec], &[&format!("127.0.0.1:{dead}")]);
    eprintln!("a dead channel failed after {:?}", t.elapsed());
    // Beside a channel that works, the error names the dead one alone.
    let spec = fx.spec(
        "two.yml",
        &SPEC.replace(
            "  - ./channel\n",
            &format!("  - ./channel\n  - http://127.0.0.1:{dead}/channel\n"),
        ),
    );
    fails(
        &["build", &spec],
        &[&format!("channel http://127.0.0.1:{dead}/channel: ")],
    );
    let err = text(&fx.run(&["build", &spec]).stderr);
    assert!(
        !err.contains("./channel"),
        "names only the dead channel: {err}"
    );
    // A channel that takes the connection and never answers: --timeout
    // ends the wait with an error naming it, instead of a hang.
    let silent = dockyard_testsupport::registry::SilentServer::start();
    let spec = fx.spec(
        "silent.yml",
        &SPEC.replace("./channel", &format!("http://{}/channel", silent.host())),
    );
    let t = std::time::Instant::now();
    fails(&["build", &spec, "--timeout", "2"], &[&silent.host()]);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(60),
        "a silent channel was waited on for {:?}",
        t.elapsed()
    );
    // A lock that no longer matches the spec.
    let spec = fx.spec("env.yml", SPEC);
    fx.ok(&["build", &spec, "--oci", "out"]);
    fx.spec("env.yml", &SPEC.replace("greet=1.0", "greet=2.0"));
    fails(
        &["build", &spec, "--locked", "--oci", "out2"],
        &["env.lock", "greet 2.0"],
    );
    assert!(!fx.path("out2").exists(), "nothing written");
    // A dependency dropped from the spec: the lock holds more than it needs.
    fx.spec("env.yml", &SPEC.replace("  - postlinker\n", ""));
    fails(
        &["build", &spec, "--locked", "--oci", "out2"],
        &["env.lock", "postlinker", "nothing in the spec needs"],
    );
    // Another channel list.
    example_channel(&fx.path("more"));
    fx.spec(
        "env.yml",
        &SPEC.replace("  - ./channel\n", "  - ./channel\n  - ./more\n"),
    );
    fails(
        &["build", &spec, "--locked", "--oci", "out2"],
        &["env.lock", "./more", "channels"],
    );
    assert!(!fx.path("out2").exists(), "nothing written");
}

#[test]
fn packages_on_the_command_line_build_without_a_spec_file() {
    let Some(fx) = Fx::new() else { return };
    let cli = fx.ok(&[
        "build",
        "-c",
        "./channel",
        "-b",
        "docker-archive:busybox.tar",
        "-i",
        "greet-cli:2",
        "--prefix",
        "/opt/env",
        "-o",
        "cli.tar",
        "greet=1.0",
    ]);
    fx.ok(&["export", "docker-archive:cli.tar:greet-cli:2", "root"]);
    let greet = read(&fx.path("root/opt/env/bin/greet"));
    assert!(greet.contains("PREFIX=\"/opt/env\""), "{greet}");
    assert!(fx.path("root/bin/busybox").is_file(), "on the busybox base");
    assert!(!fx.path("the command line.lock").exists());
    let cli_digest = digest_of(&cli);
    assert!(cli_digest.starts_with("sha256:"), "{cli_digest}");

    // A file saying the same builds the same image, whatever its layout
    // and comments.
    let equivalent = "channels:\n  - ./channel\ndependencies:\n  - greet=1.0\nimage:\n  base: docker-archive:busybox.tar\n  name: greet-cli\n  tag: '2'\n  prefix: /opt/env\n";
    let spec = fx.spec("same.yml", equivalent);
    let file_digest = digest_of(&fx.ok(&["build", &spec, "-o", "file.tar"]));
    assert_eq!(
        file_digest, cli_digest,
        "the command line and the file build the same"
    );
    let spec = fx.spec(
        "commented.yml",
        &format!(
            "# the same, commented\n{}",
            equivalent.replace("  - greet=1.0\n", "  - greet=1.0   # pinned\n")
        ),
    );
    let commented = digest_of(&fx.ok(&["build", &spec, "-o", "commented.tar"]));
    assert_eq!(commented, cli_digest, "comments are no part of the image");
}

#[test]
fn cache_prune_drops_build_cache_records_with_their_blobs_only() {
    let Some(fx) = Fx::new() else { return };
    let spec = fx.spec("env.yml", SPEC);
    let table = fx.path("cache/dockyard/build-cache-conda-layers");
    let records = || std::fs::read_dir(&table).map(|d| d.count()).unwrap_or(0);
    // Built into the store (named greet-env:1): a prune keeps every layer
    // and so every record, and the next build reuses them all.
    fx.ok(&["build", &spec]);
    assert_eq!(records(), 5);
    fx.ok(&["cache", "prune"]);
    assert_eq!(records(), 5, "records of layers still in use stay");
    let again = fx.ok(&["build", &spec]);
    assert!(
        text(&again.stderr).contains("5 reused, 0 new"),
        "{}",
        text(&again.stderr)
    );
    // Once no image uses the layers, prune removes them and their records:
    // never a record pointing at a pruned blob.
    fx.ok(&["cache", "rm", "greet-env:1"]);
    fx.ok(&["cache", "prune"]);
    assert_eq!(records(), 0);
    let rebuilt = fx.ok(&["build", &spec]);
    assert!(
        text(&rebuilt.stderr).contains("0 reused, 5 new"),
        "{}",
        text(&rebuilt.stderr)
    );
}

#[test]
fn build_takes_every_source_and_destination_copy_takes() {
    use dockyard_testsupport::registry::{Mode, RegistryGuard};
    let Some(fx) = Fx::new() else { return };
    let Some(registry) = RegistryGuard::start(Mode::basic("alice", "wonderland")) else {
        return;
    };
    let host = registry.host();
    let busybox = diff_ids(&fx, "docker-archive:busybox.tar");
    // The base from a registry that wants credentials (--src-creds), the
    // image pushed there (--dest-creds) as Docker schema 2.
    fx.ok(&[
        "copy",
        "docker-archive:busybox.tar",
        &format!("docker://{host}/base/busybox:1"),
        "--dest-creds",
        "alice:wonderland",
    ]);
    let spec = fx.spec("env.yml", SPEC);
    let dest = format!("docker://{host}/envs/greet:1");
    fx.ok(&[
        "build",
        &spec,
        "-b",
        &format!("docker://{host}/base/busybox:1"),
        "--src-creds",
        "alice:wonderland",
        "--dest",
        &dest,
        "--dest-creds",
        "alice:wonderland",
        "--format",
        "v2s2",
    ]);
    let raw = fx.ok(&["inspect", "--raw", &dest, "--creds", "alice:wonderland"]);
    let manifest: Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let config = fx.ok(&["inspect", "--config", &dest, "--creds", "alice:wonderland"]);
    let config: Value = serde_json::from_slice(&config.stdout).unwrap();
    let pushed: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        pushed.len(),
        busybox.len() + 6,
        "busybox + 5 packages + top"
    );
    assert_eq!(pushed[0], busybox[0], "on the registry's busybox");

    // An OCI layout as the base; an oci-archive and the store as outputs.
    fx.ok(&["copy", "docker-archive:busybox.tar", "oci:base-oci:1"]);
    fx.ok(&[
        "build",
        &spec,
        "-b",
        "oci:base-oci:1",
        "--dest",
        "oci-archive:env-archive.tar:1",
    ]);
    let archived = diff_ids(&fx, "oci-archive:env-archive.tar:1");
    assert_eq!(archived[0], busybox[0]);
    assert_eq!(
        archived[1..],
        pushed[1..],
        "the same package and top layers"
    );
    fx.ok(&["build", &spec, "--dest", "store:envs/local:3"]);
    assert_eq!(diff_ids(&fx, "store:envs/local:3"), archived);
    // A destination no transport takes is refused before anything is built.
    let out = fx.run(&["build", &spec, "--dest", "dockr://x"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("dockr://x: unknown transport"), "{err}");
    assert!(!err.contains("built "), "nothing was built: {err}");
}

/// On a terminal the build draws a spinner while it solves and the
/// installer's bars while it installs; on a pipe, neither.
#[test]
fn progress_is_drawn_on_a_terminal_only() {
    let Some(fx) = Fx::new() else { return };
    if !dockyard_testsupport::require_tool("script") {
        return;
    }
    let spec = fx.spec("env.yml", SPEC);
    // util-linux's script runs the build on a pseudo-terminal and copies
    // what it draws to its stdout.
    let command = format!(
        "{} build env.yml -o tty.tar",
        assert_cmd::cargo::cargo_bin("dockyard").display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("DOCKYARD_CACHE", fx.path("tty-cache"))
        .env_remove("CI")
        .current_dir(fx.tmp.path())
        .output()
        .unwrap();
    let drawn = text(&out.stdout);
    assert!(out.status.success(), "{drawn}");
    assert!(
        drawn.contains("solving 3 dependencies from ./channel"),
        "{drawn}"
    );
    assert!(drawn.contains("installing packages"), "{drawn}");
    // The same build on a pipe: the log lines only.
    let piped = fx.ok(&["build", &spec, "-o", "pipe.tar"]);
    let log = text(&piped.stderr);
    assert!(!log.contains("solving") && !log.contains('\u{1b}'), "{log}");
}
