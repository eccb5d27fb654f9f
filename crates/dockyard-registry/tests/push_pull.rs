//! Push and pull against a real registry (Debian's docker-registry, open
//! mode): round trips keep digests and bytes, unchanged pushes upload
//! nothing, cross-repository pushes mount, chunked uploads, tag pagination,
//! Docker schema 2 manifests, multi-platform indexes, digest references,
//! and skopeo as an independent peer on both sides.

use std::process::Command;
use std::sync::Arc;

use dockyard_image::media;
use dockyard_image::progress::Silent;
use dockyard_image::transport::{write_image, Location};
use dockyard_image::{Digest, Image, Platform, Reference};
use dockyard_registry::{
    ClientOptions, PullOptions, Pulled, PushOptions, Pushed, Registry, RegistryError,
};
use dockyard_testsupport::registry::{
    connect, other_platform, reference, runtime, store_blob_verifies, temp_store, test_image,
    test_options, Fault, FaultProxy, Mode, RegistryGuard,
};
use dockyard_testsupport::{require_tool, run_ok};
use serde_json::json;
use tokio::runtime::Runtime;

fn push(
    rt: &Runtime,
    reg: &Registry,
    image: &Image,
    r: &Reference,
    store: &dockyard_image::Store,
) -> Pushed {
    rt.block_on(reg.push(image, r, store, &PushOptions::default(), Arc::new(Silent)))
        .unwrap_or_else(|e| panic!("push {r}: {e}"))
}

fn pull(
    rt: &Runtime,
    reg: &Registry,
    r: &Reference,
    store: &dockyard_image::Store,
    opts: &PullOptions,
) -> Result<Pulled, RegistryError> {
    rt.block_on(reg.pull(r, store, opts, &Silent))
}

fn layer_digests(image: &Image) -> Vec<Digest> {
    image.layers().iter().map(|l| l.digest().clone()).collect()
}

fn skopeo() -> Command {
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy");
    c
}

#[test]
fn push_then_pull_round_trips_and_second_push_uploads_nothing() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let rt = runtime();
    let client = connect(&rt, &registry.host(), test_options());
    let (_d1, store) = temp_store();
    // Layers of several 1 MiB gzip members each.
    let image = test_image(1, 3, 2500 << 10);
    assert!(image
        .layers()
        .iter()
        .all(|l| l.media_type() == media::OCI_LAYER));
    let r = reference(&registry.host(), "roundtrip/app:1");

    let pushed = push(&rt, &client, &image, &r, &store);
    assert_eq!(pushed.blobs_uploaded, 4, "3 layers + config");
    assert!(pushed.bytes_uploaded > 3 * (250 << 10), "{pushed:?}");
    // Uncompressed layers were gzip-compressed for the registry.
    assert!(pushed
        .image
        .layers()
        .iter()
        .all(|l| l.media_type() == media::OCI_LAYER_GZIP));
    for (orig, sent) in image.layers().iter().zip(pushed.image.layers()) {
        assert_eq!(orig.diff_id(), sent.diff_id());
    }
    assert_eq!(pushed.digest, pushed.image.digest());

    // Pull into a fresh store.
    let (_d2, fresh) = temp_store();
    let pulled = pull(&rt, &client, &r, &fresh, &PullOptions::default()).expect("pull");
    assert_eq!(pulled.digest, pushed.digest);
    assert_eq!(pulled.image.as_ref().unwrap().digest(), pushed.digest);
    assert_eq!(
        pulled.image.as_ref().unwrap().manifest_raw(),
        pushed.image.manifest_raw()
    );
    assert_eq!(
        pulled.image.as_ref().unwrap().config_raw(),
        image.config_raw()
    );
    assert_eq!(
        layer_digests(pulled.image.as_ref().unwrap()),
        layer_digests(&pushed.image)
    );
    let diff_ids: Vec<_> = pulled
        .image
        .as_ref()
        .unwrap()
        .layers()
        .iter()
        .map(|l| l.diff_id().clone())
        .collect();
    let orig_diff_ids: Vec<_> = image.layers().iter().map(|l| l.diff_id().clone()).collect();
    assert_eq!(diff_ids, orig_diff_ids);
    assert_eq!(pulled.blobs_fetched, 4);
    for d in layer_digests(pulled.image.as_ref().unwrap()) {
        assert!(store_blob_verifies(&fresh, &d), "{d} does not verify");
    }
    // Every pushed gzip blob decompresses (with a reader of its own, all
    // members) to the layer's diff_id.
    for (blob, diff_id) in layer_digests(pulled.image.as_ref().unwrap())
        .iter()
        .zip(&orig_diff_ids)
    {
        let gz = std::fs::read(fresh.blob_path(blob)).unwrap();
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&gz[..]), &mut tar)
            .unwrap();
        assert_eq!(Digest::sha256_of(&tar), *diff_id, "{blob}");
    }

    // The same push again: the registry has everything.
    let again = push(&rt, &client, &image, &r, &store);
    assert_eq!(again.digest, pushed.digest);
    assert_eq!(again.bytes_uploaded, 0, "{again:?}");
    assert_eq!(again.blobs_uploaded, 0);
    assert_eq!(again.blobs_existing, 4);

    // Pulling what the store already holds fetches nothing.
    let repull = pull(&rt, &client, &r, &fresh, &PullOptions::default()).expect("pull again");
    assert_eq!(repull.blobs_fetched, 0);
    assert_eq!(repull.bytes_fetched, 0);
    assert_eq!(repull.digest, pushed.digest);

    // A by-digest reference pulls and verifies.
    let by_digest: Reference = format!("{}/roundtrip/app@{}", registry.host(), pushed.digest)
        .parse()
        .unwrap();
    let (_d3, third) = temp_store();
    let p = pull(&rt, &client, &by_digest, &third, &PullOptions::default()).expect("by digest");
    assert_eq!(p.digest, pushed.digest);
    assert_eq!(p.image.as_ref().unwrap().digest(), pushed.digest);
    // A digest the registry does not have is an error, not an empty image.
    let missing: Reference = format!(
        "{}/roundtrip/app@{}",
        registry.host(),
        Digest::sha256_of(b"no such manifest")
    )
    .parse()
    .unwrap();
    let err = pull(&rt, &client, &missing, &third, &PullOptions::default()).unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
}

#[test]
fn push_to_a_second_repository_mounts() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let rt = runtime();
    let client = connect(&rt, &registry.host(), test_options());
    let (_d, store) = temp_store();
    let image = test_image(2, 2, 200 << 10);
    let first = push(
        &rt,
        &client,
        &image,
        &reference(&registry.host(), "one/app:1"),
        &store,
    );
    assert_eq!(first.blobs_uploaded, 3);
    let second = push(
        &rt,
        &client,
        &image,
        &reference(&registry.host(), "two/app:1"),
        &store,
    );
    assert_eq!(second.digest, first.digest);
    assert!(second.blobs_mounted > 0, "{second:?}");
    assert_eq!(second.blobs_mounted, 3, "{second:?}");
    assert_eq!(second.bytes_uploaded, 0, "{second:?}");
    assert_eq!(second.blobs_uploaded, 0);
    // The mounted repository really serves the image.
    let (_d2, fresh) = temp_store();
    let pulled = pull(
        &rt,
        &client,
        &reference(&registry.host(), "two/app:1"),
        &fresh,
        &PullOptions::default(),
    )
    .expect("pull the mounted image");
    assert_eq!(pulled.digest, first.digest);
}

#[test]
fn chunked_upload_of_a_layer_larger_than_the_chunk_size() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    // Watch the requests through a faithful proxy.
    let proxy = FaultProxy::start(registry.port(), Fault::None);
    let rt = runtime();
    let opts = ClientOptions {
        chunk_size: 64 << 10,
        ..test_options()
    };
    let client = connect(&rt, &proxy.host(), opts.clone());
    let (_d, store) = temp_store();
    let image = test_image(3, 1, 400 << 10);
    let r = reference(&proxy.host(), "chunked/app:1");
    // A layer held uncompressed streams to the registry as it is
    // compressed, in requests of at most the chunk size (their length is
    // not known in advance, so they carry no Content-Range).
    let pushed = push(&rt, &client, &image, &r, &store);
    let layer = &pushed.image.layers()[0];
    assert!(
        layer.size() > 5 * (64 << 10),
        "layer of {} bytes",
        layer.size()
    );
    let patches: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|q| q.method == "PATCH")
        .collect();
    assert!(
        patches.len() >= layer.size().div_ceil(64 << 10) as usize,
        "PATCH requests: {patches:?}"
    );
    for p in &patches {
        assert!(p.request_bytes <= (64 << 10) + 1024, "{p:?}");
        assert!(p.header("content-range").is_none(), "{p:?}");
    }
    let (_d2, fresh) = temp_store();
    let pulled = pull(&rt, &client, &r, &fresh, &PullOptions::default()).expect("pull");
    assert_eq!(pulled.digest, pushed.digest);
    assert!(store_blob_verifies(&fresh, layer.digest()));

    // The same layer, now held compressed in the store, goes to another
    // registry in PATCH chunks of known length and range.
    let Some(other) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let proxy2 = FaultProxy::start(other.port(), Fault::None);
    let client2 = connect(&rt, &proxy2.host(), opts);
    let r2 = reference(&proxy2.host(), "chunked/app:1");
    let again = push(&rt, &client2, &pushed.image, &r2, &store);
    assert_eq!(again.digest, pushed.digest);
    let patches: Vec<_> = proxy2
        .requests()
        .into_iter()
        .filter(|q| q.method == "PATCH")
        .collect();
    let expected_chunks = layer.size().div_ceil(64 << 10) as usize;
    assert_eq!(
        patches.len(),
        expected_chunks,
        "PATCH requests: {patches:?}"
    );
    for p in &patches {
        let len: u64 = p.header("content-length").unwrap().parse().unwrap();
        assert!(len <= 64 << 10);
        assert!(p.header("content-range").is_some(), "{p:?}");
    }
    let (_d3, fresh) = temp_store();
    let pulled = pull(&rt, &client2, &r2, &fresh, &PullOptions::default()).expect("pull");
    assert_eq!(pulled.digest, pushed.digest);
    assert!(store_blob_verifies(&fresh, layer.digest()));
    assert_eq!(
        std::fs::metadata(fresh.blob_path(layer.digest()))
            .unwrap()
            .len(),
        layer.size()
    );
}

#[test]
fn tags_are_listed_across_pages() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let rt = runtime();
    let (_d, store) = temp_store();
    let image = test_image(4, 1, 10 << 10);
    let tags = ["v1", "v2", "v3", "v4", "v5"];
    let direct = connect(&rt, &registry.host(), test_options());
    for t in tags {
        push(
            &rt,
            &direct,
            &image,
            &reference(&registry.host(), &format!("paged/app:{t}")),
            &store,
        );
    }
    // distribution 2.8 answers tags/list in one page whatever `n` says.
    let mut listed = rt
        .block_on(direct.list_tags_paged("paged/app", Some(2)))
        .expect("list tags");
    listed.sort();
    assert_eq!(listed, tags);

    // A registry that pages (distribution 3, hosted registries): the real
    // registry behind a proxy that serves pages of `n` with Link headers.
    let proxy = FaultProxy::start(registry.port(), Fault::PaginateTags);
    let client = connect(&rt, &proxy.host(), test_options());
    let mut listed = rt
        .block_on(client.list_tags_paged("paged/app", Some(2)))
        .expect("list tags");
    let pages: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|q| q.path.contains("/tags/list"))
        .collect();
    assert_eq!(pages.len(), 3, "3 pages of at most 2: {pages:?}");
    assert!(pages[0].path.ends_with("/tags/list?n=2"), "{pages:?}");
    assert!(pages[1].path.contains("last=v2"), "{pages:?}");
    assert!(pages[2].path.contains("last=v4"), "{pages:?}");
    assert_eq!(listed.len(), 5, "no tag twice, none lost: {listed:?}");
    listed.sort();
    assert_eq!(listed, tags);
}

#[test]
fn docker_schema2_manifest_bytes_survive_a_round_trip() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let rt = runtime();
    let client = connect(&rt, &registry.host(), test_options());
    let (_d, store) = temp_store();
    let image = test_image(5, 2, 100 << 10);
    // Push once to get gzip layers in the store.
    let oci = push(
        &rt,
        &client,
        &image,
        &reference(&registry.host(), "docker/oci:1"),
        &store,
    );
    let layers: Vec<_> = oci
        .image
        .layers()
        .iter()
        .map(|l| l.clone().with_media_type(media::DOCKER_LAYER_GZIP))
        .collect();
    let config = oci.image.config_raw().to_vec();
    // Hand-written Docker schema 2 manifest in an unusual layout: the bytes
    // (not just the JSON) must come back.
    let mut manifest = String::from("{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"");
    manifest.push_str(media::DOCKER_MANIFEST);
    manifest.push_str(&format!(
        "\",\n   \"config\": {{\n      \"mediaType\": \"{}\",\n      \"size\": {},\n      \"digest\": \"{}\"\n   }},\n   \"layers\": [",
        media::DOCKER_CONFIG,
        config.len(),
        Digest::sha256_of(&config)
    ));
    for (i, l) in layers.iter().enumerate() {
        if i > 0 {
            manifest.push(',');
        }
        manifest.push_str(&format!(
            "\n      {{\n         \"mediaType\": \"{}\",\n         \"size\": {},\n         \"digest\": \"{}\"\n      }}",
            media::DOCKER_LAYER_GZIP,
            l.size(),
            l.digest()
        ));
    }
    manifest.push_str("\n   ]\n}");
    let manifest = manifest.into_bytes();
    serde_json::from_slice::<serde_json::Value>(&manifest).expect("valid JSON");
    let docker = Image::from_parts(manifest.clone(), config.clone(), layers).expect("docker image");
    assert_eq!(docker.manifest_media_type(), media::DOCKER_MANIFEST);

    let r = reference(&registry.host(), "docker/app:1");
    let pushed = push(&rt, &client, &docker, &r, &store);
    assert_eq!(pushed.digest, Digest::sha256_of(&manifest));
    assert_eq!(pushed.bytes_uploaded, 0, "all blobs exist in the registry");

    let (_d2, fresh) = temp_store();
    let pulled = pull(&rt, &client, &r, &fresh, &PullOptions::default()).expect("pull");
    assert_eq!(pulled.image.as_ref().unwrap().manifest_raw(), &manifest[..]);
    assert_eq!(
        pulled.image.as_ref().unwrap().manifest_media_type(),
        media::DOCKER_MANIFEST
    );
    assert_eq!(pulled.digest, Digest::sha256_of(&manifest));
    assert_eq!(pulled.image.as_ref().unwrap().config_raw(), &config[..]);
    let raw = rt
        .block_on(client.fetch_manifest("docker/app", "1"))
        .expect("fetch manifest");
    assert_eq!(raw.bytes, manifest);
    assert_eq!(raw.media_type, media::DOCKER_MANIFEST);
}

#[test]
fn index_pulls_host_platform_by_default_and_others_on_request() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let rt = runtime();
    let client = connect(&rt, &registry.host(), test_options());
    let (_d, store) = temp_store();
    let host_image = test_image(6, 2, 50 << 10);
    let other = other_platform();
    let other_image = host_image.with_platform(&other);
    assert_ne!(host_image.config_raw(), other_image.config_raw());
    let h = reference(&registry.host(), "multi/app:host");
    let o = reference(&registry.host(), "multi/app:other");
    let ph = push(&rt, &client, &host_image, &h, &store);
    let po = push(&rt, &client, &other_image, &o, &store);
    assert_ne!(ph.digest, po.digest);
    let entry = |p: &Pushed, platform: &Platform| {
        let mut pf = json!({"architecture": platform.architecture, "os": platform.os});
        if let Some(v) = &platform.variant {
            pf["variant"] = json!(v);
        }
        json!({
            "mediaType": media::OCI_MANIFEST,
            "digest": p.digest.to_string(),
            "size": p.image.manifest_raw().len(),
            "platform": pf,
        })
    };
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [entry(&po, &other), entry(&ph, &Platform::host())],
    });
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let index_digest = rt
        .block_on(client.put_manifest("multi/app", "latest", &index_bytes, media::OCI_INDEX))
        .expect("put index");
    assert_eq!(index_digest, Digest::sha256_of(&index_bytes));

    let r = reference(&registry.host(), "multi/app:latest");
    let (_d2, fresh) = temp_store();
    let default = pull(&rt, &client, &r, &fresh, &PullOptions::default()).expect("pull index");
    assert_eq!(
        default.digest, index_digest,
        "the digest of what the reference names"
    );
    assert_eq!(default.image.as_ref().unwrap().digest(), ph.digest);
    assert_eq!(default.image.as_ref().unwrap().platform(), Platform::host());

    let chosen = pull(
        &rt,
        &client,
        &r,
        &fresh,
        &PullOptions {
            platform: Some(other.clone()),
            all_platforms: false,
        },
    )
    .expect("pull other platform");
    assert_eq!(chosen.image.as_ref().unwrap().digest(), po.digest);
    assert_eq!(chosen.image.as_ref().unwrap().platform(), other);

    let err = pull(
        &rt,
        &client,
        &r,
        &fresh,
        &PullOptions {
            platform: Some("plan9/mips64".parse().unwrap()),
            all_platforms: false,
        },
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("plan9/mips64"), "{msg}");
    assert!(msg.contains(&other.to_string()), "{msg}");
    assert!(
        msg.contains(&format!(
            "{}/{}",
            Platform::host().os,
            Platform::host().architecture
        )),
        "{msg}"
    );
}

#[test]
fn skopeo_reads_what_dockyard_pushed_and_dockyard_reads_what_skopeo_pushed() {
    if !require_tool("skopeo") {
        return;
    }
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let rt = runtime();
    let client = connect(&rt, &registry.host(), test_options());
    let (_d, store) = temp_store();
    let tmp = tempfile::tempdir().unwrap();

    // dockyard pushes, skopeo copies and inspects.
    let image = test_image(7, 2, 150 << 10);
    let r = reference(&registry.host(), "x:1");
    let pushed = push(&rt, &client, &image, &r, &store);
    let oci_dir = tmp.path().join("from-registry");
    run_ok(skopeo().args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/x:1", registry.host()),
        &format!("oci:{}:x", oci_dir.display()),
    ]));
    let raw = run_ok(skopeo().args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{}/x:1", registry.host()),
    ]))
    .stdout;
    assert_eq!(Digest::sha256_of(&raw), pushed.digest);

    // dockyard writes a layout, skopeo pushes it, dockyard pulls it.
    let other = test_image(8, 2, 120 << 10);
    let layout = tmp.path().join("layout");
    write_image(
        &other,
        &Location::OciDir {
            path: layout.clone(),
            reference: Some("x".into()),
        },
        None,
        &Silent,
    )
    .expect("write layout");
    run_ok(skopeo().args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:x", layout.display()),
        &format!("docker://{}/bysk:1", registry.host()),
    ]));
    let raw = run_ok(skopeo().args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{}/bysk:1", registry.host()),
    ]))
    .stdout;
    let (_d2, fresh) = temp_store();
    let pulled = pull(
        &rt,
        &client,
        &reference(&registry.host(), "bysk:1"),
        &fresh,
        &PullOptions::default(),
    )
    .expect("pull what skopeo pushed");
    assert_eq!(pulled.digest, Digest::sha256_of(&raw));
    assert_eq!(pulled.image.as_ref().unwrap().manifest_raw(), &raw[..]);
    assert_eq!(
        pulled.image.as_ref().unwrap().config_raw(),
        other.config_raw()
    );
    let diff_ids: Vec<_> = pulled
        .image
        .as_ref()
        .unwrap()
        .layers()
        .iter()
        .map(|l| l.diff_id().clone())
        .collect();
    let want: Vec<_> = other.layers().iter().map(|l| l.diff_id().clone()).collect();
    assert_eq!(diff_ids, want);
}

#[test]
fn relative_upload_locations_are_followed() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let proxy = FaultProxy::start(registry.port(), Fault::RelativeLocation);
    let rt = runtime();
    let opts = ClientOptions {
        chunk_size: 64 << 10,
        ..test_options()
    };
    let client = connect(&rt, &proxy.host(), opts);
    let (_d, store) = temp_store();
    // One layer uploaded in chunks (a chain of Locations), one in a single PUT.
    let image = test_image(11, 1, 300 << 10);
    let r = reference(&proxy.host(), "relative/app:1");
    let pushed = push(&rt, &client, &image, &r, &store);
    assert!(
        proxy.faults_injected() >= 3,
        "Locations rewritten: {}",
        proxy.faults_injected()
    );
    // Every upload request went to the proxy's host and port, on the path the Location named.
    let uploads: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|q| q.method == "PATCH" || q.method == "PUT")
        .collect();
    assert!(uploads.iter().any(|q| q.method == "PATCH"));
    assert!(
        uploads
            .iter()
            .all(|q| q.path.starts_with("/v2/relative/app/")),
        "{uploads:?}"
    );
    let (_d2, fresh) = temp_store();
    let pulled = pull(&rt, &client, &r, &fresh, &PullOptions::default()).expect("pull");
    assert_eq!(pulled.digest, pushed.digest);
}

/// A registry's refusal keeps its error codes and the URL asked, so a
/// caller can tell MANIFEST_BLOB_UNKNOWN from DENIED without parsing text.
#[test]
fn registry_errors_keep_their_codes_and_url() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let rt = runtime();
    let client = connect(&rt, &registry.host(), test_options());
    let image = test_image(51, 1, 1000);
    // The manifest names blobs the registry was never given.
    let err = rt
        .block_on(client.put_manifest(
            "codes/app",
            "1",
            image.manifest_raw(),
            image.manifest_media_type(),
        ))
        .unwrap_err();
    match &err {
        RegistryError::Http {
            status, codes, url, ..
        } => {
            assert_eq!(*status, 400);
            assert!(
                codes.iter().any(|c| c == "MANIFEST_BLOB_UNKNOWN"),
                "{codes:?}"
            );
            assert!(url.ends_with("/v2/codes/app/manifests/1"), "{url}");
        }
        other => panic!("expected an HTTP error with codes, got {other:?}"),
    }
    assert!(err.to_string().contains("MANIFEST_BLOB_UNKNOWN"), "{err}");
}
