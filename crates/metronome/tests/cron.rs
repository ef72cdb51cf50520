//! Cron evaluation, one row per case: (expression, zone, after, the next ticks). Rows marked
//! "Metronome:" are Metronome's own tests (CronSpecFormatTest, ScheduleSpecTest), so the
//! dialect and the day-of-month AND day-of-week rule are checked against what it computed.

use cairn_metronome::{CronError, CronField, CronSchedule};
use jiff::Timestamp;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap_or_else(|e| panic!("bad time {s}: {e}"))
}

fn next_n(cron: &CronSchedule, after: Timestamp, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = after;
    while out.len() < n {
        match cron.next_after(at) {
            Some(next) => {
                assert!(next > at, "ticks must move forward: {next} after {at}");
                out.push(next.to_string());
                at = next;
            }
            None => break,
        }
    }
    out
}

#[test]
fn next_ticks() {
    #[rustfmt::skip]
    let table: &[(&str, &str, &str, &[&str])] = &[
        ("*/15 * * * *", "UTC", "2024-01-01T00:07:00Z",
            &["2024-01-01T00:15:00Z", "2024-01-01T00:30:00Z", "2024-01-01T00:45:00Z", "2024-01-01T01:00:00Z"]),
        // Strictly after: a tick at `after` itself is not next.
        ("*/15 * * * *", "UTC", "2024-01-01T00:15:00Z", &["2024-01-01T00:30:00Z"]),
        ("*/15 * * * *", "UTC", "2024-01-01T00:14:59.999Z", &["2024-01-01T00:15:00Z"]),
        // Friday 09:00 → Monday, Tuesday.
        ("0 9 * * 1-5", "UTC", "2024-01-05T09:00:00Z", &["2024-01-08T09:00:00Z", "2024-01-09T09:00:00Z"]),
        // Day-of-month AND day-of-week (Metronome's cron-utils definition): Fridays that are
        // the 1st or the 15th, not every Friday plus every 1st and 15th.
        ("0 0 1,15 * 5", "UTC", "2024-01-01T00:00:00Z",
            &["2024-03-01T00:00:00Z", "2024-03-15T00:00:00Z", "2024-11-01T00:00:00Z", "2024-11-15T00:00:00Z"]),
        // Spring forward in Berlin (2024-03-31, 02:00 CET → 03:00 CEST): 02:30 does not exist
        // and fires at 03:30 CEST (jiff's compatible disambiguation).
        ("30 2 * * *", "Europe/Berlin", "2024-03-29T12:00:00Z",
            &["2024-03-30T01:30:00Z", "2024-03-31T01:30:00Z", "2024-04-01T00:30:00Z"]),
        // Autumn fold (2024-10-27, 03:00 CEST → 02:00 CET): 02:30 happens twice, fires once,
        // at the earlier (CEST) instant.
        ("30 2 * * *", "Europe/Berlin", "2024-10-26T12:00:00Z",
            &["2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"]),
        // Within the fold every wall-clock time fires once: the repeated 02:00 and 02:30 CET
        // (01:00Z, 01:30Z) do not fire again.
        ("*/30 * * * *", "Europe/Berlin", "2024-10-27T00:15:00Z",
            &["2024-10-27T00:30:00Z", "2024-10-27T02:00:00Z", "2024-10-27T02:30:00Z"]),
        // Within the gap nothing fires twice: 02:00 becomes 03:00 CEST, then 03:30.
        ("*/30 * * * *", "Europe/Berlin", "2024-03-31T00:45:00Z",
            &["2024-03-31T01:00:00Z", "2024-03-31T01:30:00Z"]),
        ("0 0 29 2 *", "UTC", "2021-01-01T00:00:00Z",
            &["2024-02-29T00:00:00Z", "2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]),
        // Never: February has no 31st.
        ("0 0 31 2 *", "UTC", "2024-01-01T00:00:00Z", &[]),
        // Never: the 1st is never the fifth Monday of a month.
        ("0 0 1 * 1#5", "UTC", "2024-01-01T00:00:00Z", &[]),
        // A leap day that is a Monday: 28 years apart, found within the horizon.
        ("0 0 29 2 1", "UTC", "2017-01-01T00:00:00Z", &["2044-02-29T00:00:00Z"]),
        ("0 12 * JAN,JUL SUN", "UTC", "2024-01-01T00:00:00Z",
            &["2024-01-07T12:00:00Z", "2024-01-14T12:00:00Z", "2024-01-21T12:00:00Z",
              "2024-01-28T12:00:00Z", "2024-07-07T12:00:00Z"]),
        ("0 12 * jan,jul sun", "UTC", "2024-01-01T00:00:00Z", &["2024-01-07T12:00:00Z"]),
        // 7 and 0 are both Sunday.
        ("0 0 * * 7", "UTC", "2024-01-01T00:00:00Z", &["2024-01-07T00:00:00Z", "2024-01-14T00:00:00Z"]),
        ("0 0 * * 0", "UTC", "2024-01-01T00:00:00Z", &["2024-01-07T00:00:00Z", "2024-01-14T00:00:00Z"]),
        // A range may end on Sunday as SUN (0).
        ("0 0 * * FRI-SUN", "UTC", "2024-01-01T00:00:00Z",
            &["2024-01-05T00:00:00Z", "2024-01-06T00:00:00Z", "2024-01-07T00:00:00Z", "2024-01-12T00:00:00Z"]),
        ("0 0 * * */2", "UTC", "2024-01-01T00:00:00Z",
            &["2024-01-02T00:00:00Z", "2024-01-04T00:00:00Z", "2024-01-06T00:00:00Z", "2024-01-07T00:00:00Z"]),
        ("5/20 1-10/4 * * *", "UTC", "2024-01-01T00:00:00Z",
            &["2024-01-01T01:05:00Z", "2024-01-01T01:25:00Z", "2024-01-01T01:45:00Z", "2024-01-01T05:05:00Z"]),
        // cairn's seconds extension: six fields, seconds first.
        ("*/10 * * * * *", "UTC", "2024-01-01T00:00:05Z",
            &["2024-01-01T00:00:10Z", "2024-01-01T00:00:20Z", "2024-01-01T00:00:30Z"]),
        ("30 0 12 * * *", "America/Chicago", "2024-01-01T00:00:00Z", &["2024-01-01T18:00:30Z"]),
        // L, W and # (cron-utils' extensions that Metronome enables).
        ("0 0 L * *", "UTC", "2024-02-01T00:00:00Z", &["2024-02-29T00:00:00Z", "2024-03-31T00:00:00Z"]),
        ("0 0 LW * *", "UTC", "2024-03-01T00:00:00Z", &["2024-03-29T00:00:00Z", "2024-04-30T00:00:00Z"]),
        ("0 0 15W * *", "UTC", "2024-06-01T00:00:00Z", &["2024-06-14T00:00:00Z", "2024-07-15T00:00:00Z"]),
        ("0 0 1W * *", "UTC", "2024-06-01T00:00:00Z", &["2024-06-03T00:00:00Z"]),
        ("0 0 * * 5L", "UTC", "2024-01-01T00:00:00Z", &["2024-01-26T00:00:00Z", "2024-02-23T00:00:00Z"]),
        ("0 0 * * MON#2", "UTC", "2024-01-01T00:00:00Z", &["2024-01-08T00:00:00Z", "2024-02-12T00:00:00Z"]),
        // Metronome: CronSpecFormatTest.
        ("0 9 1-7 * 1", "UTC", "2017-10-02T10:00:00Z", &["2017-11-06T09:00:00Z"]),
        ("0 9 1-7 * 1-5", "UTC", "2017-10-02T10:00:00Z", &["2017-10-03T09:00:00Z"]),
        ("0 9 1-7 * 6-7", "UTC", "2017-10-02T10:00:00Z", &["2017-10-07T09:00:00Z"]),
        ("0 9 8-14 * 1-5", "UTC", "2017-10-02T10:00:00Z", &["2017-10-09T09:00:00Z"]),
        ("0 9 22-28 * 6-7", "UTC", "2017-10-02T10:00:00Z", &["2017-10-22T09:00:00Z"]),
        ("* * * * 3", "UTC", "2017-10-02T10:00:00Z", &["2017-10-04T00:00:00Z"]),
        ("* * */1 * 3", "UTC", "2017-10-02T10:00:00Z", &["2017-10-04T00:00:00Z"]),
        ("0 0 20-31 2 *", "UTC", "2017-10-02T10:00:00Z", &["2018-02-20T00:00:00Z"]),
        ("0 0 29 2 *", "UTC", "2017-10-02T10:00:00Z", &["2020-02-29T00:00:00Z"]),
        ("* * * * 1", "UTC", "2017-04-25T00:00:00Z", &["2017-05-01T00:00:00Z"]),
        ("* * * * 1", "UTC", "2017-07-28T00:00:00Z", &["2017-07-31T00:00:00Z"]),
        ("* * * * 1", "UTC", "2017-12-27T00:00:00Z", &["2018-01-01T00:00:00Z"]),
        ("* * * * 1", "UTC", "2018-04-29T00:00:00Z", &["2018-04-30T00:00:00Z"]),
        ("* * * * 1", "UTC", "2018-09-30T00:00:00Z", &["2018-10-01T00:00:00Z"]),
        ("* * * * 1", "UTC", "2018-12-26T00:00:00Z", &["2018-12-31T00:00:00Z"]),
        // Metronome: ScheduleSpecTest (daylight saving time in Rome).
        ("55 23 * * *", "Europe/Rome", "2019-03-30T22:55:00Z", &["2019-03-31T21:55:00Z"]),
    ];
    for (expr, tz, after, want) in table {
        let cron = CronSchedule::parse(expr, tz).unwrap_or_else(|e| panic!("{expr}: {e}"));
        let got = next_n(&cron, ts(after), want.len().max(1));
        assert_eq!(got, *want, "{expr} in {tz} after {after}");
    }
}

#[test]
fn ticks_between_is_bounded_and_ordered() {
    let cron = CronSchedule::parse("*/15 * * * *", "UTC").unwrap();
    let ticks: Vec<String> = cron
        .ticks_between(ts("2024-01-01T00:00:00Z"), ts("2024-01-01T01:00:00Z"))
        .map(|t| t.to_string())
        .collect();
    assert_eq!(
        ticks,
        [
            "2024-01-01T00:15:00Z",
            "2024-01-01T00:30:00Z",
            "2024-01-01T00:45:00Z",
            "2024-01-01T01:00:00Z"
        ]
    );
    let never = CronSchedule::parse("0 0 31 2 *", "UTC").unwrap();
    assert!(never.never_fires());
    assert_eq!(
        never
            .ticks_between(ts("2024-01-01T00:00:00Z"), ts("2424-01-01T00:00:00Z"))
            .count(),
        0
    );
    assert!(
        !CronSchedule::parse("0 0 29 2 *", "UTC")
            .unwrap()
            .never_fires()
    );
}

#[test]
fn never_firing_expressions_end_quickly() {
    // A whole 400-year horizon, skipped month by month: well under a second even unoptimized.
    let started = std::time::Instant::now();
    for expr in [
        "0 0 31 2 *",
        "0 0 30 2 *",
        "0 0 1 * 1#5",
        "* * 31 4,6,9,11 *",
    ] {
        let cron = CronSchedule::parse(expr, "UTC").unwrap();
        assert_eq!(cron.next_after(ts("2024-01-01T00:00:00Z")), None, "{expr}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn invalid_expressions_name_the_field() {
    use CronField::*;
    #[rustfmt::skip]
    let table: &[(&str, Option<CronField>, &str)] = &[
        ("60 * * * *", Some(Minute), "60 is out of range 0-59"),
        ("* * * *", None, "5 fields"),
        ("* * * * * * *", None, "has 7"),
        ("", None, "has 0"),
        ("*/0 * * * *", Some(Minute), "step must be 1-59"),
        ("*/60 * * * *", Some(Minute), "step must be 1-59"),
        ("a b c d e", Some(Minute), "\"a\" is not a number"),
        ("* 24 * * *", Some(Hour), "out of range 0-23"),
        ("* * 0 * *", Some(DayOfMonth), "out of range 1-31"),
        ("* * 32 * *", Some(DayOfMonth), "out of range 1-31"),
        ("* * * 13 *", Some(Month), "out of range 1-12"),
        ("* * * FOO *", Some(Month), "or a name (JAN-DEC)"),
        ("* * * * 8", Some(DayOfWeek), "out of range 0-7"),
        ("* * * * MON#6", Some(DayOfWeek), "1-5"),
        ("* * * * L", Some(DayOfWeek), "nL and n#k"),
        ("* * ? * *", Some(DayOfMonth), "L, LW and nW"),
        ("5-1 * * * *", Some(Minute), "backwards"),
        ("1,,2 * * * *", Some(Minute), "empty list item"),
        ("1, * * * *", Some(Minute), "empty list item"),
        ("60 * * * * *", Some(Second), "out of range 0-59"),
        ("@daily", None, "not supported"),
    ];
    for (expr, field, message) in table {
        let err = CronSchedule::parse(expr, "UTC").expect_err(expr);
        assert_eq!(err.field(), *field, "{expr}: {err}");
        let text = err.to_string();
        assert!(text.contains(message), "{expr}: {text:?} lacks {message:?}");
        if let Some(f) = field {
            assert!(
                text.starts_with(f.name()),
                "{expr}: {text:?} names its field first"
            );
        }
    }
}

#[test]
fn time_zones_are_iana_names_as_written() {
    for good in ["UTC", "Europe/Berlin", "America/Chicago", "Asia/Kolkata"] {
        assert!(CronSchedule::parse("* * * * *", good).is_ok(), "{good}");
    }
    for bad in ["Mars/Olympus", "europe/berlin", "", "+02:00"] {
        assert_eq!(
            CronSchedule::parse("* * * * *", bad).unwrap_err(),
            CronError::TimeZone(bad.to_string()),
            "{bad:?}"
        );
    }
}
