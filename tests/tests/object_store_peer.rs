//! The S3 peer of the object-storage backend: a real SeaweedFS (`e2e::seaweed`) and the
//! behaviours the backend will rely on, checked through `object_store` as the backend uses it —
//! plain reads and writes, create-if-absent and compare-and-swap on the e-tag (also under
//! concurrent writers), refused credentials, and an outage that fails fast and loses nothing.
//!
//! What SeaweedFS 4.48 does beyond these tests, measured while writing them: conditional writes
//! to one key are serialised, and a writer that has to wait is answered about 1 s after the one
//! before it (8 racing writers: the last answered after about 7 s), so these races use two and
//! the backend's timeouts must allow for the queue. `copy_if_not_exists` with
//! `S3CopyIfNotExists::Multipart` is not atomic there (up to 7 of 8 racing copies succeeded), and
//! object_store's multipart uploads take no `PutMode`: only single-part `put_opts` is a safe
//! create-if-absent or compare-and-swap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::seaweed::Seaweed;
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, S3ConditionalPut};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, Error, ObjectStore, ObjectStoreExt, PutMode, PutPayload, PutResult, RetryConfig,
    UpdateVersion,
};
use tokio::sync::Barrier;

/// Rounds of each race: a store that serialises conditional writes per key must produce one
/// winner in every one of them.
const RACE_ROUNDS: usize = 20;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

/// A client as the backend will configure one: conditional puts on the e-tag, and timeouts and
/// retries short enough that an unreachable server is an error within seconds, not minutes.
fn store(seaweed: &Seaweed, bucket: &str) -> AmazonS3 {
    configured(seaweed.builder(bucket))
}

fn configured(builder: object_store::aws::AmazonS3Builder) -> AmazonS3 {
    builder
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_client_options(
            // Replaces the builder's options, `allow_http` included.
            ClientOptions::new()
                .with_allow_http(true)
                .with_connect_timeout(Duration::from_secs(1))
                .with_timeout(Duration::from_secs(5)),
        )
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(500),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: Duration::from_secs(5),
        })
        .build()
        .expect("S3 client")
}

async fn read(store: &AmazonS3, key: &str) -> object_store::Result<Vec<u8>> {
    Ok(store.get(&Path::from(key)).await?.bytes().await?.to_vec())
}

async fn keys(store: &AmazonS3, prefix: &str) -> Vec<String> {
    let listed: Vec<_> = store.list(Some(&Path::from(prefix))).try_collect().await.expect("list");
    let mut keys: Vec<String> = listed.into_iter().map(|m| m.location.to_string()).collect();
    keys.sort();
    keys
}

async fn put_mode(store: &AmazonS3, key: &str, body: String, mode: PutMode) -> object_store::Result<PutResult> {
    store.put_opts(&Path::from(key), PutPayload::from(body), mode.into()).await
}

#[test]
fn put_get_list_delete_under_a_prefix() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket("parts");
    let s3 = store(&seaweed, "parts");
    runtime().block_on(async {
        for (key, body) in [
            ("tenant-a/traces/0001.part", "first"),
            ("tenant-a/traces/0002.part", "second"),
            ("tenant-a/logs/0001.part", "log"),
            ("tenant-b/traces/0001.part", "other tenant"),
        ] {
            s3.put(&Path::from(key), PutPayload::from(body)).await.expect("put");
        }
        assert_eq!(read(&s3, "tenant-a/traces/0002.part").await.unwrap(), b"second");
        assert_eq!(s3.head(&Path::from("tenant-a/logs/0001.part")).await.expect("head").size, 3);
        assert_eq!(
            keys(&s3, "tenant-a").await,
            ["tenant-a/logs/0001.part", "tenant-a/traces/0001.part", "tenant-a/traces/0002.part"]
        );
        let level = s3.list_with_delimiter(Some(&Path::from("tenant-a"))).await.expect("list with delimiter");
        let mut folders: Vec<String> = level.common_prefixes.iter().map(ToString::to_string).collect();
        folders.sort();
        assert_eq!(folders, ["tenant-a/logs", "tenant-a/traces"]);
        assert!(level.objects.is_empty(), "{:?}", level.objects);

        s3.delete(&Path::from("tenant-a/traces/0001.part")).await.expect("delete");
        assert!(matches!(read(&s3, "tenant-a/traces/0001.part").await, Err(Error::NotFound { .. })));
        assert_eq!(keys(&s3, "tenant-a/traces").await, ["tenant-a/traces/0002.part"]);
        // S3 deletes are idempotent: deleting what is gone is not an error.
        s3.delete(&Path::from("tenant-a/traces/0001.part")).await.expect("delete again");
        assert_eq!(keys(&s3, "tenant-b").await, ["tenant-b/traces/0001.part"]);
    });
}

/// The harness itself: while a killed server is down, other processes may bind its ports (a
/// restart once failed with "s3 failed to listen on grpc port …: address already in use").
/// A restart moves the internal ports that were taken and serves the same objects on the same
/// S3 endpoint.
#[test]
fn a_restart_moves_the_internal_ports_another_process_took() {
    let mut seaweed = Seaweed::start();
    seaweed.create_bucket("parts");
    let endpoint = seaweed.endpoint();
    runtime().block_on(async {
        let s3 = store(&seaweed, "parts");
        s3.put(&Path::from("k"), PutPayload::from("kept")).await.expect("put");
    });
    seaweed.kill();
    let before = seaweed.movable_ports();
    let squatters: Vec<std::net::TcpListener> = before
        .iter()
        .map(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).expect("a killed server's port is free"))
        .collect();
    seaweed.restart();
    let after = seaweed.movable_ports();
    assert!(before.iter().zip(&after).all(|(b, a)| b != a), "{before:?} -> {after:?}");
    assert_eq!(seaweed.endpoint(), endpoint);
    runtime().block_on(async {
        let s3 = store(&seaweed, "parts");
        assert_eq!(read(&s3, "k").await.unwrap(), b"kept");
    });
    drop(squatters);
}

/// The harness itself: a port a restart cannot move (the master's gRPC port, in its raft state)
/// was once bound by another process while the server was down, and `weed` exited at the restart
/// with "master failed to listen on grpc port …: address already in use". While the server is
/// down its kept ports are held by the harness; one taken in the moment after the harness lets
/// it go is waited for.
#[test]
fn a_restart_keeps_its_fixed_ports_and_waits_for_one_another_process_holds_for_a_while() {
    let mut seaweed = Seaweed::start();
    seaweed.create_bucket("parts");
    runtime().block_on(async {
        let s3 = store(&seaweed, "parts");
        s3.put(&Path::from("k"), PutPayload::from("kept")).await.expect("put");
    });
    seaweed.kill();
    let fixed = seaweed.fixed_ports();
    for port in &fixed {
        // Held: a bind without SO_REUSEADDR fails (one with it would share the port with a socket
        // that is not listening, but such a bind needs the number, and a bind to port 0 or a
        // connection's local port never picks a bound port).
        let probe = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
        let bind = probe.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], *port)).into());
        assert!(
            bind.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::AddrInUse),
            "port {port} of a killed server is held: {bind:?}"
        );
        let connect = std::net::TcpStream::connect(("127.0.0.1", *port));
        let refused = connect.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused);
        assert!(refused, "a connection to port {port} of a killed server is refused: {connect:?}");
    }
    seaweed.release_fixed_ports();
    let master_grpc = fixed[1];
    let squatter = std::net::TcpListener::bind(("127.0.0.1", master_grpc)).expect("a released port is free");
    let leaves = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(squatter);
    });
    seaweed.restart();
    leaves.join().expect("the squatter thread");
    assert_eq!(seaweed.fixed_ports(), fixed);
    assert!(seaweed.log().contains("address already in use"), "the first restart met the taken port");
    runtime().block_on(async {
        let s3 = store(&seaweed, "parts");
        assert_eq!(read(&s3, "k").await.unwrap(), b"kept");
    });
}

#[test]
fn a_bucket_nobody_created_is_an_error() {
    let seaweed = Seaweed::start();
    let s3 = store(&seaweed, "never-created");
    runtime().block_on(async {
        let put = s3.put(&Path::from("k"), PutPayload::from("v")).await;
        assert!(matches!(put, Err(Error::NotFound { .. })), "{put:?}");
    });
}

#[test]
fn create_on_an_existing_key_is_already_exists() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket("manifests");
    let s3 = store(&seaweed, "manifests");
    runtime().block_on(async {
        put_mode(&s3, "m/0001", "first".into(), PutMode::Create).await.expect("create a new key");
        let again = put_mode(&s3, "m/0001", "second".into(), PutMode::Create).await;
        assert!(matches!(again, Err(Error::AlreadyExists { .. })), "{again:?}");
        assert_eq!(read(&s3, "m/0001").await.unwrap(), b"first");
    });
}

/// Puts `key` from every writer at once (released together by a barrier), writer `i` writing
/// `text(i)` with `mode`; whether exactly one succeeded, the others were refused as `refused`
/// says, and the stored object is the winner's (`None`), or what happened instead.
async fn race(
    writers: &[Arc<AmazonS3>],
    key: &str,
    mode: PutMode,
    text: impl Fn(usize) -> String,
    refused: fn(&Error) -> bool,
) -> Option<String> {
    let barrier = Arc::new(Barrier::new(writers.len()));
    let tasks: Vec<_> = writers
        .iter()
        .enumerate()
        .map(|(writer, s3)| {
            let (s3, key, barrier, mode, body) =
                (Arc::clone(s3), key.to_string(), Arc::clone(&barrier), mode.clone(), text(writer));
            tokio::spawn(async move {
                barrier.wait().await;
                put_mode(&s3, &key, body, mode).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("writer task"));
    }
    let winners: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
    let losers_refused = results.iter().filter(|r| r.as_ref().is_err_and(refused)).count() == results.len() - 1;
    let stored = read(&writers[0], key).await.map(|b| String::from_utf8_lossy(&b).into_owned());
    let winner_stored = winners.len() == 1 && stored.as_deref().ok() == Some(&text(winners[0]));
    (!(losers_refused && winner_stored)).then(|| format!("results {results:?}, stored {stored:?}"))
}

fn assert_one_winner_each_round(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} of {RACE_ROUNDS} rounds without exactly one winner:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn concurrent_creates_of_one_key_have_one_winner() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket("manifests");
    // Two clients, two connection pools: the writers share nothing but the server.
    let writers = [Arc::new(store(&seaweed, "manifests")), Arc::new(store(&seaweed, "manifests"))];
    runtime().block_on(async {
        let mut failures = Vec::new();
        for round in 0..RACE_ROUNDS {
            let key = format!("race/{round:04}");
            let refused = |e: &Error| matches!(e, Error::AlreadyExists { .. });
            if let Some(f) = race(&writers, &key, PutMode::Create, |w| format!("writer {w}"), refused).await {
                failures.push(format!("round {round}: {f}"));
            }
        }
        assert_one_winner_each_round(&failures);
    });
}

#[test]
fn update_with_the_current_etag_succeeds_once() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket("manifests");
    let s3 = store(&seaweed, "manifests");
    runtime().block_on(async {
        let v1 = put_mode(&s3, "m/current", "version 1".into(), PutMode::Create).await.expect("create");
        assert!(v1.e_tag.is_some(), "SeaweedFS answers a put with an e-tag: {v1:?}");
        let v2 = put_mode(&s3, "m/current", "version 2".into(), PutMode::Update(UpdateVersion::from(v1.clone())))
            .await
            .expect("update with the current e-tag");
        assert_ne!(v1.e_tag, v2.e_tag, "new content, new e-tag");
        let stale = put_mode(&s3, "m/current", "version 3".into(), PutMode::Update(UpdateVersion::from(v1))).await;
        assert!(matches!(stale, Err(Error::Precondition { .. })), "{stale:?}");
        assert_eq!(read(&s3, "m/current").await.unwrap(), b"version 2");
        put_mode(&s3, "m/current", "version 3".into(), PutMode::Update(UpdateVersion::from(v2)))
            .await
            .expect("update with the e-tag of version 2");
        assert_eq!(read(&s3, "m/current").await.unwrap(), b"version 3");

        // object_store turns S3's 404 for a missing key into Precondition, as R2 answers.
        let missing = put_mode(
            &s3,
            "m/missing",
            "x".into(),
            PutMode::Update(UpdateVersion { e_tag: Some("\"0123\"".into()), version: None }),
        )
        .await;
        assert!(matches!(missing, Err(Error::Precondition { .. })), "{missing:?}");
    });
}

#[test]
fn concurrent_updates_from_one_etag_have_one_winner() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket("manifests");
    let writers = [Arc::new(store(&seaweed, "manifests")), Arc::new(store(&seaweed, "manifests"))];
    runtime().block_on(async {
        let mut failures = Vec::new();
        for round in 0..RACE_ROUNDS {
            let key = format!("cas/{round:04}");
            let base =
                put_mode(&writers[0], &key, format!("round {round} base"), PutMode::Create).await.expect("create");
            let mode = PutMode::Update(UpdateVersion::from(base));
            let refused = |e: &Error| matches!(e, Error::Precondition { .. });
            if let Some(f) = race(&writers, &key, mode, |w| format!("round {round} writer {w}"), refused).await {
                failures.push(format!("round {round}: {f}"));
            }
        }
        assert_one_winner_each_round(&failures);
    });
}

#[test]
fn wrong_credentials_are_refused() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket("parts");
    let wrong_secret = configured(seaweed.builder("parts").with_secret_access_key("not-the-secret"));
    let unknown_key =
        configured(seaweed.builder("parts").with_access_key_id("nobody").with_secret_access_key("not-the-secret"));
    runtime().block_on(async {
        for (client, code) in [(wrong_secret, "SignatureDoesNotMatch"), (unknown_key, "InvalidAccessKeyId")] {
            let put = client.put(&Path::from("k"), PutPayload::from("v")).await;
            // S3 answers 403 with the code in the XML body; object_store reports PermissionDenied.
            match &put {
                Err(e @ Error::PermissionDenied { .. }) => assert!(e.to_string().contains(code), "{e}"),
                other => panic!("expected PermissionDenied with {code}: {other:?}"),
            }
            let get = read(&client, "k").await;
            assert!(matches!(get, Err(Error::PermissionDenied { .. })), "{get:?}");
        }
    });
}

#[test]
fn an_outage_fails_fast_and_loses_nothing() {
    let mut seaweed = Seaweed::start();
    seaweed.create_bucket("parts");
    let s3 = store(&seaweed, "parts");
    let rt = runtime();
    rt.block_on(async {
        s3.put(&Path::from("before/0001.part"), PutPayload::from("written before the outage")).await.expect("put");
    });

    seaweed.kill();
    for attempt in 0..2 {
        let started = Instant::now();
        let got = rt.block_on(read(&s3, "before/0001.part"));
        let put = rt.block_on(s3.put(&Path::from("during/0001.part"), PutPayload::from("lost")));
        let took = started.elapsed();
        // Connection refused, retried twice: about 0.15 s for each here. Unavailability is
        // `Generic`, never `NotFound`: the backend must not take a dead server for a missing key.
        assert!(matches!(got, Err(Error::Generic { .. })), "read {attempt} while the server is down: {got:?}");
        assert!(matches!(put, Err(Error::Generic { .. })), "write {attempt} while the server is down: {put:?}");
        assert!(took < Duration::from_secs(5), "the failed read and write {attempt} took {took:?}");
    }

    seaweed.restart();
    rt.block_on(async {
        // The same client, its pooled connections dead: object_store reconnects.
        assert_eq!(read(&s3, "before/0001.part").await.expect("read after restart"), b"written before the outage");
        assert_eq!(keys(&s3, "").await, ["before/0001.part"]);
        s3.put(&Path::from("after/0001.part"), PutPayload::from("written after")).await.expect("put after restart");
        assert_eq!(keys(&s3, "").await, ["after/0001.part", "before/0001.part"]);
    });
}

#[test]
fn a_hung_server_times_out_and_recovers() {
    let seaweed = Seaweed::start();
    seaweed.create_bucket("parts");
    let s3 = store(&seaweed, "parts");
    let rt = runtime();
    rt.block_on(async {
        s3.put(&Path::from("before/0001.part"), PutPayload::from("written before the hang")).await.expect("put");
    });

    seaweed.pause();
    let started = Instant::now();
    let got = rt.block_on(read(&s3, "before/0001.part"));
    let took = started.elapsed();
    // The kernel accepts the connection and nothing answers: the 5 s request timeout ends it,
    // and the 5 s retry budget is spent by then, so there is no second attempt.
    assert!(matches!(got, Err(Error::Generic { .. })), "read while the server hangs: {got:?}");
    assert!(took < Duration::from_secs(12), "the hung read took {took:?}: {got:?}");

    seaweed.resume();
    rt.block_on(async {
        assert_eq!(read(&s3, "before/0001.part").await.expect("read after resume"), b"written before the hang");
    });
}
