//! Fixtures shared by dockyard's integration tests. Tests use real tools
//! (skopeo, umoci, dockerd, busybox); when one is missing a test fails in CI
//! (`CI=true`) and skips with a printed reason elsewhere.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod conda_channel;
pub mod images;
pub mod registry;

/// True when `tool` is on PATH. When it is not: panic under CI, else print
/// why the calling test skips and return false.
pub fn require_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    if !found {
        if std::env::var("CI")
            .map(|v| v == "true" || v == "1")
            .unwrap_or(false)
        {
            panic!("required tool {tool} is not installed; .ci/run must install it");
        }
        eprintln!("SKIP: {tool} is not installed");
    }
    found
}

/// Run a command, panicking with its output if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The static busybox of Debian's busybox-static package.
pub fn busybox_binary() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// A runnable busybox rootfs under `dir/rootfs`: `/bin/busybox` plus links
/// for a few applets. Returns its path, or None when busybox is missing
/// (see `require_tool`).
pub fn busybox_rootfs(dir: &Path) -> Option<PathBuf> {
    if !require_tool("busybox") {
        return None;
    }
    let bin = busybox_binary()?;
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("create rootfs/bin");
    std::fs::copy(&bin, root.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "echo", "ls", "cat", "true"] {
        symlink("busybox", root.join("bin").join(applet)).expect("applet link");
    }
    std::fs::create_dir_all(root.join("etc")).expect("create rootfs/etc");
    std::fs::write(root.join("etc/hostname"), "dockyard-test\n").expect("write hostname");
    Some(root)
}

/// A private Docker daemon (Debian's dockerd) on a unix socket in a temp
/// dir, stopped on drop. Needs root.
pub struct Dockerd {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Dockerd {
    /// Start dockerd; None (after `require_tool`) when it is not installed.
    pub fn start() -> Option<Dockerd> {
        if !require_tool("dockerd") || !require_tool("docker") {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("dockyard-dockerd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let log = std::fs::File::create(d.join("log")).expect("log file");
        let child = Command::new("dockerd")
            .args(["--iptables=false", "--bridge=none", "--ip6tables=false"])
            .arg("-H")
            .arg(format!("unix://{}", d.join("d.sock").display()))
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("d.pid"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let daemon = Dockerd { dir, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = daemon
                .docker()
                .arg("version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                return Some(daemon);
            }
            if Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(daemon.dir.path().join("log")).unwrap_or_default();
                panic!("dockerd did not come up in 60 s; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The daemon's address, as `DOCKER_HOST` takes it.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("d.sock").display())
    }

    /// A `docker` command talking to this daemon.
    pub fn docker(&self) -> Command {
        let mut c = Command::new("docker");
        c.arg("-H").arg(format!(
            "unix://{}",
            self.dir.path().join("d.sock").display()
        ));
        c
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM lets dockerd stop its containerd too.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `rootfs.diff_ids` of an image config, in order.
pub fn config_diff_ids(config: &serde_json::Value) -> Vec<String> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The `created_by` of every history entry of an image config that made a
/// layer (empty-layer entries left out).
pub fn config_layer_history(config: &serde_json::Value) -> Vec<String> {
    config["history"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|h| h["empty_layer"] != serde_json::Value::Bool(true))
                .filter_map(|h| h["created_by"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
