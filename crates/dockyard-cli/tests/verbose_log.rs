//! `-v` is for debugging a registry conversation: each request's method,
//! URL, status and how it authenticated (anonymous, basic, a bearer token
//! and its scope), retries and why — and never a secret.

use std::process::Output;

use assert_cmd::Command;
use dockyard_image::progress::Silent;
use dockyard_image::transport::{write_image, Location};
use dockyard_testsupport::registry::{
    base64_encode, test_image, Fault, FaultProxy, Mode, RegistryGuard, TokenOptions,
};

const USER: &str = "vera";
const PASSWORD: &str = "never-in-the-log-pw";

fn dockyard(tmp: &tempfile::TempDir, args: &[&str]) -> Output {
    Command::cargo_bin("dockyard")
        .unwrap()
        .env("DOCKYARD_CACHE", tmp.path().join("cache"))
        .env("DOCKER_CONFIG", tmp.path().join("docker-config"))
        .env_remove("RUST_LOG")
        .env_remove("DOCKYARD_USERNAME")
        .env_remove("DOCKYARD_PASSWORD")
        .args(args)
        .output()
        .unwrap()
}

fn archive(tmp: &tempfile::TempDir) -> String {
    let path = tmp.path().join("image.tar");
    write_image(
        &test_image(3, 1, 32 << 10),
        &Location::DockerArchive {
            path: path.clone(),
            reference: None,
        },
        None,
        &Silent,
    )
    .expect("write docker archive");
    format!("docker-archive:{}", path.display())
}

fn stderr_of(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    err
}

fn assert_no_secret(log: &str) {
    assert!(
        !log.contains(PASSWORD),
        "the password is in the log:\n{log}"
    );
    let basic = base64_encode(format!("{USER}:{PASSWORD}"));
    assert!(
        !log.contains(&basic),
        "the basic header is in the log:\n{log}"
    );
}

#[test]
fn verbose_names_requests_statuses_and_auth_but_no_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(basic) = RegistryGuard::start(Mode::basic(USER, PASSWORD)) else {
        return;
    };
    let creds = format!("{USER}:{PASSWORD}");
    let dst = format!("docker://{}/log/app:1", basic.host());
    let log = stderr_of(&dockyard(
        &tmp,
        &["-v", "copy", &archive(&tmp), &dst, "--creds", &creds],
    ));
    let base = format!("http://{}/v2/log/app/", basic.host());
    assert!(log.contains(&format!("HEAD {base}blobs/sha256:")), "{log}");
    assert!(
        log.contains("-> 401"),
        "the first answer asks for credentials:\n{log}"
    );
    assert!(log.contains("auth: basic"), "{log}");
    assert!(
        log.contains(&format!("PUT {base}manifests/1 -> 201")),
        "{log}"
    );
    assert!(!log.contains('\u{1b}'), "colour codes on a pipe:\n{log}");
    assert!(
        !log.contains("hyper_util"),
        "the HTTP stack's own debug lines:\n{log}"
    );
    assert_no_secret(&log);

    // Tokens: the token request is logged with its scope, the requests
    // with "bearer token for repository:…", the token itself never.
    let Some(token) = RegistryGuard::start(Mode::Token(
        TokenOptions::new(300).credentials(USER, PASSWORD),
    )) else {
        return;
    };
    let src = format!("docker://{}/log/app:1", token.host());
    stderr_of(&dockyard(&tmp, &["copy", &dst, &src, "--creds", &creds]));
    let log = stderr_of(&dockyard(&tmp, &["-v", "inspect", &src, "--creds", &creds]));
    assert!(
        log.contains("token for repository:log/app:pull; with basic credentials"),
        "{log}"
    );
    assert!(
        log.contains("auth: bearer token for repository:log/app:pull"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "GET http://{}/v2/log/app/manifests/1 -> 200",
            token.host()
        )),
        "{log}"
    );
    assert!(!log.contains("eyJ"), "a JWT is in the log:\n{log}");
    assert_no_secret(&log);

    // Retries and their reasons: a 503 burst in front of the registry.
    let proxy = FaultProxy::start(basic.port(), Fault::ServiceUnavailableBurst(2));
    let via = format!("docker://{}/log/app:1", proxy.host());
    let log = stderr_of(&dockyard(&tmp, &["-v", "inspect", &via, "--creds", &creds]));
    assert!(
        log.contains("-> 503 Service Unavailable: retrying (attempt 1 of"),
        "{log}"
    );
    assert_no_secret(&log);

    // Without -v: none of it.
    let quiet = stderr_of(&dockyard(&tmp, &["inspect", &dst, "--creds", &creds]));
    assert!(!quiet.contains("-> 200"), "{quiet}");
}
