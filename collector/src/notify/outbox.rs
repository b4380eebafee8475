//! The outbox: every notification, appended and `fsync`ed before `send` returns, kept until
//! each webhook has passed it; and each webhook's cursor.
//!
//! ```text
//! directory := lock  outbox-<first seq, 20 digits>.log*  cursor-<webhook name>*
//! segment   := "SLOGNTF1" record*
//! record    := len:u32le crc:u32le seq:u64le json[len - 8]
//! ```
//!
//! `crc` is CRC-32 of `len` and of the `len` bytes after `crc` (the sequence number and the
//! notification as JSON). Sequence numbers grow by one per notification and never repeat,
//! also across restarts and compactions (the next one follows the largest in the segments or
//! in any cursor).
//!
//! A cursor file holds the sequence number its webhook has passed (delivered, or refused for
//! good), written to a temporary file, `fsync`ed and renamed over the old one, so it is always
//! either the old value or the new one.
//!
//! Compaction deletes whole segments, once every webhook's persisted cursor has passed their
//! last record; appends go to a new segment after the active one reaches an eighth of the
//! outbox's bound, so what stays on disk after delivery is at most about one segment.
//!
//! Opening reads every segment. A record that runs past the end of its file, or whose length
//! or checksum is wrong, ends the segment: the file is cut back to the last good record (a
//! crash mid-append leaves exactly such a tail; anything after it in that file is lost, and
//! said so in the warning). A record whose checksum holds but whose JSON does not parse, or
//! whose sequence number does not follow its predecessor's, is skipped with a warning.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{Notification, NotifyError};

const MAGIC: &[u8; 8] = b"SLOGNTF1";
/// `len` and `crc`.
const HEADER: usize = 8;
/// The largest `len` accepted: a notification of more than a mebibyte of JSON is a mistake.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
const SEGMENT_PREFIX: &str = "outbox-";
const SEGMENT_SUFFIX: &str = ".log";
const CURSOR_PREFIX: &str = "cursor-";
const TMP_PREFIX: &str = "tmp-";

/// `seq` and `notification`, framed as one record.
fn encode(seq: u64, notification: &Notification) -> Result<Vec<u8>, serde_json::Error> {
    let json = serde_json::to_vec(notification)?;
    let len = 8 + json.len();
    let mut buf = Vec::with_capacity(HEADER + len);
    buf.extend_from_slice(&(len.min(u32::MAX as usize) as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&json);
    let crc = record_crc(&buf[..4], &buf[HEADER..]);
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(buf)
}

fn record_crc(len: &[u8], body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len);
    hasher.update(body);
    hasher.finalize()
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    /// The sequence number of its last record; `None` while it has none.
    last_seq: Option<u64>,
    bytes: u64,
}

/// The segment files of one outbox directory, appended to by one writer.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Oldest first; the last is the one appended to when `active` is set.
    segments: Vec<Segment>,
    active: Option<File>,
    /// Bytes of every segment file.
    bytes: u64,
    next_seq: u64,
}

/// What opening found: the records kept, oldest first, and what was damaged.
#[derive(Debug, Default)]
pub struct Recovered {
    pub records: Vec<(u64, Notification)>,
    /// One line per damaged place, naming the file.
    pub damage: Vec<String>,
    /// Bytes cut or skipped.
    pub damaged_bytes: u64,
}

/// What scanning one segment file found.
struct Scan {
    records: Vec<(u64, Notification)>,
    /// Bytes of whole, intact records (and the magic) at the start of the file.
    valid_len: u64,
}

impl Outbox {
    /// Opens the outbox in `dir` (which must exist), cutting damaged tails. At most
    /// `max_bytes` of segments are written (see [`Outbox::append`]).
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(Outbox, Recovered)> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let first = name.strip_prefix(SEGMENT_PREFIX).and_then(|n| n.strip_suffix(SEGMENT_SUFFIX));
            if let Some(first) = first.and_then(|n| n.parse::<u64>().ok()) {
                files.push((first, entry.path()));
            }
        }
        files.sort();
        let mut recovered = Recovered::default();
        let mut segments = Vec::new();
        let mut last_seq = 0;
        for (_, path) in files {
            let scan = scan_segment(&path, &mut last_seq, &mut recovered)?;
            if scan.records.is_empty() {
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => continue,
                }
            }
            let last = scan.records.last().map(|(seq, _)| *seq);
            recovered.records.extend(scan.records);
            segments.push(Segment { path, last_seq: last, bytes: scan.valid_len });
        }
        let bytes = segments.iter().map(|s| s.bytes).sum();
        let outbox = Outbox {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(1, 8 << 20),
            segments,
            active: None,
            bytes,
            next_seq: last_seq + 1,
        };
        Ok((outbox, recovered))
    }

    /// The sequence number of the last notification appended (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Makes the next sequence number follow `seq` too (a cursor may be ahead of every record
    /// left on disk).
    pub fn continue_after(&mut self, seq: u64) {
        self.next_seq = self.next_seq.max(seq + 1);
    }

    /// Bytes of every segment file.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends `notification` and `fsync`s it; returns its sequence number. Refused, with
    /// nothing written, when it would take the outbox past its bound.
    pub fn append(&mut self, notification: &Notification) -> Result<u64, NotifyError> {
        let seq = self.next_seq;
        let record = encode(seq, notification).map_err(|e| NotifyError::Invalid(format!("cannot encode: {e}")))?;
        if record.len() - HEADER > MAX_RECORD_BYTES {
            return Err(NotifyError::TooLarge { bytes: record.len() as u64, max: (MAX_RECORD_BYTES + HEADER) as u64 });
        }
        let full_segment = self.segments.last().is_none_or(|s| s.bytes >= self.segment_bytes);
        let new_segment = self.active.is_none() || full_segment;
        let need = record.len() as u64 + if new_segment { MAGIC.len() as u64 } else { 0 };
        if self.bytes + need > self.max_bytes {
            return Err(NotifyError::Full { bytes: self.bytes, need, max: self.max_bytes, behind: String::new() });
        }
        let io_err = |dir: &Path, source| NotifyError::Io { path: dir.to_path_buf(), source };
        if new_segment {
            self.start_segment(seq).map_err(|e| io_err(&self.dir, e))?;
        }
        let (Some(file), Some(segment)) = (self.active.as_mut(), self.segments.last_mut()) else {
            return Err(io_err(&self.dir, io::Error::other("no segment to append to")));
        };
        if let Err(e) = file.write_all(&record).and_then(|()| file.sync_data()) {
            // Cut the partial record so the segment stays whole records; should that fail too,
            // stop appending to it (the next open cuts the torn tail).
            if file.set_len(segment.bytes).is_err() {
                self.active = None;
            }
            return Err(io_err(&segment.path, e));
        }
        segment.bytes += record.len() as u64;
        segment.last_seq = Some(seq);
        self.bytes += record.len() as u64;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Starts a new segment whose first record will be `first_seq`, durably (the file and its
    /// directory entry).
    fn start_segment(&mut self, first_seq: u64) -> io::Result<()> {
        self.active = None;
        let path = self.dir.join(format!("{SEGMENT_PREFIX}{first_seq:020}{SEGMENT_SUFFIX}"));
        // A segment of this name can only be one whose first append failed: it holds no
        // acknowledged record.
        if let Some(pos) = self.segments.iter().position(|s| s.path == path) {
            let stale = self.segments.remove(pos);
            self.bytes -= stale.bytes;
        }
        let mut file = OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
        file.write_all(MAGIC)?;
        file.sync_all()?;
        sync_dir(&self.dir)?;
        let file = OpenOptions::new().append(true).open(&path)?;
        self.segments.push(Segment { path, last_seq: None, bytes: MAGIC.len() as u64 });
        self.bytes += MAGIC.len() as u64;
        self.active = Some(file);
        Ok(())
    }

    /// Deletes the segments whose records every webhook has passed (all up to `passed`);
    /// returns what could not be deleted.
    pub fn compact(&mut self, passed: u64) -> Vec<String> {
        let mut failures = Vec::new();
        let active = self.active.is_some().then(|| self.segments.last().map(|s| s.path.clone())).flatten();
        let mut kept = Vec::with_capacity(self.segments.len());
        for segment in std::mem::take(&mut self.segments) {
            if segment.last_seq.is_none_or(|last| last > passed) {
                kept.push(segment);
                continue;
            }
            match fs::remove_file(&segment.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    failures.push(format!("cannot delete {}: {e}", segment.path.display()));
                    kept.push(segment);
                    continue;
                }
            }
            if active.as_ref() == Some(&segment.path) {
                self.active = None;
            }
            self.bytes -= segment.bytes;
        }
        self.segments = kept;
        failures
    }
}

/// Reads one segment, cutting a damaged tail; `last_seq` is the sequence number before its
/// first record, and is moved past its last.
fn scan_segment(path: &Path, last_seq: &mut u64, recovered: &mut Recovered) -> io::Result<Scan> {
    let data = fs::read(path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        // A file cut inside its magic was being created when the process stopped: it holds
        // nothing. Anything else is not a segment of ours; it is set aside, not deleted.
        if !MAGIC.starts_with(&data[..data.len().min(MAGIC.len())]) {
            let aside = path.with_extension("damaged");
            fs::rename(path, &aside)?;
            recovered.damaged_bytes += data.len() as u64;
            recovered.damage.push(format!(
                "{name}: not an outbox segment (no SLOGNTF1 header); {} bytes set aside as {}",
                data.len(),
                aside.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            ));
        }
        return Ok(Scan { records: Vec::new(), valid_len: 0 });
    }
    let mut records = Vec::new();
    let mut pos = MAGIC.len();
    let mut damage = None;
    while pos < data.len() {
        let rest = &data[pos..];
        if rest.len() < HEADER + 8 {
            damage = Some(format!("a record header cut short at offset {pos}"));
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if !(8..=MAX_RECORD_BYTES + 8).contains(&len) {
            damage = Some(format!("a record of impossible length {len} at offset {pos}"));
            break;
        }
        if rest.len() < HEADER + len {
            damage = Some(format!("a record of {len} bytes cut short at offset {pos}"));
            break;
        }
        let body = &rest[HEADER..HEADER + len];
        if record_crc(&rest[..4], body) != crc {
            damage = Some(format!("a record failing its checksum at offset {pos}"));
            break;
        }
        pos += HEADER + len;
        let seq = u64::from_le_bytes(body[..8].try_into().unwrap_or_default());
        if seq <= *last_seq {
            recovered.damaged_bytes += (HEADER + len) as u64;
            recovered.damage.push(format!(
                "{name}: record at offset {} has sequence number {seq}, not after {}; skipped",
                pos - HEADER - len,
                *last_seq
            ));
            continue;
        }
        match serde_json::from_slice::<Notification>(&body[8..]) {
            Ok(notification) => {
                *last_seq = seq;
                records.push((seq, notification));
            }
            Err(e) => {
                *last_seq = seq;
                recovered.damaged_bytes += (HEADER + len) as u64;
                recovered.damage.push(format!("{name}: notification {seq} does not parse ({e}); skipped"));
            }
        }
    }
    if let Some(what) = damage {
        let cut = data.len() - pos;
        recovered.damaged_bytes += cut as u64;
        recovered.damage.push(format!(
            "{name}: {what}; the last {cut} bytes cut (a crash while appending leaves such a tail; \
             any notification in them was never acknowledged, or is lost)"
        ));
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(pos as u64)?;
        file.sync_all()?;
    }
    Ok(Scan { records, valid_len: pos as u64 })
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The cursor file of the webhook named `name`.
pub fn cursor_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{CURSOR_PREFIX}{name}"))
}

/// The cursors found in `dir`, by webhook name, and the temporary files of interrupted cursor
/// writes (to delete). A cursor that does not parse is reported as an `Err` with its text.
#[allow(clippy::type_complexity)]
pub fn list_cursors(dir: &Path) -> io::Result<(Vec<(String, Result<u64, String>)>, Vec<PathBuf>)> {
    let mut cursors = Vec::new();
    let mut stale = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        if file_name.starts_with(TMP_PREFIX) {
            stale.push(entry.path());
        } else if let Some(name) = file_name.strip_prefix(CURSOR_PREFIX) {
            let text = fs::read_to_string(entry.path())?;
            let value = text.trim().parse::<u64>().map_err(|_| text.trim().to_string());
            cursors.push((name.to_string(), value));
        }
    }
    Ok((cursors, stale))
}

/// Records that the webhook named `name` has passed `seq`: written to a temporary file
/// (named with `tag`, unique to the writer), `fsync`ed, renamed over the cursor, and the
/// directory `fsync`ed.
pub fn write_cursor(dir: &Path, name: &str, seq: u64, tag: u64) -> io::Result<()> {
    let tmp = dir.join(format!("{TMP_PREFIX}{tag:016x}-{CURSOR_PREFIX}{name}"));
    let mut file = File::create(&tmp)?;
    file.write_all(format!("{seq}\n").as_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, cursor_path(dir, name))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::notify::AlertStatus;

    fn note(i: i64) -> Notification {
        Notification {
            status: AlertStatus::Firing,
            labels: BTreeMap::from([("alertname".into(), format!("A{i}")), ("tenant".into(), "t".into())]),
            annotations: BTreeMap::new(),
            starts_at_ms: 1_700_000_000_000 + i,
            ends_at_ms: None,
            generator_url: String::new(),
        }
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn records_survive_reopening_and_sequence_numbers_continue() {
        let dir = tempfile::tempdir().unwrap();
        let (mut outbox, recovered) = Outbox::open(dir.path(), 1 << 20).unwrap();
        assert!(recovered.records.is_empty());
        assert_eq!(outbox.append(&note(1)).unwrap(), 1);
        assert_eq!(outbox.append(&note(2)).unwrap(), 2);
        assert_eq!(outbox.bytes(), fs::metadata(&segment_files(dir.path())[0]).unwrap().len());
        drop(outbox);
        let (mut outbox, recovered) = Outbox::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(recovered.records, vec![(1, note(1)), (2, note(2))]);
        assert!(recovered.damage.is_empty(), "{:?}", recovered.damage);
        // A new segment after opening; numbering goes on.
        assert_eq!(outbox.append(&note(3)).unwrap(), 3);
        assert_eq!(segment_files(dir.path()).len(), 2);
        // A cursor ahead of every record moves the numbering past it.
        outbox.continue_after(10);
        assert_eq!(outbox.append(&note(4)).unwrap(), 11);
    }

    #[test]
    fn a_torn_tail_is_cut_back_to_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut outbox, _) = Outbox::open(dir.path(), 1 << 20).unwrap();
        for i in 1..=3 {
            outbox.append(&note(i)).unwrap();
        }
        drop(outbox);
        let path = segment_files(dir.path())[0].clone();
        let whole = fs::metadata(&path).unwrap().len();
        let good = whole - encode(3, &note(3)).unwrap().len() as u64;
        // Half of the third record: what a crash mid-append leaves.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(good + 7).unwrap();
        drop(file);
        let (_, recovered) = Outbox::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(recovered.records, vec![(1, note(1)), (2, note(2))]);
        assert_eq!(recovered.damaged_bytes, 7);
        assert!(recovered.damage[0].contains("cut short"), "{:?}", recovered.damage);
        assert_eq!(fs::metadata(&path).unwrap().len(), good);
        // Reported once: the file now ends at a whole record.
        let (_, again) = Outbox::open(dir.path(), 1 << 20).unwrap();
        assert!(again.damage.is_empty());
        assert_eq!(again.records.len(), 2);
    }

    #[test]
    fn a_flipped_byte_ends_the_segment_at_the_record_before() {
        let dir = tempfile::tempdir().unwrap();
        let (mut outbox, _) = Outbox::open(dir.path(), 1 << 20).unwrap();
        for i in 1..=3 {
            outbox.append(&note(i)).unwrap();
        }
        drop(outbox);
        let path = segment_files(dir.path())[0].clone();
        let mut data = fs::read(&path).unwrap();
        let second = MAGIC.len() + encode(1, &note(1)).unwrap().len();
        data[second + HEADER + 20] ^= 0x40;
        fs::write(&path, &data).unwrap();
        let (_, recovered) = Outbox::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(recovered.records, vec![(1, note(1))]);
        assert!(recovered.damage[0].contains("checksum"), "{:?}", recovered.damage);
        assert_eq!(fs::metadata(&path).unwrap().len(), second as u64);
    }

    #[test]
    fn a_foreign_file_is_set_aside_and_an_empty_one_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("outbox-00000000000000000001.log"), b"hello, world").unwrap();
        fs::write(dir.path().join("outbox-00000000000000000002.log"), b"SLOG").unwrap();
        let (_, recovered) = Outbox::open(dir.path(), 1 << 20).unwrap();
        assert!(recovered.damage[0].contains("not an outbox segment"), "{:?}", recovered.damage);
        assert_eq!(recovered.damage.len(), 1);
        assert!(dir.path().join("outbox-00000000000000000001.damaged").exists());
        assert!(segment_files(dir.path()).is_empty());
    }

    #[test]
    fn the_bound_refuses_and_compaction_frees_whole_segments() {
        let dir = tempfile::tempdir().unwrap();
        let record = encode(1, &note(1)).unwrap().len() as u64;
        // Room for four records and their segments' headers.
        let max = 4 * (record + MAGIC.len() as u64);
        let (mut outbox, _) = Outbox::open(dir.path(), max).unwrap();
        for i in 1..=4 {
            outbox.append(&note(i)).unwrap();
        }
        let err = outbox.append(&note(5)).unwrap_err();
        assert!(matches!(err, NotifyError::Full { .. }), "{err}");
        assert!(outbox.bytes() <= max);
        assert_eq!(outbox.last_seq(), 4);
        // Segments are an eighth of the bound: here one record each.
        assert_eq!(segment_files(dir.path()).len(), 4);
        assert!(outbox.compact(2).is_empty());
        assert_eq!(segment_files(dir.path()).len(), 2);
        assert_eq!(outbox.append(&note(5)).unwrap(), 5);
        // Passing everything deletes the active segment too; appends start a new one.
        outbox.compact(5);
        assert!(segment_files(dir.path()).is_empty());
        assert_eq!(outbox.bytes(), 0);
        assert_eq!(outbox.append(&note(6)).unwrap(), 6);
        drop(outbox);
        let (_, recovered) = Outbox::open(dir.path(), max).unwrap();
        assert_eq!(recovered.records, vec![(6, note(6))]);
    }

    #[test]
    fn cursors_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        write_cursor(dir.path(), "a.b-c", 7, 1).unwrap();
        write_cursor(dir.path(), "a.b-c", 9, 2).unwrap();
        fs::write(dir.path().join("cursor-x"), "garbage").unwrap();
        fs::write(dir.path().join("tmp-0000000000000003-cursor-a.b-c"), "1").unwrap();
        let (mut cursors, stale) = list_cursors(dir.path()).unwrap();
        cursors.sort();
        assert_eq!(cursors, vec![("a.b-c".to_string(), Ok(9)), ("x".to_string(), Err("garbage".to_string()))]);
        assert_eq!(stale.len(), 1);
    }
}
