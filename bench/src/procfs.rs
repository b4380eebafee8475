//! CPU time and memory of a process, read from `/proc` (Linux only).
//!
//! Parsing takes the file contents as `&str` so it is tested without a live
//! process; the thin `read_*` wrappers do the I/O. CPU time is
//! `utime + stime` in clock ticks, converted with `getconf CLK_TCK`.

use std::fs;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, anyhow};

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    /// User plus system CPU time so far, in seconds.
    pub cpu_seconds: f64,
    /// Peak resident set size since the process started (`VmHWM`), in KiB.
    pub hwm_kib: u64,
    /// Current resident set size (`VmRSS`), in KiB.
    pub rss_kib: u64,
}

/// Clock ticks per second for `/proc/*/stat` times; 100 on Linux in practice.
pub fn clock_ticks_per_second() -> u64 {
    let from_getconf = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse::<u64>().ok())
        .filter(|&ticks| ticks > 0);
    from_getconf.unwrap_or_else(|| {
        eprintln!("warning: `getconf CLK_TCK` failed; assuming 100 ticks per second");
        100
    })
}

/// `utime + stime` in ticks from the text of `/proc/PID/stat`.
pub fn parse_stat_ticks(stat: &str) -> anyhow::Result<u64> {
    // The command name (field 2) is in parentheses and may contain spaces or
    // parentheses itself, so count fields from the last ')'.
    let after_comm = stat.rfind(')').map(|i| &stat[i + 1..]).ok_or_else(|| anyhow!("no ')' in /proc stat line"))?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let field = |index: usize, name: &str| -> anyhow::Result<u64> {
        fields
            .get(index)
            .ok_or_else(|| anyhow!("/proc stat line has no {name} field"))?
            .parse::<u64>()
            .with_context(|| format!("parsing {name}"))
    };
    Ok(field(11, "utime")? + field(12, "stime")?)
}

/// A `Vm*:  N kB` value from the text of `/proc/PID/status`, in KiB.
pub fn parse_status_kib(status: &str, key: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .ok_or_else(|| anyhow!("no {key} in /proc status"))?;
    let number = line.trim().trim_end_matches("kB").trim();
    number.parse::<u64>().with_context(|| format!("parsing {key} value '{number}'"))
}

fn read_status(pid: u32) -> anyhow::Result<String> {
    let path = format!("/proc/{pid}/status");
    fs::read_to_string(&path).with_context(|| format!("reading {path} (is process {pid} running?)"))
}

/// Reads CPU time and memory of `pid` now.
pub fn snapshot(pid: u32, ticks_per_second: u64) -> anyhow::Result<Snapshot> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("reading {path} (is process {pid} running?)"))?;
    let ticks = parse_stat_ticks(&stat).with_context(|| format!("in {path}"))?;
    let status = read_status(pid)?;
    Ok(Snapshot {
        cpu_seconds: ticks as f64 / ticks_per_second as f64,
        hwm_kib: parse_status_kib(&status, "VmHWM")?,
        rss_kib: parse_status_kib(&status, "VmRSS")?,
    })
}

/// Waits, up to `max`, until the process uses at most `idle_share` of one
/// core over a `window`, and returns how long that took. A server that
/// acknowledges first and does the work later (batching, flushing) would
/// otherwise have that work left out of its CPU time.
pub fn wait_until_idle(
    pid: u32,
    ticks_per_second: u64,
    max: Duration,
    window: Duration,
    idle_share: f64,
) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    let mut last = snapshot(pid, ticks_per_second)?.cpu_seconds;
    while started.elapsed() < max {
        std::thread::sleep(window);
        let now = snapshot(pid, ticks_per_second)?.cpu_seconds;
        let busy = now - last;
        last = now;
        if busy <= idle_share * window.as_secs_f64() {
            break;
        }
    }
    Ok(started.elapsed())
}

/// Samples `VmRSS` every `period` on its own OS thread, so a busy async
/// runtime cannot delay the samples, and keeps the maximum. `VmHWM` alone
/// would also count memory the server touched before the run.
#[derive(Debug)]
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<u64>,
}

impl RssSampler {
    pub fn start(pid: u32, period: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut max_kib = 0;
            loop {
                if let Ok(kib) = read_status(pid).and_then(|s| parse_status_kib(&s, "VmRSS")) {
                    max_kib = max_kib.max(kib);
                }
                if flag.load(Ordering::Relaxed) {
                    return max_kib;
                }
                std::thread::sleep(period);
            }
        });
        Self { stop, handle }
    }

    /// Stops sampling and returns the largest `VmRSS` seen, in KiB.
    pub fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks() {
        let stat = "4242 (rotel agent (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    150 37 0 0 20 0 9 0 12345 123456789 4567 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat).expect("parses"), 187);
        assert!(parse_stat_ticks("4242 (x) S 1 2").is_err());
        assert!(parse_stat_ticks("garbage").is_err());
    }

    #[test]
    fn status_values() {
        let status = "Name:\trotel-agent\nVmPeak:\t  900000 kB\nVmHWM:\t   51234 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM").expect("hwm"), 51_234);
        assert_eq!(parse_status_kib(status, "VmRSS").expect("rss"), 40_960);
        assert!(parse_status_kib(status, "VmSwap").is_err());
    }

    #[test]
    fn reads_own_process() {
        let snap = snapshot(std::process::id(), clock_ticks_per_second()).expect("own /proc");
        assert!(snap.hwm_kib >= snap.rss_kib / 2 && snap.rss_kib > 0);
    }
}
