//! `export` keeps each file's mtime from its layer (as `docker export` and
//! `umoci unpack` do); setuid/setgid bits stay only as root or with
//! `--keep-setuid`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use dockyard_image::progress::Silent;
use dockyard_image::tar::{LayerBuilder, LayerOptions};
use dockyard_image::transport::{write_image, Location};
use dockyard_image::{Image, Platform};

const MTIME: i64 = 1_600_000_000;

fn image_archive(dir: &Path) -> String {
    let mut b = LayerBuilder::new(LayerOptions {
        mtime: MTIME as u64,
        keep_owner: false,
    });
    b.add_contents("/usr/bin/tool", "#!/bin/sh\n", 0o4755)
        .unwrap()
        .add_dir("/srv/data", 0o755)
        .unwrap()
        .add_symlink("/srv/link", "data")
        .unwrap();
    let image = Image::scratch(&Platform::host()).append_layer(b.build(dir).unwrap(), "meta");
    let path = dir.join("meta.tar");
    write_image(
        &image,
        &Location::DockerArchive {
            path: path.clone(),
            reference: None,
        },
        None,
        &Silent,
    )
    .unwrap();
    format!("docker-archive:{}", path.display())
}

fn export(cache: &Path, src: &str, dest: &Path, extra: &[&str], as_nobody: bool) {
    let bin = assert_cmd::cargo::cargo_bin("dockyard");
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd
        .env("DOCKYARD_CACHE", cache)
        .arg("export")
        .arg(src)
        .arg(dest)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn export_keeps_mtimes_and_guards_setuid() {
    let tmp = tempfile::tempdir().unwrap();
    let src = image_archive(tmp.path());
    let root = tmp.path().join("rootfs");
    export(&tmp.path().join("cache"), &src, &root, &[], false);
    let tool = std::fs::metadata(root.join("usr/bin/tool")).unwrap();
    assert_eq!(tool.mtime(), MTIME);
    assert_eq!(
        std::fs::metadata(root.join("srv/data")).unwrap().mtime(),
        MTIME
    );
    assert_eq!(std::fs::metadata(root.join("srv")).unwrap().mtime(), MTIME);
    assert_eq!(
        std::fs::symlink_metadata(root.join("srv/link"))
            .unwrap()
            .mtime(),
        MTIME
    );
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    let expected = if is_root { 0o4755 } else { 0o755 };
    assert_eq!(tool.permissions().mode() & 0o7777, expected);
    if !is_root || !dockyard_testsupport::require_tool("setpriv") {
        return;
    }
    // As another user: the bit goes, unless asked for.
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let archive = src.trim_start_matches("docker-archive:");
    std::fs::set_permissions(archive, std::fs::Permissions::from_mode(0o644)).unwrap();
    for (name, extra, mode) in [
        ("plain", vec![], 0o755),
        ("kept", vec!["--keep-setuid"], 0o4755),
    ] {
        let dest = shared.join(name);
        export(
            &shared.join(format!("cache-{name}")),
            &src,
            &dest,
            &extra,
            true,
        );
        let m = std::fs::metadata(dest.join("usr/bin/tool")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, mode, "{name}");
        assert_eq!(m.uid(), 65534, "{name}: owned by the user who exported");
        assert_eq!(m.mtime(), MTIME);
    }
}
