//! `dockyard build` against an http channel (a real HTTP server on
//! loopback serving the example channel): its repodata is cached, so
//! `--offline` builds after the server is gone, and without `--offline` the
//! dead channel is a clear error. Layering: `grouped` stays within
//! `max_layers`, `single` makes one layer, and package layers do not
//! depend on the base (two bases, the same package layer digests).

use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use dockyard_testsupport::conda_channel::{
    example_channel, example_packages, Channel, PackageFile,
};
use dockyard_testsupport::{busybox_rootfs, require_tool};
use dockyard_testsupport::{config_diff_ids as diff_ids, config_layer_history as history};
use serde_json::Value;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Fx {
    tmp: tempfile::TempDir,
}

impl Fx {
    fn new() -> Fx {
        let fx = Fx {
            tmp: tempfile::tempdir().unwrap(),
        };
        example_channel(&fx.path("channel"));
        fx
    }
    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }
    fn run(&self, args: &[&str]) -> Output {
        Command::cargo_bin("dockyard")
            .unwrap()
            .env("DOCKYARD_CACHE", self.path("cache"))
            .current_dir(self.tmp.path())
            .args(args)
            .output()
            .unwrap()
    }
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "dockyard {args:?}: {}",
            text(&out.stderr)
        );
        out
    }
    fn spec(&self, name: &str, body: &str) -> String {
        std::fs::write(self.path(name), body).unwrap();
        name.to_string()
    }
    fn config(&self, src: &str) -> Value {
        serde_json::from_slice(&self.ok(&["inspect", "--config", src]).stdout).unwrap()
    }
    fn busybox_base(&self) -> Option<String> {
        let root = busybox_rootfs(&self.path("busybox"))?;
        self.ok(&[
            "mutate",
            "scratch",
            "docker-archive:busybox.tar",
            "--add",
            &format!("{}:/", root.display()),
        ]);
        Some("docker-archive:busybox.tar".into())
    }
}

/// `python3 -m http.server` serving `dir` on a free loopback port.
struct HttpServer {
    child: Child,
    port: u16,
}

impl HttpServer {
    fn start(dir: &std::path::Path) -> Option<HttpServer> {
        if !require_tool("python3") {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "http.server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(HttpServer { child, port })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_http_channel_is_cached_and_offline_builds_from_the_cache() {
    let fx = Fx::new();
    let Some(server) = HttpServer::start(&fx.path("channel")) else {
        return;
    };
    let port = server.port;
    let url = format!("http://127.0.0.1:{port}/");
    let body = format!(
        "name: web\nchannels:\n  - {url}\ndependencies:\n  - greet=1.0\nimage:\n  base: scratch\n  name: web\n  tag: '1'\n"
    );
    let spec = fx.spec("web.yml", &body);
    let first = fx.ok(&["build", &spec, "-o", "web1.tar"]);
    let digest = text(&first.stdout).trim().to_string();
    let lock = std::fs::read_to_string(fx.path("web.lock")).unwrap();
    assert!(lock.contains(&url), "the lock names the channel: {lock}");

    // The server is gone: --offline builds the same image from the cache.
    drop(server);
    let offline = fx.ok(&["build", &spec, "--offline", "-o", "web2.tar"]);
    assert_eq!(text(&offline.stdout).trim(), digest);
    // Without --offline the dead channel is an error naming it.
    let out = fx.run(&["build", &spec, "-o", "web3.tar"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("127.0.0.1:{port}")),
        "{}",
        text(&out.stderr)
    );
    assert!(!fx.path("web3.tar").exists());
    // --offline with nothing cached for a channel says so.
    let other = fx.spec(
        "other.yml",
        &body.replace(&url, "http://127.0.0.1:9/never-seen/"),
    );
    let out = fx.run(&["build", &other, "--offline", "-o", "web4.tar"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("never-seen"),
        "{}",
        text(&out.stderr)
    );
}

const SPEC: &str = "name: greet-env
channels:
  - ./channel
dependencies:
  - greet=1.0
  - pyhello
  - postlinker
image:
  base: BASE
";

#[test]
fn grouped_layering_stays_within_max_layers_and_single_makes_one_layer() {
    let fx = Fx::new();
    let Some(base) = fx.busybox_base() else {
        return;
    };
    // 5 packages; room for 4 layers in all: busybox, 2 package layers, top.
    let spec = fx.spec(
        "grouped.yml",
        &format!(
            "{}  layering: grouped\n  max_layers: 4\n",
            SPEC.replace("BASE", &base)
        ),
    );
    fx.ok(&["build", &spec, "-o", "grouped.tar"]);
    let config = fx.config("docker-archive:grouped.tar");
    assert_eq!(diff_ids(&config).len(), 4, "{config}");
    let h = history(&config);
    // The most depended-upon package keeps its own layer; the rest share one.
    let conda: Vec<&String> = h.iter().filter(|c| c.starts_with("conda: ")).collect();
    assert_eq!(conda.len(), 3, "{h:#?}");
    assert!(
        conda[1].matches(", ").count() == 3,
        "four packages share the second layer: {h:#?}"
    );
    // And it still runs its tool: every package's files are there.
    fx.ok(&["export", "docker-archive:grouped.tar", "grouped-root"]);
    for f in ["opt/conda/bin/greet", "opt/conda/lib/libgreet.txt"] {
        assert!(fx.path("grouped-root").join(f).is_file(), "{f}");
    }

    let spec = fx.spec(
        "single.yml",
        &format!("{}  layering: single\n", SPEC.replace("BASE", &base)),
    );
    fx.ok(&["build", &spec, "-o", "single.tar"]);
    let config = fx.config("docker-archive:single.tar");
    // busybox, one layer of all 5 packages, top.
    assert_eq!(diff_ids(&config).len(), 3, "{config}");
}

#[test]
fn package_layers_do_not_depend_on_the_base() {
    let fx = Fx::new();
    let Some(busybox) = fx.busybox_base() else {
        return;
    };
    let on_busybox = fx.spec("a.yml", &SPEC.replace("BASE", &busybox));
    let on_scratch = fx.spec("b.yml", &SPEC.replace("BASE", "scratch"));
    fx.ok(&["build", &on_busybox, "-o", "a.tar"]);
    fx.ok(&["build", &on_scratch, "-o", "b.tar"]);
    let a = diff_ids(&fx.config("docker-archive:a.tar"));
    let b = diff_ids(&fx.config("docker-archive:b.tar"));
    // busybox + 5 packages + top, and 5 packages + top.
    assert_eq!((a.len(), b.len()), (7, 6));
    assert_eq!(a[1..6], b[..5], "the package layers are the same blobs");
    // With fresh caches too: the digests come from the packages alone.
    let out = Command::cargo_bin("dockyard")
        .unwrap()
        .env("DOCKYARD_CACHE", fx.path("other-cache"))
        .current_dir(fx.tmp.path())
        .args(["build", &on_scratch, "-o", "c.tar"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let c = diff_ids(&fx.config("docker-archive:c.tar"));
    assert_eq!(c[..5], b[..5]);
}

/// A channel of the example packages plus a Python 3.11 that `pyhello`
/// also accepts.
fn channel_with_two_pythons(dir: &std::path::Path) {
    let mut channel = Channel::new(dir);
    for mut pkg in example_packages() {
        if pkg.name == "pyhello" {
            pkg.depends = vec!["python >=3.11".to_string()];
        }
        if pkg.name == "python" {
            let mut older = pkg.clone();
            older.version = "3.11.0".to_string();
            older.files = vec![
                PackageFile::text("bin/python3.11", "#!/bin/sh\necho 'Python 3.11.0'\n")
                    .executable(),
                PackageFile::symlink("bin/python", "python3.11"),
                PackageFile::text("lib/python3.11/os.py", ""),
            ];
            channel.add(&older);
        }
        channel.add(&pkg);
    }
    channel.index();
}

#[test]
fn a_noarch_python_layer_follows_the_solved_python() {
    let fx = Fx::new();
    channel_with_two_pythons(&fx.path("pythons"));
    let spec = |python: &str| {
        format!(
            "name: py\nchannels:\n  - ./pythons\ndependencies:\n  - pyhello\n  - python={python}\nimage:\n  base: scratch\n"
        )
    };
    let on_312 = fx.spec("py312.yml", &spec("3.12"));
    let on_311 = fx.spec("py311.yml", &spec("3.11"));
    fx.ok(&["build", &on_312, "-o", "py312.tar"]);
    // The same cache: pyhello's 3.12 layer must not be taken for 3.11.
    fx.ok(&["build", &on_311, "-o", "py311.tar"]);
    fx.ok(&["export", "docker-archive:py311.tar", "py311-root"]);
    let root = fx.path("py311-root/opt/conda");
    assert!(
        root.join("lib/python3.11/site-packages/pyhello/__init__.py")
            .is_file(),
        "pyhello is in Python 3.11's site-packages"
    );
    assert!(
        !root.join("lib/python3.12").exists(),
        "nothing of the 3.12 build is left"
    );
    let entry_point = std::fs::read_to_string(root.join("bin/pyhello")).unwrap();
    assert!(
        entry_point.starts_with("#!/opt/conda/bin/python3.11"),
        "{entry_point}"
    );
    let meta = std::fs::read_dir(root.join("conda-meta"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("pyhello-"))
        .expect("pyhello's conda-meta record");
    let record = std::fs::read_to_string(meta.path()).unwrap();
    assert!(
        record.contains("lib/python3.11/site-packages/pyhello/__init__.py")
            && !record.contains("python3.12"),
        "{record}"
    );
    // Back on 3.12, the first layer is taken from the cache again.
    fx.ok(&["build", &on_312, "-o", "py312-again.tar"]);
    assert_eq!(
        diff_ids(&fx.config("docker-archive:py312.tar")),
        diff_ids(&fx.config("docker-archive:py312-again.tar"))
    );
}
