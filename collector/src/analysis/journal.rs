//! The anomalies found, durably: `<data-dir>/analysis/<tenant>/anomalies.log`, one line per
//! change of an incident (opened, a higher peak, resolved), each the whole [`Anomaly`] as JSON
//! behind the CRC-32 of that JSON (`0badc0de {...}`). Reading folds the lines by `id`, the last
//! one winning.
//!
//! Design: the file is appended and fsynced before a change is acted on (a notification is
//! queued only for what the journal holds), so a restart finds every incident it announced.
//! A line whose checksum or JSON is wrong — a torn last line after a crash, a flipped byte —
//! costs that line, with a warning naming the file and line; the rest is read. When the file
//! grows past `max_bytes` it is rewritten with the latest record of each incident that
//! retention keeps (resolved ones newer than `retention`, every open one), into a new file
//! that is fsynced and renamed over the old one: a crash leaves the old file or the new one.
//! Paths in errors and warnings are relative to the data directory, since they are answered
//! to HTTP clients.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::api::anomalies::{Anomaly, AnomalyStatus};
use crate::tenant::Tenant;

/// How much of the journal is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalSettings {
    /// Resolved incidents that ended longer ago than this are dropped at compaction.
    pub retention: Duration,
    /// The file is compacted when it grows past this many bytes.
    pub max_bytes: u64,
}

/// Why the journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read the anomaly journal {file}: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("cannot record the anomaly in {file}: {source}")]
    Write { file: String, source: std::io::Error },
}

/// What a read of one tenant's journal found.
#[derive(Debug, Default)]
pub struct Read {
    /// The latest record of each incident, in the order they were first recorded.
    pub anomalies: Vec<Anomaly>,
    /// One per line that could not be read.
    pub warnings: Vec<String>,
}

/// The anomaly journals of every tenant under one data directory.
#[derive(Debug)]
pub struct Journal {
    data_dir: PathBuf,
    settings: JournalSettings,
    /// Serialises appends and compactions.
    lock: Mutex<()>,
}

/// The journal of `tenant`, relative to the data directory.
fn relative(tenant: &Tenant) -> PathBuf {
    Path::new("analysis").join(tenant.as_str()).join("anomalies.log")
}

fn encode(anomaly: &Anomaly) -> std::io::Result<String> {
    let json = serde_json::to_string(anomaly).map_err(std::io::Error::other)?;
    Ok(format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes())))
}

impl Journal {
    pub fn new(data_dir: &Path, settings: JournalSettings) -> Journal {
        Journal { data_dir: data_dir.to_path_buf(), settings, lock: Mutex::new(()) }
    }

    /// Appends the current state of `anomaly` to the journal of `tenant` and makes it durable.
    pub fn record(&self, tenant: &Tenant, anomaly: &Anomaly, now_ms: i64) -> Result<(), JournalError> {
        let file = relative(tenant);
        let write = |source| JournalError::Write { file: file.display().to_string(), source };
        let path = self.data_dir.join(&file);
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        let line = encode(anomaly).map_err(write)?;
        let mut out = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(write)?;
        out.write_all(line.as_bytes()).map_err(write)?;
        out.sync_data().map_err(write)?;
        let len = out.metadata().map_err(write)?.len();
        drop(out);
        if len > self.settings.max_bytes {
            self.compact(&path, &file, now_ms).map_err(write)?;
        }
        Ok(())
    }

    /// The incidents of `tenant`, each as last recorded.
    pub fn read(&self, tenant: &Tenant) -> Result<Read, JournalError> {
        let file = relative(tenant);
        read_file(&self.data_dir.join(&file), &file)
            .map_err(|source| JournalError::Read { file: file.display().to_string(), source })
    }

    /// Rewrites the file with the latest record of each incident retention keeps.
    fn compact(&self, path: &Path, file: &Path, now_ms: i64) -> std::io::Result<()> {
        let read = read_file(path, file)?;
        let oldest = now_ms.saturating_sub(i64::try_from(self.settings.retention.as_millis()).unwrap_or(i64::MAX));
        let mut kept: Vec<&Anomaly> = read
            .anomalies
            .iter()
            .filter(|a| a.status == AnomalyStatus::Open || a.end_ms.unwrap_or(a.start_ms) >= oldest)
            .collect();
        let mut lines: Vec<String> = kept.iter().map(|a| encode(a)).collect::<Result<_, _>>()?;
        // Still too large (a flood of incidents within the retention): the oldest resolved go
        // first, down to half the bound; open incidents are always kept.
        let budget = self.settings.max_bytes / 2;
        let mut total: u64 = lines.iter().map(|l| l.len() as u64).sum();
        let mut i = 0;
        while total > budget && i < kept.len() {
            if kept[i].status == AnomalyStatus::Resolved {
                total -= lines[i].len() as u64;
                lines.remove(i);
                kept.remove(i);
            } else {
                i += 1;
            }
        }
        let tmp = path.with_extension("log.compacting");
        {
            let mut out = std::fs::File::create(&tmp)?;
            for line in &lines {
                out.write_all(line.as_bytes())?;
            }
            out.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        tracing::info!(file = %file.display(), incidents = lines.len(), bytes = total, "anomaly journal compacted");
        Ok(())
    }
}

/// Folds the lines of one journal; a missing file is an empty journal.
fn read_file(path: &Path, file: &Path) -> std::io::Result<Read> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Read::default()),
        Err(e) => return Err(e),
    };
    let mut read = Read::default();
    let mut at: HashMap<String, usize> = HashMap::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let parsed = std::str::from_utf8(line).ok().and_then(|line| {
            let (crc, json) = line.split_once(' ')?;
            let crc = u32::from_str_radix(crc, 16).ok()?;
            (crc32fast::hash(json.as_bytes()) == crc).then_some(())?;
            serde_json::from_str::<Anomaly>(json).ok()
        });
        let Some(anomaly) = parsed else {
            read.warnings.push(format!("{} line {}: damaged record skipped", file.display(), n + 1));
            continue;
        };
        match at.get(&anomaly.id) {
            Some(&i) => read.anomalies[i] = anomaly,
            None => {
                at.insert(anomaly.id.clone(), read.anomalies.len());
                read.anomalies.push(anomaly);
            }
        }
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::anomalies::Side;
    use std::collections::BTreeMap;

    fn anomaly(id: &str, start_ms: i64, end_ms: Option<i64>) -> Anomaly {
        Anomaly {
            id: id.into(),
            series: BTreeMap::from([("sli".into(), "latency_p95".into())]),
            service: Some("checkout".into()),
            status: if end_ms.is_some() { AnomalyStatus::Resolved } else { AnomalyStatus::Open },
            start_ms,
            end_ms,
            peak_score: 3.0,
            peak_ms: start_ms,
            side: Side::Above,
            expected: 0.1,
            actual: 0.5,
            leads: vec![],
        }
    }

    fn settings(max_bytes: u64) -> JournalSettings {
        JournalSettings { retention: Duration::from_secs(3600), max_bytes }
    }

    #[test]
    fn the_last_record_of_an_incident_wins_and_tenants_are_apart() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path(), settings(1 << 20));
        let (a, b) = (Tenant::parse("a").unwrap(), Tenant::parse("b").unwrap());
        journal.record(&a, &anomaly("x", 1_000, None), 1_000).unwrap();
        journal.record(&a, &anomaly("y", 2_000, None), 2_000).unwrap();
        journal.record(&a, &anomaly("x", 1_000, Some(5_000)), 5_000).unwrap();
        journal.record(&b, &anomaly("z", 3_000, None), 3_000).unwrap();
        let read = journal.read(&a).unwrap();
        assert_eq!(read.anomalies.len(), 2);
        assert_eq!(read.anomalies[0].id, "x");
        assert_eq!(read.anomalies[0].status, AnomalyStatus::Resolved);
        assert_eq!(read.anomalies[0].end_ms, Some(5_000));
        assert_eq!(read.anomalies[1].id, "y");
        assert_eq!(journal.read(&b).unwrap().anomalies.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["z"]);
        assert!(journal.read(&Tenant::parse("c").unwrap()).unwrap().anomalies.is_empty());
    }

    // A torn last line (a crash mid-append) and a flipped byte each cost their line, with a
    // warning naming the file relative to the data directory and the line.
    #[test]
    fn damaged_lines_cost_that_line_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path(), settings(1 << 20));
        let t = Tenant::parse("a").unwrap();
        for (i, id) in ["p", "q", "r"].iter().enumerate() {
            journal.record(&t, &anomaly(id, i as i64, None), 0).unwrap();
        }
        let path = dir.path().join("analysis/a/anomalies.log");
        let mut bytes = std::fs::read(&path).unwrap();
        let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        let flip = second + 20;
        bytes[flip] ^= 0x01;
        bytes.extend_from_slice(b"0000 {\"id\":\"torn");
        std::fs::write(&path, &bytes).unwrap();
        let read = journal.read(&t).unwrap();
        assert_eq!(read.anomalies.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["p", "r"]);
        assert_eq!(
            read.warnings,
            [
                "analysis/a/anomalies.log line 2: damaged record skipped",
                "analysis/a/anomalies.log line 4: damaged record skipped"
            ]
        );
        assert!(!read.warnings.iter().any(|w| w.contains(dir.path().to_str().unwrap())));
    }

    // Compaction keeps the latest record of each incident retention keeps: open ones always,
    // resolved ones ended within the retention; the file shrinks and reads the same.
    #[test]
    fn compaction_keeps_open_and_recent_incidents() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path(), settings(4_000));
        let t = Tenant::parse("a").unwrap();
        let hour = 3_600_000;
        journal.record(&t, &anomaly("old-open", 0, None), 0).unwrap();
        journal.record(&t, &anomaly("old", 0, Some(1_000)), 1_000).unwrap();
        let now = 10 * hour;
        for i in 0..40 {
            journal.record(&t, &anomaly(&format!("new-{i}"), now - 1_000, None), now).unwrap();
            journal.record(&t, &anomaly(&format!("new-{i}"), now - 1_000, Some(now)), now).unwrap();
        }
        let size = std::fs::metadata(dir.path().join("analysis/a/anomalies.log")).unwrap().len();
        assert!(size <= 4_000 + 400, "the file stays near its bound: {size}");
        let read = journal.read(&t).unwrap();
        assert!(read.warnings.is_empty(), "{:?}", read.warnings);
        let ids: Vec<&str> = read.anomalies.iter().map(|a| a.id.as_str()).collect();
        assert!(ids.contains(&"old-open"), "open incidents are kept: {ids:?}");
        assert!(!ids.contains(&"old"), "resolved incidents past the retention go: {ids:?}");
        assert!(ids.contains(&"new-39"), "{ids:?}");
        assert!(read.anomalies.iter().filter(|a| a.id.starts_with("new")).all(|a| a.status == AnomalyStatus::Resolved));
    }
}
