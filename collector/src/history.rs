//! The history of gate runs, which `last_passing` baselines and `consecutive_failures` read:
//! one JSON line per [`Run`] in `<data-dir>/gate/<tenant>/runs.jsonl`, appended and fsynced,
//! so it survives restarts of both the collector and CI.
//!
//! Design: retention keeps, per service and environment, the newest `max_runs` runs and none
//! older than `retention`. It is applied when reading, and to the file when the file grows
//! past `max_bytes`: the file is then compacted — rewritten with only the runs retention keeps
//! (and, should those still fill more than half of `max_bytes`, without the oldest of them
//! until they fit) into a new file that is fsynced and renamed over the old one, then the
//! directory fsynced. A crash leaves the old file or the new one, never a mix, and the file
//! never holds more than `max_bytes` plus one run. Errors name the file relative to the data
//! directory: they are answered to HTTP clients.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::api::gate::Run;
use crate::tenant::Tenant;

/// How much history is kept (the `[gate]` table of the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistorySettings {
    /// Runs kept per service and environment, newest first.
    pub max_runs: usize,
    /// Runs older than this are dropped.
    pub retention: Duration,
    /// The file is compacted when it grows past this many bytes.
    pub max_bytes: u64,
}

/// Why the history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read the gate history {file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("cannot record the run in the gate history {file}: {source}")]
    Write { file: String, source: std::io::Error },
}

/// The gate run histories of every tenant under one data directory.
#[derive(Debug)]
pub struct History {
    data_dir: PathBuf,
    settings: HistorySettings,
    /// Serialises appends and compactions.
    lock: Mutex<()>,
}

/// The history file of `tenant`, relative to the data directory.
fn relative(tenant: &Tenant) -> PathBuf {
    Path::new("gate").join(tenant.as_str()).join("runs.jsonl")
}

impl History {
    pub fn new(data_dir: &Path, settings: HistorySettings) -> History {
        History { data_dir: data_dir.to_path_buf(), settings, lock: Mutex::new(()) }
    }

    /// The runs of `tenant` for `service` (and `environment`, when given) that retention
    /// keeps at `now_unix_nano`, newest first.
    pub fn runs(
        &self,
        tenant: &Tenant,
        service: &str,
        environment: Option<&str>,
        now_unix_nano: u64,
    ) -> Result<Vec<Run>, HistoryError> {
        let file = relative(tenant);
        let runs = read_all(&self.data_dir.join(&file))
            .map_err(|source| HistoryError::Read { file: file.display().to_string(), source })?;
        let runs = runs
            .into_iter()
            .filter(|r| r.service == service && environment.is_none_or(|e| r.environment.as_deref() == Some(e)));
        Ok(retain(runs.collect(), &self.settings, now_unix_nano))
    }

    /// Appends `run` (already validated) to the history of `tenant`, compacting the file when
    /// it has grown past its bound.
    pub fn record(&self, tenant: &Tenant, run: &Run, now_unix_nano: u64) -> Result<(), HistoryError> {
        let file = relative(tenant);
        let write = |source| HistoryError::Write { file: file.display().to_string(), source };
        let path = self.data_dir.join(&file);
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        let mut line = serde_json::to_string(run).map_err(|e| write(std::io::Error::other(e)))?;
        line.push('\n');
        let mut out = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(write)?;
        out.write_all(line.as_bytes()).map_err(write)?;
        out.sync_data().map_err(write)?;
        let len = out.metadata().map_err(write)?.len();
        drop(out);
        if len > self.settings.max_bytes {
            self.compact(&path, now_unix_nano).map_err(write)?;
        }
        Ok(())
    }

    /// Rewrites the file with only the runs retention keeps, crash-safely.
    fn compact(&self, path: &Path, now_unix_nano: u64) -> std::io::Result<()> {
        let mut kept = retain(read_all(path)?, &self.settings, now_unix_nano);
        // Oldest first in the file, as appends leave it.
        kept.reverse();
        let mut lines: Vec<String> =
            kept.iter().map(|r| serde_json::to_string(r).map_err(std::io::Error::other)).collect::<Result<_, _>>()?;
        let budget = self.settings.max_bytes / 2;
        let mut total: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        let mut first = 0;
        // Keep at least the newest run, whatever the bound.
        while total > budget && first + 1 < lines.len() {
            total -= lines[first].len() as u64 + 1;
            first += 1;
        }
        lines.drain(..first);
        let tmp = path.with_extension("jsonl.compacting");
        {
            let mut out = std::fs::File::create(&tmp)?;
            for line in &lines {
                out.write_all(line.as_bytes())?;
                out.write_all(b"\n")?;
            }
            out.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        tracing::info!(runs = lines.len(), bytes = total, "gate history compacted");
        Ok(())
    }
}

/// Every run in the file, oldest first; a missing file is an empty history, and lines that do
/// not parse (a torn last line after a crash mid-append) are skipped.
fn read_all(path: &Path) -> std::io::Result<Vec<Run>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(text.lines().filter(|l| !l.trim().is_empty()).filter_map(|l| serde_json::from_str::<Run>(l).ok()).collect())
}

/// The runs retention keeps, newest first: none older than the retention period, and the
/// newest `max_runs` of each service and environment.
fn retain(mut runs: Vec<Run>, settings: &HistorySettings, now_unix_nano: u64) -> Vec<Run> {
    let oldest = now_unix_nano.saturating_sub(u64::try_from(settings.retention.as_nanos()).unwrap_or(u64::MAX));
    // Newest first; equal times keep the order they were recorded in, later first.
    runs.reverse();
    runs.sort_by_key(|r| std::cmp::Reverse(r.time_unix_nano));
    let mut per_build: HashMap<(String, Option<String>), usize> = HashMap::new();
    runs.retain(|r| {
        if r.time_unix_nano < oldest {
            return false;
        }
        let n = per_build.entry((r.service.clone(), r.environment.clone())).or_default();
        *n += 1;
        *n <= settings.max_runs
    });
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::gate::RunObjective;
    use analyzer::compare::Verdict;

    const HOUR: u64 = 3_600_000_000_000;

    fn run(service: &str, environment: Option<&str>, version: &str, time_unix_nano: u64) -> Run {
        Run {
            service: service.into(),
            environment: environment.map(str::to_string),
            version: version.into(),
            time_unix_nano,
            verdict: Verdict::Pass,
            blocked: false,
            objectives: vec![RunObjective { name: "latency".into(), verdict: Verdict::Pass }],
        }
    }

    fn settings(max_runs: usize, max_bytes: u64) -> HistorySettings {
        HistorySettings { max_runs, retention: Duration::from_secs(24 * 3600), max_bytes }
    }

    fn versions(runs: &[Run]) -> Vec<&str> {
        runs.iter().map(|r| r.version.as_str()).collect()
    }

    #[test]
    fn runs_are_filtered_newest_first_and_torn_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let tenant = Tenant::parse("anonymous").unwrap();
        let history = History::new(dir.path(), settings(100, 1 << 20));
        let now = 100 * HOUR;
        for r in [
            run("a", None, "1", now - 5 * HOUR),
            run("a", Some("prod"), "3", now - 3 * HOUR),
            run("b", None, "2", now - 4 * HOUR),
            run("a", None, "5", now - HOUR),
        ] {
            history.record(&tenant, &r, now).unwrap();
        }
        let file = dir.path().join("gate/anonymous/runs.jsonl");
        let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(b"{\"service\":\"a\",\"vers").unwrap();
        assert_eq!(versions(&history.runs(&tenant, "a", None, now).unwrap()), ["5", "3", "1"]);
        assert_eq!(versions(&history.runs(&tenant, "a", Some("prod"), now).unwrap()), ["3"]);
        let other = Tenant::parse("team-b").unwrap();
        assert!(history.runs(&other, "a", None, now).unwrap().is_empty());
    }

    // issue 11 #8: retention keeps the newest runs of each service and environment and none older
    // than the retention period.
    #[test]
    fn retention_keeps_the_newest_runs_of_each_service_and_environment() {
        let now = 1000 * HOUR;
        let runs = vec![
            run("a", None, "old", now - 25 * HOUR),
            run("a", None, "1", now - 3 * HOUR),
            run("a", None, "2", now - 2 * HOUR),
            run("a", None, "3", now - HOUR),
            run("a", Some("prod"), "p1", now - 2 * HOUR),
            run("b", None, "b1", now - 2 * HOUR),
        ];
        let kept = retain(runs, &settings(2, 1 << 20), now);
        // Newest first; of runs at the same time, the one recorded last first.
        assert_eq!(versions(&kept), ["3", "b1", "p1", "2"]);
    }

    // issue 11 #8: however many runs arrive, the file stays under its bound (plus one run),
    // compaction keeps the newest runs, and what is kept reads back.
    #[test]
    fn the_file_is_compacted_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let tenant = Tenant::parse("anonymous").unwrap();
        let history = History::new(dir.path(), settings(10_000, 16 * 1024));
        let now = 1000 * HOUR;
        let file = dir.path().join("gate/anonymous/runs.jsonl");
        let one_run = serde_json::to_string(&run("checkout", Some("staging"), "1.0.0000", now)).unwrap().len() as u64;
        for i in 0..2_000u64 {
            let r = run("checkout", Some("staging"), &format!("1.0.{i:04}"), now - 2_000 + i);
            history.record(&tenant, &r, now).unwrap();
            let size = std::fs::metadata(&file).unwrap().len();
            assert!(size <= 16 * 1024 + one_run + 1, "after run {i} the file is {size} bytes");
        }
        let kept = history.runs(&tenant, "checkout", Some("staging"), now).unwrap();
        assert!(kept.len() > 20, "{} runs kept", kept.len());
        assert_eq!(kept[0].version, "1.0.1999");
        assert!(kept.windows(2).all(|w| w[0].time_unix_nano > w[1].time_unix_nano));
        assert!(!dir.path().join("gate/anonymous/runs.jsonl.compacting").exists());
    }

    // A compaction that crashed before its rename left a partial new file: it is never read,
    // and the next compaction replaces it.
    #[test]
    fn a_leftover_compaction_file_is_ignored_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let tenant = Tenant::parse("anonymous").unwrap();
        let history = History::new(dir.path(), settings(3, 2048));
        let now = 1000 * HOUR;
        std::fs::create_dir_all(dir.path().join("gate/anonymous")).unwrap();
        std::fs::write(dir.path().join("gate/anonymous/runs.jsonl.compacting"), "{\"torn").unwrap();
        for i in 0..30u64 {
            history.record(&tenant, &run("a", None, &i.to_string(), now - 100 + i), now).unwrap();
        }
        assert_eq!(versions(&history.runs(&tenant, "a", None, now).unwrap()), ["29", "28", "27"]);
        assert!(!dir.path().join("gate/anonymous/runs.jsonl.compacting").exists());
    }

    #[test]
    fn errors_name_the_file_relative_to_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the tenant's directory should be.
        std::fs::create_dir_all(dir.path().join("gate")).unwrap();
        std::fs::write(dir.path().join("gate/anonymous"), "").unwrap();
        let history = History::new(dir.path(), settings(3, 2048));
        let tenant = Tenant::parse("anonymous").unwrap();
        let err = history.record(&tenant, &run("a", None, "1", 1), 1).unwrap_err().to_string();
        assert!(err.contains("gate/anonymous/runs.jsonl"), "{err}");
        assert!(!err.contains(&dir.path().display().to_string()), "{err}");
    }
}
