//! Network faults between the client and a real registry, injected by a
//! proxy: a connection reset mid-blob (resumed with Range), bursts of 503
//! and 429 with Retry-After (retried), a corrupted blob (refused, nothing
//! stored), and a pull killed half-way then run again (resumes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use dockyard_image::progress::Silent;
use dockyard_image::{Digest, Image, Store};
use dockyard_registry::{ClientOptions, PullOptions, Pulled, PushOptions, Registry, RegistryError};
use dockyard_testsupport::registry::{
    connect, partial_files, reference, runtime, store_blob_verifies, temp_store, test_image, Fault,
    FaultProxy, Mode, RegistryGuard,
};
use tokio::runtime::Runtime;

fn options() -> ClientOptions {
    ClientOptions {
        backoff: Duration::from_millis(50),
        ..ClientOptions::default()
    }
}

/// A registry holding a 3-layer image as `faulty/app:1`; returns the image
/// as pushed (gzip layers).
fn registry_with_image(rt: &Runtime, seed: u64) -> Option<(RegistryGuard, Image)> {
    let registry = RegistryGuard::start(Mode::Open)?;
    let client = connect(rt, &registry.host(), options());
    let (_d, store) = temp_store();
    let image = test_image(seed, 3, 300 << 10);
    let pushed = rt
        .block_on(client.push(
            &image,
            &reference(&registry.host(), "faulty/app:1"),
            &store,
            &PushOptions::default(),
            Arc::new(Silent),
        ))
        .expect("push");
    Some((registry, pushed.image))
}

fn pull(
    rt: &Runtime,
    client: &Registry,
    host: &str,
    store: &Store,
) -> Result<Pulled, RegistryError> {
    rt.block_on(client.pull(
        &reference(host, "faulty/app:1"),
        store,
        &PullOptions::default(),
        &Silent,
    ))
}

fn all_blobs(image: &Image) -> Vec<Digest> {
    let mut v: Vec<Digest> = image.layers().iter().map(|l| l.digest().clone()).collect();
    v.push(image.config_digest());
    v
}

fn range_start(v: &str) -> Option<u64> {
    v.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok()
}

#[test]
fn reset_mid_blob_resumes_with_a_range_request() {
    let rt = runtime();
    let Some((registry, image)) = registry_with_image(&rt, 30) else {
        return;
    };
    let proxy = FaultProxy::start(registry.port(), Fault::ResetMidBlob);
    let client = connect(&rt, &proxy.host(), options());
    let (_d, store) = temp_store();
    let pulled = pull(&rt, &client, &proxy.host(), &store).expect("pull through resets");
    assert_eq!(pulled.image.as_ref().unwrap().digest(), image.digest());
    assert_eq!(proxy.faults_injected(), 1);
    for d in all_blobs(&image) {
        assert!(store_blob_verifies(&store, &d), "{d}");
    }
    assert!(
        partial_files(&store).is_empty(),
        "{:?}",
        partial_files(&store)
    );

    let requests = proxy.requests();
    let cut = requests
        .iter()
        .position(|q| q.faulted)
        .expect("a blob transfer was cut");
    let path = requests[cut].path.clone();
    assert!(requests[cut].header("range").is_none());
    let resumed = requests[cut + 1..]
        .iter()
        .find(|q| q.path == path && q.method == "GET")
        .unwrap_or_else(|| panic!("{path} was not fetched again: {requests:?}"));
    let range = resumed
        .header("range")
        .unwrap_or_else(|| panic!("the resume has no Range header: {resumed:?}"));
    let start = range_start(range).unwrap_or_else(|| panic!("Range {range:?} is not bytes=N-"));
    let digest: Digest = path.rsplit('/').next().unwrap().parse().unwrap();
    let size = image
        .layers()
        .iter()
        .find(|l| *l.digest() == digest)
        .map(|l| l.size())
        .expect("a layer was cut");
    assert!(start > 0 && start < size, "Range start {start} of {size}");
    assert_eq!(resumed.status, 206, "{resumed:?}");
    // Fetched once and a half, not twice.
    assert!(
        pulled.bytes_fetched < image.layers().iter().map(|l| l.size()).sum::<u64>() + size,
        "{} bytes fetched",
        pulled.bytes_fetched
    );
}

#[test]
fn burst_of_503_is_retried() {
    let rt = runtime();
    let Some((registry, image)) = registry_with_image(&rt, 31) else {
        return;
    };
    let proxy = FaultProxy::start(registry.port(), Fault::ServiceUnavailableBurst(3));
    let client = connect(&rt, &proxy.host(), options());
    let (_d, store) = temp_store();
    let pulled = pull(&rt, &client, &proxy.host(), &store).expect("pull through 503s");
    assert_eq!(pulled.image.as_ref().unwrap().digest(), image.digest());
    assert_eq!(proxy.faults_injected(), 3);
    // (The `/v2/` ping of `connect` is not part of the burst.)
    let statuses: Vec<u16> = proxy
        .requests()
        .iter()
        .filter(|q| q.path != "/v2/")
        .map(|q| q.status)
        .collect();
    assert_eq!(&statuses[..3], &[503, 503, 503], "{statuses:?}");
    for d in all_blobs(&image) {
        assert!(store_blob_verifies(&store, &d), "{d}");
    }
}

#[test]
fn too_many_requests_waits_for_retry_after() {
    let rt = runtime();
    let Some((registry, image)) = registry_with_image(&rt, 32) else {
        return;
    };
    let proxy = FaultProxy::start(registry.port(), Fault::TooManyRequests(1, 1));
    let client = connect(&rt, &proxy.host(), options());
    let (_d, store) = temp_store();
    let started = Instant::now();
    let pulled = pull(&rt, &client, &proxy.host(), &store).expect("pull through 429");
    let elapsed = started.elapsed();
    assert_eq!(pulled.image.as_ref().unwrap().digest(), image.digest());
    assert_eq!(proxy.faults_injected(), 1);
    // A behaviour check, not a benchmark: the 50 ms backoff alone would
    // retry at once; Retry-After: 1 must hold it back about a second.
    assert!(
        elapsed >= Duration::from_millis(900),
        "retried after {elapsed:?}, before Retry-After"
    );
}

#[test]
fn corrupted_blob_is_refused_and_not_stored() {
    let rt = runtime();
    let Some((registry, image)) = registry_with_image(&rt, 33) else {
        return;
    };
    let proxy = FaultProxy::start(registry.port(), Fault::FlipByte);
    let client = connect(&rt, &proxy.host(), options());
    let (_d, store) = temp_store();
    let err = pull(&rt, &client, &proxy.host(), &store).unwrap_err();
    assert!(proxy.faults_injected() >= 1);
    let RegistryError::DigestMismatch {
        expected, actual, ..
    } = &err
    else {
        panic!("expected a digest mismatch, got {err:?}");
    };
    assert_ne!(expected, actual);
    assert!(all_blobs(&image).contains(expected), "{expected}");
    let msg = err.to_string();
    assert!(msg.contains(&expected.to_string()), "{msg}");
    assert!(msg.contains(&actual.to_string()), "{msg}");
    assert!(!store.has_blob(expected), "a corrupt blob was stored");
    assert!(!store.blob_path(actual).exists());
    assert!(
        partial_files(&store).is_empty(),
        "partial left behind: {:?}",
        partial_files(&store)
    );
    // Nothing is named in the store either.
    assert!(store
        .get_image(&format!("{}/faulty/app:1", proxy.host()))
        .is_err());
}

#[test]
fn interrupted_pull_resumes_on_the_next_run() {
    let rt = runtime();
    let Some((registry, image)) = registry_with_image(&rt, 34) else {
        return;
    };
    let proxy = FaultProxy::start(registry.port(), Fault::ResetMidBlob);
    let (_d, store) = temp_store();

    // First run: the connection drops mid-blob and this client gives up.
    let impatient = connect(
        &rt,
        &proxy.host(),
        ClientOptions {
            attempts: 1,
            ..options()
        },
    );
    let err = pull(&rt, &impatient, &proxy.host(), &store).unwrap_err();
    assert!(
        matches!(err, RegistryError::RetriesExhausted { .. }),
        "{err:?}"
    );
    assert_eq!(proxy.faults_injected(), 1);
    let cut = proxy
        .requests()
        .into_iter()
        .find(|q| q.faulted)
        .expect("a cut transfer");
    let digest: Digest = cut.path.rsplit('/').next().unwrap().parse().unwrap();
    assert!(!store.has_blob(&digest), "a half blob became visible");
    let partial = store
        .root()
        .join("blobs/sha256")
        .join(format!(".dockyard-tmp-partial-{}", digest.hex()));
    let kept = std::fs::metadata(&partial)
        .unwrap_or_else(|e| panic!("no partial file {}: {e}", partial.display()))
        .len();
    assert!(kept > 0, "the partial blob is empty");

    // Second run, network healthy: resumes from the partial file.
    proxy.set_fault(Fault::None);
    proxy.clear_requests();
    let client = connect(&rt, &proxy.host(), options());
    let pulled = pull(&rt, &client, &proxy.host(), &store).expect("second run");
    assert_eq!(pulled.image.as_ref().unwrap().digest(), image.digest());
    for d in all_blobs(&image) {
        assert!(store_blob_verifies(&store, &d), "{d} is corrupt");
    }
    assert!(
        partial_files(&store).is_empty(),
        "{:?}",
        partial_files(&store)
    );
    let again = proxy
        .requests()
        .into_iter()
        .find(|q| q.method == "GET" && q.path == cut.path)
        .expect("the cut blob was fetched again");
    assert_eq!(
        again.header("range").and_then(range_start),
        Some(kept),
        "the second run should resume at {kept}: {again:?}"
    );
}

#[test]
fn retries_are_bounded_and_end_without_a_pointless_wait() {
    // A port where nothing listens: every attempt is a network error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{port}");
    let rt = runtime();
    let client = connect(
        &rt,
        &host,
        ClientOptions {
            attempts: 3,
            backoff: Duration::from_secs(1),
            ..ClientOptions::default()
        },
    );
    let (_d, store) = temp_store();
    let started = Instant::now();
    let err = pull(&rt, &client, &host, &store).unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        RegistryError::RetriesExhausted { attempts, .. } => assert_eq!(*attempts, 3),
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    assert!(err.to_string().contains(&host), "{err}");
    // Three attempts need two waits (1 s, then 2 s). Sleeping again after
    // the last attempt (4 s more) only delays the error.
    assert!(
        elapsed >= Duration::from_millis(2900),
        "gave up too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "gave up after {elapsed:?}: the client waited after its last attempt"
    );
}

#[test]
fn corrupted_manifest_is_refused_by_digest_and_by_tag() {
    let rt = runtime();
    let Some((registry, image)) = registry_with_image(&rt, 35) else {
        return;
    };
    let proxy = FaultProxy::start(registry.port(), Fault::FlipManifestByte);
    let client = connect(&rt, &proxy.host(), options());
    let (_d, store) = temp_store();
    let by_digest: dockyard_image::Reference =
        format!("{}/faulty/app@{}", proxy.host(), image.digest())
            .parse()
            .unwrap();
    let err = rt
        .block_on(client.pull(&by_digest, &store, &PullOptions::default(), &Silent))
        .unwrap_err();
    match &err {
        RegistryError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(*expected, image.digest());
            assert_ne!(*actual, image.digest());
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    // By tag, the registry's Docker-Content-Digest header is the check.
    let err = pull(&rt, &client, &proxy.host(), &store).unwrap_err();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{err:?}"
    );
    assert!(proxy.faults_injected() >= 2);
    assert!(!store.has_blob(&image.digest()));
    assert!(store.list().unwrap().is_empty(), "nothing may be named");
}

#[test]
fn a_damaged_partial_blob_from_an_earlier_run_is_fetched_again() {
    let rt = runtime();
    let Some((registry, image)) = registry_with_image(&rt, 77) else {
        return;
    };
    let client = connect(&rt, &registry.host(), options());
    let (_d, store) = temp_store();
    // As after a crash that lost the data: a partial file of the full
    // length whose bytes are wrong.
    let layer = &image.layers()[1];
    let partial = store
        .root()
        .join("blobs/sha256")
        .join(format!(".dockyard-tmp-partial-{}", layer.digest().hex()));
    std::fs::write(&partial, vec![0u8; layer.size() as usize]).unwrap();
    let pulled =
        pull(&rt, &client, &registry.host(), &store).expect("the pull starts that blob over");
    assert_eq!(pulled.image.as_ref().unwrap().digest(), image.digest());
    for d in all_blobs(&image) {
        assert!(store_blob_verifies(&store, &d), "{d}");
    }
    assert!(partial_files(&store).is_empty());
}

/// Runs `f` on a thread and waits for it, panicking if it never returns:
/// a liveness guard for tests of hangs (not a measure of speed).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("still hanging after {limit:?}"))
}

#[test]
fn a_blob_that_stalls_mid_way_is_resumed() {
    let rt = Arc::new(runtime());
    let Some((registry, image)) = registry_with_image(&rt, 33) else {
        return;
    };
    let proxy = FaultProxy::start(registry.port(), Fault::StallMidBlob);
    let opts = ClientOptions {
        timeout: Duration::from_secs(3),
        ..options()
    };
    let client = connect(&rt, &proxy.host(), opts);
    let (dir, store) = temp_store();
    let host = proxy.host();
    let rt2 = Arc::clone(&rt);
    let pulled = within(Duration::from_secs(120), move || {
        let r = pull(&rt2, &client, &host, &store);
        drop(dir);
        r
    })
    .expect("a stalled transfer is dropped and resumed");
    assert_eq!(pulled.image.as_ref().unwrap().digest(), image.digest());
    assert_eq!(proxy.faults_injected(), 1);
    let resumed = proxy
        .requests()
        .iter()
        .filter(|r| r.is_blob_get())
        .filter_map(|r| r.header("range").and_then(range_start))
        .any(|start| start > 0);
    assert!(resumed, "the stalled blob was resumed with a Range request");
}

#[test]
fn a_registry_that_never_answers_is_an_error_not_a_hang() {
    let silent = dockyard_testsupport::registry::SilentServer::start();
    let host = silent.host();
    let err = within(Duration::from_secs(120), move || {
        let rt = runtime();
        let opts = ClientOptions {
            timeout: Duration::from_secs(1),
            plain_http: true,
            attempts: 2,
            ..options()
        };
        let result = rt.block_on(async {
            let client = Registry::connect(&host, opts).await?;
            client.fetch_manifest("x", "1").await
        });
        result.map(|_| ()).unwrap_err().to_string()
    });
    assert!(
        err.contains("timed out") || err.contains("timeout"),
        "names the silence: {err}"
    );
    drop(silent);
}
