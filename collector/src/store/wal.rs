//! The write-ahead log: numbered segment files of checksummed records.
//!
//! ```text
//! segment := "SLOGWAL2" record*
//! record  := sync:u32le len:u32le body_crc:u32le header_crc:u32le body[len]
//! body    := code:u8 tenant_len:u8 tenant[tenant_len] payload
//! ```
//!
//! `code` names the signal and how its payload is encoded ([`Format`]): the signal's code
//! (`Signal::wal_code`) for an OTLP protobuf request, [`REMOTE_WRITE_CODE`] for metrics kept as
//! the Prometheus remote-write body they arrived as (snappy-compressed `WriteRequest`, a tenth of
//! their OTLP size).
//!
//! `sync` is a fixed marker and `header_crc` covers the twelve bytes before it, so a record's
//! length is trusted only when its header is intact. Replay therefore loses only what is
//! damaged: a record whose body fails its checksum is skipped by its (verified) length, and
//! after a damaged header the reader scans forward for the next intact header and goes on from
//! there, counting the bytes it skipped. Only a damaged tail (a record that runs past the end
//! of the file, as a crash in the middle of a write leaves it) ends the segment; the file is
//! then cut back to its last good record so the damage is reported once.
//!
//! A record is written whole before its request is acknowledged (and `fsync`ed first, with the
//! `fsync` and `group` durabilities). Segments are deleted only after the Parquet parts that
//! hold their data are durable and the checkpoint names them (see `store::flush`).
//!
//! Segments of the first format (`SLOGWAL1`: `len:u32le crc32:u32le body`, no header checksum
//! and no marker) are still replayed, stopping at their first damaged record as that format
//! requires.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::signal::Signal;
use crate::tenant::Tenant;

const MAGIC: &[u8; 8] = b"SLOGWAL2";
const MAGIC_V1: &[u8; 8] = b"SLOGWAL1";
/// The marker every record starts with ("SGR" and a version byte, little-endian).
const SYNC: u32 = u32::from_le_bytes(*b"SGR\x02");
const RECORD_HEADER: usize = 16;
const RECORD_HEADER_V1: usize = 8;
const CHECKPOINT: &str = "checkpoint";

/// The code of a record holding metrics as a remote-write body (never reuse a value).
pub const REMOTE_WRITE_CODE: u8 = 0x12;

/// How a record's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The OTLP `Export*ServiceRequest` of the record's signal, protobuf.
    Otlp,
    /// A Prometheus remote-write 1.0 `WriteRequest`, snappy-compressed (metrics only).
    RemoteWrite,
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub tenant: Tenant,
    pub signal: Signal,
    pub format: Format,
    pub payload: Bytes,
}

/// Appends the framed record to `buf`.
pub fn encode_record(buf: &mut Vec<u8>, tenant: &Tenant, signal: Signal, format: Format, payload: &[u8]) {
    let tenant = tenant.as_str().as_bytes();
    // Tenant ids are at most 150 bytes (tenant.rs), so the length fits a byte.
    let body_len = 2 + tenant.len() + payload.len();
    let start = buf.len();
    buf.extend_from_slice(&SYNC.to_le_bytes());
    buf.extend_from_slice(&(body_len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 8]);
    buf.push(match format {
        Format::Otlp => signal.wal_code(),
        Format::RemoteWrite => REMOTE_WRITE_CODE,
    });
    buf.push(tenant.len() as u8);
    buf.extend_from_slice(tenant);
    buf.extend_from_slice(payload);
    let body_crc = crc32fast::hash(&buf[start + RECORD_HEADER..]);
    buf[start + 8..start + 12].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&buf[start..start + 12]);
    buf[start + 12..start + 16].copy_from_slice(&header_crc.to_le_bytes());
}

/// What replaying one segment found.
#[derive(Debug, Default)]
pub struct SegmentScan {
    pub records: Vec<Record>,
    /// Byte offset after the last good record.
    pub valid_len: u64,
    /// What was damaged, if anything (the first few places, then a count).
    pub damage: Option<String>,
    /// Records whose header was intact but whose body was not; each was skipped.
    pub skipped_records: u64,
    /// Bytes skipped while looking for the next intact header after a damaged one.
    pub skipped_bytes: u64,
    /// Whether the segment ends in a torn record (a crash while writing it).
    pub torn_tail: bool,
}

impl SegmentScan {
    fn note(&mut self, what: String) {
        match &mut self.damage {
            None => self.damage = Some(what),
            Some(text) if text.len() < 400 => {
                text.push_str("; ");
                text.push_str(&what);
            }
            Some(_) => {}
        }
    }
}

/// A record header at the start of `rest`, when it is intact: the body length.
fn header_at(rest: &[u8]) -> Option<usize> {
    let header = rest.get(..RECORD_HEADER)?;
    let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    (word(0) == SYNC && crc32fast::hash(&header[..12]) == word(12)).then(|| word(4) as usize)
}

/// Parses a segment's bytes, keeping every intact record (see the module documentation).
pub fn scan_segment(data: &[u8]) -> SegmentScan {
    let mut records = Vec::new();
    let mut scan = scan_segment_each(data, |record| records.push(record));
    scan.records = records;
    scan
}

/// [`scan_segment`] handing each intact record to `each` as it is read, in log order, instead
/// of collecting them (`records` stays empty): the start-up replay decodes a record into rows
/// and drops its payload before reading the next, so a segment's records are never all held
/// at once beside their rows.
pub fn scan_segment_each(data: &[u8], mut each: impl FnMut(Record)) -> SegmentScan {
    if data.len() >= MAGIC.len() && &data[..MAGIC.len()] == MAGIC_V1 {
        return scan_segment_v1(data, each);
    }
    let mut scan = SegmentScan::default();
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        scan.damage = Some("segment header missing or not a slo-gate WAL segment".into());
        return scan;
    }
    let mut at = MAGIC.len();
    scan.valid_len = at as u64;
    while at < data.len() {
        let rest = &data[at..];
        let Some(len) = header_at(rest) else {
            if rest.len() < RECORD_HEADER && rest.starts_with(&SYNC.to_le_bytes()[..rest.len().min(4)]) {
                scan.torn_tail = true;
                scan.note(format!("torn record header at byte {at}"));
                break;
            }
            // Damaged header: look for the next intact one.
            let next = (at + 1..data.len()).find(|&i| header_at(&data[i..]).is_some());
            let resume = next.unwrap_or(data.len());
            scan.skipped_bytes += (resume - at) as u64;
            scan.note(format!("damaged record header at byte {at}; {} bytes skipped", resume - at));
            at = resume;
            continue;
        };
        if rest.len() < RECORD_HEADER + len {
            scan.torn_tail = true;
            scan.note(format!(
                "torn record at byte {at}: {len} bytes announced, {} present",
                rest.len() - RECORD_HEADER
            ));
            break;
        }
        let body = &rest[RECORD_HEADER..RECORD_HEADER + len];
        let body_crc = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
        let decoded =
            if crc32fast::hash(body) != body_crc { Err("checksum mismatch".to_string()) } else { decode_body(body) };
        match decoded {
            Ok(record) => {
                each(record);
                scan.valid_len = (at + RECORD_HEADER + len) as u64;
            }
            Err(why) => {
                scan.skipped_records += 1;
                scan.note(format!("record at byte {at} skipped: {why}"));
            }
        }
        at += RECORD_HEADER + len;
    }
    scan
}

/// Segments of the first format, whose records cannot be resynchronised: reading stops at the
/// first damaged record.
fn scan_segment_v1(data: &[u8], mut each: impl FnMut(Record)) -> SegmentScan {
    let mut scan = SegmentScan::default();
    let mut at = MAGIC_V1.len();
    scan.valid_len = at as u64;
    while at < data.len() {
        let rest = &data[at..];
        if rest.len() < RECORD_HEADER_V1 {
            scan.torn_tail = true;
            scan.damage = Some(format!("torn record header at byte {at}"));
            break;
        }
        let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if rest.len() < RECORD_HEADER_V1 + len {
            scan.torn_tail = true;
            scan.damage = Some(format!(
                "torn record at byte {at}: {len} bytes announced, {} present",
                rest.len() - RECORD_HEADER_V1
            ));
            break;
        }
        let body = &rest[RECORD_HEADER_V1..RECORD_HEADER_V1 + len];
        if crc32fast::hash(body) != crc {
            scan.torn_tail = true;
            scan.damage = Some(format!("checksum mismatch in record at byte {at}"));
            break;
        }
        match decode_body(body) {
            Ok(record) => each(record),
            Err(why) => {
                scan.torn_tail = true;
                scan.damage = Some(format!("record at byte {at}: {why}"));
                break;
            }
        }
        at += RECORD_HEADER_V1 + len;
        scan.valid_len = at as u64;
    }
    scan
}

fn decode_body(body: &[u8]) -> Result<Record, String> {
    if body.len() < 2 {
        return Err("body shorter than its header".into());
    }
    let (signal, format) = match body[0] {
        REMOTE_WRITE_CODE => (Signal::Metrics, Format::RemoteWrite),
        code => (Signal::from_wal_code(code).ok_or_else(|| format!("unknown signal code {code}"))?, Format::Otlp),
    };
    let tenant_len = body[1] as usize;
    let tenant_bytes = body.get(2..2 + tenant_len).ok_or("tenant runs past the record")?;
    let tenant = std::str::from_utf8(tenant_bytes)
        .map_err(|_| "tenant is not UTF-8".to_string())
        .and_then(|t| Tenant::parse(t).map_err(|e| e.to_string()))?;
    Ok(Record { tenant, signal, format, payload: Bytes::copy_from_slice(&body[2 + tenant_len..]) })
}

/// The log directory: segment naming, the checkpoint, and the segment being appended to.
#[derive(Debug)]
pub struct WalDir {
    dir: PathBuf,
}

impl WalDir {
    pub fn open(dir: PathBuf) -> io::Result<WalDir> {
        fs::create_dir_all(&dir)?;
        Ok(WalDir { dir })
    }

    pub fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.wal"))
    }

    /// Sequence numbers of the segments present, ascending.
    pub fn segments(&self) -> io::Result<Vec<u64>> {
        let mut seqs = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name.strip_suffix(".wal").and_then(|s| s.parse::<u64>().ok()) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// The highest segment whose data is durable in parts (0 when none is).
    pub fn checkpoint(&self) -> io::Result<u64> {
        match fs::read_to_string(self.dir.join(CHECKPOINT)) {
            Ok(text) => text.trim().parse().map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, format!("WAL checkpoint file holds {text:?}, not a number"))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Records durably that segments up to `seq` are in parts (write, fsync, rename, fsync dir).
    pub fn set_checkpoint(&self, seq: u64) -> io::Result<()> {
        let tmp = self.dir.join("checkpoint.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(seq.to_string().as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join(CHECKPOINT))?;
        sync_dir(&self.dir)
    }

    /// Deletes the segments numbered up to `seq`.
    pub fn remove_through(&self, seq: u64) -> io::Result<()> {
        for s in self.segments()? {
            if s <= seq {
                fs::remove_file(self.segment_path(s))?;
            }
        }
        sync_dir(&self.dir)
    }

    /// Creates segment `seq` with its header, durably.
    pub fn create_segment(&self, seq: u64) -> io::Result<Segment> {
        let path = self.segment_path(seq);
        let mut file = OpenOptions::new().create_new(true).write(true).open(&path)?;
        file.write_all(MAGIC)?;
        file.sync_all()?;
        sync_dir(&self.dir)?;
        Ok(Segment { seq, file, len: MAGIC.len() as u64 })
    }

    /// Opens existing segment `seq` to append to it after its last byte.
    pub fn reopen_segment(&self, seq: u64) -> io::Result<Segment> {
        let file = OpenOptions::new().append(true).open(self.segment_path(seq))?;
        let len = file.metadata()?.len();
        Ok(Segment { seq, file, len })
    }

    /// Reads segment `seq` and, when its tail is torn, cuts the file back to its last good
    /// record so that the damage is reported once. Damage inside the segment stays until the
    /// segment is flushed and deleted (the store flushes at once after a damaged replay).
    pub fn replay_segment(&self, seq: u64) -> io::Result<SegmentScan> {
        let mut records = Vec::new();
        let mut scan = self.replay_segment_each(seq, |record| records.push(record))?;
        scan.records = records;
        Ok(scan)
    }

    /// [`WalDir::replay_segment`] handing each intact record to `each` as it is read
    /// ([`scan_segment_each`]). The segment's bytes are read whole: a segment holds what the
    /// log writer appended between two cuts, and the flusher asks for a cut as soon as the
    /// head reaches `max_head_bytes`, so a segment is about one head's worth of records (up
    /// to twice that while the flusher is behind, when writes are refused).
    pub fn replay_segment_each(&self, seq: u64, each: impl FnMut(Record)) -> io::Result<SegmentScan> {
        let path = self.segment_path(seq);
        let data = fs::read(&path)?;
        let scan = scan_segment_each(&data, each);
        if scan.torn_tail && (scan.valid_len as usize) < data.len() && scan.valid_len > 0 {
            OpenOptions::new().write(true).open(&path)?.set_len(scan.valid_len)?;
        }
        Ok(scan)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The segment being appended to.
#[derive(Debug)]
pub struct Segment {
    pub seq: u64,
    file: File,
    len: u64,
}

impl Segment {
    /// Writes a batch of framed records. On failure the segment is cut back to where it was,
    /// so a half-written batch never sits in front of later records.
    pub fn append(&mut self, batch: &[u8]) -> io::Result<()> {
        match self.file.write_all(batch) {
            Ok(()) => {
                self.len += batch.len() as u64;
                Ok(())
            }
            Err(err) => {
                if let Err(trunc) = self.file.set_len(self.len) {
                    tracing::error!(%trunc, seq = self.seq, "cannot cut WAL segment back after a failed write");
                }
                use std::io::Seek;
                let _ = self.file.seek(io::SeekFrom::Start(self.len));
                Err(err)
            }
        }
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len <= MAGIC.len() as u64
    }
}

/// Makes a directory's entries (new, renamed or removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_says_how_its_payload_is_encoded() {
        let tenant = Tenant::parse("t").unwrap();
        let mut data = MAGIC.to_vec();
        encode_record(&mut data, &tenant, Signal::Metrics, Format::RemoteWrite, b"snappy body");
        encode_record(&mut data, &tenant, Signal::Metrics, Format::Otlp, b"otlp");
        let scan = scan_segment(&data);
        let got: Vec<(Signal, Format, &[u8])> =
            scan.records.iter().map(|r| (r.signal, r.format, &r.payload[..])).collect();
        assert_eq!(
            got,
            vec![
                (Signal::Metrics, Format::RemoteWrite, &b"snappy body"[..]),
                (Signal::Metrics, Format::Otlp, &b"otlp"[..])
            ]
        );
    }

    fn segment_with(records: &[(&str, Signal, &[u8])]) -> Vec<u8> {
        let mut data = MAGIC.to_vec();
        for (tenant, signal, payload) in records {
            encode_record(&mut data, &Tenant::parse(tenant).unwrap(), *signal, Format::Otlp, payload);
        }
        data
    }

    #[test]
    fn round_trip() {
        let data = segment_with(&[("a", Signal::Traces, b"one"), ("b", Signal::Logs, b"")]);
        let scan = scan_segment(&data);
        assert_eq!(scan.damage, None);
        assert_eq!(scan.valid_len as usize, data.len());
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.records[0].payload.as_ref(), b"one");
        assert_eq!(scan.records[1].tenant.as_str(), "b");
        assert_eq!(scan.records[1].signal, Signal::Logs);
    }

    #[test]
    fn torn_tail_keeps_the_records_before_it() {
        let whole = segment_with(&[("a", Signal::Traces, b"first"), ("a", Signal::Traces, b"second")]);
        let first_end = scan_segment(&segment_with(&[("a", Signal::Traces, b"first")])).valid_len;
        // Every cut inside the second record loses exactly that record.
        for cut in first_end as usize + 1..whole.len() {
            let scan = scan_segment(&whole[..cut]);
            assert_eq!(scan.records.len(), 1, "cut at {cut}");
            assert_eq!(scan.valid_len, first_end);
            assert!(scan.damage.unwrap().contains("torn"));
        }
    }

    #[test]
    fn flipped_bit_is_caught_by_the_checksum() {
        let mut data = segment_with(&[("a", Signal::Metrics, b"payload")]);
        let last = data.len() - 1;
        data[last] ^= 1;
        let scan = scan_segment(&data);
        assert!(scan.records.is_empty());
        assert!(scan.damage.unwrap().contains("checksum"));
    }

    #[test]
    fn garbage_is_not_a_segment() {
        let scan = scan_segment(b"not a wal");
        assert!(scan.records.is_empty());
        assert_eq!(scan.valid_len, 0);
        assert!(scan.damage.is_some());
    }
}

#[cfg(test)]
mod damage_tests {
    use super::*;

    fn hundred_records() -> (Vec<u8>, Vec<usize>) {
        let mut data = MAGIC.to_vec();
        let mut starts = Vec::new();
        for i in 0..100u32 {
            starts.push(data.len());
            let payload = format!("payload number {i} with some length to it").into_bytes();
            encode_record(&mut data, &Tenant::parse("t").unwrap(), Signal::Traces, Format::Otlp, &payload);
        }
        (data, starts)
    }

    // issue 11 #7: one byte flipped in record 30 of 100 dropped records 30 to 100.
    #[test]
    fn a_damaged_record_in_the_middle_costs_that_record_only() {
        let (mut data, starts) = hundred_records();
        // A byte of record 30's payload (0-based 29).
        data[starts[29] + 20] ^= 0x40;
        let scan = scan_segment(&data);
        assert_eq!(scan.records.len(), 99, "{:?}", scan.damage);
        assert_eq!(scan.skipped_records, 1);
        assert!(!scan.records.iter().any(|r| r.payload.as_ref() == b"payload number 29 with some length to it"));
        assert_eq!(scan.records[98].payload.as_ref(), b"payload number 99 with some length to it");
    }

    #[test]
    fn a_damaged_header_resynchronises_at_the_next_record() {
        let (mut data, starts) = hundred_records();
        // The length field of record 30: without a header checksum it would send the reader
        // anywhere.
        data[starts[29] + 5] ^= 0x7f;
        let scan = scan_segment(&data);
        assert_eq!(scan.records.len(), 99, "{:?}", scan.damage);
        assert_eq!(scan.skipped_bytes as usize, starts[30] - starts[29]);
        assert!(!scan.torn_tail);
    }

    #[test]
    fn garbage_in_the_middle_costs_the_records_it_overwrote() {
        let (mut data, starts) = hundred_records();
        // 1,500 bytes of garbage from the middle of record 40's header on.
        let (from, len) = (starts[39] + 7, 1500);
        for (i, b) in data[from..from + len].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(7);
        }
        let scan = scan_segment(&data);
        let ends: Vec<usize> = starts.iter().skip(1).copied().chain([data.len()]).collect();
        let lost = starts.iter().zip(&ends).filter(|&(&s, &e)| s < from + len && e > from).count();
        assert!(lost > 20);
        assert_eq!(scan.records.len(), 100 - lost, "{:?}", scan.damage);
        assert_eq!(scan.records.last().unwrap().payload.as_ref(), b"payload number 99 with some length to it");
    }

    #[test]
    fn a_torn_tail_after_damage_is_still_a_torn_tail() {
        let (mut data, starts) = hundred_records();
        data[starts[10] + 20] ^= 1;
        data.truncate(data.len() - 3);
        let scan = scan_segment(&data);
        assert_eq!(scan.records.len(), 98);
        assert!(scan.torn_tail);
        assert_eq!(scan.valid_len as usize, starts[99]);
    }

    #[test]
    fn first_format_segments_are_still_read() {
        let mut data = MAGIC_V1.to_vec();
        for payload in [&b"one"[..], b"two"] {
            let body: Vec<u8> = [&[Signal::Logs.wal_code(), 1, b'a'][..], payload].concat();
            data.extend_from_slice(&(body.len() as u32).to_le_bytes());
            data.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            data.extend_from_slice(&body);
        }
        let scan = scan_segment(&data);
        assert_eq!(scan.damage, None);
        assert_eq!(scan.records.len(), 2);
        assert_eq!(scan.records[1].payload.as_ref(), b"two");
        assert_eq!(scan.records[1].signal, Signal::Logs);
    }
}
