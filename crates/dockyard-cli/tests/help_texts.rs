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
            // Every section: Arguments, Options, and the headed groups.
            if !line.starts_with(' ') && line.ends_with(':') && line != "Usage:" {
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

/// The options under one heading of a help text.
fn section<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    text.lines()
        .skip_while(|l| !l.starts_with(heading))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn global_flags_are_listed_apart_and_parallel_only_where_layers_move() {
    let transfers: [&[&str]; 5] = [&["pull"], &["push"], &["copy"], &["mutate"], &["export"]];
    let others: [&[&str]; 6] = [
        &["tags"],
        &["login"],
        &["logout"],
        &["inspect"],
        &["cache", "ls"],
        &["cache", "prune"],
    ];
    for verb in transfers.iter().chain(others.iter()) {
        let text = help(verb);
        let own = section(&text, "Options:").join("\n");
        let registry = section(&text, "Registry options").join("\n");
        for global in ["--timeout", "--creds", "--insecure", "--cert-dir"] {
            assert!(
                !own.contains(global),
                "{verb:?}: {global} among the verb's own options:\n{text}"
            );
            assert!(
                registry.contains(global),
                "{verb:?}: {global} not under Registry options:\n{text}"
            );
        }
        assert!(
            section(&text, "Global options:")
                .join("\n")
                .contains("--verbose"),
            "{text}"
        );
        let parallel = own.contains("--parallel");
        assert_eq!(
            parallel,
            transfers.contains(verb),
            "{verb:?} --parallel:\n{text}"
        );
        assert!(
            !text.contains("--parallel") || parallel,
            "{verb:?}:\n{text}"
        );
    }
    for verb in [&["copy"][..], &["push"], &["mutate"], &["build"]] {
        let sides = section(&help(verb), "Source / destination registry options:").join("\n");
        for flag in [
            "--src-creds",
            "--dest-creds",
            "--src-tls-verify",
            "--dest-cert-dir",
        ] {
            assert!(sides.contains(flag), "{verb:?} lacks {flag}");
        }
    }
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
