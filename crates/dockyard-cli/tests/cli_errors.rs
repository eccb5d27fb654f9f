//! Bad input gives exit code 1, a message naming the file, reference or
//! digest and what is wrong, never a panic, and nothing half-written.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::{json, Value};

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
    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
    fn run(&self, args: &[&str]) -> Output {
        Command::cargo_bin("dockyard")
            .unwrap()
            .env("DOCKYARD_CACHE", self.path("cache"))
            .env_remove("SOURCE_DATE_EPOCH")
            .current_dir(self.tmp.path())
            .args(args)
            .output()
            .unwrap()
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
    /// A one-layer image as a docker archive at `name`: a directory with
    /// a 256 KiB file of varied bytes (so a flipped byte lands in content).
    fn image(&self, name: &str) -> PathBuf {
        let src = self.path("content");
        if !src.exists() {
            fs::create_dir_all(src.join("data")).unwrap();
            let mut x: u32 = 12345;
            let bytes: Vec<u8> = (0..256 * 1024)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            fs::write(src.join("data/blob.bin"), bytes).unwrap();
            fs::write(src.join("hello.txt"), "hello\n").unwrap();
        }
        let out = self.path(name);
        self.ok(&[
            "mutate",
            "scratch",
            &format!("docker-archive:{}:test/err:1", out.display()),
            "--add",
            &format!("{}:/", src.display()),
        ]);
        out
    }
}

/// Exit code 1, no panic, and stderr contains every one of `needles`.
fn assert_user_error(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit code 1; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert!(!stderr.contains("RUST_BACKTRACE"), "panic: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr should mention {n:?}: {stderr}");
    }
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
    stderr
}

/// Names of the entries of `dir` (sorted), for "nothing left behind" checks.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The byte offset and digest hex of the (only) layer member of a docker
/// archive dockyard wrote.
fn layer_member(archive: &Path) -> (u64, u64, String) {
    let mut a = tar::Archive::new(fs::File::open(archive).unwrap());
    let mut manifest = Vec::new();
    let mut members = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if name == "manifest.json" {
            e.read_to_end(&mut manifest).unwrap();
        }
        members.push((name, e.raw_file_position(), e.size()));
    }
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let layer = manifest[0]["Layers"][0].as_str().unwrap();
    let (_, pos, size) = members.into_iter().find(|(n, _, _)| n == layer).unwrap();
    (
        pos,
        size,
        layer.trim_start_matches("blobs/sha256/").to_string(),
    )
}

#[test]
fn truncated_archive_is_refused_and_nothing_is_written() {
    let fx = Fx::new();
    let archive = fx.image("good.tar");
    let bytes = fs::read(&archive).unwrap();
    fs::write(fx.path("truncated.tar"), &bytes[..bytes.len() / 2]).unwrap();
    for dst in [
        format!("oci:{}", fx.s("D")),
        format!("docker-archive:{}", fx.s("D.tar")),
        "store:truncated:1".to_string(),
    ] {
        let out = fx.run(&["copy", "docker-archive:truncated.tar", &dst]);
        assert_user_error(&out, &["truncated.tar", "truncated"]);
    }
    assert!(!fx.path("D").exists(), "oci:D was created");
    assert!(!fx.path("D.tar").exists(), "D.tar was created");
    let ls = fx.ok(&["cache", "ls", "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&ls).unwrap(), json!([]));
    // Truncated inside the tar headers (not just a short member).
    fs::write(fx.path("short.tar"), &bytes[..700]).unwrap();
    let out = fx.run(&["inspect", "docker-archive:short.tar"]);
    assert_user_error(&out, &["short.tar"]);
}

fn tampered(fx: &Fx) -> (PathBuf, String) {
    let archive = fx.image("good.tar");
    // Building left the good layer in the cache; a verified blob of that
    // digest would (rightly) be used instead of the tampered copy.
    fx.ok(&["cache", "prune"]);
    let (pos, size, hex) = layer_member(&archive);
    let bad = fx.path("tampered.tar");
    fs::copy(&archive, &bad).unwrap();
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&bad)
        .unwrap();
    // A byte in the middle of the layer (inside blob.bin's content).
    let at = pos + size / 2;
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0xff]).unwrap();
    (bad, hex)
}

#[test]
fn tampered_layer_fails_the_copy_naming_both_digests() {
    let fx = Fx::new();
    let (bad, hex) = tampered(&fx);
    let before = listing(fx.tmp.path());
    let out = fx.run(&[
        "copy",
        &format!("docker-archive:{}", bad.display()),
        &format!("docker-archive:{}", fx.s("copy.tar")),
    ]);
    let stderr = assert_user_error(&out, &["expected", "got", &format!("sha256:{hex}")]);
    // "got" is followed by a different, full digest.
    let got = stderr.split("got ").nth(1).unwrap_or("");
    assert!(got.starts_with("sha256:"), "{stderr}");
    assert!(!got.starts_with(&format!("sha256:{hex}")), "{stderr}");
    assert!(!fx.path("copy.tar").exists(), "the destination was written");
    assert_eq!(listing(fx.tmp.path()), before, "temp files left behind");
}

#[test]
fn tampered_layer_is_not_stored() {
    let fx = Fx::new();
    let (bad, hex) = tampered(&fx);
    let out = fx.run(&[
        "copy",
        &format!("docker-archive:{}", bad.display()),
        "store:tampered:1",
    ]);
    assert_user_error(&out, &["expected", "got", &hex]);
    let blobs = fx.path("cache/blobs/sha256");
    if blobs.exists() {
        let names = listing(&blobs);
        assert!(!names.contains(&hex), "the bad layer was stored");
        assert!(
            !names.iter().any(|n| n.starts_with(".dockyard-tmp")),
            "temp blob left: {names:?}"
        );
    }
    let ls = fx.ok(&["cache", "ls", "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&ls).unwrap(), json!([]));
}

/// DESIGN: "Nothing is written to a destination until the source is fully
/// read and verified." An OCI layout directory is a destination too.
#[test]
fn tampered_layer_copy_to_a_new_oci_dir_creates_nothing() {
    let fx = Fx::new();
    let (bad, hex) = tampered(&fx);
    let out = fx.run(&[
        "copy",
        &format!("docker-archive:{}", bad.display()),
        &format!("oci:{}:x", fx.s("layout")),
    ]);
    assert_user_error(&out, &["expected", "got", &hex]);
    assert!(
        !fx.path("layout").exists(),
        "a half-made layout was left: {:?}",
        fs::read_dir(fx.path("layout"))
            .map(|d| d.map(|e| e.unwrap().path()).collect::<Vec<_>>())
            .ok()
    );
}

#[test]
fn a_tar_that_is_not_an_image_is_refused() {
    let fx = Fx::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(6);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "etc/hostname", &b"hello\n"[..])
        .unwrap();
    fs::write(fx.path("plain.tar"), b.into_inner().unwrap()).unwrap();
    let out = fx.run(&["copy", "docker-archive:plain.tar", "oci:D"]);
    assert_user_error(&out, &["plain.tar", "not an image archive"]);
    let out = fx.run(&["inspect", "oci-archive:plain.tar"]);
    assert_user_error(&out, &["plain.tar", "index.json"]);
    assert!(!fx.path("D").exists());

    // Not a tar at all.
    fs::write(
        fx.path("text.tar"),
        "this is just text, not a tar\n".repeat(40),
    )
    .unwrap();
    let out = fx.run(&["inspect", "docker-archive:text.tar"]);
    assert_user_error(&out, &["text.tar"]);

    // A missing file.
    let out = fx.run(&["inspect", "docker-archive:absent.tar"]);
    assert_user_error(&out, &["absent.tar"]);
}

#[test]
fn malformed_json_in_a_layout_is_refused() {
    let fx = Fx::new();
    let archive = fx.image("good.tar");
    fx.ok(&[
        "copy",
        &format!("docker-archive:{}", archive.display()),
        "oci:L:x",
    ]);
    fs::write(fx.path("L/index.json"), "{\"manifests\": [").unwrap();
    let out = fx.run(&["inspect", "oci:L:x"]);
    assert_user_error(&out, &["index.json", "malformed JSON"]);
}

/// A v1.2 manifest.json with two images, written by hand.
fn multi_image_archive(fx: &Fx) -> PathBuf {
    let archive = fx.image("good.tar");
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    let mut a = tar::Archive::new(fs::File::open(&archive).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        members.push((name, data));
    }
    let manifest: Value = serde_json::from_slice(
        &members
            .iter()
            .find(|(n, _)| n == "manifest.json")
            .unwrap()
            .1,
    )
    .unwrap();
    let entry = &manifest[0];
    let multi = json!([
        {"Config": entry["Config"], "RepoTags": ["one/a:1"], "Layers": entry["Layers"]},
        {"Config": entry["Config"], "RepoTags": ["two/b:2"], "Layers": entry["Layers"]},
    ]);
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in &members {
        // Keep only the blobs: a legacy archive with just manifest.json.
        if !name.starts_with("blobs/") {
            continue;
        }
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    let m = serde_json::to_vec(&multi).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(m.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "manifest.json", &m[..]).unwrap();
    let path = fx.path("multi.tar");
    fs::write(&path, b.into_inner().unwrap()).unwrap();
    path
}

#[test]
fn a_missing_reference_in_a_multi_image_archive_lists_the_present_ones() {
    let fx = Fx::new();
    let multi = multi_image_archive(&fx);
    let src = format!("docker-archive:{}", multi.display());
    // Positive control: both present images can be picked.
    fx.ok(&["inspect", &format!("{src}:one/a:1")]);
    fx.ok(&["inspect", &format!("{src}:two/b:2")]);

    let out = fx.run(&["inspect", &format!("{src}:three/c:3")]);
    assert_user_error(&out, &["multi.tar", "three/c:3", "one/a:1", "two/b:2"]);
    // Without a reference the choice is ambiguous: say so, list them.
    let out = fx.run(&["copy", &src, "oci:D"]);
    assert_user_error(&out, &["multi.tar", "one/a:1", "two/b:2"]);
    assert!(!fx.path("D").exists());

    // The same for an OCI layout holding two names.
    let archive = fx.path("good.tar");
    let good = format!("docker-archive:{}", archive.display());
    fx.ok(&["copy", &good, "oci:L:a"]);
    fx.ok(&["mutate", &good, "oci:L:b", "--env", "X=1"]);
    let out = fx.run(&["inspect", "oci:L:missing"]);
    assert_user_error(&out, &["L", "missing", "a", "b"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a, b") || stderr.contains("b, a"),
        "{stderr}"
    );
}

#[test]
fn an_output_path_in_a_missing_directory_is_refused() {
    let fx = Fx::new();
    let archive = fx.image("good.tar");
    let src = format!("docker-archive:{}", archive.display());
    for dst in [
        "docker-archive:/nonexistent/dir/out.tar",
        "oci-archive:/nonexistent/dir/out.tar",
        "oci:/nonexistent/dir/layout",
    ] {
        let out = fx.run(&["copy", &src, dst]);
        assert_user_error(&out, &["/nonexistent/dir"]);
    }
    let out = fx.run(&[
        "mutate",
        &src,
        "docker-archive:/nonexistent/dir/out.tar",
        "--add",
        &format!("{}:/x", fx.s("content/hello.txt")),
    ]);
    assert_user_error(&out, &["/nonexistent/dir"]);
    let out = fx.run(&["export", &src, "/nonexistent/dir/rootfs"]);
    assert_user_error(&out, &["/nonexistent/dir"]);
    assert!(!Path::new("/nonexistent").exists());
}

#[test]
fn an_invalid_reference_names_the_bad_part() {
    let fx = Fx::new();
    let out = fx.run(&["inspect", "store:UPPER/Case"]);
    assert_user_error(&out, &["UPPER/Case", "lowercase"]);
    let out = fx.run(&["inspect", "store:ok/name@sha256:nothex"]);
    assert_user_error(&out, &["sha256:nothex"]);
    let out = fx.run(&["inspect", "store:bad name"]);
    assert_user_error(&out, &["bad name"]);
    // A bad reference in an archive destination: nothing written.
    let archive = fx.image("good.tar");
    let out = fx.run(&[
        "copy",
        &format!("docker-archive:{}", archive.display()),
        &format!("docker-archive:{}:Bad/Ref", fx.s("out.tar")),
    ]);
    assert_user_error(&out, &["Bad/Ref"]);
    assert!(!fx.path("out.tar").exists());
}

#[test]
fn an_unknown_transport_is_refused() {
    let fx = Fx::new();
    let out = fx.run(&["inspect", "dir:/tmp/x"]);
    assert_user_error(&out, &["dir", "not supported", "docker-archive:"]);
    let out = fx.run(&["inspect", "containers-storage:busybox"]);
    assert_user_error(&out, &["containers-storage"]);
    let out = fx.run(&["inspect", "foo://bar"]);
    assert_user_error(&out, &["foo:"]);
}

#[test]
fn removing_a_layer_that_does_not_exist_is_refused() {
    let fx = Fx::new();
    let archive = fx.image("good.tar");
    let src = format!("docker-archive:{}", archive.display());
    let out = fx.run(&[
        "mutate",
        &src,
        &format!("docker-archive:{}", fx.s("out.tar")),
        "--remove-layer=5",
    ]);
    assert_user_error(&out, &["5", "1 layer"]);
    assert!(!fx.path("out.tar").exists());
    let out = fx.run(&[
        "mutate",
        &src,
        &format!("docker-archive:{}", fx.s("out.tar")),
        "--remove-layer=top-ish",
    ]);
    assert_user_error(&out, &["top-ish", "layer index"]);
    assert!(!fx.path("out.tar").exists());
}

#[test]
fn bad_mutate_arguments_are_refused() {
    let fx = Fx::new();
    let archive = fx.image("good.tar");
    let src = format!("docker-archive:{}", archive.display());
    let dst = format!("docker-archive:{}", fx.s("out.tar"));
    for (args, needle) in [
        (vec!["--env", "NOEQUALS"], "NOEQUALS"),
        (vec!["--label", "=v"], "=v"),
        (vec!["--entrypoint", "[\"unterminated"], "JSON"),
        (vec!["--add", "nocolon"], "nocolon"),
        (vec!["--add", "/no/such/host/file:/x"], "/no/such/host/file"),
    ] {
        let mut all = vec!["mutate", &src, &dst];
        all.extend(args.iter());
        let out = fx.run(&all);
        assert_user_error(&out, &[needle]);
        assert!(!fx.path("out.tar").exists(), "{args:?} wrote the output");
    }
}

#[test]
fn export_into_a_non_empty_directory_is_refused() {
    let fx = Fx::new();
    let archive = fx.image("good.tar");
    fs::create_dir(fx.path("full")).unwrap();
    fs::write(fx.path("full/mine"), "mine").unwrap();
    let out = fx.run(&[
        "export",
        &format!("docker-archive:{}", archive.display()),
        &fx.s("full"),
    ]);
    assert_user_error(&out, &["full", "not empty"]);
    assert_eq!(listing(&fx.path("full")), vec!["mine"]);
}

#[test]
fn cache_rm_of_an_unknown_name_is_refused() {
    let fx = Fx::new();
    let out = fx.run(&["cache", "rm", "never/stored:1"]);
    assert_user_error(&out, &["never/stored:1"]);
}

#[test]
fn a_bare_path_gets_a_transport_hint() {
    let fx = Fx::new();
    let archive = fx.image("good.tar");
    let out = fx.run(&["inspect", "good.tar"]);
    assert_user_error(&out, &["good.tar", "docker-archive:"]);
    let out = fx.run(&["inspect", archive.to_str().unwrap()]);
    assert_user_error(&out, &["good.tar", "docker-archive:"]);
}

/// DESIGN: exit code 1 is a user error, 2 an internal one. A missing or
/// misplaced argument is the user's. (`--remove-layer` takes its optional N
/// only as `--remove-layer=N`, so a separate word is a stray argument.)
#[test]
fn command_line_usage_errors_exit_with_1() {
    let fx = Fx::new();
    let archive = fx.image("good.tar");
    let src = format!("docker-archive:{}", archive.display());
    let dst = format!("docker-archive:{}", fx.s("out.tar"));
    for args in [
        vec!["copy", src.as_str()],
        vec!["inspect", src.as_str(), "--raw", "--json"],
        vec!["no-such-verb"],
        vec!["mutate", src.as_str(), dst.as_str(), "--remove-layer", "0"],
    ] {
        let out = fx.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            stderr.contains("Usage") || stderr.contains("error"),
            "{stderr}"
        );
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    }
    assert!(!fx.path("out.tar").exists());
}
