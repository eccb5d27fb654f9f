//! Multi-platform indexes and OCI artifacts, built in memory, for tests of
//! every transport.

use std::sync::Arc;

use dockyard_image::media;
use dockyard_image::{Artifact, BlobSource, Index, IndexManifest, Manifest, Platform};
use serde_json::json;

use crate::registry::{other_platform, test_image_for};

/// A platform that is neither the host's nor `other_platform()`.
pub fn third_platform() -> Platform {
    let taken = [Platform::host(), other_platform()];
    ["linux/arm64/v8", "linux/amd64", "linux/ppc64le"]
        .iter()
        .map(|p| p.parse::<Platform>().expect("platform"))
        .find(|p| !taken.iter().any(|t| t.normalized() == p.normalized()))
        .expect("a third platform")
}

/// An OCI artifact (not an image): a config of its own media type, one
/// data blob, an `artifactType`, and a `subject` when given.
pub fn test_artifact(seed: u64, subject: Option<&Manifest>) -> Artifact {
    let config = b"{}".to_vec();
    let data = format!("artifact payload {seed}\n").into_bytes();
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": "application/vnd.dockyard.test+json",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": dockyard_image::Digest::sha256_of(&config).to_string(),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.dockyard.test.data",
            "digest": dockyard_image::Digest::sha256_of(&data).to_string(),
            "size": data.len(),
        }],
    });
    if let Some(s) = subject {
        manifest["subject"] = s.descriptor().json;
    }
    let raw = serde_json::to_vec(&manifest).expect("json");
    Artifact::new(
        raw,
        media::OCI_MANIFEST,
        vec![
            BlobSource::Bytes(Arc::new(config)),
            BlobSource::Bytes(Arc::new(data)),
        ],
    )
    .expect("artifact")
}

/// An index of three images (the host's platform, `other_platform()`,
/// `third_platform()`) and an attestation-like artifact entry
/// (`unknown/unknown`), as buildx pushes them. With `declare_platforms`
/// false, the image entries carry no `platform` field (their configs say
/// it), as some tools write them.
pub fn three_platform_index(seed: u64, declare_platforms: bool) -> Index {
    let mut children: Vec<Manifest> = [Platform::host(), other_platform(), third_platform()]
        .iter()
        .enumerate()
        .map(|(i, p)| Manifest::Image(test_image_for(seed * 10 + i as u64, 2, 20_000, p)))
        .collect();
    let attestation = test_artifact(seed, Some(&children[0]));
    children.push(Manifest::Artifact(attestation));
    let unknown = Platform {
        os: "unknown".into(),
        architecture: "unknown".into(),
        variant: None,
    };
    let entries = children
        .iter()
        .map(|c| match c {
            Manifest::Image(img) if declare_platforms => {
                c.descriptor().with_platform(&img.platform())
            }
            Manifest::Artifact(_) => c.descriptor().with_platform(&unknown),
            _ => c.descriptor(),
        })
        .collect();
    Index::new(
        IndexManifest::new(entries),
        children.into_iter().map(Some).collect(),
    )
    .expect("index")
}
