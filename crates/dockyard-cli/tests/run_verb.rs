//! `dockyard run`: a busybox image and a built conda image run without a
//! daemon by every runtime this machine has (bubblewrap, runc, chroot as
//! root) and by a real dockerd with `--docker`: the config's Cmd, Env,
//! WorkingDir and User are applied, the exit code and output come back,
//! the root is read-only and /tmp writable, `--mount` binds host paths,
//! and the network is loopback only.

use std::path::PathBuf;
use std::process::Output;

use assert_cmd::Command;
use dockyard_testsupport::conda_channel::example_channel;
use dockyard_testsupport::{busybox_rootfs, require_tool, Dockerd};

struct Fx {
    tmp: tempfile::TempDir,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Fx {
    /// `busybox.tar`: busybox with a few applets, a passwd naming `nobody`,
    /// Env, WorkingDir and a Cmd. None when busybox is missing.
    fn new() -> Option<Fx> {
        let fx = Fx {
            tmp: tempfile::tempdir().unwrap(),
        };
        let rootfs = busybox_rootfs(&fx.path("base"))?;
        for applet in ["id", "touch", "pwd", "env", "hostname", "mkdir"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home/nobody:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\nstaff:x:50:nobody\n",
        )
        .unwrap();
        fx.ok(&[
            "mutate",
            "scratch",
            "docker-archive:busybox.tar:busybox:1",
            "--add",
            &format!("{}:/", rootfs.display()),
            "--env",
            "GREETING=hello from the image",
            "--workdir",
            "/srv/app",
            "--cmd",
            r#"["/bin/sh", "-c", "echo $GREETING in $(pwd)"]"#,
        ]);
        Some(fx)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("dockyard").unwrap();
        c.env("DOCKYARD_CACHE", self.path("cache"))
            .current_dir(self.tmp.path());
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "dockyard {args:?} failed ({}):\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }
}

/// The runtimes this machine has; under CI bwrap and runc must be there.
fn runtimes() -> Vec<&'static str> {
    let mut r = Vec::new();
    if require_tool("bwrap") {
        r.push("bwrap");
    }
    if require_tool("runc") {
        r.push("runc");
    }
    if is_root() {
        r.push("chroot");
    }
    r
}

#[test]
fn busybox_runs_with_the_images_config_under_every_runtime_present() {
    let Some(fx) = Fx::new() else { return };
    let data = fx.path("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "from the host\n").unwrap();
    let out_dir = fx.path("out");
    std::fs::create_dir(&out_dir).unwrap();
    let ro = format!("{}:/data:ro", data.display());
    let rw = format!("{}:/out", out_dir.display());
    for rt in runtimes() {
        let run = |extra: &[&str]| {
            let mut args = vec!["run", "--runtime", rt];
            args.extend_from_slice(extra);
            fx.run(&args)
        };
        // The image's Cmd, Env and WorkingDir (made though no layer has it).
        let out = run(&["docker-archive:busybox.tar"]);
        assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "hello from the image in /srv/app\n",
            "{rt}"
        );

        // A command, -e, -w, -u by name (its home and groups from the image).
        let out = run(&[
            "-e",
            "FOO=bar",
            "-w",
            "/tmp",
            "-u",
            "nobody",
            "docker-archive:busybox.tar",
            "sh",
            "-c",
            "echo $FOO $HOME $(pwd) $(id -u) $(id -g) $(hostname); touch /tmp/ok && echo tmp-writable",
        ]);
        assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
        assert_eq!(
            text(&out.stdout),
            "bar /home/nobody /tmp 65534 65534 dockyard\ntmp-writable\n",
            "{rt}"
        );

        // The exit code passes through, and nothing is added to the output.
        let out = run(&[
            "docker-archive:busybox.tar",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ]);
        assert_eq!(out.status.code(), Some(3), "{rt}");
        assert_eq!(text(&out.stdout), "out\n", "{rt}");
        assert_eq!(text(&out.stderr), "err\n", "{rt}");

        // The root is read-only (the cached rootfs is shared between runs).
        let out = run(&["docker-archive:busybox.tar", "touch", "/etc/new"]);
        assert_ne!(out.status.code(), Some(0), "{rt}: / is writable");
        assert!(!fx
            .path("cache")
            .join("rootfs")
            .read_dir()
            .unwrap()
            .any(|e| {
                e.map(|e| e.path().join("etc/new").exists())
                    .unwrap_or(false)
            }));

        // Mounts: read-only refuses writes, read-write lands on the host.
        let out = run(&[
            "--mount",
            &ro,
            "--mount",
            &rw,
            "docker-archive:busybox.tar",
            "sh",
            "-c",
            "cat /data/in.txt; touch /data/x 2>/dev/null && echo ro-broken; echo written > /out/result",
        ]);
        assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "from the host\n", "{rt}");
        assert!(!data.join("x").exists(), "{rt}");
        assert_eq!(
            std::fs::read_to_string(out_dir.join("result")).unwrap(),
            "written\n",
            "{rt}"
        );
        std::fs::remove_file(out_dir.join("result")).unwrap();

        // Network none: loopback only.
        let out = run(&["docker-archive:busybox.tar", "cat", "/proc/net/dev"]);
        assert!(out.status.success(), "{rt}: {}", text(&out.stderr));
        let ifaces: Vec<String> = text(&out.stdout)
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
            .collect();
        assert_eq!(ifaces, ["lo"], "{rt}");
    }
}

#[test]
fn bad_runs_are_clear_errors() {
    let Some(fx) = Fx::new() else { return };
    // No command: an image without Entrypoint or Cmd.
    let files = fx.path("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("f"), "x").unwrap();
    fx.ok(&[
        "mutate",
        "scratch",
        "docker-archive:nocmd.tar",
        "--add",
        &format!("{}:/", files.display()),
    ]);
    let out = fx.run(&["run", "docker-archive:nocmd.tar"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("nothing to run"),
        "{}",
        text(&out.stderr)
    );
    // A user the image does not know.
    let out = fx.run(&["run", "-u", "alice", "docker-archive:busybox.tar", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("\"alice\"") && text(&out.stderr).contains("/etc/passwd"),
        "{}",
        text(&out.stderr)
    );
    // Mounts: bad syntax, a missing host path.
    let out = fx.run(&[
        "run",
        "--mount",
        "nocolon",
        "docker-archive:busybox.tar",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("HOST:PATH"),
        "{}",
        text(&out.stderr)
    );
    let out = fx.run(&[
        "run",
        "--mount",
        "/no/such/dir:/x",
        "docker-archive:busybox.tar",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("/no/such/dir"),
        "{}",
        text(&out.stderr)
    );
    // A missing image names itself.
    let out = fx.run(&["run", "docker-archive:missing.tar", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("missing.tar"),
        "{}",
        text(&out.stderr)
    );
    // A command that does not exist in the image: the runtime says so, non-zero.
    let out = fx.run(&["run", "docker-archive:busybox.tar", "/bin/nope"]);
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn cache_prune_removes_cached_rootfs_trees() {
    let Some(fx) = Fx::new() else { return };
    if runtimes().is_empty() {
        return;
    }
    fx.ok(&["run", "docker-archive:busybox.tar", "true"]);
    let trees = || {
        fx.path("cache")
            .join("rootfs")
            .read_dir()
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(trees(), 1);
    // A second run reuses the tree.
    fx.ok(&["run", "docker-archive:busybox.tar", "true"]);
    assert_eq!(trees(), 1);
    fx.ok(&["cache", "prune"]);
    assert_eq!(trees(), 0);
}

#[test]
fn docker_flag_hands_the_image_to_a_daemon() {
    let Some(fx) = Fx::new() else { return };
    let Some(daemon) = Dockerd::start() else {
        return;
    };
    let mut c = fx.cmd();
    c.env("DOCKER_HOST", daemon.host());
    let out = c
        .args(["run", "--docker", "docker-archive:busybox.tar"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello from the image in /srv/app\n");
    let mut c = fx.cmd();
    c.env("DOCKER_HOST", daemon.host());
    let out = c
        .args([
            "run",
            "--docker",
            "-e",
            "FOO=bar",
            "-u",
            "nobody",
            "docker-archive:busybox.tar",
            "sh",
            "-c",
            "echo $FOO $(id -u); exit 4",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "bar 65534\n");
}

/// The README's main example, as shipped: built on scratch, its static
/// program runs from the prefix in every runtime and under a Docker daemon.
#[test]
fn the_shipped_conda_example_runs_on_scratch() {
    let Some(fx) = Fx::new() else { return };
    // The shipped spec beside the fixture channel, which is the shipped one.
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/conda");
    std::fs::copy(shipped.join("env.yml"), fx.path("env.yml")).unwrap();
    example_channel(&fx.path("channel"));
    fx.ok(&["build", "env.yml", "-o", "greet.tar"]);
    let image = "docker-archive:greet.tar";
    for rt in runtimes() {
        let run = fx.ok(&["run", "--runtime", rt, image]);
        assert_eq!(text(&run.stdout), "hello from greet 2\n", "{rt}");
    }
    if let Some(daemon) = Dockerd::start() {
        let run = fx
            .cmd()
            .env("DOCKER_HOST", daemon.host())
            .args(["run", "--docker", image])
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", text(&run.stderr));
        assert_eq!(text(&run.stdout), "hello from greet 2\n");
    }
}

#[test]
fn a_built_conda_environment_runs_its_tool_from_the_prefix() {
    let Some(fx) = Fx::new() else { return };
    example_channel(&fx.path("channel"));
    std::fs::write(
        fx.path("env.yml"),
        "name: greet-env
channels:
  - ./channel
dependencies:
  - greet=1.0
image:
  base: docker-archive:busybox.tar
  name: greet-env
  tag: '1'
  cmd: [greet]
",
    )
    .unwrap();
    fx.ok(&["build", "env.yml", "-o", "env.tar"]);
    for rt in runtimes() {
        let out = fx.ok(&["run", "--runtime", rt, "docker-archive:env.tar"]);
        assert_eq!(text(&out.stdout), "hello from greet\n", "{rt}");
        let out = fx.ok(&[
            "run",
            "--runtime",
            rt,
            "docker-archive:env.tar",
            "sh",
            "-c",
            "echo $CONDA_PREFIX; command -v greet",
        ]);
        assert_eq!(
            text(&out.stdout),
            "/opt/conda\n/opt/conda/bin/greet\n",
            "{rt}"
        );
    }
    // And handed to a Docker daemon.
    if let Some(daemon) = Dockerd::start() {
        let out = fx
            .cmd()
            .env("DOCKER_HOST", daemon.host())
            .args(["run", "--docker", "docker-archive:env.tar"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "hello from greet\n");
    }
}

#[test]
fn ctrl_c_ends_the_command_under_every_runtime_present() {
    use std::os::unix::process::CommandExt;
    let Some(fx) = Fx::new() else { return };
    let rootfs = fx.path("base/rootfs");
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sleep")).unwrap();
    fx.ok(&[
        "mutate",
        "scratch",
        "docker-archive:sleepy.tar",
        "--add",
        &format!("{}:/", rootfs.display()),
    ]);
    let bin = assert_cmd::cargo::cargo_bin("dockyard");
    for rt in runtimes() {
        // Warm the rootfs cache so the signal lands while `sleep` runs.
        fx.ok(&["run", "--runtime", rt, "docker-archive:sleepy.tar", "true"]);
        // Its own process group, signalled as a terminal signals it.
        let mut child = std::process::Command::new(&bin)
            .args([
                "run",
                "--runtime",
                rt,
                "docker-archive:sleepy.tar",
                "sleep",
                "60",
            ])
            .env("DOCKYARD_CACHE", fx.path("cache"))
            .current_dir(fx.path(""))
            .process_group(0)
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let pgid = child.id() as i32;
        // SAFETY: killpg has no memory preconditions.
        unsafe { libc::killpg(pgid, libc::SIGINT) };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{rt}: Ctrl-C did not end the command");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        assert!(!status.success(), "{rt}: {status:?}");
    }
}

#[test]
fn an_image_for_another_platform_is_refused_before_anything_runs() {
    let Some(fx) = Fx::new() else { return };
    if runtimes().is_empty() {
        return;
    }
    let host = dockyard::Platform::host();
    let other = if host.architecture == "arm64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let qemu = if other == "linux/arm64" {
        "qemu-aarch64"
    } else {
        "qemu-x86_64"
    };
    if std::path::Path::new("/proc/sys/fs/binfmt_misc")
        .join(qemu)
        .exists()
    {
        eprintln!("SKIP: {qemu} is registered in binfmt_misc: {other} images run here");
        return;
    }
    let files = fx.path("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("f"), "x").unwrap();
    fx.ok(&[
        "mutate",
        "scratch",
        "docker-archive:foreign.tar",
        "--platform",
        other,
        "--add",
        &format!("{}:/", files.display()),
        "--cmd",
        r#"["/bin/true"]"#,
    ]);
    let out = fx.run(&["run", "--platform", other, "docker-archive:foreign.tar"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(other) && err.contains(&host.to_string()),
        "{err}"
    );
    assert!(
        !fx.path("cache").join("rootfs").exists(),
        "nothing was unpacked"
    );
}
