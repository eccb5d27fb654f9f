//! The local store: a valid OCI layout, atomic verified blobs (also with
//! two processes writing the same blob), names, prune, side tables.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dockyard_image::progress::Silent;
use dockyard_image::tar::{LayerBuilder, LayerOptions};
use dockyard_image::{ConfigEdit, Digest, Image, Layer, Platform, Store};
use dockyard_testsupport::{require_tool, run_ok};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn layer(dir: &Path, name: &str, contents: &str) -> Layer {
    let mut b = LayerBuilder::new(LayerOptions {
        mtime: 0,
        keep_owner: false,
    });
    b.add_contents(name, contents.as_bytes().to_vec(), 0o644)
        .unwrap();
    b.build(dir).unwrap()
}

fn image(dir: &Path, layers: &[(&str, &str)], label: &str) -> Image {
    let mut img = Image::scratch(&Platform::host()).with_created(0);
    for (name, contents) in layers {
        img = img.append_layer(layer(dir, name, contents), &format!("add {name}"));
    }
    img.with_config_edits(&[
        ConfigEdit::Label("which".into(), label.into()),
        ConfigEdit::Cmd(vec!["/bin/sh".into()]),
    ])
}

fn blob_names(store: &Store) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn image_blobs(img: &Image) -> Vec<String> {
    let mut v = vec![
        img.digest().hex().to_string(),
        img.config_digest().hex().to_string(),
    ];
    v.extend(img.layers().iter().map(|l| l.digest().hex().to_string()));
    v
}

#[test]
fn a_store_is_an_oci_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = Store::open(&root).unwrap();
    let layout: Value =
        serde_json::from_slice(&fs::read(root.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
    let index: Value = serde_json::from_slice(&fs::read(root.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["manifests"], json!([]));
    assert!(root.join("blobs/sha256").is_dir());
    assert!(store.list().unwrap().is_empty());
    // Opening again keeps what is there.
    let d = store.put_bytes(b"kept").unwrap();
    let again = Store::open(&root).unwrap();
    assert!(again.has_blob(&d));
    assert_eq!(fs::read(again.blob_path(&d)).unwrap(), b"kept");
    assert_eq!(d.to_string(), sha256(b"kept"));
}

#[test]
fn umoci_unpacks_an_image_put_in_the_store() {
    if !require_tool("umoci") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = Store::open(&root).unwrap();
    let img = image(
        tmp.path(),
        &[
            ("/etc/motd", "hello from dockyard\n"),
            ("/bin/tool", "#!/bin/sh\n"),
        ],
        "umoci",
    );
    let name = "docker.io/library/t:1";
    store.put_image(&img, Some(name), &Silent).unwrap();
    let bundle = tmp.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .arg("unpack")
            .arg("--rootless")
            .arg("--image")
            .arg(format!("{}:{name}", root.display()))
            .arg(&bundle),
    );
    assert_eq!(
        fs::read_to_string(bundle.join("rootfs/etc/motd")).unwrap(),
        "hello from dockyard\n"
    );
    assert_eq!(
        fs::read_to_string(bundle.join("rootfs/bin/tool")).unwrap(),
        "#!/bin/sh\n"
    );
    let config: Value =
        serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["args"], json!(["/bin/sh"]));
    // And the store reads it back under any spelling of the name.
    for spelling in [name, "t:1", "library/t:1"] {
        let back = store.get_image(spelling).unwrap();
        assert_eq!(back.digest(), img.digest(), "{spelling}");
    }
}

#[test]
fn put_blob_with_wrong_content_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let claimed: Digest = sha256(b"the real content").parse().unwrap();
    let actual = sha256(b"something else!!");
    let err = store
        .put_blob(&claimed, None, &b"something else!!"[..])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&claimed.to_string()) && err.contains(&actual),
        "both digests named: {err}"
    );
    assert!(!store.has_blob(&claimed));
    assert!(
        blob_names(&store).is_empty(),
        "no blob, no temp file: {:?}",
        blob_names(&store)
    );
    // A size that does not match is refused too.
    let right: Digest = sha256(b"abc").parse().unwrap();
    let err = store
        .put_blob(&right, Some(4), &b"abc"[..])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expected 4 bytes") && err.contains("got 3"),
        "{err}"
    );
    assert!(blob_names(&store).is_empty(), "{:?}", blob_names(&store));
    // A reader that fails half-way leaves nothing either.
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("network gone"));
            }
            self.0 -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }
    let err = store
        .put_blob(&right, None, Failing(2))
        .unwrap_err()
        .to_string();
    assert!(err.contains("network gone"), "{err}");
    assert!(blob_names(&store).is_empty(), "{:?}", blob_names(&store));
    // The right content goes in.
    store.put_blob(&right, Some(3), &b"abc"[..]).unwrap();
    assert_eq!(blob_names(&store), [right.hex().to_string()]);
}

const WRITER_ENV: &str = "DOCKYARD_TEST_STORE_WRITER";
const BIG: usize = 64 << 20;

/// Deterministic, incompressible-looking content (xorshift).
fn big_content() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(BIG);
    while v.len() < BIG {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(BIG);
    v
}

/// Yields `data`, pausing half-way: it creates `mark`, then waits for `go`
/// (so both writer processes are inside `put_blob` at the same time, and
/// the parent can look at the store meanwhile).
struct Rendezvous {
    data: Vec<u8>,
    pos: usize,
    mark: PathBuf,
    go: PathBuf,
    waited: bool,
}

impl Read for Rendezvous {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.waited && self.pos >= self.data.len() / 2 {
            fs::write(&self.mark, b"").unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !self.go.exists() {
                assert!(Instant::now() < deadline, "the parent never said go");
                std::thread::sleep(Duration::from_millis(5));
            }
            self.waited = true;
        }
        let end = if self.waited {
            self.data.len()
        } else {
            self.data.len() / 2
        };
        let n = buf.len().min(end - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Not a test of its own: the body of a writer process spawned by
/// `two_processes_write_the_same_blob`. Does nothing without its env var.
#[test]
fn concurrent_writer_helper() {
    let Ok(spec) = std::env::var(WRITER_ENV) else {
        return;
    };
    let v: Value = serde_json::from_str(&spec).unwrap();
    let root = PathBuf::from(v["root"].as_str().unwrap());
    let digest: Digest = v["digest"].as_str().unwrap().parse().unwrap();
    let me = v["me"].as_str().unwrap();
    let sync = PathBuf::from(v["sync"].as_str().unwrap());
    let store = Store::open(&root).unwrap();
    let reader = Rendezvous {
        data: big_content(),
        pos: 0,
        mark: sync.join(me),
        go: sync.join("go"),
        waited: false,
    };
    let path = store
        .put_blob(&digest, Some(BIG as u64), reader)
        .expect("put_blob in a writer process");
    println!("WRITER {me} STORED {}", path.display());
}

#[test]
fn two_processes_write_the_same_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let sync = tmp.path().join("sync");
    fs::create_dir(&sync).unwrap();
    let content = big_content();
    let digest = sha256(&content);
    let exe = std::env::current_exe().unwrap();
    let spawn = |me: &str| {
        let spec = json!({
            "root": root.display().to_string(),
            "digest": digest,
            "me": me,
            "sync": sync.display().to_string(),
        });
        Command::new(&exe)
            .args([
                "--exact",
                "concurrent_writer_helper",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER_ENV, spec.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn("a");
    // Wait until the first writer is half-way through the blob.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !sync.join("a").exists() {
        assert!(Instant::now() < deadline, "the writer never got half-way");
        std::thread::sleep(Duration::from_millis(5));
    }
    let b = spawn("b");
    // The second writer waits for the first's lock instead of writing a
    // second copy beside it.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!sync.join("b").exists(), "the second writer did not wait");
    let d: Digest = digest.parse().unwrap();
    let blobs = root.join("blobs/sha256");
    assert!(
        !blobs.join(d.hex()).exists(),
        "a half-written blob is visible under its digest"
    );
    let temps = fs::read_dir(&blobs)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(temps, 1, "one writer at a time writes a blob");
    fs::write(sync.join("go"), b"").unwrap();
    for (me, child) in [("a", a), ("b", b)] {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "writer {me} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("WRITER {me} STORED")),
            "writer {me} really ran: {stdout}"
        );
        assert!(stdout.contains("1 passed"), "{stdout}");
    }
    let store = Store::open(&root).unwrap();
    let stored = fs::read(store.blob_path(&d)).unwrap();
    assert_eq!(stored.len(), BIG);
    assert_eq!(sha256(&stored), digest, "the blob is intact");
    assert_eq!(
        blob_names(&store),
        [d.hex().to_string()],
        "no temp files left"
    );
}

#[test]
fn list_remove_name_and_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    // a and b share their base layer.
    let a = image(tmp.path(), &[("/base", "shared"), ("/a", "only a")], "a");
    let b = image(tmp.path(), &[("/base", "shared"), ("/b", "only b")], "b");
    assert_eq!(a.layers()[0].digest(), b.layers()[0].digest());
    store
        .put_image(&a, Some("docker.io/library/a:1"), &Silent)
        .unwrap();
    store
        .put_image(&b, Some("docker.io/library/b:2"), &Silent)
        .unwrap();
    let stray = store.put_bytes(b"nobody refers to me").unwrap();

    let mut listed: Vec<(String, String)> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.digest.to_string()))
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ("docker.io/library/a:1".to_string(), a.digest().to_string()),
            ("docker.io/library/b:2".to_string(), b.digest().to_string()),
        ]
    );
    let entry = store.list().unwrap().remove(0);
    assert_eq!(entry.size, a.manifest_raw().len() as u64);

    // Putting the same image again under the same name does not duplicate it.
    store
        .put_image(&a, Some("docker.io/library/a:1"), &Silent)
        .unwrap();
    assert_eq!(store.list().unwrap().len(), 2);

    // Nothing is pruned while both are named (only the stray blob).
    let (removed, freed) = store.prune().unwrap();
    assert_eq!(removed, 1, "only the stray blob");
    assert_eq!(freed, b"nobody refers to me".len() as u64);
    assert!(!store.has_blob(&stray));

    assert!(store.remove_name("a:1").unwrap(), "a familiar name matches");
    assert!(!store.remove_name("a:1").unwrap(), "already gone");
    assert_eq!(store.list().unwrap().len(), 1);
    assert!(store.get_image("a:1").is_err());

    let before = blob_names(&store);
    let (removed, _) = store.prune().unwrap();
    let a_only: Vec<String> = image_blobs(&a)
        .into_iter()
        .filter(|h| !image_blobs(&b).contains(h))
        .collect();
    assert_eq!(a_only.len(), 3, "a's manifest, config and top layer");
    assert_eq!(removed, a_only.len());
    let after = blob_names(&store);
    for h in &a_only {
        assert!(before.contains(h) && !after.contains(h), "{h} pruned");
    }
    let mut expected = image_blobs(&b);
    expected.sort();
    assert_eq!(after, expected, "exactly b's blobs remain");
    // b still reads, every layer verified.
    let back = store.get_image("b:2").unwrap();
    for l in back.layers() {
        l.open().unwrap().read_to_end(&mut Vec::new()).unwrap();
    }
    assert_eq!(store.prune().unwrap().0, 0, "nothing more to prune");
}

#[test]
fn prune_keeps_compressed_forms_of_used_layers_only() {
    use dockyard_image::media::Compression;
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let mut builder = dockyard_image::tar::LayerBuilder::new(Default::default());
    builder
        .add_contents("/f", b"layer".to_vec(), 0o644)
        .unwrap();
    let layer = builder.build(tmp.path()).unwrap();
    let diff_id = layer.diff_id().clone();
    let image =
        dockyard_image::Image::scratch(&dockyard_image::Platform::host()).append_layer(layer, "t");
    store
        .put_image(
            &image,
            Some("docker.io/library/p:1"),
            &dockyard_image::progress::Silent,
        )
        .unwrap();
    let compressed = store.put_bytes(b"pretend gzip of a layer").unwrap();
    let desc = json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": compressed.to_string(),
        "size": 23,
    });
    store
        .record_compressed(&diff_id, Compression::Gzip, &desc)
        .unwrap();
    store.prune().unwrap();
    assert!(
        store.has_blob(&compressed),
        "the compressed form of a used layer was pruned"
    );
    assert_eq!(
        store
            .lookup_compressed(&diff_id, Compression::Gzip)
            .unwrap()
            .map(|(d, _)| d),
        Some(compressed.clone())
    );
    // Once the image is gone, its layer, the compressed form and the record go too.
    assert!(store.remove_name("p:1").unwrap());
    store.prune().unwrap();
    assert!(!store.has_blob(&compressed));
    assert!(!store.has_blob(&diff_id));
    assert_eq!(
        store
            .lookup_compressed(&diff_id, Compression::Gzip)
            .unwrap(),
        None
    );
}

#[test]
fn side_tables_round_trip_and_refuse_bad_keys() {
    use dockyard_image::media::Compression;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = Store::open(&root).unwrap();
    let diff_id: Digest = sha256(b"layer").parse().unwrap();
    let gz = Compression::Gzip;
    assert_eq!(store.lookup_compressed(&diff_id, gz).unwrap(), None);
    let gz_blob = store.put_bytes(b"gz").unwrap();
    let zst_blob = store.put_bytes(b"zst").unwrap();
    let desc = json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": sha256(b"gz"),
        "size": 2,
        "annotations": {"k": "v"}
    });
    store.record_compressed(&diff_id, gz, &desc).unwrap();
    assert_eq!(
        store.lookup_compressed(&diff_id, gz).unwrap(),
        Some((gz_blob.clone(), desc.clone()))
    );
    // Tables are per compression.
    assert_eq!(
        store
            .lookup_compressed(&diff_id, Compression::Zstd)
            .unwrap(),
        None
    );
    // Survives reopening; a new record replaces the old.
    let store = Store::open(&root).unwrap();
    assert_eq!(
        store.lookup_compressed(&diff_id, gz).unwrap(),
        Some((gz_blob, desc))
    );
    let newer = json!({"digest": sha256(b"zst"), "size": 3});
    store.record_compressed(&diff_id, gz, &newer).unwrap();
    assert_eq!(
        store.lookup_compressed(&diff_id, gz).unwrap(),
        Some((zst_blob, newer))
    );
    // A record of an older compressor (no format version, or another one)
    // is not reused: its digests are not what this version pushes.
    let old_format = json!({"digest": sha256(b"zst"), "size": 3});
    store
        .side_table("compressed-gzip")
        .put(diff_id.hex(), &old_format)
        .unwrap();
    assert_eq!(store.lookup_compressed(&diff_id, gz).unwrap(), None);
    store
        .side_table("compressed-gzip")
        .put(
            diff_id.hex(),
            &json!({"digest": sha256(b"zst"), "format": 1}),
        )
        .unwrap();
    assert_eq!(store.lookup_compressed(&diff_id, gz).unwrap(), None);
    // A record whose blob is gone is not returned.
    let missing = json!({"digest": sha256(b"never stored"), "size": 12});
    store.record_compressed(&diff_id, gz, &missing).unwrap();
    assert_eq!(store.lookup_compressed(&diff_id, gz).unwrap(), None);

    let table = store.side_table("build-cache");
    table.put("key-1_a.b", &json!({"x": 1})).unwrap();
    assert_eq!(table.get("key-1_a.b").unwrap(), Some(json!({"x": 1})));
    assert_eq!(table.get("other").unwrap(), None);
    for bad in ["", "../escape", "a/b", ".hidden", "..", "sp ace", "nul\0"] {
        let err = table.put(bad, &json!(1)).unwrap_err().to_string();
        assert!(err.contains("key"), "{bad:?}: {err}");
        assert!(table.get(bad).is_err(), "{bad:?} refused on read too");
    }
    assert!(!root.join("escape").exists());
    assert!(!root.join("dockyard/escape").exists());
    // Keys are files of their own; no temp files remain.
    let files: Vec<String> = fs::read_dir(root.join("dockyard/build-cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["key-1_a.b"]);
}

#[test]
fn layouts_written_from_the_store_link_its_verified_blobs() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = Store::open(&root).unwrap();
    let mut builder = dockyard_image::tar::LayerBuilder::new(Default::default());
    builder
        .add_contents("/big", vec![7u8; 1 << 20], 0o644)
        .unwrap();
    let layer = builder.build(tmp.path()).unwrap();
    let image =
        dockyard_image::Image::scratch(&dockyard_image::Platform::host()).append_layer(layer, "t");
    store
        .put_image(
            &image,
            Some("docker.io/library/l:1"),
            &dockyard_image::progress::Silent,
        )
        .unwrap();
    let from_store = store.get_image("l:1").unwrap();
    let out = tmp.path().join("layout");
    dockyard_image::transport::layout::write_layout_dir(
        &out,
        &from_store.clone().into(),
        Some("x"),
        &dockyard_image::progress::Silent,
    )
    .unwrap();
    let digest = from_store.layers()[0].digest();
    let in_store = fs::metadata(store.blob_path(digest)).unwrap();
    let in_layout = fs::metadata(out.join("blobs/sha256").join(digest.hex())).unwrap();
    assert_eq!(
        in_store.ino(),
        in_layout.ino(),
        "the layer blob is a hard link, not a copy"
    );
    // A layout source (not the store) is copied and verified, never linked.
    let again = dockyard_image::transport::read_image(
        &dockyard_image::Location::OciDir {
            path: out.clone(),
            reference: Some("x".into()),
        },
        &Default::default(),
    )
    .unwrap();
    let out2 = tmp.path().join("layout2");
    dockyard_image::transport::layout::write_layout_dir(
        &out2,
        &again.clone().into(),
        Some("y"),
        &dockyard_image::progress::Silent,
    )
    .unwrap();
    let copied = fs::metadata(out2.join("blobs/sha256").join(digest.hex())).unwrap();
    assert_ne!(copied.ino(), in_layout.ino());
}

#[test]
fn prune_waits_for_writers_that_have_not_named_their_image_yet() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = Store::open(&root).unwrap();
    let hold = store.writer_lock().unwrap();
    // A blob a writer has stored but not yet named.
    let blob = store.put_bytes(b"layer being pulled").unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pruner = {
        let root = root.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let r = Store::open(&root).unwrap().prune().unwrap();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !done.load(std::sync::atomic::Ordering::SeqCst),
        "prune ran while a writer held the store"
    );
    assert!(store.has_blob(&blob));
    drop(hold);
    let (removed, _) = pruner.join().unwrap();
    assert_eq!(
        removed, 1,
        "after the writer let go, the unnamed blob is garbage"
    );
}

/// One blob writer: a layer is built straight into the store (read-only,
/// so a layout it is linked into cannot corrupt the cache), an interrupted
/// known-digest write resumes, and prune takes side-table records about a
/// blob away with the blob.
#[test]
fn blob_writer_builds_in_place_resumes_and_prune_drops_records() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let mut b = LayerBuilder::new(LayerOptions::default());
    b.add_contents("/etc/motd", "built in place\n", 0o644)
        .unwrap();
    let layer = b.build_in_store(&store).unwrap();
    let path = store.blob_path(layer.digest());
    assert!(store.has_blob(layer.digest()));
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o444
    );
    let mut again = Vec::new();
    b.write_to(&mut again).unwrap();
    assert_eq!(Digest::sha256_of(&again), *layer.digest(), "same bytes");
    assert_eq!(blob_names(&store), [layer.digest().hex().to_string()]);

    // Half a blob, then the writer is dropped (a killed transfer): the
    // next writer resumes from there.
    let data = vec![7u8; 100_000];
    let d = Digest::sha256_of(&data);
    let mut w = store.try_blob_writer(&d, Some(100_000)).unwrap().unwrap();
    w.write_all(&data[..40_000]).unwrap();
    drop(w);
    assert!(!store.has_blob(&d), "half a blob is not visible");
    let mut w = store.try_blob_writer(&d, Some(100_000)).unwrap().unwrap();
    assert_eq!(w.resumed_from(), 40_000);
    // A second writer of the same blob waits.
    assert!(store.try_blob_writer(&d, Some(100_000)).unwrap().is_none());
    w.write_all(&data[40_000..]).unwrap();
    w.commit().unwrap();
    assert_eq!(fs::read(store.blob_path(&d)).unwrap(), data);

    // A wrong blob names both digests and leaves nothing.
    let mut w = store.try_blob_writer(&d, None).unwrap().unwrap();
    w.restart().unwrap();
    w.write_all(b"not it").unwrap();
    let err = w.commit().unwrap_err().to_string();
    assert!(err.contains(&d.to_string()), "{err}");

    // Records about unnamed blobs go at prune, with the blobs.
    let table = store.side_table("blob-sources");
    table.put(d.hex(), &json!(["example.org/x"])).unwrap();
    table
        .put(layer.digest().hex(), &json!(["example.org/y"]))
        .unwrap();
    store.prune().unwrap();
    assert!(blob_names(&store).is_empty(), "{:?}", blob_names(&store));
    assert_eq!(table.get(d.hex()).unwrap(), None);
    assert_eq!(table.get(layer.digest().hex()).unwrap(), None);
}
