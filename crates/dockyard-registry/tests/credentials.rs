//! Credentials from the Docker config (`auths`, `credHelpers`), and
//! `save_credentials` / `remove_credentials`, against a real basic-auth
//! registry. DOCKER_CONFIG and PATH are process-wide, so every check that
//! changes them is in the one test of this file, in sequence.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use dockyard_image::progress::Silent;
use dockyard_registry::auth::{
    credentials_from_docker_config, docker_config_path, remove_credentials, save_credentials,
    SavedTo,
};
use dockyard_registry::{Credentials, PullOptions, PushOptions, RegistryError};
use dockyard_testsupport::registry::{
    connect, reference, runtime, temp_store, test_image, test_options, Mode, RegistryGuard,
};
use serde_json::{json, Value};
use tokio::runtime::Runtime;

const USER: &str = "carol";
const PASSWORD: &str = "s3cret-from-the-config";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Push and pull an image with a client given no credentials (so it reads
/// the Docker config).
fn push_pull_without_explicit_credentials(
    rt: &Runtime,
    host: &str,
    tag: &str,
    seed: u64,
) -> Result<(), RegistryError> {
    let client = connect(rt, host, test_options());
    let (_d, store) = temp_store();
    let image = test_image(seed, 1, 32 << 10);
    let r = reference(host, &format!("creds/app:{tag}"));
    let pushed = rt.block_on(client.push(
        &image,
        &r,
        &store,
        &PushOptions::default(),
        Arc::new(Silent),
    ))?;
    let (_d2, fresh) = temp_store();
    let pulled = rt.block_on(client.pull(&r, &fresh, &PullOptions::default(), &Silent))?;
    assert_eq!(pulled.digest, pushed.digest);
    Ok(())
}

fn write_json(path: &Path, v: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn docker_config_auths_helpers_save_and_remove() {
    let Some(registry) = RegistryGuard::start(Mode::basic(USER, PASSWORD)) else {
        return;
    };
    let host = registry.host();
    let rt = runtime();
    let tmp = tempfile::tempdir().unwrap();
    std::env::remove_var("DOCKYARD_USERNAME");
    std::env::remove_var("DOCKYARD_PASSWORD");

    // 0. An empty config: no credentials, refused.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::env::set_var("DOCKER_CONFIG", &empty);
    assert_eq!(docker_config_path(), empty.join("config.json"));
    assert_eq!(credentials_from_docker_config(&host).unwrap(), None);
    let err = push_pull_without_explicit_credentials(&rt, &host, "0", 40).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");

    // 1. `auths` with base64 user:password under the bare host.
    let auths = tmp.path().join("auths");
    std::env::set_var("DOCKER_CONFIG", &auths);
    write_json(
        &auths.join("config.json"),
        &json!({"auths": {host.clone(): {"auth": b64(&format!("{USER}:{PASSWORD}"))}}}),
    );
    assert_eq!(
        credentials_from_docker_config(&host).unwrap(),
        Some(Credentials {
            username: USER.into(),
            password: PASSWORD.into()
        })
    );
    push_pull_without_explicit_credentials(&rt, &host, "1", 41).expect("auths credentials");

    // ... and under an `https://` key, as some tools write it.
    write_json(
        &auths.join("config.json"),
        &json!({"auths": {format!("https://{host}"): {"auth": b64(&format!("{USER}:{PASSWORD}"))}}}),
    );
    push_pull_without_explicit_credentials(&rt, &host, "1b", 42).expect("https:// key");

    // A wrong password in the config is refused, and not printed.
    write_json(
        &auths.join("config.json"),
        &json!({"auths": {host.clone(): {"auth": b64(&format!("{USER}:from-config-but-wrong"))}}}),
    );
    let err = push_pull_without_explicit_credentials(&rt, &host, "1c", 43).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("from-config-but-wrong"));

    // A malformed config is an error naming the file, not a silent anonymous try.
    std::fs::write(auths.join("config.json"), "{\"auths\": {").unwrap();
    let err = push_pull_without_explicit_credentials(&rt, &host, "1d", 44).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");

    // 2. `credHelpers`: docker-credential-dockyardtest on PATH.
    let helpers = tmp.path().join("helpers");
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let asked = tmp.path().join("helper-asked");
    let script = bin.join("docker-credential-dockyardtest");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread -r server\necho \"$server\" >> '{}'\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}\\n' \"$server\"\n",
            asked.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old_path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin.clone()];
    paths.extend(std::env::split_paths(&old_path));
    std::env::set_var("PATH", std::env::join_paths(paths).unwrap());
    std::env::set_var("DOCKER_CONFIG", &helpers);
    write_json(
        &helpers.join("config.json"),
        &json!({"credHelpers": {host.clone(): "dockyardtest"}}),
    );
    push_pull_without_explicit_credentials(&rt, &host, "2", 45).expect("helper credentials");
    let asked_for = std::fs::read_to_string(&asked).expect("the helper was run");
    assert!(
        asked_for.lines().all(|l| l == host),
        "the helper was asked for {asked_for:?}, not {host}"
    );

    // 2b. `credsStore`: the same helper as the default store for every registry.
    let store_cfg = tmp.path().join("creds-store");
    std::env::set_var("DOCKER_CONFIG", &store_cfg);
    write_json(
        &store_cfg.join("config.json"),
        &json!({"credsStore": "dockyardtest"}),
    );
    std::fs::remove_file(&asked).unwrap();
    push_pull_without_explicit_credentials(&rt, &host, "2b", 46).expect("credsStore credentials");
    let asked_for = std::fs::read_to_string(&asked).expect("the store helper was run");
    assert!(
        asked_for.lines().any(|l| l == host),
        "asked for {asked_for:?}"
    );

    // 3. save_credentials: mode 0600, other keys kept.
    let saved = tmp.path().join("saved");
    std::env::set_var("DOCKER_CONFIG", &saved);
    let config = saved.join("config.json");
    write_json(
        &config,
        &json!({
            "auths": {"other.example": {"auth": b64("other:pw")}},
            "credHelpers": {"gcr.io": "gcloud"},
            "psFormat": "table {{.ID}}",
        }),
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let creds = Credentials {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    let saved_to = save_credentials(&host, &creds).expect("save");
    assert_eq!(saved_to, SavedTo::ConfigFile(config.clone()));
    assert_eq!(mode(&config), 0o600, "credentials file must be private");
    let v = read_json(&config);
    assert_eq!(
        v["auths"][host.as_str()]["auth"],
        json!(b64(&format!("{USER}:{PASSWORD}")))
    );
    assert_eq!(v["auths"]["other.example"]["auth"], json!(b64("other:pw")));
    assert_eq!(v["credHelpers"], json!({"gcr.io": "gcloud"}));
    assert_eq!(v["psFormat"], json!("table {{.ID}}"));
    push_pull_without_explicit_credentials(&rt, &host, "3", 46).expect("saved credentials");
    // No temp file left beside it.
    let names: Vec<_> = std::fs::read_dir(&saved)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["config.json"]);

    // Saving into a directory that does not exist yet creates it, 0600.
    let fresh = tmp.path().join("fresh/nested");
    std::env::set_var("DOCKER_CONFIG", &fresh);
    save_credentials(&host, &creds).expect("save into a new dir");
    assert_eq!(mode(&fresh.join("config.json")), 0o600);

    // 4. remove_credentials: the entry goes, the rest stays.
    std::env::set_var("DOCKER_CONFIG", &saved);
    assert!(remove_credentials(&host).expect("remove"));
    let v = read_json(&config);
    assert!(v["auths"].get(host.as_str()).is_none(), "{v}");
    assert_eq!(v["auths"]["other.example"]["auth"], json!(b64("other:pw")));
    assert_eq!(v["psFormat"], json!("table {{.ID}}"));
    assert_eq!(mode(&config), 0o600);
    assert!(!remove_credentials(&host).expect("remove again"));
    assert_eq!(credentials_from_docker_config(&host).unwrap(), None);
    let err = push_pull_without_explicit_credentials(&rt, &host, "4", 47).unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");

    std::env::set_var("PATH", old_path);
    std::env::remove_var("DOCKER_CONFIG");
}
