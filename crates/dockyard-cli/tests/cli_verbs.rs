//! The verbs a user runs: `mutate` (each flag), `inspect` (raw, config,
//! human, JSON), `export`, `cache ls/rm/prune/dir`, and reproducible builds.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

struct Fx {
    tmp: tempfile::TempDir,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Fx {
    fn new() -> Fx {
        let fx = Fx {
            tmp: tempfile::tempdir().unwrap(),
        };
        // A small base rootfs.
        let b = fx.path("base");
        fs::create_dir_all(b.join("a")).unwrap();
        fs::create_dir_all(b.join("b")).unwrap();
        fs::create_dir_all(b.join("etc")).unwrap();
        fs::write(b.join("a/x"), "x from base\n").unwrap();
        fs::write(b.join("b/y"), "y from base\n").unwrap();
        fs::write(b.join("etc/hostname"), "base\n").unwrap();
        fx
    }
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
    fn cache(&self) -> PathBuf {
        self.path("cache")
    }
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("dockyard").unwrap();
        c.env("DOCKYARD_CACHE", self.cache())
            .env_remove("SOURCE_DATE_EPOCH")
            .current_dir(self.tmp.path());
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "dockyard {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
    fn json(&self, src: &str) -> Value {
        serde_json::from_str(&self.ok(&["inspect", src, "--json"])).unwrap()
    }
    fn config(&self, src: &str) -> Value {
        let out = self.run(&["inspect", src, "--config"]);
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    }
    /// `oci:L:base`: one layer holding `base/`.
    fn base(&self) -> String {
        let src = "oci:L:base".to_string();
        self.ok(&["mutate", "scratch", &src, "--add", "base:/"]);
        src
    }
    /// The uncompressed layer tar at index `i` of an image in layout `L`.
    fn layer_entries(&self, src: &str, i: usize) -> Vec<(String, tar::EntryType, Vec<u8>)> {
        let summary = self.json(src);
        let digest = summary["layers"][i]["digest"].as_str().unwrap();
        let blob = self
            .path("L/blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        let mut a = tar::Archive::new(fs::File::open(blob).unwrap());
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
                let kind = e.header().entry_type();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, kind, data)
            })
            .collect()
    }
    fn export(&self, src: &str, dir: &str) -> PathBuf {
        self.ok(&["export", src, dir]);
        self.path(dir)
    }
}

fn diff_ids(summary: &Value) -> Vec<String> {
    summary["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["diffId"].as_str().unwrap().to_string())
        .collect()
}

/// The config invariants: diff_ids match the layers, and one non-empty
/// history entry per layer.
fn assert_config_consistent(fx: &Fx, src: &str) {
    let summary = fx.json(src);
    let config = fx.config(src);
    assert_eq!(config["rootfs"]["diff_ids"], json!(diff_ids(&summary)));
    let layer_history = config["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .filter(|e| !e["empty_layer"].as_bool().unwrap_or(false))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(layer_history, diff_ids(&summary).len(), "history: {config}");
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn mutate_config_flags() {
    let fx = Fx::new();
    let base = fx.base();
    let edited = "oci:L:edited";
    fx.ok(&[
        "mutate",
        &base,
        edited,
        "--env",
        "K=1",
        "--env",
        "OTHER=o",
        "--env",
        "K=2",
        "--entrypoint",
        r#"["/bin/sh", "-c", "two words"]"#,
        "--cmd",
        "echo hi  there",
        "--workdir",
        "/srv/app",
        "--user",
        "1000:1000",
        "--label",
        "org.example.a=b",
        "--label",
        "c=d=e",
        "--expose",
        "8080",
        "--expose",
        "53/udp",
    ]);
    let c = &fx.config(edited)["config"];
    assert_eq!(c["Env"], json!(["K=2", "OTHER=o"]), "{c}");
    assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "two words"]));
    // A string is Docker's shell form: run by /bin/sh -c as written.
    assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo hi  there"]));
    assert_eq!(c["WorkingDir"], json!("/srv/app"));
    assert_eq!(c["User"], json!("1000:1000"));
    assert_eq!(c["Labels"], json!({"org.example.a": "b", "c": "d=e"}));
    assert_eq!(c["ExposedPorts"], json!({"8080/tcp": {}, "53/udp": {}}));
    // Config-only edits keep the layers.
    assert_eq!(diff_ids(&fx.json(edited)), diff_ids(&fx.json(&base)));
    assert_config_consistent(&fx, edited);
    // --json shows the same.
    let j = fx.json(edited);
    assert_eq!(j["config"]["Env"], c["Env"]);
    assert_eq!(j["config"]["User"], c["User"]);

    // A later mutate replaces a variable in place and keeps the rest;
    // a string is the shell form.
    let again = "oci:L:again";
    fx.ok(&[
        "mutate",
        edited,
        again,
        "--env",
        "K=3",
        "--env",
        "NEW=n",
        "--entrypoint",
        "/usr/bin/env  -i",
        "--label",
        "c=changed",
    ]);
    let c2 = &fx.config(again)["config"];
    assert_eq!(c2["Env"], json!(["K=3", "OTHER=o", "NEW=n"]));
    assert_eq!(
        c2["Entrypoint"],
        json!(["/bin/sh", "-c", "/usr/bin/env  -i"])
    );
    assert_eq!(c2["Labels"], json!({"org.example.a": "b", "c": "changed"}));
    assert_eq!(c2["Cmd"], c["Cmd"]);
    assert_eq!(c2["ExposedPorts"], c["ExposedPorts"]);
    assert_eq!(c2["WorkingDir"], c["WorkingDir"]);
}

#[test]
fn mutate_add_a_file_and_a_directory() {
    let fx = Fx::new();
    let base = fx.base();
    fs::create_dir_all(fx.path("host/dir/sub")).unwrap();
    fs::write(fx.path("host/dir/sub/f"), "in a subdir\n").unwrap();
    fs::write(fx.path("host/dir/top"), "top of dir\n").unwrap();
    fs::write(fx.path("host/tool.sh"), "#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(fx.path("host/tool.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    let dst = "oci:L:added";
    fx.ok(&[
        "mutate",
        &base,
        dst,
        "--add",
        &format!("{}:/opt/app/tool.sh", fx.s("host/tool.sh")),
        "--add",
        "host/dir:/data",
    ]);
    let summary = fx.json(dst);
    assert_eq!(
        summary["layers"].as_array().unwrap().len(),
        2,
        "both adds go into one layer"
    );
    assert_config_consistent(&fx, dst);

    let entries = fx.layer_entries(dst, 1);
    let names: Vec<&str> = entries.iter().map(|(n, _, _)| n.as_str()).collect();
    for want in [
        "opt/",
        "opt/app/",
        "opt/app/tool.sh",
        "data/",
        "data/sub/",
        "data/sub/f",
        "data/top",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are not sorted by path");
    assert!(
        !names.iter().any(|n| n.starts_with("a/")),
        "base files leaked into the new layer"
    );

    let root = fx.export(dst, "rootfs");
    assert_eq!(
        fs::read_to_string(root.join("opt/app/tool.sh")).unwrap(),
        "#!/bin/sh\necho tool\n"
    );
    let mode = fs::metadata(root.join("opt/app/tool.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(
        fs::read_to_string(root.join("data/sub/f")).unwrap(),
        "in a subdir\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("data/top")).unwrap(),
        "top of dir\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("a/x")).unwrap(),
        "x from base\n"
    );
}

#[test]
fn mutate_remove_layer_with_and_without_index() {
    let fx = Fx::new();
    let base = fx.base();
    fs::write(fx.path("one"), "one\n").unwrap();
    fs::write(fx.path("two"), "two\n").unwrap();
    fx.ok(&["mutate", &base, "oci:L:l2", "--add", "one:/one"]);
    fx.ok(&["mutate", "oci:L:l2", "oci:L:l3", "--add", "two:/two"]);
    let all = diff_ids(&fx.json("oci:L:l3"));
    assert_eq!(all.len(), 3);
    assert_config_consistent(&fx, "oci:L:l3");

    // Without N: the top layer goes.
    fx.ok(&["mutate", "oci:L:l3", "oci:L:popped", "--remove-layer"]);
    assert_eq!(diff_ids(&fx.json("oci:L:popped")), all[..2].to_vec());
    assert_config_consistent(&fx, "oci:L:popped");
    let root = fx.export("oci:L:popped", "popped");
    assert!(root.join("one").exists());
    assert!(!root.join("two").exists());

    // With N = 0: the base goes.
    fx.ok(&["mutate", "oci:L:l3", "oci:L:nobase", "--remove-layer=0"]);
    assert_eq!(diff_ids(&fx.json("oci:L:nobase")), all[1..].to_vec());
    assert_config_consistent(&fx, "oci:L:nobase");
    let root = fx.export("oci:L:nobase", "nobase");
    assert_eq!(names(&root), vec!["one", "two"]);

    // N = 1 (the middle one).
    fx.ok(&["mutate", "oci:L:l3", "oci:L:nomiddle", "--remove-layer=1"]);
    assert_eq!(
        diff_ids(&fx.json("oci:L:nomiddle")),
        vec![all[0].clone(), all[2].clone()]
    );
    assert_config_consistent(&fx, "oci:L:nomiddle");
}

#[test]
fn mutate_delete_writes_a_whiteout() {
    let fx = Fx::new();
    let base = fx.base();
    fx.ok(&[
        "mutate",
        &base,
        "oci:L:del",
        "--delete",
        "/a/x",
        "--delete",
        "/etc",
    ]);
    let entries = fx.layer_entries("oci:L:del", 1);
    let names: Vec<&str> = entries.iter().map(|(n, _, _)| n.as_str()).collect();
    assert!(names.contains(&"a/.wh.x"), "{names:?}");
    assert!(names.contains(&".wh.etc"), "{names:?}");
    assert_config_consistent(&fx, "oci:L:del");
    let root = fx.export("oci:L:del", "rootfs");
    assert!(root.join("a").is_dir());
    assert!(!root.join("a/x").exists());
    assert!(!root.join("etc").exists());
    assert_eq!(
        fs::read_to_string(root.join("b/y")).unwrap(),
        "y from base\n"
    );
}

#[test]
fn inspect_raw_and_config_match_the_printed_digests() {
    let fx = Fx::new();
    let base = fx.base();
    let printed = fx.ok(&[
        "copy",
        &base,
        &format!("docker-archive:{}", fx.s("out.tar")),
    ]);
    for src in [base.clone(), format!("docker-archive:{}", fx.s("out.tar"))] {
        let raw = fx.run(&["inspect", &src, "--raw"]);
        assert!(raw.status.success());
        assert_eq!(
            format!("sha256:{}", sha256_hex(&raw.stdout)),
            printed,
            "{src}"
        );
        let manifest: Value = serde_json::from_slice(&raw.stdout).unwrap();
        let config = fx.run(&["inspect", &src, "--config"]);
        assert_eq!(
            manifest["config"]["digest"].as_str().unwrap(),
            format!("sha256:{}", sha256_hex(&config.stdout))
        );
        let j = fx.json(&src);
        assert_eq!(j["digest"].as_str().unwrap(), printed);
        assert_eq!(j["configDigest"], manifest["config"]["digest"]);
    }
}

fn human_size(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

#[test]
fn inspect_human_output_shows_platform_layers_and_sizes() {
    let fx = Fx::new();
    fs::write(fx.path("big"), vec![7u8; 50_000]).unwrap();
    fx.ok(&[
        "mutate",
        "scratch",
        "oci:L:arm",
        "--platform",
        "linux/arm64/v8",
        "--add",
        "base:/",
    ]);
    fx.ok(&[
        "mutate",
        "oci:L:arm",
        "oci:L:arm2",
        "--add",
        "big:/big",
        "--user",
        "nobody",
    ]);
    let text = fx.ok(&["inspect", "oci:L:arm2"]);
    let j = fx.json("oci:L:arm2");
    let field = |name: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name}: line in {text}"))
            .trim()
            .to_string()
    };
    assert_eq!(field("Platform"), "linux/arm64/v8", "{text}");
    assert_eq!(j["platform"], json!("linux/arm64/v8"));
    assert!(text.contains("Layers (2, base first):"), "{text}");
    assert!(text.contains(j["digest"].as_str().unwrap()), "{text}");
    assert_eq!(field("User"), "nobody", "{text}");
    for (i, l) in j["layers"].as_array().unwrap().iter().enumerate() {
        let digest = l["digest"].as_str().unwrap();
        let size = human_size(l["size"].as_u64().unwrap());
        let line = text
            .lines()
            .find(|line| line.contains(digest))
            .unwrap_or_else(|| panic!("no line for layer {digest}: {text}"));
        assert!(line.trim_start().starts_with(&i.to_string()), "{line}");
        assert!(line.contains(&size), "{line} should show {size}");
    }
    // The big layer really is ~50 KB.
    assert!(j["layers"][1]["size"].as_u64().unwrap() > 50_000);
    let total: u64 = j["size"].as_u64().unwrap();
    assert!(field("Size") == human_size(total), "{text}");
    let config = fx.config("oci:L:arm2");
    assert_eq!(config["architecture"], json!("arm64"));
    assert_eq!(config["variant"], json!("v8"));
}

#[test]
fn export_flattens_layers() {
    let fx = Fx::new();
    let base = fx.base();
    fs::create_dir_all(fx.path("top/a")).unwrap();
    fs::create_dir_all(fx.path("top/c")).unwrap();
    fs::write(fx.path("top/a/x"), "x from top\n").unwrap();
    fs::write(fx.path("top/c/z"), "z from top\n").unwrap();
    fx.ok(&["mutate", &base, "oci:L:two", "--add", "top:/"]);
    let archive = format!("docker-archive:{}", fx.s("two.tar"));
    fx.ok(&["copy", "oci:L:two", &archive]);
    for (src, dir) in [("oci:L:two", "r1"), (archive.as_str(), "r2")] {
        let out = fx.run(&["export", src, dir]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("exported 2 layers"));
        let root = fx.path(dir);
        assert_eq!(names(&root), vec!["a", "b", "c", "etc"]);
        assert_eq!(
            fs::read_to_string(root.join("a/x")).unwrap(),
            "x from top\n"
        );
        assert_eq!(
            fs::read_to_string(root.join("b/y")).unwrap(),
            "y from base\n"
        );
        assert_eq!(
            fs::read_to_string(root.join("c/z")).unwrap(),
            "z from top\n"
        );
    }
    // An existing empty directory is fine too.
    fs::create_dir(fx.path("empty")).unwrap();
    fx.export("oci:L:two", "empty");
    assert!(fx.path("empty/c/z").is_file());
}

fn blob_count(fx: &Fx) -> usize {
    fs::read_dir(fx.cache().join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn cache_ls_rm_prune() {
    let fx = Fx::new();
    let base = fx.base();
    assert_eq!(fx.ok(&["cache", "dir"]), fx.s("cache"));
    let printed = fx.ok(&["copy", &base, "store:myimg:1"]);
    // A second image sharing the base layer.
    fs::write(fx.path("extra"), "extra\n").unwrap();
    let printed2 = fx.ok(&[
        "mutate",
        &base,
        "store:other/img:2",
        "--add",
        "extra:/extra",
    ]);

    let ls = fx.ok(&["cache", "ls"]);
    let line = ls
        .lines()
        .find(|l| l.contains("myimg:1"))
        .unwrap_or_else(|| panic!("{ls}"));
    assert!(line.contains(&printed), "{ls}");
    assert!(ls.contains("other/img:2"), "{ls}");

    let entries: Value = serde_json::from_str(&fx.ok(&["cache", "ls", "--json"])).unwrap();
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let mine = entries
        .iter()
        .find(|e| e["name"].as_str().unwrap().contains("myimg:1"))
        .unwrap();
    assert_eq!(mine["digest"], json!(printed));
    // Both images are readable from the store under any spelling.
    assert_eq!(fx.json("store:myimg:1")["digest"], json!(printed));
    assert_eq!(
        fx.json("store:docker.io/library/myimg:1")["digest"],
        json!(printed)
    );
    assert_eq!(fx.json("myimg:1")["digest"], json!(printed));

    // base layer + base config + base manifest + top layer + config + manifest
    assert_eq!(blob_count(&fx), 6);
    // Prune with everything named removes nothing.
    assert!(fx.ok(&["cache", "prune"]).contains("removed 0"));
    assert_eq!(blob_count(&fx), 6);

    fx.ok(&["cache", "rm", "other/img:2"]);
    let ls: Value = serde_json::from_str(&fx.ok(&["cache", "ls", "--json"])).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 1);
    let pruned = fx.ok(&["cache", "prune"]);
    assert!(pruned.contains("removed 3"), "{pruned}");
    assert_eq!(blob_count(&fx), 3, "the shared base layer must survive");
    // The remaining image is intact: a full copy out verifies every blob.
    assert_eq!(fx.ok(&["copy", "store:myimg:1", "oci:out:x"]), printed);
    let out = fx.run(&["inspect", &format!("store:other/img:2@{printed2}")]);
    assert!(!out.status.success());

    fx.ok(&["cache", "rm", "myimg:1"]);
    fx.ok(&["cache", "prune"]);
    assert_eq!(blob_count(&fx), 0);
    let out = fx.run(&["cache", "ls"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no images"));
    assert_eq!(fx.ok(&["cache", "ls", "--json"]), "[]");
}

/// Set every file's mtime (not following symlinks) under `dir`.
fn touch_all(dir: &Path, secs: i64) {
    let status = std::process::Command::new("find")
        .arg(dir)
        .args(["-exec", "touch", "-h", "-d", &format!("@{secs}"), "{}", "+"])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn builds_are_reproducible() {
    let fx = Fx::new();
    let dir = fx.path("base");
    std::os::unix::fs::symlink("a/x", dir.join("link")).unwrap();
    fs::set_permissions(dir.join("b/y"), fs::Permissions::from_mode(0o600)).unwrap();
    let build = |name: &str, epoch: Option<&str>| -> (String, Vec<u8>) {
        let mut c = fx.cmd();
        if let Some(e) = epoch {
            c.env("SOURCE_DATE_EPOCH", e);
        }
        let out = c
            .args([
                "mutate",
                "scratch",
                &format!("docker-archive:{}:test/repro:1", fx.s(name)),
                "--add",
                "base:/",
                "--platform",
                "linux/amd64",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let digest = String::from_utf8(out.stdout).unwrap().trim().to_string();
        (digest, fs::read(fx.path(name)).unwrap())
    };
    touch_all(&dir, 1_000_000_000);
    let (d1, b1) = build("r1.tar", None);
    touch_all(&dir, 1_650_000_000);
    let (d2, b2) = build("r2.tar", None);
    assert!(d1.starts_with("sha256:"));
    assert_eq!(d1, d2, "the digest depends on file mtimes");
    assert!(b1 == b2, "the archives differ byte for byte");

    let (d3, b3) = build("r3.tar", Some("1700000000"));
    assert_ne!(d3, d1, "SOURCE_DATE_EPOCH had no effect");
    touch_all(&dir, 1_100_000_000);
    let (d4, b4) = build("r4.tar", Some("1700000000"));
    assert_eq!(d3, d4);
    assert!(b3 == b4, "the archives differ byte for byte");
    let config = fx.config(&format!("docker-archive:{}", fx.s("r3.tar")));
    assert_eq!(config["created"], json!("2023-11-14T22:13:20Z"));
    // Entries are stamped with the epoch, owned by root.
    let mut members = std::collections::HashMap::new();
    for e in tar::Archive::new(&b3[..]).entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        members.insert(name, data);
    }
    let manifest: Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    let layer = &members[manifest[0]["Layers"][0].as_str().unwrap()];
    let mut a = tar::Archive::new(&layer[..]);
    let mut count = 0;
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        count += 1;
        assert_eq!(e.header().mtime().unwrap(), 1_700_000_000);
        assert_eq!(e.header().uid().unwrap(), 0);
        assert_eq!(e.header().gid().unwrap(), 0);
    }
    assert!(count >= 6, "only {count} entries");
}
