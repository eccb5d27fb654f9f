//! Archives dockyard writes are accepted by real tools (skopeo, umoci,
//! docker, podman), archives those tools write are read back, and copies
//! between dockyard's transports keep what identifies an image.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use assert_cmd::Command;
use dockyard_testsupport::{busybox_rootfs, require_tool, run_ok, Dockerd};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

fn dockyard(cache: &Path) -> Command {
    let mut c = Command::cargo_bin("dockyard").unwrap();
    c.env("DOCKYARD_CACHE", cache)
        .env_remove("SOURCE_DATE_EPOCH");
    c
}

/// Run dockyard, assert success, return stdout (trimmed).
fn dy(cache: &Path, args: &[&str]) -> String {
    let out = dockyard(cache).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "dockyard {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn inspect_json(cache: &Path, src: &str) -> Value {
    serde_json::from_str(&dy(cache, &["inspect", src, "--json"])).unwrap()
}

fn diff_ids(summary: &Value) -> Vec<String> {
    summary["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["diffId"].as_str().unwrap().to_string())
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// All members of a tar file, by name.
fn tar_members(path: &Path) -> HashMap<String, Vec<u8>> {
    let mut a = tar::Archive::new(fs::File::open(path).unwrap());
    let mut out = HashMap::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.insert(name, data);
    }
    out
}

fn tar_entry_names(bytes: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(bytes);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

struct Fixture {
    tmp: tempfile::TempDir,
    rootfs: PathBuf,
}

impl Fixture {
    /// None when busybox is missing (see `require_tool`).
    fn new() -> Option<Fixture> {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = busybox_rootfs(tmp.path())?;
        Some(Fixture { tmp, rootfs })
    }
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
    fn cache(&self) -> PathBuf {
        self.path("cache")
    }
    /// The one-layer busybox image as a docker archive tagged `tag`.
    fn busybox_archive(&self, name: &str, tag: &str) -> PathBuf {
        let out = self.path(name);
        dy(
            &self.cache(),
            &[
                "mutate",
                "scratch",
                &format!("docker-archive:{}:{tag}", out.display()),
                "--add",
                &format!("{}:/", self.rootfs.display()),
                "--cmd",
                "/bin/busybox echo hi",
            ],
        );
        out
    }
}

#[test]
fn skopeo_and_umoci_accept_what_dockyard_writes() {
    let Some(fx) = Fixture::new() else { return };
    if !require_tool("skopeo") || !require_tool("umoci") {
        return;
    }
    let archive = fx.busybox_archive("out.tar", "test/busybox:1");

    // skopeo re-hashes every layer while copying.
    run_ok(StdCommand::new("skopeo").args([
        "copy",
        &format!("docker-archive:{}", archive.display()),
        &format!("oci:{}:x", fx.s("sk")),
    ]));
    for (layout, tag, bundle) in [("sk", "x", "bundle1"), ("dy", "y", "bundle2")] {
        if layout == "dy" {
            dy(
                &fx.cache(),
                &[
                    "copy",
                    &format!("docker-archive:{}", archive.display()),
                    &format!("oci:{}:{tag}", fx.s(layout)),
                ],
            );
        }
        run_ok(StdCommand::new("umoci").args([
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:{tag}", fx.s(layout)),
            &fx.s(bundle),
        ]));
        let bin = fx.path(bundle).join("rootfs/bin/busybox");
        let meta = fs::metadata(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        assert!(meta.is_file());
        assert_ne!(
            meta.permissions().mode() & 0o111,
            0,
            "busybox not executable"
        );
        assert_eq!(
            fs::read(&bin).unwrap(),
            fs::read(fx.rootfs.join("bin/busybox")).unwrap()
        );
        assert_eq!(
            fs::read_link(fx.path(bundle).join("rootfs/bin/sh")).unwrap(),
            Path::new("busybox")
        );
    }
}

#[test]
fn archive_names_config_by_digest_and_lists_layers_base_first() {
    let Some(fx) = Fixture::new() else { return };
    let base = fx.busybox_archive("base.tar", "test/busybox:1");
    fs::write(fx.path("second.txt"), "second layer\n").unwrap();
    let two = fx.path("two.tar");
    dy(
        &fx.cache(),
        &[
            "mutate",
            &format!("docker-archive:{}", base.display()),
            &format!("docker-archive:{}:test/two:1", two.display()),
            "--add",
            &format!("{}:/second.txt", fx.s("second.txt")),
        ],
    );
    let members = tar_members(&two);
    let manifest: Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    let entry = &manifest.as_array().unwrap()[0];
    assert_eq!(entry["RepoTags"], serde_json::json!(["test/two:1"]));

    let config_name = entry["Config"].as_str().unwrap();
    let config_bytes = &members[config_name];
    assert_eq!(
        config_name,
        format!("blobs/sha256/{}", sha256_hex(config_bytes)),
        "the config member is not named by its digest"
    );
    let config: Value = serde_json::from_slice(config_bytes).unwrap();

    let layers: Vec<&str> = entry["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(layers.len(), 2);
    // Layers are uncompressed tars named by (and hashing to) their diff_id,
    // in the config's order.
    let expected_diff_ids: Vec<String> = layers
        .iter()
        .map(|l| {
            let hex = sha256_hex(&members[*l]);
            assert_eq!(*l, format!("blobs/sha256/{hex}"));
            format!("sha256:{hex}")
        })
        .collect();
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!(expected_diff_ids)
    );
    // Base first: busybox at index 0, the added file at the top.
    let bottom = tar_entry_names(&members[layers[0]]);
    let top = tar_entry_names(&members[layers[1]]);
    assert!(bottom.iter().any(|n| n == "bin/busybox"), "{bottom:?}");
    assert!(!bottom.iter().any(|n| n == "second.txt"), "{bottom:?}");
    assert!(top.iter().any(|n| n == "second.txt"), "{top:?}");
    assert!(!top.iter().any(|n| n == "bin/busybox"), "{top:?}");
    // The base layer is byte-identical to the one-layer image's.
    let base_members = tar_members(&base);
    let base_manifest: Value = serde_json::from_slice(&base_members["manifest.json"]).unwrap();
    assert_eq!(base_manifest[0]["Layers"][0].as_str().unwrap(), layers[0]);
    // The OCI half of the combined tar names the same image.
    let index: Value = serde_json::from_slice(&members["index.json"]).unwrap();
    let mdigest = index["manifests"][0]["digest"].as_str().unwrap();
    let oci_manifest: Value = serde_json::from_slice(
        &members[&format!("blobs/sha256/{}", mdigest.trim_start_matches("sha256:"))],
    )
    .unwrap();
    assert_eq!(
        oci_manifest["config"]["digest"].as_str().unwrap(),
        format!("sha256:{}", sha256_hex(config_bytes))
    );
}

/// All docker checks in one test: dockerd starts once per test binary.
#[test]
fn docker_loads_runs_and_saves_round_trip() {
    let Some(fx) = Fixture::new() else { return };
    let Some(docker) = Dockerd::start() else {
        return;
    };
    let cache = fx.cache();
    let one = fx.busybox_archive("one.tar", "test/busybox:1");
    let one_summary = inspect_json(&cache, &format!("docker-archive:{}", one.display()));

    run_ok(docker.docker().args(["load", "-i"]).arg(&one));
    let out = run_ok(docker.docker().args([
        "run",
        "--rm",
        "--network",
        "none",
        "test/busybox:1",
        "/bin/busybox",
        "echo",
        "ok",
    ]));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    // Docker's image ID is the config digest dockyard wrote.
    let id =
        run_ok(
            docker
                .docker()
                .args(["image", "inspect", "--format", "{{.Id}}", "test/busybox:1"]),
        );
    assert_eq!(
        String::from_utf8_lossy(&id.stdout).trim(),
        one_summary["configDigest"].as_str().unwrap()
    );
    // The image's own Cmd runs.
    let out = run_ok(
        docker
            .docker()
            .args(["run", "--rm", "--network", "none", "test/busybox:1"]),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hi");

    // Two layers: the top deletes /etc/hostname and /bin/cat (both from the
    // base) and adds /etc/added. Docker bind-mounts its own /etc/hostname
    // into every container, so the deletion is seen there only as "not the
    // base layer's content"; /bin/cat shows it plainly.
    fs::write(fx.path("added"), "added by the top layer\n").unwrap();
    let two = fx.path("two.tar");
    dy(
        &cache,
        &[
            "mutate",
            &format!("docker-archive:{}", one.display()),
            &format!("docker-archive:{}:test/busybox:2", two.display()),
            "--delete",
            "/etc/hostname",
            "--delete",
            "/bin/cat",
            "--add",
            &format!("{}:/etc/added", fx.s("added")),
        ],
    );
    run_ok(docker.docker().args(["load", "-i"]).arg(&two));
    let script = "/bin/busybox ls /bin; /bin/busybox cat /etc/added /etc/hostname";
    let check = |image: &str| {
        let out = docker
            .docker()
            .args(["run", "--rm", "--network", "none", image])
            .args(["/bin/busybox", "sh", "-c", script])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let top = check("test/busybox:2");
    let listing: Vec<&str> = top
        .lines()
        .take_while(|l| !l.contains("added by"))
        .collect();
    assert!(listing.contains(&"busybox"), "{top}");
    assert!(listing.contains(&"sh"), "{top}");
    assert!(
        !listing.contains(&"cat"),
        "/bin/cat should be deleted: {top}"
    );
    assert!(top.contains("added by the top layer"), "{top}");
    assert!(
        !top.contains("dockyard-test"),
        "base /etc/hostname visible: {top}"
    );
    // Sanity: the base image has both.
    let base = check("test/busybox:1");
    assert!(base.lines().any(|l| l == "cat"), "{base}");
    assert!(!base.contains("added by"), "{base}");

    // A real v1.2 archive from `docker save` reads back with the same layers.
    let saved = fx.path("saved.tar");
    run_ok(
        docker
            .docker()
            .args(["save", "test/busybox:1", "-o"])
            .arg(&saved),
    );
    let saved_members = tar_members(&saved);
    assert!(
        saved_members.keys().any(|k| k.ends_with("/json")),
        "expected legacy <id>/json members in docker save output"
    );
    let saved_src = format!("docker-archive:{}", saved.display());
    let saved_summary = inspect_json(&cache, &saved_src);
    assert_eq!(diff_ids(&saved_summary), diff_ids(&one_summary));
    assert_eq!(saved_summary["configDigest"], one_summary["configDigest"]);
    assert_eq!(saved_summary["config"]["Cmd"], one_summary["config"]["Cmd"]);
    // ...and also when named by its tag.
    let tagged = inspect_json(&cache, &format!("{saved_src}:test/busybox:1"));
    assert_eq!(diff_ids(&tagged), diff_ids(&one_summary));

    dy(
        &cache,
        &["copy", &saved_src, &format!("oci:{}:z", fx.s("d3"))],
    );
    if require_tool("skopeo") {
        let back = fx.path("back.tar");
        run_ok(StdCommand::new("skopeo").args([
            "copy",
            &format!("oci:{}:z", fx.s("d3")),
            &format!("docker-archive:{}:test/back:1", back.display()),
        ]));
        let back_summary = inspect_json(&cache, &format!("docker-archive:{}", back.display()));
        assert_eq!(diff_ids(&back_summary), diff_ids(&one_summary));
    }

    // A multi-image `docker save` archive: each image is picked by tag.
    let multi = fx.path("multi.tar");
    run_ok(
        docker
            .docker()
            .args(["save", "test/busybox:1", "test/busybox:2", "-o"])
            .arg(&multi),
    );
    let msrc = format!("docker-archive:{}", multi.display());
    let two_summary = inspect_json(&cache, &format!("docker-archive:{}", two.display()));
    let m2 = inspect_json(&cache, &format!("{msrc}:test/busybox:2"));
    assert_eq!(diff_ids(&m2), diff_ids(&two_summary));
    assert_eq!(m2["configDigest"], two_summary["configDigest"]);
    let m1 = inspect_json(&cache, &format!("{msrc}:test/busybox:1"));
    assert_eq!(m1["configDigest"], one_summary["configDigest"]);
}

/// podman runs as root here without systemd for `load` (running containers
/// fails on this sandbox's rlimits, so only loading is checked). It gets
/// its own storage in a temp dir so the host's is untouched.
#[test]
fn podman_loads_what_dockyard_writes() {
    let Some(fx) = Fixture::new() else { return };
    if !require_tool("podman") {
        return;
    }
    let archive = fx.busybox_archive("out.tar", "test/busybox:1");
    let summary = inspect_json(
        &fx.cache(),
        &format!("docker-archive:{}", archive.display()),
    );
    let podman = || {
        let mut c = StdCommand::new("podman");
        c.arg("--root")
            .arg(fx.path("podman/root"))
            .arg("--runroot")
            .arg(fx.path("podman/run"))
            .args(["--storage-driver", "vfs"]);
        c
    };
    let out = run_ok(podman().args(["load", "-i"]).arg(&archive));
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("test/busybox:1"), "{said}");
    let out = run_ok(podman().args(["image", "inspect", "test/busybox:1"]));
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    let info = &info[0];
    assert_eq!(
        format!("sha256:{}", info["Id"].as_str().unwrap()),
        summary["configDigest"].as_str().unwrap()
    );
    let layers: Vec<String> = info["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers, diff_ids(&summary));
}

#[test]
fn copies_between_every_pair_of_transports_keep_config_and_diff_ids() {
    let Some(fx) = Fixture::new() else { return };
    let cache = fx.cache();
    let archive = fx.busybox_archive("orig.tar", "test/busybox:1");
    let orig_src = format!("docker-archive:{}", archive.display());
    let orig = inspect_json(&cache, &orig_src);
    let (want_config, want_diff_ids) = (orig["configDigest"].clone(), diff_ids(&orig));

    // One source in each transport.
    let sources = [
        ("docker-archive", orig_src.clone()),
        ("oci", format!("oci:{}:src", fx.s("src-layout"))),
        (
            "oci-archive",
            format!("oci-archive:{}:src", fx.s("src-oci.tar")),
        ),
        ("store", "store:roundtrip/src:1".to_string()),
    ];
    for (_, s) in &sources[1..] {
        dy(&cache, &["copy", &orig_src, s]);
    }
    for (sname, src) in &sources {
        for dname in ["docker-archive", "oci", "oci-archive", "store"] {
            let tag = format!("{sname}-to-{dname}");
            let dst = match dname {
                "docker-archive" => {
                    format!(
                        "docker-archive:{}:test/{tag}:1",
                        fx.s(&format!("{tag}.tar"))
                    )
                }
                "oci" => format!("oci:{}:{tag}", fx.s("dst-layout")),
                "oci-archive" => format!("oci-archive:{}:{tag}", fx.s(&format!("{tag}.oci.tar"))),
                _ => format!("store:roundtrip/{tag}:1"),
            };
            let printed = dy(&cache, &["copy", src, &dst]);
            let got = inspect_json(&cache, &dst);
            assert_eq!(got["configDigest"], want_config, "{src} -> {dst}");
            assert_eq!(diff_ids(&got), want_diff_ids, "{src} -> {dst}");
            assert_eq!(
                got["digest"].as_str().unwrap(),
                printed,
                "{src} -> {dst}: printed digest"
            );
            // And the content is really there: a full copy out verifies it.
            let check = format!("oci:{}:check-{tag}", fx.s("check-layout"));
            dy(&cache, &["copy", &dst, &check]);
        }
    }
}

#[test]
fn oci_to_oci_archive_to_oci_keeps_the_manifest_bytes() {
    let Some(fx) = Fixture::new() else { return };
    let cache = fx.cache();
    let archive = fx.busybox_archive("orig.tar", "test/busybox:1");
    // Start from a layout another tool wrote when possible: its manifest
    // bytes (field order, whitespace) are not dockyard's.
    let l1 = format!("oci:{}:x", fx.s("l1"));
    if require_tool("skopeo") {
        run_ok(StdCommand::new("skopeo").args([
            "copy",
            &format!("docker-archive:{}", archive.display()),
            &l1,
        ]));
    } else {
        dy(
            &cache,
            &[
                "copy",
                &format!("docker-archive:{}", archive.display()),
                &l1,
            ],
        );
    }
    let raw1 = dockyard(&cache)
        .args(["inspect", &l1, "--raw"])
        .output()
        .unwrap();
    assert!(raw1.status.success());
    let d1 = inspect_json(&cache, &l1)["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(d1, format!("sha256:{}", sha256_hex(&raw1.stdout)));

    let a = format!("oci-archive:{}:x", fx.s("a.tar"));
    assert_eq!(dy(&cache, &["copy", &l1, &a]), d1);
    let l2 = format!("oci:{}:x", fx.s("l2"));
    assert_eq!(dy(&cache, &["copy", &a, &l2]), d1);
    let raw2 = dockyard(&cache)
        .args(["inspect", &l2, "--raw"])
        .output()
        .unwrap();
    assert!(raw2.status.success());
    assert_eq!(
        raw1.stdout, raw2.stdout,
        "manifest bytes changed in the round trip"
    );
    // The manifest blob files are byte-identical too.
    let hex = d1.trim_start_matches("sha256:");
    assert_eq!(
        fs::read(fx.path("l1/blobs/sha256").join(hex)).unwrap(),
        fs::read(fx.path("l2/blobs/sha256").join(hex)).unwrap()
    );
    // So is the config.
    let c1 = dockyard(&cache)
        .args(["inspect", &l1, "--config"])
        .output()
        .unwrap();
    let c2 = dockyard(&cache)
        .args(["inspect", &l2, "--config"])
        .output()
        .unwrap();
    assert_eq!(c1.stdout, c2.stdout);
    if require_tool("umoci") {
        run_ok(StdCommand::new("umoci").args([
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:x", fx.s("l2")),
            &fx.s("bundle"),
        ]));
        assert!(fx.path("bundle/rootfs/bin/busybox").is_file());
    }
}

/// `mutate --add FILE:/bin` puts the file into /bin, as Dockerfile COPY
/// does, instead of replacing the directory: the image still runs in
/// Docker, and /bin/sh is still there.
#[test]
fn add_copies_a_file_into_an_existing_directory_as_copy_does() {
    let Some(fx) = Fixture::new() else { return };
    let cache = fx.cache();
    let base = fx.busybox_archive("base.tar", "test/busybox:1");
    std::fs::write(fx.path("motd"), "hello from motd\n").unwrap();
    let edited = fx.path("edited.tar");
    let out = dockyard(&cache)
        .args([
            "mutate",
            &format!("docker-archive:{}", base.display()),
            &format!("docker-archive:{}:test/edited:1", edited.display()),
            "--add",
            &format!("{}:/bin", fx.s("motd")),
            "--add",
            &format!("{}:/etc/", fx.s("motd")),
            "--delete",
            "/no/such/file",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/no/such/file") && stderr.contains("nothing to delete"),
        "{stderr}"
    );
    let rootfs = fx.path("exported");
    dy(
        &cache,
        &[
            "export",
            &format!("docker-archive:{}", edited.display()),
            &fx.s("exported"),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("bin/motd")).unwrap(),
        "hello from motd\n"
    );
    assert!(rootfs.join("etc/motd").is_file());
    assert!(
        rootfs.join("bin/busybox").is_file(),
        "/bin kept its contents"
    );
    let Some(docker) = Dockerd::start() else {
        return;
    };
    run_ok(docker.docker().args(["load", "-i"]).arg(&edited));
    let ran = run_ok(docker.docker().args([
        "run",
        "--rm",
        "--network",
        "none",
        "test/edited:1",
        "/bin/sh",
        "-c",
        "cat /bin/motd /etc/motd",
    ]));
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        "hello from motd\nhello from motd\n"
    );
}

/// A docker archive written from gzip layers holds them uncompressed; they
/// are inflated on several threads, but the archive's bytes are the same
/// as on one core (`taskset -c 0`), and docker-archive readers get every
/// layer back whole.
#[test]
fn docker_archive_from_gzip_layers_is_the_same_on_one_core_and_many() {
    let Some(fx) = Fixture::new() else { return };
    if !require_tool("skopeo") || !require_tool("taskset") {
        return;
    }
    let cache = fx.cache();
    let archive = fx.busybox_archive("base.tar", "test/base:1");
    // Four more layers of a few MB each, half random (xorshift) half text.
    let mut prev = format!("docker-archive:{}", archive.display());
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..4 {
        let dir = fx.path(&format!("layer{i}"));
        fs::create_dir_all(&dir).unwrap();
        let mut random = vec![0u8; (1 + i) << 20];
        for b in random.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        fs::write(dir.join("random.bin"), &random).unwrap();
        fs::write(
            dir.join("text.txt"),
            format!("layer {i} line\n").repeat(200_000),
        )
        .unwrap();
        let next = format!("oci:{}:step{i}", fx.s("raw"));
        dy(
            &cache,
            &[
                "mutate",
                &prev,
                &next,
                "--add",
                &format!("{}:/l{i}", dir.display()),
            ],
        );
        prev = next;
    }
    // skopeo writes the layers gzip-compressed into an OCI layout.
    run_ok(StdCommand::new("skopeo").args([
        "copy",
        &format!("oci:{}:step3", fx.s("raw")),
        &format!("oci:{}:gz", fx.s("gz")),
    ]));
    let gz = format!("oci:{}:gz", fx.s("gz"));
    let summary = inspect_json(&cache, &gz);
    let media: Vec<&str> = summary["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(media.len(), 5);
    assert!(media.iter().all(|m| m.ends_with("gzip")), "{media:?}");

    let many = fx.path("many.tar");
    dy(
        &cache,
        &[
            "copy",
            &gz,
            &format!("docker-archive:{}:t/x:1", many.display()),
        ],
    );
    let one = fx.path("one.tar");
    let out = StdCommand::new("taskset")
        .args(["-c", "0"])
        .arg(assert_cmd::cargo::cargo_bin("dockyard"))
        .args([
            "copy",
            &gz,
            &format!("docker-archive:{}:t/x:1", one.display()),
        ])
        .env("DOCKYARD_CACHE", &cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        fs::read(&many).unwrap() == fs::read(&one).unwrap(),
        "archives written on one core and on many differ"
    );
    // Every layer member is the uncompressed tar its diff_id names.
    let members = tar_members(&many);
    for diff_id in diff_ids(&summary) {
        let hex = diff_id.trim_start_matches("sha256:");
        let data = &members[&format!("blobs/sha256/{hex}")];
        assert_eq!(sha256_hex(data), hex);
    }
    // And skopeo reads the archive back to the same diff_ids.
    run_ok(StdCommand::new("skopeo").args([
        "copy",
        &format!("docker-archive:{}", many.display()),
        &format!("oci:{}:back", fx.s("back")),
    ]));
    let back = inspect_json(&cache, &format!("oci:{}:back", fx.s("back")));
    assert_eq!(diff_ids(&back), diff_ids(&summary));
}
