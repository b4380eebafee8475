//! Stack parsing and normalisation, data-driven: each case is a `debug=2` goroutine block and
//! the normalised stack expected from it (`function` per line, `@file:line` when kept), plus
//! fingerprint equalities between stacks that differ only in what normalisation drops.

use analyzer::leaks::normalize::{self, NormalizeOptions, fingerprint, normalize_function};
use analyzer::leaks::{self, ParseError, StackFrame};

fn frames(text: &str) -> Vec<StackFrame> {
    let snapshot = leaks::parse_debug2(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(snapshot.goroutines.len(), 1);
    snapshot.goroutines[0].stack.clone()
}

fn render(text: &str, keep_file_line: bool) -> String {
    normalize::normalize(&frames(text), NormalizeOptions { keep_file_line })
        .iter()
        .map(|f| match &f.location {
            Some((file, line)) => format!("{} @{file}:{line}", f.function),
            None => f.function.clone(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn check(text: &str, keep_file_line: bool, expect: &str) {
    assert_eq!(render(text, keep_file_line), expect.trim(), "input:\n{text}");
}

#[test]
fn normalisation_cases() {
    // Arguments, `?` markers, offsets and the goroutine id disappear.
    check(
        "goroutine 2249 [semacquire]:\nsync.runtime_Semacquire(0x0?)\n\truntime/sema.go:62 +0x25\nsync.(*WaitGroup).Wait(0x43f7c5?)\n\tsync/waitgroup.go:139 +0x52\nmain.closeWhenDone(0x4d36c6?, 0x4026800000000000?)\n\tjsonsvc/main.go:142 +0x1e\ncreated by main.fetchBatch\n\tjsonsvc/main.go:136 +0xca\n",
        false,
        "sync.runtime_Semacquire\nsync.(*WaitGroup).Wait\nmain.closeWhenDone",
    );
    // file:line kept on demand.
    check(
        "goroutine 7 [chan receive, 12 minutes]:\nmain.collectResults(0xc000120000)\n\t/src/app/main.go:149 +0x48\ncreated by main.fetchBatch in goroutine 6\n\t/src/app/main.go:137 +0x10a\n",
        true,
        "main.collectResults @/src/app/main.go:149",
    );
    // Struct arguments in braces, `...` for elided arguments, method values.
    check(
        "goroutine 1 [running]:\nruntime/pprof.writeGoroutineStacks({0x5252a8, 0xc00009a020})\n\truntime/pprof/pprof.go:692 +0x70\nmain.(*server).handle(0xc0001, {0x1, 0x2}, ...)\n\t/app/server.go:10 +0x1\nmain.main()\n\t/app/main.go:5\n",
        false,
        "runtime/pprof.writeGoroutineStacks\nmain.(*server).handle\nmain.main",
    );
    // Runtime parking frames at the top are dropped (a GOTRACEBACK=system dump shows them);
    // generic instantiations lose their type arguments.
    check(
        "goroutine 9 gp=0xc000007a40 m=nil [select]:\nruntime.gopark(0x0?, 0x0?, 0x0?, 0x0?, 0x0?)\n\truntime/proc.go:424 +0xce\nruntime.selectgo(0xc00005bf30, 0xc00005bf10, 0x0?, 0x0, 0x0?, 0x1)\n\truntime/select.go:335 +0x7a5\nexample.com/pool.(*Pool[...]).worker(0xc000014090)\n\t/src/pool/pool.go:40 +0x90\ncreated by example.com/pool.New[...] in goroutine 1\n\t/src/pool/pool.go:20 +0x1a\n",
        false,
        "example.com/pool.(*Pool).worker",
    );
}

#[test]
fn header_fields_are_read() {
    let s = leaks::parse_debug2(
        "goroutine 9 [chan receive, 5 minutes, locked to thread]:\nmain.f()\n\t/a.go:1 +0x1\ncreated by main.g in goroutine 3\n\t/a.go:2 +0x2\n\ngoroutine 10 [running]:\nmain.h()\n\t/a.go:3\n",
    )
    .expect("parse");
    let g = &s.goroutines;
    assert_eq!(g.len(), 2);
    assert_eq!(g[0].wait_reason.as_deref(), Some("chan receive"));
    assert_eq!(g[0].wait_minutes, Some(5));
    assert_eq!(g[0].created_by.as_deref(), Some("main.g"));
    assert_eq!(g[1].wait_minutes, None);
    assert_eq!(g[1].created_by, None);
    assert_eq!(g[0].stack, [StackFrame { function: "main.f".into(), file: "/a.go".into(), line: 1 }]);
}

#[test]
fn fingerprints_ignore_what_varies() {
    let a = "goroutine 1 [chan receive]:\nmain.f(0x1, 0x2)\n\t/a.go:10 +0x10\nmain.g()\n\t/a.go:20 +0x20\n";
    let b = "goroutine 99 [chan receive]:\nmain.f(0xdead?, 0xbeef)\n\t/a.go:10 +0x99\nmain.g()\n\t/a.go:20 +0x1\n";
    let c = "goroutine 1 [chan receive]:\nmain.f(0x1, 0x2)\n\t/a.go:11 +0x10\nmain.g()\n\t/a.go:20 +0x20\n";
    let d = "goroutine 1 [chan receive]:\nmain.f(0x1, 0x2)\n\t/a.go:10 +0x10\nmain.h()\n\t/a.go:20 +0x20\n";
    let fp =
        |t: &str, keep_file_line| fingerprint(&normalize::normalize(&frames(t), NormalizeOptions { keep_file_line }));
    assert_eq!(fp(a, true), fp(b, true));
    assert_ne!(fp(a, true), fp(c, true), "another line");
    assert_eq!(fp(a, false), fp(c, false), "lines dropped");
    assert_ne!(fp(a, false), fp(d, false), "another caller");
    // Stable across runs and platforms: pinned values.
    assert_eq!(fp(a, false).to_string(), "b6caee5ebc04b7b2");
    assert_eq!(fingerprint(&[]).0, 0, "the empty stack");
}

#[test]
fn function_names() {
    for (input, expect) in [
        ("main.f", "main.f"),
        ("main.f(0x1)", "main.f"),
        ("sync.(*WaitGroup).Wait", "sync.(*WaitGroup).Wait"),
        ("main.Map[go.shape.int,go.shape.string]", "main.Map"),
        ("example.com/a/b.(*T[...]).m", "example.com/a/b.(*T).m"),
        ("main.main.func1.2", "main.main.func1.2"),
    ] {
        assert_eq!(normalize_function(input), expect, "{input}");
    }
}

#[test]
fn bad_dumps_name_the_line() {
    for (text, expect) in [
        // Truncated after a function line: its location is missing.
        ("goroutine 1 [running]:\nmain.f()\n\t/a.go:1\nmain.g()", ParseError::Truncated { line: 4 }),
        (
            "goroutine 1 [running]:\nmain.f()\n\t/a.go:1\nmain.g()\n\ngoroutine 2 [sleep]:\n",
            ParseError::Truncated { line: 4 },
        ),
        (
            "goroutine x [running]:\nmain.f()\n\t/a.go:1\n",
            ParseError::BadHeader { line: 1, text: "goroutine x [running]:".into() },
        ),
        ("goroutine 1 []:\nmain.f()\n\t/a.go:1\n", ParseError::BadHeader { line: 1, text: "goroutine 1 []:".into() }),
        ("goroutine 1 [running]:\nmain.f(\n\t/a.go:1\n", ParseError::BadFrame { line: 2, text: "main.f(".into() }),
        (
            "goroutine 1 [running]:\nmain.f()\n\t/a.go:notanumber +0x1\n",
            ParseError::BadLocation { line: 3, text: "\t/a.go:notanumber +0x1".into() },
        ),
        ("goroutine 1 [running]:\n\ngoroutine 2 [running]:\nmain.f()\n\t/a.go:1\n", ParseError::EmptyStack { line: 1 }),
        ("", ParseError::Empty),
        ("panic: boom\n", ParseError::Empty),
    ] {
        assert_eq!(leaks::parse_debug2(text), Err(expect.clone()), "input:\n{text}");
        // The message names the line.
        if let ParseError::BadFrame { line, .. } | ParseError::Truncated { line } = expect {
            assert!(expect.to_string().starts_with(&format!("line {line}:")));
        }
    }
}

#[test]
fn crash_tracebacks_are_read() {
    // A panic message before the first goroutine, an elision note and a goroutine whose stack
    // is unavailable.
    let text = "panic: boom\n\ngoroutine 1 [running]:\nmain.f(...)\n\t/a.go:1\n...additional frames elided...\n\ngoroutine 2 [running]:\n\tgoroutine running on other thread; stack unavailable\n";
    let s = leaks::parse_debug2(text).expect("parse");
    assert_eq!(s.goroutines.len(), 2);
    assert!(s.goroutines[1].stack.is_empty());
}

mod hostile {
    use analyzer::leaks::{self, LeakOptions};
    use proptest::prelude::*;

    const SAMPLE: &str = "goroutine 7 [chan receive, 3 minutes]:\nmain.collectResults(0x0?)\n\tjsonsvc/main.go:149 +0x48\ncreated by main.fetchBatch in goroutine 6\n\tjsonsvc/main.go:137 +0x10a\n\ngoroutine 1 [running]:\nmain.main()\n\t/a.go:1\n";

    proptest! {
        // Bad input never panics: any text, and any cut or splice of a valid dump, gives a
        // snapshot or an error naming a line.
        #[test]
        fn arbitrary_text_never_panics(text in "(goroutine [0-9]{1,3} \\[[a-z ,0-9]{0,12}\\]:\n|[a-z.()*/]{0,12}\\(\\)?\n|\t[a-z/.]{0,8}:[0-9x]{0,3}( \\+0x1)?\n|created by [a-z.]{0,6}\n|\n|[^\n]{0,10}\n){0,12}") {
            if let Ok(snapshot) = leaks::parse_debug2(&text) {
                let _ = leaks::detect(&[snapshot], &LeakOptions::default());
            }
        }

        #[test]
        fn cut_dumps_never_panic(cut in 0usize..SAMPLE.len(), cut2 in 0usize..SAMPLE.len()) {
            let (a, b) = (cut.min(cut2), cut.max(cut2));
            let spliced = format!("{}{}", &SAMPLE[..a], &SAMPLE[b..]);
            let _ = leaks::parse_debug2(&SAMPLE[..cut]);
            let _ = leaks::parse_debug2(&spliced);
        }
    }
}
