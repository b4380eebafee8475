//! Reading the real pprof profiles the benchmarks push (the go-dev corpus under `testdata/`).

use std::io::Read;
use std::path::Path;

use analyzer::pprof::proto;
use anyhow::Context;
use prost::Message;

/// The profile in `path`, gzipped (as Go writes them) or not.
pub fn read_profile(path: &Path) -> anyhow::Result<proto::Profile> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut bytes = Vec::new();
    if raw.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut bytes)?;
    } else {
        bytes = raw;
    }
    Ok(proto::Profile::decode(bytes.as_slice())?)
}
