//! Reading docker archives (legacy v1.0, v1.2, the combined tar dockyard
//! writes), oci-archives and OCI layouts, and failing clearly on bad input.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use dockyard_image::media;
use dockyard_image::progress::Silent;
use dockyard_image::tar::{LayerBuilder, LayerOptions};
use dockyard_image::transport::{self, archive, layout, Location, ReadOptions};
use dockyard_image::{ConfigEdit, Image, Layer, Platform};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

/// A tar of the given members, in the given order (directories for names
/// ending in '/').
fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(0);
        if name.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            b.append_data(&mut h, name, &[][..]).unwrap();
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, *data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

/// A layer tar holding one file.
fn layer_tar(name: &str, contents: &str) -> Vec<u8> {
    tar_of(&[(name, contents.as_bytes())])
}

/// The files of a layer, read through `open_uncompressed()` (which
/// verifies the diff_id) and the tar crate.
fn layer_files(layer: &Layer) -> Vec<(String, String)> {
    let mut plain = Vec::new();
    layer
        .open_uncompressed()
        .expect("open layer")
        .read_to_end(&mut plain)
        .expect("read verified layer");
    let mut ar = tar::Archive::new(&plain[..]);
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), s)
        })
        .collect()
}

fn diff_ids(img: &Image) -> Vec<String> {
    img.layers()
        .iter()
        .map(|l| l.diff_id().to_string())
        .collect()
}

fn docker_archive(path: &Path, reference: Option<&str>) -> Location {
    Location::DockerArchive {
        path: path.to_path_buf(),
        reference: reference.map(str::to_string),
    }
}

fn read(loc: &Location) -> dockyard_image::Result<Image> {
    transport::read_image(loc, &ReadOptions::default())
}

fn fake_id(n: u32) -> String {
    sha256_hex(format!("legacy layer {n}").as_bytes())
}

#[test]
fn legacy_v10_archive_comes_back_base_first() {
    let tmp = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..3).map(fake_id).collect();
    let tars: Vec<Vec<u8>> = (0..3)
        .map(|i| layer_tar(&format!("layer{i}.txt"), &format!("contents {i}")))
        .collect();
    let jsons: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            let mut j = json!({
                "id": ids[i],
                "created": format!("2020-01-0{}T00:00:00Z", i + 1),
                "container_config": {"Cmd": ["/bin/sh", "-c", format!("#(nop) ADD layer{i}.txt")]},
                "architecture": "amd64",
                "os": "linux",
                "Size": 10,
            });
            if i > 0 {
                j["parent"] = json!(ids[i - 1]);
            }
            if i == 2 {
                j["config"] = json!({"Env": ["PATH=/bin", "TOP=yes"], "Cmd": ["sh"]});
                j["author"] = json!("tester");
            } else {
                j["config"] = json!({"Env": ["PATH=/bin"]});
            }
            serde_json::to_vec(&j).unwrap()
        })
        .collect();
    let repositories = serde_json::to_vec(&json!({"repo": {"tag": ids[2]}})).unwrap();
    let n = |i: usize, f: &str| format!("{}/{f}", ids[i]);
    // Scrambled: the reader must follow `parent`, not the tar order.
    let names = [
        (n(2, "json"), jsons[2].clone()),
        ("repositories".to_string(), repositories),
        (n(0, "layer.tar"), tars[0].clone()),
        (n(1, "VERSION"), b"1.0".to_vec()),
        (n(2, "layer.tar"), tars[2].clone()),
        (n(0, "json"), jsons[0].clone()),
        (n(1, "json"), jsons[1].clone()),
        (n(1, "layer.tar"), tars[1].clone()),
        (n(0, "VERSION"), b"1.0".to_vec()),
        (n(2, "VERSION"), b"1.0".to_vec()),
    ];
    let members: Vec<(&str, &[u8])> = names
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_slice()))
        .collect();
    let path = tmp.path().join("legacy.tar");
    fs::write(&path, tar_of(&members)).unwrap();

    for wanted in [None, Some("repo:tag"), Some("docker.io/library/repo:tag")] {
        let img = read(&docker_archive(&path, wanted)).expect("read legacy archive");
        assert_eq!(img.layers().len(), 3);
        for (i, layer) in img.layers().iter().enumerate() {
            assert_eq!(
                layer_files(layer),
                vec![(format!("layer{i}.txt"), format!("contents {i}"))],
                "layer {i} is in base-first position"
            );
        }
        let expected: Vec<String> = tars.iter().map(|t| sha256(t)).collect();
        assert_eq!(diff_ids(&img), expected);
        let config = img.config_json();
        assert_eq!(
            config["rootfs"]["diff_ids"],
            json!(expected),
            "config diff_ids"
        );
        assert_eq!(config["config"]["Env"], json!(["PATH=/bin", "TOP=yes"]));
        assert_eq!(config["config"]["Cmd"], json!(["sh"]));
        assert_eq!(config["author"], "tester");
        assert!(config.get("parent").is_none() && config.get("id").is_none());
        let history = config["history"].as_array().unwrap();
        assert_eq!(history.len(), 3);
        for (i, h) in history.iter().enumerate() {
            assert_eq!(h["created"], format!("2020-01-0{}T00:00:00Z", i + 1));
            assert!(h["created_by"]
                .as_str()
                .unwrap()
                .contains(&format!("layer{i}.txt")));
        }
        // It can be copied (every layer verified) to a layout.
        let out = tmp.path().join(format!("out-{}", wanted.is_some()));
        layout::write_layout_dir(&out, &img.clone().into(), None, &Silent).unwrap();
    }
    let err = read(&docker_archive(&path, Some("other:tag")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("other:tag") && err.contains("repo:tag"),
        "{err}"
    );
}

/// Members of a v1.2 image: `<hex>.json` config and `<id>/layer.tar`.
struct V12 {
    config_name: String,
    config: Vec<u8>,
    layers: Vec<(String, Vec<u8>)>,
    /// Uncompressed tars, for the diff_ids.
    plain: Vec<Vec<u8>>,
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn v12_image(tag: &str, files: &[(&str, &str)], gzip_last: bool) -> V12 {
    let plain: Vec<Vec<u8>> = files.iter().map(|(n, c)| layer_tar(n, c)).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [format!("IMAGE={tag}")]},
        "rootfs": {"type": "layers", "diff_ids": plain.iter().map(|t| sha256(t)).collect::<Vec<_>>()},
        "history": files.iter().map(|(n, _)| json!({"created_by": format!("ADD {n}")})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let layers = plain
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let bytes = if gzip_last && i + 1 == plain.len() {
                gzip(t)
            } else {
                t.clone()
            };
            (format!("{}/layer.tar", sha256_hex(&bytes)), bytes)
        })
        .collect();
    V12 {
        config_name: format!("{}.json", sha256_hex(&config)),
        config,
        layers,
        plain,
    }
}

fn v12_archive(path: &Path, images: &[(&V12, Vec<&str>)]) {
    let manifest: Vec<Value> = images
        .iter()
        .map(|(img, tags)| {
            json!({
                "Config": img.config_name,
                "RepoTags": tags,
                "Layers": img.layers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let mut members: Vec<(&str, &[u8])> = Vec::new();
    for (img, _) in images {
        for (n, b) in &img.layers {
            members.push((n.as_str(), b.as_slice()));
        }
        members.push((img.config_name.as_str(), img.config.as_slice()));
    }
    members.push(("manifest.json", &manifest));
    fs::write(path, tar_of(&members)).unwrap();
}

#[test]
fn v12_archive_by_hand_with_a_gzip_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let v = v12_image("foo:1", &[("a.txt", "A"), ("b.txt", "B")], true);
    let path = tmp.path().join("v12.tar");
    v12_archive(&path, &[(&v, vec!["foo:1"])]);
    let img = archive::read_docker_archive(&path, None)
        .and_then(|m| m.into_image("v1.2", None))
        .expect("read v1.2");
    assert_eq!(img.config_raw(), &v.config[..], "config bytes kept");
    assert_eq!(
        diff_ids(&img),
        v.plain.iter().map(|t| sha256(t)).collect::<Vec<_>>()
    );
    assert_eq!(
        layer_files(&img.layers()[0]),
        [("a.txt".into(), "A".into())]
    );
    assert_eq!(
        layer_files(&img.layers()[1]),
        [("b.txt".into(), "B".into())]
    );
    // The gzip layer is known as such, by the digest of its compressed bytes.
    let top = &img.layers()[1];
    assert_eq!(top.media_type(), media::OCI_LAYER_GZIP);
    assert_eq!(top.digest().to_string(), sha256(&v.layers[1].1));
    assert_eq!(img.layers()[0].media_type(), media::OCI_LAYER);

    // Copying it into a docker archive stores uncompressed layers.
    let out = tmp.path().join("copy.tar");
    transport::write_image(&img, &docker_archive(&out, Some("foo:1")), None, &Silent).unwrap();
    let back = read(&docker_archive(&out, Some("foo:1"))).unwrap();
    assert_eq!(back.config_raw(), &v.config[..]);
    assert_eq!(diff_ids(&back), diff_ids(&img));
    for l in back.layers() {
        assert_eq!(l.media_type(), media::OCI_LAYER);
        assert_eq!(l.digest(), l.diff_id());
    }
    assert_eq!(
        layer_files(&back.layers()[1]),
        [("b.txt".into(), "B".into())]
    );
}

#[test]
fn several_images_in_one_archive_pick_by_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let foo = v12_image("foo", &[("base.txt", "base"), ("foo.txt", "foo")], false);
    let bar = v12_image("bar", &[("base.txt", "base"), ("bar.txt", "bar")], false);
    let path = tmp.path().join("multi.tar");
    v12_archive(
        &path,
        &[
            (&foo, vec!["foo:1"]),
            (&bar, vec!["example.com:5000/team/bar:2", "bar:latest"]),
        ],
    );
    for (wanted, env) in [
        ("foo:1", "IMAGE=foo"),
        ("docker.io/library/foo:1", "IMAGE=foo"),
        ("library/foo:1", "IMAGE=foo"),
        ("example.com:5000/team/bar:2", "IMAGE=bar"),
        ("bar", "IMAGE=bar"),
        ("docker.io/library/bar:latest", "IMAGE=bar"),
    ] {
        let img =
            read(&docker_archive(&path, Some(wanted))).unwrap_or_else(|e| panic!("{wanted}: {e}"));
        assert_eq!(img.config_json()["config"]["Env"], json!([env]), "{wanted}");
    }
    let err = read(&docker_archive(&path, None)).unwrap_err().to_string();
    for name in ["foo:1", "example.com:5000/team/bar:2"] {
        assert!(err.contains(name), "ambiguous error lists {name}: {err}");
    }
    let err = read(&docker_archive(&path, Some("foo:2")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("foo:2"), "names what was asked: {err}");
    for name in ["foo:1", "example.com:5000/team/bar:2"] {
        assert!(err.contains(name), "not-found error lists {name}: {err}");
    }
    assert!(err.contains(&path.display().to_string()), "{err}");
}

fn built_layer(dir: &Path, name: &str, contents: &str) -> Layer {
    let mut b = LayerBuilder::new(LayerOptions {
        mtime: 0,
        keep_owner: false,
    });
    b.add_contents(name, contents.as_bytes().to_vec(), 0o644)
        .unwrap();
    b.build(dir).unwrap()
}

fn test_image(dir: &Path, tag: &str) -> Image {
    Image::scratch(&Platform::host())
        .with_created(0)
        .append_layer(built_layer(dir, "/base.txt", "base"), "add base")
        .append_layer(
            built_layer(dir, &format!("/{tag}.txt"), tag),
            &format!("add {tag}"),
        )
        .with_config_edits(&[ConfigEdit::Label("which".into(), tag.into())])
}

#[test]
fn written_docker_archive_reads_back_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let img = test_image(tmp.path(), "t");
    let path = tmp.path().join("t.tar");
    let written = transport::write_image(
        &img,
        &docker_archive(&path, Some("docker.io/library/t:1")),
        None,
        &Silent,
    )
    .unwrap();
    // The combined tar: OCI layout and docker's files.
    let mut names = Vec::new();
    let bytes = fs::read(&path).unwrap();
    for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
        names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    for n in ["manifest.json", "repositories", "index.json", "oci-layout"] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }
    for wanted in [None, Some("t:1"), Some("docker.io/library/t:1")] {
        let back = read(&docker_archive(&path, wanted)).unwrap();
        assert_eq!(back.config_raw(), img.config_raw());
        assert_eq!(diff_ids(&back), diff_ids(&img));
        assert_eq!(back.digest(), written.digest());
        assert_eq!(
            layer_files(&back.layers()[1]),
            [("t.txt".into(), "t".into())]
        );
    }
}

/// A layout directory with two images, tagged "one" and "two", and the
/// same directory as an oci-archive.
fn two_image_layout(tmp: &Path) -> (PathBuf, PathBuf, Image, Image) {
    let one = test_image(tmp, "one");
    let two = test_image(tmp, "two");
    let dir = tmp.join("layout");
    layout::write_layout_dir(&dir, &one.clone().into(), Some("one"), &Silent).unwrap();
    layout::write_layout_dir(&dir, &two.clone().into(), Some("two"), &Silent).unwrap();
    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    for n in ["oci-layout", "index.json"] {
        members.push((n.into(), fs::read(dir.join(n)).unwrap()));
    }
    for e in fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        members.push((
            format!("blobs/sha256/{}", e.file_name().to_string_lossy()),
            fs::read(e.path()).unwrap(),
        ));
    }
    let m: Vec<(&str, &[u8])> = members
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_slice()))
        .collect();
    let archive = tmp.join("layout.tar");
    fs::write(&archive, tar_of(&m)).unwrap();
    (dir, archive, one, two)
}

#[test]
fn oci_archive_and_layout_pick_by_ref_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, archive_path, one, two) = two_image_layout(tmp.path());
    let locations = |reference: Option<&str>| {
        [
            Location::OciDir {
                path: dir.clone(),
                reference: reference.map(str::to_string),
            },
            Location::OciArchive {
                path: archive_path.clone(),
                reference: reference.map(str::to_string),
            },
        ]
    };
    for (name, expected) in [("one", &one), ("two", &two)] {
        for loc in locations(Some(name)) {
            let img = read(&loc).unwrap_or_else(|e| panic!("{loc}: {e}"));
            assert_eq!(img.digest(), expected.digest(), "{loc}");
            assert_eq!(img.config_json()["config"]["Labels"]["which"], name);
            assert_eq!(
                layer_files(&img.layers()[1]),
                [(format!("{name}.txt"), name.to_string())]
            );
        }
    }
    // By digest too.
    for loc in locations(Some(&two.digest().to_string())) {
        assert_eq!(read(&loc).unwrap().digest(), two.digest());
    }
    for loc in locations(None) {
        let err = read(&loc).unwrap_err().to_string();
        assert!(err.contains("one") && err.contains("two"), "{loc}: {err}");
    }
    for loc in locations(Some("three")) {
        let err = read(&loc).unwrap_err().to_string();
        assert!(
            err.contains("three") && err.contains("one") && err.contains("two"),
            "{loc}: {err}"
        );
    }
}

/// A layout with one gzip layer whose config claims `diff_id`.
fn gzip_layout(dir: &Path, plain: &[u8], diff_id: &str) {
    let gz = gzip(plain);
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "gz"}]
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": media::OCI_LAYER_GZIP, "digest": sha256(&gz), "size": gz.len()}],
    }))
    .unwrap();
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    for b in [&gz, &config, &manifest] {
        fs::write(blobs.join(sha256_hex(b)), b).unwrap();
    }
    let index = json!({"schemaVersion": 2, "manifests": [
        {"mediaType": media::OCI_MANIFEST, "digest": sha256(&manifest), "size": manifest.len()}
    ]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

#[test]
fn gzip_layer_in_a_layout_is_verified_against_its_diff_id() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = layer_tar("z.txt", "zipped");
    let good = tmp.path().join("good");
    gzip_layout(&good, &plain, &sha256(&plain));
    let img = read(&Location::OciDir {
        path: good,
        reference: None,
    })
    .unwrap();
    let l = &img.layers()[0];
    assert_eq!(l.compression(), media::Compression::Gzip);
    assert_eq!(l.diff_id().to_string(), sha256(&plain));
    assert_ne!(l.digest(), l.diff_id());
    let mut got = Vec::new();
    l.open_uncompressed()
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert_eq!(got, plain);

    // The config lies about the diff_id: reading the layer fails, naming both.
    let lie = sha256(b"something else");
    let bad = tmp.path().join("bad");
    gzip_layout(&bad, &plain, &lie);
    let img = read(&Location::OciDir {
        path: bad,
        reference: None,
    })
    .unwrap();
    let err = img.layers()[0]
        .open_uncompressed()
        .unwrap()
        .read_to_end(&mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&lie) && err.contains(&sha256(&plain)),
        "both digests: {err}"
    );
    // And a copy to a docker archive (which decompresses) fails, leaving nothing.
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let dest = out.join("x.tar");
    let err = transport::write_image(&img, &docker_archive(&dest, None), None, &Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&lie), "{err}");
    assert!(!dest.exists());
}

/// Write a docker archive of a small image; return its path and the image.
fn written_archive(dir: &Path) -> (PathBuf, Image) {
    let img = test_image(dir, "w");
    let path = dir.join("w.tar");
    let written =
        transport::write_image(&img, &docker_archive(&path, Some("w:1")), None, &Silent).unwrap();
    (path, written)
}

/// The byte range of a member in a tar file.
fn member_range(path: &Path, member: &str) -> (u64, u64) {
    let bytes = fs::read(path).unwrap();
    let mut ar = tar::Archive::new(&bytes[..]);
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == member {
            return (e.raw_file_position(), e.size());
        }
    }
    panic!("{member} not in {}", path.display());
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn tampered_layer_fails_the_copy_and_leaves_no_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, img) = written_archive(tmp.path());
    let layer = &img.layers()[1];
    let member = format!("blobs/sha256/{}", layer.digest().hex());
    let (offset, len) = member_range(&path, &member);
    let mut bytes = fs::read(&path).unwrap();
    // A byte inside the file data of the layer's tar (after its first header).
    let at = (offset + 512) as usize;
    bytes[at] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let tampered = &bytes[offset as usize..(offset + len) as usize];
    let actual = sha256(tampered);
    let expected = layer.digest().to_string();
    assert_ne!(actual, expected);

    let src = read(&docker_archive(&path, None)).expect("reading is lazy");
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let dests = [
        docker_archive(&out.join("copy.tar"), Some("c:1")),
        Location::OciArchive {
            path: out.join("copy-oci.tar"),
            reference: None,
        },
    ];
    for dest in &dests {
        let err = transport::write_image(&src, dest, None, &Silent)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&expected) && err.contains(&actual),
            "{dest}: error names both digests: {err}"
        );
    }
    assert!(
        dir_names(&out).is_empty(),
        "no destination and no temp file: {:?}",
        dir_names(&out)
    );
    // A layout destination: the bad blob is not stored under its name.
    let layout_dir = out.join("layout");
    let err = layout::write_layout_dir(&layout_dir, &src.clone().into(), Some("x"), &Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&expected) && err.contains(&actual), "{err}");
    // A new layout is built aside and renamed only when complete.
    assert!(
        !layout_dir.exists(),
        "a failed copy left {}",
        layout_dir.display()
    );
    assert!(
        dir_names(&out).is_empty(),
        "temp left: {:?}",
        dir_names(&out)
    );
    // Into an existing layout: the bad blob is not stored under its name.
    fs::create_dir(&layout_dir).unwrap();
    let err = layout::write_layout_dir(&layout_dir, &src.clone().into(), Some("x"), &Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&expected) && err.contains(&actual), "{err}");
    let blobs = layout_dir.join("blobs/sha256");
    assert!(!blobs.join(layer.digest().hex()).exists());
    assert!(
        dir_names(&blobs).iter().all(|n| !n.starts_with('.')),
        "no temp files left: {:?}",
        dir_names(&blobs)
    );
}

#[test]
fn tampered_config_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    // In a written archive.
    let (path, img) = written_archive(tmp.path());
    let member = format!("blobs/sha256/{}", img.config_digest().hex());
    let (offset, len) = member_range(&path, &member);
    let mut bytes = fs::read(&path).unwrap();
    let config = &bytes[offset as usize..(offset + len) as usize];
    // Change a character inside a string so the JSON stays valid.
    let pos = config
        .windows(4)
        .position(|w| w == b"add ")
        .expect("history text in the config");
    bytes[offset as usize + pos] = b'A';
    let actual = sha256(&bytes[offset as usize..(offset + len) as usize]);
    fs::write(&path, &bytes).unwrap();
    for wanted in [None, Some("w:1")] {
        let err = read(&docker_archive(&path, wanted))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&img.config_digest().to_string()) && err.contains(&actual),
            "{err}"
        );
    }
    // In a v1.2 archive made by hand.
    let mut v = v12_image("foo", &[("a.txt", "A")], false);
    let expected = sha256(&v.config);
    let pos = v.config.windows(3).position(|w| w == b"foo").unwrap();
    v.config[pos] = b'g';
    let actual = sha256(&v.config);
    let path = tmp.path().join("v12.tar");
    v12_archive(&path, &[(&v, vec!["foo:1"])]);
    let err = read(&docker_archive(&path, None)).unwrap_err().to_string();
    assert!(err.contains(&expected) && err.contains(&actual), "{err}");
    assert!(err.contains(&v.config_name), "names the member: {err}");
}

#[test]
fn truncated_archives_are_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, _) = written_archive(tmp.path());
    let bytes = fs::read(&path).unwrap();
    let cut = tmp.path().join("cut.tar");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = read(&docker_archive(&cut, None)).unwrap_err().to_string();
    assert!(err.contains(&cut.display().to_string()), "{err}");
    let err = read(&Location::OciArchive {
        path: cut.clone(),
        reference: None,
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains(&cut.display().to_string()), "{err}");

    // Every cut point: an error or a fully verified image, never a panic.
    let mut step = 0;
    while step < bytes.len() {
        fs::write(&cut, &bytes[..step]).unwrap();
        if let Ok(img) = read(&docker_archive(&cut, None)) {
            for l in img.layers() {
                let _ = l.open().map(|mut r| r.read_to_end(&mut Vec::new()));
            }
        }
        step += 256;
    }
}

#[test]
fn a_tar_that_is_not_an_image_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("plain.tar");
    fs::write(&path, tar_of(&[("hello.txt", b"hello")])).unwrap();
    let err = read(&docker_archive(&path, None)).unwrap_err().to_string();
    assert!(err.contains("not an image archive"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    let err = read(&Location::OciArchive {
        path: path.clone(),
        reference: None,
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");

    // Not a tar at all, and an empty file.
    for (name, contents) in [
        (
            "text.tar",
            &b"this is just some text, not a tar archive\n"[..],
        ),
        ("empty.tar", b""),
    ] {
        let p = tmp.path().join(name);
        fs::write(&p, contents).unwrap();
        let err = read(&docker_archive(&p, None)).unwrap_err().to_string();
        assert!(err.contains(&p.display().to_string()), "{err}");
    }
}

#[test]
fn malformed_manifest_json_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let layer = layer_tar("a", "a");
    for (i, manifest) in [
        &b"[{\"Config\": "[..],
        b"{\"not\": \"a list\"}",
        b"[{\"Config\": 42, \"Layers\": []}]",
        b"[{\"Config\": \"missing.json\", \"Layers\": [\"x/layer.tar\"]}]",
        b"[]",
        b"\xff\xfe",
    ]
    .iter()
    .enumerate()
    {
        let path = tmp.path().join(format!("bad{i}.tar"));
        fs::write(
            &path,
            tar_of(&[("x/layer.tar", &layer), ("manifest.json", manifest)]),
        )
        .unwrap();
        let err = read(&docker_archive(&path, None)).unwrap_err().to_string();
        assert!(!err.is_empty());
        if i == 0 {
            assert!(
                err.contains("manifest.json") && err.contains("JSON"),
                "{err}"
            );
        }
    }
    // A v1.2 entry whose Layers and diff_ids disagree.
    let v = v12_image("foo", &[("a.txt", "A"), ("b.txt", "B")], false);
    let manifest = serde_json::to_vec(&json!([{
        "Config": v.config_name, "RepoTags": ["foo:1"], "Layers": [v.layers[0].0]
    }]))
    .unwrap();
    let path = tmp.path().join("mismatch.tar");
    fs::write(
        &path,
        tar_of(&[
            (v.layers[0].0.as_str(), &v.layers[0].1),
            (v.config_name.as_str(), &v.config),
            ("manifest.json", &manifest),
        ]),
    )
    .unwrap();
    let err = read(&docker_archive(&path, None)).unwrap_err().to_string();
    assert!(err.contains("diff_ids"), "{err}");
}

#[test]
fn output_in_a_missing_directory_names_the_path_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let img = test_image(tmp.path(), "m");
    let missing = tmp.path().join("missing");
    for loc in [
        docker_archive(&missing.join("out.tar"), Some("m:1")),
        Location::OciArchive {
            path: missing.join("out.tar"),
            reference: None,
        },
        Location::OciDir {
            path: missing.join("layout"),
            reference: None,
        },
    ] {
        let err = transport::write_image(&img, &loc, None, &Silent)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&missing.display().to_string()),
            "{loc}: error names the path: {err}"
        );
        assert!(!missing.exists(), "{loc}: nothing created");
    }
}

/// A tar with regular members and symlinks (`name` → `target`).
fn tar_with_links(members: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, *data).unwrap();
    }
    for (name, target) in links {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, name, target).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn legacy_v10_archive_with_two_tags_for_one_image() {
    // `docker save repo:latest repo:1.0` of one image writes both tags for
    // the same top id: that is one image, not an ambiguous choice.
    let tmp = tempfile::tempdir().unwrap();
    let id = fake_id(7);
    let tar_bytes = layer_tar("only.txt", "only");
    let json = serde_json::to_vec(&json!({
        "id": id, "architecture": "amd64", "os": "linux",
        "config": {"Env": ["ONE=1"]}
    }))
    .unwrap();
    let repositories = serde_json::to_vec(&json!({"repo": {"latest": id, "1.0": id}})).unwrap();
    let (j, l) = (format!("{id}/json"), format!("{id}/layer.tar"));
    let path = tmp.path().join("two-tags.tar");
    fs::write(
        &path,
        tar_of(&[
            ("repositories", &repositories),
            (j.as_str(), &json),
            (l.as_str(), &tar_bytes),
        ]),
    )
    .unwrap();
    for wanted in [Some("repo:1.0"), Some("repo:latest"), Some("repo"), None] {
        let img =
            read(&docker_archive(&path, wanted)).unwrap_or_else(|e| panic!("{wanted:?}: {e}"));
        assert_eq!(diff_ids(&img), [sha256(&tar_bytes)]);
        assert_eq!(img.config_json()["config"]["Env"], json!(["ONE=1"]));
    }
}

#[test]
fn v12_archive_with_a_shared_layer_as_a_symlink() {
    // `docker save a b` stores a layer both images share once and links
    // the other `<id>/layer.tar` to it.
    let tmp = tempfile::tempdir().unwrap();
    let base = layer_tar("base.txt", "base");
    let top = layer_tar("top.txt", "top");
    let (id_base, id_link, id_top) = (fake_id(1), fake_id(2), fake_id(3));
    let config = |tops: &[&Vec<u8>]| {
        let mut ids = vec![sha256(&base)];
        ids.extend(tops.iter().map(|t| sha256(t)));
        serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux", "config": {},
            "rootfs": {"type": "layers", "diff_ids": ids}
        }))
        .unwrap()
    };
    let c1 = config(&[]);
    let c2 = config(&[&top]);
    let (c1n, c2n) = (
        format!("{}.json", sha256_hex(&c1)),
        format!("{}.json", sha256_hex(&c2)),
    );
    let manifest = serde_json::to_vec(&json!([
        {"Config": c1n, "RepoTags": ["one:1"], "Layers": [format!("{id_base}/layer.tar")]},
        {"Config": c2n, "RepoTags": ["two:1"],
         "Layers": [format!("{id_link}/layer.tar"), format!("{id_top}/layer.tar")]},
    ]))
    .unwrap();
    let (lb, lt) = (
        format!("{id_base}/layer.tar"),
        format!("{id_top}/layer.tar"),
    );
    let link_name = format!("{id_link}/layer.tar");
    let link_target = format!("../{id_base}/layer.tar");
    let path = tmp.path().join("shared.tar");
    fs::write(
        &path,
        tar_with_links(
            &[
                (lb.as_str(), &base),
                (lt.as_str(), &top),
                (c1n.as_str(), &c1),
                (c2n.as_str(), &c2),
                ("manifest.json", &manifest),
            ],
            &[(link_name.as_str(), link_target.as_str())],
        ),
    )
    .unwrap();
    let two = read(&docker_archive(&path, Some("two:1"))).unwrap();
    assert_eq!(diff_ids(&two), [sha256(&base), sha256(&top)]);
    assert_eq!(
        layer_files(&two.layers()[0]),
        [("base.txt".into(), "base".into())]
    );
    assert_eq!(
        layer_files(&two.layers()[1]),
        [("top.txt".into(), "top".into())]
    );
    let one = read(&docker_archive(&path, Some("one:1"))).unwrap();
    assert_eq!(diff_ids(&one), [sha256(&base)]);
}

#[test]
fn gzip_compressed_docker_archive_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (path, img) = written_archive(tmp.path());
    let gz = tmp.path().join("w.tar.gz");
    fs::write(&gz, gzip(&fs::read(&path).unwrap())).unwrap();
    let back = read(&docker_archive(&gz, Some("w:1"))).unwrap();
    assert_eq!(back.config_raw(), img.config_raw());
    assert_eq!(diff_ids(&back), diff_ids(&img));
    assert_eq!(
        layer_files(&back.layers()[1]),
        [("w.txt".into(), "w".into())]
    );
}

#[test]
fn an_image_with_the_same_layer_twice_survives_a_docker_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let l = built_layer(tmp.path(), "/same", "same");
    let img = Image::scratch(&Platform::host())
        .append_layer(l.clone(), "first")
        .append_layer(built_layer(tmp.path(), "/mid", "mid"), "mid")
        .append_layer(l, "again");
    let path = tmp.path().join("dup.tar");
    transport::write_image(&img, &docker_archive(&path, Some("dup:1")), None, &Silent).unwrap();
    let back = read(&docker_archive(&path, None)).unwrap();
    assert_eq!(diff_ids(&back), diff_ids(&img));
    assert_eq!(back.layers().len(), 3);
    for l in back.layers() {
        layer_files(l);
    }
}

#[test]
fn sha512_addressed_manifests_are_verified_too() {
    use dockyard_image::digest::Algorithm;
    use dockyard_image::Digest;
    let tmp = tempfile::tempdir().unwrap();
    let img = test_image(tmp.path(), "s");
    let dir = tmp.path().join("layout");
    layout::write_layout_dir(&dir, &img.clone().into(), Some("s"), &Silent).unwrap();
    let manifest = img.manifest_raw().to_vec();
    let d512 = Digest::compute(Algorithm::Sha512, &manifest);
    fs::create_dir_all(dir.join("blobs/sha512")).unwrap();
    let point_at = |digest: &Digest| {
        let index = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": img.manifest_media_type(),
            "digest": digest.to_string(),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "s"},
        }]});
        fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    };
    // The right bytes under their sha512 name read fine.
    fs::write(dir.join("blobs/sha512").join(d512.hex()), &manifest).unwrap();
    point_at(&d512);
    let loc = Location::OciDir {
        path: dir.clone(),
        reference: Some("s".into()),
    };
    assert_eq!(read(&loc).unwrap().digest(), img.digest());
    // Other bytes (same size) under that name are refused, naming the digest.
    let mut other = manifest.clone();
    let last = other.len() - 2;
    other[last] = b' ';
    fs::write(dir.join("blobs/sha512").join(d512.hex()), &other).unwrap();
    let err = read(&loc).unwrap_err().to_string();
    assert!(err.contains(&d512.to_string()), "{err}");
}
