//! Reproducible layer authoring: `LayerBuilder` + `LayerOptions`, read back
//! with the independent `tar` crate.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use dockyard_image::mutate::ConfigEdit;
use dockyard_image::tar::{normalize_image_path, LayerBuilder, LayerOptions};
use dockyard_image::{Image, Platform};
use sha2::{Digest as _, Sha256};

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn opts(mtime: u64) -> LayerOptions {
    LayerOptions {
        mtime,
        keep_owner: false,
    }
}

fn write_layer(b: &LayerBuilder) -> (Vec<u8>, String, u64) {
    let (bytes, digest, size) = b.write_to(Vec::new()).expect("write layer");
    (bytes, digest.to_string(), size)
}

/// One entry of a tar as the `tar` crate reads it.
#[derive(Debug, Clone)]
struct TarEntry {
    path: Vec<u8>,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    uname: Vec<u8>,
    gname: Vec<u8>,
    mtime: u64,
    size: u64,
    link: Option<Vec<u8>>,
    data: Vec<u8>,
}

fn read_tar(bytes: &[u8]) -> Vec<TarEntry> {
    let mut ar = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("entry data");
        out.push(TarEntry {
            path: e.path_bytes().to_vec(),
            kind: h.entry_type(),
            mode: h.mode().expect("mode"),
            uid: h.uid().expect("uid"),
            gid: h.gid().expect("gid"),
            uname: h.username_bytes().unwrap_or_default().to_vec(),
            gname: h.groupname_bytes().unwrap_or_default().to_vec(),
            mtime: h.mtime().expect("mtime"),
            size: e.size(),
            link: e.link_name_bytes().map(|l| l.to_vec()),
            data,
        });
    }
    out
}

fn by_path(entries: &[TarEntry]) -> BTreeMap<Vec<u8>, TarEntry> {
    entries
        .iter()
        .map(|e| (e.path.clone(), e.clone()))
        .collect()
}

fn set_mode(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A small tree: an executable, a plain file, a symlink, a hardlink pair,
/// an empty directory with unusual mode.
fn make_tree(root: &Path, mtime: SystemTime, owner: Option<(u32, u32)>) {
    set_mode(root, 0o755);
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("data")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    set_mode(&root.join("bin/tool"), 0o755);
    fs::write(root.join("etc/conf"), b"x=1\n").unwrap();
    set_mode(&root.join("etc/conf"), 0o644);
    symlink("conf", root.join("etc/link")).unwrap();
    fs::write(root.join("data/a"), b"shared contents\n").unwrap();
    set_mode(&root.join("data/a"), 0o644);
    fs::hard_link(root.join("data/a"), root.join("data/b")).unwrap();
    for d in ["bin", "etc", "data"] {
        set_mode(&root.join(d), 0o755);
    }
    set_mode(&root.join("empty"), 0o750);
    // Different times per copy.
    for f in ["bin/tool", "etc/conf", "data/a"] {
        let file = fs::File::options()
            .write(true)
            .open(root.join(f))
            .expect("open for set_modified");
        file.set_modified(mtime).expect("set_modified");
    }
    for d in ["bin", "etc", "data", "empty", ""] {
        let dir = fs::File::open(root.join(d)).expect("open dir");
        dir.set_modified(mtime).expect("set_modified dir");
    }
    if let Some((uid, gid)) = owner {
        for p in [
            "", "bin", "bin/tool", "etc", "etc/conf", "data", "data/a", "empty",
        ] {
            std::os::unix::fs::chown(root.join(p), Some(uid), Some(gid)).expect("chown");
        }
        std::os::unix::fs::lchown(root.join("etc/link"), Some(uid), Some(gid)).expect("lchown");
    }
}

#[test]
fn host_directory_with_prefix_reads_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    let owner = running_as_root().then_some((1234, 5678));
    make_tree(
        &src,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
        owner,
    );

    let mtime = 1_600_000_000;
    let mut b = LayerBuilder::new(opts(mtime));
    b.add_path(&src, "/opt/app").unwrap();
    let (bytes, digest, size) = write_layer(&b);
    assert_eq!(size, bytes.len() as u64);
    assert_eq!(
        digest,
        sha256_digest(&bytes),
        "diff_id is the sha256 of the tar"
    );
    assert_eq!(bytes.len() % 512, 0);

    assert!(
        !contains(&bytes, b"PaxHeaders"),
        "short paths need no PAX header"
    );
    let entries = read_tar(&bytes);
    let paths: Vec<String> = entries
        .iter()
        .map(|e| String::from_utf8(e.path.clone()).unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "opt/",
            "opt/app/",
            "opt/app/bin/",
            "opt/app/bin/tool",
            "opt/app/data/",
            "opt/app/data/a",
            "opt/app/data/b",
            "opt/app/empty/",
            "opt/app/etc/",
            "opt/app/etc/conf",
            "opt/app/etc/link",
        ]
    );
    // Sorted by path (without the trailing '/' of directories).
    let keys: Vec<&[u8]> = entries
        .iter()
        .map(|e| e.path.strip_suffix(b"/").unwrap_or(&e.path))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "entries are sorted by path");

    for e in &entries {
        let p = String::from_utf8_lossy(&e.path);
        assert_eq!(e.mtime, mtime, "{p}: mtime is the option's");
        assert_eq!((e.uid, e.gid), (0, 0), "{p}: owner is root");
        assert!(e.uname.is_empty(), "{p}: empty uname");
        assert!(e.gname.is_empty(), "{p}: empty gname");
    }
    let m = by_path(&entries);
    let get = |p: &str| m.get(p.as_bytes()).unwrap_or_else(|| panic!("{p} missing"));

    // Parent directory nobody named: 0755.
    assert_eq!(get("opt/").kind, tar::EntryType::Directory);
    assert_eq!(get("opt/").mode, 0o755);
    assert_eq!(get("opt/app/").kind, tar::EntryType::Directory);
    assert_eq!(get("opt/app/empty/").mode, 0o750);

    let tool = get("opt/app/bin/tool");
    assert_eq!(tool.kind, tar::EntryType::Regular);
    assert_eq!(tool.mode, 0o755, "executable bit kept");
    assert_eq!(tool.data, b"#!/bin/sh\necho tool\n");
    assert_eq!(tool.size, tool.data.len() as u64);

    let conf = get("opt/app/etc/conf");
    assert_eq!(conf.mode, 0o644);
    assert_eq!(conf.data, b"x=1\n");

    let link = get("opt/app/etc/link");
    assert_eq!(link.kind, tar::EntryType::Symlink);
    assert_eq!(link.link.as_deref(), Some(&b"conf"[..]));
    assert_eq!(link.size, 0);

    let a = get("opt/app/data/a");
    assert_eq!(a.kind, tar::EntryType::Regular);
    assert_eq!(a.data, b"shared contents\n");
    let hb = get("opt/app/data/b");
    assert_eq!(hb.kind, tar::EntryType::Link, "second path is a hardlink");
    assert_eq!(hb.link.as_deref(), Some(&b"opt/app/data/a"[..]));
    assert_eq!(hb.size, 0);
    assert!(hb.data.is_empty());

    // keep_owner: the host owners appear.
    if let Some((uid, gid)) = owner {
        let mut b = LayerBuilder::new(LayerOptions {
            mtime,
            keep_owner: true,
        });
        b.add_path(&src, "/opt/app").unwrap();
        let (bytes, _, _) = write_layer(&b);
        let m = by_path(&read_tar(&bytes));
        let tool = &m[&b"opt/app/bin/tool"[..]];
        assert_eq!((tool.uid, tool.gid), (u64::from(uid), u64::from(gid)));
        // Directories nobody named stay root's.
        assert_eq!((m[&b"opt/"[..]].uid, m[&b"opt/"[..]].gid), (0, 0));
    }
}

#[test]
fn in_memory_contents_and_whiteouts() {
    let mut b = LayerBuilder::new(opts(42));
    b.add_contents("/etc/motd", b"hi".to_vec(), 0o644)
        .unwrap()
        .add_contents("/usr/local/bin/run", b"#!/bin/sh\n".to_vec(), 0o755)
        .unwrap();
    b.delete("/etc/old").unwrap();
    b.make_opaque("/var").unwrap();
    b.delete("toplevel").unwrap();
    let (bytes, digest, _) = write_layer(&b);
    assert_eq!(digest, sha256_digest(&bytes));
    let entries = read_tar(&bytes);
    let paths: Vec<String> = entries
        .iter()
        .map(|e| String::from_utf8(e.path.clone()).unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            ".wh.toplevel",
            "etc/",
            "etc/.wh.old",
            "etc/motd",
            "usr/",
            "usr/local/",
            "usr/local/bin/",
            "usr/local/bin/run",
            "var/",
            "var/.wh..wh..opq",
        ]
    );
    let m = by_path(&entries);
    let motd = &m[&b"etc/motd"[..]];
    assert_eq!(motd.data, b"hi");
    assert_eq!(motd.mode, 0o644);
    assert_eq!(m[&b"usr/local/bin/run"[..]].mode, 0o755);
    for wh in [&b"etc/.wh.old"[..], b"var/.wh..wh..opq", b".wh.toplevel"] {
        let e = &m[wh];
        assert_eq!(e.kind, tar::EntryType::Regular);
        assert_eq!(e.size, 0);
    }
    for e in &entries {
        assert_eq!(e.mtime, 42);
        assert_eq!((e.uid, e.gid), (0, 0));
    }
    // Deleting / or writing at / is refused.
    assert!(LayerBuilder::new(opts(0)).delete("/").is_err());
    assert!(LayerBuilder::new(opts(0))
        .add_contents("/", b"x".to_vec(), 0o644)
        .is_err());
}

#[test]
fn long_paths_long_link_targets_and_non_utf8_names() {
    // Over 100 bytes, splittable into ustar prefix + name.
    let splittable = format!("/a/{}/{}/file.txt", "d".repeat(60), "e".repeat(60));
    // A last component of 150 bytes: cannot be split, needs a PAX path.
    let unsplittable = format!("/x/{}", "n".repeat(150));
    // A directory with a 150-byte name: its own entry (with the trailing
    // '/') needs PAX; the file inside splits at that directory.
    let long_dir = format!("/y/{}", "m".repeat(150));
    let in_long_dir = format!("{long_dir}/f");
    // A 200-byte name at the top.
    let long_top = format!("/{}", "t".repeat(200));
    let long_target = format!("../{}", "z/".repeat(80)); // 163 bytes
    let mut b = LayerBuilder::new(opts(7));
    b.add_contents(&splittable, b"split".to_vec(), 0o644)
        .unwrap();
    b.add_contents(&unsplittable, b"pax".to_vec(), 0o600)
        .unwrap();
    b.add_contents(&in_long_dir, b"in dir".to_vec(), 0o644)
        .unwrap();
    b.add_contents(&long_top, b"top".to_vec(), 0o644).unwrap();
    b.add_symlink("/l/short", &long_target).unwrap();

    // Host files: non-UTF-8 names, a long non-UTF-8 name, a long symlink target.
    let tmp = tempfile::tempdir().unwrap();
    let host = tmp.path().join("h");
    fs::create_dir(&host).unwrap();
    let latin1 = OsStr::from_bytes(b"caf\xe9");
    fs::write(host.join(latin1), b"latin-1 name").unwrap();
    let mut long_bin = b"\xff\xfe".to_vec();
    long_bin.extend(std::iter::repeat_n(b'q', 150));
    let long_bin_name = OsStr::from_bytes(&long_bin);
    fs::create_dir(host.join(long_bin_name)).unwrap();
    fs::write(host.join(long_bin_name).join("inner"), b"deep").unwrap();
    let host_target = format!("/{}", "y".repeat(300));
    symlink(&host_target, host.join("far")).unwrap();
    let bad_target = OsStr::from_bytes(b"tar\x80get");
    symlink(bad_target, host.join("badlink")).unwrap();
    b.add_path(&host, "/n").unwrap();

    let (bytes, digest, _) = write_layer(&b);
    assert_eq!(digest, sha256_digest(&bytes));
    // PAX records were written for what ustar cannot hold.
    let unsplittable_path = format!(" path={}\n", unsplittable.trim_start_matches('/'));
    assert!(contains(&bytes, unsplittable_path.as_bytes()));
    let linkpath = format!(" linkpath={long_target}\n");
    assert!(contains(&bytes, linkpath.as_bytes()));
    assert!(contains(&bytes, b" hdrcharset=BINARY\n"));
    // The splittable path went into ustar prefix + name, not PAX.
    let dir_path = format!(" path={}/\n", long_dir.trim_start_matches('/'));
    assert!(contains(&bytes, dir_path.as_bytes()));
    let splittable_path = format!(" path={}", splittable.trim_start_matches('/'));
    assert!(!contains(&bytes, splittable_path.as_bytes()));
    let in_dir_path = format!(" path={}", in_long_dir.trim_start_matches('/'));
    assert!(!contains(&bytes, in_dir_path.as_bytes()));
    let entries = read_tar(&bytes);
    let m = by_path(&entries);
    let strip = |s: &str| s.trim_start_matches('/').as_bytes().to_vec();

    let e = m.get(&strip(&splittable)).expect("splittable path");
    assert_eq!(e.data, b"split");
    let e = m.get(&strip(&unsplittable)).expect("PAX path");
    assert_eq!(e.data, b"pax");
    assert_eq!(e.mode, 0o600);
    assert_eq!(
        m.get(&strip(&in_long_dir)).expect("in long dir").data,
        b"in dir"
    );
    let mut dir = strip(&long_dir);
    dir.push(b'/');
    assert_eq!(
        m.get(&dir).expect("long directory").kind,
        tar::EntryType::Directory
    );
    assert_eq!(m.get(&strip(&long_top)).expect("long top").data, b"top");
    let l = m.get(&b"l/short"[..]).expect("symlink");
    assert_eq!(l.kind, tar::EntryType::Symlink);
    assert_eq!(l.link.as_deref(), Some(long_target.as_bytes()));

    assert_eq!(
        m.get(&b"n/caf\xe9"[..]).expect("latin-1 name").data,
        b"latin-1 name"
    );
    let mut inner = b"n/".to_vec();
    inner.extend(&long_bin);
    let mut inner_dir = inner.clone();
    inner_dir.push(b'/');
    assert_eq!(
        m.get(&inner_dir).expect("long non-UTF-8 dir").kind,
        tar::EntryType::Directory
    );
    inner.extend(b"/inner");
    assert_eq!(m.get(&inner).expect("long non-UTF-8 file").data, b"deep");
    assert_eq!(
        m.get(&b"n/far"[..]).expect("far").link.as_deref(),
        Some(host_target.as_bytes())
    );
    assert_eq!(
        m.get(&b"n/badlink"[..]).expect("badlink").link.as_deref(),
        Some(&b"tar\x80get"[..])
    );

    // Nothing but real entries: no PAX header leaks as a file, every path
    // the builder wrote is accounted for.
    for e in &entries {
        assert!(
            !e.path.starts_with(b"PaxHeaders"),
            "a PAX header was read as an entry: {:?}",
            String::from_utf8_lossy(&e.path)
        );
        assert_eq!(e.mtime, 7);
    }
    // Same input ⇒ same bytes, even with PAX headers.
    let (again, _, _) = write_layer(&b);
    assert_eq!(bytes, again);
}

/// A `Write` that hands 1 MiB chunks to another thread.
struct ChanWriter(mpsc::SyncSender<Vec<u8>>);

impl Write for ChanWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send(buf.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "reader went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct ChanReader {
    rx: mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Hashes what is read through it.
struct HashRead<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashRead<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        self.hasher.update(&out[..n]);
        Ok(n)
    }
}

#[test]
fn file_over_8_gib_gets_a_pax_size_and_streams() {
    const SIZE: u64 = (8 << 30) + 1024;
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.bin");
    {
        let mut f = fs::File::create(&big).unwrap();
        f.write_all(b"HEAD").unwrap();
        f.set_len(SIZE).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"TAIL", SIZE - 4).unwrap();
        f.sync_all().unwrap();
    }
    let meta = fs::metadata(&big).unwrap();
    assert_eq!(meta.len(), SIZE);
    if meta.blocks() * 512 > 64 << 20 {
        // Not sparse: do not fill the disk.
        fs::remove_file(&big).unwrap();
        eprintln!(
            "SKIP: {} does not support sparse files",
            tmp.path().display()
        );
        return;
    }

    let mut b = LayerBuilder::new(opts(1_700_000_000));
    b.add_path(&big, "/data/big.bin").unwrap();
    b.add_contents("/data/zzz", b"after".to_vec(), 0o644)
        .unwrap();

    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(8);
    let reader = std::thread::spawn(move || {
        let mut hr = HashRead {
            inner: ChanReader {
                rx,
                buf: Vec::new(),
                pos: 0,
            },
            hasher: Sha256::new(),
        };
        let mut seen = Vec::new();
        {
            let mut ar = tar::Archive::new(&mut hr);
            for e in ar.entries().expect("entries") {
                let mut e = e.expect("entry");
                let path = e.path_bytes().to_vec();
                let size = e.size();
                let mut head = [0u8; 4];
                let mut tail = [0u8; 4];
                let mut total = 0u64;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = e.read(&mut buf).expect("entry data");
                    if n == 0 {
                        break;
                    }
                    if total < 4 {
                        let k = (4 - total as usize).min(n);
                        head[total as usize..total as usize + k].copy_from_slice(&buf[..k]);
                    }
                    // Keep the last four bytes seen.
                    if n >= 4 {
                        tail.copy_from_slice(&buf[n - 4..n]);
                    } else {
                        tail.rotate_left(n);
                        tail[4 - n..].copy_from_slice(&buf[..n]);
                    }
                    total += n as u64;
                }
                seen.push((path, size, total, head, tail));
            }
        }
        // Drain what follows the end-of-archive marker.
        io::copy(&mut hr, &mut io::sink()).expect("drain");
        (seen, format!("sha256:{:x}", hr.hasher.finalize()))
    });
    let out = io::BufWriter::with_capacity(1 << 20, ChanWriter(tx));
    let (out, digest, size) = b.write_to(out).expect("stream the layer");
    drop(out.into_inner().map_err(|e| e.into_error()).expect("flush"));
    let (seen, read_digest) = reader.join().expect("reader thread");

    assert_eq!(read_digest, digest.to_string(), "diff_id of what streamed");
    assert!(size > SIZE);
    let big_entry = seen
        .iter()
        .find(|(p, ..)| p == b"data/big.bin")
        .expect("the big entry");
    assert_eq!(big_entry.1, SIZE, "size() from the PAX size header");
    assert_eq!(big_entry.2, SIZE, "bytes read");
    assert_eq!(&big_entry.3, b"HEAD");
    assert_eq!(&big_entry.4, b"TAIL");
    let after = seen
        .iter()
        .find(|(p, ..)| p == b"data/zzz")
        .expect("the entry after the big one is in place");
    assert_eq!(after.1, 5);
    assert_eq!(&after.3, b"afte");
}

#[test]
fn same_tree_twice_gives_the_same_bytes_and_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    let two = tmp.path().join("two");
    fs::create_dir(&one).unwrap();
    fs::create_dir(&two).unwrap();
    let root = running_as_root();
    make_tree(
        &one,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_111_111_111),
        root.then_some((1000, 1000)),
    );
    make_tree(
        &two,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_222_222_222),
        root.then_some((2000, 3000)),
    );
    // The two copies really differ on disk.
    let m1 = fs::metadata(one.join("etc/conf")).unwrap();
    let m2 = fs::metadata(two.join("etc/conf")).unwrap();
    assert_ne!(m1.mtime(), m2.mtime());
    assert_ne!(m1.ino(), m2.ino());
    if root {
        assert_ne!(m1.uid(), m2.uid());
    }

    let build = |dir: &Path, mtime: u64| {
        let mut b = LayerBuilder::new(opts(mtime));
        b.add_path(dir, "/app").unwrap();
        b.add_contents("/etc/motd", b"hello".to_vec(), 0o644)
            .unwrap();
        b
    };
    let (bytes1, d1, _) = write_layer(&build(&one, 1_700_000_000));
    let (bytes2, d2, _) = write_layer(&build(&two, 1_700_000_000));
    assert!(bytes1 == bytes2, "same input, same tar bytes");
    assert_eq!(d1, d2);
    assert_eq!(d1, sha256_digest(&bytes1));
    let (_, d3, _) = write_layer(&build(&one, 1_700_000_001));
    assert_ne!(d1, d3, "the mtime option changes the digest");

    // Built into layers and images: same image digest.
    let image_of = |dir: &Path| {
        let layer = build(dir, 1_700_000_000)
            .build(tmp.path())
            .expect("build layer");
        Image::scratch(&Platform::host())
            .with_created(1_700_000_000)
            .append_layer(layer, "test: add app")
            .with_config_edits(&[
                ConfigEdit::Env("PATH".into(), "/app/bin".into()),
                ConfigEdit::Cmd(vec!["/app/bin/tool".into()]),
            ])
    };
    let i1 = image_of(&one);
    let i2 = image_of(&two);
    assert_eq!(i1.layers()[0].diff_id().to_string(), d1);
    assert_eq!(i1.digest(), i2.digest());
    assert_eq!(i1.manifest_raw(), i2.manifest_raw());
    assert_eq!(i1.config_raw(), i2.config_raw());
}

#[test]
fn normalize_image_path_refuses_dotdot() {
    assert_eq!(normalize_image_path(b"/a//./b/").unwrap(), b"a/b");
    assert_eq!(normalize_image_path(b"/").unwrap(), b"");
    for bad in [&b"/a/../b"[..], b"..", b"../etc/passwd", b"/x/.."] {
        let err = normalize_image_path(bad).unwrap_err();
        assert!(err.contains(".."), "{err}");
    }
    let mut b = LayerBuilder::new(opts(0));
    let err = b
        .add_contents("/etc/../../passwd", b"x".to_vec(), 0o644)
        .unwrap_err()
        .to_string();
    assert!(err.contains(".."), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    assert!(b.add_path(tmp.path(), "/opt/../..").is_err());
    assert!(b.delete("/a/../../b").is_err());
    assert!(b.make_opaque("/..").is_err());
    assert!(b.add_symlink("/../l", "x").is_err());
    assert!(b.is_empty(), "nothing was added by refused calls");
}
