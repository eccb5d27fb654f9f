//! Authentication and transport security against a real registry: htpasswd
//! basic auth, TLS with a private CA, and bearer tokens from a token server
//! (anonymous refused, credentialed, expired tokens refreshed reactively on
//! `invalid_token` and proactively by `expires_in`).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use dockyard_image::progress::Silent;
use dockyard_image::{Image, Reference, Store};
use dockyard_registry::{
    ClientOptions, Credentials, PullOptions, Pulled, PushOptions, Pushed, Registry, RegistryError,
};
use dockyard_testsupport::registry::{
    connect, reference, runtime, temp_store, test_image, test_options, Fault, FaultProxy, Mode,
    RegistryGuard, TokenOptions,
};
use dockyard_testsupport::require_tool;
use tokio::runtime::Runtime;

const USER: &str = "alice";
const PASSWORD: &str = "correct-horse-battery-staple";

fn creds(user: &str, password: &str) -> Option<Credentials> {
    Some(Credentials {
        username: user.into(),
        password: password.into(),
    })
}

fn try_push(
    rt: &Runtime,
    reg: &Registry,
    image: &Image,
    r: &Reference,
    store: &Store,
) -> Result<Pushed, RegistryError> {
    rt.block_on(reg.push(image, r, store, &PushOptions::default(), Arc::new(Silent)))
}

fn try_pull(rt: &Runtime, reg: &Registry, r: &Reference) -> Result<Pulled, RegistryError> {
    let (_dir, store) = temp_store();
    rt.block_on(reg.pull(r, &store, &PullOptions::default(), &Silent))
}

/// Push then pull back into a fresh store; the digests agree.
fn push_and_pull(rt: &Runtime, reg: &Registry, host: &str, repo_tag: &str, seed: u64) {
    let (_d, store) = temp_store();
    let image = test_image(seed, 2, 64 << 10);
    let r = reference(host, repo_tag);
    let pushed = try_push(rt, reg, &image, &r, &store).unwrap_or_else(|e| panic!("push {r}: {e}"));
    let pulled = try_pull(rt, reg, &r).unwrap_or_else(|e| panic!("pull {r}: {e}"));
    assert_eq!(pulled.digest, pushed.digest);
    assert_eq!(
        pulled.image.as_ref().unwrap().config_raw(),
        image.config_raw()
    );
}

#[test]
fn basic_auth_refuses_without_credentials_and_names_the_registry() {
    let Some(registry) = RegistryGuard::start(Mode::basic(USER, PASSWORD)) else {
        return;
    };
    let rt = runtime();
    let client = connect(&rt, &registry.host(), test_options());
    let (_d, store) = temp_store();
    let image = test_image(10, 1, 16 << 10);
    let r = reference(&registry.host(), "private/app:1");
    let err = try_push(&rt, &client, &image, &r, &store).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&registry.host()), "{msg}");
    assert!(msg.contains("login"), "tells the user what to do: {msg}");
    assert!(err.is_user_error());

    let err = try_pull(&rt, &client, &r).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains(&registry.host()));
}

#[test]
fn basic_auth_wrong_password_is_refused_without_leaking_it() {
    let Some(registry) = RegistryGuard::start(Mode::basic(USER, PASSWORD)) else {
        return;
    };
    let wrong = "Wr0ng-Passw0rd-do-not-print";
    let rt = runtime();
    let opts = ClientOptions {
        credentials: creds(USER, wrong),
        ..test_options()
    };
    let client = connect(&rt, &registry.host(), opts);
    let (_d, store) = temp_store();
    let image = test_image(11, 1, 16 << 10);
    let r = reference(&registry.host(), "private/app:1");
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{wrong}"));
    let check = |err: &RegistryError| {
        assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
        for text in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
            assert!(!text.contains(wrong), "the password leaked: {text}");
            assert!(
                !text.contains(&encoded),
                "the encoded password leaked: {text}"
            );
            assert!(text.contains(&registry.host()), "{text}");
        }
    };
    check(&try_push(&rt, &client, &image, &r, &store).unwrap_err());
    check(&try_pull(&rt, &client, &r).unwrap_err());
    check(&rt.block_on(client.verify_login(None)).unwrap_err());
    // The user is named, so they know which login was refused.
    let err = rt.block_on(client.verify_login(None)).unwrap_err();
    assert!(err.to_string().contains(USER), "{err}");
}

#[test]
fn basic_auth_with_the_right_credentials_pushes_and_pulls() {
    let Some(registry) = RegistryGuard::start(Mode::basic(USER, PASSWORD)) else {
        return;
    };
    let rt = runtime();
    let opts = ClientOptions {
        credentials: creds(USER, PASSWORD),
        ..test_options()
    };
    let client = connect(&rt, &registry.host(), opts);
    rt.block_on(client.verify_login(None)).expect("login check");
    push_and_pull(&rt, &client, &registry.host(), "private/app:1", 12);
}

#[test]
fn tls_needs_the_ca_or_an_explicit_insecure() {
    let Some(registry) = RegistryGuard::start(Mode::Tls) else {
        return;
    };
    let rt = runtime();
    let host = registry.host();

    // No CA: certificate verification fails, nothing is pushed.
    let client = connect(&rt, &host, test_options());
    let (_d, store) = temp_store();
    let image = test_image(13, 1, 16 << 10);
    let r = reference(&host, "secure/app:1");
    let err = try_push(&rt, &client, &image, &r, &store).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.to_lowercase().contains("certificate") || msg.contains("UnknownIssuer"),
        "expected a TLS certificate error, got: {msg}"
    );
    assert!(msg.contains(&host), "{msg}");
    let err = try_pull(&rt, &client, &r).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );

    // With the CA it works (and it is TLS: the CA is what made it work).
    let with_ca = ClientOptions {
        ca_certs: vec![registry.ca_pem_path()],
        ..test_options()
    };
    let client = connect(&rt, &host, with_ca);
    push_and_pull(&rt, &client, &host, "secure/app:1", 13);

    // Without verification it works too.
    let insecure = ClientOptions {
        insecure_skip_tls_verify: true,
        ..test_options()
    };
    let client = connect(&rt, &host, insecure);
    push_and_pull(&rt, &client, &host, "secure/other:1", 14);

    // A file that is not a certificate is a configuration error at connect.
    let bogus = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bogus.path(), "not a certificate\n").unwrap();
    let bad = ClientOptions {
        ca_certs: vec![bogus.path().to_path_buf()],
        ..test_options()
    };
    let result = rt.block_on(Registry::connect(&host, bad));
    match result {
        Err(e) => assert!(
            e.to_string().contains(&bogus.path().display().to_string()),
            "{e}"
        ),
        Ok(c) => {
            // Accepting an empty bundle is tolerable only if it then fails
            // verification like no CA at all.
            let err = try_push(&rt, &c, &image, &r, &store).unwrap_err();
            assert!(
                err.to_string().to_lowercase().contains("certificate"),
                "{err}"
            );
        }
    }
}

#[test]
fn tls_with_a_self_signed_certificate_given_as_the_ca() {
    // The certificate users make with `openssl req -x509 ... -addext
    // subjectAltName=IP:127.0.0.1` (CA:TRUE, also the server's own cert),
    // as TESTING.md and Docker's docs describe. Docker, skopeo and curl
    // trust it when given it as the CA.
    let Some(registry) = RegistryGuard::start(Mode::TlsSelfSigned) else {
        return;
    };
    let host = registry.host();
    let rt = runtime();
    if require_tool("skopeo") {
        // The registry and certificate are fine for a Go client: skopeo
        // pushes with the certificate in its --dest-cert-dir.
        let tmp = tempfile::tempdir().unwrap();
        let certs = tmp.path().join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::copy(registry.ca_pem_path(), certs.join("ca.crt")).unwrap();
        let layout = tmp.path().join("layout");
        dockyard_image::transport::write_image(
            &test_image(23, 1, 16 << 10),
            &dockyard_image::transport::Location::OciDir {
                path: layout.clone(),
                reference: Some("x".into()),
            },
            None,
            &Silent,
        )
        .unwrap();
        dockyard_testsupport::run_ok(
            std::process::Command::new("skopeo")
                .args(["--insecure-policy", "copy", "--dest-cert-dir"])
                .arg(&certs)
                .arg(format!("oci:{}:x", layout.display()))
                .arg(format!("docker://{host}/by-skopeo:1")),
        );
    }
    let client = connect(
        &rt,
        &host,
        ClientOptions {
            ca_certs: vec![registry.ca_pem_path()],
            ..test_options()
        },
    );
    let (_d, store) = temp_store();
    let image = test_image(22, 1, 16 << 10);
    let r = reference(&host, "selfsigned/app:1");
    let pushed = try_push(&rt, &client, &image, &r, &store)
        .unwrap_or_else(|e| panic!("push with the self-signed cert as CA: {e}"));
    let pulled = try_pull(&rt, &client, &r).expect("pull");
    assert_eq!(pulled.digest, pushed.digest);
}

#[test]
fn tls_with_basic_auth() {
    let Some(registry) = RegistryGuard::start(Mode::tls_basic(USER, PASSWORD)) else {
        return;
    };
    let rt = runtime();
    let host = registry.host();
    let anonymous = connect(
        &rt,
        &host,
        ClientOptions {
            ca_certs: vec![registry.ca_pem_path()],
            ..test_options()
        },
    );
    let err = try_pull(&rt, &anonymous, &reference(&host, "secure/app:1")).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    let client = connect(
        &rt,
        &host,
        ClientOptions {
            ca_certs: vec![registry.ca_pem_path()],
            credentials: creds(USER, PASSWORD),
            ..test_options()
        },
    );
    push_and_pull(&rt, &client, &host, "secure/app:1", 15);
}

#[test]
fn token_auth_refuses_anonymous_when_the_server_wants_credentials() {
    let opts = TokenOptions::new(300).credentials(USER, PASSWORD);
    let Some(registry) = RegistryGuard::start(Mode::Token(opts)) else {
        return;
    };
    let rt = runtime();
    let client = connect(&rt, &registry.host(), test_options());
    let r = reference(&registry.host(), "tok/app:1");
    let err = try_pull(&rt, &client, &r).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&registry.host()), "{msg}");
    assert!(msg.contains("authentication required"), "{msg}");
    assert_eq!(registry.tokens_issued(), 0);
    let asked = registry.token_server().unwrap().requests();
    assert!(!asked.is_empty(), "the token server was asked");
    assert!(asked.iter().all(|q| q.status == 401 && q.user.is_none()));
    assert!(
        asked[0]
            .scopes
            .iter()
            .any(|s| s == "repository:tok/app:pull"),
        "{asked:?}"
    );

    // Wrong credentials: refused, and said so.
    let client = connect(
        &rt,
        &registry.host(),
        ClientOptions {
            credentials: creds(USER, "not-the-password"),
            ..test_options()
        },
    );
    let err = try_pull(&rt, &client, &r).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("not-the-password"));
}

#[test]
fn token_auth_with_credentials_pushes_and_pulls() {
    let opts = TokenOptions::new(300).credentials(USER, PASSWORD);
    let Some(registry) = RegistryGuard::start(Mode::Token(opts)) else {
        return;
    };
    let rt = runtime();
    let client = connect(
        &rt,
        &registry.host(),
        ClientOptions {
            credentials: creds(USER, PASSWORD),
            ..test_options()
        },
    );
    // What `dockyard login` checks.
    rt.block_on(client.verify_login(None))
        .expect("login with a token server");
    let wrong = connect(
        &rt,
        &registry.host(),
        ClientOptions {
            credentials: creds(USER, "nope-nope"),
            ..test_options()
        },
    );
    let err = rt.block_on(wrong.verify_login(None)).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("nope-nope"));

    push_and_pull(&rt, &client, &registry.host(), "tok/app:1", 16);
    assert!(registry.tokens_issued() >= 2, "a push and a pull token");
    let asked = registry.token_server().unwrap().requests();
    assert!(asked
        .iter()
        .any(|q| q.scopes.iter().any(|s| s == "repository:tok/app:pull,push")));
    assert!(asked.iter().all(|q| q.user.as_deref() == Some(USER)));
    // Tokens are reused while fresh: a second pull asks for none.
    let before = registry.tokens_issued();
    try_pull(&rt, &client, &reference(&registry.host(), "tok/app:1")).expect("pull again");
    assert_eq!(registry.tokens_issued(), before);

    // A cross-repository mount needs a token for two scopes at once.
    let (_d, store) = temp_store();
    let image = test_image(21, 2, 32 << 10);
    try_push(
        &rt,
        &client,
        &image,
        &reference(&registry.host(), "tok/one:1"),
        &store,
    )
    .expect("push to one");
    let second = try_push(
        &rt,
        &client,
        &image,
        &reference(&registry.host(), "tok/two:1"),
        &store,
    )
    .expect("push to two");
    assert_eq!(second.blobs_mounted, 3, "{second:?}");
    assert_eq!(second.bytes_uploaded, 0);
    let asked = registry.token_server().unwrap().requests();
    assert!(
        asked.iter().any(
            |q| q.scopes.iter().any(|s| s == "repository:tok/two:pull,push")
                && q.scopes.iter().any(|s| s == "repository:tok/one:pull")
        ),
        "{asked:?}"
    );
}

#[test]
fn expired_token_is_refreshed_on_invalid_token() {
    // The token server says 300 s, but the JWT dies after 5 s: only the
    // registry's `401 error="invalid_token"` tells the client.
    let opts = TokenOptions::new(5)
        .advertise(300)
        .credentials(USER, PASSWORD);
    let Some(registry) = RegistryGuard::start(Mode::Token(opts)) else {
        return;
    };
    let proxy = FaultProxy::start(registry.port(), Fault::None);
    let rt = runtime();
    let client = connect(
        &rt,
        &proxy.host(),
        ClientOptions {
            credentials: creds(USER, PASSWORD),
            ..test_options()
        },
    );
    let (_d, store) = temp_store();
    let first = test_image(17, 2, 32 << 10);
    try_push(
        &rt,
        &client,
        &first,
        &reference(&proxy.host(), "tok/app:1"),
        &store,
    )
    .expect("first push");
    let issued = registry.tokens_issued();
    let seen = proxy.requests().len();
    std::thread::sleep(Duration::from_secs(7));
    let second = test_image(18, 2, 32 << 10);
    let pushed = try_push(
        &rt,
        &client,
        &second,
        &reference(&proxy.host(), "tok/app:2"),
        &store,
    )
    .expect("push with an expired token");
    assert!(pushed.blobs_uploaded > 0);
    assert!(
        registry.tokens_issued() > issued,
        "no new token after the old one expired"
    );
    let later = &proxy.requests()[seen..];
    assert!(
        later.iter().any(|q| q.status == 401),
        "the registry should have refused the expired token: {later:?}"
    );
    // The image really is there.
    let pulled = try_pull(&rt, &client, &reference(&proxy.host(), "tok/app:2")).expect("pull");
    assert_eq!(pulled.digest, pushed.digest);
}

#[test]
fn token_is_refreshed_before_it_expires() {
    // Honest 5 s tokens: the client renews before use, so the registry
    // never has to refuse one.
    let opts = TokenOptions::new(5).credentials(USER, PASSWORD);
    let Some(registry) = RegistryGuard::start(Mode::Token(opts)) else {
        return;
    };
    let proxy = FaultProxy::start(registry.port(), Fault::None);
    let rt = runtime();
    let client = connect(
        &rt,
        &proxy.host(),
        ClientOptions {
            credentials: creds(USER, PASSWORD),
            ..test_options()
        },
    );
    let (_d, store) = temp_store();
    let first = test_image(19, 1, 32 << 10);
    try_push(
        &rt,
        &client,
        &first,
        &reference(&proxy.host(), "tok/app:1"),
        &store,
    )
    .expect("first push");
    let issued = registry.tokens_issued();
    let seen = proxy.requests().len();
    std::thread::sleep(Duration::from_secs(6));
    let second = test_image(20, 1, 32 << 10);
    try_push(
        &rt,
        &client,
        &second,
        &reference(&proxy.host(), "tok/app:2"),
        &store,
    )
    .expect("push after the token's life");
    assert!(registry.tokens_issued() > issued, "no new token fetched");
    let later = &proxy.requests()[seen..];
    assert!(
        later.iter().all(|q| q.status != 401),
        "a stale token was sent: {later:?}"
    );
}
