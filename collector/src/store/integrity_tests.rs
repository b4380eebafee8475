//! Tamper evidence and encryption at rest, through the store as the collector uses it: parts
//! verified by SHA-256 on every read, old catalog entries moved from CRC-32 to SHA-256 by the
//! start-up pass, profiles keeping the digest of their pprof, and parts sealed with the key
//! file's keys (round trip, rotation, a key file without the part's key, tampering).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::profiles::v1development::ExportProfilesServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use sha2::Digest;

use super::crypt::KeyRing;
use super::*;
use crate::receive::ExportRequest;

fn settings() -> StoreSettings {
    StoreSettings {
        durability: Durability::Group,
        group_commit_interval: Duration::from_millis(1),
        flush_interval: Duration::from_secs(3600),
        max_head_bytes: 1 << 30,
        retention: Duration::from_secs(2 * 86_400),
        retention_interval: Duration::from_secs(3600),
        // A part per tenant: damage to one tenant's part leaves the other's.
        min_tenant_part_bytes: 0,
        verify_parts_at_start: false,
        min_free_bytes: 0,
        span_index_cache_bytes: 64 << 20,
        trace_key_bytes: 64 << 20,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn tenant(id: &str) -> Tenant {
    Tenant::parse(id).unwrap()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
}

fn append_request<R: ExportRequest>(store: &Store, tenant_id: &str, request: R) {
    let payload = Bytes::from(request.encode_to_vec());
    block_on(store.append(tenant(tenant_id), payload, request.into_rows())).unwrap();
}

/// One span per trace id byte.
fn spans(ids: &[u8]) -> ExportTraceServiceRequest {
    let t = now();
    let spans = ids
        .iter()
        .map(|&id| Span {
            trace_id: vec![id; 16],
            span_id: vec![1; 8],
            name: "GET /checkout".into(),
            start_time_unix_nano: t,
            end_time_unix_nano: t + 10,
            ..Default::default()
        })
        .collect();
    crate::model::span::one_scope_request(spans)
}

fn span_ids(store: &Store, tenant_id: &str) -> (Vec<u8>, Vec<String>) {
    let snap = store.snapshot(&tenant(tenant_id), Signal::Traces);
    let mut ids = Vec::new();
    let report = store
        .scan(&snap, |rows| {
            if let Rows::Spans(s) = rows {
                ids.extend(s.iter().map(|s| s.trace_id[0]));
            }
        })
        .unwrap();
    ids.sort_unstable();
    (ids, report.warnings)
}

fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()).into()
}

/// A real Go CPU profile (gzipped, as Go writes it) and the request a push makes of it.
fn pushed_profile() -> (Vec<u8>, ExportProfilesServiceRequest) {
    use crate::model::pprof::{Fallback, SeriesLabels, record_source, to_otlp};
    let bytes = std::fs::read(manifest_dir().join("../testdata/corpus/go-dev/fast/cpu-10s.pb.gz")).unwrap();
    let mut profile = analyzer::pprof::decode(&bytes).unwrap();
    // Stored at the current hour, where retention leaves it.
    profile.time_nanos = now() as i64;
    let labels = SeriesLabels::new(Some("checkout"), [("instance".to_string(), "pod-a".to_string())]);
    let mut request = to_otlp(&profile, &labels, Fallback::default(), &bytes);
    record_source(&mut request, &bytes);
    (bytes, request)
}

fn profile_rows(store: &Store, tenant_id: &str) -> (Vec<crate::model::ProfileRow>, Vec<String>) {
    let snap = store.snapshot(&tenant(tenant_id), Signal::Profiles);
    let mut out = Vec::new();
    let report = store
        .scan(&snap, |rows| {
            if let Rows::Profiles(r) = rows {
                out.extend(r.iter().cloned());
            }
        })
        .unwrap();
    (out, report.warnings)
}

fn only_part(store: &Store, tenant_id: &str, signal: Signal) -> Arc<PartMeta> {
    let snap = store.snapshot(&tenant(tenant_id), signal);
    assert_eq!(snap.parts.len(), 1, "{:?}", snap.parts);
    Arc::clone(&snap.parts[0])
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn key_file(dir: &Path, keys: &[(&str, u8)]) -> PathBuf {
    let text: String = keys
        .iter()
        .map(|(id, byte)| format!("{id} {}\n", base64::engine::general_purpose::STANDARD.encode([*byte; 32])))
        .collect();
    let path = dir.join(format!("keys-{}", keys.iter().map(|k| k.0).collect::<Vec<_>>().join("-")));
    std::fs::write(&path, format!("# test keys\n{text}")).unwrap();
    path
}

fn open(dir: &Path, keys: Option<&Path>) -> Store {
    let keys = keys.map(|k| Arc::new(KeyRing::load(k).unwrap()));
    Store::open_with_keys(dir, settings(), Arc::default(), keys).unwrap()
}

#[test]
fn a_flipped_byte_in_a_part_is_a_sha256_mismatch_naming_it_and_the_rest_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), None);
    append_request(&store, "a", spans(&[1, 2]));
    append_request(&store, "b", spans(&[9]));
    store.flush().unwrap();
    let part = only_part(&store, "a", Signal::Traces);
    let written = std::fs::read(&part.path).unwrap();
    assert_eq!(part.sha256, Some(<[u8; 32]>::from(sha2::Sha256::digest(&written))));

    flip(&part.path, written.len() / 2);
    let (ids, warnings) = span_ids(&store, "a");
    assert!(ids.is_empty(), "{ids:?}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let expected = format!(
        "part {} is damaged: checksum mismatch: sha256 recorded {}",
        part.name,
        hex::encode(part.sha256.unwrap())
    );
    assert!(warnings[0].starts_with(&expected), "{}", warnings[0]);
    assert!(warnings[0].contains(", found ") && warnings[0].contains("set aside"), "{}", warnings[0]);
    // Set aside once, not read again; another tenant's part still answers.
    assert!(dir.path().join("quarantine").join(&part.name).exists());
    assert_eq!(span_ids(&store, "a"), (vec![], vec![]));
    assert_eq!(span_ids(&store, "b"), (vec![9], vec![]));
}

/// The part-level SHA-256 covers every byte of a profiles part, so a byte flipped anywhere —
/// inside a stored profile's stacks, values or digest, or the Parquet framing around them — is
/// reported as a checksum mismatch naming the part before anything is decoded. (A second,
/// per-profile check on read could never fire: a profile's rows are bytes of the part.)
#[test]
fn every_flipped_byte_of_a_profiles_part_is_reported_and_profiles_keep_their_pprof_digest() {
    let dir = tempfile::tempdir().unwrap();
    let (pprof, request) = pushed_profile();
    let digest: [u8; 32] = sha2::Sha256::digest(&pprof).into();
    let store = open(dir.path(), None);
    append_request(&store, "a", request);
    store.flush().unwrap();
    let (rows, warnings) = profile_rows(&store, "a");
    assert!(warnings.is_empty() && !rows.is_empty(), "{warnings:?}");
    assert!(rows.iter().all(|r| r.profile.source_sha256 == Some(digest)), "the pprof's digest, read from the part");
    let part = only_part(&store, "a", Signal::Profiles);
    let written = std::fs::read(&part.path).unwrap();
    let step = (written.len() / 97).max(1);
    for at in (0..written.len()).step_by(step) {
        let mut bad = written.clone();
        bad[at] ^= 0x10;
        std::fs::write(&part.path, &bad).unwrap();
        let err = parts::read_part(&part, &tenant("a")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("part {} is damaged: checksum mismatch: sha256 recorded", part.name)),
            "byte {at}: {text}"
        );
    }
    std::fs::write(&part.path, &written).unwrap();
    assert_eq!(profile_rows(&store, "a").0.len(), rows.len());
}

/// Catalog lines written before SHA-256s were recorded: read by CRC-32, and the start-up pass
/// records the SHA-256 of each part whose CRC-32 is right.
#[test]
fn old_catalog_entries_are_checked_by_crc32_until_the_start_up_pass_records_their_sha256() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), None);
        append_request(&store, "a", spans(&[1]));
        append_request(&store, "b", spans(&[2]));
        store.flush().unwrap();
    }
    strip_sha256s(dir.path());

    let store = open(dir.path(), None);
    let a = only_part(&store, "a", Signal::Traces);
    assert_eq!(a.sha256, None);
    flip(&a.path, 100);
    let (_, warnings) = span_ids(&store, "a");
    assert!(warnings[0].contains("checksum mismatch: crc32 recorded"), "{warnings:?}");
    store.close();

    let verifying = StoreSettings { verify_parts_at_start: true, ..settings() };
    let store = Store::open(dir.path(), verifying, Arc::default()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while only_part(&store, "b", Signal::Traces).sha256.is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let b = only_part(&store, "b", Signal::Traces);
    assert_eq!(b.sha256, Some(parts::sha256(&std::fs::read(&b.path).unwrap())));
    store.close();
    let store = open(dir.path(), None);
    assert_eq!(only_part(&store, "b", Signal::Traces).sha256, b.sha256, "recorded in the catalog");
}

/// Rewrites the catalog as an older collector wrote it: no `sha256` in its entries.
fn strip_sha256s(dir: &Path) {
    let catalog = dir.join("catalog.log");
    let text = std::fs::read_to_string(&catalog).unwrap();
    let old: String = text
        .lines()
        .map(|line| {
            let mut json: serde_json::Value = serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
            assert!(json.as_object_mut().unwrap().remove("sha256").is_some(), "{line}");
            let json = json.to_string();
            format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()))
        })
        .collect();
    std::fs::write(&catalog, old).unwrap();
}

/// The start-up pass writes a whole new entry for a part whose SHA-256 it records; with the
/// part's trace keys released from memory (a budget of 0), it reads them back from the part
/// rather than write an entry without them (which would make every later lookup skip it).
#[test]
fn recording_a_sha256_keeps_trace_keys_that_were_released_from_memory() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), None);
        append_request(&store, "a", spans(&[1, 2, 3]));
        store.flush().unwrap();
    }
    strip_sha256s(dir.path());
    let released = StoreSettings { verify_parts_at_start: true, trace_key_bytes: 0, ..settings() };
    let store = Store::open(dir.path(), released, Arc::default()).unwrap();
    assert_eq!(only_part(&store, "a", Signal::Traces).tenants[0].trace_keys.get(), None);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while only_part(&store, "a", Signal::Traces).sha256.is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let part = only_part(&store, "a", Signal::Traces);
    assert!(part.sha256.is_some(), "SHA-256 recorded");
    assert_eq!(part.tenants[0].trace_keys.get(), None, "the keys read back are released again");
    store.close();

    let store = open(dir.path(), None);
    let part = only_part(&store, "a", Signal::Traces);
    assert!(part.sha256.is_some());
    let keys: Vec<u64> = [1u8, 2, 3].map(|id| parts::trace_key(&[id; 16])).to_vec();
    assert_eq!(part.tenants[0].trace_keys.get().as_deref(), Some(&keys[..]), "the entry kept its keys");
    assert!(store.trace_snapshot(&tenant("a"), &[9; 16]).parts.is_empty());
    assert_eq!(store.trace_snapshot(&tenant("a"), &[2; 16]).parts.len(), 1);
}

#[test]
fn encrypted_parts_round_trip_and_hide_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let keys = key_file(dir.path(), &[("k1", 1)]);
    let (pprof, request) = pushed_profile();
    let store = open(&dir.path().join("data"), Some(&keys));
    append_request(&store, "a", request.clone());
    append_request(&store, "a", spans(&[1, 2]));
    store.flush().unwrap();
    let part = only_part(&store, "a", Signal::Profiles);
    let on_disk = std::fs::read(&part.path).unwrap();
    assert!(on_disk.starts_with(crypt::MAGIC) && crypt::key_id(&on_disk) == Some("k1"));
    assert_eq!(part.sha256, Some(parts::sha256(&on_disk)), "the digest is of the bytes on disk");
    let (rows, warnings) = profile_rows(&store, "a");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(rows[0].profile.source_sha256, Some(sha2::Sha256::digest(&pprof).into()));
    assert_eq!(span_ids(&store, "a"), (vec![1, 2], vec![]));

    // Of the service's name and the profile's function names, what the same rows written as
    // a plaintext part show (Parquet keeps column statistics uncompressed) the encrypted part
    // must not show.
    let plain = parts::write_part(
        dir.path(),
        "parts/a/profiles/2026-12-04T03/00000000000000000001.parquet",
        1,
        Signal::Profiles,
        &[(&tenant("a"), vec![&request.clone().into_rows()])],
        None,
    )
    .unwrap()
    .unwrap();
    let plain = std::fs::read(&plain.path).unwrap();
    let mut texts: std::collections::BTreeSet<String> = ["checkout".to_string()].into();
    for row in &rows {
        let frames: Vec<crate::model::profile::Frame> = serde_json::from_str(&row.stack).unwrap();
        texts.extend(frames.into_iter().map(|f| f.function).filter(|f| f.len() >= 8));
    }
    let contains = |bytes: &[u8], text: &str| bytes.windows(text.len()).any(|w| w == text.as_bytes());
    let visible: Vec<&String> = texts.iter().filter(|t| contains(&plain, t)).collect();
    assert!(!visible.is_empty(), "the plaintext part shows none of {} names", texts.len());
    for text in visible {
        assert!(!contains(&on_disk, text), "the encrypted part shows {text:?}");
    }
    store.close();

    // The start-up pass verifies encrypted parts without opening them; they read after a
    // restart.
    let store = open(&dir.path().join("data"), Some(&keys));
    assert_eq!(span_ids(&store, "a"), (vec![1, 2], vec![]));
}

#[test]
fn rotation_keeps_old_parts_readable_and_plaintext_parts_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let store = open(&data, None);
        append_request(&store, "a", spans(&[1]));
        store.flush().unwrap();
    }
    {
        let store = open(&data, Some(&key_file(dir.path(), &[("k1", 1)])));
        append_request(&store, "a", spans(&[2]));
        store.flush().unwrap();
        assert_eq!(span_ids(&store, "a"), (vec![1, 2], vec![]), "a plaintext part read with encryption on");
    }
    let rotated = key_file(dir.path(), &[("k1", 1), ("k2", 2)]);
    let store = open(&data, Some(&rotated));
    append_request(&store, "a", spans(&[3]));
    store.flush().unwrap();
    assert_eq!(span_ids(&store, "a"), (vec![1, 2, 3], vec![]));
    let mut ids: Vec<Option<String>> = store
        .snapshot(&tenant("a"), Signal::Traces)
        .parts
        .iter()
        .map(|p| crypt::key_id(&std::fs::read(&p.path).unwrap()).map(str::to_string))
        .collect();
    ids.sort();
    assert_eq!(ids, [None, Some("k1".to_string()), Some("k2".to_string())]);
}

#[test]
fn a_part_whose_key_is_gone_or_wrong_is_reported_by_name_and_key_and_not_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let store = open(&data, Some(&key_file(dir.path(), &[("k1", 1)])));
        append_request(&store, "a", spans(&[1]));
        store.flush().unwrap();
    }
    let k2 = key_file(dir.path(), &[("k2", 2)]);
    let store = open(&data, Some(&k2));
    append_request(&store, "a", spans(&[2]));
    store.flush().unwrap();
    let (ids, warnings) = span_ids(&store, "a");
    assert_eq!(ids, [2], "the readable part still answers");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("cannot be decrypted: it is encrypted with key \"k1\", which key file")
            && warnings[0].contains(&k2.display().to_string()),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].starts_with("part parts/a/traces/"), "{}", warnings[0]);
    assert!(!data.join("quarantine").exists(), "not damaged, not set aside");
    assert_eq!(store.snapshot(&tenant("a"), Signal::Traces).parts.len(), 2, "still in the store");
    store.close();

    // Without any key file, and with a key file whose k1 is another key.
    let store = open(&data, None);
    let (_, warnings) = span_ids(&store, "a");
    assert!(warnings.iter().all(|w| w.contains("no key file is configured")) && warnings.len() == 2, "{warnings:?}");
    store.close();
    let store = open(&data, Some(&key_file(dir.path(), &[("k1", 7), ("k2", 2)])));
    let (ids, warnings) = span_ids(&store, "a");
    assert_eq!(ids, [2]);
    assert!(warnings[0].contains("key \"k1\" of the key file does not open its data key"), "{warnings:?}");
    assert!(!data.join("quarantine").exists());
    store.close();

    // The right keys again: everything reads.
    let store = open(&data, Some(&key_file(dir.path(), &[("k1", 1), ("k2", 2)])));
    assert_eq!(span_ids(&store, "a"), (vec![1, 2], vec![]));
}

/// Someone who can rewrite the catalog as well as the part defeats the SHA-256; the data's
/// AES-GCM tag still refuses a changed ciphertext, and the part is damaged.
#[test]
fn tampered_ciphertext_fails_its_tag_and_names_the_part() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("data"), Some(&key_file(dir.path(), &[("k1", 1)])));
    append_request(&store, "a", spans(&[1, 2, 3]));
    store.flush().unwrap();
    let part = only_part(&store, "a", Signal::Traces);
    let mut bytes = std::fs::read(&part.path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&part.path, &bytes).unwrap();
    let forged =
        PartMeta { sha256: Some(parts::sha256(&bytes)), crc32: crc32fast::hash(&bytes), ..PartMeta::clone(&part) };
    let err = parts::read_part(&forged, &tenant("a")).unwrap_err();
    assert!(matches!(err, PartError::Damaged { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "part {} is damaged: the encrypted data does not authenticate (AES-GCM tag mismatch): it was changed",
            part.name
        )
    );
}

/// An encrypted part that lost its catalog line is adopted at a start that has its key, and
/// left in place (not set aside) by one that does not.
#[test]
fn encrypted_parts_without_an_entry_wait_for_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let keys = key_file(dir.path(), &[("k1", 1)]);
    {
        let store = open(&data, Some(&keys));
        append_request(&store, "a", spans(&[1, 4]));
        store.flush().unwrap();
    }
    std::fs::remove_file(data.join("catalog.log")).unwrap();
    {
        let store = open(&data, None);
        assert_eq!(span_ids(&store, "a"), (vec![], vec![]));
        assert!(!data.join("quarantine").exists());
    }
    let store = open(&data, Some(&keys));
    assert_eq!(span_ids(&store, "a"), (vec![1, 4], vec![]));
    assert!(only_part(&store, "a", Signal::Traces).sha256.is_some());
}

/// What verifying and decrypting cost beside reading and decoding, on a traces part of 200,000
/// spans (`docs/integrity.md` quotes the numbers): `cargo test -p collector --lib
/// integrity_tests::measure -- --ignored --nocapture`. Dependencies (sha2, ring, polars) are
/// built optimized even in test builds; the row building of `store::columns` is not, unless
/// run with `--release`.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_verification_costs() {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let kv = |k: &str, v: String| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v)) }),
        key_strindex: 0,
    };
    let spans = (0..200_000u64)
        .map(|i| Span {
            trace_id: [i.to_be_bytes(), (i * 7).to_be_bytes()].concat(),
            span_id: (i * 13).to_be_bytes().to_vec(),
            name: format!("GET /route/{}", i % 50),
            start_time_unix_nano: t + i * 1000,
            end_time_unix_nano: t + i * 1000 + (i % 997) * 10_000,
            attributes: vec![kv("http.route", format!("/route/{}", i % 50)), kv("user", format!("u{}", i % 5000))],
            ..Default::default()
        })
        .collect();
    let request = crate::model::span::one_scope_request(spans);
    let rows = request.into_rows();
    let a = tenant("a");
    let keys = Arc::new(KeyRing::load(&key_file(dir.path(), &[("k1", 1)])).unwrap());
    let name = |n: u64| format!("parts/a/traces/2026-12-04T03/{n:020}.parquet");
    let plain =
        parts::write_part(dir.path(), &name(1), 1, Signal::Traces, &[(&a, vec![&rows])], None).unwrap().unwrap();
    let sealed =
        parts::write_part(dir.path(), &name(2), 2, Signal::Traces, &[(&a, vec![&rows])], Some(&keys)).unwrap().unwrap();
    let mb = plain.size as f64 / 1e6;
    let best = |f: &mut dyn FnMut()| {
        (0..7)
            .map(|_| {
                let started = std::time::Instant::now();
                f();
                started.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::INFINITY, f64::min)
    };
    let bytes = std::fs::read(&plain.path).unwrap();
    let on_disk = std::fs::read(&sealed.path).unwrap();
    let read = best(&mut || drop(std::fs::read(&plain.path).unwrap()));
    let sha = best(&mut || {
        std::hint::black_box(parts::sha256(&bytes));
    });
    let crc = best(&mut || {
        std::hint::black_box(crc32fast::hash(&bytes));
    });
    let open = best(&mut || drop(keys.open(&sealed.name, on_disk.clone()).unwrap()));
    let frame = best(&mut || {
        use polars::prelude::SerReader;
        drop(polars::prelude::ParquetReader::new(std::io::Cursor::new(bytes.as_slice())).finish().unwrap())
    });
    let decode = best(&mut || drop(parts::decode(&plain.name, Signal::Traces, bytes.clone(), Some(&a), None).unwrap()));
    let whole = best(&mut || drop(parts::read_part(&plain, &a).unwrap()));
    let whole_sealed = best(&mut || drop(parts::read_part(&sealed, &a).unwrap()));
    // What an OTLP profile's digest (its `Profile` message encoded again, hashed) costs beside
    // turning the request into rows, on the corpus CPU profile.
    let (_, mut otlp) = pushed_profile();
    for p in otlp.resource_profiles.iter_mut().flat_map(|r| &mut r.scope_profiles).flat_map(|s| &mut s.profiles) {
        p.attribute_indices.clear();
    }
    let messages: Vec<_> =
        otlp.resource_profiles.iter().flat_map(|r| &r.scope_profiles).flat_map(|s| s.profiles.clone()).collect();
    let digest = best(&mut || {
        for m in &messages {
            std::hint::black_box(parts::sha256(&prost::Message::encode_to_vec(m)));
        }
    });
    let convert = best(&mut || drop(crate::model::profile::rows_from_request(otlp.clone())));
    println!(
        "OTLP profile request of {} bytes: digest of its profiles {digest:.3} ms, rows_from_request (with them) {convert:.3} ms",
        prost::Message::encoded_len(&otlp)
    );
    println!("part: 200000 spans, {mb:.1} MB (sealed {:.1} MB)", sealed.size as f64 / 1e6);
    for (what, ms) in [
        ("read (page cache)", read),
        ("sha256", sha),
        ("crc32", crc),
        ("aes-256-gcm open", open),
        ("parquet decode to frame", frame),
        ("decode to rows", decode),
        ("read_part plaintext", whole),
        ("read_part encrypted", whole_sealed),
    ] {
        println!("{what:>24}: {ms:8.2} ms  {:8.0} MB/s", mb / ms * 1e3);
    }
}

#[test]
fn the_encryption_table_parses_and_a_bad_key_file_stops_the_open_naming_file_and_line() {
    let config: crate::config::Config = toml::from_str("[storage.encryption]\nkey_file = \"/etc/keys\"\n").unwrap();
    assert_eq!(config.storage.encryption.map(|e| e.key_file), Some(PathBuf::from("/etc/keys")));
    let err = toml::from_str::<crate::config::Config>("[storage.encryption]\nkey_fle = \"/etc/keys\"\n").unwrap_err();
    assert!(err.to_string().contains("key_fle"), "{err}");
    assert!(toml::from_str::<crate::config::Config>("").unwrap().storage.encryption.is_none());

    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "k1 AAAA\n").unwrap();
    let encryption = crate::config::EncryptionConfig { key_file: keys.clone() };
    let err = Store::open_encrypted(&dir.path().join("data"), settings(), Arc::default(), Some(&encryption))
        .expect_err("a bad key file");
    assert_eq!(
        err.to_string(),
        format!("key file {} line 1: key \"k1\" is 3 bytes; AES-256 keys are 32", keys.display())
    );
}
