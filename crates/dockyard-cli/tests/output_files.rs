//! Files a user gets are made with the user's umask, like any other
//! tool's, and a layout holds nothing of dockyard's own (no lock files).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn dockyard_with_umask(cache: &Path, umask: &str, args: &str) {
    let bin = assert_cmd::cargo::cargo_bin("dockyard");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask}; exec {} {args}", bin.display()))
        .env("DOCKYARD_CACHE", cache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn outputs_follow_the_umask_and_layouts_hold_no_lock_files() {
    for (umask, file, dir) in [("022", 0o644, 0o755), ("077", 0o600, 0o700)] {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let cache = t.join("cache");
        std::fs::write(t.join("motd"), "hi\n").unwrap();
        dockyard_with_umask(
            &cache,
            umask,
            &format!(
                "mutate scratch docker-archive:{}/a.tar:x/a:1 --add {}/motd:/etc/motd",
                t.display(),
                t.display()
            ),
        );
        dockyard_with_umask(
            &cache,
            umask,
            &format!(
                "copy docker-archive:{0}/a.tar oci-archive:{0}/b.tar",
                t.display()
            ),
        );
        dockyard_with_umask(
            &cache,
            umask,
            &format!(
                "copy docker-archive:{0}/a.tar oci:{0}/layout:x",
                t.display()
            ),
        );
        dockyard_with_umask(
            &cache,
            umask,
            &format!("export docker-archive:{0}/a.tar {0}/rootfs", t.display()),
        );
        assert_eq!(
            mode(&t.join("a.tar")),
            file,
            "umask {umask}: docker archive"
        );
        assert_eq!(mode(&t.join("b.tar")), file, "umask {umask}: oci-archive");
        let layout = t.join("layout");
        assert_eq!(mode(&layout), dir, "umask {umask}: layout dir");
        assert_eq!(mode(&layout.join("index.json")), file);
        assert_eq!(mode(&layout.join("oci-layout")), file);
        for blob in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
            let m = mode(&blob.unwrap().path());
            assert!(m == file || m == 0o444, "umask {umask}: blob mode {m:o}");
        }
        let names: Vec<String> = std::fs::read_dir(&layout)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert!(!names.iter().any(|n| n.starts_with('.')), "{names:?}");
        assert_eq!(mode(&t.join("rootfs")), dir, "umask {umask}: export dir");
    }
}
