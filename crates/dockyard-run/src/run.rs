//! Run a command in an image without a daemon.
//!
//! The image is flattened once into a cached root filesystem in the store
//! (`STORE/rootfs/KEY`, KEY derived from the layers' diff_ids and from
//! whether the export ran as root), which is mounted read-only; `/tmp` is
//! a fresh tmpfs and `/proc`, `/dev` are the sandbox's own. The process is
//! set up as Docker would from the config (Entrypoint/Cmd, Env, WorkingDir,
//! User) and started by the first runtime present: bubblewrap (rootless),
//! runc with a generated bundle, or chroot in new namespaces when root.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};

use dockyard_image::error::IoContext;
use dockyard_image::progress::Progress;
use dockyard_image::Image;
use sha2::{Digest as _, Sha256};

/// How the command is started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Runtime {
    /// bubblewrap, else runc, else chroot (as root).
    #[default]
    Auto,
    Bwrap,
    Runc,
    Chroot,
    /// Hand the image to a Docker daemon (`docker load` + `docker run`).
    Docker,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Auto => "auto",
            Runtime::Bwrap => "bwrap",
            Runtime::Runc => "runc",
            Runtime::Chroot => "chroot",
            Runtime::Docker => "docker",
        }
    }
}

impl std::str::FromStr for Runtime {
    type Err = String;
    fn from_str(s: &str) -> Result<Runtime, String> {
        Ok(match s {
            "auto" => Runtime::Auto,
            "bwrap" | "bubblewrap" => Runtime::Bwrap,
            "runc" => Runtime::Runc,
            "chroot" => Runtime::Chroot,
            "docker" => Runtime::Docker,
            other => {
                return Err(format!(
                    "{other:?}: use auto, bwrap, runc, chroot or docker"
                ))
            }
        })
    }
}

/// The network the command sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// Only a loopback interface.
    #[default]
    None,
    /// The host's network.
    Host,
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Network, String> {
        match s {
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            other => Err(format!("{other:?}: use none or host")),
        }
    }
}

/// A host path bound into the container: `HOST:PATH[:ro]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    /// Absolute path inside the image.
    pub target: String,
    pub read_only: bool,
}

impl std::str::FromStr for Mount {
    type Err = String;
    fn from_str(s: &str) -> Result<Mount, String> {
        let (rest, read_only) = match s.strip_suffix(":ro") {
            Some(r) => (r, true),
            None => (s.strip_suffix(":rw").unwrap_or(s), false),
        };
        let (host, target) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?}: expected HOST:PATH[:ro]"))?;
        if host.is_empty() {
            return Err(format!("{s:?}: the host path is empty"));
        }
        if !target.starts_with('/') || target.split('/').any(|c| c == "..") {
            return Err(format!(
                "{s:?}: the image path must be absolute and without '..'"
            ));
        }
        Ok(Mount {
            host: PathBuf::from(host),
            target: target.to_string(),
            read_only,
        })
    }
}

/// What to run and how.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Replaces the image's Cmd (empty: keep it).
    pub command: Vec<String>,
    /// Replaces the image's Entrypoint (and then drops its Cmd, as Docker does).
    pub entrypoint: Option<Vec<String>>,
    /// Set or override variables of the image's Env.
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    /// `USER[:GROUP]`, names or numbers (default: the image's User).
    pub user: Option<String>,
    pub mounts: Vec<Mount>,
    pub network: Network,
    pub runtime: Runtime,
    /// Collect stdout and stderr instead of passing them through.
    pub capture: bool,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// The runtime that ran it.
    pub runtime: Runtime,
    /// The command's exit code (128 + N when killed by signal N).
    pub code: i32,
    /// Empty unless `capture`.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Image(#[from] dockyard_image::Error),

    #[error(
        "{image}: nothing to run: the image has no Entrypoint or Cmd and no command was given"
    )]
    NoCommand { image: String },

    #[error("user {user:?}: {reason}")]
    User { user: String, reason: String },

    #[error("working directory {path:?}: {reason}")]
    Workdir { path: String, reason: String },

    #[error("--mount {host}: {reason}")]
    Mount { host: PathBuf, reason: String },

    #[error("no runtime to run the image: install bubblewrap (bwrap) or runc, run as root (chroot), or pass --docker")]
    NoRuntime,

    #[error("{runtime}: {reason}")]
    Unavailable {
        runtime: &'static str,
        reason: String,
    },

    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: io::Error },

    #[error("{image} is for {platform}; this machine runs {host} and has no emulator registered for it (binfmt_misc): pick the image for {host} with --platform, or use --docker on a daemon that emulates")]
    ForeignPlatform {
        image: String,
        platform: String,
        host: String,
    },

    #[error("docker: {step} failed: {message}")]
    Docker { step: &'static str, message: String },
}

/// The process a container starts, as Docker derives it from the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub args: Vec<String>,
    /// `KEY=VALUE`, the image's Env with overrides and defaults.
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn string_list(v: Option<&serde_json::Value>) -> Option<Vec<String>> {
    v.and_then(|v| v.as_array()).map(|a| {
        a.iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    })
}

/// The process for `opts` in `image`, users and groups resolved against
/// the image's `/etc/passwd` and `/etc/group` under `rootfs`.
pub fn process_for(
    image: &Image,
    what: &str,
    rootfs: &Path,
    opts: &RunOptions,
) -> Result<Process, RunError> {
    let cfg = image.config_json().get("config");
    let field = |k: &str| cfg.and_then(|c| c.get(k));
    let (entrypoint, cmd) = match &opts.entrypoint {
        Some(e) => (e.clone(), opts.command.clone()),
        None => {
            let e = string_list(field("Entrypoint")).unwrap_or_default();
            let c = if opts.command.is_empty() {
                string_list(field("Cmd")).unwrap_or_default()
            } else {
                opts.command.clone()
            };
            (e, c)
        }
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() || args[0].is_empty() {
        return Err(RunError::NoCommand {
            image: what.to_string(),
        });
    }
    let user_spec = opts
        .user
        .clone()
        .or_else(|| field("User").and_then(|u| u.as_str()).map(str::to_string))
        .unwrap_or_default();
    let user = resolve_user(rootfs, &user_spec)?;

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut set = |k: String, v: String, env: &mut BTreeMap<String, String>| {
        if env.insert(k.clone(), v).is_none() {
            order.push(k);
        }
    };
    for kv in string_list(field("Env")).unwrap_or_default() {
        let (k, v) = kv.split_once('=').unwrap_or((&kv, ""));
        set(k.to_string(), v.to_string(), &mut env);
    }
    for (k, v) in &opts.env {
        set(k.clone(), v.clone(), &mut env);
    }
    if !env.contains_key("PATH") {
        set("PATH".into(), DEFAULT_PATH.into(), &mut env);
    }
    if !env.contains_key("HOME") {
        set("HOME".into(), user.home.clone(), &mut env);
    }
    if !env.contains_key("HOSTNAME") {
        set("HOSTNAME".into(), HOSTNAME.into(), &mut env);
    }
    let env = order
        .iter()
        .map(|k| format!("{k}={}", env.get(k).map(String::as_str).unwrap_or("")))
        .collect();

    let cwd = opts
        .workdir
        .clone()
        .or_else(|| {
            field("WorkingDir")
                .and_then(|w| w.as_str())
                .filter(|w| !w.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(RunError::Workdir {
            path: cwd,
            reason: "must be an absolute path".into(),
        });
    }
    Ok(Process {
        args,
        env,
        cwd,
        uid: user.uid,
        gid: user.gid,
        additional_gids: user.groups,
    })
}

const HOSTNAME: &str = "dockyard";

struct User {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    home: String,
}

/// Read a file of the image: never through a symlink (it would name a
/// host path); missing is empty.
fn read_image_file(rootfs: &Path, rel: &str) -> String {
    let p = rootfs.join(rel);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_file() => fs::read_to_string(&p).unwrap_or_default(),
        _ => String::new(),
    }
}

/// `USER[:GROUP]` as Docker resolves it: names through the image's files,
/// numbers as they are (an unknown uid gets gid 0).
fn resolve_user(rootfs: &Path, spec: &str) -> Result<User, RunError> {
    let passwd = read_image_file(rootfs, "etc/passwd");
    let group = read_image_file(rootfs, "etc/group");
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 6)
        .collect();
    let found = entries
        .iter()
        .find(|f| f[0] == u || (u.parse::<u32>().is_ok() && f[2] == u));
    let (uid, mut gid, home, name) = match (found, u.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse::<u32>().map_err(|_| RunError::User {
                user: spec.into(),
                reason: "its /etc/passwd entry has a bad uid".into(),
            })?,
            f[3].parse::<u32>().unwrap_or(0),
            f[5].to_string(),
            Some(f[0].to_string()),
        ),
        (None, Ok(n)) => (n, 0, "/".to_string(), None),
        (None, Err(_)) => {
            return Err(RunError::User {
                user: spec.into(),
                reason: "no such user in the image's /etc/passwd".into(),
            })
        }
    };
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| RunError::User {
                    user: spec.into(),
                    reason: format!("no group {g:?} in the image's /etc/group"),
                })?,
        };
    }
    // Supplementary groups: those listing the user by name.
    let extra = match (&name, g) {
        (Some(n), None) => groups
            .iter()
            .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == n))
            .filter_map(|f| f[2].parse::<u32>().ok())
            .filter(|&x| x != gid)
            .collect(),
        _ => Vec::new(),
    };
    Ok(User {
        uid,
        gid,
        groups: extra,
        home: if uid == 0 && home.is_empty() {
            "/root".into()
        } else if home.is_empty() {
            "/".into()
        } else {
            home
        },
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Refuse an image this machine cannot execute: another OS or
/// architecture, unless binfmt_misc has an emulator (`qemu-ARCH`) for it.
pub fn check_platform(image: &Image, what: &str) -> Result<(), RunError> {
    let host = dockyard_image::Platform::host();
    let platform = image.platform();
    if host.matches(&platform) {
        return Ok(());
    }
    let qemu_arch = match platform.architecture.as_str() {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "arm" => "arm",
        "386" => "i386",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    let emulated = platform.os == host.os
        && fs::read_dir("/proc/sys/fs/binfmt_misc")
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy() == format!("qemu-{qemu_arch}"))
            })
            .unwrap_or(false);
    if emulated {
        return Ok(());
    }
    Err(RunError::ForeignPlatform {
        image: what.to_string(),
        platform: platform.to_string(),
        host: host.to_string(),
    })
}

/// The cache directory of an image's rootfs under `store_root`.
pub fn rootfs_cache_dir(store_root: &Path) -> PathBuf {
    store_root.join("rootfs")
}

/// Flatten `image` into its cached rootfs (once) and return its path.
/// The tree is built aside and renamed into place whole, with the mount
/// points every runtime needs (`/proc`, `/dev`, `/sys`, `/tmp` 1777).
pub fn prepare_rootfs(
    image: &Image,
    store_root: &Path,
    progress: &dyn Progress,
) -> Result<PathBuf, RunError> {
    let mut h = Sha256::new();
    h.update(b"dockyard rootfs v1\n");
    h.update(if is_root() {
        b"root\n" as &[u8]
    } else {
        b"user\n"
    });
    for l in image.layers() {
        h.update(l.diff_id().to_string().as_bytes());
        h.update(b"\n");
    }
    let key = hex::encode(h.finalize());
    let dir = rootfs_cache_dir(store_root);
    fs::create_dir_all(&dir).at(&dir)?;
    let dest = dir.join(&key);
    if dest.is_dir() {
        return Ok(dest);
    }
    dockyard_image::atomic::remove_stale_temps(&dir);
    let staging = dir.join(format!(
        "{}rootfs-{}",
        dockyard_image::atomic::temp_prefix(),
        &key[..16]
    ));
    let _ = fs::remove_dir_all(&staging);
    // setuid bits are kept: the tree is run, and its files belong to the runner.
    let opts = crate::ExportOptions { keep_setuid: true };
    crate::export_rootfs_with(image, &staging, &opts, progress)?;
    dockyard_image::atomic::register_temp(&staging);
    let finish = || -> Result<(), RunError> {
        for (d, mode) in [
            ("proc", 0o555),
            ("dev", 0o755),
            ("sys", 0o555),
            ("tmp", 0o1777),
        ] {
            let p = staging.join(d);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                // A symlink or file there would send a mount elsewhere.
                Ok(_) => {
                    fs::remove_file(&p).at(&p)?;
                    fs::create_dir(&p).at(&p)?;
                }
                Err(_) => fs::create_dir(&p).at(&p)?,
            }
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).at(&p)?;
        }
        // The image's WorkingDir exists in a container even when no layer made it.
        if let Some(w) = image
            .config_json()
            .pointer("/config/WorkingDir")
            .and_then(|w| w.as_str())
        {
            make_dirs_inside(&staging, w)?;
        }
        // Mount points for mounts that name no existing path are made at run time.
        Ok(())
    };
    let done = finish().and_then(|()| {
        dockyard_image::atomic::commit_temp(&staging, || fs::rename(&staging, &dest)).map_err(|e| {
            RunError::Image(dockyard_image::Error::Io {
                path: dest.clone(),
                source: e,
            })
        })
    });
    match done {
        Ok(()) => Ok(dest),
        // Another run finished the same rootfs first.
        Err(_) if dest.is_dir() => {
            let _ = fs::remove_dir_all(&staging);
            Ok(dest)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// `mkdir -p` of an image path inside `root`, never through a symlink or
/// out of the root.
fn make_dirs_inside(root: &Path, path: &str) -> Result<(), RunError> {
    let mut p = root.to_path_buf();
    for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if c == ".." {
            return Err(RunError::Workdir {
                path: path.into(),
                reason: "'..' is not allowed".into(),
            });
        }
        p.push(c);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(RunError::Workdir {
                    path: path.into(),
                    reason: format!("{c} is not a directory in the image"),
                })
            }
            Err(_) => {
                fs::create_dir(&p).at(&p)?;
                fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).at(&p)?;
            }
        }
    }
    Ok(())
}

/// Remove every cached rootfs; returns (directories, bytes).
pub fn prune_rootfs_cache(store_root: &Path) -> Result<(usize, u64), RunError> {
    let dir = rootfs_cache_dir(store_root);
    let Ok(list) = fs::read_dir(&dir) else {
        return Ok((0, 0));
    };
    let (mut n, mut bytes) = (0, 0);
    for entry in list.flatten() {
        let p = entry.path();
        bytes += tree_size(&p);
        make_writable(&p);
        fs::remove_dir_all(&p).at(&p)?;
        n += 1;
    }
    Ok((n, bytes))
}

fn tree_size(p: &Path) -> u64 {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::read_dir(p)
            .map(|l| l.flatten().map(|e| tree_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// Read-only directories of an image cannot be emptied until they are writable.
fn make_writable(p: &Path) {
    if let Ok(m) = fs::symlink_metadata(p) {
        if m.is_dir() {
            let mode = m.permissions().mode();
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(mode | 0o700));
            if let Ok(l) = fs::read_dir(p) {
                for e in l.flatten() {
                    make_writable(&e.path());
                }
            }
        }
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// bwrap works only where unprivileged user namespaces do: try it.
fn bwrap_works(bwrap: &Path) -> bool {
    Command::new(bwrap)
        .args(["--unshare-all", "--ro-bind", "/", "/", "--", "/bin/true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// The runtime `wanted` resolves to on this machine.
pub fn pick_runtime(wanted: Runtime) -> Result<Runtime, RunError> {
    match wanted {
        Runtime::Auto => {
            if let Some(b) = on_path("bwrap") {
                if bwrap_works(&b) {
                    return Ok(Runtime::Bwrap);
                }
            }
            if on_path("runc").is_some() {
                return Ok(Runtime::Runc);
            }
            if is_root() {
                return Ok(Runtime::Chroot);
            }
            Err(RunError::NoRuntime)
        }
        Runtime::Bwrap => on_path("bwrap")
            .map(|_| Runtime::Bwrap)
            .ok_or(RunError::Unavailable {
                runtime: "bwrap",
                reason: "not found on PATH (install bubblewrap)".into(),
            }),
        Runtime::Runc => on_path("runc")
            .map(|_| Runtime::Runc)
            .ok_or(RunError::Unavailable {
                runtime: "runc",
                reason: "not found on PATH (install runc)".into(),
            }),
        Runtime::Chroot if is_root() => Ok(Runtime::Chroot),
        Runtime::Chroot => Err(RunError::Unavailable {
            runtime: "chroot",
            reason: "needs root (use bwrap or runc rootless)".into(),
        }),
        Runtime::Docker => {
            on_path("docker")
                .map(|_| Runtime::Docker)
                .ok_or(RunError::Unavailable {
                    runtime: "docker",
                    reason: "the docker client is not on PATH".into(),
                })
        }
    }
}

/// Each mount with its host path made absolute (symlinks resolved); a
/// host path that does not exist is an error naming it.
pub fn resolve_mounts(mounts: &[Mount]) -> Result<Vec<(PathBuf, &Mount)>, RunError> {
    mounts
        .iter()
        .map(|m| {
            let host = fs::canonicalize(&m.host).map_err(|e| RunError::Mount {
                host: m.host.clone(),
                reason: e.to_string(),
            })?;
            Ok((host, m))
        })
        .collect()
}

/// The pid of the command running in the foreground (0: none), so a
/// signal handler can pass SIGTERM on instead of ending dockyard first.
static FOREGROUND_CHILD: AtomicI32 = AtomicI32::new(0);

/// A runc container running in the foreground: `--root` state and id.
/// Its command is pid 1 of its own pid namespace, which ignores SIGINT and
/// SIGTERM unless it handles them, so an interrupt is a `runc kill`.
static FOREGROUND_RUNC: std::sync::Mutex<Option<(PathBuf, String)>> = std::sync::Mutex::new(None);

/// The pid of the container process running now, if any.
pub fn foreground_child() -> Option<i32> {
    match FOREGROUND_CHILD.load(Ordering::SeqCst) {
        0 => None,
        pid => Some(pid),
    }
}

/// Pass `signal`, received by dockyard, on to the command running in the
/// foreground; false when none runs. Ctrl-C reaches a bwrap or chroot
/// command from the terminal itself, so SIGINT is not sent twice; a runc
/// container is killed on SIGINT and SIGTERM.
pub fn interrupt_foreground(signal: i32) -> bool {
    let Some(pid) = foreground_child() else {
        return false;
    };
    let runc = FOREGROUND_RUNC
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match runc {
        Some((state, id)) if signal == libc::SIGINT || signal == libc::SIGTERM => {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(state)
                .args(["kill", &id, "KILL"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        _ if signal != libc::SIGINT => {
            // SAFETY: kill has no memory preconditions.
            unsafe { libc::kill(pid, signal) };
        }
        _ => {}
    }
    true
}

/// Run `process` in `rootfs` with `runtime` (already picked: not Auto or Docker).
pub fn run_in_rootfs(
    rootfs: &Path,
    process: &Process,
    opts: &RunOptions,
    runtime: Runtime,
) -> Result<RunOutput, RunError> {
    let mounts = resolve_mounts(&opts.mounts)?;
    for (_, m) in &mounts {
        // Mount points must exist in the read-only tree: made in the cache
        // (an empty directory or file is invisible to the image's users).
        let inside = rootfs.join(m.target.trim_start_matches('/'));
        if fs::symlink_metadata(&inside).is_err() {
            if m.host.is_dir() {
                make_dirs_inside(rootfs, &m.target)?;
            } else {
                if let Some(parent) = Path::new(&m.target).parent() {
                    make_dirs_inside(rootfs, &parent.to_string_lossy())?;
                }
                fs::File::create(&inside).at(&inside)?;
            }
        }
    }
    let cwd_inside = rootfs.join(process.cwd.trim_start_matches('/'));
    if !cwd_inside.is_dir() {
        return Err(RunError::Workdir {
            path: process.cwd.clone(),
            reason: "no such directory in the image".into(),
        });
    }
    let bundle;
    let mut cmd = match runtime {
        Runtime::Bwrap => bwrap_command(rootfs, process, opts, &mounts),
        Runtime::Runc => {
            bundle = tempfile::Builder::new()
                .prefix("dockyard-runc-")
                .tempdir()
                .map_err(|e| RunError::Spawn {
                    program: "runc".into(),
                    source: e,
                })?;
            runc_command(bundle.path(), rootfs, process, opts, &mounts)?
        }
        Runtime::Chroot => chroot_command(rootfs, process, opts, &mounts)?,
        Runtime::Auto | Runtime::Docker => unreachable!("picked before"),
    };
    let program = runtime.name().to_string();
    let out = run_command(&mut cmd, &program, runtime, opts.capture);
    *FOREGROUND_RUNC.lock().unwrap_or_else(|e| e.into_inner()) = None;
    out
}

/// Spawn, record the pid for signal handlers, collect output when asked.
pub fn run_command(
    cmd: &mut Command,
    program: &str,
    runtime: Runtime,
    capture: bool,
) -> Result<RunOutput, RunError> {
    if capture {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|e| RunError::Spawn {
        program: program.to_string(),
        source: e,
    })?;
    FOREGROUND_CHILD.store(child.id() as i32, Ordering::SeqCst);
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    if capture {
        let err_pipe = child.stderr.take();
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut e) = err_pipe {
                let _ = e.read_to_end(&mut buf);
            }
            buf
        });
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_end(&mut stdout);
        }
        stderr = reader.join().unwrap_or_default();
    }
    let status = child.wait();
    FOREGROUND_CHILD.store(0, Ordering::SeqCst);
    let status = status.map_err(|e| RunError::Spawn {
        program: program.to_string(),
        source: e,
    })?;
    Ok(RunOutput {
        runtime,
        code: exit_code(status),
        stdout,
        stderr,
    })
}

/// The shell's view of a status: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

fn bwrap_command(
    rootfs: &Path,
    process: &Process,
    opts: &RunOptions,
    mounts: &[(PathBuf, &Mount)],
) -> Command {
    let mut c = Command::new("bwrap");
    c.arg("--ro-bind").arg(rootfs).arg("/");
    c.args(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]);
    c.args(["--unshare-all", "--die-with-parent", "--hostname", HOSTNAME]);
    if opts.network == Network::Host {
        c.arg("--share-net");
    }
    for (host, m) in mounts {
        c.arg(if m.read_only { "--ro-bind" } else { "--bind" })
            .arg(host)
            .arg(&m.target);
    }
    c.arg("--uid").arg(process.uid.to_string());
    c.arg("--gid").arg(process.gid.to_string());
    c.arg("--chdir").arg(&process.cwd);
    c.arg("--clearenv");
    for kv in &process.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        c.arg("--setenv").arg(k).arg(v);
    }
    c.arg("--").args(&process.args);
    c
}

fn runc_command(
    bundle: &Path,
    rootfs: &Path,
    process: &Process,
    opts: &RunOptions,
    mounts: &[(PathBuf, &Mount)],
) -> Result<Command, RunError> {
    use serde_json::json;
    let rootless = !is_root();
    if rootless && (process.uid != 0 || process.gid != 0) {
        // Without subordinate ids only the caller's own id can be mapped,
        // and runc wants it to be root inside.
        return Err(RunError::Unavailable {
            runtime: "runc",
            reason: format!(
                "without root, runc runs commands only as root inside the image ({}:{} was asked for): use --runtime bwrap",
                process.uid, process.gid
            ),
        });
    }
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if opts.network == Network::None {
        namespaces.push(json!({"type": "network"}));
    }
    let mut mount_list = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "mode=1777"]}),
    ];
    if rootless {
        mount_list.push(
            json!({"destination": "/sys", "type": "none", "source": "/sys",
                               "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}),
        );
    } else {
        mount_list.push(
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        );
    }
    for (host, m) in mounts {
        let mut o = vec!["rbind"];
        if m.read_only {
            o.push("ro");
        }
        mount_list.push(json!({"destination": m.target, "type": "none",
                               "source": host, "options": o}));
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
        "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"],
    });
    if rootless {
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        if let Some(ns) = linux["namespaces"].as_array_mut() {
            ns.push(json!({"type": "user"}));
        }
        // One id only: the caller's own, seen as root.
        linux["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        linux["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
    }
    let mut user = json!({"uid": process.uid, "gid": process.gid});
    if !process.additional_gids.is_empty() && !rootless {
        user["additionalGids"] = json!(process.additional_gids);
    }
    let config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": user,
            "args": process.args,
            "env": process.env,
            "cwd": process.cwd,
            "noNewPrivileges": true,
        },
        "root": {"path": rootfs, "readonly": true},
        "hostname": HOSTNAME,
        "mounts": mount_list,
        "linux": linux,
    });
    let path = bundle.join("config.json");
    let bytes = serde_json::to_vec_pretty(&config).map_err(|e| RunError::Spawn {
        program: "runc".into(),
        source: io::Error::other(e),
    })?;
    fs::write(&path, bytes).at(&path)?;
    let state = bundle.join("state");
    let id = format!(
        "dockyard-{}-{}",
        std::process::id(),
        bundle
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    );
    let mut c = Command::new("runc");
    c.arg("--root").arg(&state);
    if rootless {
        c.arg("--rootless=true");
    }
    c.arg("run").arg("--bundle").arg(bundle);
    if rootless {
        c.arg("--no-new-keyring");
    }
    c.arg(&id);
    *FOREGROUND_RUNC.lock().unwrap_or_else(|e| e.into_inner()) = Some((state, id));
    Ok(c)
}

fn cstring(p: &Path) -> Result<CString, RunError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| RunError::Mount {
        host: p.to_path_buf(),
        reason: "the path holds a NUL byte".into(),
    })
}

fn cstr(s: &str) -> Result<CString, RunError> {
    CString::new(s).map_err(|_| RunError::Workdir {
        path: s.into(),
        reason: "the path holds a NUL byte".into(),
    })
}

/// mount(2); `None` passes NULL. Called in the forked child: no allocation.
fn sys_mount(
    source: Option<&std::ffi::CStr>,
    target: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
    data: Option<&std::ffi::CStr>,
) -> io::Result<()> {
    let ptr = |s: Option<&std::ffi::CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is NULL or a NUL-terminated string that outlives the call.
    check(unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data) as *const libc::c_void,
        )
    })
}

/// A recursive bind mount of `source` on `target`.
fn bind(source: &std::ffi::CStr, target: &std::ffi::CStr) -> io::Result<()> {
    sys_mount(
        Some(source),
        target,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
}

/// Make the bind mount at `target` read-only.
fn remount_read_only(target: &std::ffi::CStr) -> io::Result<()> {
    sys_mount(
        None,
        target,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
        None,
    )
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// chroot in new mount/UTS/IPC (and network) namespaces, as root: the
/// rootfs is bind-mounted onto itself, given /proc, /dev, /tmp and the
/// user's mounts, remounted read-only, then entered.
fn chroot_command(
    rootfs: &Path,
    process: &Process,
    opts: &RunOptions,
    mounts: &[(PathBuf, &Mount)],
) -> Result<Command, RunError> {
    let root = cstring(rootfs)?;
    let proc_dir = cstring(&rootfs.join("proc"))?;
    let dev_dir = cstring(&rootfs.join("dev"))?;
    let tmp_dir = cstring(&rootfs.join("tmp"))?;
    let host_dev = cstr("/dev")?;
    let proc_t = cstr("proc")?;
    let tmpfs_t = cstr("tmpfs")?;
    let tmp_opts = cstr("mode=1777")?;
    let cwd = cstr(&process.cwd)?;
    let mut binds = Vec::new();
    for (host, m) in mounts {
        binds.push((
            cstring(host)?,
            cstring(&rootfs.join(m.target.trim_start_matches('/')))?,
            m.read_only,
        ));
    }
    let mut flags = libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if opts.network == Network::None {
        flags |= libc::CLONE_NEWNET;
    }
    let (uid, gid) = (process.uid, process.gid);
    let groups: Vec<libc::gid_t> = process.additional_gids.clone();
    let hostname = HOSTNAME.as_bytes().to_vec();
    let mut c = Command::new(&process.args[0]);
    c.args(&process.args[1..]);
    c.env_clear();
    for kv in &process.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        c.env(k, v);
    }
    // SAFETY: the closure runs in the forked child before exec and only
    // makes system calls on memory prepared above (no allocation).
    unsafe {
        c.pre_exec(move || {
            check(libc::unshare(flags))?;
            sys_mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
            bind(&root, &root)?;
            sys_mount(
                Some(&proc_t),
                &proc_dir,
                Some(&proc_t),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                None,
            )?;
            bind(&host_dev, &dev_dir)?;
            sys_mount(
                Some(&tmpfs_t),
                &tmp_dir,
                Some(&tmpfs_t),
                libc::MS_NOSUID | libc::MS_NODEV,
                Some(&tmp_opts),
            )?;
            for (src, dst, ro) in &binds {
                bind(src, dst)?;
                if *ro {
                    remount_read_only(dst)?;
                }
            }
            remount_read_only(&root)?;
            check(libc::sethostname(
                hostname.as_ptr() as *const libc::c_char,
                hostname.len(),
            ))?;
            check(libc::chroot(root.as_ptr()))?;
            check(libc::chdir(cwd.as_ptr()))?;
            check(libc::setgroups(groups.len(), groups.as_ptr()))?;
            check(libc::setgid(gid))?;
            check(libc::setuid(uid))?;
            Ok(())
        });
    }
    Ok(c)
}
