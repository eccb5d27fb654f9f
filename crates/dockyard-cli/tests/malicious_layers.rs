//! `dockyard export` treats layer paths as untrusted: every escape from the
//! target directory is refused with an error naming the entry, nothing is
//! written outside the target, and a refused export leaves the target absent
//! (or as empty as it was). Layers are crafted here byte by byte, because
//! the `tar` crate's builder refuses the very paths under test.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// One tar entry, with names written into the header as raw bytes.
enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    CharDevice(&'a str, u32, u32),
}

fn put_bytes(field: &mut [u8], value: &[u8]) {
    assert!(value.len() < field.len(), "name too long for a v7 field");
    field.fill(0);
    field[..value.len()].copy_from_slice(value);
}

/// An uncompressed layer tar. Names and link names go straight into the
/// header fields (no validation), then the checksum is fixed.
fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        let (name, data): (&str, &[u8]) = match e {
            Entry::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (n, b"")
            }
            Entry::File(n, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                (n, data)
            }
            Entry::Symlink(n, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                put_bytes(&mut h.as_old_mut().linkname, target.as_bytes());
                (n, b"")
            }
            Entry::Hardlink(n, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                put_bytes(&mut h.as_old_mut().linkname, target.as_bytes());
                (n, b"")
            }
            Entry::CharDevice(n, major, minor) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o666);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                (n, b"")
            }
        };
        put_bytes(&mut h.as_old_mut().name, name.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn put_blob(layout: &Path, bytes: &[u8]) -> String {
    let hex = sha256_hex(bytes);
    fs::write(layout.join("blobs/sha256").join(&hex), bytes).unwrap();
    format!("sha256:{hex}")
}

/// An OCI image layout written by hand: one image of `layers` (base first,
/// uncompressed), its config's diff_ids the sha256 of each layer tar.
fn write_layout(layout: &Path, layers: &[Vec<u8>]) {
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let d = put_blob(layout, l);
        descs.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": d,
            "size": l.len(),
        }));
        diff_ids.push(d);
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| json!({"created_by": "test"})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let config_digest = put_blob(layout, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": descs,
    }))
    .unwrap();
    let manifest_digest = put_blob(layout, &manifest);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
        }],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
}

/// A sandbox: `layout/` (the image), `work/` (the export's parent, holding
/// a sentinel file), `work/out` (the export target, absent), and
/// `outside/file` (what an attacker wants to reach).
struct Sandbox {
    tmp: tempfile::TempDir,
}

const OUTSIDE_CONTENT: &[u8] = b"original outside content\n";
const SENTINEL_CONTENT: &[u8] = b"the user's file beside the export\n";

impl Sandbox {
    fn new(layers: &[Vec<u8>]) -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let s = Sandbox { tmp };
        write_layout(&s.layout(), layers);
        fs::create_dir_all(s.work()).unwrap();
        fs::write(s.work().join("sentinel"), SENTINEL_CONTENT).unwrap();
        fs::create_dir_all(s.outside()).unwrap();
        fs::write(s.outside().join("file"), OUTSIDE_CONTENT).unwrap();
        s
    }
    fn root(&self) -> &Path {
        self.tmp.path()
    }
    fn layout(&self) -> PathBuf {
        self.root().join("layout")
    }
    fn work(&self) -> PathBuf {
        self.root().join("work")
    }
    fn out(&self) -> PathBuf {
        self.work().join("out")
    }
    fn outside(&self) -> PathBuf {
        self.root().join("outside")
    }

    fn export(&self) -> Output {
        Command::cargo_bin("dockyard")
            .unwrap()
            .env("DOCKYARD_CACHE", self.root().join("cache"))
            .arg("export")
            .arg(format!("oci:{}", self.layout().display()))
            .arg(self.out())
            .output()
            .unwrap()
    }

    /// Nothing outside the target changed: the outside dir holds only its
    /// original file (same content, not hardlinked), the sentinel beside the
    /// target is intact, and no export temp dir is left in `work/`.
    fn assert_outside_untouched(&self) {
        let names = |d: &Path| -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(d)
                .unwrap_or_else(|e| panic!("{} should still exist: {e}", d.display()))
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&self.outside()), vec!["file".to_string()]);
        let f = self.outside().join("file");
        assert_eq!(fs::read(&f).unwrap(), OUTSIDE_CONTENT);
        assert_eq!(
            fs::metadata(&f).unwrap().nlink(),
            1,
            "outside file got hardlinked"
        );
        let sentinel = self.work().join("sentinel");
        assert_eq!(
            fs::read(&sentinel).ok().as_deref(),
            Some(SENTINEL_CONTENT),
            "the file beside the export target was removed or changed"
        );
        let mut root_names = names(self.root());
        root_names.retain(|n| n != "cache");
        assert_eq!(root_names, vec!["layout", "outside", "work"]);
        let leftovers: Vec<String> = names(&self.work())
            .into_iter()
            .filter(|n| n != "sentinel" && n != "out")
            .collect();
        assert!(leftovers.is_empty(), "left in work/: {leftovers:?}");
    }

    /// The export was refused: exit code 1, the entry named, no panic, the
    /// target absent or empty, nothing outside touched.
    fn assert_refused(&self, out: &Output, bad_entry: &str) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The worst failure first: damage outside the target.
        self.assert_outside_untouched();
        assert_eq!(
            out.status.code(),
            Some(1),
            "export should fail with exit code 1; stderr: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "panic: {stderr}");
        assert!(
            stderr.contains(bad_entry),
            "stderr should name the entry {bad_entry:?}: {stderr}"
        );
        match fs::read_dir(self.out()) {
            Ok(mut list) => assert!(list.next().is_none(), "target dir is not empty"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        }
    }
}

#[test]
fn dotdot_entry_is_refused() {
    let s = Sandbox::new(&[layer_tar(&[
        Entry::File("ok.txt", b"fine"),
        Entry::File("../escape", b"pwned"),
    ])]);
    let out = s.export();
    s.assert_refused(&out, "../escape");
    assert!(!s.work().join("escape").exists());
}

#[test]
fn dotdot_inside_a_path_is_refused() {
    let s = Sandbox::new(&[layer_tar(&[
        Entry::Dir("a/"),
        Entry::File("a/../../outside/file", b"pwned"),
    ])]);
    let out = s.export();
    s.assert_refused(&out, "a/../../outside/file");
}

#[test]
fn absolute_path_is_refused() {
    let s = Sandbox::new(&[]);
    let target = s.outside().join("abs-pwned");
    let name = target.to_str().unwrap().to_string();
    write_layout(
        &s.layout(),
        &[layer_tar(&[
            Entry::File("ok.txt", b"fine"),
            Entry::File(&name, b"pwned"),
        ])],
    );
    let out = s.export();
    s.assert_refused(&out, &name);
    assert!(!target.exists());
}

#[test]
fn writing_through_a_symlink_that_leaves_the_root_is_refused() {
    let s = Sandbox::new(&[]);
    let outside = s.outside().to_str().unwrap().to_string();
    write_layout(
        &s.layout(),
        &[layer_tar(&[
            Entry::Symlink("evil", &outside),
            Entry::File("evil/pwned", b"pwned"),
        ])],
    );
    let out = s.export();
    s.assert_refused(&out, "evil/pwned");
    assert!(!s.outside().join("pwned").exists());
}

#[test]
fn writing_through_a_relative_escaping_symlink_in_a_later_layer_is_refused() {
    // The symlink comes from the base layer, the write from the top one.
    let s = Sandbox::new(&[
        layer_tar(&[Entry::Symlink("evil", "../../outside")]),
        layer_tar(&[Entry::File("evil/pwned", b"pwned")]),
    ]);
    let out = s.export();
    s.assert_refused(&out, "evil/pwned");
    assert!(!s.outside().join("pwned").exists());
}

#[test]
fn hardlink_with_dotdot_target_is_refused() {
    let s = Sandbox::new(&[layer_tar(&[
        Entry::File("ok.txt", b"fine"),
        Entry::Hardlink("hl", "../../outside/file"),
        // Were the link made, this would write into the outside file.
        Entry::File("hl", b"pwned"),
    ])]);
    let out = s.export();
    s.assert_refused(&out, "hl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("../../outside/file"), "{stderr}");
}

#[test]
fn hardlink_to_an_absolute_path_outside_is_refused() {
    let s = Sandbox::new(&[]);
    let target = s.outside().join("file");
    let target = target.to_str().unwrap().to_string();
    write_layout(
        &s.layout(),
        &[layer_tar(&[
            Entry::File("ok.txt", b"fine"),
            Entry::Hardlink("hl", &target),
        ])],
    );
    let out = s.export();
    s.assert_refused(&out, "hl");
}

#[test]
fn hardlink_through_an_escaping_symlink_is_refused() {
    let s = Sandbox::new(&[]);
    let outside = s.outside().to_str().unwrap().to_string();
    write_layout(
        &s.layout(),
        &[layer_tar(&[
            Entry::Symlink("evil", &outside),
            Entry::Hardlink("hl", "evil/file"),
        ])],
    );
    let out = s.export();
    s.assert_refused(&out, "evil/file");
}

#[test]
fn char_device_is_refused() {
    let s = Sandbox::new(&[layer_tar(&[
        Entry::Dir("dev/"),
        Entry::CharDevice("dev/evilnull", 1, 3),
    ])]);
    let out = s.export();
    s.assert_refused(&out, "dev/evilnull");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("device"), "{stderr}");
}

#[test]
fn opaque_whiteout_through_an_escaping_symlink_is_refused() {
    let s = Sandbox::new(&[]);
    let outside = s.outside().to_str().unwrap().to_string();
    write_layout(
        &s.layout(),
        &[
            layer_tar(&[Entry::Symlink("d", &outside)]),
            layer_tar(&[Entry::File("d/.wh..wh..opq", b"")]),
        ],
    );
    let out = s.export();
    s.assert_refused(&out, "d/.wh..wh..opq");
}

#[test]
fn whiteout_through_an_escaping_symlink_is_refused() {
    let s = Sandbox::new(&[]);
    let outside = s.outside().to_str().unwrap().to_string();
    write_layout(
        &s.layout(),
        &[
            layer_tar(&[Entry::Symlink("d", &outside)]),
            layer_tar(&[Entry::File("d/.wh.file", b"")]),
        ],
    );
    let out = s.export();
    s.assert_refused(&out, "d/.wh.file");
}

/// `.wh...` whites out the name `..`: applying it naively removes the
/// parent of the export's temp dir — the user's directory beside the target.
#[test]
fn whiteout_of_dotdot_is_refused_and_deletes_nothing() {
    let s = Sandbox::new(&[layer_tar(&[
        Entry::File("ok.txt", b"fine"),
        Entry::File(".wh...", b""),
    ])]);
    let out = s.export();
    s.assert_refused(&out, ".wh...");
}

/// `a/.wh...` names `a/..`, the root itself: it must not wipe the rootfs
/// being built, nor be accepted silently.
#[test]
fn nested_whiteout_of_dotdot_is_refused() {
    let s = Sandbox::new(&[layer_tar(&[
        Entry::File("keep.txt", b"fine"),
        Entry::Dir("a/"),
        Entry::File("a/.wh...", b""),
    ])]);
    let out = s.export();
    s.assert_refused(&out, "a/.wh...");
}

#[test]
fn refused_export_into_an_existing_empty_dir_leaves_it_empty() {
    let s = Sandbox::new(&[layer_tar(&[
        Entry::File("ok.txt", b"fine"),
        Entry::File("../escape", b"pwned"),
    ])]);
    fs::create_dir(s.out()).unwrap();
    let out = s.export();
    s.assert_refused(&out, "../escape");
    assert!(s.out().is_dir(), "the user's empty target dir was removed");
}

#[test]
fn absolute_symlinks_that_nothing_writes_through_export_fine() {
    let s = Sandbox::new(&[]);
    let outside_file = s.outside().join("file");
    let outside_file = outside_file.to_str().unwrap().to_string();
    write_layout(
        &s.layout(),
        &[
            layer_tar(&[
                Entry::Dir("bin/"),
                Entry::File("bin/busybox", b"#!fake busybox\n"),
                Entry::Symlink("bin/sh", "/bin/busybox"),
                Entry::Symlink("x", &outside_file),
            ]),
            // A later layer replaces the symlink `x` by a file: the file is
            // written in the rootfs, not through the link.
            layer_tar(&[Entry::File("x", b"new content")]),
        ],
    );
    let out = s.export();
    assert!(
        out.status.success(),
        "benign export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = s.out();
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        fs::read(root.join("bin/busybox")).unwrap(),
        b"#!fake busybox\n"
    );
    let x = fs::symlink_metadata(root.join("x")).unwrap();
    assert!(x.is_file(), "x should now be a regular file");
    assert_eq!(fs::read(root.join("x")).unwrap(), b"new content");
    s.assert_outside_untouched();
}

#[test]
fn whiteouts_and_opaque_directories_are_applied() {
    let s = Sandbox::new(&[
        layer_tar(&[
            Entry::Dir("a/"),
            Entry::File("a/x", b"x"),
            Entry::File("a/keep", b"keep"),
            Entry::Dir("b/"),
            Entry::File("b/y", b"y"),
            Entry::Dir("b/sub/"),
            Entry::File("b/sub/deep", b"deep"),
        ]),
        layer_tar(&[
            Entry::Dir("a/"),
            Entry::File("a/.wh.x", b""),
            Entry::Dir("b/"),
            Entry::File("b/.wh..wh..opq", b""),
            Entry::File("b/z", b"z"),
        ]),
    ]);
    let out = s.export();
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = s.out();
    assert!(!root.join("a/x").exists(), "a/x should be whited out");
    assert_eq!(fs::read(root.join("a/keep")).unwrap(), b"keep");
    let mut b: Vec<String> = fs::read_dir(root.join("b"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    b.sort();
    assert_eq!(b, vec!["z".to_string()]);
    assert_eq!(fs::read(root.join("b/z")).unwrap(), b"z");
    // No whiteout marker files leak into the rootfs.
    assert!(!root.join("a/.wh.x").exists());
    assert!(!root.join("b/.wh..wh..opq").exists());
    s.assert_outside_untouched();
}

#[test]
fn directory_modes_are_not_applied_through_a_symlink_that_replaced_a_parent() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sandbox::new(&[]);
    let victim = s.outside().join("victim");
    fs::create_dir(&victim).unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o700)).unwrap();
    let outside = s.outside().to_str().unwrap().to_string();
    // x/victim (0755) is created, then x itself becomes a link to outside.
    write_layout(
        &s.layout(),
        &[layer_tar(&[
            Entry::Dir("x"),
            Entry::Dir("x/victim"),
            Entry::Symlink("x", &outside),
        ])],
    );
    let out = s.export();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = fs::metadata(&victim).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode, 0o700,
        "export changed the mode of a directory outside its root"
    );
    assert!(fs::symlink_metadata(s.out().join("x"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn refusals_name_the_layer() {
    let s = Sandbox::new(&[layer_tar(&[Entry::File("../escape", b"x")])]);
    let out = s.export();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("layer sha256:"), "{stderr}");
}
