//! Ctrl-C leaves nothing of dockyard's in the user's folder, and a run
//! removes what a killed run left there (only that: other live runs'
//! temporaries stay).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn dockyard() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin("dockyard"))
}

fn temps(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|l| {
            l.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with(".dockyard-tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_run_removes_what_killed_runs_left_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let dead = (100_000..4_000_000)
        .rev()
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap();
    let stale = out.join(format!(".dockyard-tmp-{dead}-abc"));
    std::fs::write(&stale, vec![0u8; 1000]).unwrap();
    let stale_dir = out.join(format!(".dockyard-tmp-{dead}-layout-x"));
    std::fs::create_dir(&stale_dir).unwrap();
    let live = out.join(format!(".dockyard-tmp-{}-mine", std::process::id()));
    std::fs::write(&live, b"in use").unwrap();
    // Dead runs' leftovers are old; a fresh one may be another
    // container's live work (pids are per namespace) and stays.
    let fresh = out.join(format!(".dockyard-tmp-{dead}-fresh"));
    std::fs::write(&fresh, b"recent").unwrap();
    for old in [&stale, &stale_dir, &live] {
        let touched = Command::new("touch")
            .args(["-h", "-d", "2 hours ago"])
            .arg(old)
            .status()
            .unwrap();
        assert!(touched.success());
    }
    let status = dockyard()
        .env("DOCKYARD_CACHE", tmp.path().join("cache"))
        .args([
            "mutate",
            "scratch",
            &format!("docker-archive:{}/a.tar", out.display()),
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(!stale.exists() && !stale_dir.exists(), "{:?}", temps(&out));
    assert!(live.exists(), "a live process's temporary is not touched");
    assert!(fresh.exists(), "a recent temporary is not touched");
}

#[test]
fn ctrl_c_mid_copy_leaves_no_temporary_files() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let big = tmp.path().join("big");
    std::fs::create_dir(&big).unwrap();
    // 300 MB of zeros (sparse on disk): slow enough to interrupt.
    std::fs::File::create(big.join("zeros"))
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    let src = tmp.path().join("src.tar");
    let built = dockyard()
        .env("DOCKYARD_CACHE", &cache)
        .args([
            "mutate",
            "scratch",
            &format!("docker-archive:{}", src.display()),
            "--add",
            &format!("{}:/data", big.display()),
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(built.success());
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    for attempt in 0..5 {
        let mut child = dockyard()
            .env("DOCKYARD_CACHE", &cache)
            .args([
                "copy",
                &format!("docker-archive:{}", src.display()),
                &format!("oci-archive:{}/copy{attempt}.tar", out.display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Interrupt once its temporary output exists.
        let deadline = Instant::now() + Duration::from_secs(60);
        while temps(&out).is_empty() && Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if child.try_wait().unwrap().is_some() {
            continue; // finished before we could interrupt; try again
        }
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(130),
            "ended by the signal, with its code"
        );
        assert!(temps(&out).is_empty(), "left behind: {:?}", temps(&out));
        assert!(!out.join(format!("copy{attempt}.tar")).exists());
        return;
    }
    panic!("the copy always finished before it could be interrupted");
}
