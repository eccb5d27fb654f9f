//! Every argument and option of every verb says what it is for, and
//! warnings on a pipe carry no colour codes.

use assert_cmd::Command;

fn help(args: &[&str]) -> String {
    let out = Command::cargo_bin("dockyard")
        .unwrap()
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn every_argument_has_help_text() {
    let verbs: [&[&str]; 13] = [
        &["pull"],
        &["push"],
        &["copy"],
        &["tags"],
        &["login"],
        &["logout"],
        &["mutate"],
        &["inspect"],
        &["export"],
        &["cache", "ls"],
        &["cache", "prune"],
        &["cache", "rm"],
        &["cache", "dir"],
    ];
    let mut missing = Vec::new();
    for verb in verbs {
        let text = help(verb);
        let mut in_list = false;
        for line in text.lines() {
            if line == "Arguments:" || line == "Options:" {
                in_list = true;
                continue;
            }
            if line.trim().is_empty() {
                in_list = false;
                continue;
            }
            let trimmed = line.trim_start();
            if in_list && (trimmed.starts_with('-') || trimmed.starts_with('<')) {
                // "NAME  description": the description after 2+ spaces.
                let described = trimmed
                    .split_once("  ")
                    .map(|(_, d)| !d.trim().is_empty())
                    .unwrap_or(false);
                if !described {
                    missing.push(format!("{}: {trimmed}", verb.join(" ")));
                }
            }
        }
    }
    assert!(missing.is_empty(), "without help text: {missing:#?}");
}

#[test]
fn warnings_on_a_pipe_have_no_colour_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("dockyard")
        .unwrap()
        .env("DOCKYARD_CACHE", tmp.path().join("cache"))
        .args([
            "mutate",
            "scratch",
            &format!("docker-archive:{}", tmp.path().join("a.tar").display()),
            "--delete",
            "/nothing/here",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing to delete"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "ANSI codes in: {stderr:?}");
}
