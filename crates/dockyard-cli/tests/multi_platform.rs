//! Multi-platform images from the command line: `--platform` picks from an
//! index (registry and store), `copy --all-platforms` copies a whole index
//! registry to registry with the same digest, and into the store.

use std::sync::Arc;

use assert_cmd::Command;
use dockyard_image::media;
use dockyard_image::progress::Silent;
use dockyard_image::{Digest, Platform};
use dockyard_registry::PushOptions;
use dockyard_testsupport::registry::{
    connect, other_platform, reference, runtime, temp_store, test_image_for, test_options, Mode,
    RegistryGuard,
};
use serde_json::{json, Value};

struct Fx {
    tmp: tempfile::TempDir,
}

impl Fx {
    fn run(&self, args: &[&str]) -> (String, String) {
        let out = Command::cargo_bin("dockyard")
            .unwrap()
            .env("DOCKYARD_CACHE", self.tmp.path().join("cache"))
            .env("DOCKER_CONFIG", self.tmp.path().join("docker-config"))
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "dockyard {args:?}: {stderr}");
        (stdout, stderr)
    }
    fn platform_of(&self, src: &str, platform: Option<&Platform>) -> String {
        let mut args = vec!["inspect", src, "--json"];
        let p = platform.map(|p| p.to_string());
        if let Some(p) = &p {
            args.extend(["--platform", p.as_str()]);
        }
        let (out, _) = self.run(&args);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["platform"].as_str().unwrap().to_string()
    }
}

/// Push a host image and an other-platform image, then an OCI index of
/// both as `mp/src:1`; returns the index digest.
fn push_index(host: &str) -> Digest {
    let rt = runtime();
    let client = connect(&rt, host, test_options());
    let (_dir, store) = temp_store();
    let mut entries = Vec::new();
    for (seed, platform) in [(1, Platform::host()), (2, other_platform())] {
        let image = test_image_for(seed, 2, 50_000, &platform);
        let r = reference(host, &format!("mp/src:p{seed}"));
        let pushed = rt
            .block_on(client.push(
                &image,
                &r,
                &store,
                &PushOptions::default(),
                Arc::new(Silent),
            ))
            .unwrap();
        let mut p = json!({"os": platform.os, "architecture": platform.architecture});
        if let Some(v) = &platform.variant {
            p["variant"] = json!(v);
        }
        entries.push(json!({
            "mediaType": pushed.image.manifest_media_type(),
            "digest": pushed.digest.to_string(),
            "size": pushed.image.manifest_raw().len(),
            "platform": p,
        }));
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": entries,
    }))
    .unwrap();
    rt.block_on(client.put_manifest("mp/src", "1", &index, media::OCI_INDEX))
        .unwrap()
}

#[test]
fn platforms_are_picked_and_whole_indexes_copied() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let host = registry.host();
    let index_digest = push_index(&host);
    let fx = Fx {
        tmp: tempfile::tempdir().unwrap(),
    };
    let src = format!("docker://{host}/mp/src:1");
    let other = other_platform();
    let host_platform = Platform::host().to_string();

    // Remote inspect: the host's image by default, the other on request.
    assert_eq!(fx.platform_of(&src, None), host_platform);
    assert_eq!(fx.platform_of(&src, Some(&other)), other.to_string());
    let (raw, _) = fx.run(&["inspect", &src, "--raw"]);
    assert_eq!(Digest::sha256_of(raw.as_bytes()), index_digest);

    // Registry to registry, every platform: the index arrives byte for byte.
    let dst = format!("docker://{host}/mp/dst:2");
    let (out, _) = fx.run(&["copy", "--all-platforms", &src, &dst]);
    assert_eq!(out.trim(), index_digest.to_string());
    let (raw, _) = fx.run(&["inspect", &dst, "--raw"]);
    assert_eq!(Digest::sha256_of(raw.as_bytes()), index_digest);
    assert_eq!(fx.platform_of(&dst, Some(&other)), other.to_string());

    // Into the store: both platforms readable under the new name.
    fx.run(&["copy", "--all-platforms", &src, "store:local/multi:1"]);
    assert_eq!(fx.platform_of("store:local/multi:1", None), host_platform);
    assert_eq!(
        fx.platform_of("store:local/multi:1", Some(&other)),
        other.to_string()
    );

    // Into an OCI layout: the index and every platform; skopeo reads it whole.
    let layout = fx.tmp.path().join("layout");
    let (out, _) = fx.run(&[
        "copy",
        "--all-platforms",
        &src,
        &format!("oci:{}:multi", layout.display()),
    ]);
    assert_eq!(out.trim(), index_digest.to_string());
    let oci = format!("oci:{}:multi", layout.display());
    assert_eq!(fx.platform_of(&oci, Some(&other)), other.to_string());
    assert_eq!(fx.platform_of(&oci, None), host_platform);
    if dockyard_testsupport::require_tool("skopeo") {
        let copied = fx.tmp.path().join("skopeo-copy");
        dockyard_testsupport::run_ok(
            std::process::Command::new("skopeo")
                .args(["--insecure-policy", "copy", "-q", "--all"])
                .arg(&oci)
                .arg(format!("oci:{}:x", copied.display())),
        );
        let index: Value =
            serde_json::from_slice(&std::fs::read(copied.join("index.json")).unwrap()).unwrap();
        assert_eq!(
            index["manifests"][0]["digest"],
            json!(index_digest.to_string())
        );
    }

    // A single-platform pull stores that platform's image under the name.
    fx.run(&[
        "pull",
        &format!("{host}/mp/src:1"),
        "--platform",
        &other.to_string(),
    ]);
    assert_eq!(
        fx.platform_of(&format!("store:{host}/mp/src:1"), None),
        other.to_string()
    );
}

/// Run dockyard expecting failure; returns stderr.
fn fails(fx: &Fx, args: &[&str]) -> String {
    let out = Command::cargo_bin("dockyard")
        .unwrap()
        .env("DOCKYARD_CACHE", fx.tmp.path().join("cache"))
        .env("DOCKER_CONFIG", fx.tmp.path().join("docker-config"))
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "dockyard {args:?} should fail with 1"
    );
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn write_fixture(dir: &std::path::Path, name: &str, m: dockyard_image::Manifest) {
    dockyard_image::transport::layout::write_layout_dir(dir, &m, Some(name), &Silent).unwrap();
}

/// What a new user tried: whole indexes from layouts and archives, every
/// platform kept or a clear error, artifacts listed and printed.
#[test]
fn indexes_and_artifacts_from_layouts_and_archives() {
    use dockyard_testsupport::images::{test_artifact, three_platform_index};
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let fx = Fx {
        tmp: tempfile::tempdir().unwrap(),
    };
    let layout = fx.tmp.path().join("layout");
    let index = three_platform_index(11, true);
    write_fixture(
        &layout,
        "v2",
        dockyard_image::Manifest::Index(index.clone()),
    );
    let src = format!("oci:{}:v2", layout.display());
    let other = other_platform().to_string();

    // copy --all-platforms keeps every child and the index digest.
    let out = fx.tmp.path().join("out");
    let (stdout, _) = fx.run(&[
        "copy",
        "--all-platforms",
        &src,
        &format!("oci:{}:t", out.display()),
    ]);
    assert_eq!(stdout.trim(), index.digest().to_string());
    let copied = format!("oci:{}:t", out.display());
    let (raw, _) = fx.run(&["inspect", "--raw", &copied]);
    assert_eq!(Digest::sha256_of(raw.as_bytes()), index.digest());
    assert_eq!(fx.platform_of(&copied, Some(&other_platform())), other);

    // inspect of an index names it and its platforms, then the pick.
    let (text, _) = fx.run(&["inspect", &src]);
    assert!(text.contains(&index.digest().to_string()), "{text}");
    assert!(
        text.contains(&other) && text.contains("unknown/unknown"),
        "{text}"
    );
    // --raw with --platform prints the picked image's manifest.
    let (raw, _) = fx.run(&["inspect", "--raw", "--platform", &other, &src]);
    let picked = index.select(&other_platform()).unwrap();
    assert_eq!(raw.as_bytes(), picked.manifest_raw());

    // An oci-archive asked for a platform it lacks: exit 1, what it has.
    let archive = fx.tmp.path().join("x.tar");
    fx.run(&[
        "copy",
        "--all-platforms",
        &src,
        &format!("oci-archive:{}:v2", archive.display()),
    ]);
    let err = fails(
        &fx,
        &[
            "inspect",
            "--platform",
            "linux/riscv64",
            &format!("oci-archive:{}:v2", archive.display()),
        ],
    );
    assert!(
        err.contains("no image for platform linux/riscv64") && err.contains(&other),
        "{err}"
    );

    // push of a layout holding an index pushes the index.
    let remote = format!("{}/mp/pushed:v2", registry.host());
    let (stdout, _) = fx.run(&["push", &src, &remote]);
    assert_eq!(stdout.trim(), index.digest().to_string());
    assert_eq!(
        fx.platform_of(&format!("docker://{remote}"), Some(&other_platform())),
        other
    );

    // A docker archive cannot hold an index: an error, no file.
    let all_tar = fx.tmp.path().join("all.tar");
    let err = fails(
        &fx,
        &[
            "pull",
            &remote,
            "--all-platforms",
            "-o",
            &all_tar.to_string_lossy(),
        ],
    );
    assert!(err.contains("cannot hold a multi-platform index"), "{err}");
    assert!(!all_tar.exists());

    // Entries without a platform field are placed by their configs.
    let bare = fx.tmp.path().join("bare");
    write_fixture(
        &bare,
        "tag",
        dockyard_image::Manifest::Index(three_platform_index(12, false)),
    );
    let bare_src = format!("oci:{}:tag", bare.display());
    assert_eq!(
        fx.platform_of(&bare_src, Some(&Platform::host())),
        Platform::host().to_string()
    );
    assert_eq!(fx.platform_of(&bare_src, Some(&other_platform())), other);

    // An artifact: listed by inspect, printed by --raw, refused by export.
    let art_dir = fx.tmp.path().join("artifacts");
    let artifact = test_artifact(13, None);
    write_fixture(
        &art_dir,
        "a-example",
        dockyard_image::Manifest::Artifact(artifact.clone()),
    );
    let art = format!("oci:{}:a-example", art_dir.display());
    let (raw, _) = fx.run(&["inspect", "--raw", &art]);
    assert_eq!(raw.as_bytes(), artifact.raw());
    let (text, _) = fx.run(&["inspect", &art]);
    assert!(
        text.contains("application/vnd.dockyard.test+json") && text.contains("Blobs (2)"),
        "{text}"
    );
    let err = fails(
        &fx,
        &[
            "export",
            &art,
            &fx.tmp.path().join("rootfs").to_string_lossy(),
        ],
    );
    assert!(err.contains("not a runnable image"), "{err}");
}
