//! `__glibc` follows the base image: a glibc base (its libc.so.6 read for
//! its symbol versions) lets a package that needs a newer glibc than the
//! default solve; a base without glibc (busybox, musl) does not, and the
//! error says why; the spec's own `virtual_packages` wins over both.

use std::path::PathBuf;
use std::process::Output;

use assert_cmd::Command;
use dockyard_testsupport::busybox_rootfs;
use dockyard_testsupport::conda_channel::{Channel, PackageFile, PackageSpec};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Fx {
    tmp: tempfile::TempDir,
}

impl Fx {
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
    fn base(&self, name: &str, extra: &[(&str, &[u8])]) -> String {
        let root = busybox_rootfs(&self.path(&format!("{name}-src"))).expect("busybox");
        for (path, bytes) in extra {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let out = self.run(&[
            "mutate",
            "scratch",
            &format!("docker-archive:{name}.tar"),
            "--add",
            &format!("{}:/", root.display()),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        format!("docker-archive:{name}.tar")
    }
    fn spec(&self, name: &str, base: &str, extra: &str) -> String {
        std::fs::write(
            self.path(name),
            format!(
                "name: v\nchannels: [./channel]\ndependencies: [needsglibc]\nimage:\n  base: {base}\n{extra}"
            ),
        )
        .unwrap();
        name.to_string()
    }
}

#[test]
fn glibc_of_the_base_sets_the_virtual_package() {
    if !dockyard_testsupport::require_tool("busybox") {
        return;
    }
    let fx = Fx {
        tmp: tempfile::tempdir().unwrap(),
    };
    let mut channel = Channel::new(&fx.path("channel"));
    let mut pkg = PackageSpec::new("needsglibc", "1.0");
    pkg.depends.push("__glibc >=2.34".into());
    pkg.files = vec![PackageFile::text(
        "share/needsglibc/README",
        "needs glibc 2.34\n",
    )];
    channel.add(&pkg);
    channel.index();

    // A glibc 2.36 base (as Debian bookworm's libc.so.6 declares it).
    let symbols: &[u8] = b"\x7fELF...\0GLIBC_2.2.5\0GLIBC_2.34\0GLIBC_2.36\0GLIBC_PRIVATE\0";
    let glibc = fx.base("glibc", &[("lib/x86_64-linux-gnu/libc.so.6", symbols)]);
    let spec = fx.spec("glibc.yml", &glibc, "");
    let out = fx.run(&["build", &spec, "-o", "glibc-env.tar"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lock = std::fs::read_to_string(fx.path("glibc.lock")).unwrap();
    assert!(lock.contains("__glibc=2.36"), "{lock}");

    // No glibc in busybox: the default (2.28) is too old, and the solver says so.
    let plain = fx.base("plain", &[]);
    let spec = fx.spec("plain.yml", &plain, "");
    let out = fx.run(&["build", &spec, "-o", "plain-env.tar"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("__glibc"),
        "{}",
        text(&out.stderr)
    );

    // The lock solved on the glibc base, installed on the busybox one: the
    // locked package's __glibc need is not met, and --locked says so.
    let spec = fx.spec("glibc.yml", &plain, "");
    let out = fx.run(&["build", &spec, "--locked", "-o", "locked-env.tar"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for needle in ["glibc.lock", "needsglibc 1.0", "__glibc >=2.34"] {
        assert!(err.contains(needle), "{needle:?} in: {err}");
    }
    assert!(!fx.path("locked-env.tar").exists(), "nothing written");

    // A musl base has no __glibc at all.
    let musl = fx.base("musl", &[("lib/ld-musl-x86_64.so.1", b"musl")]);
    let spec = fx.spec("musl.yml", &musl, "");
    let out = fx.run(&["build", &spec, "-o", "musl-env.tar"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("__glibc"),
        "{}",
        text(&out.stderr)
    );

    // The spec's own list wins.
    let spec = fx.spec(
        "pinned.yml",
        &plain,
        "  virtual_packages: [__unix, __linux=5.10, __glibc=2.35]\n",
    );
    let out = fx.run(&["build", &spec, "-o", "pinned-env.tar"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lock = std::fs::read_to_string(fx.path("pinned.lock")).unwrap();
    assert!(lock.contains("__glibc=2.35"), "{lock}");
}
