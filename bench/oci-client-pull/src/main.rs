//! Benchmark peer for bench/registry.sh: pull one image with oci-client 0.18
//! over plain HTTP, anonymously, into an OCI image layout.
//!
//!     oci-client-pull <registry-host:port/repo:tag> <out-dir>
//!
//! The manifest is written byte for byte as the registry served it (an OCI
//! image manifest or a Docker schema-2 manifest), so its digest holds; the
//! config and every layer are streamed to blobs/sha256/<hex> with
//! `Client::pull_blob` (which checks each digest), all blobs at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest, IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::task::JoinSet;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        bail!("usage: {} <registry-host:port/repo:tag> <out-dir>", args[0]);
    }
    let reference: Reference = args[1]
        .parse()
        .with_context(|| format!("parsing image reference {:?}", args[1]))?;
    let out = PathBuf::from(&args[2]);
    let blobs = out.join("blobs").join("sha256");
    tokio::fs::create_dir_all(&blobs)
        .await
        .with_context(|| format!("creating {}", blobs.display()))?;

    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });

    // The manifest, as served: OCI image manifest or Docker schema 2.
    let (raw, manifest_digest) = client
        .pull_manifest_raw(
            &reference,
            &RegistryAuth::Anonymous,
            &[OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE],
        )
        .await
        .with_context(|| format!("pulling the manifest of {reference}"))?;
    let manifest: OciImageManifest =
        serde_json::from_slice(&raw).context("parsing the image manifest")?;
    let manifest_type = manifest
        .media_type
        .clone()
        .unwrap_or_else(|| OCI_IMAGE_MEDIA_TYPE.to_string());
    if manifest_type != OCI_IMAGE_MEDIA_TYPE && manifest_type != IMAGE_MANIFEST_MEDIA_TYPE {
        bail!("{reference}: manifest of type {manifest_type}, not an image manifest");
    }

    // Config and layers, concurrently, each streamed to its file.
    let mut tasks = JoinSet::new();
    for desc in std::iter::once(&manifest.config).chain(&manifest.layers) {
        let path = blob_path(&blobs, &desc.digest)?;
        let (client, reference, desc) = (client.clone(), reference.clone(), desc.clone());
        tasks.spawn(async move { pull_to_file(&client, &reference, &desc, &path).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("blob download task failed")??;
    }

    // Manifest blob, index.json, oci-layout.
    tokio::fs::write(blob_path(&blobs, &manifest_digest)?, &raw)
        .await
        .context("writing the manifest blob")?;
    let annotations = reference.tag().map(|tag| {
        BTreeMap::from([(
            "org.opencontainers.image.ref.name".to_string(),
            tag.to_string(),
        )])
    });
    let index = OciImageIndex {
        schema_version: 2,
        media_type: Some("application/vnd.oci.image.index.v1+json".to_string()),
        manifests: vec![ImageIndexEntry {
            media_type: manifest_type,
            digest: manifest_digest,
            size: raw.len() as i64,
            platform: None,
            annotations,
            artifact_type: None,
        }],
        artifact_type: None,
        annotations: None,
    };
    tokio::fs::write(out.join("index.json"), serde_json::to_vec(&index)?)
        .await
        .context("writing index.json")?;
    tokio::fs::write(out.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .await
        .context("writing oci-layout")?;
    Ok(())
}

/// blobs/sha256/<hex> for a "sha256:<hex>" digest.
fn blob_path(blobs: &Path, digest: &str) -> Result<PathBuf> {
    match digest.split_once(':') {
        Some(("sha256", hex)) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(blobs.join(hex))
        }
        _ => bail!("unsupported digest {digest:?}"),
    }
}

async fn pull_to_file(
    client: &Client,
    reference: &Reference,
    desc: &OciDescriptor,
    path: &Path,
) -> Result<()> {
    let file = tokio::fs::File::create(path)
        .await
        .with_context(|| format!("creating {}", path.display()))?;
    client
        .pull_blob(reference, desc, file)
        .await
        .with_context(|| format!("pulling blob {}", desc.digest))?;
    Ok(())
}
