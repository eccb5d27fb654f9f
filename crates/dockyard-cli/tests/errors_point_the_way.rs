//! Errors that point the right way: a web server that is not a registry,
//! an archive transport given a directory (and the reverse), a bare
//! reference with a port (the store, not an unknown transport).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use assert_cmd::Command;

fn dockyard(cache: &std::path::Path, args: &[&str]) -> Output {
    Command::cargo_bin("dockyard")
        .unwrap()
        .env("DOCKYARD_CACHE", cache)
        .args(args)
        .output()
        .unwrap()
}

fn user_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
}

/// An ordinary web server: every request gets `status`.
fn web_server(status: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                line.clear();
            }
            let body = "<html>no</html>";
            let mut conn = conn;
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, hits)
}

#[test]
fn a_web_server_is_not_a_registry() {
    let tmp = tempfile::tempdir().unwrap();
    for status in ["404 Not Found", "501 Not Implemented"] {
        let (port, hits) = web_server(status);
        let out = dockyard(
            &tmp.path().join("cache"),
            &["inspect", &format!("docker://127.0.0.1:{port}/x:1")],
        );
        user_error(&out, "not a container registry");
        assert!(
            hits.load(Ordering::SeqCst) <= 4,
            "{status}: not retried ({} requests)",
            hits.load(Ordering::SeqCst)
        );
    }
}

#[test]
fn transports_given_the_wrong_kind_of_path_say_which_to_use() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let dir = tmp.path().join("layout");
    std::fs::create_dir(&dir).unwrap();
    let file = tmp.path().join("file.tar");
    std::fs::write(&file, b"not much").unwrap();
    let out = dockyard(
        &cache,
        &["inspect", &format!("docker-archive:{}", dir.display())],
    );
    user_error(&out, "oci:DIR");
    let out = dockyard(
        &cache,
        &["inspect", &format!("oci-archive:{}", dir.display())],
    );
    user_error(&out, "oci:DIR");
    let out = dockyard(&cache, &["inspect", &format!("oci:{}", file.display())]);
    user_error(&out, "oci-archive:");
}

#[test]
fn a_bare_reference_with_a_port_means_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    for verb in [vec!["inspect"], vec!["copy"], vec!["mutate"]] {
        let mut args = verb.clone();
        args.push("localhost:5001/bb:1");
        if verb[0] != "inspect" {
            args.push("store:x:1");
        }
        let out = dockyard(&cache, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("unknown transport"), "{args:?}: {stderr}");
        user_error(&out, "the store");
    }
}

#[test]
fn an_output_that_is_a_directory_says_what_was_expected() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let dir = tmp.path().join("out");
    std::fs::create_dir(&dir).unwrap();
    for dest in [format!("{}/", dir.display()), dir.display().to_string()] {
        let out = dockyard(
            &cache,
            &[
                "mutate",
                "scratch",
                &format!("docker-archive:{dest}"),
                "--env",
                "A=1",
            ],
        );
        user_error(&out, "name the file to write");
    }
}
