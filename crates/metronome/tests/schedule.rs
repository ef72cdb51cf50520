//! Schedules on their own (`/v1/jobs/{id}/schedules`): Metronome's example, defaults, 422 paths.

use cairn_metronome::{ConcurrencyPolicy, parse_schedule};
use serde_json::{Value, json};

#[test]
fn metronome_example_and_defaults() {
    // examples/schedule.json
    let example = json!({"id": "everyminute", "cron": "* * * * *", "concurrencyPolicy": "ALLOW",
        "enabled": true, "startingDeadlineSeconds": 60, "timezone": "America/Chicago"});
    let s = parse_schedule(example.clone(), None).unwrap();
    assert_eq!(s.timezone, "America/Chicago");
    assert_eq!(serde_json::to_value(&s).unwrap(), example);

    let s = parse_schedule(json!({"id": "nightly", "cron": "0 3 * * *"}), None).unwrap();
    assert_eq!(
        serde_json::to_value(&s).unwrap(),
        json!({"id": "nightly", "cron": "0 3 * * *", "timezone": "UTC", "startingDeadlineSeconds": 900,
               "concurrencyPolicy": "ALLOW", "enabled": true})
    );
    assert_eq!(s.concurrency_policy, ConcurrencyPolicy::Allow);
    let after = "2024-01-01T12:00:00Z".parse().unwrap();
    assert_eq!(
        s.next_run_at(after).unwrap().to_string(),
        "2024-01-02T03:00:00Z"
    );

    // What a GET returns (with nextRunAt) can be sent back: Metronome's schedule schema allows
    // fields it does not know.
    let mut back = serde_json::to_value(&s).unwrap();
    back["nextRunAt"] = json!("2024-01-02T03:00:00.000+0000");
    assert_eq!(parse_schedule(back, None).unwrap(), s);
}

#[test]
fn every_violation_is_reported() {
    let err = parse_schedule(
        json!({"id": "S", "cron": "0 0 31 2 *", "timezone": "Mars/Olympus", "startingDeadlineSeconds": 1}),
        None,
    )
    .unwrap_err();
    let paths: Vec<&str> = err.violations().iter().map(|v| v.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/id", "/timezone", "/cron", "/startingDeadlineSeconds"]
    );
}

#[test]
fn the_url_id_replaces_the_body_id() {
    let s = parse_schedule(json!({"id": "a", "cron": "* * * * *"}), Some("b")).unwrap();
    assert_eq!(s.id, "b");
}

#[test]
fn invalid_schedules_name_the_path() {
    #[rustfmt::skip]
    let table: Vec<(Value, &str, &str)> = vec![
        (json!({"id": "s", "cron": "wrong cron"}), "/cron", "has 2"),
        (json!({"id": "s", "cron": "0 0 31 2 *"}), "/cron", "matches no date"),
        (json!({"id": "s", "cron": "* * * * * 2025"}), "/cron", "day-of-week field"),
        (json!({"id": "s", "cron": "* * * * *", "timezone": "Mars/Olympus"}), "/timezone", "No time zone found"),
        (json!({"id": "s", "cron": "* * * * *", "timezone": "europe/berlin"}), "/timezone", "No time zone found"),
        (json!({"id": "s", "cron": "* * * * *", "concurrencyPolicy": "allow"}), "/concurrencyPolicy", "unknown variant"),
        (json!({"id": "s", "cron": "* * * * *", "startingDeadlineSeconds": 59}), "/startingDeadlineSeconds", "expected 60 or more"),
        (json!({"id": "s", "cron": "* * * * *", "startingDeadlineSeconds": 0.5}), "/startingDeadlineSeconds", "invalid type"),
        (json!({"id": "s", "cron": "* * * * *", "enabled": "yes"}), "/enabled", "invalid type"),
        (json!({"id": "S", "cron": "* * * * *"}), "/id", "not a valid schedule id"),
        (json!({"id": "a.b", "cron": "* * * * *"}), "/id", "not a valid schedule id"),
        (json!({"cron": "* * * * *"}), "/id", "missing field"),
        (json!({"id": "s"}), "/cron", "missing field"),
        (json!("* * * * *"), "/", "JSON object"),
    ];
    for (body, path, message) in table {
        let err = parse_schedule(body.clone(), None).expect_err(&body.to_string());
        let hit = err.violations().iter().find(|v| v.path == path);
        let Some(hit) = hit else {
            panic!("{body}: no violation at {path}: {:?}", err.violations());
        };
        assert!(
            hit.errors.iter().any(|e| e.contains(message)),
            "{body}: {path} says {:?}, not {message:?}",
            hit.errors
        );
    }
}
