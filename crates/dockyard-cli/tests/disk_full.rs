//! A full disk names the destination being written (never the source),
//! is an environment failure (exit 2, not "corrupt layer"), and leaves
//! nothing behind. The destination is a 1 MiB tmpfs mounted in a private
//! mount namespace (`unshare -m`), so this needs root.

use std::path::Path;
use std::process::{Command, Output};

use assert_cmd::cargo::cargo_bin;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Run dockyard with `full` mounted as a 1 MiB tmpfs; stdout ends with
/// `LEFT:` and what the tmpfs holds afterwards.
fn on_small_disk(tmp: &Path, full: &Path, args: &[&str]) -> Output {
    Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg(r#"M="$1"; shift; mount -t tmpfs -o size=1m tmpfs "$M" || exit 99; "$@"; rc=$?; echo "LEFT:$(ls -A "$M")"; exit $rc"#)
        .arg("sh")
        .arg(full)
        .arg(cargo_bin("dockyard"))
        .args(args)
        .env("DOCKYARD_CACHE", tmp.join("cache"))
        .current_dir(tmp)
        .output()
        .unwrap()
}

#[test]
fn a_full_disk_names_the_destination_and_leaves_nothing() {
    if !is_root() {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::create_dir_all(t.join("content")).unwrap();
    std::fs::create_dir_all(t.join("full")).unwrap();
    // 3 MB that does not compress: more than the 1 MiB disk holds.
    let noise: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(t.join("content/big"), noise).unwrap();
    let d = |args: &[&str]| {
        let out = Command::new(cargo_bin("dockyard"))
            .args(args)
            .env("DOCKYARD_CACHE", t.join("cache"))
            .current_dir(t)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    d(&["mutate", "scratch", "oci:src:1", "--add", "content:/"]);
    d(&["copy", "oci:src:1", "docker-archive:src.tar"]);

    for (args, named) in [
        (
            ["copy", "oci:src:1", "docker-archive:full/out.tar"],
            "full/out.tar",
        ),
        (
            ["copy", "docker-archive:src.tar", "oci:full/layout:1"],
            "full/layout/blobs/sha256/",
        ),
        (
            ["copy", "oci:src:1", "oci-archive:full/o.tar"],
            "full/o.tar",
        ),
        (["export", "oci:src:1", "full/root"], "full/root/big"),
    ] {
        let out = on_small_disk(t, &t.join("full"), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_ne!(out.status.code(), Some(99), "mount failed: {err}");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(named),
            "{args:?}: the destination is not named: {err}"
        );
        assert!(err.contains("No space left on device"), "{args:?}: {err}");
        assert!(!err.contains("corrupt"), "{args:?}: {err}");
        assert!(
            !err.contains("src"),
            "{args:?}: the source is blamed: {err}"
        );
        assert!(
            stdout.trim_end().ends_with("LEFT:"),
            "{args:?}: left behind on the full disk: {stdout}"
        );
    }
}
