//! Settings per registry, as skopeo's --src-*/--dest-* and Docker's
//! certs.d give them: a copy from a TLS registry with a private CA to a
//! plain-HTTP one, each with its own credentials, in one command; a
//! registry that asks for a client certificate reached through
//! `/etc/docker/certs.d/HOST:PORT` (client.cert + client.key + ca.crt).

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use dockyard_image::progress::Silent;
use dockyard_image::transport::{write_image, Location};
use dockyard_testsupport::registry::{test_image, Mode, RegistryGuard};

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
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("dockyard").unwrap();
        c.env("DOCKYARD_CACHE", self.path("cache"))
            .env("DOCKER_CONFIG", self.path("docker-config"))
            .env("DOCKYARD_CERTS_D", self.path("no-certs.d"))
            .env_remove("DOCKYARD_USERNAME")
            .env_remove("DOCKYARD_PASSWORD")
            .current_dir(self.tmp.path());
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }
    fn archive(&self, seed: u64) -> String {
        let path = self.path(&format!("image-{seed}.tar"));
        write_image(
            &test_image(seed, 2, 64 << 10),
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
    /// A directory holding `files` (copied under the names given).
    fn dir_with(&self, name: &str, files: &[(&Path, &str)]) -> String {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (from, to) in files {
            std::fs::copy(from, dir.join(to)).unwrap();
        }
        dir.to_str().unwrap().to_string()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_string()
}

fn user_error(out: Output, what: &str, needle: &str) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(
        err.contains(needle),
        "{what}: expected {needle:?} in: {err}"
    );
    err
}

#[test]
fn copy_between_registries_with_their_own_credentials_and_tls() {
    let Some(tls) = RegistryGuard::start(Mode::tls_basic("alice", "tls-side-pw")) else {
        return;
    };
    let Some(plain) = RegistryGuard::start(Mode::basic("bob", "plain-side-pw")) else {
        return;
    };
    let fx = Fx::new();
    let (a, b) = (tls.host(), plain.host());
    let ca = tls.ca_pem_path();
    let src = format!("docker://{a}/team/app:1");
    let dst = format!("docker://{b}/mirror/app:1");

    // Seed the TLS registry (its CA and credentials given globally).
    let archive = fx.archive(7);
    let ca_s = ca.to_str().unwrap();
    let pushed = ok(
        fx.run(&[
            "copy",
            &archive,
            &src,
            "--ca-cert",
            ca_s,
            "--creds",
            "alice:tls-side-pw",
        ]),
        "seed",
    );

    // One command, each side with its own settings.
    let src_certs = fx.dir_with("src-certs", &[(&ca, "ca.crt")]);
    let copied = ok(
        fx.run(&[
            "copy",
            &src,
            &dst,
            "--src-creds",
            "alice:tls-side-pw",
            "--src-cert-dir",
            &src_certs,
            "--dest-creds",
            "bob:plain-side-pw",
            "--dest-tls-verify=false",
        ]),
        "copy with --src-*/--dest-*",
    );
    assert_eq!(copied.lines().last(), pushed.lines().last());
    let seen = ok(
        fx.run(&["inspect", "--raw", &dst, "--creds", "bob:plain-side-pw"]),
        "inspect the copy",
    );
    assert!(seen.contains("\"layers\""), "{seen}");

    // --src-tls-verify=false instead of the CA also reaches it.
    ok(
        fx.run(&[
            "copy",
            &src,
            &format!("docker://{b}/mirror/app:2"),
            "--src-creds",
            "alice:tls-side-pw",
            "--src-tls-verify=false",
            "--dest-creds",
            "bob:plain-side-pw",
        ]),
        "copy with --src-tls-verify=false",
    );

    // Without the source's CA: a certificate error, and a hint.
    user_error(
        fx.run(&[
            "copy",
            &src,
            &dst,
            "--src-creds",
            "alice:tls-side-pw",
            "--dest-creds",
            "bob:plain-side-pw",
        ]),
        "no CA for the source",
        "--ca-cert",
    );
    // One set of credentials for both: the destination refuses it.
    user_error(
        fx.run(&[
            "copy",
            &src,
            &dst,
            "--src-cert-dir",
            &src_certs,
            "--creds",
            "alice:tls-side-pw",
        ]),
        "alice's credentials at the plain registry",
        &b,
    );
    // --dest-* for a destination that is not a registry is a usage error.
    user_error(
        fx.run(&[
            "copy",
            &archive,
            &format!("oci:{}", fx.path("layout").display()),
            "--dest-creds",
            "x:y",
        ]),
        "--dest-creds for a layout",
        "not one",
    );
    // A cert dir with a client certificate but no key says which file.
    let broken = fx.dir_with("broken-certs", &[(&ca, "client.cert")]);
    user_error(
        fx.run(&["copy", &src, &dst, "--src-cert-dir", &broken]),
        "client cert without key",
        "client.key",
    );
}

/// Remove a directory when the test ends, whatever happens.
struct RemoveOnDrop(PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn certs_d_gives_ca_and_client_certificate_as_docker_reads_it() {
    let Some(registry) = RegistryGuard::start(Mode::MutualTls) else {
        return;
    };
    let fx = Fx::new();
    let host = registry.host();
    let (client_cert, client_key) = registry.client_cert_paths();
    let archive = fx.archive(9);
    let dst = format!("docker://{host}/mtls/app:1");

    // Without a client certificate the registry refuses the handshake
    // (the CA alone is not enough).
    let ca = registry.ca_pem_path();
    let out = fx.run(&["copy", &archive, &dst, "--ca-cert", ca.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    // Docker's own place when we may write it (as root), else the same
    // layout under DOCKYARD_CERTS_D.
    let system = Path::new("/etc/docker/certs.d");
    let use_system = std::fs::create_dir_all(system.join(&host)).is_ok();
    let certs_d = if use_system {
        system.to_path_buf()
    } else {
        eprintln!("/etc/docker/certs.d is not writable: using DOCKYARD_CERTS_D");
        fx.path("certs.d")
    };
    let host_dir = certs_d.join(&host);
    let _cleanup = RemoveOnDrop(host_dir.clone());
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::copy(&ca, host_dir.join("ca.crt")).unwrap();
    std::fs::copy(&client_cert, host_dir.join("client.cert")).unwrap();
    std::fs::copy(&client_key, host_dir.join("client.key")).unwrap();
    let with_certs_d = |args: &[&str]| -> Output {
        let mut c = fx.cmd();
        if use_system {
            c.env_remove("DOCKYARD_CERTS_D");
        } else {
            c.env("DOCKYARD_CERTS_D", &certs_d);
        }
        c.args(args).output().unwrap()
    };
    let pushed = ok(
        with_certs_d(&["copy", &archive, &dst]),
        "push through certs.d",
    );
    let inspected = ok(
        with_certs_d(&["inspect", "--json", &dst]),
        "inspect through certs.d",
    );
    assert!(
        inspected.contains(pushed.lines().last().unwrap_or("?")),
        "{inspected}"
    );

    // The same files given as --cert-dir, with certs.d out of the way.
    let dir = fx.dir_with(
        "cert-dir",
        &[
            (&ca, "ca.crt"),
            (&client_cert, "client.cert"),
            (&client_key, "client.key"),
        ],
    );
    ok(
        fx.run(&["inspect", &dst, "--cert-dir", &dir]),
        "inspect with --cert-dir",
    );
}
