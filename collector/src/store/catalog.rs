//! The part catalog: which parts exist, what each holds, and the size, CRC-32 and SHA-256
//! each had when it was written, kept in `<data-dir>/catalog.log`.
//!
//! ```text
//! catalog.log := line*
//! line        := crc32:8 hex digits " " json "\n"
//! json        := {"op":"add",...} | {"op":"remove","name":..}
//!              | {"op":"merging","output":..} | {"op":"replace","inputs":[..],"output":{...}}
//! ```
//!
//! Lines are appended (and `fsync`ed) by the flusher after its parts are durable and before
//! the WAL checkpoint moves, and by retention and quarantine when a part goes. A line whose
//! checksum fails is skipped; its part then turns up on disk without an entry and is adopted
//! (read, checked that it decodes, and entered again), as are parts written before the
//! catalog existed. Start-up reads this one file instead of opening every part, checks each
//! entry against the file on disk (present, same size), and rewrites the catalog compacted.
//!
//! Damage costs the damaged file only: a part that is missing, has the wrong size or does not
//! decode is reported once (logged with its name relative to the data directory, counted in
//! `/metrics`) and set aside under `<data-dir>/quarantine/`, and the store starts and answers
//! everything else. The full checksum is verified whenever a part is read and by a pass over
//! every part after start-up (`Store::open`).
//!
//! Entries written before SHA-256s were recorded have none (`sha256` is absent from their
//! line): their parts are checked against the CRC-32 until the start-up pass, having found
//! the CRC-32 right, appends a line with the SHA-256 of the file as it then is.
//!
//! An encrypted part found without an entry whose key the key file does not hold cannot be
//! described (its rows cannot be read), and is not damaged either: it is left where it is,
//! reported, and adopted at a start that has its key.
//!
//! Compaction (`store::compact`) writes two lines per merge: `merging` names the output file
//! before it is written, and `replace` says in one line, atomically, that its inputs are gone
//! and the output holds their rows. At start-up, a `merging` output without its `replace` line
//! is an unfinished merge and its file is deleted (the inputs still hold the rows), and the
//! files of inputs that a `replace` line names are deleted if they are still there. Both are
//! deleted before the catalog is rewritten compacted (with `add` lines only), so a part without
//! an entry is never a merge's output or input, and adopting it can never count rows twice.
//! A binary older than compaction skips both kinds of line as damaged: it adopts the output
//! and drops the missing inputs, which is right once the inputs are deleted (a start of this
//! version deletes them and rewrites the catalog without those lines).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::signal::Signal;
use crate::tenant::Tenant;

use super::crypt::KeyRing;
use super::parts::{self, Found, PartMeta, TenantRows};
use super::wal::sync_dir;

const FILE: &str = "catalog.log";
/// Where damaged and unknown files are moved, under the data directory.
pub const QUARANTINE_DIR: &str = "quarantine";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Line {
    Add(Stored),
    Remove {
        name: String,
    },
    /// A merge is about to write `output` (`store::compact`).
    Merging {
        output: String,
    },
    /// `inputs` are replaced by `output`, which holds every row they held.
    Replace {
        inputs: Vec<String>,
        output: Stored,
    },
    /// A series segment of a writer in the bucket (bucket manifests only; `store::series`).
    Series(StoredSegment),
}

/// A bucket manifest's line for a series segment: where it is, whose, what it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredSegment {
    /// `series/<tenant>/<hour>/<writer>-<first>-<last>.sgs`.
    pub name: String,
    pub tenant: Tenant,
    /// The hour directory (`parts::hour_dir`).
    pub hour: String,
    /// The writer's flushes it holds, `first..=last`.
    pub first: u64,
    pub last: u64,
    /// Size and SHA-256 (hex) of the object's bytes (sealed when the writer encrypts).
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    name: String,
    signal: Signal,
    seq: u64,
    size: u64,
    crc32: u32,
    /// Hex; absent in lines written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    tenants: Vec<StoredTenant>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredTenant {
    tenant: Tenant,
    rows: u64,
    min_time: u64,
    max_time: u64,
    services: Vec<(String, Option<String>)>,
    /// Trace keys as little-endian `u64`s, base64.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    trace_keys: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    slices: Vec<parts::ServiceSlice>,
}

impl Stored {
    /// The entry of a part. An error when its trace keys were released from memory
    /// (`store::trace_keys`): an entry written without them would make lookups skip the
    /// part's traces.
    fn of(meta: &PartMeta) -> io::Result<Stored> {
        let tenants = meta
            .tenants
            .iter()
            .map(|t| {
                let keys = t.trace_keys.get().ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("the trace keys of part {} are not in memory; no catalog entry written", meta.name),
                    )
                })?;
                Ok(StoredTenant {
                    tenant: t.tenant.clone(),
                    rows: t.rows,
                    min_time: t.min_time,
                    max_time: t.max_time,
                    services: t.services.iter().cloned().collect(),
                    trace_keys: if keys.is_empty() {
                        String::new()
                    } else {
                        let bytes: Vec<u8> = keys.iter().flat_map(|k| k.to_le_bytes()).collect();
                        base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
                    },
                    slices: t.slices.clone(),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Stored {
            name: meta.name.clone(),
            signal: meta.signal,
            seq: meta.seq,
            size: meta.size,
            crc32: meta.crc32,
            sha256: meta.sha256.map(hex::encode),
            tenants,
        })
    }

    /// The entry as the store uses it; `None` when a field does not parse (the line is then
    /// treated as damaged and its part adopted again).
    fn into_meta(self, data_dir: &Path, keys: Option<&Arc<KeyRing>>) -> Option<PartMeta> {
        let sha256 = match &self.sha256 {
            Some(text) => {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(text, &mut digest).ok()?;
                Some(digest)
            }
            None => None,
        };
        let tenants = self
            .tenants
            .into_iter()
            .map(|t| {
                let bytes = base64::engine::general_purpose::STANDARD_NO_PAD.decode(&t.trace_keys).ok()?;
                let keys: Vec<u64> =
                    bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8"))).collect();
                // Written sorted and distinct; a line that is not (edited by hand) is damaged.
                if !keys.windows(2).all(|w| w[0] < w[1]) {
                    return None;
                }
                let trace_keys = parts::TraceKeys::new(keys);
                Some(TenantRows {
                    tenant: t.tenant,
                    rows: t.rows,
                    min_time: t.min_time,
                    max_time: t.max_time,
                    services: t.services.into_iter().collect(),
                    trace_keys,
                    slices: t.slices,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let path = safe_path(data_dir, &self.name)?;
        Some(PartMeta {
            path,
            name: self.name,
            signal: self.signal,
            seq: self.seq,
            size: self.size,
            crc32: self.crc32,
            sha256,
            keys: keys.cloned(),
            tenants,
            remote: None,
        })
    }
}

/// What a bucket manifest (`store::bucket`) says of the parts of one writer: entries in the
/// catalog's own line format, named as the parts are in the bucket.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub added: Vec<PartMeta>,
    /// Series segments added (named `series/…`, never a part's name).
    pub series: Vec<StoredSegment>,
    pub removed: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredManifest {
    writer: String,
    lines: Vec<Line>,
}

/// The `add` line of a part, as JSON, for a manifest. An error when the part's trace keys are
/// not in memory (as for [`Catalog::add`]).
pub(crate) fn add_line(meta: &PartMeta) -> io::Result<String> {
    serde_json::to_string(&Line::Add(Stored::of(meta)?)).map_err(io::Error::other)
}

/// The `series` line of a segment, as JSON, for a manifest.
pub(crate) fn series_line(segment: &StoredSegment) -> io::Result<String> {
    serde_json::to_string(&Line::Series(segment.clone())).map_err(io::Error::other)
}

/// A manifest as JSON: the `add` lines of the parts added ([`add_line`]), then one `remove`
/// line per part gone.
pub(crate) fn manifest_json(writer: &str, added: &[String], removed: &[String]) -> io::Result<Vec<u8>> {
    let mut lines: Vec<String> = added.to_vec();
    for name in removed {
        lines.push(serde_json::to_string(&Line::Remove { name: name.clone() }).map_err(io::Error::other)?);
    }
    let writer = serde_json::to_string(writer).map_err(io::Error::other)?;
    Ok(format!("{{\"writer\":{writer},\"lines\":[{}]}}", lines.join(",")).into_bytes())
}

/// One line of a manifest as [`manifest_lines`] reads it: an add with its JSON as written, or
/// a removal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ManifestLine {
    Add { name: String, json: String },
    Remove { name: String },
}

/// A manifest's lines, each add kept as its JSON (for [`manifest_json`] again); `None` when it
/// does not parse or holds other lines.
pub(crate) fn manifest_lines(bytes: &[u8]) -> Option<Vec<ManifestLine>> {
    manifest_lines_of(bytes).map(|(_, lines)| lines)
}

/// [`manifest_lines`] with the manifest's writer.
pub(crate) fn manifest_lines_of(bytes: &[u8]) -> Option<(String, Vec<ManifestLine>)> {
    #[derive(Deserialize)]
    struct Raw {
        writer: String,
        lines: Vec<serde_json::Value>,
    }
    let raw: Raw = serde_json::from_slice(bytes).ok()?;
    let lines = raw
        .lines
        .into_iter()
        .map(|line| {
            let name = line.get("name")?.as_str()?.to_string();
            match line.get("op")?.as_str()? {
                "add" | "series" => Some(ManifestLine::Add { name, json: serde_json::to_string(&line).ok()? }),
                "remove" => Some(ManifestLine::Remove { name }),
                _ => None,
            }
        })
        .collect::<Option<Vec<_>>>()?;
    Some((raw.writer, lines))
}

/// A manifest read from the bucket, its parts placed under `cache_dir` (where they are fetched
/// to); `None` when it does not parse or names a part outside `parts/`.
pub(crate) fn manifest_from_json(
    bytes: &[u8],
    cache_dir: &Path,
    keys: Option<&Arc<KeyRing>>,
) -> Option<(String, Manifest)> {
    let stored: StoredManifest = serde_json::from_slice(bytes).ok()?;
    let mut manifest = Manifest { added: Vec::new(), series: Vec::new(), removed: Vec::new() };
    for line in stored.lines {
        match line {
            Line::Add(entry) => manifest.added.push(entry.into_meta(cache_dir, keys)?),
            Line::Series(segment) => {
                let prefix = format!("{}/{}/{}/", super::series::SERIES_DIR, segment.tenant.as_str(), segment.hour);
                let file = segment.name.strip_prefix(&prefix)?;
                safe_name(&segment.name, super::series::SERIES_DIR)?;
                super::parts::hour_start(&segment.hour)?;
                (file.ends_with(".sgs") && !file.contains('/') && segment.first <= segment.last).then_some(())?;
                let mut digest = [0u8; 32];
                hex::decode_to_slice(&segment.sha256, &mut digest).ok()?;
                manifest.series.push(segment);
            }
            Line::Remove { name } => manifest.removed.push(name),
            Line::Merging { .. } | Line::Replace { .. } => return None,
        }
    }
    Some((stored.writer, manifest))
}

/// `data_dir` joined with a relative name read from the catalog, refusing anything that could
/// point outside it.
fn safe_path(data_dir: &Path, name: &str) -> Option<PathBuf> {
    safe_name(name, "parts").map(|()| data_dir.join(name))
}

/// Whether `name` is a plain relative name under directory `top`: no empty, `.` or `..`
/// component, no backslash.
fn safe_name(name: &str, top: &str) -> Option<()> {
    let ok = name.strip_prefix(top).is_some_and(|rest| rest.starts_with('/'))
        && name.split('/').all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\\'));
    ok.then_some(())
}

fn encode_line(line: &Line) -> String {
    let json = serde_json::to_string(line).unwrap_or_default();
    format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()))
}

fn decode_line(text: &str) -> Option<Line> {
    let (crc, json) = text.split_once(' ')?;
    (u32::from_str_radix(crc, 16).ok()? == crc32fast::hash(json.as_bytes())).then_some(())?;
    serde_json::from_str(json).ok()
}

/// Something wrong found in the data directory, reported once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Name relative to the data directory.
    pub name: String,
    pub what: String,
}

/// What loading the catalog found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub parts: Vec<PartMeta>,
    /// Files set aside (damaged parts, unknown files) or entries dropped (missing parts).
    pub damage: Vec<Damage>,
    /// Catalog lines that failed their checksum.
    pub bad_lines: u64,
    /// Parts found on disk without an entry and entered after checking they decode.
    pub adopted: u64,
    /// Encrypted parts found without an entry whose key is not in the key file: left in place,
    /// not entered (see the module documentation).
    pub locked: Vec<Damage>,
    /// Outputs of merges that did not reach their `replace` line, deleted.
    pub unfinished_merges: Vec<String>,
    /// Inputs of finished merges that were still on disk, deleted.
    pub replaced_inputs: Vec<String>,
}

/// The catalog file, open for appending.
#[derive(Debug)]
pub struct Catalog {
    data_dir: PathBuf,
    file: Mutex<File>,
}

impl Catalog {
    /// Reads the catalog, reconciles it with the files under `parts/` (see the module
    /// documentation), deletes parts of unfinished flushes (numbered past `checkpoint`), and
    /// rewrites the catalog compacted.
    /// `keys` opens encrypted parts, to adopt them and for every later read.
    pub fn load(data_dir: &Path, checkpoint: u64, keys: Option<&Arc<KeyRing>>) -> io::Result<(Catalog, Loaded)> {
        let path = data_dir.join(FILE);
        let mut loaded = Loaded::default();
        let mut entries: BTreeMap<String, PartMeta> = BTreeMap::new();
        // Outputs of merges begun and not (yet) finished, and inputs of finished merges.
        let mut merging: BTreeSet<String> = BTreeSet::new();
        let mut replaced: BTreeSet<String> = BTreeSet::new();
        let mut merge_lines = false;
        let mut lines = 0u64;
        match fs::read(&path) {
            Ok(bytes) => {
                for raw in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    lines += 1;
                    match std::str::from_utf8(raw).ok().and_then(decode_line) {
                        Some(Line::Add(stored)) => match stored.into_meta(data_dir, keys) {
                            Some(meta) => {
                                entries.insert(meta.name.clone(), meta);
                            }
                            None => loaded.bad_lines += 1,
                        },
                        Some(Line::Remove { name }) => {
                            entries.remove(&name);
                        }
                        Some(Line::Merging { output }) => {
                            merge_lines = true;
                            merging.insert(output);
                        }
                        Some(Line::Replace { inputs, output }) => {
                            merge_lines = true;
                            match output.into_meta(data_dir, keys) {
                                Some(meta) => {
                                    merging.remove(&meta.name);
                                    replaced.remove(&meta.name);
                                    for input in inputs {
                                        entries.remove(&input);
                                        replaced.insert(input);
                                    }
                                    entries.insert(meta.name.clone(), meta);
                                }
                                // The line's checksum held but its output does not parse:
                                // treated as damaged, as an `add` line would be. The inputs
                                // stay entered and the output is deleted as unfinished.
                                None => loaded.bad_lines += 1,
                            }
                        }
                        // Only bucket manifests hold segment lines: one here was not written by
                        // the catalog.
                        Some(Line::Series(_)) | None => loaded.bad_lines += 1,
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }

        // Merges left half done: their files go before anything is adopted (see the module
        // documentation), durably, since the catalog rewritten below no longer names them.
        let mut touched: BTreeSet<PathBuf> = BTreeSet::new();
        for (name, unfinished) in merging.iter().map(|n| (n, true)).chain(replaced.iter().map(|n| (n, false))) {
            if entries.contains_key(name) {
                continue;
            }
            let Some(file) = safe_path(data_dir, name) else { continue };
            match fs::remove_file(&file) {
                Ok(()) => {
                    if unfinished {
                        tracing::warn!(part = %name, "deleting the output of an unfinished merge; its inputs hold its rows");
                        loaded.unfinished_merges.push(name.clone());
                    } else {
                        tracing::info!(part = %name, "deleting a part that a finished merge replaced");
                        loaded.replaced_inputs.push(name.clone());
                    }
                    touched.extend(file.parent().map(Path::to_path_buf));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        for dir in &touched {
            sync_dir(dir)?;
        }

        for found in parts::list(data_dir)? {
            match found {
                Found::Unknown { name } => {
                    quarantine(data_dir, &name)?;
                    loaded.damage.push(Damage { name, what: "not a part of this store; set aside".into() });
                }
                Found::Part { name, signal, seq, tenant } => {
                    let file = data_dir.join(&name);
                    if seq > checkpoint {
                        // Written by a flush that never reached its checkpoint: its rows are
                        // still in the WAL and are replayed.
                        tracing::warn!(part = %name, seq, checkpoint, "deleting part of an unfinished flush");
                        fs::remove_file(&file)?;
                        entries.remove(&name);
                        continue;
                    }
                    match entries.get(&name).map(|m| m.size) {
                        Some(written) => {
                            let size = fs::metadata(&file)?.len();
                            if size != written {
                                entries.remove(&name);
                                quarantine(data_dir, &name)?;
                                loaded.damage.push(Damage {
                                    name,
                                    what: format!("{size} bytes where {written} were written; set aside"),
                                });
                            }
                        }
                        None => match adopt(data_dir, &name, signal, seq, tenant.as_ref(), keys) {
                            Ok(meta) => {
                                loaded.adopted += 1;
                                entries.insert(name, meta);
                            }
                            Err(Unadopted::Locked(why)) => loaded.locked.push(Damage { name, what: why }),
                            Err(Unadopted::Damaged(why)) => {
                                quarantine(data_dir, &name)?;
                                loaded.damage.push(Damage { name, what: format!("{why}; set aside") });
                            }
                        },
                    }
                }
            }
        }
        // Entries whose file is gone.
        let on_disk: Vec<String> = entries.keys().filter(|n| !data_dir.join(n).exists()).cloned().collect();
        for name in on_disk {
            entries.remove(&name);
            loaded.damage.push(Damage { name, what: "missing; its entry was dropped".into() });
        }
        loaded.parts = entries.into_values().collect();

        // Compact to one `add` line per part when the file says more than that. A failure (a
        // full disk) keeps the old file, which says the same.
        let changed =
            lines != loaded.parts.len() as u64 || loaded.adopted > 0 || !loaded.damage.is_empty() || merge_lines;
        if changed && let Err(err) = rewrite(data_dir, &path, &loaded.parts) {
            tracing::warn!(%err, "cannot rewrite the part catalog compacted; appending to it as it is");
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok((Catalog { data_dir: data_dir.to_path_buf(), file: Mutex::new(file) }, loaded))
    }

    fn append(&self, text: &str) -> io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(text.as_bytes())?;
        file.sync_data()
    }

    /// Records new parts, durably.
    pub fn add(&self, parts: &[PartMeta]) -> io::Result<()> {
        let text = parts.iter().map(|m| Ok(encode_line(&Line::Add(Stored::of(m)?)))).collect::<io::Result<String>>()?;
        self.append(&text)
    }

    /// Records that a part is gone, durably.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        self.append(&encode_line(&Line::Remove { name: name.to_string() }))
    }

    /// Records, durably and before its file is written, that a merge will write `output`: a
    /// start that finds this line without its [`Catalog::replace`] deletes the file.
    pub fn begin_merge(&self, output: &str) -> io::Result<()> {
        self.append(&encode_line(&Line::Merging { output: output.to_string() }))
    }

    /// Records in one line, durably, that `output` (durable already) replaces `inputs`.
    pub fn replace(&self, inputs: &[&str], output: &PartMeta) -> io::Result<()> {
        let inputs = inputs.iter().map(|n| n.to_string()).collect();
        self.append(&encode_line(&Line::Replace { inputs, output: Stored::of(output)? }))
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// Writes the catalog anew with one `add` line per part (temporary file, fsync, rename).
fn rewrite(data_dir: &Path, path: &Path, parts: &[PartMeta]) -> io::Result<()> {
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    let text = parts.iter().map(|m| Ok(encode_line(&Line::Add(Stored::of(m)?)))).collect::<io::Result<String>>()?;
    let result = (|| {
        let mut out = File::create(&tmp)?;
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(data_dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Why a part without an entry was not entered.
enum Unadopted {
    /// It cannot be read or does not decode: set aside.
    Damaged(String),
    /// It is encrypted with a key the key file does not hold: left in place.
    Locked(String),
}

/// Reads a part that has no catalog entry and describes it, if it decodes.
fn adopt(
    data_dir: &Path,
    name: &str,
    signal: Signal,
    seq: u64,
    tenant: Option<&Tenant>,
    keys: Option<&Arc<KeyRing>>,
) -> Result<PartMeta, Unadopted> {
    let path = data_dir.join(name);
    let bytes = fs::read(&path).map_err(|e| Unadopted::Damaged(format!("cannot read: {e}")))?;
    let (size, crc32, sha256) = (bytes.len() as u64, crc32fast::hash(&bytes), parts::sha256(&bytes));
    let described = |e: parts::PartError| match e {
        parts::PartError::Damaged { why, .. } => Unadopted::Damaged(format!("does not decode: {why}")),
        parts::PartError::Key { why, .. } => Unadopted::Locked(format!("cannot be decrypted: {why}; left in place")),
        other => Unadopted::Damaged(other.to_string()),
    };
    let bytes = parts::open(name, keys.map(|k| &**k), bytes).map_err(described)?;
    let rows = parts::decode(name, signal, bytes, None, tenant).map_err(described)?;
    let mut tenants: Vec<TenantRows> = rows.iter().map(|(t, r)| parts::tenant_rows(t, &[r])).collect();
    tenants.retain(|t| t.rows > 0);
    tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    tracing::info!(part = %name, "entered a part that the catalog did not list");
    Ok(PartMeta {
        name: name.to_string(),
        path,
        signal,
        seq,
        size,
        crc32,
        sha256: Some(sha256),
        keys: keys.cloned(),
        tenants,
        remote: None,
    })
}

/// Moves `<data_dir>/<name>` to `<data_dir>/quarantine/<name>` (with a numbered suffix when
/// that exists), so it is out of the store but not destroyed.
pub fn quarantine(data_dir: &Path, name: &str) -> io::Result<()> {
    let from = data_dir.join(name);
    let mut to = data_dir.join(QUARANTINE_DIR).join(name);
    let mut n = 1;
    while to.exists() {
        to = data_dir.join(QUARANTINE_DIR).join(format!("{name}.{n}"));
        n += 1;
    }
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    match fs::rename(&from, &to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_damaged_lines_are_refused() {
        let line = encode_line(&Line::Remove { name: "parts/a/traces/2026-01-01T00/x.parquet".into() });
        assert!(matches!(decode_line(line.trim_end()), Some(Line::Remove { .. })));
        let mut bad = line.trim_end().to_string();
        bad.replace_range(12..13, "Z");
        assert!(decode_line(&bad).is_none());
        assert!(decode_line("garbage").is_none());
    }

    #[test]
    fn part_entries_round_trip_with_their_trace_keys_and_service_slices() {
        let dir = Path::new("/data");
        let name = "parts/@shared/profiles/2026-12-03T08/00000000000000000001.parquet".to_string();
        let tenant = |id: &str, slices: Vec<parts::ServiceSlice>, trace_keys: Vec<u64>| TenantRows {
            tenant: Tenant::parse(id).unwrap(),
            rows: slices.iter().map(|s| s.rows).sum(),
            min_time: 5,
            max_time: 9,
            services: [("api".to_string(), Some("1.0".to_string()))].into(),
            trace_keys: trace_keys.into(),
            slices,
        };
        let slice = |service: Option<&str>, first_row, rows| parts::ServiceSlice {
            service: service.map(str::to_string),
            first_row,
            rows,
        };
        let meta = PartMeta {
            path: dir.join(&name),
            name,
            signal: Signal::Profiles,
            seq: 1,
            size: 1234,
            crc32: 0xdead_beef,
            sha256: Some([7; 32]),
            keys: None,
            tenants: vec![
                tenant("a", vec![slice(None, 0, 3), slice(Some("api"), 3, 40)], vec![]),
                tenant("b", vec![slice(Some("api"), 43, 2)], vec![1, u64::MAX]),
            ],
            remote: None,
        };
        let line = encode_line(&Line::Add(Stored::of(&meta).unwrap()));
        let Some(Line::Add(stored)) = decode_line(line.trim_end()) else { panic!("{line}") };
        assert_eq!(stored.into_meta(dir, None), Some(meta));
        // Entries written before slices read as parts without them.
        let mut json: serde_json::Value = serde_json::from_str(line.trim_end().split_once(' ').unwrap().1).unwrap();
        let tenants = json.pointer_mut("/tenants").and_then(|t| t.as_array_mut()).expect("tenants");
        for t in tenants {
            assert!(t.as_object_mut().unwrap().remove("slices").is_some());
        }
        // ... and before SHA-256s: checked by their CRC-32.
        assert!(json.as_object_mut().unwrap().remove("sha256").is_some());
        let json = json.to_string();
        let old = format!("{:08x} {json}", crc32fast::hash(json.as_bytes()));
        let Some(Line::Add(stored)) = decode_line(&old) else { panic!("{old}") };
        let meta = stored.into_meta(dir, None).unwrap();
        assert!(meta.tenants.iter().all(|t| t.slices.is_empty()));
        assert_eq!((meta.sha256, meta.crc32), (None, 0xdead_beef));
        assert_eq!(meta.tenants[1].trace_keys.get().as_deref(), Some(&[1, u64::MAX][..]));
        // Keys out of order (an edited line) make the line damaged, not a list lookups misread.
        let mut edited = meta.clone();
        edited.tenants[1].trace_keys = parts::TraceKeys::new(vec![1, 5]);
        let line = encode_line(&Line::Add(Stored::of(&edited).unwrap()));
        let mut json: serde_json::Value = serde_json::from_str(line.trim_end().split_once(' ').unwrap().1).unwrap();
        let reversed: Vec<u8> = [5u64, 1].iter().flat_map(|k| k.to_le_bytes()).collect();
        json["tenants"][1]["trace_keys"] = base64::engine::general_purpose::STANDARD_NO_PAD.encode(reversed).into();
        let json = json.to_string();
        let Some(Line::Add(stored)) = decode_line(&format!("{:08x} {json}", crc32fast::hash(json.as_bytes()))) else {
            panic!("{json}")
        };
        assert_eq!(stored.into_meta(dir, None), None);
        // An entry is never written without keys it had: once released, writing it fails.
        meta.tenants[1].trace_keys.release();
        let err = Stored::of(&meta).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("trace keys of part parts/"), "{err}");
    }

    #[test]
    fn names_never_leave_the_data_directory() {
        let dir = Path::new("/data");
        assert!(safe_path(dir, "parts/a/traces/h/1.parquet").is_some());
        for bad in ["../etc/passwd", "parts/../../x", "/abs", "parts//x", "quarantine/x", "parts/a\\..\\b"] {
            assert!(safe_path(dir, bad).is_none(), "{bad}");
        }
    }
}
