//! `dockyard … | head -1`: a reader that stops early ends dockyard quietly
//! with exit 0, never a panic.

use std::process::{Command, Stdio};

fn dockyard(cache: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("dockyard"))
        .env("DOCKYARD_CACHE", cache)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before dockyard writes anything.
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_is_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let archive = tmp.path().join("x.tar");
    let built = Command::new(assert_cmd::cargo::cargo_bin("dockyard"))
        .env("DOCKYARD_CACHE", &cache)
        .args([
            "mutate",
            "scratch",
            &format!("docker-archive:{}", archive.display()),
            "--env",
            "A=1",
        ])
        .output()
        .unwrap();
    assert!(built.status.success());
    let named = Command::new(assert_cmd::cargo::cargo_bin("dockyard"))
        .env("DOCKYARD_CACHE", &cache)
        .args([
            "copy",
            &format!("docker-archive:{}", archive.display()),
            "store:x:1",
        ])
        .output()
        .unwrap();
    assert!(named.status.success());
    for args in [
        vec!["cache", "ls"],
        vec!["inspect", "store:x:1"],
        vec!["inspect", "--json", "store:x:1"],
        vec!["inspect", "--raw", "store:x:1"],
    ] {
        let out = dockyard(&cache, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}
