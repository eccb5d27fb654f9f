//! `dockyard`: build, edit, copy and inspect container images without a daemon.

mod progress;
mod registry;
mod terminal;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use dockyard::{
    Compression, ConfigEdit, Dockyard, Format, LayerRemoval, Mutation, OpenOptions, Platform,
    WriteOptions, Written,
};
use registry::{RegistryArgs, SideArgs, TransferArgs};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "dockyard",
    version,
    about = "Build, edit, copy and inspect container images without a Docker daemon"
)]
struct Cli {
    /// Log each registry request (method, URL, status, auth used), retries
    /// and their reasons to stderr; never a secret (also: RUST_LOG=debug).
    #[arg(long, short, global = true, help_heading = "Global options")]
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
        /// From a multi-platform image, this platform (os/arch[/variant]; default: this host's).
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
        /// Manifest format of what -o/--oci write: oci or v2s2 (Docker schema 2);
        /// default: as the registry serves it, byte for byte (umoci and other
        /// OCI-only tools need --format oci for Docker images).
        #[arg(long, value_name = "oci|v2s2")]
        format: Option<String>,
        #[command(flatten)]
        transfer: TransferArgs,
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
        #[command(flatten)]
        transfer: TransferArgs,
        #[command(flatten)]
        sides: SideArgs,
    },
    /// List a repository's tags.
    Tags {
        /// e.g. localhost:5000/app
        repository: String,
        /// Print the tags as a JSON list.
        #[arg(long)]
        json: bool,
    },
    /// Check credentials against a registry and store them as Docker does:
    /// through the config's credential helper (credsStore/credHelpers) when
    /// it names one, else in its `auths`. On a terminal, asks for what is
    /// not given (the password without echo).
    Login {
        /// The registry host, e.g. ghcr.io or localhost:5000 (https://HOST/ and docker.io are accepted).
        registry: String,
        /// The user name (asked for on a terminal when not given).
        #[arg(short = 'u', long)]
        username: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Forget a registry's stored credentials.
    Logout {
        /// The registry host, as given to login.
        registry: String,
    },
    /// Copy an image between transports (docker://, docker-archive:, oci:, oci-archive:, store:).
    Copy {
        /// Source, e.g. docker-archive:in.tar, oci:DIR:tag, store:name:tag, scratch.
        src: String,
        /// Destination, e.g. docker-archive:out.tar:name:tag, oci:DIR:tag, oci-archive:out.tar.
        dst: String,
        /// Pick this platform from a multi-platform index (os/arch[/variant]).
        #[arg(long)]
        platform: Option<String>,
        /// Copy every platform of a multi-platform index (any source).
        #[arg(long)]
        all_platforms: bool,
        /// Compression for layers pushed to a registry: gzip (default) or zstd.
        #[arg(long, default_value = "gzip")]
        compression: String,
        /// Manifest format to write: oci or v2s2 (Docker schema 2); default: keep.
        #[arg(long, value_name = "oci|v2s2")]
        format: Option<String>,
        #[command(flatten)]
        transfer: TransferArgs,
        #[command(flatten)]
        sides: SideArgs,
    },
    /// Edit an image's layers and config and write the result to DST.
    Mutate(Box<MutateArgs>),
    /// Build a conda environment into an image: one layer per package
    /// (reused across rebuilds and images), solved and installed without a
    /// daemon. `build env.yml` reads a spec (environment.yml plus an
    /// `image:` section); `build --channel C [--base B] PACKAGE...` builds
    /// the same without a file.
    Build(Box<BuildArgs>),
    /// Show an image: digest, platform, layers, config.
    Inspect {
        /// The image, e.g. docker://REF, docker-archive:app.tar, oci:DIR:tag, store:name.
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
        /// From a multi-platform image, this platform (os/arch[/variant]; default: this host's).
        #[arg(long)]
        platform: Option<String>,
    },
    /// Write the flattened root filesystem (whiteouts applied) into DIR:
    /// modes and mtimes as the layers give them; owners too when run as root,
    /// else files belong to you and lose setuid/setgid bits.
    Export {
        /// The image, e.g. docker-archive:app.tar, oci:DIR:tag, docker://REF.
        src: String,
        /// The directory to create (must not exist, or be empty).
        dir: PathBuf,
        /// From a multi-platform image, this platform (os/arch[/variant]).
        #[arg(long)]
        platform: Option<String>,
        /// Keep setuid/setgid bits even when not running as root.
        #[arg(long)]
        keep_setuid: bool,
        #[command(flatten)]
        transfer: TransferArgs,
    },
    /// Run a command in an image without a daemon: the image is unpacked
    /// once into a cached rootfs (read-only; /tmp is writable) and run with
    /// bubblewrap, else runc, else chroot (as root) — or by Docker with
    /// --docker. Exits with the command's exit code.
    Run {
        /// The image, e.g. docker-archive:app.tar, oci:DIR:tag, docker://REF.
        src: String,
        /// The command and its arguments (default: the image's Entrypoint and Cmd).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
        /// Set an environment variable (KEY=VALUE), repeatable.
        #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// The working directory inside the image.
        #[arg(short = 'w', long)]
        workdir: Option<String>,
        /// USER[:GROUP], by name or number.
        #[arg(short = 'u', long)]
        user: Option<String>,
        /// Replace the image's Entrypoint (its Cmd is then dropped, as Docker does).
        #[arg(long)]
        entrypoint: Option<String>,
        /// Bind a host path into the container: HOST:PATH[:ro], repeatable.
        #[arg(long = "mount", value_name = "HOST:PATH[:ro]")]
        mounts: Vec<String>,
        /// none (only loopback, the default) or host.
        #[arg(long, default_value = "none")]
        network: String,
        /// auto (bwrap, else runc, else chroot as root), bwrap, runc, chroot or docker.
        #[arg(long, default_value = "auto")]
        runtime: String,
        /// Hand the image to a Docker daemon (docker load + docker run): --runtime docker.
        #[arg(long, conflicts_with = "runtime")]
        docker: bool,
        /// From a multi-platform image, this platform (os/arch[/variant]).
        #[arg(long)]
        platform: Option<String>,
        #[command(flatten)]
        transfer: TransferArgs,
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
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove blobs no cached image uses.
    Prune,
    /// Forget an image name (its blobs go at the next prune).
    Rm {
        /// The name, as `cache ls` prints it.
        name: String,
    },
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
    /// Entrypoint: a JSON array (exec form), or a string run by /bin/sh -c (shell form).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Default command: a JSON array (exec form), or a string run by /bin/sh -c (shell form).
    #[arg(long)]
    cmd: Option<String>,
    /// Working directory of the container's process.
    #[arg(long)]
    workdir: Option<String>,
    /// User (and group) the container's process runs as, e.g. 1000:1000 or app.
    #[arg(long)]
    user: Option<String>,
    /// Set a label (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Expose a port: 80, 80/tcp, 53/udp, 8000-8010/tcp (repeatable).
    #[arg(long, value_name = "PORT[/PROTO]")]
    expose: Vec<String>,
    /// Add host files as one new layer (repeatable), as Dockerfile COPY does:
    /// FILE:/dir/ or FILE:/dir where /dir is a directory in the image puts
    /// the file at /dir/FILE (symlinked directories are followed), FILE:/path
    /// otherwise writes /path; DIR:/dest copies DIR's contents into /dest.
    #[arg(long, value_name = "HOSTPATH:IMAGEPATH")]
    add: Vec<String>,
    /// Delete a path of the lower layers (an OCI whiteout in the new layer);
    /// a path the image does not have is a warning.
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
    #[command(flatten)]
    transfer: TransferArgs,
    #[command(flatten)]
    sides: SideArgs,
}

#[derive(Args)]
struct BuildArgs {
    /// The spec file (environment.yml with an `image:` section), or, with
    /// --channel, the packages (conda match specs, e.g. numpy 'python=3.12').
    #[arg(required = true, value_name = "SPEC | PACKAGE")]
    args: Vec<String>,
    /// Write a docker archive here.
    #[arg(short = 'o', long = "output", value_name = "OUT.tar", conflicts_with_all = ["oci", "push"])]
    output: Option<PathBuf>,
    /// Write an OCI layout directory here.
    #[arg(long, value_name = "DIR", conflicts_with = "push")]
    oci: Option<PathBuf>,
    /// Push to this registry reference.
    #[arg(long, value_name = "REF", conflicts_with = "dest")]
    push: Option<String>,
    /// Write to this destination, as `copy` takes one: docker://REF,
    /// docker-archive:OUT.tar[:NAME:TAG], oci:DIR[:TAG], oci-archive:OUT.tar[:TAG],
    /// store:NAME[:TAG].
    #[arg(long, value_name = "DEST", conflicts_with_all = ["output", "oci"])]
    dest: Option<String>,
    /// Compression of the layers when pushed: gzip (default) or zstd.
    #[arg(long, default_value = "gzip")]
    compression: String,
    /// Manifest format to write: oci or v2s2 (Docker schema 2); default: oci.
    #[arg(long, value_name = "oci|v2s2")]
    format: Option<String>,
    /// The conda platform to build for (linux-64, linux-aarch64, …).
    #[arg(long, value_name = "SUBDIR")]
    platform: Option<String>,
    /// Also write the SBOM (SPDX 2.3 JSON) here.
    #[arg(long, value_name = "PATH")]
    sbom: Option<PathBuf>,
    /// Use only cached channel repodata (no network).
    #[arg(long)]
    offline: bool,
    /// Install exactly the lock file beside the spec (SPEC.lock), without
    /// solving; an error if the spec asks for what the lock lacks.
    #[arg(long)]
    locked: bool,
    /// A channel (name, URL or directory); with it, the arguments are packages (repeatable).
    #[arg(short = 'c', long = "channel", value_name = "CHANNEL")]
    channel: Vec<String>,
    /// The base image (any source dockyard reads), over the spec's (default scratch).
    #[arg(short = 'b', long, value_name = "IMAGE")]
    base: Option<String>,
    /// Where the environment lives in the image, over the spec's (default /opt/conda).
    #[arg(long, value_name = "PATH")]
    prefix: Option<String>,
    /// The image name (NAME[:TAG]) for -o and the store, over the spec's.
    #[arg(short = 'i', long = "image", value_name = "NAME")]
    image: Option<String>,
    #[command(flatten)]
    transfer: TransferArgs,
    #[command(flatten)]
    sides: SideArgs,
}

/// Print a line on stdout. A closed stdout (`dockyard cache ls | head -1`)
/// ends dockyard quietly with exit 0, as it would `cat`: the reader has
/// what it wanted.
macro_rules! out {
    ($($t:tt)*) => {
        print_line(format_args!($($t)*))
    };
}

fn print_line(args: std::fmt::Arguments) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = writeln!(stdout, "{args}") {
        stdout_failed(e);
    }
}

fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("dockyard: error: writing to stdout: {e}");
    std::process::exit(2);
}

/// An error with the exit code it deserves.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl From<dockyard::Error> for Failure {
    fn from(e: dockyard::Error) -> Self {
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

/// Ctrl-C (SIGINT) or SIGTERM: remove this run's temporary files, then
/// end with the shell's code for the signal (130, 143).
fn remove_temp_files_on_signals() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        std::thread::spawn(move || {
            for signal in signals.forever() {
                // A command in the foreground gets the signal (Ctrl-C reaches
                // it from the terminal; SIGTERM is passed on; a runc
                // container is killed); dockyard then ends with its exit code.
                if dockyard::interrupt_foreground(signal) {
                    continue;
                }
                terminal::restore();
                dockyard::remove_temp_files();
                std::process::exit(128 + signal);
            }
        });
    }
}

/// Two malloc arenas, set before any thread starts. glibc gives each
/// thread that allocates an arena of its own (up to 8 per core) and keeps
/// what is freed there: with the dozens of blocking threads a transfer or
/// a conda install starts, that retained memory, not live data, was most
/// of the peak RSS (a 50-package build and push: 106 MB → 42 MB, same time).
fn limit_malloc_arenas() {
    // SAFETY: mallopt only changes allocator tuning; called before threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    remove_temp_files_on_signals();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are not errors; bad usage is a user error (1).
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // -v is dockyard's own account; RUST_LOG=debug adds the HTTP stack's.
    let filter = if cli.verbose {
        "warn,dockyard=debug,dockyard_registry=debug,dockyard_image=debug,dockyard_run=debug"
    } else {
        "warn"
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, never into a log file or pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.message.is_empty() {
                eprintln!("dockyard: error: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

fn parse_platform(p: &Option<String>) -> CliResult<Option<Platform>> {
    p.as_deref()
        .map(str::parse::<Platform>)
        .transpose()
        .map_err(|e| Failure::from(dockyard::Error::Image(e)))
}

fn parse_format(format: &Option<String>) -> CliResult<Option<Format>> {
    format
        .as_deref()
        .map(|f| {
            f.parse::<Format>()
                .map_err(|e| usage(format!("--format {e}")))
        })
        .transpose()
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

/// Tell the user what a registry transfer did.
fn report_transfer(dst: &str, written: &Written) {
    if let Some(t) = &written.transfer {
        let manifests = if t.manifests > 0 {
            format!("{} manifests, ", t.manifests)
        } else {
            String::new()
        };
        eprintln!(
            "pushed {dst}: {manifests}{} blobs uploaded ({} bytes), {} mounted, {} already there",
            t.blobs_uploaded, t.bytes_uploaded, t.blobs_mounted, t.blobs_existing
        );
    }
}

fn facade(reg: &RegistryArgs) -> CliResult<Dockyard> {
    facade_with(reg.options()?)
}

fn facade_with(registry: dockyard::ClientOptions) -> CliResult<Dockyard> {
    Ok(Dockyard::new(dockyard::Options {
        store_root: None,
        registry,
        progress: progress::for_terminal(),
    }))
}

/// The facade for a transfer from `src` to `dst` (`--parallel`, and the
/// `--src-*`/`--dest-*` settings of each side's registry).
fn transfer_facade(
    reg: &RegistryArgs,
    transfer: &TransferArgs,
    sides: &SideArgs,
    src: &str,
    dst: &str,
) -> CliResult<Dockyard> {
    facade_with(reg.transfer_options(transfer, sides, src, dst)?)
}

fn run(cli: Cli) -> CliResult {
    let reg = cli.registry;
    let dy = facade(&reg)?;
    match cli.command {
        Command::Pull {
            reference,
            platform,
            all_platforms,
            output,
            oci,
            format,
            transfer,
        } => {
            let dy = transfer_facade(&reg, &transfer, &SideArgs::default(), "", "")?;
            let r = dockyard::parse_registry_reference(&reference)?;
            let write = WriteOptions {
                format: parse_format(&format)?,
                ..WriteOptions::default()
            };
            let open = OpenOptions {
                platform: parse_platform(&platform)?,
                all_platforms,
            };
            let pulled = dy.pull(&reference, &open)?;
            eprintln!(
                "pulled {} ({} blobs, {} bytes fetched)",
                pulled.name, pulled.blobs_fetched, pulled.bytes_fetched
            );
            if let Some(out) = output {
                let dst = dockyard::Location::DockerArchive {
                    path: out,
                    reference: Some(r.to_string()),
                };
                dy.write(&pulled.manifest, &dst.to_string(), &write)?;
            }
            if let Some(dir) = oci {
                let dst = dockyard::Location::OciDir {
                    path: dir,
                    reference: r.tag().map(str::to_string),
                };
                dy.write(&pulled.manifest, &dst.to_string(), &write)?;
            }
            out!("{}", pulled.digest);
            Ok(())
        }
        Command::Push {
            src,
            reference,
            compression,
            digestfile,
            format,
            transfer,
            sides,
        } => {
            let r = dockyard::parse_registry_reference(&reference)?;
            let dst = format!("docker://{r}");
            let dy = transfer_facade(&reg, &transfer, &sides, &src, &dst)?;
            let write = WriteOptions {
                compression: parse_compression(&compression)?,
                format: parse_format(&format)?,
                ..WriteOptions::default()
            };
            // A push sends what the source holds: a whole index stays whole.
            let open = OpenOptions {
                platform: None,
                all_platforms: true,
            };
            let written = dy.copy(&src, &dst, &open, &write)?;
            report_transfer(&dst, &written);
            if let Some(f) = digestfile {
                std::fs::write(&f, written.digest.to_string())
                    .map_err(|e| usage(format!("{}: {e}", f.display())))?;
            }
            out!("{}", written.digest);
            Ok(())
        }
        Command::Tags { repository, json } => {
            let tags = dy.tags(&repository)?;
            if json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&tags).unwrap_or_default()
                );
            } else {
                for t in tags {
                    out!("{t}");
                }
            }
            Ok(())
        }
        Command::Login {
            registry: host,
            username,
            password_stdin,
        } => {
            let asking = !password_stdin && terminal::stdin_is_terminal();
            if !password_stdin && !asking {
                return Err(usage("login needs --password-stdin when standard input is not a terminal (passwords on the command line leak into shell history)"));
            }
            let username = match username {
                Some(u) => u,
                None if asking => terminal::ask("Username: ")
                    .map_err(|e| usage(format!("reading the user name: {e}")))?,
                None => return Err(usage("login needs -u USER with --password-stdin")),
            };
            if username.is_empty() {
                return Err(usage("empty user name"));
            }
            let password = if asking {
                terminal::ask_secret("Password: ")
            } else {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map(|_| line.trim_end_matches(['\n', '\r']).to_string())
            }
            .map_err(|e| usage(format!("reading the password: {e}")))?;
            if password.is_empty() {
                return Err(usage("empty password"));
            }
            // Only the credentials being checked are sent, not --creds.
            let mut args = reg.clone();
            args.creds = None;
            let dy = facade(&args)?;
            let saved = dy.login(&host, dockyard::Credentials { username, password })?;
            eprintln!("login succeeded; credentials stored in {saved}");
            Ok(())
        }
        Command::Logout { registry: host } => {
            if dy.logout(&host)? {
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
            transfer,
            sides,
        } => {
            let dy = transfer_facade(&reg, &transfer, &sides, &src, &dst)?;
            let open = OpenOptions {
                platform: parse_platform(&platform)?,
                all_platforms,
            };
            let write = WriteOptions {
                compression: parse_compression(&compression)?,
                format: parse_format(&format)?,
                ..WriteOptions::default()
            };
            let written = dy.copy(&src, &dst, &open, &write)?;
            report_transfer(&dst, &written);
            out!("{}", written.digest);
            Ok(())
        }
        Command::Build(args) => build(&reg, *args),
        Command::Mutate(args) => {
            let dy = transfer_facade(&reg, &args.transfer, &args.sides, &args.src, &args.dst)?;
            mutate(&dy, *args)
        }
        Command::Inspect {
            src,
            raw,
            config,
            json,
            platform,
        } => {
            let platform = parse_platform(&platform)?;
            let inspection = dy.inspect(&src, platform.as_ref())?;
            let mut out = std::io::stdout().lock();
            let printed = if raw {
                // The index unless --platform picks one of its images.
                let bytes = match (&platform, &inspection.manifest_raw) {
                    (Some(_), Some(picked)) => picked,
                    _ => &inspection.top_raw,
                };
                out.write_all(bytes).and_then(|_| out.flush())
            } else if config {
                match &inspection.config_raw {
                    Some(c) => out.write_all(c).and_then(|_| out.flush()),
                    None if inspection.manifest_raw.is_none() => {
                        return Err(usage(format!(
                        "{src} is an index with no image for this host: pick one with --platform"
                    )))
                    }
                    None => {
                        return Err(usage(format!(
                            "{src} is an artifact: it has no image config (see inspect --raw)"
                        )))
                    }
                }
            } else {
                let summary = inspection.summary()?;
                if json {
                    writeln!(
                        out,
                        "{}",
                        serde_json::to_string_pretty(&summary).unwrap_or_default()
                    )
                } else {
                    print_summary(&mut out, &summary)
                }
            };
            printed.or_else(|e| stdout_failed(e))
        }
        Command::Export {
            src,
            dir,
            platform,
            keep_setuid,
            transfer,
        } => {
            let dy = transfer_facade(&reg, &transfer, &SideArgs::default(), &src, "")?;
            let options = dockyard::ExportOptions { keep_setuid };
            let (image, n) =
                dy.export_with(&src, &dir, parse_platform(&platform)?.as_ref(), &options)?;
            eprintln!(
                "exported {n} layers of {} into {}",
                image.digest(),
                dir.display()
            );
            Ok(())
        }
        Command::Run {
            src,
            command,
            env,
            workdir,
            user,
            entrypoint,
            mounts,
            network,
            runtime,
            docker,
            platform,
            transfer,
        } => {
            let dy = transfer_facade(&reg, &transfer, &SideArgs::default(), &src, "")?;
            let opts = dockyard::RunOptions {
                command,
                entrypoint: entrypoint.map(|e| vec![e]),
                env: env
                    .iter()
                    .map(|kv| parse_kv(kv, "env"))
                    .collect::<CliResult<_>>()?,
                workdir,
                user,
                mounts: mounts
                    .iter()
                    .map(|m| m.parse().map_err(|e| usage(format!("--mount {e}"))))
                    .collect::<CliResult<_>>()?,
                network: network
                    .parse()
                    .map_err(|e| usage(format!("--network {e}")))?,
                runtime: if docker {
                    dockyard::Runtime::Docker
                } else {
                    runtime
                        .parse()
                        .map_err(|e| usage(format!("--runtime {e}")))?
                },
                capture: false,
            };
            let out = dy.run(&src, parse_platform(&platform)?.as_ref(), &opts)?;
            if out.code != 0 {
                // The command's own code, with nothing added to its output.
                return Err(Failure {
                    code: u8::try_from(out.code).unwrap_or(1),
                    message: String::new(),
                });
            }
            Ok(())
        }
        Command::Cache { command } => cache(&dy, command),
    }
}

fn parse_kv(s: &str, what: &str) -> CliResult<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(usage(format!("--{what} {s:?}: expected KEY=VALUE"))),
    }
}

fn mutate(dy: &Dockyard, args: MutateArgs) -> CliResult {
    let platform = parse_platform(&args.platform)?;
    // Fail on a bad destination before building anything.
    dy.location(&args.dst)?;
    let mut mutation = Mutation {
        platform: platform.clone(),
        ..Mutation::default()
    };
    for r in &args.remove_layer {
        mutation.remove_layers.push(if r == "top" {
            LayerRemoval::Top
        } else {
            LayerRemoval::At(
                r.parse()
                    .map_err(|_| usage(format!("--remove-layer {r:?}: expected a layer index")))?,
            )
        });
    }
    for spec in &args.add {
        let (host, dest) = spec
            .rsplit_once(':')
            .ok_or_else(|| usage(format!("--add {spec:?}: expected HOSTPATH:IMAGEPATH")))?;
        mutation.add.push((PathBuf::from(host), dest.to_string()));
    }
    mutation.delete = args.delete.clone();
    for e in &args.env {
        let (k, v) = parse_kv(e, "env")?;
        mutation.config.push(ConfigEdit::Env(k, v));
    }
    if let Some(e) = &args.entrypoint {
        mutation.config.push(ConfigEdit::Entrypoint(
            dockyard::command(e).map_err(dockyard::Error::Image)?,
        ));
    }
    if let Some(c) = &args.cmd {
        mutation.config.push(ConfigEdit::Cmd(
            dockyard::command(c).map_err(dockyard::Error::Image)?,
        ));
    }
    if let Some(w) = &args.workdir {
        mutation.config.push(ConfigEdit::WorkingDir(w.clone()));
    }
    if let Some(u) = &args.user {
        mutation.config.push(ConfigEdit::User(u.clone()));
    }
    for l in &args.label {
        let (k, v) = parse_kv(l, "label")?;
        mutation.config.push(ConfigEdit::Label(k, v));
    }
    for p in &args.expose {
        dockyard::exposed_ports(p).map_err(dockyard::Error::Image)?;
        mutation.config.push(ConfigEdit::ExposedPort(p.clone()));
    }
    mutation.docker_format = parse_format(&args.format)?.map(|f| f == Format::Docker);
    let image = dy.mutate(&args.src, &mutation)?;
    let written = dy.write(&image.into(), &args.dst, &WriteOptions::default())?;
    report_transfer(&args.dst, &written);
    out!("{}", written.digest);
    Ok(())
}

impl From<dockyard_conda::Error> for Failure {
    fn from(e: dockyard_conda::Error) -> Self {
        Failure {
            code: if e.is_user_error() { 1 } else { 2 },
            message: e.to_string(),
        }
    }
}

fn build(reg: &RegistryArgs, args: BuildArgs) -> CliResult {
    let mut spec = if args.channel.is_empty() {
        if args.args.len() != 1 {
            return Err(usage(
                "build takes one spec file, or packages with --channel (e.g. build -c ./channel numpy)",
            ));
        }
        dockyard_conda::Spec::read(std::path::Path::new(&args.args[0]))?
    } else {
        dockyard_conda::Spec::from_command_line(&args.channel, &args.args)?
    };
    spec.set_overrides(&dockyard_conda::SpecOverrides {
        base: args.base.clone(),
        prefix: args.prefix.clone(),
        image: args.image.clone(),
    });
    let name = spec
        .image
        .name
        .clone()
        .or_else(|| spec.name.clone())
        .unwrap_or_else(|| "conda-env".into());
    let tag = spec.image.tag.clone().unwrap_or_else(|| "latest".into());
    let destination = if let Some(out) = &args.output {
        Some(format!("docker-archive:{}:{name}:{tag}", out.display()))
    } else if let Some(dir) = &args.oci {
        Some(format!("oci:{}:{tag}", dir.display()))
    } else if let Some(dest) = &args.dest {
        Some(dest.clone())
    } else {
        args.push
            .as_ref()
            .map(|r| format!("docker://{}", r.strip_prefix("docker://").unwrap_or(r)))
    };
    // --src-*/--dest-* apply to the base's registry and the destination's.
    let base = spec.image.base.clone().unwrap_or_default();
    let dy = &transfer_facade(
        reg,
        &args.transfer,
        &args.sides,
        &base,
        destination.as_deref().unwrap_or(""),
    )?;
    let built = dockyard_conda::build(
        dy,
        &spec,
        &dockyard_conda::BuildOptions {
            destination,
            platform: args.platform.clone(),
            offline: args.offline,
            sbom: args.sbom.clone(),
            locked: args.locked,
            progress_bars: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            write: WriteOptions {
                compression: parse_compression(&args.compression)?,
                format: parse_format(&args.format)?,
                ..WriteOptions::default()
            },
        },
    )?;
    let reused = built.layers.iter().filter(|l| l.reused).count();
    eprintln!(
        "built {} packages in {} layers ({} reused, {} new) + 1 top layer → {}",
        built.records.len(),
        built.layers.len(),
        reused,
        built.layers.len() - reused,
        built.destination
    );
    if !built.post_link.is_empty() {
        eprintln!(
            "warning: post-link scripts were not run: {}",
            built.post_link.join(", ")
        );
    }
    report_transfer(&built.destination, &built.written);
    out!("{}", built.written.digest);
    Ok(())
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

fn print_summary(out: &mut impl Write, s: &Value) -> std::io::Result<()> {
    let str_of = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    writeln!(out, "Image:     {}", str_of(&s["source"]))?;
    if let Some(index) = s.get("index") {
        writeln!(
            out,
            "Index:     {} ({})",
            str_of(&index["digest"]),
            str_of(&index["mediaType"])
        )?;
        for m in index["manifests"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "  {:<22} {}",
                str_of(&m["platform"]),
                str_of(&m["digest"])
            )?;
        }
    }
    if let Some(note) = s.get("note") {
        writeln!(out, "Note:      {}", str_of(note))?;
        return Ok(());
    }
    writeln!(out, "Digest:    {}", str_of(&s["digest"]))?;
    writeln!(out, "MediaType: {}", str_of(&s["mediaType"]))?;
    if s["kind"] == "artifact" {
        writeln!(out, "Artifact:  {}", str_of(&s["artifactType"]))?;
        if let Some(subject) = s.get("subject") {
            writeln!(out, "Subject:   {}", str_of(&subject["digest"]))?;
        }
        writeln!(
            out,
            "Size:      {}",
            human_size(s["size"].as_u64().unwrap_or(0))
        )?;
        let blobs = s["blobs"].as_array().cloned().unwrap_or_default();
        writeln!(out, "Blobs ({}):", blobs.len())?;
        for b in &blobs {
            writeln!(
                out,
                "  {}  {:>10}  {}",
                str_of(&b["digest"]),
                human_size(b["size"].as_u64().unwrap_or(0)),
                str_of(&b["mediaType"])
            )?;
        }
        return Ok(());
    }
    writeln!(out, "Platform:  {}", str_of(&s["platform"]))?;
    writeln!(out, "Created:   {}", str_of(&s["created"]))?;
    writeln!(out, "Config:    {}", str_of(&s["configDigest"]))?;
    writeln!(
        out,
        "Size:      {}",
        human_size(s["size"].as_u64().unwrap_or(0))
    )?;
    let layers = s["layers"].as_array().cloned().unwrap_or_default();
    writeln!(out, "Layers ({}, base first):", layers.len())?;
    for (i, l) in layers.iter().enumerate() {
        writeln!(
            out,
            "  {i:>3}  {}  {:>10}  {}",
            str_of(&l["digest"]),
            human_size(l["size"].as_u64().unwrap_or(0)),
            str_of(&l["mediaType"])
        )?;
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
            writeln!(out, "{:<12}{}", format!("{k}:"), str_of(v))?;
        }
    }
    Ok(())
}

fn cache(dy: &Dockyard, command: CacheCommand) -> CliResult {
    match command {
        CacheCommand::Ls { json } => {
            let entries = dy.cache_list()?;
            if json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&entries).unwrap_or_default()
                );
            } else if entries.is_empty() {
                eprintln!("the cache at {} holds no images", dy.store_root().display());
            } else {
                for e in entries {
                    out!("{}  {}", e.digest, e.name);
                }
            }
        }
        CacheCommand::Prune => {
            let (n, bytes) = dy.cache_prune()?;
            out!("removed {n} unused blobs, {} freed", human_size(bytes));
        }
        CacheCommand::Rm { name } => {
            if !dy.cache_remove(&name)? {
                return Err(usage(format!("{name}: no such image in the cache")));
            }
        }
        CacheCommand::Dir => out!("{}", dy.store_root().display()),
    }
    Ok(())
}
