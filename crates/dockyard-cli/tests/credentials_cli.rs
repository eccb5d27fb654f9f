//! Credentials as Docker keeps them, through the CLI against a real
//! basic-auth registry: `login` with a `credsStore` stores the secret
//! through the helper (never base64 in `auths`), entries keyed by URL
//! (`https://HOST/v2/`, `http://HOST`) match HOST, `login https://HOST/`
//! and `logout https://HOST/` name one entry, and `login` on a terminal
//! asks for the password without echo.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;

use assert_cmd::Command;
use dockyard_testsupport::registry::{base64_encode, Mode, RegistryGuard};
use dockyard_testsupport::require_tool;
use serde_json::{json, Value};

const USER: &str = "erin";
const PASSWORD: &str = "helper-kept-s3cret";

struct Fx {
    tmp: tempfile::TempDir,
}

impl Fx {
    fn new() -> Fx {
        let fx = Fx {
            tmp: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(fx.path("bin")).unwrap();
        std::fs::create_dir_all(fx.path("docker-config")).unwrap();
        fx
    }
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    fn config_path(&self) -> PathBuf {
        self.path("docker-config/config.json")
    }
    fn write_config(&self, v: &Value) {
        std::fs::write(self.config_path(), serde_json::to_vec_pretty(v).unwrap()).unwrap();
    }
    fn config(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.config_path()).unwrap()).unwrap()
    }
    fn cmd(&self) -> Command {
        let old = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.path("bin")];
        paths.extend(std::env::split_paths(&old));
        let mut c = Command::cargo_bin("dockyard").unwrap();
        c.env("DOCKYARD_CACHE", self.path("cache"))
            .env("DOCKER_CONFIG", self.path("docker-config"))
            .env("PATH", std::env::join_paths(paths).unwrap())
            .env_remove("DOCKYARD_USERNAME")
            .env_remove("DOCKYARD_PASSWORD")
            .current_dir(self.tmp.path());
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }
    fn login(&self, host: &str) -> Output {
        self.cmd()
            .args(["login", host, "-u", USER, "--password-stdin"])
            .write_stdin(format!("{PASSWORD}\n"))
            .output()
            .unwrap()
    }
    /// Copy a scratch-based image with one small layer to the registry
    /// (needs push access, so it proves which credentials were found).
    fn push(&self, host: &str, tag: &str) -> Output {
        let dir = self.path(&format!("content-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), tag).unwrap();
        self.run(&[
            "mutate",
            "scratch",
            &format!("docker://{host}/creds/app:{tag}"),
            "--add",
            &format!("{}:/", dir.display()),
        ])
    }
    /// A real credential helper as far as the protocol goes: `store`,
    /// `get`, `erase` and `list` on a JSON file, every call logged.
    fn install_helper(&self, name: &str) {
        let script = self.path(&format!("bin/docker-credential-{name}"));
        let db = self.path(&format!("helper-{name}.json"));
        let log = self.path(&format!("helper-{name}.log"));
        std::fs::write(
            &script,
            format!(
                r#"#!/usr/bin/env python3
import json, os, sys
db, log = {db:?}, {log:?}
data = json.load(open(db)) if os.path.exists(db) else {{}}
verb = sys.argv[1]
arg = sys.stdin.read()
open(log, "a").write(verb + " " + (json.loads(arg)["ServerURL"] if verb == "store" else arg.strip()) + "\n")
if verb == "store":
    entry = json.loads(arg)
    data[entry["ServerURL"]] = {{"Username": entry["Username"], "Secret": entry["Secret"]}}
elif verb == "get":
    if arg.strip() not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    e = data[arg.strip()]
    print(json.dumps({{"ServerURL": arg.strip(), "Username": e["Username"], "Secret": e["Secret"]}}))
elif verb == "erase":
    if arg.strip() not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    del data[arg.strip()]
json.dump(data, open(db, "w"))
"#
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    fn helper_data(&self, name: &str) -> Value {
        std::fs::read(self.path(&format!("helper-{name}.json")))
            .map(|b| serde_json::from_slice(&b).unwrap())
            .unwrap_or(json!({}))
    }
    fn helper_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("helper-{name}.log"))).unwrap_or_default()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn assert_refused(out: &Output, what: &str) {
    assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("authentication required"),
        "{what}: {}",
        text(&out.stderr)
    );
}

#[test]
fn login_with_a_creds_store_keeps_the_secret_in_the_helper() {
    if !require_tool("python3") {
        return;
    }
    let Some(registry) = RegistryGuard::start(Mode::basic(USER, PASSWORD)) else {
        return;
    };
    let host = registry.host();
    let fx = Fx::new();
    fx.install_helper("dytest");
    fx.write_config(&json!({"credsStore": "dytest", "psFormat": "table"}));

    assert_refused(&fx.push(&host, "before"), "push before login");
    let out = fx.login(&host);
    assert_ok(&out, "login");
    assert!(
        text(&out.stderr).contains("docker-credential-dytest"),
        "login names where the secret went: {}",
        text(&out.stderr)
    );
    // The helper holds the secret under the host; config.json lists the
    // registry with an empty entry and holds no secret at all.
    assert_eq!(
        fx.helper_data("dytest")[host.as_str()],
        json!({"Username": USER, "Secret": PASSWORD})
    );
    let config = fx.config();
    assert_eq!(config["auths"][host.as_str()], json!({}), "{config}");
    assert_eq!(config["psFormat"], json!("table"));
    let raw = std::fs::read_to_string(fx.config_path()).unwrap();
    assert!(!raw.contains(PASSWORD), "{raw}");
    assert!(
        !raw.contains(&base64_encode(format!("{USER}:{PASSWORD}"))),
        "{raw}"
    );
    assert_eq!(
        std::fs::metadata(fx.config_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // Pushing reads the secret back through the helper.
    assert_ok(&fx.push(&host, "after"), "push after login");
    assert!(fx.helper_log("dytest").contains(&format!("get {host}")));

    // logout https://HOST/ names the same entry: erased in the helper and
    // gone from auths.
    let out = fx.run(&["logout", &format!("https://{host}/")]);
    assert_ok(&out, "logout");
    assert!(fx.helper_log("dytest").contains(&format!("erase {host}")));
    assert_eq!(fx.helper_data("dytest"), json!({}));
    assert!(fx.config()["auths"].get(host.as_str()).is_none());
    assert_refused(&fx.push(&host, "logged-out"), "push after logout");
    let out = fx.run(&["logout", &host]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a second logout: nothing to forget"
    );

    // A credHelpers entry for this host wins over credsStore.
    fx.install_helper("perhost");
    fx.write_config(&json!({"credsStore": "dytest", "credHelpers": {host.clone(): "perhost"}}));
    assert_ok(&fx.login(&host), "login through credHelpers");
    assert!(fx.helper_data("perhost").get(host.as_str()).is_some());
    assert!(fx.helper_data("dytest").get(host.as_str()).is_none());

    // A helper that fails to store is an error naming it; no entry is written.
    let broken = fx.path("bin/docker-credential-broken");
    std::fs::write(&broken, "#!/bin/sh\necho 'keychain locked'\nexit 1\n").unwrap();
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
    fx.write_config(&json!({"credsStore": "broken"}));
    let out = fx.login(&host);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("docker-credential-broken")
            && text(&out.stderr).contains("keychain locked"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(fx.config(), json!({"credsStore": "broken"}));
}

#[test]
fn auths_keyed_by_url_match_the_host() {
    let Some(registry) = RegistryGuard::start(Mode::basic(USER, PASSWORD)) else {
        return;
    };
    let host = registry.host();
    let fx = Fx::new();
    let auth = base64_encode(format!("{USER}:{PASSWORD}"));
    for (i, key) in [
        format!("https://{host}/v2/"),
        format!("https://{host}/v1/"),
        format!("http://{host}"),
        format!("https://{}/", host.to_uppercase()),
    ]
    .iter()
    .enumerate()
    {
        fx.write_config(&json!({"auths": {key.clone(): {"auth": auth}}}));
        assert_ok(&fx.push(&host, &format!("k{i}")), &format!("key {key}"));
    }

    // login https://HOST/ writes the entry under HOST, replacing the
    // older spellings of the same host; logout https://HOST/ removes it.
    fx.write_config(&json!({"auths": {
        format!("https://{host}/v2/"): {"auth": base64_encode("old:stale")},
        "other.example": {"auth": base64_encode("o:p")},
    }}));
    assert_ok(
        &fx.login(&format!("https://{host}/")),
        "login https://HOST/",
    );
    let auths = fx.config()["auths"].clone();
    assert_eq!(auths[host.as_str()]["auth"], json!(auth), "{auths}");
    assert!(
        auths.get(format!("https://{host}/v2/")).is_none(),
        "{auths}"
    );
    assert_eq!(auths["other.example"]["auth"], json!(base64_encode("o:p")));
    assert_ok(&fx.run(&["logout", &format!("https://{host}/")]), "logout");
    let auths = fx.config()["auths"].clone();
    assert!(auths.get(host.as_str()).is_none(), "{auths}");
    assert!(auths.get("other.example").is_some(), "{auths}");

    // Host names are case-insensitive: LOCALHOST:PORT is loopback (plain
    // HTTP probed) and finds the credentials stored for localhost:PORT.
    let port = registry.port();
    fx.write_config(&json!({"auths": {format!("localhost:{port}"): {"auth": auth}}}));
    assert_ok(
        &fx.push(&format!("LOCALHOST:{port}"), "upper"),
        "push to LOCALHOST:PORT",
    );
}

/// Drive `dockyard login HOST` on a pseudo-terminal as a user would:
/// answer the prompts, and check that the password was never echoed.
#[test]
fn login_on_a_terminal_asks_without_echo() {
    if !require_tool("python3") {
        return;
    }
    let Some(registry) = RegistryGuard::start(Mode::basic(USER, PASSWORD)) else {
        return;
    };
    let host = registry.host();
    let fx = Fx::new();
    let bin = assert_cmd::cargo::cargo_bin("dockyard");
    let driver = r#"
import os, pty, sys, time
bin, host, user, password, cfg = sys.argv[1:6]
pid, fd = pty.fork()
if pid == 0:
    os.environ["DOCKER_CONFIG"] = cfg
    os.execv(bin, [bin, "login", host])
seen = b""
def until(marker):
    global seen
    deadline = time.time() + 30
    while marker not in seen:
        if time.time() > deadline:
            sys.stdout.write(repr(seen)); sys.exit(3)
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
until(b"Username: ")
os.write(fd, user.encode() + b"\n")
until(b"Password: ")
os.write(fd, password.encode() + b"\n")
until(b"login succeeded")
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(driver)
        .arg(&bin)
        .arg(&host)
        .arg(USER)
        .arg(PASSWORD)
        .arg(fx.path("docker-config"))
        .env_remove("DOCKYARD_USERNAME")
        .env_remove("DOCKYARD_PASSWORD")
        .env("DOCKYARD_CACHE", fx.path("cache"))
        .output()
        .unwrap();
    let screen = text(&out.stdout);
    assert!(out.status.success(), "{screen}\n{}", text(&out.stderr));
    assert!(screen.contains("Password: "), "{screen}");
    assert!(screen.contains(USER), "the user name is echoed: {screen}");
    assert!(
        !screen.contains(PASSWORD),
        "the password was echoed: {screen}"
    );
    assert_eq!(
        fx.config()["auths"][host.as_str()]["auth"],
        json!(base64_encode(format!("{USER}:{PASSWORD}")))
    );

    // Not a terminal and no --password-stdin: a clear error, nothing asked.
    let out = fx
        .cmd()
        .args(["login", &host, "-u", USER])
        .write_stdin("")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--password-stdin"),
        "{}",
        text(&out.stderr)
    );
}
