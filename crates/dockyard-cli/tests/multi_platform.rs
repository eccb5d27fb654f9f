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
