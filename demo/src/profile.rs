//! CPU profiles of this process, taken with pprof-rs while the load runs, and pushed to the
//! collector the way Pyroscope's agents push (legacy `POST /ingest`).
//!
//! pprof-rs samples the whole process at [`FREQUENCY`] Hz with `SIGPROF` (an `ITIMER_PROF`
//! timer, i.e. per CPU time used) and unwinds each sample's stack in the signal handler. It
//! unwinds with framehop (its `framehop-unwinder` feature: `.eh_frame` read in Rust, every stack
//! read checked), not with libgcc's `_Unwind_Backtrace`, which crashed the process with a
//! general protection fault inside `libgcc_s` in about one run in seven here. framehop loads its
//! module table lazily on the first sample, inside the signal handler; [`warm_up`] makes that
//! happen on a thread that holds no lock, before the service is busy. Its pprof output already has
//! Go's shape — sample types `samples/count` and `cpu/nanoseconds`, period type
//! `cpu/nanoseconds`, period 10 ms at 100 Hz — so the collector derives the profile type
//! `process_cpu:cpu:nanoseconds:cpu:nanoseconds` the gate reads, and no conversion is needed.
//!
//! A run is cut into several windows of a few seconds (the gate's significance test needs at
//! least three profiles per side). Each window's stacks are taken unresolved, the profiler is
//! stopped, and only then are the addresses symbolized and the profile pushed, so the
//! symbolizer's own (sometimes large, first-time) CPU cost never shows up in a profile.
//! Because the profiler is process-wide, the profiles also hold the load client's and (in
//! `slo-gate demo`) the collector's stacks; both builds share them, so they cancel out in the
//! differential flame graph and `price_items` is what grows.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use flate2::Compression;
use flate2::write::GzEncoder;
use pprof::protos::Message as _;

use crate::{Build, ENVIRONMENT, SERVICE};

/// Sampling frequency in Hz (what Go's CPU profiler uses).
pub const FREQUENCY: i32 = 100;

/// Libraries whose frames are not unwound from the signal handler: unwinding through them can
/// deadlock (pprof-rs's advice), and the vDSO's unwind info is unreliable.
const BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

/// Takes the profiler's first sample on this thread while it spins without allocating, so the
/// unwinder's one-time set-up (which allocates and maps files) runs in a signal handler that
/// interrupted no allocator or lock. Call it while the process is otherwise idle; later calls
/// do nothing.
pub fn warm_up() -> anyhow::Result<()> {
    static WARM: OnceLock<()> = OnceLock::new();
    if WARM.get().is_some() {
        return Ok(());
    }
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(FREQUENCY)
        .blocklist(&BLOCKLIST)
        .build()
        .map_err(|e| anyhow!("starting the CPU profiler: {e}"))?;
    let started = Instant::now();
    let mut x: u64 = 1;
    // Spin until a few samples were taken here (or give up after a second: an idle machine
    // delivers one per 10 ms of CPU).
    while started.elapsed() < Duration::from_secs(1) {
        for _ in 0..100_000 {
            x = std::hint::black_box(x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(7));
        }
        let taken = guard.report().build_unresolved().map(|r| r.data.values().sum::<isize>()).unwrap_or(0);
        if taken >= 3 {
            break;
        }
    }
    drop(guard);
    let _ = WARM.set(());
    Ok(())
}

/// One CPU profile window, ready to push.
#[derive(Debug, Clone)]
pub struct CpuProfile {
    /// When the window started.
    pub from: SystemTime,
    /// When it ended.
    pub until: SystemTime,
    /// The gzipped pprof `Profile` protobuf.
    pub pprof_gz: Vec<u8>,
}

/// A profiler window in progress; [`Window::finish`] ends it.
pub struct Window {
    guard: pprof::ProfilerGuard<'static>,
    from: SystemTime,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window").field("from", &self.from).finish_non_exhaustive()
    }
}

impl Window {
    /// Starts profiling this process. Fails when another profile is being taken in it.
    pub fn start() -> anyhow::Result<Window> {
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(FREQUENCY)
            .blocklist(&BLOCKLIST)
            .build()
            .map_err(|e| anyhow!("starting the CPU profiler: {e}"))?;
        Ok(Window { guard, from: SystemTime::now() })
    }

    /// Stops profiling, then symbolizes the stacks and encodes them as gzipped pprof.
    pub fn finish(self) -> anyhow::Result<CpuProfile> {
        let unresolved = self.guard.report().build_unresolved().map_err(|e| anyhow!("reading the CPU profile: {e}"))?;
        let until = SystemTime::now();
        drop(self.guard);
        let mut data: HashMap<pprof::Frames, isize> = HashMap::new();
        for (frames, count) in unresolved.data {
            *data.entry(functions_only(frames.into())).or_default() += count;
        }
        let report = pprof::Report { data, timing: unresolved.timing };
        let profile = report.pprof().map_err(|e| anyhow!("encoding the CPU profile: {e}"))?;
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&profile.encode_to_vec()).context("gzipping the CPU profile")?;
        let pprof_gz = gz.finish().context("gzipping the CPU profile")?;
        Ok(CpuProfile { from: self.from, until, pprof_gz })
    }
}

/// Keeps, of each frame, only the function that holds its address, without inlined frames or a
/// line.
///
/// pprof-rs counts samples by the *enclosing function* of each frame
/// (`_Unwind_FindEnclosingFunction`), and symbolizes each counted stack from the addresses of the
/// first sample that had it. Inlined frames and lines belong to one address, so they would be
/// those of one arbitrary sample, given to every sample of the stack: in a debug build, a window
/// whose first `price_items` sample happened to sit in an inlined `u64::rotate_left` put all of
/// that thread's `price_items` time (a fifth of the profile) under `rotate_left`, and the CPU
/// objective missed the pricing regression. Functions are what pprof-rs measures, so functions
/// are what the profile says.
fn functions_only(mut frames: pprof::Frames) -> pprof::Frames {
    for symbols in &mut frames.frames {
        // Innermost first: the last symbol is the function the address is in.
        if let Some(mut function) = symbols.pop() {
            function.lineno = None;
            *symbols = vec![function];
        }
    }
    frames
}

/// Profiles this process for `length` (blocking).
pub fn profile_for(length: Duration) -> anyhow::Result<CpuProfile> {
    let window = Window::start()?;
    std::thread::sleep(length);
    window.finish()
}

/// Pyroscope's application name of a build's CPU profiles:
/// `demo-checkout.cpu{service_version=1.1.0,deployment_environment=demo}`. The collector maps
/// the `service_version` label to the resource's `service.version`.
pub fn ingest_name(build: Build) -> String {
    format!("{SERVICE}.cpu{{service_version={},deployment_environment={ENVIRONMENT}}}", build.version())
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Pushes one profile to the collector's API at `api` with the legacy
/// `POST /ingest?name=...&from=...&until=...&format=pprof` and a raw (gzipped) pprof body.
pub fn push(
    client: &reqwest::blocking::Client,
    api: SocketAddr,
    build: Build,
    profile: &CpuProfile,
) -> anyhow::Result<()> {
    let from = unix_seconds(profile.from).to_string();
    // A window shorter than a second still gets a non-empty range.
    let until = unix_seconds(profile.until).max(unix_seconds(profile.from) + 1).to_string();
    let name = ingest_name(build);
    let response = client
        .post(format!("http://{api}/ingest"))
        .query(&[("name", name.as_str()), ("from", &from), ("until", &until), ("format", "pprof")])
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(profile.pprof_gz.clone())
        .send()
        .with_context(|| format!("pushing a CPU profile to http://{api}/ingest"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().unwrap_or_default();
        bail!("the collector refused a CPU profile: {status}: {}", text.trim());
    }
    Ok(())
}

/// Cuts `duration` into profile windows: as many ~3 s windows as fit, and at least 3.
pub fn windows(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis() / 3_000).unwrap_or(u32::MAX).max(3)
}

/// Profiles `duration` from now in [`windows`]`(duration)` back-to-back windows and pushes each
/// as soon as it ends. Window `i` ends at `start + (i + 1) · duration / n`; it starts when the
/// previous one is pushed, so symbolizing and pushing eat into it rather than shift the
/// schedule, and the last window ends with the load. Returns the number of profiles pushed.
pub fn profile_and_push(api: SocketAddr, build: Build, duration: Duration) -> anyhow::Result<u32> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .context("building the profile push client")?;
    let n = windows(duration);
    let start = Instant::now();
    let mut pushed = 0;
    for i in 1..=n {
        let end = start + duration * i / n;
        let window = Window::start()?;
        std::thread::sleep(end.saturating_duration_since(Instant::now()));
        let profile = window.finish()?;
        push(&client, api, build, &profile)?;
        pushed += 1;
    }
    Ok(pushed)
}
