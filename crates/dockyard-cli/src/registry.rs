//! The CLI side of registry transfers: flags → client options, a tokio
//! runtime, and error mapping.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use dockyard_image::media::Compression;
use dockyard_image::progress::Progress;
use dockyard_image::{Digest, Image, Platform, Reference, Store};
use dockyard_registry::{
    ClientOptions, Credentials, PullOptions, Pulled, PushOptions, Pushed, PushedIndex, Registry,
    RegistryError,
};

use crate::{usage, CliResult, Failure};

#[derive(Args, Clone, Debug, Default)]
pub struct RegistryArgs {
    /// Talk plain HTTP to every registry (loopback registries are probed without it).
    #[arg(long, global = true)]
    pub plain_http: bool,
    /// Do not verify TLS certificates.
    #[arg(long, global = true, alias = "tls-verify-false")]
    pub insecure: bool,
    /// Trust this CA certificate (PEM) too; repeatable.
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_cert: Vec<PathBuf>,
    /// Trust every *.crt / *.pem in DIR (as skopeo's --cert-dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Registry credentials USER:PASSWORD (else $DOCKYARD_USERNAME/$DOCKYARD_PASSWORD,
    /// else the Docker config).
    #[arg(long, global = true, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,
    /// Layers transferred at once.
    #[arg(long, global = true, value_name = "N")]
    pub parallel: Option<usize>,
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        Failure {
            code: if e.is_user_error() { 1 } else { 2 },
            message: e.to_string(),
        }
    }
}

impl RegistryArgs {
    pub fn options(&self) -> CliResult<ClientOptions> {
        let mut opts = ClientOptions {
            plain_http: self.plain_http,
            insecure_skip_tls_verify: self.insecure,
            ca_certs: self.ca_cert.clone(),
            ..ClientOptions::default()
        };
        if let Some(dir) = &self.cert_dir {
            let list = std::fs::read_dir(dir)
                .map_err(|e| usage(format!("--cert-dir {}: {e}", dir.display())))?;
            for entry in list.flatten() {
                let p = entry.path();
                if p.extension()
                    .map(|e| e == "crt" || e == "pem")
                    .unwrap_or(false)
                {
                    opts.ca_certs.push(p);
                }
            }
        }
        if let Some(n) = self.parallel {
            opts.parallel = n.max(1);
        }
        opts.credentials = match &self.creds {
            Some(c) => {
                let (u, p) = c
                    .split_once(':')
                    .ok_or_else(|| usage("--creds: expected USER:PASSWORD"))?;
                Some(Credentials {
                    username: u.into(),
                    password: p.into(),
                })
            }
            None => match (
                std::env::var("DOCKYARD_USERNAME"),
                std::env::var("DOCKYARD_PASSWORD"),
            ) {
                (Ok(u), Ok(p)) if !u.is_empty() => Some(Credentials {
                    username: u,
                    password: p,
                }),
                _ => None,
            },
        };
        Ok(opts)
    }
}

pub fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: 2,
            message: format!("cannot start the async runtime: {e}"),
        })
}

pub fn connect(
    rt: &tokio::runtime::Runtime,
    registry: &str,
    args: &RegistryArgs,
) -> CliResult<Registry> {
    let opts = args.options()?;
    Ok(rt.block_on(Registry::connect(registry, opts))?)
}

/// A `docker://REF` or a bare reference.
pub fn parse_reference(s: &str) -> CliResult<Reference> {
    Ok(s.strip_prefix("docker://")
        .unwrap_or(s)
        .parse::<Reference>()?)
}

pub fn pull(
    reference: &Reference,
    args: &RegistryArgs,
    platform: Option<Platform>,
    all_platforms: bool,
    progress: &dyn Progress,
) -> CliResult<Pulled> {
    let rt = runtime()?;
    let registry = connect(&rt, reference.registry(), args)?;
    let store = Store::open_default()?;
    let opts = PullOptions {
        platform,
        all_platforms,
    };
    Ok(rt.block_on(registry.pull(reference, &store, &opts, progress))?)
}

pub fn push(
    image: &Image,
    reference: &Reference,
    args: &RegistryArgs,
    compression: Compression,
    progress: Arc<dyn Progress>,
) -> CliResult<Pushed> {
    let rt = runtime()?;
    let registry = connect(&rt, reference.registry(), args)?;
    let store = Store::open_default()?;
    let opts = PushOptions { compression };
    Ok(rt.block_on(registry.push(image, reference, &store, &opts, progress))?)
}

/// Push a multi-platform index held in the store.
pub fn push_index(
    index: &Digest,
    reference: &Reference,
    args: &RegistryArgs,
    progress: Arc<dyn Progress>,
) -> CliResult<PushedIndex> {
    let rt = runtime()?;
    let registry = connect(&rt, reference.registry(), args)?;
    let store = Store::open_default()?;
    Ok(rt.block_on(registry.push_index_from_store(index, reference, &store, progress))?)
}
