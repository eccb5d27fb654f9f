//! Progress: one start, throttled byte counts, one finish per blob and
//! phase, with the final count equal to the blob's size — what a
//! front end (bars, a Python callback) draws from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dockyard::{Dockyard, OpenOptions, Options, Phase, Platform, Progress, WriteOptions};
use dockyard_testsupport::registry::{test_image_for, test_options, Mode, RegistryGuard};

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<(String, String, u64)>>,
}

impl Progress for Recorder {
    fn start(&self, id: &str, phase: Phase, total: u64) {
        self.push("start", format!("{id} {}", phase.name()), total);
    }
    fn bytes(&self, id: &str, done: u64) {
        self.push("bytes", id.to_string(), done);
    }
    fn finish(&self, id: &str) {
        self.push("finish", id.to_string(), 0);
    }
}

impl Recorder {
    fn push(&self, kind: &str, id: String, n: u64) {
        self.events.lock().unwrap().push((kind.to_string(), id, n));
    }
    fn take(&self) -> Vec<(String, String, u64)> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

/// Check each started blob: phase as expected, last count = total, one
/// finish, at most ~10 counts a second.
fn check(events: &[(String, String, u64)], phase: Phase, seconds: f64) -> usize {
    let mut started: HashMap<String, u64> = HashMap::new();
    for (kind, id, n) in events {
        if kind == "start" {
            let (blob, p) = id.split_once(' ').unwrap();
            if p == phase.name() {
                started.insert(blob.to_string(), *n);
            }
        }
    }
    for (blob, total) in &started {
        let counts: Vec<u64> = events
            .iter()
            .filter(|(k, id, _)| k == "bytes" && id == blob)
            .map(|(_, _, n)| *n)
            .collect();
        assert_eq!(
            counts.last(),
            Some(total),
            "{blob}: final count is the size"
        );
        assert!(
            counts.windows(2).all(|w| w[0] <= w[1]),
            "{blob}: counts only grow"
        );
        let allowed = 3 + (seconds * 10.0).ceil() as usize;
        assert!(
            counts.len() <= allowed,
            "{blob}: {} counts in {seconds:.2}s",
            counts.len()
        );
        let finishes = events
            .iter()
            .filter(|(k, id, _)| k == "finish" && id == blob)
            .count();
        assert_eq!(finishes, 1, "{blob}");
    }
    started.len()
}

#[test]
fn transfers_report_throttled_per_blob_progress() {
    let Some(registry) = RegistryGuard::start(Mode::Open) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let recorder = Arc::new(Recorder::default());
    let facade = |dir: &str| {
        Dockyard::new(Options {
            store_root: Some(tmp.path().join(dir)),
            registry: test_options(),
            progress: recorder.clone(),
        })
    };
    let image = test_image_for(41, 3, 2_000_000, &Platform::host());
    let dst = format!("docker://{}/progress/app:1", registry.host());

    let t = Instant::now();
    facade("a")
        .write(&image.into(), &dst, &WriteOptions::default())
        .unwrap();
    let uploads = check(&recorder.take(), Phase::Upload, t.elapsed().as_secs_f64());
    assert_eq!(uploads, 4, "three layers and the config");

    let t = Instant::now();
    facade("b").pull(&dst, &OpenOptions::default()).unwrap();
    let fetches = check(&recorder.take(), Phase::Fetch, t.elapsed().as_secs_f64());
    // The config is read with the manifests (as a lazy open reads it).
    assert_eq!(fetches, 3, "three layers");

    let t = Instant::now();
    let out = format!("oci:{}:x", tmp.path().join("layout").display());
    facade("b")
        .copy(
            &format!("store:{}", &dst["docker://".len()..]),
            &out,
            &OpenOptions::default(),
            &WriteOptions::default(),
        )
        .unwrap();
    // Store blobs are linked into the layout (nothing to count) or copied.
    check(&recorder.take(), Phase::Copy, t.elapsed().as_secs_f64());
}
