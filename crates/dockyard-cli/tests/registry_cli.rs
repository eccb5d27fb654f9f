//! The registry verbs as a user runs them against a real registry: login /
//! logout (Docker config, mode 0600, no password leaks), push with
//! --digestfile, pull -o, copy registry to registry, tags, inspect --raw,
//! and TLS with and without --ca-cert / --cert-dir.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;

use assert_cmd::Command;
use dockyard_image::progress::Silent;
use dockyard_image::transport::{write_image, Location};
use dockyard_testsupport::registry::{base64_encode, test_image, Mode, RegistryGuard};
use dockyard_testsupport::{require_tool, run_ok};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const USER: &str = "dave";
const PASSWORD: &str = "pa55-word-for-the-cli";

struct Fx {
    tmp: tempfile::TempDir,
}

impl Fx {
    fn new() -> Fx {
        Fx {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
    fn docker_config(&self) -> PathBuf {
        self.path("docker-config/config.json")
    }
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("dockyard").unwrap();
        c.env("DOCKYARD_CACHE", self.path("cache"))
            .env("DOCKER_CONFIG", self.path("docker-config"))
            .env_remove("DOCKYARD_USERNAME")
            .env_remove("DOCKYARD_PASSWORD")
            .env_remove("SOURCE_DATE_EPOCH")
            .current_dir(self.tmp.path());
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "dockyard {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
    fn login(&self, host: &str, user: &str, password: &str) -> Output {
        self.cmd()
            .args(["login", host, "-u", user, "--password-stdin"])
            .write_stdin(format!("{password}\n"))
            .output()
            .unwrap()
    }
    /// A docker archive (uncompressed layers) of a small test image.
    fn archive(&self, seed: u64) -> String {
        let path = self.path(&format!("image-{seed}.tar"));
        write_image(
            &test_image(seed, 2, 100 << 10),
            &Location::DockerArchive {
                path: path.clone(),
                reference: Some(format!("test/image:{seed}")),
            },
            None,
            &Silent,
        )
        .expect("write docker archive");
        format!("docker-archive:{}", path.display())
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn last_line(out: &Output) -> String {
    text(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn b64(s: &str) -> String {
    base64_encode(s)
}

#[test]
fn login_push_logout_against_basic_auth() {
    let Some(registry) = RegistryGuard::start(Mode::basic(USER, PASSWORD)) else {
        return;
    };
    let host = registry.host();
    let fx = Fx::new();
    let archive = fx.archive(60);

    // A wrong password: refused, nothing written, nothing leaked.
    let wrong = "not-the-Right-one-42";
    let out = fx.login(&host, USER, wrong);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    assert!(
        !fx.docker_config().exists(),
        "a refused login wrote the config"
    );
    for stream in [text(&out.stderr), text(&out.stdout)] {
        assert!(!stream.contains(wrong), "password printed: {stream}");
        assert!(!stream.contains(&b64(&format!("{USER}:{wrong}"))));
    }
    assert!(text(&out.stderr).contains(&host), "{}", text(&out.stderr));

    // Pushing without credentials: refused, exit 1.
    let out = fx.run(&["push", &archive, &format!("{host}/a:1")]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("login"), "{}", text(&out.stderr));

    // The right password: stored, privately.
    let out = fx.login(&host, USER, PASSWORD);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert!(!text(&out.stderr).contains(PASSWORD));
    assert!(!text(&out.stdout).contains(PASSWORD));
    let config = fx.docker_config();
    let mode = fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let v: Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
    assert_eq!(
        v["auths"][host.as_str()]["auth"].as_str(),
        Some(b64(&format!("{USER}:{PASSWORD}")).as_str()),
        "{v}"
    );

    // Stored credentials are used.
    let out = fx.ok(&["push", &archive, &format!("{host}/a:1")]);
    assert!(last_line(&out).starts_with("sha256:"));

    // Explicit --creds work too, and a wrong one is not echoed.
    fx.ok(&[
        "push",
        &archive,
        &format!("{host}/a:2"),
        "--creds",
        &format!("{USER}:{PASSWORD}"),
    ]);
    let out = fx.run(&[
        "push",
        &archive,
        &format!("{host}/a:3"),
        "--creds",
        &format!("{USER}:{wrong}"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!text(&out.stderr).contains(wrong), "{}", text(&out.stderr));

    // Logout removes the entry; a second logout says there was none.
    fx.ok(&["logout", &host]);
    let v: Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
    assert!(v["auths"].get(host.as_str()).is_none(), "{v}");
    let out = fx.run(&["logout", &host]);
    assert_eq!(out.status.code(), Some(1));
    let out = fx.run(&["pull", &format!("{host}/a:1")]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "pull after logout must be refused"
    );
}

#[test]
fn push_pull_copy_tags_inspect() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let host = registry.host();
    let fx = Fx::new();
    let archive = fx.archive(61);

    // push --digestfile
    let out = fx.ok(&[
        "push",
        &archive,
        &format!("{host}/a:1"),
        "--digestfile",
        &fx.s("digest.txt"),
    ]);
    let digest = last_line(&out);
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert_eq!(
        fs::read_to_string(fx.path("digest.txt")).unwrap().trim(),
        digest
    );

    // inspect --raw prints the manifest as the registry holds it.
    let out = fx.ok(&["inspect", &format!("docker://{host}/a:1"), "--raw"]);
    assert_eq!(sha256(&out.stdout), digest);

    // pull -o writes a docker archive other tools accept.
    let out = fx.ok(&["pull", &format!("{host}/a:1"), "-o", &fx.s("out.tar")]);
    assert_eq!(last_line(&out), digest);
    if require_tool("skopeo") {
        run_ok(
            std::process::Command::new("skopeo")
                .arg("--insecure-policy")
                .arg("copy")
                .arg(format!("docker-archive:{}", fx.s("out.tar")))
                .arg(format!("oci:{}:x", fx.s("from-archive"))),
        );
        assert!(fx.path("from-archive/index.json").is_file());
    }

    // copy registry → registry, then list the new repository's tags.
    let out = fx.ok(&[
        "copy",
        &format!("docker://{host}/a:1"),
        &format!("docker://{host}/b:2"),
    ]);
    assert_eq!(last_line(&out), digest, "copy keeps the manifest");
    assert!(
        text(&out.stderr).contains("0 blobs uploaded (0 bytes)"),
        "the copy should mount, not upload: {}",
        text(&out.stderr)
    );
    let out = fx.ok(&["tags", &format!("{host}/b")]);
    assert_eq!(text(&out.stdout).lines().collect::<Vec<_>>(), ["2"]);
    let out = fx.ok(&["tags", &format!("{host}/a"), "--json"]);
    let tags: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tags, serde_json::json!(["1"]));

    // Unknown things are user errors.
    let out = fx.run(&["pull", &format!("{host}/nope:1")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn tls_registry_needs_the_ca() {
    let Some(registry) = RegistryGuard::start(Mode::Tls) else {
        return;
    };
    let host = registry.host();
    let fx = Fx::new();
    let archive = fx.archive(62);

    let out = fx.run(&["push", &archive, &format!("{host}/a:1")]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let ca = registry.ca_pem_path();
    let out = fx.ok(&[
        "push",
        &archive,
        &format!("{host}/a:1"),
        "--ca-cert",
        ca.to_str().unwrap(),
    ]);
    let digest = last_line(&out);
    assert!(digest.starts_with("sha256:"));

    // --cert-dir: every *.pem / *.crt in the directory is trusted.
    fs::create_dir_all(fx.path("certs")).unwrap();
    fs::copy(&ca, fx.path("certs/ca.crt")).unwrap();
    let out = fx.ok(&["pull", &format!("{host}/a:1"), "--cert-dir", &fx.s("certs")]);
    assert_eq!(last_line(&out), digest);
}

/// `pull --oci` keeps a Docker manifest byte for byte; `--format oci`
/// converts it, so OCI-only tools (umoci) read the layout.
#[test]
fn pull_format_converts_what_it_writes() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let fx = Fx::new();
    let remote = format!("{}/fmt/app:1", registry.host());
    fx.ok(&["push", &fx.archive(61), &remote, "--format", "v2s2"]);
    let kept = fx.path("kept");
    fx.ok(&["pull", &remote, "--oci", &kept.to_string_lossy()]);
    let oci = fx.path("oci");
    fx.ok(&[
        "pull",
        &remote,
        "--oci",
        &oci.to_string_lossy(),
        "--format",
        "oci",
    ]);
    let media_type = |dir: &PathBuf| -> String {
        let out = fx.ok(&["inspect", "--json", &format!("oci:{}:1", dir.display())]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["mediaType"].as_str().unwrap().to_string()
    };
    assert_eq!(
        media_type(&kept),
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        media_type(&oci),
        "application/vnd.oci.image.manifest.v1+json"
    );
    if require_tool("umoci") {
        run_ok(
            std::process::Command::new("umoci")
                .args(["unpack", "--rootless", "--image"])
                .arg(format!("{}:1", oci.display()))
                .arg(fx.path("bundle")),
        );
    }
}
