//! `Image` edits (mutate.rs): layers, runtime config, platform. After every
//! edit `history`, `rootfs.diff_ids` and the layers agree, and fields the
//! edit does not touch survive byte for byte in meaning.

use std::fs;
use std::path::Path;

use dockyard_image::media;
use dockyard_image::progress::Silent;
use dockyard_image::tar::{LayerBuilder, LayerOptions};
use dockyard_image::transport::{self, layout, Location, ReadOptions};
use dockyard_image::{ConfigEdit, Image, Layer, Platform};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn layer(dir: &Path, name: &str) -> Layer {
    let mut b = LayerBuilder::new(LayerOptions {
        mtime: 0,
        keep_owner: false,
    });
    b.add_contents(&format!("/{name}"), name.as_bytes().to_vec(), 0o644)
        .unwrap();
    b.build(dir).expect("build layer")
}

/// The invariant every edit keeps.
fn assert_consistent(img: &Image) {
    let config = img.config_json();
    let history = config["history"].as_array().cloned().unwrap_or_default();
    let non_empty = history
        .iter()
        .filter(|h| {
            !h.get("empty_layer")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        })
        .count();
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .expect("rootfs.diff_ids")
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    let layer_ids: Vec<String> = img
        .layers()
        .iter()
        .map(|l| l.diff_id().to_string())
        .collect();
    assert_eq!(non_empty, img.layers().len(), "history vs layers: {config}");
    assert_eq!(diff_ids, layer_ids, "diff_ids vs layers, in order");
    let manifest_layers: Vec<String> = img.manifest_json()["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    let layer_digests: Vec<String> = img
        .layers()
        .iter()
        .map(|l| l.digest().to_string())
        .collect();
    assert_eq!(manifest_layers, layer_digests);
    // The manifest names the config it goes with.
    assert_eq!(
        img.manifest_json()["config"]["digest"].as_str().unwrap(),
        format!("sha256:{}", sha256_hex(img.config_raw()))
    );
    assert_eq!(
        img.manifest_json()["config"]["size"].as_u64().unwrap(),
        img.config_raw().len() as u64
    );
    let again = Image::from_parts(
        img.manifest_raw().to_vec(),
        img.config_raw().to_vec(),
        img.layers().to_vec(),
    )
    .expect("from_parts accepts an edited image");
    assert_eq!(again.digest(), img.digest());
    // oci-spec can read what we wrote.
    img.config().expect("typed config");
    img.manifest().expect("typed manifest");
}

fn created_by(img: &Image) -> Vec<String> {
    img.config_json()["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| {
            !h.get("empty_layer")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        })
        .map(|h| h["created_by"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn scratch_is_empty_and_for_the_host() {
    let img = Image::scratch(&Platform::host());
    assert!(img.layers().is_empty());
    assert_eq!(img.platform(), Platform::host());
    assert_eq!(img.config_json()["os"], "linux");
    assert_eq!(
        img.config_json()["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_consistent(&img);
    let err = img.pop_layer().unwrap_err().to_string();
    assert!(err.contains("0 layers"), "{err}");
}

#[test]
fn append_remove_and_pop_keep_history_and_diff_ids_aligned() {
    let tmp = tempfile::tempdir().unwrap();
    let (l0, l1, l2) = (
        layer(tmp.path(), "zero"),
        layer(tmp.path(), "one"),
        layer(tmp.path(), "two"),
    );
    let base = Image::scratch(&Platform::host());
    let img = base.append_layer(l0.clone(), "add zero");
    assert_consistent(&img);
    let img = img.append_layer(l1.clone(), "add one");
    assert_consistent(&img);
    let img = img.append_layer(l2.clone(), "add two");
    assert_consistent(&img);
    assert_eq!(created_by(&img), ["add zero", "add one", "add two"]);
    assert_eq!(img.layers()[0].diff_id(), l0.diff_id(), "base first");
    assert_eq!(img.layers()[2].diff_id(), l2.diff_id());
    // Edits return new values: the base is untouched.
    assert!(base.layers().is_empty());

    let middle_gone = img.remove_layer(1).unwrap();
    assert_consistent(&middle_gone);
    assert_eq!(
        middle_gone
            .layers()
            .iter()
            .map(|l| l.diff_id().clone())
            .collect::<Vec<_>>(),
        vec![l0.diff_id().clone(), l2.diff_id().clone()]
    );
    assert_eq!(created_by(&middle_gone), ["add zero", "add two"]);
    assert_eq!(img.layers().len(), 3, "the original keeps its layers");

    let popped = img.pop_layer().unwrap();
    assert_consistent(&popped);
    assert_eq!(created_by(&popped), ["add zero", "add one"]);
    assert_eq!(popped.layers()[1].diff_id(), l1.diff_id());

    let base_gone = img.remove_layer(0).unwrap();
    assert_consistent(&base_gone);
    assert_eq!(created_by(&base_gone), ["add one", "add two"]);

    let err = img.remove_layer(5).unwrap_err().to_string();
    assert!(err.contains('5'), "the index is named: {err}");
    assert!(err.contains('3'), "the layer count is named: {err}");
    let err = img.remove_layer(3).unwrap_err().to_string();
    assert!(err.contains("index 3"), "{err}");

    // Appending the same layer twice is allowed and stays consistent.
    let twice = img.append_layer(l0.clone(), "again");
    assert_consistent(&twice);
    assert_eq!(twice.layers().len(), 4);
}

#[test]
fn config_edits() {
    let tmp = tempfile::tempdir().unwrap();
    let img = Image::scratch(&Platform::host())
        .append_layer(layer(tmp.path(), "a"), "add a")
        .with_config_edits(&[
            ConfigEdit::Env("PATH".into(), "/usr/bin".into()),
            ConfigEdit::Env("AB".into(), "x".into()),
            ConfigEdit::Env("A".into(), "1".into()),
        ]);
    assert_consistent(&img);
    assert_eq!(
        img.config_json()["config"]["Env"],
        json!(["PATH=/usr/bin", "AB=x", "A=1"])
    );
    let before = img.config_json().clone();
    let edited = img.with_config_edits(&[
        ConfigEdit::Env("A".into(), "2".into()),
        ConfigEdit::Env("NEW".into(), "v=w".into()),
        ConfigEdit::Entrypoint(vec!["/bin/sh".into(), "-c".into()]),
        ConfigEdit::Cmd(vec!["echo hi".into()]),
        ConfigEdit::WorkingDir("/work".into()),
        ConfigEdit::User("1000:1000".into()),
        ConfigEdit::Label("org.example.k".into(), "v".into()),
        ConfigEdit::Label("second".into(), "2".into()),
        ConfigEdit::ExposedPort("80".into()),
        ConfigEdit::ExposedPort("53/udp".into()),
    ]);
    assert_consistent(&edited);
    let c = &edited.config_json()["config"];
    assert_eq!(
        c["Env"],
        json!(["PATH=/usr/bin", "AB=x", "A=2", "NEW=v=w"]),
        "a variable of the same name is replaced in place, new ones appended"
    );
    assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], json!(["echo hi"]));
    assert_eq!(c["WorkingDir"], "/work");
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["Labels"], json!({"org.example.k": "v", "second": "2"}));
    assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
    // Nothing outside `config` moved.
    let mut expected = before.clone();
    expected["config"] = c.clone();
    assert_eq!(edited.config_json(), &expected);
    assert_eq!(edited.layers()[0].digest(), img.layers()[0].digest());
    assert_ne!(edited.digest(), img.digest());

    // Typed view agrees.
    let typed = edited.config().unwrap();
    let tc = typed.config().as_ref().unwrap();
    assert_eq!(tc.working_dir().as_deref(), Some("/work"));
    assert_eq!(tc.user().as_deref(), Some("1000:1000"));
}

#[test]
fn with_platform_sets_and_clears_variant() {
    let tmp = tempfile::tempdir().unwrap();
    let img = Image::scratch(&Platform::host()).append_layer(layer(tmp.path(), "a"), "add a");
    let arm: Platform = "linux/arm64/v8".parse().unwrap();
    let on_arm = img.with_platform(&arm);
    assert_consistent(&on_arm);
    assert_eq!(on_arm.platform(), arm);
    assert_eq!(on_arm.config_json()["variant"], "v8");
    let amd: Platform = "linux/amd64".parse().unwrap();
    let back = on_arm.with_platform(&amd);
    assert_consistent(&back);
    assert_eq!(back.platform(), amd);
    assert!(back.config_json().get("variant").is_none());
    assert_eq!(back.layers()[0].diff_id(), img.layers()[0].diff_id());
}

/// A config with everything dockyard does not edit: it must survive.
fn rich_config(diff_id: &str) -> Value {
    json!({
        "x-custom": {"keep": [1, 2, {"deep": true}], "n": 1.5},
        "created": "2021-01-02T03:04:05.123456789Z",
        "author": "someone",
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"],
            "Cmd": ["sh"],
            "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000u64, "Retries": 3},
            "Volumes": {"/data": {}},
            "StopSignal": "SIGQUIT",
            "OnBuild": ["RUN echo onbuild"],
            "Shell": ["/bin/bash", "-c"],
            "X-Unknown-Inside": {"a": "b"},
            "Labels": {"keep": "me"}
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [
            {"created": "2021-01-02T03:04:05Z", "created_by": "ADD rootfs", "comment": "base"},
            {"created": "2021-01-02T03:04:06Z", "created_by": "ENV LANG=C.UTF-8", "empty_layer": true}
        ]
    })
}

/// Write an OCI layout by hand (no dockyard code): the layer blob, the
/// config and manifest bytes exactly as given, index.json with a ref name.
fn hand_layout(dir: &Path, layer_tar: &[u8], config_raw: &[u8], ref_name: &str) -> Vec<u8> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        fs::write(blobs.join(&hex), bytes).unwrap();
        hex
    };
    let layer_hex = put(layer_tar);
    let config_hex = put(config_raw);
    // Pretty-printed, odd key order, an annotation and an unknown field.
    let manifest_raw = format!(
        "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{}\",\n  \"x-manifest-extra\": \"kept\",\n  \"config\": {{\"size\": {}, \"digest\": \"sha256:{config_hex}\", \"mediaType\": \"{}\"}},\n  \"layers\": [{{\"mediaType\": \"{}\", \"digest\": \"sha256:{layer_hex}\", \"size\": {}}}],\n  \"annotations\": {{\"org.example.note\": \"hello\"}}\n}}\n",
        media::OCI_MANIFEST,
        config_raw.len(),
        media::OCI_CONFIG,
        media::OCI_LAYER,
        layer_tar.len()
    )
    .into_bytes();
    let manifest_hex = put(&manifest_raw);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": media::OCI_MANIFEST,
            "digest": format!("sha256:{manifest_hex}"),
            "size": manifest_raw.len(),
            "annotations": {"org.opencontainers.image.ref.name": ref_name}
        }]
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    manifest_raw
}

fn layer_tar_bytes() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "hello.txt", &b"hello"[..]).unwrap();
    b.into_inner().unwrap()
}

fn read_oci(dir: &Path, reference: &str) -> Image {
    transport::read_image(
        &Location::OciDir {
            path: dir.to_path_buf(),
            reference: Some(reference.into()),
        },
        &ReadOptions::default(),
    )
    .expect("read layout")
}

fn write_oci(img: &Image, dir: &Path, reference: &str) {
    transport::write_image(
        img,
        &Location::OciDir {
            path: dir.to_path_buf(),
            reference: Some(reference.into()),
        },
        None,
        &Silent,
    )
    .expect("write layout");
}

#[test]
fn unknown_and_untouched_fields_survive_an_edit_through_a_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let tar_bytes = layer_tar_bytes();
    let diff_id = format!("sha256:{}", sha256_hex(&tar_bytes));
    let config = rich_config(&diff_id);
    // Pretty-printed bytes with our own key order.
    let config_raw = serde_json::to_vec_pretty(&config).unwrap();
    let src = tmp.path().join("src");
    let manifest_raw = hand_layout(&src, &tar_bytes, &config_raw, "v1");

    let img = read_oci(&src, "v1");
    assert_consistent(&img);
    assert_eq!(img.config_raw(), &config_raw[..]);
    assert_eq!(img.manifest_raw(), &manifest_raw[..]);
    assert_eq!(
        img.digest().to_string(),
        format!("sha256:{}", sha256_hex(&manifest_raw))
    );

    // No edit: a round trip keeps both documents byte for byte.
    let plain = tmp.path().join("plain");
    write_oci(&img, &plain, "v1");
    let back = read_oci(&plain, "v1");
    assert_eq!(back.manifest_raw(), &manifest_raw[..]);
    assert_eq!(back.config_raw(), &config_raw[..]);
    assert_eq!(back.digest(), img.digest());
    let blob = |d: &str| {
        fs::read(
            plain
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    assert_eq!(blob(&img.digest().to_string()), manifest_raw);
    assert_eq!(blob(&img.config_digest().to_string()), config_raw);
    // Also through an oci-archive.
    let archive = tmp.path().join("plain.tar");
    transport::write_image(
        &img,
        &Location::OciArchive {
            path: archive.clone(),
            reference: Some("v1".into()),
        },
        None,
        &Silent,
    )
    .unwrap();
    let from_archive = transport::read_image(
        &Location::OciArchive {
            path: archive,
            reference: None,
        },
        &ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(from_archive.manifest_raw(), &manifest_raw[..]);
    assert_eq!(from_archive.config_raw(), &config_raw[..]);

    // One edit: only that field changes.
    let edited = img.with_config_edits(&[ConfigEdit::Env("LANG".into(), "en_US.UTF-8".into())]);
    assert_consistent(&edited);
    let out = tmp.path().join("out");
    write_oci(&edited, &out, "v2");
    let back = read_oci(&out, "v2");
    assert_consistent(&back);
    assert_eq!(back.config_raw(), edited.config_raw());
    let mut expected = config.clone();
    expected["config"]["Env"] = json!(["PATH=/usr/local/bin:/usr/bin", "LANG=en_US.UTF-8"]);
    let got: Value = serde_json::from_slice(back.config_raw()).unwrap();
    assert_eq!(got, expected);
    // Key order is kept too (top level and inside `config`).
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&got), keys(&config));
    assert_eq!(keys(&got["config"]), keys(&config["config"]));
    // The manifest keeps its annotations and unknown field.
    let m: Value = serde_json::from_slice(back.manifest_raw()).unwrap();
    assert_eq!(m["annotations"], json!({"org.example.note": "hello"}));
    assert_eq!(m["x-manifest-extra"], "kept");
    assert_eq!(m["layers"][0]["digest"], diff_id);

    // A layer edit on the same image keeps the unknown fields and the
    // empty_layer history entry.
    let tmp2 = tempfile::tempdir().unwrap();
    let grown = img.append_layer(layer(tmp2.path(), "extra"), "add extra");
    assert_consistent(&grown);
    let h = grown.config_json()["history"].as_array().unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h[1]["empty_layer"], true);
    assert_eq!(grown.config_json()["x-custom"], config["x-custom"]);
    let shrunk = grown.remove_layer(0).unwrap();
    assert_consistent(&shrunk);
    let h = shrunk.config_json()["history"].as_array().unwrap();
    assert_eq!(h.len(), 2, "the base's history entry went, ENV's stayed");
    assert_eq!(h[0]["created_by"], "ENV LANG=C.UTF-8");
    assert_eq!(h[1]["created_by"], "add extra");
    assert_eq!(shrunk.config_json()["config"], config["config"]);
}

#[test]
fn docker_family_images_get_docker_layer_media_types() {
    let tmp = tempfile::tempdir().unwrap();
    let l0 = layer(tmp.path(), "base");
    let img = Image::from_config_and_layers(
        serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [l0.diff_id().to_string()]},
            "history": [{"created_by": "base"}]
        }))
        .unwrap(),
        vec![l0.with_media_type(media::DOCKER_LAYER)],
        true,
    )
    .unwrap();
    assert_eq!(img.manifest_media_type(), media::DOCKER_MANIFEST);
    let grown = img.append_layer(layer(tmp.path(), "top"), "add top");
    assert_consistent(&grown);
    assert_eq!(grown.manifest_media_type(), media::DOCKER_MANIFEST);
    assert_eq!(grown.config_media_type(), media::DOCKER_CONFIG);
    for l in grown.layers() {
        assert_eq!(l.media_type(), media::DOCKER_LAYER);
    }
}

#[test]
fn a_config_without_history_gets_one_entry_per_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let tar_bytes = layer_tar_bytes();
    let diff_id = format!("sha256:{}", sha256_hex(&tar_bytes));
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}
    });
    let src = tmp.path().join("src");
    hand_layout(&src, &tar_bytes, &serde_json::to_vec(&config).unwrap(), "x");
    let img = read_oci(&src, "x");
    let grown = img.append_layer(layer(tmp.path(), "top"), "add top");
    assert_consistent(&grown);
    assert_eq!(created_by(&grown).last().unwrap(), "add top");
    let popped = grown.pop_layer().unwrap();
    assert_consistent(&popped);
    assert_eq!(popped.layers().len(), 1);
    let layout_dir = tmp.path().join("again");
    layout::write_layout_dir(&layout_dir, &popped.clone().into(), Some("y"), &Silent).unwrap();
    assert_consistent(&read_oci(&layout_dir, "y"));
}
