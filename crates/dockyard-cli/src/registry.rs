//! Registry flags → the facade's client options.

use std::path::PathBuf;

use clap::Args;
use dockyard::{ClientOptions, Credentials, HostOptions, Location};

use crate::{usage, CliResult};

const REGISTRY_OPTIONS: &str = "Registry options (every verb, every registry)";
const SIDE_OPTIONS: &str = "Source / destination registry options";

#[derive(Args, Clone, Debug, Default)]
pub struct RegistryArgs {
    /// Talk plain HTTP to every registry (loopback registries are probed without it).
    #[arg(long, global = true, help_heading = REGISTRY_OPTIONS)]
    pub plain_http: bool,
    /// Do not verify TLS certificates (and speak plain HTTP to a registry without TLS).
    #[arg(long, global = true, alias = "tls-verify-false", help_heading = REGISTRY_OPTIONS)]
    pub insecure: bool,
    /// Trust this CA certificate (PEM) too; repeatable.
    #[arg(long, global = true, value_name = "PEM", help_heading = REGISTRY_OPTIONS)]
    pub ca_cert: Vec<PathBuf>,
    /// Certificates as in Docker's certs.d/HOST: *.crt (or *.pem) CAs to
    /// trust, NAME.cert + NAME.key a client certificate (as skopeo's --cert-dir).
    /// /etc/docker/certs.d/HOST:PORT is read without this flag.
    #[arg(long, global = true, value_name = "DIR", help_heading = REGISTRY_OPTIONS)]
    pub cert_dir: Option<PathBuf>,
    /// Registry credentials USER:PASSWORD (else $DOCKYARD_USERNAME/$DOCKYARD_PASSWORD,
    /// else the Docker config).
    #[arg(long, global = true, value_name = "USER:PASSWORD", help_heading = REGISTRY_OPTIONS)]
    pub creds: Option<String>,
    /// Drop a registry connection that sends nothing for this long, then
    /// retry (blobs resume where they stopped).
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        default_value_t = 30,
        help_heading = REGISTRY_OPTIONS
    )]
    pub timeout: u64,
}

/// How many blobs move at once (verbs that transfer layers).
#[derive(Args, Clone, Debug, Default)]
pub struct TransferArgs {
    /// Layers transferred at once (default 6).
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
}

/// Settings for the source's and the destination's registry apart, as
/// skopeo's --src-*/--dest-*: each side's credentials and TLS.
#[derive(Args, Clone, Debug, Default)]
pub struct SideArgs {
    /// Credentials USER:PASSWORD for the source registry.
    #[arg(long, value_name = "USER:PASSWORD", help_heading = SIDE_OPTIONS)]
    pub src_creds: Option<String>,
    /// Verify the source registry's TLS certificate (default true); false
    /// also allows plain HTTP to it.
    #[arg(long, value_name = "BOOL", help_heading = SIDE_OPTIONS)]
    pub src_tls_verify: Option<bool>,
    /// Certificates for the source registry, laid out as --cert-dir.
    #[arg(long, value_name = "DIR", help_heading = SIDE_OPTIONS)]
    pub src_cert_dir: Option<PathBuf>,
    /// Talk plain HTTP to the source registry.
    #[arg(long, help_heading = SIDE_OPTIONS)]
    pub src_plain_http: bool,
    /// Credentials USER:PASSWORD for the destination registry.
    #[arg(long, value_name = "USER:PASSWORD", help_heading = SIDE_OPTIONS)]
    pub dest_creds: Option<String>,
    /// Verify the destination registry's TLS certificate (default true);
    /// false also allows plain HTTP to it.
    #[arg(long, value_name = "BOOL", help_heading = SIDE_OPTIONS)]
    pub dest_tls_verify: Option<bool>,
    /// Certificates for the destination registry, laid out as --cert-dir.
    #[arg(long, value_name = "DIR", help_heading = SIDE_OPTIONS)]
    pub dest_cert_dir: Option<PathBuf>,
    /// Talk plain HTTP to the destination registry.
    #[arg(long, help_heading = SIDE_OPTIONS)]
    pub dest_plain_http: bool,
}

fn parse_creds(flag: &str, c: &str) -> CliResult<Credentials> {
    let (u, p) = c
        .split_once(':')
        .ok_or_else(|| usage(format!("{flag}: expected USER:PASSWORD")))?;
    Ok(Credentials {
        username: u.into(),
        password: p.into(),
    })
}

fn host_options(
    flag: &str,
    creds: &Option<String>,
    tls_verify: Option<bool>,
    cert_dir: &Option<PathBuf>,
    plain_http: bool,
) -> CliResult<Option<HostOptions>> {
    let mut h = HostOptions {
        credentials: creds
            .as_deref()
            .map(|c| parse_creds(&format!("--{flag}-creds"), c))
            .transpose()?,
        tls_verify,
        plain_http: plain_http.then_some(true),
        ..HostOptions::default()
    };
    if let Some(dir) = cert_dir {
        let (cas, client) =
            dockyard::read_cert_dir(dir).map_err(|e| usage(format!("--{flag}-cert-dir: {e}")))?;
        h.ca_certs = cas;
        h.client_cert = client;
    }
    Ok((h != HostOptions::default()).then_some(h))
}

impl RegistryArgs {
    /// The options every registry gets.
    pub fn options(&self) -> CliResult<ClientOptions> {
        let mut opts = ClientOptions {
            plain_http: self.plain_http,
            insecure_skip_tls_verify: self.insecure,
            ca_certs: self.ca_cert.clone(),
            ..ClientOptions::default()
        };
        if let Some(dir) = &self.cert_dir {
            let (cas, client) =
                dockyard::read_cert_dir(dir).map_err(|e| usage(format!("--cert-dir: {e}")))?;
            opts.ca_certs.extend(cas);
            opts.client_cert = client;
        }
        opts.timeout = std::time::Duration::from_secs(self.timeout.max(1));
        opts.credentials = match &self.creds {
            Some(c) => Some(parse_creds("--creds", c)?),
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

    /// The options for a transfer from `src` to `dst`: the common ones,
    /// `--parallel`, and each side's own settings for its registry host.
    pub fn transfer_options(
        &self,
        transfer: &TransferArgs,
        sides: &SideArgs,
        src: &str,
        dst: &str,
    ) -> CliResult<ClientOptions> {
        let mut opts = self.options()?;
        if let Some(n) = transfer.parallel {
            opts.parallel = n.max(1);
        }
        let src_host = registry_host(src);
        let dst_host = registry_host(dst);
        let src_opts = host_options(
            "src",
            &sides.src_creds,
            sides.src_tls_verify,
            &sides.src_cert_dir,
            sides.src_plain_http,
        )?;
        let dst_opts = host_options(
            "dest",
            &sides.dest_creds,
            sides.dest_tls_verify,
            &sides.dest_cert_dir,
            sides.dest_plain_http,
        )?;
        for (side, host, h) in [
            ("src", &src_host, &src_opts),
            ("dest", &dst_host, &dst_opts),
        ] {
            if h.is_some() && host.is_none() {
                return Err(usage(format!(
                    "--{side}-* options apply to a docker:// {}; {} is not one",
                    if side == "src" {
                        "source"
                    } else {
                        "destination"
                    },
                    if side == "src" { src } else { dst }
                )));
            }
        }
        if let (Some(s), Some(d)) = (&src_host, &dst_host) {
            if s == d && src_opts.is_some() && dst_opts.is_some() && src_opts != dst_opts {
                return Err(usage(format!(
                    "the source and the destination are both on {s}: give its settings once (--src-* or --dest-*, not different ones)"
                )));
            }
        }
        for (host, h) in [(src_host, src_opts), (dst_host, dst_opts)] {
            if let (Some(host), Some(h)) = (host, h) {
                opts.hosts.insert(host, h);
            }
        }
        Ok(opts)
    }
}

/// The registry host a transport string names, if it names a registry.
fn registry_host(s: &str) -> Option<String> {
    match s.parse::<Location>() {
        Ok(Location::Registry(r)) => Some(r.registry().to_ascii_lowercase()),
        _ => None,
    }
}
