//! What a goroutine is waiting for and where: the wait reason, the user frame where it blocks,
//! a root-cause tag, and whether the runtime owns it.
//!
//! The wait reason comes first from the frames (a pprof profile has no header but keeps the
//! runtime's parking frames; `sync.(*WaitGroup).Wait` or `sync.(*Mutex).Lock` say more than a
//! bare `semacquire` header), then from the `debug=2` header. Root-cause tags are heuristics
//! over the stack; a stack alone cannot prove, for example, that a `select` waits on the
//! `Done()` of a `context.Background()`, so a `select` that never returns is tagged
//! `detached_context`, the most common such leak.

use super::normalize::{is_runtime, normalize_function};
use super::snapshot::{GoroutineGroup, StackFrame};

/// Why a goroutine is parked, in the runtime's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WaitReason {
    ChanReceive,
    ChanSend,
    Select,
    WaitGroup,
    Mutex,
    /// `semacquire` with no frame saying which primitive.
    Semacquire,
    CondWait,
    Sleep,
    IoWait,
    Syscall,
    Running,
    /// Any other header state, as written.
    Other(String),
    Unknown,
}

impl WaitReason {
    /// The name used in reports (`chan receive`, `semacquire (sync.WaitGroup.Wait)`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            Self::ChanReceive => "chan receive",
            Self::ChanSend => "chan send",
            Self::Select => "select",
            Self::WaitGroup => "semacquire (sync.WaitGroup.Wait)",
            Self::Mutex => "semacquire (sync.Mutex.Lock)",
            Self::Semacquire => "semacquire",
            Self::CondWait => "sync.Cond.Wait",
            Self::Sleep => "sleep",
            Self::IoWait => "IO wait",
            Self::Syscall => "syscall",
            Self::Running => "running",
            Self::Other(s) => s,
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for WaitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The likely cause of a leak, derived from the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RootCause {
    UnclosedChannelReceive,
    BlockedSend,
    DetachedContext,
    TickerNotStopped,
    Mutex,
    WaitGroup,
    Other,
}

impl RootCause {
    /// The tag used in reports and rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnclosedChannelReceive => "unclosed_channel_receive",
            Self::BlockedSend => "blocked_send",
            Self::DetachedContext => "detached_context",
            Self::TickerNotStopped => "ticker_not_stopped",
            Self::Mutex => "mutex",
            Self::WaitGroup => "waitgroup",
            Self::Other => "other",
        }
    }
}

impl std::fmt::Display for RootCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads the wait reason of a group: frames first, then the header.
pub fn wait_reason(group: &GoroutineGroup) -> WaitReason {
    from_frames(&group.stack).or_else(|| group.wait_reason.as_deref().map(from_header)).unwrap_or(WaitReason::Unknown)
}

fn from_frames(stack: &[StackFrame]) -> Option<WaitReason> {
    // The innermost recognisable frame decides: `sync.(*Mutex).Lock` above
    // `sync.runtime_SemacquireMutex` above `runtime.semacquire1`.
    let mut semaphore = false;
    for f in stack {
        let name = normalize_function(&f.function);
        let n = name.as_str();
        let reason = match n {
            "sync.(*WaitGroup).Wait" => Some(WaitReason::WaitGroup),
            "sync.(*Mutex).Lock" | "sync.(*RWMutex).Lock" | "sync.(*RWMutex).RLock" | "sync.(*Mutex).lockSlow" => {
                Some(WaitReason::Mutex)
            }
            "sync.(*Cond).Wait" => Some(WaitReason::CondWait),
            "runtime.chanrecv" | "runtime.chanrecv1" | "runtime.chanrecv2" => Some(WaitReason::ChanReceive),
            "runtime.chansend" | "runtime.chansend1" => Some(WaitReason::ChanSend),
            "runtime.selectgo" | "runtime.block" => Some(WaitReason::Select),
            "time.Sleep" | "runtime.timeSleep" => Some(WaitReason::Sleep),
            _ if n.starts_with("internal/poll.") || n.starts_with("runtime.netpoll") || n == "runtime.netpollblock" => {
                Some(WaitReason::IoWait)
            }
            _ if n.starts_with("sync.runtime_Semacquire")
                || n.starts_with("runtime.semacquire")
                || n == "sync.runtime_notifyListWait" =>
            {
                semaphore = true;
                None
            }
            _ => None,
        };
        if reason.is_some() {
            return reason;
        }
        if !is_runtime(n) && !n.starts_with("sync.") {
            // Past the parking frames: what lies below is the caller's business.
            break;
        }
    }
    semaphore.then_some(WaitReason::Semacquire)
}

/// Maps a `debug=2` header state (`chan receive (nil chan)`, `sync.WaitGroup.Wait`, ...).
pub fn from_header(state: &str) -> WaitReason {
    let s = state.trim();
    match s {
        "chan receive" | "chan receive (nil chan)" | "chan receive (synctest)" => WaitReason::ChanReceive,
        "chan send" | "chan send (nil chan)" | "chan send (synctest)" => WaitReason::ChanSend,
        "select" | "select (no cases)" | "select (synctest)" => WaitReason::Select,
        "sync.WaitGroup.Wait" => WaitReason::WaitGroup,
        "sync.Mutex.Lock" | "sync.RWMutex.Lock" | "sync.RWMutex.RLock" => WaitReason::Mutex,
        "semacquire" => WaitReason::Semacquire,
        "sync.Cond.Wait" => WaitReason::CondWait,
        "sleep" => WaitReason::Sleep,
        "IO wait" => WaitReason::IoWait,
        "syscall" => WaitReason::Syscall,
        "running" | "runnable" => WaitReason::Running,
        _ => WaitReason::Other(s.to_string()),
    }
}

/// The first elements of every standard-library package path (`go list std`, Go 1.19, plus the
/// packages added up to Go 1.24: `arena`, `cmp`, `iter`, `maps`, `slices`, `structs`, `unique`,
/// `weak`). Sorted, for binary search.
const STD_ROOTS: &[&str] = &[
    "archive",
    "arena",
    "bufio",
    "bytes",
    "cmp",
    "compress",
    "container",
    "context",
    "crypto",
    "database",
    "debug",
    "embed",
    "encoding",
    "errors",
    "expvar",
    "flag",
    "fmt",
    "go",
    "hash",
    "html",
    "image",
    "index",
    "internal",
    "io",
    "iter",
    "log",
    "maps",
    "math",
    "mime",
    "net",
    "os",
    "path",
    "plugin",
    "reflect",
    "regexp",
    "runtime",
    "slices",
    "sort",
    "strconv",
    "strings",
    "structs",
    "sync",
    "syscall",
    "testing",
    "text",
    "time",
    "unicode",
    "unique",
    "unsafe",
    "vendor",
    "weak",
];

/// Whether a frame belongs to the standard library (or the runtime), whose frames are never
/// "the user frame". Decided by the package path's first element against the standard
/// library's own list, so a module without a dot in its path (`myservice/worker`, allowed for
/// modules that are never fetched) is the user's, and `golang.org/x/...` is not standard.
fn is_std(function: &str) -> bool {
    let name = normalize_function(function);
    let first = package_path(&name).split('/').next().unwrap_or("");
    STD_ROOTS.binary_search(&first).is_ok()
}

/// `github.com/a/b.(*T).m` → `github.com/a/b`; `main.f.func1` → `main`.
fn package_path(function: &str) -> &str {
    let last_slash = function.rfind('/').map_or(0, |i| i + 1);
    match function[last_slash..].find('.') {
        Some(dot) => &function[..last_slash + dot],
        None => function,
    }
}

/// The first frame (innermost first) outside the runtime and the standard library; if every
/// frame is standard, the first frame outside the runtime; else the innermost frame.
pub fn blocking_frame(stack: &[StackFrame]) -> Option<&StackFrame> {
    stack
        .iter()
        .find(|f| !is_std(&f.function))
        .or_else(|| stack.iter().find(|f| !is_runtime(&f.function)))
        .or_else(|| stack.first())
}

/// Functions whose presence marks a goroutine owned by the runtime (never a finding).
const RUNTIME_OWNED: &[&str] = &[
    "runtime.gcBgMarkWorker",
    "runtime.bgsweep",
    "runtime.bgscavenge",
    "runtime.runfinq",
    "runtime.forcegchelper",
    "runtime.timerproc",
    "runtime.runCleanups",
    "runtime.unique_runtime_registerUniqueMapCleanup.func1",
    "runtime.ReadTrace",
    "runtime.traceReader",
    "runtime.traceAdvance",
    "runtime/trace.Start.func1",
    "os/signal.loop",
    "os/signal.signal_recv",
    "runtime.ensureSigM.func1",
    "runtime.netpoll",
];

/// Whether the runtime owns the goroutine: a known runtime function anywhere in its stack or as
/// its creator, or a stack made only of runtime frames.
pub fn is_runtime_owned(group: &GoroutineGroup) -> bool {
    let named = |f: &str| {
        let n = normalize_function(f);
        RUNTIME_OWNED.contains(&n.as_str()) || n.starts_with("runtime.gcBgMarkWorker")
    };
    group.stack.iter().any(|f| named(&f.function))
        || group
            .created_by
            .as_deref()
            .is_some_and(|c| named(c) || c == "runtime.gcenable" || c == "runtime.gcBgMarkStartWorkers")
        || (!group.stack.is_empty() && group.stack.iter().all(|f| is_runtime(&f.function)))
}

/// The root-cause tag of a stack blocked for `reason`.
pub fn root_cause(reason: &WaitReason, stack: &[StackFrame], created_by: Option<&str>) -> RootCause {
    let ticker = stack.iter().map(|f| f.function.as_str()).chain(created_by).any(|f| {
        let n = normalize_function(f);
        n.starts_with("time.(*Ticker)") || n == "time.Tick" || n == "time.NewTicker" || {
            let short = n.rsplit('/').next().unwrap_or(&n).to_ascii_lowercase();
            !is_std(&n) && short.contains("tick")
        }
    });
    match reason {
        WaitReason::ChanReceive | WaitReason::Select if ticker => RootCause::TickerNotStopped,
        WaitReason::ChanReceive => RootCause::UnclosedChannelReceive,
        WaitReason::ChanSend => RootCause::BlockedSend,
        WaitReason::Select => RootCause::DetachedContext,
        WaitReason::Mutex => RootCause::Mutex,
        WaitReason::WaitGroup => RootCause::WaitGroup,
        WaitReason::Semacquire if stack.iter().any(|f| f.function.contains("WaitGroup")) => RootCause::WaitGroup,
        WaitReason::Semacquire if stack.iter().any(|f| f.function.contains("Mutex")) => RootCause::Mutex,
        // A bare `semacquire` header in Go before 1.22 is most often a WaitGroup.
        WaitReason::Semacquire => RootCause::WaitGroup,
        _ => RootCause::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn std_roots_are_sorted_for_binary_search() {
        assert!(STD_ROOTS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn standard_library_frames() {
        for (function, std) in [
            ("runtime.gopark", true),
            ("sync.(*WaitGroup).Wait", true),
            ("net/http.(*conn).serve", true),
            ("internal/poll.(*FD).Read", true),
            ("context.(*cancelCtx).propagateCancel.func2", true),
            ("slices.SortFunc[...]", true),
            ("main.worker", false),
            ("main.(*pool).run.func1", false),
            ("github.com/acme/svc/queue.(*Q).pop", false),
            ("golang.org/x/sync/errgroup.(*Group).Wait", false),
            // Modules without a dot in their path are the user's, even when one of their
            // directories shares a name with a standard package.
            ("myservice/worker.(*Pool).run", false),
            ("example/app/net.dial", false),
            ("billing.Charge", false),
        ] {
            assert_eq!(is_std(function), std, "{function}");
        }
    }

    #[test]
    fn blocking_frame_skips_to_the_first_user_frame() {
        let stack: Vec<StackFrame> =
            ["runtime.gopark", "runtime.chanrecv", "runtime.chanrecv2", "myservice/queue.(*Q).pop", "main.main"]
                .iter()
                .map(|f| StackFrame { function: f.to_string(), ..StackFrame::default() })
                .collect();
        assert_eq!(blocking_frame(&stack).map(|f| f.function.as_str()), Some("myservice/queue.(*Q).pop"));
    }
}
