//! Registry flags → the facade's client options.

use std::path::PathBuf;

use clap::Args;
use dockyard::{ClientOptions, Credentials};

use crate::{usage, CliResult};

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
    /// Drop a registry connection that sends nothing for this long, then
    /// retry (blobs resume where they stopped).
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
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
        opts.timeout = std::time::Duration::from_secs(self.timeout.max(1));
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
