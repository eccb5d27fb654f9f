//! `dockyard`: build, edit, copy and inspect container images without a daemon.

mod progress;
mod registry;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use dockyard_image::media::Compression;
use dockyard_image::tar::{LayerBuilder, LayerOptions};
use dockyard_image::transport::{read_image, write_image, ReadOptions};
use dockyard_image::{ConfigEdit, Error, Image, Location, Platform, Store};
use registry::RegistryArgs;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "dockyard",
    version,
    about = "Build, edit, copy and inspect container images without a Docker daemon"
)]
struct Cli {
    /// Log details to stderr (also: RUST_LOG=debug).
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pull an image from a registry into the local cache (and optionally to a file).
    Pull {
        /// e.g. busybox, ghcr.io/org/app:1, localhost:5000/x@sha256:…
        reference: String,
        #[arg(long)]
        platform: Option<String>,
        /// Keep every platform of a multi-platform image.
        #[arg(long)]
        all_platforms: bool,
        /// Also write a docker archive here.
        #[arg(
            short = 'o',
            long = "output",
            value_name = "OUT.tar",
            conflicts_with = "oci"
        )]
        output: Option<PathBuf>,
        /// Also write an OCI layout directory here.
        #[arg(long, value_name = "DIR")]
        oci: Option<PathBuf>,
    },
    /// Push an image (from any transport) to a registry.
    Push {
        /// e.g. docker-archive:app.tar, oci:DIR:tag, store:name
        src: String,
        /// e.g. localhost:5000/app:1 or docker://ghcr.io/org/app:1
        reference: String,
        /// Compression for layers held uncompressed: gzip (default) or zstd.
        #[arg(long, default_value = "gzip")]
        compression: String,
        /// Write the pushed manifest's digest to this file.
        #[arg(long, value_name = "FILE")]
        digestfile: Option<PathBuf>,
        /// Manifest format to write: oci or v2s2 (Docker schema 2); default: keep.
        #[arg(long, value_name = "oci|v2s2")]
        format: Option<String>,
    },
    /// List a repository's tags.
    Tags {
        /// e.g. localhost:5000/app
        repository: String,
        #[arg(long)]
        json: bool,
    },
    /// Check credentials against a registry and store them in the Docker config.
    Login {
        registry: String,
        #[arg(short = 'u', long)]
        username: String,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget a registry's stored credentials.
    Logout { registry: String },
    /// Copy an image between transports (docker://, docker-archive:, oci:, oci-archive:, store:).
    Copy {
        /// Source, e.g. docker-archive:in.tar, oci:DIR:tag, store:name:tag, scratch.
        src: String,
        /// Destination, e.g. docker-archive:out.tar:name:tag, oci:DIR:tag, oci-archive:out.tar.
        dst: String,
        /// Pick this platform from a multi-platform index (os/arch[/variant]).
        #[arg(long)]
        platform: Option<String>,
        /// With a docker:// source: copy every platform of an index.
        #[arg(long)]
        all_platforms: bool,
        /// Compression for layers pushed to a registry: gzip (default) or zstd.
        #[arg(long, default_value = "gzip")]
        compression: String,
        /// Manifest format to write: oci or v2s2 (Docker schema 2); default: keep.
        #[arg(long, value_name = "oci|v2s2")]
        format: Option<String>,
    },
    /// Edit an image's layers and config and write the result to DST.
    Mutate(Box<MutateArgs>),
    /// Show an image: digest, platform, layers, config.
    Inspect {
        src: String,
        /// Print the manifest exactly as stored.
        #[arg(long, conflicts_with_all = ["config", "json"])]
        raw: bool,
        /// Print the config exactly as stored.
        #[arg(long, conflicts_with = "json")]
        config: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        #[arg(long)]
        platform: Option<String>,
    },
    /// Write the flattened root filesystem (whiteouts applied) into DIR.
    Export {
        src: String,
        dir: PathBuf,
        #[arg(long)]
        platform: Option<String>,
    },
    /// The local image cache.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    /// List images in the cache.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove blobs no cached image uses.
    Prune,
    /// Forget an image name (its blobs go at the next prune).
    Rm { name: String },
    /// Print the cache directory.
    Dir,
}

#[derive(Args)]
struct MutateArgs {
    /// Source image (or `scratch` for an empty one).
    src: String,
    /// Destination.
    dst: String,
    /// Set an environment variable, replacing one of the same name (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Entrypoint: a JSON array, or words split on spaces.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Default command: a JSON array, or words split on spaces.
    #[arg(long)]
    cmd: Option<String>,
    #[arg(long)]
    workdir: Option<String>,
    #[arg(long)]
    user: Option<String>,
    /// Set a label (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Expose a port, e.g. 8080 or 53/udp (repeatable).
    #[arg(long, value_name = "PORT[/PROTO]")]
    expose: Vec<String>,
    /// Add a host file or directory at a path in the image, as one new layer
    /// (repeatable; all additions go into the same layer).
    #[arg(long, value_name = "HOSTPATH:IMAGEPATH")]
    add: Vec<String>,
    /// Delete a path of the lower layers (an OCI whiteout in the new layer).
    #[arg(long, value_name = "IMAGEPATH")]
    delete: Vec<String>,
    /// Remove the layer at index N (`--remove-layer=N`, 0 = base), or the top layer (`--remove-layer`).
    #[arg(
        long,
        value_name = "N",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "top"
    )]
    remove_layer: Vec<String>,
    /// Set the platform in the config (os/arch[/variant]); for `scratch`, the platform to start from.
    #[arg(long)]
    platform: Option<String>,
    /// Manifest format to write: oci or v2s2 (Docker schema 2); default: keep.
    #[arg(long, value_name = "oci|v2s2")]
    format: Option<String>,
}

/// An error with the exit code it deserves.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure {
            code: if e.is_user_error() { 1 } else { 2 },
            message: e.to_string(),
        }
    }
}

pub(crate) fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: message.into(),
    }
}

pub(crate) type CliResult<T = ()> = Result<T, Failure>;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are not errors; bad usage is a user error (1).
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let filter = if cli.verbose { "debug" } else { "warn" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("dockyard: error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn parse_platform(p: &Option<String>) -> CliResult<Option<Platform>> {
    p.as_deref()
        .map(str::parse::<Platform>)
        .transpose()
        .map_err(Failure::from)
}

fn location(s: &str) -> CliResult<Location> {
    s.parse::<Location>().map_err(Failure::from)
}

fn read(src: &str, platform: Option<Platform>, args: &RegistryArgs) -> CliResult<Image> {
    match location(src)? {
        Location::Registry(r) => {
            let bar = progress::for_terminal();
            Ok(registry::pull(&r, args, platform, false, bar.as_ref())?.image)
        }
        loc => {
            let opts = ReadOptions {
                platform,
                store_root: None,
            };
            Ok(read_image(&loc, &opts)?)
        }
    }
}

/// Convert to the manifest family asked for with --format.
fn apply_format(image: Image, format: &Option<String>) -> CliResult<Image> {
    match format.as_deref() {
        None => Ok(image),
        Some("oci") => Ok(image.with_manifest_family(false)?),
        Some("v2s2") | Some("docker") => Ok(image.with_manifest_family(true)?),
        Some(other) => Err(usage(format!("--format {other:?}: use oci or v2s2"))),
    }
}

/// The descriptor (mediaType, digest, size) the store holds under `name`.
fn stored_descriptor(store: &Store, name: &str) -> CliResult<Value> {
    let entry = store
        .list()?
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| usage(format!("{name}: not in the store after the pull")))?;
    Ok(json!({
        "mediaType": entry.media_type,
        "digest": entry.digest.to_string(),
        "size": entry.size,
    }))
}

fn parse_compression(s: &str) -> CliResult<Compression> {
    match s {
        "gzip" => Ok(Compression::Gzip),
        "zstd" => Ok(Compression::Zstd),
        "none" => Ok(Compression::None),
        other => Err(usage(format!(
            "--compression {other:?}: use gzip, zstd or none"
        ))),
    }
}

/// Write to any destination; returns the digest of what was written.
fn write(
    image: &Image,
    dst: &Location,
    args: &RegistryArgs,
    compression: Compression,
) -> CliResult<dockyard_image::Digest> {
    let bar = progress::for_terminal();
    match dst {
        Location::Registry(r) => {
            let pushed = registry::push(image, r, args, compression, bar)?;
            eprintln!(
                "pushed {}: {} blobs uploaded ({} bytes), {} mounted, {} already there",
                r,
                pushed.blobs_uploaded,
                pushed.bytes_uploaded,
                pushed.blobs_mounted,
                pushed.blobs_existing
            );
            Ok(pushed.digest)
        }
        other => Ok(write_image(image, other, None, bar.as_ref())?.digest()),
    }
}

fn run(cli: Cli) -> CliResult {
    let reg = cli.registry;
    match cli.command {
        Command::Pull {
            reference,
            platform,
            all_platforms,
            output,
            oci,
        } => {
            let r = registry::parse_reference(&reference)?;
            let bar = progress::for_terminal();
            let pulled = registry::pull(
                &r,
                &reg,
                parse_platform(&platform)?,
                all_platforms,
                bar.as_ref(),
            )?;
            eprintln!(
                "pulled {} ({} blobs, {} bytes fetched)",
                pulled.name, pulled.blobs_fetched, pulled.bytes_fetched
            );
            if let Some(out) = output {
                let dst = Location::DockerArchive {
                    path: out,
                    reference: Some(r.to_string()),
                };
                write_image(&pulled.image, &dst, None, bar.as_ref())?;
            }
            if let Some(dir) = oci {
                let dst = Location::OciDir {
                    path: dir,
                    reference: r.tag().map(str::to_string),
                };
                write_image(&pulled.image, &dst, None, bar.as_ref())?;
            }
            println!("{}", pulled.digest);
            Ok(())
        }
        Command::Push {
            src,
            reference,
            compression,
            digestfile,
            format,
        } => {
            let r = registry::parse_reference(&reference)?;
            let image = apply_format(read(&src, None, &reg)?, &format)?;
            let digest = write(
                &image,
                &Location::Registry(r),
                &reg,
                parse_compression(&compression)?,
            )?;
            if let Some(f) = digestfile {
                std::fs::write(&f, digest.to_string())
                    .map_err(|e| usage(format!("{}: {e}", f.display())))?;
            }
            println!("{digest}");
            Ok(())
        }
        Command::Tags { repository, json } => {
            let r = registry::parse_reference(&repository)?;
            let rt = registry::runtime()?;
            let client = registry::connect(&rt, r.registry(), &reg)?;
            let tags = rt.block_on(client.list_tags(r.repository()))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&tags).unwrap_or_default()
                );
            } else {
                for t in tags {
                    println!("{t}");
                }
            }
            Ok(())
        }
        Command::Login {
            registry: host,
            username,
            password_stdin,
        } => {
            if !password_stdin {
                return Err(usage("login needs --password-stdin (passwords on the command line leak into shell history)"));
            }
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .map_err(|e| usage(format!("reading the password from stdin: {e}")))?;
            let password = password.trim_end_matches(['\n', '\r']).to_string();
            if password.is_empty() {
                return Err(usage("empty password on stdin"));
            }
            let creds = dockyard_registry::Credentials { username, password };
            let mut args = reg.clone();
            args.creds = None;
            let mut opts = args.options()?;
            opts.credentials = Some(creds.clone());
            let host = host
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
            let rt = registry::runtime()?;
            let client = rt.block_on(dockyard_registry::Registry::connect(&host, opts))?;
            rt.block_on(client.verify_login(None))?;
            let path = dockyard_registry::auth::save_credentials(&host, &creds)?;
            eprintln!("login succeeded; credentials stored in {}", path.display());
            Ok(())
        }
        Command::Logout { registry: host } => {
            if dockyard_registry::auth::remove_credentials(&host)? {
                eprintln!("removed credentials for {host}");
                Ok(())
            } else {
                Err(usage(format!("not logged in to {host}")))
            }
        }
        Command::Copy {
            src,
            dst,
            platform,
            all_platforms,
            compression,
            format,
        } => {
            let dst = location(&dst)?;
            let image = match location(&src)? {
                Location::Registry(r) if all_platforms => {
                    let bar = progress::for_terminal();
                    let pulled =
                        registry::pull(&r, &reg, parse_platform(&platform)?, true, bar.as_ref())?;
                    match &dst {
                        // The store keeps the whole index under the pulled name; name it as asked too.
                        Location::Store(name) => {
                            let store = Store::open_default()?;
                            let mut root = stored_descriptor(&store, &pulled.name)?;
                            root["annotations"] = json!({ dockyard_image::transport::layout::REF_NAME: name.to_string() });
                            store.name_descriptor(&name.to_string(), root)?;
                            println!("{}", pulled.digest);
                            return Ok(());
                        }
                        Location::Registry(dst_ref) => {
                            let pushed = registry::push_index(&pulled.digest, dst_ref, &reg, bar)?;
                            eprintln!(
                                "pushed {dst_ref}: {} manifests, {} blobs uploaded ({} bytes), {} mounted, {} already there",
                                pushed.manifests, pushed.blobs_uploaded, pushed.bytes_uploaded, pushed.blobs_mounted, pushed.blobs_existing
                            );
                            println!("{}", pushed.digest);
                            return Ok(());
                        }
                        Location::OciDir { path, reference } => {
                            let store = Store::open_default()?;
                            let root = stored_descriptor(&store, &pulled.name)?;
                            store.copy_tree_to_layout(&root, path, reference.as_deref())?;
                            println!("{}", pulled.digest);
                            return Ok(());
                        }
                        _ => {
                            return Err(usage(
                                "--all-platforms copies to docker://, store: or oci: destinations",
                            ))
                        }
                    }
                }
                _ => read(&src, parse_platform(&platform)?, &reg)?,
            };
            let image = apply_format(image, &format)?;
            let digest = write(&image, &dst, &reg, parse_compression(&compression)?)?;
            println!("{digest}");
            Ok(())
        }
        Command::Mutate(args) => mutate(*args, &reg),
        Command::Inspect {
            src,
            raw,
            config,
            json,
            platform,
        } => {
            // Registry images are inspected without fetching their layers.
            let (top_raw, manifest_raw, config_raw) = match location(&src)? {
                Location::Registry(r) => {
                    let rt = registry::runtime()?;
                    let client = registry::connect(&rt, r.registry(), &reg)?;
                    let remote =
                        rt.block_on(client.inspect(&r, parse_platform(&platform)?.as_ref()))?;
                    (remote.top.bytes, remote.manifest.bytes, remote.config)
                }
                _ => {
                    let image = read(&src, parse_platform(&platform)?, &reg)?;
                    let m = image.manifest_raw().to_vec();
                    (m.clone(), m, image.config_raw().to_vec())
                }
            };
            let mut out = std::io::stdout().lock();
            let printed = if raw {
                out.write_all(&top_raw).and_then(|_| out.flush())
            } else if config {
                out.write_all(&config_raw).and_then(|_| out.flush())
            } else {
                let summary = summary(&src, &manifest_raw, &config_raw)?;
                if json {
                    writeln!(
                        out,
                        "{}",
                        serde_json::to_string_pretty(&summary).unwrap_or_default()
                    )
                } else {
                    print_summary(&summary);
                    Ok(())
                }
            };
            printed.map_err(|e| Failure {
                code: 2,
                message: format!("writing to stdout: {e}"),
            })
        }
        Command::Export { src, dir, platform } => {
            let image = read(&src, parse_platform(&platform)?, &reg)?;
            let bar = progress::for_terminal();
            let n = dockyard_run::export_rootfs(&image, &dir, bar.as_ref())?;
            eprintln!(
                "exported {n} layers of {} into {}",
                image.digest(),
                dir.display()
            );
            Ok(())
        }
        Command::Cache { command } => cache(command),
    }
}

fn parse_kv(s: &str, what: &str) -> CliResult<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(usage(format!("--{what} {s:?}: expected KEY=VALUE"))),
    }
}

fn parse_words(s: &str, what: &str) -> CliResult<Vec<String>> {
    if s.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<String>>(s)
            .map_err(|e| usage(format!("--{what}: not a JSON list of strings: {e}")))
    } else {
        Ok(s.split_whitespace().map(str::to_string).collect())
    }
}

fn mutate(args: MutateArgs, reg: &RegistryArgs) -> CliResult {
    let platform = parse_platform(&args.platform)?;
    let mut image = read(&args.src, platform.clone(), reg)?;
    let dst = location(&args.dst)?;
    for r in &args.remove_layer {
        image = if r == "top" {
            image.pop_layer()?
        } else {
            let i: usize = r
                .parse()
                .map_err(|_| usage(format!("--remove-layer {r:?}: expected a layer index")))?;
            image.remove_layer(i)?
        };
    }
    if !args.add.is_empty() || !args.delete.is_empty() {
        let mut builder = LayerBuilder::new(LayerOptions::default());
        let mut described = Vec::new();
        for spec in &args.add {
            let (host, dest) = spec
                .rsplit_once(':')
                .ok_or_else(|| usage(format!("--add {spec:?}: expected HOSTPATH:IMAGEPATH")))?;
            builder.add_path(std::path::Path::new(host), dest)?;
            described.push(format!(
                "ADD {} {dest}",
                std::path::Path::new(host)
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default()
            ));
        }
        for path in &args.delete {
            builder.delete(path)?;
            described.push(format!("DELETE {path}"));
        }
        let temp_dir = match &dst {
            Location::DockerArchive { path, .. }
            | Location::OciArchive { path, .. }
            | Location::OciDir { path, .. } => path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".")),
            _ => std::env::temp_dir(),
        };
        if !temp_dir.is_dir() {
            return Err(usage(format!(
                "{}: output directory does not exist",
                temp_dir.display()
            )));
        }
        let layer = builder.build(&temp_dir)?;
        image = image.append_layer(layer, &format!("dockyard mutate: {}", described.join("; ")));
    }
    let mut edits = Vec::new();
    for e in &args.env {
        let (k, v) = parse_kv(e, "env")?;
        edits.push(ConfigEdit::Env(k, v));
    }
    if let Some(e) = &args.entrypoint {
        edits.push(ConfigEdit::Entrypoint(parse_words(e, "entrypoint")?));
    }
    if let Some(c) = &args.cmd {
        edits.push(ConfigEdit::Cmd(parse_words(c, "cmd")?));
    }
    if let Some(w) = &args.workdir {
        edits.push(ConfigEdit::WorkingDir(w.clone()));
    }
    if let Some(u) = &args.user {
        edits.push(ConfigEdit::User(u.clone()));
    }
    for l in &args.label {
        let (k, v) = parse_kv(l, "label")?;
        edits.push(ConfigEdit::Label(k, v));
    }
    for p in &args.expose {
        edits.push(ConfigEdit::ExposedPort(p.clone()));
    }
    if !edits.is_empty() {
        image = image.with_config_edits(&edits);
    }
    if let (Some(p), false) = (&platform, args.src == "scratch") {
        image = image.with_platform(p);
    }
    let image = apply_format(image, &args.format)?;
    let digest = write(&image, &dst, reg, Compression::Gzip)?;
    println!("{digest}");
    Ok(())
}

fn summary(src: &str, manifest_raw: &[u8], config_raw: &[u8]) -> CliResult<Value> {
    use dockyard_image::image::{config_diff_ids, ManifestInfo};
    let manifest: Value =
        serde_json::from_slice(manifest_raw).map_err(|e| usage(format!("{src}: manifest: {e}")))?;
    let info = ManifestInfo::from_value(&format!("{src} manifest"), &manifest)?;
    let config: Value =
        serde_json::from_slice(config_raw).map_err(|e| usage(format!("{src}: config: {e}")))?;
    let diff_ids = config_diff_ids(&format!("{src} config"), &config)?;
    let c = config.get("config").cloned().unwrap_or(Value::Null);
    let pick = |k: &str| c.get(k).cloned().unwrap_or(Value::Null);
    let text = |k: &str| {
        config
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut platform = format!("{}/{}", text("os"), text("architecture"));
    if !text("variant").is_empty() {
        platform = format!("{platform}/{}", text("variant"));
    }
    let size = manifest_raw.len() as u64
        + config_raw.len() as u64
        + info.layers.iter().map(|l| l.size).sum::<u64>();
    Ok(json!({
        "source": src,
        "digest": dockyard_image::Digest::sha256_of(manifest_raw).to_string(),
        "mediaType": info.media_type,
        "platform": platform,
        "created": config.get("created").cloned().unwrap_or(Value::Null),
        "configDigest": info.config.digest.to_string(),
        "size": size,
        "layers": info.layers.iter().enumerate().map(|(i, l)| json!({
            "digest": l.digest.to_string(),
            "diffId": diff_ids.get(i).map(|d| d.to_string()),
            "size": l.size,
            "mediaType": l.media_type,
        })).collect::<Vec<_>>(),
        "config": {
            "Env": pick("Env"),
            "Entrypoint": pick("Entrypoint"),
            "Cmd": pick("Cmd"),
            "WorkingDir": pick("WorkingDir"),
            "User": pick("User"),
            "Labels": pick("Labels"),
            "ExposedPorts": pick("ExposedPorts"),
        },
    }))
}

fn human_size(n: u64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[i])
    }
}

fn print_summary(s: &Value) {
    let str_of = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    println!("Image:     {}", str_of(&s["source"]));
    println!("Digest:    {}", str_of(&s["digest"]));
    println!("MediaType: {}", str_of(&s["mediaType"]));
    println!("Platform:  {}", str_of(&s["platform"]));
    println!("Created:   {}", str_of(&s["created"]));
    println!("Config:    {}", str_of(&s["configDigest"]));
    println!("Size:      {}", human_size(s["size"].as_u64().unwrap_or(0)));
    let layers = s["layers"].as_array().cloned().unwrap_or_default();
    println!("Layers ({}, base first):", layers.len());
    for (i, l) in layers.iter().enumerate() {
        println!(
            "  {i:>3}  {}  {:>10}  {}",
            str_of(&l["digest"]),
            human_size(l["size"].as_u64().unwrap_or(0)),
            str_of(&l["mediaType"])
        );
    }
    for k in [
        "Env",
        "Entrypoint",
        "Cmd",
        "WorkingDir",
        "User",
        "Labels",
        "ExposedPorts",
    ] {
        let v = &s["config"][k];
        if !v.is_null() {
            println!("{:<12}{}", format!("{k}:"), str_of(v));
        }
    }
}

fn cache(command: CacheCommand) -> CliResult {
    let store = Store::open_default()?;
    match command {
        CacheCommand::Ls { json } => {
            let entries = store.list()?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&entries).unwrap_or_default()
                );
            } else if entries.is_empty() {
                eprintln!("the cache at {} holds no images", store.root().display());
            } else {
                for e in entries {
                    println!("{}  {}", e.digest, e.name);
                }
            }
        }
        CacheCommand::Prune => {
            let (n, bytes) = store.prune()?;
            println!("removed {n} unused blobs, {} freed", human_size(bytes));
        }
        CacheCommand::Rm { name } => {
            if !store.remove_name(&name)? {
                return Err(usage(format!("{name}: no such image in the cache")));
            }
        }
        CacheCommand::Dir => println!("{}", store.root().display()),
    }
    Ok(())
}
