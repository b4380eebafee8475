//! Clustering and annotation, data-driven: each case is a set of `debug=2` goroutines (or
//! pprof-style stacks with the runtime's frames) and the expected clusters, one line each:
//! `blocking function [wait reason] root-cause count (distinct stacks)`.

use analyzer::leaks::cluster::{self, Clustering};
use analyzer::leaks::{self, GoroutineGroup, LeakOptions, Snapshot, StackFrame};

fn render(c: &Clustering) -> String {
    let mut lines: Vec<String> = c
        .clusters
        .iter()
        .map(|c| {
            format!(
                "{} [{}] {} {} ({})",
                c.key.blocking_function,
                c.key.wait_reason,
                c.root_cause,
                c.count,
                c.variants.len()
            )
        })
        .collect();
    lines.push(format!("runtime-owned {} ignored {}", c.runtime_owned, c.ignored));
    lines.join("\n")
}

fn check_text(dump: &str, options: &LeakOptions, expect: &str) {
    let snapshot = leaks::parse_debug2(dump).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(render(&cluster::cluster(&snapshot, options)), expect.trim(), "input:\n{dump}");
}

/// A pprof-style group: frames given outermost last as `function@file:line`.
fn group(count: u64, frames: &[&str]) -> GoroutineGroup {
    let stack = frames
        .iter()
        .map(|f| {
            let (function, loc) = f.split_once('@').unwrap_or((f, "x.go:1"));
            let (file, line) = loc.rsplit_once(':').expect("file:line");
            StackFrame { function: function.into(), file: file.into(), line: line.parse().expect("line") }
        })
        .collect();
    GoroutineGroup { count, stack, ..GoroutineGroup::default() }
}

fn check_pprof(groups: Vec<GoroutineGroup>, options: &LeakOptions, expect: &str) {
    let snapshot = Snapshot { time_unix_nano: 0, goroutines: groups };
    assert_eq!(render(&cluster::cluster(&snapshot, options)), expect.trim());
}

const TWO_PATHS: &str = "\
goroutine 10 [chan receive]:
main.waitForResult(0xc000010000)
\t/app/main.go:30 +0x25
main.handleA(0x1)
\t/app/main.go:50 +0x1e
created by main.serve in goroutine 1
\t/app/main.go:70 +0xca

goroutine 11 [chan receive]:
main.waitForResult(0xc000010008)
\t/app/main.go:30 +0x25
main.handleB(0x2, 0x3)
\t/app/main.go:60 +0x1e
main.route()
\t/app/main.go:80 +0x1e
created by main.serve in goroutine 1
\t/app/main.go:71 +0xca

goroutine 12 [chan receive]:
main.waitForResult(0xc000010010)
\t/app/main.go:30 +0x25
main.handleA(0x9)
\t/app/main.go:50 +0x1e
created by main.serve in goroutine 1
\t/app/main.go:70 +0xca
";

#[test]
fn two_call_paths_to_one_blocking_point_merge() {
    check_text(
        TWO_PATHS,
        &LeakOptions::default(),
        "main.waitForResult [chan receive] unclosed_channel_receive 3 (2)\nruntime-owned 0 ignored 0",
    );
    let keep = LeakOptions { keep_file_line: true, ..LeakOptions::default() };
    check_text(
        TWO_PATHS,
        &keep,
        "main.waitForResult [chan receive] unclosed_channel_receive 3 (2)\nruntime-owned 0 ignored 0",
    );
}

#[test]
fn two_blocking_points_stay_apart() {
    let dump = "\
goroutine 10 [chan receive]:
main.waitForResult(0xc000010000)
\t/app/main.go:30 +0x25
main.handleA(0x1)
\t/app/main.go:50 +0x1e

goroutine 11 [chan send]:
main.publish(0xc000010008)
\t/app/main.go:90 +0x25
main.handleA(0x1)
\t/app/main.go:51 +0x1e

goroutine 12 [chan receive]:
main.waitForResult(0xc000010000)
\t/app/main.go:33 +0x25
main.handleA(0x1)
\t/app/main.go:50 +0x1e
";
    // Different functions never merge; two lines of one function merge only without file:line.
    check_text(
        dump,
        &LeakOptions::default(),
        "main.publish [chan send] blocked_send 1 (1)\nmain.waitForResult [chan receive] unclosed_channel_receive 2 (1)\nruntime-owned 0 ignored 0",
    );
    check_text(
        dump,
        &LeakOptions { keep_file_line: true, ..LeakOptions::default() },
        "main.publish [chan send] blocked_send 1 (1)\nmain.waitForResult [chan receive] unclosed_channel_receive 1 (1)\nmain.waitForResult [chan receive] unclosed_channel_receive 1 (1)\nruntime-owned 0 ignored 0",
    );
}

#[test]
fn pprof_wait_reasons_and_tags() {
    check_pprof(
        vec![
            group(3, &["runtime.gopark", "runtime.chanrecv", "runtime.chanrecv1", "main.recv"]),
            group(2, &["runtime.gopark", "runtime.chansend", "runtime.chansend1", "main.send"]),
            group(4, &["runtime.gopark", "runtime.selectgo", "main.worker", "main.start.func1"]),
            group(
                5,
                &[
                    "runtime.gopark",
                    "runtime.goparkunlock",
                    "runtime.semacquire1",
                    "sync.runtime_SemacquireMutex",
                    "sync.(*Mutex).lockSlow",
                    "sync.(*Mutex).Lock",
                    "main.(*cache).get",
                ],
            ),
            group(
                6,
                &[
                    "runtime.gopark",
                    "runtime.goparkunlock",
                    "runtime.semacquire1",
                    "sync.runtime_Semacquire",
                    "sync.(*WaitGroup).Wait",
                    "main.closeWhenDone",
                ],
            ),
            group(7, &["runtime.gopark", "runtime.timeSleep", "time.Sleep", "main.poll"]),
            group(
                8,
                &[
                    "runtime.gopark",
                    "runtime.netpollblock",
                    "internal/poll.runtime_pollWait",
                    "internal/poll.(*pollDesc).wait",
                    "internal/poll.(*FD).Read",
                    "net.(*conn).Read",
                    "main.readLoop",
                ],
            ),
            group(9, &["runtime.gopark", "runtime.chanrecv", "runtime.chanrecv2", "main.(*poller).tickLoop"]),
            group(1, &["runtime.gopark", "runtime.selectgo", "net/http.(*persistConn).writeLoop"]),
        ],
        &LeakOptions::default(),
        "
main.(*cache).get [semacquire (sync.Mutex.Lock)] mutex 5 (1)
main.(*poller).tickLoop [chan receive] ticker_not_stopped 9 (1)
main.closeWhenDone [semacquire (sync.WaitGroup.Wait)] waitgroup 6 (1)
main.poll [sleep] other 7 (1)
main.readLoop [IO wait] other 8 (1)
main.recv [chan receive] unclosed_channel_receive 3 (1)
main.send [chan send] blocked_send 2 (1)
main.worker [select] detached_context 4 (1)
net/http.(*persistConn).writeLoop [select] detached_context 1 (1)
runtime-owned 0 ignored 0",
    );
}

#[test]
fn runtime_owned_goroutines_are_excluded() {
    let dump = "\
goroutine 2 [force gc (idle)]:
runtime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)
\truntime/proc.go:363 +0xd6
runtime.goparkunlock(...)
\truntime/proc.go:369
runtime.forcegchelper()
\truntime/proc.go:302 +0xad
created by runtime.init.6
\truntime/proc.go:290 +0x25

goroutine 18 [GC worker (idle)]:
runtime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)
\truntime/proc.go:363 +0xd6
runtime.gcBgMarkWorker()
\truntime/mgc.go:1235 +0xf1
created by runtime.gcBgMarkStartWorkers
\truntime/mgc.go:1159 +0x25

goroutine 19 [select, locked to thread]:
runtime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)
\truntime/proc.go:363 +0xd6
runtime.selectgo(0xc00003ef18, 0xc00003eef0, 0x0?, 0x0, 0x0?, 0x1)
\truntime/select.go:328 +0x7bc
runtime.ensureSigM.func1()
\truntime/signal_unix.go:991 +0x1b0
created by runtime.ensureSigM
\truntime/signal_unix.go:974 +0xbd

goroutine 20 [syscall]:
os/signal.signal_recv()
\truntime/sigqueue.go:152 +0x2f
os/signal.loop()
\tos/signal/signal_unix.go:23 +0x19
created by os/signal.Notify.func1.1
\tos/signal/signal.go:151 +0x2a

goroutine 21 [finalizer wait]:
runtime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)
\truntime/proc.go:363 +0xd6
runtime.runfinq()
\truntime/mfinal.go:180 +0x10f
created by runtime.createfing
\truntime/mfinal.go:157 +0x45

goroutine 30 [chan receive]:
main.recv()
\t/app/main.go:9 +0x1
";
    check_text(
        dump,
        &LeakOptions::default(),
        "main.recv [chan receive] unclosed_channel_receive 1 (1)\nruntime-owned 5 ignored 0",
    );
    check_pprof(
        vec![
            group(8, &["runtime.gopark", "runtime.gcBgMarkWorker"]),
            group(1, &["runtime.gopark", "runtime.goparkunlock", "runtime.bgsweep"]),
            group(1, &["runtime.gopark", "runtime.goparkunlock", "runtime.bgscavenge"]),
            group(1, &["runtime.gopark", "runtime.traceReader", "runtime.ReadTrace", "runtime/trace.Start.func1"]),
        ],
        &LeakOptions::default(),
        "runtime-owned 11 ignored 0",
    );
}

#[test]
fn ignore_rules() {
    let groups = || {
        vec![
            group(3, &["runtime.gopark", "runtime.selectgo", "go.opencensus.io/stats/view.(*worker).start"]),
            group(2, &["runtime.gopark", "runtime.chanrecv", "main.recv", "github.com/x/y.Run"]),
            group(1, &["runtime.gopark", "runtime.chanrecv", "main.recv", "main.main"]),
        ]
    };
    let options = LeakOptions {
        ignore_top_functions: vec!["go.opencensus.io/stats/view.(*worker).start".into(), "main.main".into()],
        ignore_any_functions: vec!["github.com/x/y.Run".into()],
        ..LeakOptions::default()
    };
    // `main.main` is not the top frame, so the last group stays.
    check_pprof(
        groups(),
        &options,
        "main.recv [chan receive] unclosed_channel_receive 1 (1)\nruntime-owned 0 ignored 5",
    );
    check_pprof(
        groups(),
        &LeakOptions::default(),
        "go.opencensus.io/stats/view.(*worker).start [select] detached_context 3 (1)\nmain.recv [chan receive] unclosed_channel_receive 3 (2)\nruntime-owned 0 ignored 0",
    );
}

#[test]
fn text_and_pprof_forms_cluster_alike() {
    // The same goroutine as a debug=2 block (runtime frames hidden, state in the header) and
    // as a pprof stack (runtime frames kept, no header) share fingerprint and cluster.
    let text = leaks::parse_debug2("goroutine 7 [chan receive]:\nmain.collectResults(0x0?)\n\tjsonsvc/main.go:149 +0x48\ncreated by main.fetchBatch\n\tjsonsvc/main.go:137 +0x10a\n").expect("parse");
    let pprof = Snapshot {
        time_unix_nano: 0,
        goroutines: vec![group(
            1,
            &[
                "runtime.gopark@runtime/proc.go:363",
                "runtime.chanrecv@runtime/chan.go:583",
                "runtime.chanrecv2@runtime/chan.go:447",
                "main.collectResults@jsonsvc/main.go:149",
            ],
        )],
    };
    for keep_file_line in [false, true] {
        let options = LeakOptions { keep_file_line, ..LeakOptions::default() };
        let a = cluster::cluster(&text, &options);
        let b = cluster::cluster(&pprof, &options);
        assert_eq!(a.clusters[0].key, b.clusters[0].key);
        assert_eq!(a.clusters[0].variants[0].fingerprint, b.clusters[0].variants[0].fingerprint);
    }
}
