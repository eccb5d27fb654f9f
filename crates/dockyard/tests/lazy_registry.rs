//! Registry sources are opened lazily: `mutate docker://A docker://B` and
//! `copy docker://A docker://B` move only what B lacks. Counted by a
//! recording proxy in front of the real registry.

use std::path::Path;

use dockyard::{ConfigEdit, Dockyard, Mutation, OpenOptions, Options, Platform, WriteOptions};
use dockyard_testsupport::registry::{
    test_image_for, test_options, Fault, FaultProxy, Mode, RegistryGuard,
};

fn facade(root: &Path) -> Dockyard {
    Dockyard::new(Options {
        store_root: Some(root.to_path_buf()),
        registry: test_options(),
        ..Options::default()
    })
}

fn layer_blobs_in_store(root: &Path, digests: &[dockyard::Digest]) -> usize {
    digests
        .iter()
        .filter(|d| root.join("blobs/sha256").join(d.hex()).exists())
        .count()
}

#[test]
fn mutate_on_one_registry_mounts_base_layers_and_uploads_only_the_new_one() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = test_image_for(21, 3, 300_000, &Platform::host());
    let pushed = facade(&tmp.path().join("pusher"))
        .write(
            &base.clone().into(),
            &format!("docker://{}/lazy/base:1", registry.host()),
            &WriteOptions::default(),
        )
        .unwrap();
    let dockyard::Manifest::Image(pushed_image) = pushed.manifest else {
        panic!("an image was pushed")
    };
    let base_layers: Vec<_> = pushed_image
        .layers()
        .iter()
        .map(|l| l.digest().clone())
        .collect();
    let base_bytes: u64 = pushed_image.layers().iter().map(|l| l.size()).sum();

    let proxy = FaultProxy::start(registry.port(), Fault::None);
    let app_dir = tmp.path().join("app");
    std::fs::create_dir(&app_dir).unwrap();
    std::fs::write(app_dir.join("hello.txt"), "hello from the new layer\n").unwrap();
    // A fresh store: nothing known about where blobs live but the source.
    let store = tmp.path().join("store");
    let dy = facade(&store);
    let edited = dy
        .mutate(
            &format!("docker://{}/lazy/base:1", proxy.host()),
            &Mutation {
                add: vec![(app_dir.clone(), "/app".into())],
                config: vec![ConfigEdit::Env("K".into(), "V".into())],
                ..Mutation::default()
            },
        )
        .unwrap();
    let written = dy
        .write(
            &edited.into(),
            &format!("docker://{}/lazy/app:1", proxy.host()),
            &WriteOptions::default(),
        )
        .unwrap();
    let t = written.transfer.clone().unwrap();
    assert_eq!(t.blobs_mounted, 3, "{t:?}");
    assert_eq!(t.blobs_uploaded, 2, "new layer and config: {t:?}");

    let requests = proxy.requests();
    let fetched: u64 = requests
        .iter()
        .filter(|r| r.is_blob_get())
        .map(|r| r.response_bytes)
        .sum();
    let uploaded: u64 = requests
        .iter()
        .filter(|r| r.is_upload())
        .map(|r| r.request_bytes)
        .sum();
    // Only the config was read; only the new layer and config were sent.
    assert!(fetched < 10_000, "fetched {fetched} bytes of blobs");
    assert!(uploaded < 10_000, "uploaded {uploaded} bytes");
    assert!(base_bytes > 500_000);
    assert_eq!(requests.iter().filter(|r| r.is_mount()).count(), 3);
    assert_eq!(
        layer_blobs_in_store(&store, &base_layers),
        0,
        "nothing stored"
    );

    // The result is a whole image: its rootfs has the base and the new file.
    let rootfs = tmp.path().join("rootfs");
    let (image, n) = dy
        .export(
            &format!("docker://{}/lazy/app:1", registry.host()),
            &rootfs,
            None,
        )
        .unwrap();
    assert_eq!(n, 4);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app/hello.txt")).unwrap(),
        "hello from the new layer\n"
    );
    assert!(rootfs.join("data/layer2.bin").exists());
    assert!(image
        .config_json()
        .pointer("/config/Env")
        .and_then(|e| e.as_array())
        .unwrap()
        .iter()
        .any(|e| e == "K=V"));
}

#[test]
fn pull_of_a_single_image_for_another_platform_downloads_nothing() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let other = dockyard_testsupport::registry::other_platform();
    let image = test_image_for(23, 2, 200_000, &other);
    let src = format!("docker://{}/lazy/other:1", registry.host());
    facade(&tmp.path().join("pusher"))
        .write(&image.into(), &src, &WriteOptions::default())
        .unwrap();
    let store = tmp.path().join("store");
    let dy = facade(&store);
    let err = dy
        .pull(
            &src,
            &OpenOptions {
                platform: Some(Platform::host()),
                all_platforms: false,
            },
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains(&other.to_string()), "{err}");
    let layers = std::fs::read_dir(store.join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(layers, 0, "nothing was downloaded");
    assert!(
        dy.store().unwrap().list().unwrap().is_empty(),
        "no name changed"
    );
}

#[test]
fn copy_between_registries_streams_each_layer_once_and_stores_nothing() {
    let (Some(one), Some(two)) = (
        RegistryGuard::start(Mode::Open),
        RegistryGuard::start(Mode::Open),
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = test_image_for(22, 3, 300_000, &Platform::host());
    let pushed = facade(&tmp.path().join("pusher"))
        .write(
            &base.into(),
            &format!("docker://{}/src/img:1", one.host()),
            &WriteOptions::default(),
        )
        .unwrap();
    let dockyard::Manifest::Image(pushed_image) = &pushed.manifest else {
        panic!("an image")
    };
    let layers: Vec<_> = pushed_image
        .layers()
        .iter()
        .map(|l| l.digest().clone())
        .collect();
    let layer_bytes: u64 = pushed_image.layers().iter().map(|l| l.size()).sum();

    let from = FaultProxy::start(one.port(), Fault::None);
    let to = FaultProxy::start(two.port(), Fault::None);
    let store = tmp.path().join("store");
    let dy = facade(&store);
    let src = format!("docker://{}/src/img:1", from.host());
    let dst = format!("docker://{}/dst/img:1", to.host());
    let written = dy
        .copy(
            &src,
            &dst,
            &OpenOptions::default(),
            &WriteOptions::default(),
        )
        .unwrap();
    assert_eq!(
        written.digest, pushed.digest,
        "the manifest arrives unchanged"
    );
    let fetched: u64 = from
        .requests()
        .iter()
        .filter(|r| r.is_blob_get())
        .map(|r| r.response_bytes)
        .sum();
    let layer_gets = from
        .requests()
        .iter()
        .filter(|r| r.is_blob_get() && layers.iter().any(|d| r.path.contains(&d.to_string())))
        .count();
    assert_eq!(layer_gets, 3, "each layer fetched once");
    assert!(
        fetched >= layer_bytes && fetched < layer_bytes + 10_000,
        "{fetched} vs {layer_bytes}"
    );
    let uploaded: u64 = to
        .requests()
        .iter()
        .filter(|r| r.is_upload())
        .map(|r| r.request_bytes)
        .sum();
    assert!(
        uploaded >= layer_bytes && uploaded < layer_bytes + 10_000,
        "{uploaded}"
    );
    assert_eq!(
        layer_blobs_in_store(&store, &layers),
        0,
        "streamed, never stored"
    );

    // Again: the destination has it all; nothing moves.
    from.clear_requests();
    to.clear_requests();
    let again = dy
        .copy(
            &src,
            &dst,
            &OpenOptions::default(),
            &WriteOptions::default(),
        )
        .unwrap();
    assert_eq!(again.transfer.unwrap().bytes_uploaded, 0);
    assert!(!from
        .requests()
        .iter()
        .any(|r| r.is_blob_get() && layers.iter().any(|d| r.path.contains(&d.to_string()))));
    assert!(!to.requests().iter().any(|r| r.is_upload()));

    // Layers larger than the upload chunk go across in ranged pieces.
    let chunked = Dockyard::new(Options {
        store_root: Some(tmp.path().join("chunked")),
        registry: dockyard::ClientOptions {
            chunk_size: 100_000,
            ..test_options()
        },
        ..Options::default()
    });
    let dst2 = format!("docker://{}/dst/chunked:1", two.host());
    from.clear_requests();
    let written = chunked
        .copy(
            &src,
            &dst2,
            &OpenOptions::default(),
            &WriteOptions::default(),
        )
        .unwrap();
    assert_eq!(written.digest, pushed.digest);
    assert!(
        from.requests()
            .iter()
            .filter(|r| r.is_blob_get())
            .any(|r| r.header("range").is_some()),
        "chunks were fetched by range"
    );
    let fetched: u64 = from
        .requests()
        .iter()
        .filter(|r| r.is_blob_get())
        .map(|r| r.response_bytes)
        .sum();
    assert!(
        fetched < layer_bytes + 10_000,
        "no chunk fetched more than once: {fetched}"
    );
    let check = facade(&tmp.path().join("check-chunked"));
    let image = check
        .open_image(&dst2.replace(&to.host(), &two.host()), None)
        .unwrap();
    check
        .write(
            &image.into(),
            &format!("oci:{}:x", tmp.path().join("layout-chunked").display()),
            &WriteOptions::default(),
        )
        .unwrap();

    // And the copy is real: a fresh store pulls it whole and verified.
    let check = facade(&tmp.path().join("check"));
    let image = check
        .open_image(&format!("docker://{}/dst/img:1", two.host()), None)
        .unwrap();
    check
        .write(
            &image.into(),
            &format!("oci:{}:x", tmp.path().join("layout").display()),
            &WriteOptions::default(),
        )
        .unwrap();
}

/// `blobs_present` names exactly the blobs a repository holds, and a push
/// given them as `known_present` asks nothing more about them.
#[test]
fn blobs_present_names_what_a_repository_holds_and_a_push_does_not_ask_again() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dy = facade(&tmp.path().join("store"));
    let image = test_image_for(22, 3, 50_000, &Platform::host());
    let dest = format!("docker://{}/known/app:1", registry.host());
    let pushed = dy
        .write(&image.clone().into(), &dest, &WriteOptions::default())
        .unwrap();
    let dockyard::Manifest::Image(pushed) = pushed.manifest else {
        panic!("an image was pushed")
    };
    let layers: Vec<dockyard::Digest> =
        pushed.layers().iter().map(|l| l.digest().clone()).collect();
    let absent = dockyard::Digest::sha256_of(b"no such blob");
    let mut asked = layers.clone();
    asked.push(absent.clone());
    let present = dy.blobs_present(&dest, asked.clone()).unwrap();
    assert_eq!(present.len(), layers.len());
    assert!(layers.iter().all(|d| present.contains(d)));
    assert!(!present.contains(&absent));
    // Another repository of the same registry holds none of them, and a
    // destination that is no registry holds nothing to ask about.
    let other = format!("docker://{}/known/other:1", registry.host());
    assert!(dy.blobs_present(&other, asked.clone()).unwrap().is_empty());
    let archive = format!("docker-archive:{}", tmp.path().join("x.tar").display());
    assert!(dy.blobs_present(&archive, asked).unwrap().is_empty());

    // A re-push told what is there sends no HEAD for those layers.
    let proxy = FaultProxy::start(registry.port(), Fault::None);
    let through = format!("docker://{}/known/app:2", proxy.host());
    let written = dy
        .write(
            &pushed.clone().into(),
            &through,
            &WriteOptions {
                known_present: present,
                ..WriteOptions::default()
            },
        )
        .unwrap();
    assert_eq!(written.transfer.unwrap().blobs_existing, layers.len() + 1);
    let heads: Vec<String> = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "HEAD")
        .map(|r| r.path.clone())
        .collect();
    assert!(
        layers
            .iter()
            .all(|d| !heads.iter().any(|h| h.contains(&d.to_string()))),
        "known layers were asked again: {heads:#?}"
    );
    assert_eq!(heads.len(), 1, "only the config is asked about: {heads:#?}");
}
