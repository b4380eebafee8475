//! The acceptance test of the PromQL engine: the same samples go to a real Prometheus 2.42
//! (`/usr/bin/prometheus`, Debian's package, fed by remote write) and to an in-memory
//! [`Queryable`]; every query of `tests/data/queries.txt` runs as instant queries at several times
//! and as range queries at several steps (see `asks`) against both, and every disagreement is
//! listed, the queries this engine refuses as unsupported apart from the others.
//! `tests/data/queries-pending.txt` holds the queries known to disagree or to be unsupported;
//! they must still fail, so that fixing one forces moving it to `queries.txt`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prom::engine::{self, Error, Options, Value};
use prom::model::{Labels, MemSource, STALE_NAN_BITS, Sample, Series};
use prom::remote_write::{self, Label, TimeSeries, WriteRequest};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const MIN: i64 = 60_000;
/// How long the generated data spans, from the base time.
const SPAN: i64 = 110 * MIN;

// ---------------------------------------------------------------- the in-memory source

// ---------------------------------------------------------------- deterministic data

/// SplitMix64, for reproducible "random" increments and jitter.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect())
}

fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Every series of the test, samples in time order, timestamps relative to `base`.
fn generate(base: i64) -> Vec<Series> {
    let mut rng = Rng(42);
    let mut out = Vec::new();
    let mut push = |l: Labels, samples: Vec<Sample>| out.push(Series { labels: l, samples });

    // Counters scraped every 15s (one every 30s), with resets and millisecond jitter.
    for (instance, code, every, jitter) in
        [("a", "200", 15_000, 0), ("a", "500", 15_000, 0), ("b", "200", 30_000, 7), ("b", "500", 15_000, 3)]
    {
        let mut v = 0.0;
        let mut samples = Vec::new();
        let mut t = 0;
        while t <= SPAN {
            v += rng.below(20) as f64 + if code == "200" { 10.0 } else { 0.0 };
            // Resets: a restart every 37 minutes for instance a, once for b.
            if (instance == "a" && t > 0 && t % (37 * MIN) < every) || (instance == "b" && t == 50 * MIN) {
                v = rng.below(5) as f64;
            }
            let j = if jitter > 0 { rng.below(jitter) as i64 } else { 0 };
            samples.push(Sample { t: base + t + j, v });
            t += every;
        }
        push(
            labels(&[("__name__", "test_requests_total"), ("job", "api"), ("instance", instance), ("code", code)]),
            samples,
        );
    }

    // Gauges: x is smooth, y has a 12-minute gap, z goes stale explicitly and comes back.
    for room in ["x", "y", "z"] {
        let mut samples = Vec::new();
        let mut t = 0;
        while t <= SPAN {
            let phase = t as f64 / (17.0 * MIN as f64);
            let v = match room {
                "x" => 20.0 + 5.0 * phase.sin(),
                "y" => -3.0 + (rng.below(100) as f64) / 10.0,
                _ => (t / MIN) as f64 % 7.0 - 2.5,
            };
            let gap = room == "y" && (40 * MIN..52 * MIN).contains(&t);
            if !gap {
                samples.push(Sample { t: base + t, v });
            }
            if room == "z" && t == 30 * MIN {
                samples.push(Sample { t: base + t + 5_000, v: stale() });
                t += 10 * MIN;
                continue;
            }
            t += 15_000;
        }
        push(labels(&[("__name__", "test_temperature"), ("room", room), ("site", "lab")]), samples);
    }

    // Special values: NaN, +Inf and -Inf among ordinary values.
    {
        let mut samples = Vec::new();
        let mut t = 0;
        let mut i = 0;
        while t <= SPAN {
            let v = match i % 9 {
                3 => f64::NAN,
                5 => f64::INFINITY,
                7 => f64::NEG_INFINITY,
                _ => i as f64 * 0.5 - 10.0,
            };
            samples.push(Sample { t: base + t, v });
            t += 20_000;
            i += 1;
        }
        push(labels(&[("__name__", "test_weird"), ("kind", "mixed")]), samples);
        let samples: Vec<Sample> = (0..=SPAN / 60_000)
            .map(|i| Sample { t: base + i * 60_000, v: if i % 4 == 0 { f64::NAN } else { i as f64 } })
            .collect();
        push(labels(&[("__name__", "test_weird"), ("kind", "nan_every_4")]), samples);
    }

    // A classic histogram per job: cumulative buckets, _sum and _count, one reset.
    let bounds = ["0.1", "0.5", "1", "5", "+Inf"];
    for job in ["api", "db"] {
        let mut counts = [0.0f64; 5];
        let mut sum = 0.0;
        let mut series: Vec<Vec<Sample>> = vec![Vec::new(); 7];
        let mut t = 0;
        while t <= SPAN {
            if job == "db" && t == 61 * MIN {
                counts = [0.0; 5];
                sum = 0.0;
            }
            for _ in 0..rng.below(8) {
                let obs = (rng.below(6000) as f64) / 1000.0 * if job == "api" { 0.3 } else { 1.0 };
                sum += obs;
                for (k, b) in [0.1, 0.5, 1.0, 5.0, f64::INFINITY].iter().enumerate() {
                    if obs <= *b {
                        counts[k] += 1.0;
                    }
                }
            }
            for k in 0..5 {
                series[k].push(Sample { t: base + t, v: counts[k] });
            }
            series[5].push(Sample { t: base + t, v: sum });
            series[6].push(Sample { t: base + t, v: counts[4] });
            t += 15_000;
        }
        let mut it = series.into_iter();
        for b in bounds {
            push(labels(&[("__name__", "test_latency_seconds_bucket"), ("job", job), ("le", b)]), it.next().unwrap());
        }
        push(labels(&[("__name__", "test_latency_seconds_sum"), ("job", job)]), it.next().unwrap());
        push(labels(&[("__name__", "test_latency_seconds_count"), ("job", job)]), it.next().unwrap());
    }
    // A histogram whose buckets are not monotonic (a lower bucket counts more), and one without
    // a +Inf bucket.
    push(
        labels(&[("__name__", "test_broken_bucket"), ("case", "nonmono"), ("le", "1")]),
        (0..=SPAN / MIN).map(|i| Sample { t: base + i * MIN, v: 10.0 + i as f64 }).collect(),
    );
    push(
        labels(&[("__name__", "test_broken_bucket"), ("case", "nonmono"), ("le", "2")]),
        (0..=SPAN / MIN).map(|i| Sample { t: base + i * MIN, v: 8.0 + i as f64 }).collect(),
    );
    push(
        labels(&[("__name__", "test_broken_bucket"), ("case", "nonmono"), ("le", "+Inf")]),
        (0..=SPAN / MIN).map(|i| Sample { t: base + i * MIN, v: 12.0 + 2.0 * i as f64 }).collect(),
    );
    push(
        labels(&[("__name__", "test_broken_bucket"), ("case", "noinf"), ("le", "1")]),
        (0..=SPAN / MIN).map(|i| Sample { t: base + i * MIN, v: i as f64 }).collect(),
    );

    // Series that appear and disappear: some end with a staleness marker, some just stop.
    for id in 0..5i64 {
        let from = 10 * MIN + id * 17 * MIN;
        let to = from + 25 * MIN;
        let mut samples: Vec<Sample> = (0..)
            .map(|k| from + k * 30_000)
            .take_while(|t| *t <= to.min(SPAN))
            .map(|t| Sample { t: base + t, v: (id * 100 + (t - from) / 30_000) as f64 })
            .collect();
        if id % 2 == 0 && to + 1_000 <= SPAN {
            samples.push(Sample { t: base + to + 1_000, v: stale() });
        }
        let idv = id.to_string();
        push(
            labels(&[("__name__", "test_ephemeral"), ("id", &idv), ("instance", if id % 2 == 0 { "a" } else { "b" })]),
            samples,
        );
    }

    // Non-ASCII label values (regex classes differ between Go and Rust outside ASCII).
    for (name, v) in [("ünï", 1.0), ("日本", 2.0), ("plain_1", 3.0), ("Straße", 4.0)] {
        push(
            labels(&[("__name__", "test_unicode"), ("name", name)]),
            (0..=SPAN / MIN).map(|i| Sample { t: base + i * MIN, v: v + i as f64 }).collect(),
        );
    }

    // A sparse counter (a sample every 3m17s, starting high), and one starting at zero.
    push(
        labels(&[("__name__", "test_sparse_total"), ("p", "1")]),
        (0..=SPAN / 197_000).map(|k| Sample { t: base + k * 197_000, v: 1000.0 + (k * k) as f64 }).collect(),
    );
    push(
        labels(&[("__name__", "test_zero_total"), ("p", "1")]),
        (0..=SPAN / 15_000)
            .map(|k| Sample { t: base + 20 * MIN + k * 15_000, v: k as f64 })
            .filter(|s| s.t <= base + SPAN)
            .collect(),
    );

    // Two metrics with the same other labels that never overlap in time: dropping their names
    // makes one label set out of two series at different steps.
    for (name, from) in [("test_shift_a", 10 * MIN), ("test_shift_b", 60 * MIN)] {
        push(
            labels(&[("__name__", name), ("k", "1")]),
            (0..=120).map(|i| Sample { t: base + from + i * 15_000, v: i as f64 }).collect(),
        );
    }

    // Info-style series for group_left joins, and a second metric sharing label sets.
    for (instance, version) in [("a", "1.0"), ("b", "2.1")] {
        push(
            labels(&[("__name__", "test_build_info"), ("instance", instance), ("version", version), ("job", "api")]),
            (0..=SPAN / MIN).map(|i| Sample { t: base + i * MIN, v: 1.0 }).collect(),
        );
    }
    for room in ["x", "y"] {
        push(
            labels(&[("__name__", "test_humidity"), ("room", room), ("site", "lab")]),
            (0..=SPAN / 15_000).map(|i| Sample { t: base + i * 15_000, v: 40.0 + (i % 13) as f64 }).collect(),
        );
    }
    out
}

// ---------------------------------------------------------------- Prometheus, the peer

struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus() -> Prometheus {
    assert!(Path::new(PROMETHEUS).exists(), "install Debian's prometheus: apt-get install -y prometheus");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  evaluation_interval: 1m\nscrape_configs: []\n").expect("config");
    let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--web.enable-remote-write-receiver")
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let p = Prometheus { child, port, _dir: dir };
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((200, _)) = http(port, "GET", "/-/ready", &[], b"") {
            return p;
        }
        assert!(Instant::now() < until, "prometheus did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal HTTP/1.0 exchange (the server closes the connection and sends no chunked body).
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n", body.len());
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let end = resp.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&resp[..end]).to_string();
    let status: u16 = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, resp[end + 4..].to_vec()))
}

/// Sends the samples oldest first, in windows of ten minutes across all series (the TSDB head
/// refuses samples much older than the newest it holds).
fn remote_write_all(port: u16, data: &[Series], base: i64) {
    let mut from = base - MIN;
    while from <= base + SPAN + MIN {
        let to = from + 10 * MIN;
        let mut req = WriteRequest { timeseries: Vec::new(), metadata: Vec::new() };
        for s in data {
            let samples: Vec<remote_write::Sample> = s
                .samples
                .iter()
                .filter(|p| p.t >= from && p.t < to)
                .map(|p| remote_write::Sample { value: p.v, timestamp: p.t })
                .collect();
            if samples.is_empty() {
                continue;
            }
            req.timeseries.push(TimeSeries {
                labels: s.labels.iter().map(|(n, v)| Label { name: n.into(), value: v.into() }).collect(),
                samples,
                exemplars: Vec::new(),
                histograms: Vec::new(),
            });
        }
        if !req.timeseries.is_empty() {
            let body = remote_write::encode(&req);
            let (status, resp) = http(
                port,
                "POST",
                "/api/v1/write",
                &[
                    ("Content-Encoding", "snappy"),
                    ("Content-Type", "application/x-protobuf"),
                    ("X-Prometheus-Remote-Write-Version", "0.1.0"),
                ],
                &body,
            )
            .expect("remote write");
            assert!(status / 100 == 2, "remote write answered {status}: {}", String::from_utf8_lossy(&resp));
        }
        from = to;
    }
}

// ---------------------------------------------------------------- comparing answers

/// One answer in a form both sides produce: the result type and its series (a scalar is one
/// series with no labels), or an error type.
#[derive(Debug, Clone)]
enum Answer {
    /// `order` is the order of a vector's elements (checked for `sort` and `sort_desc` only).
    Ok {
        kind: &'static str,
        series: BTreeMap<Labels, Vec<(i64, f64)>>,
        order: Vec<Labels>,
    },
    Err {
        kind: &'static str,
        msg: String,
    },
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

fn parse_value(v: &serde_json::Value) -> (i64, f64) {
    let t = (v[0].as_f64().expect("timestamp") * 1000.0).round() as i64;
    let s = v[1].as_str().expect("value string");
    let f = match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        _ => s.parse().expect("float"),
    };
    (t, f)
}

fn parse_metric(m: &serde_json::Value) -> Labels {
    Labels::new(
        m.as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
            .unwrap_or_default(),
    )
}

fn ask_prometheus(port: u16, path: &str) -> Answer {
    let (_, body) = http(port, "GET", path, &[], b"").expect("query prometheus");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("prometheus json");
    if v["status"] != "success" {
        let kind = match v["errorType"].as_str().unwrap_or("") {
            "bad_data" => "bad_data",
            "execution" => "execution",
            "timeout" => "timeout",
            _ => "internal",
        };
        return Answer::Err { kind, msg: v["error"].as_str().unwrap_or("").to_string() };
    }
    let data = &v["data"];
    let mut series = BTreeMap::new();
    let mut order = Vec::new();
    let kind = match data["resultType"].as_str().unwrap_or("") {
        "scalar" => {
            let (t, f) = parse_value(&data["result"]);
            series.insert(Labels::default(), vec![(t, f)]);
            "scalar"
        }
        "string" => {
            let t = (data["result"][0].as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
            let s = data["result"][1].as_str().unwrap_or("").to_string();
            series.insert(labels(&[("string", &s)]), vec![(t, 0.0)]);
            "string"
        }
        "vector" => {
            for e in data["result"].as_array().expect("vector") {
                order.push(parse_metric(&e["metric"]));
                series.entry(parse_metric(&e["metric"])).or_insert_with(Vec::new).push(parse_value(&e["value"]));
            }
            "vector"
        }
        _ => {
            for e in data["result"].as_array().expect("matrix") {
                let points = e["values"].as_array().expect("values").iter().map(parse_value).collect();
                series.insert(parse_metric(&e["metric"]), points);
            }
            "matrix"
        }
    };
    Answer::Ok { kind, series, order }
}

fn error_answer(e: Error) -> Answer {
    let kind = e.error_type();
    Answer::Err { kind, msg: e.to_string() }
}

fn ours_instant(q: &str, t: i64, src: &MemSource) -> Answer {
    match engine::instant(q, t, src, &Options::default()) {
        Err(e) => error_answer(e),
        Ok(v) => {
            let mut series = BTreeMap::new();
            let mut order = Vec::new();
            let kind = match v {
                Value::Scalar { t, v } => {
                    series.insert(Labels::default(), vec![(t, v)]);
                    "scalar"
                }
                Value::String { t, v } => {
                    series.insert(labels(&[("string", &v)]), vec![(t, 0.0)]);
                    "string"
                }
                Value::Vector(samples) => {
                    for s in samples {
                        order.push(s.labels.clone());
                        series.entry(s.labels).or_insert_with(Vec::new).push((s.t, s.v));
                    }
                    "vector"
                }
                Value::Matrix(m) => {
                    for s in m {
                        series.insert(s.labels, s.samples.iter().map(|p| (p.t, p.v)).collect());
                    }
                    "matrix"
                }
            };
            Answer::Ok { kind, series, order }
        }
    }
}

fn ours_range(q: &str, start: i64, end: i64, step: i64, src: &MemSource) -> Answer {
    match engine::range(q, start, end, step, src, &Options::default()) {
        Err(e) => error_answer(e),
        Ok(m) => Answer::Ok {
            kind: "matrix",
            series: m.into_iter().map(|s| (s.labels, s.samples.iter().map(|p| (p.t, p.v)).collect())).collect(),
            order: Vec::new(),
        },
    }
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Whether the order of an instant vector is part of the answer: Prometheus keeps the order
/// `sort`, `sort_desc`, `topk` and `bottomk` produce.
fn ordered(q: &str) -> bool {
    ["sort", "topk", "bottomk"].iter().any(|f| q.starts_with(f))
}

/// `None` when the answers agree, else what differs. Vector order is compared only when the
/// query orders it (`sorted`, see [`ordered`]); otherwise Prometheus leaves it unspecified.
fn differ(want: &Answer, got: &Answer, sorted: bool) -> Option<String> {
    match (want, got) {
        (Answer::Err { kind: a, .. }, Answer::Err { kind: b, .. }) if a == b => None,
        (Answer::Ok { kind: ka, series: sa, order: oa }, Answer::Ok { kind: kb, series: sb, order: ob }) => {
            if sorted && ka == &"vector" && oa != ob {
                return Some(format!("order {oa:?} vs {ob:?}"));
            }
            if ka != kb {
                return Some(format!("result type {ka} vs {kb}"));
            }
            let la: Vec<&Labels> = sa.keys().collect();
            let lb: Vec<&Labels> = sb.keys().collect();
            if la != lb {
                let missing: Vec<String> = sa.keys().filter(|l| !sb.contains_key(*l)).map(|l| l.to_string()).collect();
                let extra: Vec<String> = sb.keys().filter(|l| !sa.contains_key(*l)).map(|l| l.to_string()).collect();
                return Some(format!("series differ: missing {missing:?}, extra {extra:?}"));
            }
            for (l, pa) in sa {
                let pb = &sb[l];
                if pa.len() != pb.len() {
                    return Some(format!(
                        "{l}: {} points vs {}: {:?} vs {:?}",
                        pa.len(),
                        pb.len(),
                        short(pa),
                        short(pb)
                    ));
                }
                for (x, y) in pa.iter().zip(pb) {
                    if x.0 != y.0 || !close(x.1, y.1) {
                        return Some(format!("{l}: point {x:?} vs {y:?}"));
                    }
                }
            }
            None
        }
        _ => Some(format!("{} vs {}", brief(want), brief(got))),
    }
}

fn short(p: &[(i64, f64)]) -> Vec<(i64, f64)> {
    p.iter().take(4).copied().collect()
}

fn brief(a: &Answer) -> String {
    match a {
        Answer::Ok { kind, series, .. } => format!("{kind} of {} series", series.len()),
        Answer::Err { kind, msg } => format!("{kind} error \"{msg}\""),
    }
}

fn is_unsupported(a: &Answer) -> bool {
    matches!(a, Answer::Err { kind: "bad_data", msg } if msg.ends_with("is not supported"))
}

fn load_queries(file: &str, base: i64) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(|l| substitute(l, base)).collect()
}

/// `{{base+N}}` in a query is the data's base time plus `N` seconds, in seconds (for `@`).
fn substitute(q: &str, base: i64) -> String {
    let mut out = String::new();
    let mut rest = q;
    while let Some(i) = rest.find("{{base+") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 7..];
        let j = after.find("}}").expect("closing }}");
        let n: i64 = after[..j].parse().expect("seconds");
        out.push_str(&(base / 1000 + n).to_string());
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    out
}

/// Every way a query is asked: instant at several times, range at several steps.
#[derive(Debug, Clone, Copy)]
enum Ask {
    Instant(i64),
    Range(i64, i64, i64),
}

fn asks(base: i64) -> Vec<Ask> {
    vec![
        Ask::Instant(base + 30 * MIN),
        Ask::Instant(base + 47 * MIN + 30_000 + 7),
        Ask::Instant(base + 65 * MIN),
        Ask::Instant(base + 100 * MIN + 1_234),
        Ask::Instant(base + SPAN + 3 * MIN),
        Ask::Range(base + 10 * MIN, base + 105 * MIN, 60_000),
        Ask::Range(base + 5 * MIN + 500, base + SPAN + 8 * MIN, 137_000),
        Ask::Range(base + 28 * MIN, base + 58 * MIN, 15_000),
        Ask::Instant(base + 2 * MIN + 1),
        Ask::Instant(base + 61 * MIN + 500),
        Ask::Range(base + 59 * MIN, base + 64 * MIN, 1_000),
        Ask::Range(base - 10 * MIN, base + SPAN + 10 * MIN, 7 * MIN),
    ]
}

fn run(q: &str, ask: Ask, port: u16, src: &MemSource) -> (Answer, Answer) {
    match ask {
        Ask::Instant(t) => (
            ask_prometheus(port, &format!("/api/v1/query?query={}&time={}", percent_encode(q), secs(t))),
            ours_instant(q, t, src),
        ),
        Ask::Range(s, e, step) => (
            ask_prometheus(
                port,
                &format!(
                    "/api/v1/query_range?query={}&start={}&end={}&step={}",
                    percent_encode(q),
                    secs(s),
                    secs(e),
                    secs(step)
                ),
            ),
            ours_range(q, s, e, step, src),
        ),
    }
}

#[test]
fn engine_answers_as_prometheus_2_42_does() {
    let prometheus = start_prometheus();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64;
    // Aligned to the minute, so that runs differ only in the base.
    let base = (now - 2 * 60 * MIN) / MIN * MIN;
    let data = generate(base);
    remote_write_all(prometheus.port, &data, base);
    let src = MemSource(data);

    let queries = load_queries("queries.txt", base);
    let pending = load_queries("queries-pending.txt", base);
    assert!(queries.len() >= 200, "queries.txt holds {} queries", queries.len());

    let mut differences = Vec::new();
    let mut unsupported = Vec::new();
    let mut checks = 0;
    let mut with_data = 0;
    let mut agreed_on_retry = Vec::new();
    for q in &queries {
        for ask in asks(base) {
            checks += 1;
            let (want, got) = run(q, ask, prometheus.port, &src);
            if matches!(&want, Answer::Ok { series, .. } if !series.is_empty()) {
                with_data += 1;
            }
            if let Some(d) = differ(&want, &got, ordered(q)) {
                // Prometheus itself is not deterministic everywhere: in a range query, the
                // series a binary operator yields come out of a Go map in random order, and
                // `topk`/`bottomk` then keep a random one of equal values. Our answer counts
                // as agreeing when Prometheus gives it too on asking again; a deterministic
                // Prometheus answers the same every time, so nothing else is excused.
                if (1..=32).any(|_| differ(&run(q, ask, prometheus.port, &src).0, &got, ordered(q)).is_none()) {
                    agreed_on_retry.push(format!("{q}  @ {ask:?}"));
                    continue;
                }
                let line = format!("{q}  @ {ask:?}: {d}");
                if is_unsupported(&got) { unsupported.push(line) } else { differences.push(line) }
            }
        }
    }
    let mut fixed = Vec::new();
    for q in &pending {
        let still = asks(base).into_iter().any(|ask| {
            let (want, got) = run(q, ask, prometheus.port, &src);
            differ(&want, &got, ordered(q)).is_some()
        });
        if !still {
            fixed.push(q.clone());
        }
    }
    let mut report = String::new();
    if !unsupported.is_empty() {
        report.push_str(&format!("\n{} answers unsupported:\n  {}", unsupported.len(), unsupported.join("\n  ")));
    }
    if !differences.is_empty() {
        report.push_str(&format!(
            "\n{} answers differ from Prometheus:\n  {}",
            differences.len(),
            differences.join("\n  ")
        ));
    }
    if !fixed.is_empty() {
        report.push_str(&format!("\nnow agree with Prometheus, move them to queries.txt:\n  {}", fixed.join("\n  ")));
    }
    eprintln!(
        "{} queries x {} asks = {checks} checks, {with_data} of them with a non-empty answer from Prometheus",
        queries.len(),
        asks(base).len()
    );
    if !agreed_on_retry.is_empty() {
        eprintln!(
            "{} answers agreed only with a later answer of Prometheus (random order of equal values):\n  {}",
            agreed_on_retry.len(),
            agreed_on_retry.join("\n  ")
        );
    }
    // Guards the comparison itself: an empty Prometheus (say, a remote write it dropped)
    // would agree with anything that answers nothing.
    assert!(with_data * 4 >= checks * 3, "only {with_data} of {checks} answers hold data");
    assert!(report.is_empty(), "{report}");
}
