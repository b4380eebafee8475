//! When each snapshot file was taken. A goroutine profile records its own time; a `debug=2`
//! text dump records none, and a file's modification time is when it was last written, which
//! `cp`, a git checkout or a CI artifact download replace: seven dumps copied 80 ms apart read
//! as a 1/s leak growing at 31,250/min, and a checkout gives them all one time. So the times of
//! a series of files come from, in order:
//!
//! 1. what the user gives: `--interval D` (the files, in file-name order, D apart) or
//!    `--times T1,T2,...` (one per file: RFC 3339, or seconds from an origin of the user's);
//! 2. a time in every file name: `goroutine-20261126T101500Z.txt` (UTC, fractions of a second
//!    allowed) or an offset in seconds from the first, `goroutine-t005.txt`;
//! 3. the modification times, only when they are plausible capture times: every two of them,
//!    in time order, at least [`MIN_MTIME_GAP`] apart. Files written by a copy, a checkout or
//!    an unpacking are written within milliseconds of each other; snapshots taken less than a
//!    second apart are too close for a trend measured per minute anyway;
//!
//! and otherwise it is an error that says what to pass. A single file needs no time.

use std::time::Duration;

/// Smallest gap between two modification times for them to count as capture times.
pub const MIN_MTIME_GAP: Duration = Duration::from_secs(1);

/// One snapshot file, as far as its time goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// The file's name (without its folder).
    pub name: String,
    /// Its modification time, when known (unix nanoseconds).
    pub modified_unix_nano: Option<i64>,
}

/// Times given by the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExplicitTimes {
    /// The files, in the order given, this far apart.
    Interval(Duration),
    /// One time per file, in the order given (unix nanoseconds, or nanoseconds from any
    /// origin: only differences count).
    List(Vec<i64>),
}

/// Where the times came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    Explicit,
    FileNames,
    ModificationTimes,
    /// One file: no time needed.
    Single,
}

/// Why the files' times cannot be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimesError {
    #[error("--times gives {given} times for {files} snapshot files; give one per file, in file-name order")]
    CountMismatch { given: usize, files: usize },
    #[error("--interval must be longer than 0s")]
    ZeroInterval,
    #[error("the snapshot times must all differ, but {first} and {second} are at the same time")]
    SameTime { first: String, second: String },
    #[error(
        "some file names carry a time and others do not ({with} does, {without} does not); name them all \
         alike or pass --interval or --times"
    )]
    MixedNames { with: String, without: String },
    #[error(
        "cannot tell when the {files} goroutine dumps were taken: {why}. Text dumps record no time, and files \
         that were copied, checked out or downloaded lose their modification times. Name the files with their \
         time (goroutine-20261126T101500Z.txt, or goroutine-t005.txt for seconds from the first dump), or pass \
         --interval 5s (the time between dumps, in file-name order) or --times T1,T2,... (one RFC 3339 time per \
         dump)"
    )]
    Unknown { files: usize, why: String },
}

/// The time of each file (unix nanoseconds, or nanoseconds from some origin), in the order
/// given, and where they came from.
pub fn resolve_times(
    files: &[SnapshotFile],
    explicit: Option<&ExplicitTimes>,
) -> Result<(Vec<i64>, TimeSource), TimesError> {
    match explicit {
        Some(ExplicitTimes::Interval(d)) => {
            if d.is_zero() {
                return Err(TimesError::ZeroInterval);
            }
            let step = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
            let times = (0..files.len()).map(|i| step.saturating_mul(i as i64)).collect();
            return Ok((times, TimeSource::Explicit));
        }
        Some(ExplicitTimes::List(times)) => {
            if times.len() != files.len() {
                return Err(TimesError::CountMismatch { given: times.len(), files: files.len() });
            }
            distinct(files, times)?;
            return Ok((times.clone(), TimeSource::Explicit));
        }
        None => {}
    }
    if files.len() <= 1 {
        let time = files.first().and_then(|f| f.modified_unix_nano).unwrap_or(0);
        return Ok((vec![time; files.len()], TimeSource::Single));
    }
    let named: Vec<Option<i64>> = files.iter().map(|f| time_in_name(&f.name)).collect();
    match (named.iter().position(Option::is_some), named.iter().position(Option::is_none)) {
        (Some(_), None) => {
            let times: Vec<i64> = named.into_iter().flatten().collect();
            distinct(files, &times)?;
            return Ok((times, TimeSource::FileNames));
        }
        (Some(with), Some(without)) => {
            return Err(TimesError::MixedNames {
                with: files[with].name.clone(),
                without: files[without].name.clone(),
            });
        }
        _ => {}
    }
    let unknown = |why: String| TimesError::Unknown { files: files.len(), why };
    let Some(mtimes) = files.iter().map(|f| f.modified_unix_nano).collect::<Option<Vec<i64>>>() else {
        return Err(unknown("their names carry no time and their modification times are unknown".into()));
    };
    let mut sorted = mtimes.clone();
    sorted.sort_unstable();
    let gap = sorted.windows(2).map(|w| w[1].saturating_sub(w[0])).min().unwrap_or(i64::MAX);
    if gap == 0 && sorted.first() == sorted.last() {
        return Err(unknown("their names carry no time and their modification times are all the same".into()));
    }
    if Duration::from_nanos(u64::try_from(gap).unwrap_or(0)) < MIN_MTIME_GAP {
        return Err(unknown(format!(
            "their names carry no time and their modification times are as little as {} apart, less than the {} s \
             between two snapshots that modification times must show to be trusted",
            human_gap(gap),
            MIN_MTIME_GAP.as_secs()
        )));
    }
    Ok((mtimes, TimeSource::ModificationTimes))
}

fn human_gap(nanos: i64) -> String {
    if nanos < 1_000_000 { format!("{nanos} ns") } else { format!("{} ms", nanos / 1_000_000) }
}

fn distinct(files: &[SnapshotFile], times: &[i64]) -> Result<(), TimesError> {
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by_key(|&i| times[i]);
    for w in order.windows(2) {
        if times[w[0]] == times[w[1]] {
            let (a, b) = (w[0].min(w[1]), w[0].max(w[1]));
            return Err(TimesError::SameTime { first: files[a].name.clone(), second: files[b].name.clone() });
        }
    }
    Ok(())
}

/// The time a file name carries: `...20261126T101500Z...` (basic ISO 8601 in UTC, the `Z`
/// optional, fractions of a second allowed) as unix nanoseconds, else a `t<seconds>` part
/// (`goroutine-t005.debug2.txt`: parts separated by `-`, `_` or `.`) as nanoseconds from 0.
pub fn time_in_name(name: &str) -> Option<i64> {
    absolute_time_in_name(name).or_else(|| {
        let seconds =
            name.split(['-', '_', '.']).filter_map(|part| part.strip_prefix('t')).rev().find_map(|digits| {
                (!digits.is_empty() && digits.len() <= 9 && digits.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| digits.parse::<i64>().ok())?
            })?;
        seconds.checked_mul(1_000_000_000)
    })
}

fn absolute_time_in_name(name: &str) -> Option<i64> {
    let b = name.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    (0..b.len()).find_map(|i| {
        if i > 0 && b[i - 1].is_ascii_digit()
            || !digits(i..i + 8)
            || b.get(i + 8) != Some(&b'T')
            || !digits(i + 9..i + 15)
        {
            return None;
        }
        let mut end = i + 15;
        let mut fraction = String::new();
        if b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
            let start = end + 1;
            end = start;
            while b.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
            fraction = format!(".{}", &name[start..end]);
        }
        if b.get(end).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let s = &name[i..];
        let text =
            format!("{}-{}-{}T{}:{}:{}{fraction}Z", &s[0..4], &s[4..6], &s[6..8], &s[9..11], &s[11..13], &s[13..15]);
        let time: jiff::Timestamp = text.parse().ok()?;
        i64::try_from(time.as_nanosecond()).ok()
    })
}

/// `--times`: comma-separated RFC 3339 times, or seconds (fractions allowed) from an origin of
/// the user's choosing; one kind for all. Nanoseconds from 1970 or from that origin.
pub fn parse_time_list(text: &str) -> Result<Vec<i64>, String> {
    let items: Vec<&str> = text.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if items.is_empty() {
        return Err("expected comma-separated times".into());
    }
    let numbers: Option<Vec<f64>> = items.iter().map(|s| s.parse::<f64>().ok().filter(|v| v.is_finite())).collect();
    if let Some(numbers) = numbers {
        return numbers
            .into_iter()
            .map(|s| if s.abs() < 1e10 { Ok((s * 1e9).round() as i64) } else { Err(format!("{s} seconds is too far")) })
            .collect();
    }
    items
        .iter()
        .map(|s| {
            let time: jiff::Timestamp =
                s.parse().map_err(|_| format!("{s:?} is neither an RFC 3339 time nor a number of seconds"))?;
            i64::try_from(time.as_nanosecond()).map_err(|_| format!("{s:?} is out of range"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn files(names: &[&str], mtimes: &[Option<i64>]) -> Vec<SnapshotFile> {
        names.iter().zip(mtimes).map(|(n, m)| SnapshotFile { name: n.to_string(), modified_unix_nano: *m }).collect()
    }

    #[test]
    fn names_carry_absolute_or_relative_times() {
        let t = time_in_name("goroutine-20261126T101500Z.txt").unwrap();
        assert_eq!(t, "2026-11-26T10:15:00Z".parse::<jiff::Timestamp>().unwrap().as_nanosecond() as i64);
        assert_eq!(time_in_name("g-20261126T101500.250Z.txt"), Some(t + 250_000_000));
        assert_eq!(time_in_name("20261126T101500.txt"), Some(t));
        assert_eq!(time_in_name("goroutine-t005.debug2.txt"), Some(5 * S));
        assert_eq!(time_in_name("goroutine_t40.pb.gz"), Some(40 * S));
        for none in ["goroutine-1.txt", "dump.txt", "test-10.txt", "20261131T101500Z.txt", "120261126T101500Z", "t.txt"]
        {
            assert_eq!(time_in_name(none), None, "{none}");
        }
    }

    // issue 11 #15: the cp case (modification times 80 ms apart) and the git checkout case (one
    // time for all) are errors that say what to pass.
    #[test]
    fn implausible_modification_times_are_refused() {
        let names = ["a.txt", "b.txt", "c.txt"];
        let copied = files(&names, &[Some(0), Some(80_000_000), Some(160_000_000)]);
        let err = resolve_times(&copied, None).unwrap_err().to_string();
        for needle in ["80 ms apart", "--interval", "--times", "goroutine-20261126T101500Z.txt"] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
        let checkout = files(&names, &[Some(7), Some(7), Some(7)]);
        assert!(resolve_times(&checkout, None).unwrap_err().to_string().contains("all the same"));
        let unknown = files(&names, &[None, None, None]);
        assert!(matches!(resolve_times(&unknown, None), Err(TimesError::Unknown { .. })));
    }

    #[test]
    fn sources_are_tried_in_order() {
        let saved = files(&["a.txt", "b.txt", "c.txt"], &[Some(0), Some(5 * S), Some(10 * S)]);
        assert_eq!(resolve_times(&saved, None).unwrap(), (vec![0, 5 * S, 10 * S], TimeSource::ModificationTimes));
        let interval = ExplicitTimes::Interval(Duration::from_secs(2));
        assert_eq!(resolve_times(&saved, Some(&interval)).unwrap(), (vec![0, 2 * S, 4 * S], TimeSource::Explicit));
        let named = files(&["g-t00.txt", "g-t05.txt", "g-t12.txt"], &[Some(1), Some(1), Some(1)]);
        assert_eq!(resolve_times(&named, None).unwrap(), (vec![0, 5 * S, 12 * S], TimeSource::FileNames));
        let mixed = files(&["g-t00.txt", "g.txt"], &[Some(0), Some(5 * S)]);
        assert!(matches!(resolve_times(&mixed, None), Err(TimesError::MixedNames { .. })));
        let same = files(&["a-t05.txt", "b-t05.txt"], &[None, None]);
        assert!(resolve_times(&same, None).unwrap_err().to_string().contains("a-t05.txt and b-t05.txt"));
        let list = ExplicitTimes::List(vec![S, 2 * S]);
        assert_eq!(resolve_times(&saved, Some(&list)).unwrap_err(), TimesError::CountMismatch { given: 2, files: 3 });
        let one = files(&["a.txt"], &[Some(9)]);
        assert_eq!(resolve_times(&one, None).unwrap(), (vec![9], TimeSource::Single));
    }

    #[test]
    fn time_lists_parse() {
        assert_eq!(parse_time_list("0, 5,12.5").unwrap(), vec![0, 5 * S, 12_500_000_000]);
        let base = "2026-11-26T10:15:00Z".parse::<jiff::Timestamp>().unwrap().as_nanosecond() as i64;
        assert_eq!(parse_time_list("2026-11-26T10:15:00Z,2026-11-26T10:15:05Z").unwrap(), vec![base, base + 5 * S]);
        assert!(parse_time_list("2026-02-30T10:15:00Z").is_err());
        assert!(parse_time_list("5,yesterday").is_err());
        assert!(parse_time_list(",").is_err());
    }
}
