//! Flame-graph merge benchmark (issue 3): `slo-gate-flame-bench generate` writes N CPU profiles
//! of a real Go program (each a copy of one of the given gzipped pprof files — the go-dev
//! corpus' 10 s CPU profiles of its JSON service — with every sample's count redrawn between 50%
//! and 150% and its time moved, so no two files are equal and a merge must add them all), and
//! `slo-gate-flame-bench decode DIR` measures single-threaded decoding speed (MB of uncompressed
//! pprof per second) and the decode + fold + merge into one flame graph that `slo-gate flame
//! render --folded` does. `bench/run-flame-bench.sh` runs both and times `go tool pprof -proto`
//! merging the same files.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use analyzer::flame;
use analyzer::pprof::{self, proto};
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use prost::Message;

// The allocator the `slo-gate` binary links, so this times what `slo-gate flame` does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Flame-graph merge benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write COUNT profiles into OUT, drawn from the given real profiles.
    Generate {
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
        /// Real gzipped pprof CPU profiles to draw from.
        #[arg(required = true)]
        from: Vec<PathBuf>,
    },
    /// Decode and merge every file of DIR, timing each phase.
    Decode {
        dir: PathBuf,
        /// Decoding passes over all files; the fastest is reported.
        #[arg(long, default_value_t = 5)]
        passes: usize,
    },
    /// Merge FILES into one flame graph's folded stacks, as `slo-gate flame render --folded`
    /// does (read, gunzip, decode, fold, merge, write), for timing as a whole process.
    Merge {
        #[arg(short, long)]
        output: PathBuf,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Generate { count, out, from } => generate(count, &out, &from),
        Command::Decode { dir, passes } => decode(&dir, passes.max(1)),
        Command::Merge { output, files } => merge(&output, &files),
    }
}

fn merge(output: &Path, files: &[PathBuf]) -> anyhow::Result<()> {
    // What `slo-gate flame render --folded` does: read, gunzip, decode and fold on every core
    // (`flame::merge_encoded`), then write the folded stacks.
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let merger =
        flame::merge_encoded(files.len(), Some("cpu"), threads, |i| std::fs::read(&files[i])).context("merge")?;
    let merged = merger.finish().context("merge")?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(output)?);
    merged.write_folded(&mut out)?;
    out.flush()?;
    Ok(())
}

fn gunzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

fn generate(count: usize, out: &Path, from: &[PathBuf]) -> anyhow::Result<()> {
    let sources: Vec<proto::Profile> = from
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            proto::Profile::decode(gunzip(&bytes)?.as_slice()).with_context(|| format!("cannot decode {}", p.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    std::fs::create_dir_all(out)?;
    // A fixed-seed xorshift: the same files on every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..count {
        let mut p = sources[i % sources.len()].clone();
        for sample in &mut p.sample {
            let factor = 0.5 + (next() % 1001) as f64 / 1000.0;
            // Values are (samples/count, cpu/nanoseconds): redraw the count, keep ns = count × period.
            let count = ((sample.value.first().copied().unwrap_or(0) as f64) * factor).round().max(1.0) as i64;
            if let [c, ns, ..] = sample.value.as_mut_slice() {
                *ns = count * p.period.max(1);
                *c = count;
            }
        }
        p.time_nanos += i as i64 * 10_000_000_000;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&p.encode_to_vec())?;
        std::fs::write(out.join(format!("cpu-{i:04}.pb.gz")), gz.finish()?)?;
    }
    println!("wrote {count} profiles to {}", out.display());
    Ok(())
}

fn decode(dir: &Path, passes: usize) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.sort();
    if files.is_empty() {
        bail!("{} has no files", dir.display());
    }
    let compressed: Vec<Vec<u8>> = files.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    let raw: Vec<Vec<u8>> = compressed.iter().map(|b| gunzip(b)).collect::<anyhow::Result<_>>()?;
    let raw_bytes: usize = raw.iter().map(Vec::len).sum();

    // Decoding alone, from uncompressed bytes (what "MB/s of uncompressed pprof" measures): the
    // best of several passes over all files, so one pass disturbed by another process on the
    // machine does not set the number.
    let mut samples = 0usize;
    let mut decode_s = f64::INFINITY;
    // The protobuf layer alone (prost into the wire types), for how much of decoding it is.
    let mut wire_s = f64::INFINITY;
    for _ in 0..passes {
        let t = Instant::now();
        samples = 0;
        let mut decoder = pprof::Decoder::default();
        for bytes in &raw {
            samples += decoder.decode(bytes).context("decode")?.samples.len();
        }
        decode_s = decode_s.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for bytes in &raw {
            std::hint::black_box(proto::Profile::decode(bytes.as_slice()).context("decode")?);
        }
        wire_s = wire_s.min(t.elapsed().as_secs_f64());
    }

    // What `flame render --folded` does after reading the files (gunzip, decode, fold, merge),
    // on one thread.
    let t = Instant::now();
    let merger = flame::merge_encoded(compressed.len(), Some("cpu"), 1, |i| {
        Ok::<_, std::convert::Infallible>(compressed[i].clone())
    })
    .context("merge")?;
    let merged = merger.finish().context("merge")?;
    let mut folded = Vec::new();
    merged.write_folded(&mut folded)?;
    let merge_s = t.elapsed().as_secs_f64();

    println!(
        "files {} | uncompressed {:.1} MB, {samples} samples | decode {:.3} s = {:.0} MB/s on one core (protobuf layer alone {:.0} MB/s) | gunzip+decode+fold+merge on one core {:.3} s, {} folded stacks",
        files.len(),
        raw_bytes as f64 / 1e6,
        decode_s,
        raw_bytes as f64 / 1e6 / decode_s,
        raw_bytes as f64 / 1e6 / wire_s,
        merge_s,
        merged.stacks().len()
    );
    Ok(())
}
