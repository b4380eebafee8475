//! The result of one run: a flat JSON object for scripts and one human line.
//!
//! Flat on purpose, so `jq .spans_per_server_cpu_second` works without
//! knowing the nesting; server fields are `null` when no `--pid` was given.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::driver::Tally;
use bench::procfs::Snapshot;

const KIB_PER_MIB: f64 = 1024.0;

/// Server-side measurements from `/proc/PID`.
#[derive(Debug, Clone, Copy)]
pub struct ServerUsage {
    pub pid: u32,
    pub before: Snapshot,
    pub after: Snapshot,
    pub max_rss_kib: u64,
    /// Time waited after the load for the server to go idle.
    pub settle_seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub transport: &'static str,
    pub connections: usize,
    pub spans_per_request: usize,
    /// `fresh` (new ids and times in every request) or `replay` (one request, byte for byte).
    pub ids: &'static str,
    pub request_bytes: usize,
    /// One request gzip-compressed at level 6 (with fresh ids in `fresh` mode): the size of
    /// the same spans as an OTLP exporter would send them compressed.
    pub request_gzip_bytes: usize,
    pub requests_ok: u64,
    pub requests_failed: u64,
    /// Failed requests by HTTP status, gRPC code or transport error.
    pub failures: BTreeMap<String, u64>,
    pub spans_accepted: u64,
    pub spans_rejected: u64,
    pub wall_seconds: f64,
    pub spans_per_second: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub client_cpu_seconds: Option<f64>,
    /// The load generator's own CPU per request sent (accepted or failed), in microseconds.
    pub client_cpu_us_per_request: Option<f64>,
    pub server_pid: Option<u32>,
    /// Server CPU time during the load plus the settle time after it.
    pub server_cpu_seconds: Option<f64>,
    pub server_settle_seconds: Option<f64>,
    pub spans_per_server_cpu_second: Option<f64>,
    /// `VmHWM` after the run: peak RSS over the server's whole life.
    pub server_peak_rss_mib: Option<f64>,
    /// Largest `VmRSS` sampled every 100 ms during the run.
    pub server_max_rss_during_run_mib: Option<f64>,
    pub server_rss_before_mib: Option<f64>,
}

/// The run's fixed parameters, to be echoed in the report.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub target: String,
    pub transport: &'static str,
    pub connections: usize,
    pub spans_per_request: usize,
    pub ids: &'static str,
    pub request_bytes: usize,
    pub request_gzip_bytes: usize,
}

impl Report {
    pub fn new(
        info: RunInfo,
        mut tally: Tally,
        wall_seconds: f64,
        client_cpu_seconds: Option<f64>,
        server: Option<ServerUsage>,
    ) -> Self {
        tally.latencies_us.sort_unstable();
        let spans_sent = tally.ok.saturating_mul(info.spans_per_request as u64);
        let spans_accepted = spans_sent.saturating_sub(tally.rejected_spans);
        let per_second = |spans: u64, seconds: f64| (seconds > 0.0).then(|| spans as f64 / seconds);
        let server_cpu = server.map(|s| (s.after.cpu_seconds - s.before.cpu_seconds).max(0.0));
        let ms = |p: f64| percentile(&tally.latencies_us, p).map(|us| us as f64 / 1000.0);
        let requests = tally.ok + tally.failed();
        let client_cpu_us_per_request =
            client_cpu_seconds.filter(|_| requests > 0).map(|cpu| cpu * 1e6 / requests as f64);
        Self {
            target: info.target,
            transport: info.transport,
            connections: info.connections,
            spans_per_request: info.spans_per_request,
            ids: info.ids,
            request_bytes: info.request_bytes,
            request_gzip_bytes: info.request_gzip_bytes,
            requests_ok: tally.ok,
            requests_failed: tally.failed(),
            spans_accepted,
            spans_rejected: tally.rejected_spans,
            wall_seconds,
            spans_per_second: per_second(spans_accepted, wall_seconds).unwrap_or(0.0),
            latency_p50_ms: ms(0.50),
            latency_p99_ms: ms(0.99),
            latency_max_ms: ms(1.0),
            client_cpu_seconds,
            client_cpu_us_per_request,
            server_pid: server.map(|s| s.pid),
            server_cpu_seconds: server_cpu,
            server_settle_seconds: server.map(|s| s.settle_seconds),
            spans_per_server_cpu_second: server_cpu.and_then(|cpu| per_second(spans_accepted, cpu)),
            server_peak_rss_mib: server.map(|s| s.after.hwm_kib as f64 / KIB_PER_MIB),
            server_max_rss_during_run_mib: server.map(|s| s.max_rss_kib as f64 / KIB_PER_MIB),
            server_rss_before_mib: server.map(|s| s.before.rss_kib as f64 / KIB_PER_MIB),
            failures: tally.failures,
        }
    }
}

/// Nearest-rank percentile of sorted values; `p` in `0.0..=1.0`.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn or_dash(value: Option<f64>, precision: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.precision$}"))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ok, {} failed, {} spans in {:.1} s = {:.0} spans/s; p50 {} ms, p99 {} ms",
            self.target,
            self.requests_ok,
            self.requests_failed,
            self.spans_accepted,
            self.wall_seconds,
            self.spans_per_second,
            or_dash(self.latency_p50_ms, 2),
            or_dash(self.latency_p99_ms, 2),
        )?;
        if let (Some(pid), Some(cpu)) = (self.server_pid, self.server_cpu_seconds) {
            write!(
                f,
                "; server pid {pid}: {cpu:.2} cpu-s (settled in {} s), {} spans/cpu-s, VmHWM {} MiB, max RSS during run {} MiB",
                or_dash(self.server_settle_seconds, 2),
                or_dash(self.spans_per_server_cpu_second, 0),
                or_dash(self.server_peak_rss_mib, 1),
                or_dash(self.server_max_rss_during_run_mib, 1),
            )?;
        }
        if let Some(cpu) = self.client_cpu_seconds {
            write!(
                f,
                "; client {cpu:.2} cpu-s ({} us/request, {} ids)",
                or_dash(self.client_cpu_us_per_request, 1),
                self.ids
            )?;
        }
        for (label, count) in &self.failures {
            write!(f, "; {count} x {label}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let check =
            |values: &[u64], p: f64, expect: Option<u64>| assert_eq!(percentile(values, p), expect, "{values:?} p{p}");
        check(&[], 0.5, None);
        check(&[7], 0.0, Some(7));
        check(&[7], 0.99, Some(7));
        check(&[1, 2, 3, 4], 0.5, Some(2));
        check(&[1, 2, 3, 4], 0.51, Some(3));
        check(&(1..=100).collect::<Vec<_>>(), 0.99, Some(99));
        check(&(1..=100).collect::<Vec<_>>(), 1.0, Some(100));
    }

    #[test]
    fn accepted_spans_subtract_rejections() {
        let tally = Tally {
            ok: 10,
            rejected_spans: 5,
            failures: BTreeMap::from([("http 503".to_owned(), 2)]),
            latencies_us: vec![3000, 1000, 2000],
        };
        let info = RunInfo {
            target: "http://127.0.0.1:1".to_owned(),
            transport: "http",
            connections: 1,
            spans_per_request: 100,
            ids: "fresh",
            request_bytes: 1,
            request_gzip_bytes: 1,
        };
        let snap = |cpu, kib| Snapshot { cpu_seconds: cpu, hwm_kib: kib, rss_kib: kib };
        let server = ServerUsage {
            pid: 1,
            before: snap(1.0, 1024),
            after: snap(3.0, 2048),
            max_rss_kib: 2048,
            settle_seconds: 0.25,
        };
        let report = Report::new(info, tally, 2.0, Some(0.024), Some(server));
        assert_eq!(report.spans_accepted, 995);
        assert_eq!(report.requests_failed, 2);
        assert_eq!(report.spans_per_second, 497.5);
        assert_eq!(report.spans_per_server_cpu_second, Some(497.5));
        assert_eq!(report.latency_p50_ms, Some(2.0));
        assert_eq!(report.server_peak_rss_mib, Some(2.0));
        // 0.024 s over 12 requests sent, the 2 failed ones included.
        assert_eq!(report.client_cpu_us_per_request.map(|us| us.round()), Some(2000.0));
        let line = report.to_string();
        assert!(line.contains("2 x http 503"), "{line}");
        assert!(line.contains("client 0.02 cpu-s (2000.0 us/request, fresh ids)"), "{line}");
    }
}
