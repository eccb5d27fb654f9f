//! Whole multi-platform images through every transport that can hold an
//! index (oci:, oci-archive:, store:, docker://), platform selection from
//! every source, OCI artifacts copied blob for blob, and the errors a user
//! gets when a name, platform or destination does not fit.

use std::path::Path;
use std::process::Command;

use dockyard::{Dockyard, Error, Manifest, OpenOptions, Options, Platform, WriteOptions};
use dockyard_testsupport::images::{test_artifact, third_platform, three_platform_index};
use dockyard_testsupport::registry::{
    other_platform, test_image_for, test_options, Mode, RegistryGuard,
};
use dockyard_testsupport::{require_tool, run_ok};
use serde_json::Value;

fn facade(tmp: &Path) -> Dockyard {
    Dockyard::new(Options {
        store_root: Some(tmp.join("store")),
        registry: test_options(),
        ..Options::default()
    })
}

fn all() -> OpenOptions {
    OpenOptions {
        platform: None,
        all_platforms: true,
    }
}

fn index_of(m: &Manifest) -> &dockyard::Index {
    match m {
        Manifest::Index(ix) => ix,
        other => panic!("expected an index, got {}", other.kind_name()),
    }
}

#[test]
fn an_index_stays_whole_through_every_transport() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dy = facade(tmp.path());
    let index = three_platform_index(1, true);
    let digest = index.digest();
    let first = format!("oci:{}:v2", tmp.path().join("a").display());
    let written = dy
        .write(
            &Manifest::Index(index.clone()),
            &first,
            &WriteOptions::default(),
        )
        .unwrap();
    assert_eq!(written.digest, digest);

    // Each destination is the next copy's source.
    let chain = [
        first.clone(),
        format!("oci-archive:{}:v2", tmp.path().join("b.tar").display()),
        "store:mp/whole:v2".to_string(),
        format!("docker://{}/mp/whole:v2", registry.host()),
        format!("oci:{}:v2", tmp.path().join("c").display()),
    ];
    for pair in chain.windows(2) {
        let written = dy
            .copy(&pair[0], &pair[1], &all(), &WriteOptions::default())
            .unwrap_or_else(|e| panic!("{} → {}: {e}", pair[0], pair[1]));
        assert_eq!(written.digest, digest, "{} → {}", pair[0], pair[1]);
        let back = dy.open(&pair[1], &all()).unwrap();
        let ix = index_of(&back);
        assert_eq!(ix.digest(), digest, "{}", pair[1]);
        assert!(ix.missing().is_empty(), "{}: every child held", pair[1]);
        assert_eq!(ix.children().count(), 4, "{}", pair[1]);
        assert_eq!(ix.images().len(), 3, "{}", pair[1]);
        for (want, got) in index.images().iter().zip(ix.images()) {
            assert_eq!(want.digest(), got.digest(), "{}", pair[1]);
        }
        // And each platform is there to pick.
        let other = dy.open_image(&pair[1], Some(&other_platform())).unwrap();
        assert_eq!(other.platform(), other_platform(), "{}", pair[1]);
    }

    // Peers agree: the registry serves the index's bytes, skopeo copies
    // our layout whole without changing a digest.
    if require_tool("skopeo") {
        let raw = run_ok(Command::new("skopeo").args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{}/mp/whole:v2", registry.host()),
        ]))
        .stdout;
        assert_eq!(dockyard::Digest::sha256_of(&raw), digest);
        // skopeo reads our layout whole; it gzips uncompressed layers on
        // the way (its policy), so the configs are what must match.
        let copied = tmp.path().join("skopeo");
        run_ok(
            Command::new("skopeo")
                .args(["--insecure-policy", "copy", "-q", "--all"])
                .arg(&chain[4])
                .arg(format!("oci:{}:x", copied.display())),
        );
        let back = dy
            .open(&format!("oci:{}:x", copied.display()), &all())
            .unwrap();
        let configs = |ix: &dockyard::Index| {
            ix.images()
                .iter()
                .map(|i| (i.platform(), i.config_digest()))
                .collect::<Vec<_>>()
        };
        assert_eq!(configs(index_of(&back)), configs(&index));
        assert_eq!(index_of(&back).children().count(), 4);
        assert_eq!(index_of(&back).images().len(), 3);
    }
}

#[test]
fn a_docker_archive_refuses_an_index_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dy = facade(tmp.path());
    let index = three_platform_index(2, true);
    let src = format!("oci:{}:v2", tmp.path().join("a").display());
    dy.write(
        &Manifest::Index(index.clone()),
        &src,
        &WriteOptions::default(),
    )
    .unwrap();
    let out = tmp.path().join("all.tar");
    let err = dy
        .copy(
            &src,
            &format!("docker-archive:{}", out.display()),
            &all(),
            &WriteOptions::default(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Image(dockyard_image::Error::CannotHoldIndex { index: d, .. }) if *d == index.digest()),
        "{err}"
    );
    assert!(err.to_string().contains("--platform"), "{err}");
    assert!(!out.exists());
    // One platform fits.
    let one = OpenOptions {
        platform: Some(other_platform()),
        all_platforms: false,
    };
    dy.copy(
        &src,
        &format!("docker-archive:{}", out.display()),
        &one,
        &WriteOptions::default(),
    )
    .unwrap();
    let image = dy
        .open_image(&format!("docker-archive:{}", out.display()), None)
        .unwrap();
    assert_eq!(image.platform(), other_platform());
}

#[test]
fn platforms_are_picked_from_every_source_even_without_platform_fields() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dy = facade(tmp.path());
    // Entries without `platform`: only the configs say which is which.
    let index = three_platform_index(3, false);
    let sources = [
        format!("oci:{}:v2", tmp.path().join("a").display()),
        format!("oci-archive:{}:v2", tmp.path().join("b.tar").display()),
        "store:mp/bare:v2".to_string(),
        format!("docker://{}/mp/bare:v2", registry.host()),
    ];
    for s in &sources {
        dy.write(&Manifest::Index(index.clone()), s, &WriteOptions::default())
            .unwrap_or_else(|e| panic!("write {s}: {e}"));
    }
    let cache_free = tmp.path().join("fresh");
    for s in &sources {
        // A fresh store for registry reads, so nothing comes from the cache.
        let dy = if s.starts_with("docker://") {
            facade(&cache_free)
        } else {
            facade(tmp.path())
        };
        for p in [Platform::host(), other_platform(), third_platform()] {
            let image = dy
                .open_image(s, Some(&p))
                .unwrap_or_else(|e| panic!("{s} {p}: {e}"));
            assert!(
                p.matches(&image.platform()),
                "{s}: asked {p}, got {}",
                image.platform()
            );
        }
        // containerd's spellings find the same image.
        let host = Platform::host();
        let spelled = match host.architecture.as_str() {
            "amd64" => "linux/x86_64",
            "arm64" => "linux/aarch64",
            _ => "",
        };
        if !spelled.is_empty() {
            let image = dy.open_image(s, Some(&spelled.parse().unwrap())).unwrap();
            assert_eq!(image.platform(), host, "{s}");
        }
        // No default needed: the host's image comes back.
        assert_eq!(dy.open_image(s, None).unwrap().platform(), host, "{s}");
        // A platform the index lacks: an error that lists what it has.
        let missing: Platform = "linux/riscv64".parse().unwrap();
        let err = dy.open_image(s, Some(&missing)).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                &err,
                Error::Image(dockyard_image::Error::PlatformNotFound { available, .. }) if available.len() == 3
            ),
            "{s}: {text}"
        );
        assert!(text.contains(&other_platform().to_string()), "{s}: {text}");
    }
}

#[test]
fn a_single_image_asked_for_another_platform_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dy = facade(tmp.path());
    let image = test_image_for(4, 1, 1000, &other_platform());
    for dest in [
        format!("oci:{}:one", tmp.path().join("a").display()),
        format!(
            "docker-archive:{}:x/one:1",
            tmp.path().join("one.tar").display()
        ),
        format!("oci-archive:{}", tmp.path().join("one-oci.tar").display()),
        "store:x/one:1".to_string(),
    ] {
        dy.write(&image.clone().into(), &dest, &WriteOptions::default())
            .unwrap();
        let err = dy.open_image(&dest, Some(&Platform::host())).unwrap_err();
        match &err {
            Error::Image(dockyard_image::Error::PlatformNotFound { available, .. }) => {
                assert_eq!(available, &vec![other_platform().to_string()], "{dest}")
            }
            other => panic!("{dest}: {other}"),
        }
        assert_eq!(
            dy.open_image(&dest, Some(&other_platform()))
                .unwrap()
                .digest(),
            image.digest()
        );
    }
}

#[test]
fn artifacts_are_copied_blob_for_blob_and_described() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dy = facade(tmp.path());
    let subject = Manifest::Image(test_image_for(5, 1, 1000, &Platform::host()));
    let artifact = Manifest::Artifact(test_artifact(5, Some(&subject)));
    let chain = [
        format!("oci:{}:a-example", tmp.path().join("a").display()),
        format!("docker://{}/mp/artifact:1", registry.host()),
        format!("oci-archive:{}:a", tmp.path().join("b.tar").display()),
        "store:mp/artifact:1".to_string(),
        format!("oci:{}:a", tmp.path().join("c").display()),
    ];
    dy.write(&artifact, &chain[0], &WriteOptions::default())
        .unwrap();
    for pair in chain.windows(2) {
        let written = dy
            .copy(
                &pair[0],
                &pair[1],
                &OpenOptions::default(),
                &WriteOptions::default(),
            )
            .unwrap_or_else(|e| panic!("{} → {}: {e}", pair[0], pair[1]));
        assert_eq!(written.digest, artifact.digest(), "{}", pair[1]);
        let back = dy.open(&pair[1], &OpenOptions::default()).unwrap();
        let Manifest::Artifact(a) = &back else {
            panic!("{}: {}", pair[1], back.kind_name())
        };
        assert_eq!(a.raw(), artifact.raw());
        assert_eq!(a.artifact_type(), "application/vnd.dockyard.test+json");
        let payload = a.blobs()[1].open().unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut { payload }, &mut text).unwrap();
        assert_eq!(text, "artifact payload 5\n");
    }
    for src in &chain {
        let inspection = dy.inspect(src, None).unwrap();
        assert_eq!(inspection.top_raw, artifact.raw(), "{src}");
        let summary = inspection.summary().unwrap();
        assert_eq!(summary["kind"], "artifact", "{src}");
        assert_eq!(
            summary["artifactType"],
            "application/vnd.dockyard.test+json"
        );
        assert_eq!(summary["blobs"].as_array().unwrap().len(), 2);
        assert_eq!(summary["subject"]["digest"], subject.digest().to_string());
        let err = dy
            .export(src, &tmp.path().join("never"), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("artifact") && err.contains("not a runnable image"),
            "{err}"
        );
        assert!(!tmp.path().join("never").exists());
    }
}

#[test]
fn a_name_on_two_entries_is_an_error_listing_both() {
    let tmp = tempfile::tempdir().unwrap();
    let dy = facade(tmp.path());
    let dir = tmp.path().join("a");
    let one = test_image_for(6, 1, 100, &Platform::host());
    let two = test_image_for(7, 1, 100, &Platform::host());
    dy.write(
        &one.clone().into(),
        &format!("oci:{}:one", dir.display()),
        &WriteOptions::default(),
    )
    .unwrap();
    dy.write(
        &two.clone().into(),
        &format!("oci:{}:two", dir.display()),
        &WriteOptions::default(),
    )
    .unwrap();
    // Another tool named both "latest".
    let index_path = dir.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    for m in index["manifests"].as_array_mut().unwrap() {
        m["annotations"]["org.opencontainers.image.ref.name"] = "latest".into();
    }
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let err = dy
        .open_image(&format!("oci:{}:latest", dir.display()), None)
        .unwrap_err();
    match &err {
        Error::Image(dockyard_image::Error::AmbiguousName { digests, .. }) => {
            assert!(digests.contains(&one.digest()) && digests.contains(&two.digest()))
        }
        other => panic!("{other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&one.digest().to_string()) && text.contains("@"),
        "{text}"
    );
    let picked = dy
        .open_image(
            &format!("oci:{}:latest@{}", dir.display(), two.digest()),
            None,
        )
        .unwrap();
    assert_eq!(picked.digest(), two.digest());
}

#[test]
fn an_index_missing_children_is_named_not_half_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let dy = facade(tmp.path());
    let index = three_platform_index(8, true);
    let dir = tmp.path().join("a");
    let src = format!("oci:{}:v2", dir.display());
    dy.write(
        &Manifest::Index(index.clone()),
        &src,
        &WriteOptions::default(),
    )
    .unwrap();
    // As `docker save` of one platform leaves it: the other manifests absent.
    let other = index
        .images()
        .into_iter()
        .find(|i| i.platform() == other_platform())
        .unwrap()
        .digest();
    std::fs::remove_file(dir.join("blobs/sha256").join(other.hex())).unwrap();
    let out = tmp.path().join("out");
    let err = dy
        .copy(
            &src,
            &format!("oci:{}:v2", out.display()),
            &all(),
            &WriteOptions::default(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&other.to_string()) && err.contains("--platform"),
        "{err}"
    );
    assert!(!out.exists());
    // The platforms it holds still copy; the missing one is named.
    let host = OpenOptions {
        platform: Some(Platform::host()),
        all_platforms: false,
    };
    dy.copy(
        &src,
        &format!("oci:{}:host", out.display()),
        &host,
        &WriteOptions::default(),
    )
    .unwrap();
    let err = dy
        .open_image(&src, Some(&other_platform()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not held"), "{err}");
}

#[test]
fn an_index_without_this_hosts_platform_is_still_described() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dy = facade(tmp.path());
    let foreign = dockyard::Index::build(
        vec![
            Manifest::Image(test_image_for(31, 1, 100, &other_platform())),
            Manifest::Image(test_image_for(32, 1, 100, &third_platform())),
        ],
        true,
    )
    .unwrap();
    for src in [
        format!("oci:{}:f", tmp.path().join("a").display()),
        format!("docker://{}/mp/foreign:1", registry.host()),
    ] {
        dy.write(
            &Manifest::Index(foreign.clone()),
            &src,
            &WriteOptions::default(),
        )
        .unwrap();
        let inspection = dy.inspect(&src, None).unwrap();
        assert_eq!(inspection.top_raw, foreign.raw(), "{src}");
        assert!(inspection.manifest_raw.is_none(), "{src}");
        let summary = inspection.summary().unwrap();
        assert_eq!(summary["kind"], "index", "{src}");
        assert_eq!(summary["index"]["manifests"].as_array().unwrap().len(), 2);
        assert!(summary["note"].as_str().unwrap().contains("--platform"));
        // Asking for one of its platforms picks it.
        let picked = dy.inspect(&src, Some(&other_platform())).unwrap();
        assert!(picked.manifest_raw.is_some(), "{src}");
        // Asking for one it lacks is an error naming what it has.
        let err = dy
            .inspect(&src, Some(&"linux/riscv64".parse().unwrap()))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&third_platform().to_string()), "{src}: {err}");
    }
}

#[test]
fn mutate_platform_picks_from_an_index_and_sets_a_single_image() {
    let tmp = tempfile::tempdir().unwrap();
    let dy = facade(tmp.path());
    let index = three_platform_index(33, true);
    let idx = format!("oci:{}:v2", tmp.path().join("a").display());
    dy.write(
        &Manifest::Index(index.clone()),
        &idx,
        &WriteOptions::default(),
    )
    .unwrap();
    let picked = dy
        .mutate(
            &idx,
            &dockyard::Mutation {
                platform: Some(other_platform()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        picked.config_digest(),
        index.select(&other_platform()).unwrap().config_digest(),
        "picked, not edited"
    );
    let single = format!("oci:{}:one", tmp.path().join("b").display());
    dy.write(
        &test_image_for(34, 1, 100, &Platform::host()).into(),
        &single,
        &WriteOptions::default(),
    )
    .unwrap();
    let relabelled = dy
        .mutate(
            &single,
            &dockyard::Mutation {
                platform: Some(other_platform()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(relabelled.platform(), other_platform());
}

#[test]
fn a_file_added_to_a_symlinked_directory_lands_where_it_points() {
    use dockyard::ConfigEdit;
    use dockyard_image::tar::{LayerBuilder, LayerOptions};
    let tmp = tempfile::tempdir().unwrap();
    let dy = facade(tmp.path());
    // A merged-/usr base: /bin is a symlink to usr/bin.
    let store = dy.store().unwrap();
    let mut b = LayerBuilder::new(LayerOptions::default());
    b.add_contents("/usr/bin/tool", "tool\n", 0o755)
        .unwrap()
        .add_symlink("/bin", "usr/bin")
        .unwrap();
    let base = dockyard::Image::scratch(&Platform::host())
        .append_layer(b.build_in_store(&store).unwrap(), "base");
    let src = format!("oci:{}:base", tmp.path().join("base").display());
    dy.write(&base.into(), &src, &WriteOptions::default())
        .unwrap();
    let motd = tmp.path().join("motd");
    std::fs::write(&motd, "m\n").unwrap();
    let edited = dy
        .mutate(
            &src,
            &dockyard::Mutation {
                add: vec![(motd, "/bin".into())],
                config: vec![ConfigEdit::Env("A".into(), "1".into())],
                ..Default::default()
            },
        )
        .unwrap();
    let rootfs = tmp.path().join("rootfs");
    let out = format!("oci:{}:e", tmp.path().join("edited").display());
    dy.write(&edited.into(), &out, &WriteOptions::default())
        .unwrap();
    dy.export(&out, &rootfs, None).unwrap();
    assert!(
        std::fs::symlink_metadata(rootfs.join("bin"))
            .unwrap()
            .file_type()
            .is_symlink(),
        "/bin is still the symlink"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("usr/bin/motd")).unwrap(),
        "m\n"
    );
    assert!(rootfs.join("usr/bin/tool").is_file());
}
