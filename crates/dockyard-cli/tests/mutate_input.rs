//! What `mutate` makes of its input: ports validated and expanded as
//! Docker's EXPOSE does, shell-form commands, SOURCE_DATE_EPOCH checked,
//! `created` agreeing with the newest history entry, and digests that do
//! not depend on flag order or on the host folder's name.

use std::path::Path;
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

struct Fx {
    tmp: tempfile::TempDir,
}

impl Fx {
    fn new() -> Fx {
        Fx {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::cargo_bin("dockyard").unwrap();
        cmd.env("DOCKYARD_CACHE", self.tmp.path().join("cache"))
            .env_remove("SOURCE_DATE_EPOCH");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args).output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run_env(args, &[]);
        assert!(
            out.status.success(),
            "dockyard {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
    fn archive(&self, name: &str) -> String {
        format!("docker-archive:{}", self.tmp.path().join(name).display())
    }
    fn config(&self, src: &str) -> Value {
        serde_json::from_str(&self.ok(&["inspect", "--config", src])).unwrap()
    }
}

fn fails_with(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn ports_are_checked_and_ranges_expanded() {
    let fx = Fx::new();
    let out = fx.archive("p.tar");
    fx.ok(&[
        "mutate",
        "scratch",
        &out,
        "--expose",
        "8000-8002/tcp",
        "--expose",
        "53/udp",
        "--expose",
        "80",
    ]);
    let ports = fx.config(&out)["config"]["ExposedPorts"].clone();
    let keys: Vec<&String> = ports.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["53/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp"],
        "sorted, expanded"
    );
    for bad in ["abc", "99999", "80/foo", "0", "10-5"] {
        let res = fx.run_env(
            &["mutate", "scratch", &fx.archive("bad.tar"), "--expose", bad],
            &[],
        );
        fails_with(&res, "invalid port");
        assert!(!fx.tmp.path().join("bad.tar").exists());
    }
}

#[test]
fn commands_take_exec_and_shell_forms() {
    let fx = Fx::new();
    let out = fx.archive("c.tar");
    fx.ok(&[
        "mutate",
        "scratch",
        &out,
        "--cmd",
        "sh -c 'echo hi there'",
        "--entrypoint",
        r#"["/bin/env", "-i"]"#,
    ]);
    let c = fx.config(&out)["config"].clone();
    assert_eq!(
        c["Cmd"],
        serde_json::json!(["/bin/sh", "-c", "sh -c 'echo hi there'"])
    );
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/env", "-i"]));
    let res = fx.run_env(&["mutate", "scratch", &out, "--cmd", "[not json"], &[]);
    fails_with(&res, "invalid command");
}

#[test]
fn a_bad_source_date_epoch_is_an_error() {
    let fx = Fx::new();
    let res = fx.run_env(
        &["mutate", "scratch", &fx.archive("e.tar"), "--env", "A=1"],
        &[("SOURCE_DATE_EPOCH", "yesterday")],
    );
    fails_with(&res, "SOURCE_DATE_EPOCH");
    assert!(!fx.tmp.path().join("e.tar").exists());
}

#[test]
fn created_follows_the_newest_layer_and_order_and_folders_do_not_matter() {
    let fx = Fx::new();
    let one = fx.tmp.path().join("one");
    let two = fx.tmp.path().join("elsewhere/two");
    for dir in [&one, &two] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("app.txt"), "same content\n").unwrap();
    }
    let build = |dir: &Path, name: &str, labels: [&str; 2]| {
        let out = fx.run_env(
            &[
                "mutate",
                "scratch",
                &fx.archive(name),
                "--add",
                &format!("{}:/app", dir.display()),
                "--label",
                labels[0],
                "--label",
                labels[1],
            ],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let a = build(&one, "a.tar", ["b=2", "a=1"]);
    let b = build(&two, "b.tar", ["a=1", "b=2"]);
    assert_eq!(a, b, "same files and labels: same image");
    let config = fx.config(&fx.archive("a.tar"));
    let newest = config["history"].as_array().unwrap().last().unwrap()["created"].clone();
    assert_eq!(config["created"], newest);
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    let created_by = newest_created_by(&config);
    assert!(
        !created_by.contains("one") && created_by.contains("ADD dir in /app"),
        "{created_by}"
    );
}

fn newest_created_by(config: &Value) -> String {
    config["history"].as_array().unwrap().last().unwrap()["created_by"]
        .as_str()
        .unwrap()
        .to_string()
}
