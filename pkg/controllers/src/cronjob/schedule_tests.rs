use super::*;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("time")
}

fn next(spec: &str, after: &str) -> DateTime<Utc> {
    parse(spec)
        .expect("parse")
        .next(at(after))
        .expect("a next time")
}

#[test]
fn fields_ranges_steps_lists_and_names() {
    assert_eq!(
        next("TZ=UTC * * * * *", "2024-01-01T10:00:30Z"),
        at("2024-01-01T10:01:00Z")
    );
    // Strictly after: a time exactly on the schedule moves on.
    assert_eq!(
        next("TZ=UTC */15 * * * *", "2024-01-01T10:15:00Z"),
        at("2024-01-01T10:30:00Z")
    );
    assert_eq!(
        next("TZ=UTC 5,10-12 9-17/4 * * *", "2024-01-01T13:11:00Z"),
        at("2024-01-01T13:12:00Z")
    );
    assert_eq!(
        next("TZ=UTC 0 0 * FEB mon", "2024-01-01T00:00:00Z"),
        at("2024-02-05T00:00:00Z")
    );
    // "N/step" means N through the maximum.
    assert_eq!(
        next("TZ=UTC 50/5 * * * *", "2024-01-01T10:56:00Z"),
        at("2024-01-01T11:50:00Z")
    );
}

#[test]
fn day_of_month_and_week_are_or_unless_one_is_a_star() {
    // 2024-01-01 is a Monday. Restricted both: the 15th OR a Friday.
    assert_eq!(
        next("TZ=UTC 0 0 15 * 5", "2024-01-01T00:00:00Z"),
        at("2024-01-05T00:00:00Z")
    );
    // Day of week a star: only the 15th.
    assert_eq!(
        next("TZ=UTC 0 0 15 * *", "2024-01-01T00:00:00Z"),
        at("2024-01-15T00:00:00Z")
    );
    // Day of month a star: only Fridays.
    assert_eq!(
        next("TZ=UTC 0 0 * * 5", "2024-01-06T00:00:00Z"),
        at("2024-01-12T00:00:00Z")
    );
}

#[test]
fn descriptors() {
    let t = "2024-03-10T10:20:00Z";
    assert_eq!(next("TZ=UTC @hourly", t), at("2024-03-10T11:00:00Z"));
    assert_eq!(next("TZ=UTC @daily", t), at("2024-03-11T00:00:00Z"));
    assert_eq!(next("TZ=UTC @weekly", t), at("2024-03-17T00:00:00Z"));
    assert_eq!(next("TZ=UTC @monthly", t), at("2024-04-01T00:00:00Z"));
    assert_eq!(next("TZ=UTC @yearly", t), at("2025-01-01T00:00:00Z"));
    assert_eq!(
        next("@every 1h30m", "2024-03-10T10:20:00.5Z"),
        at("2024-03-10T11:50:00Z")
    );
}

#[test]
fn time_zones_and_daylight_saving() {
    // 09:00 in Berlin is 08:00 UTC in winter, 07:00 UTC in summer.
    assert_eq!(
        next("CRON_TZ=Europe/Berlin 0 9 * * *", "2024-01-10T12:00:00Z"),
        at("2024-01-11T08:00:00Z")
    );
    assert_eq!(
        next("TZ=Europe/Berlin 0 9 * * *", "2024-07-10T12:00:00Z"),
        at("2024-07-11T07:00:00Z")
    );
    // 02:30 does not exist on 2024-03-10 in New York: it runs at 03:30 EDT (07:30 UTC).
    assert_eq!(
        next("TZ=America/New_York 30 2 * * *", "2024-03-10T05:00:00Z"),
        at("2024-03-10T07:30:00Z")
    );
    // 01:30 happens twice on 2024-11-03: it runs once, the first time (EDT).
    assert_eq!(
        next("TZ=America/New_York 30 1 * * *", "2024-11-03T04:00:00Z"),
        at("2024-11-03T05:30:00Z")
    );
    assert_eq!(
        next("TZ=America/New_York 30 1 * * *", "2024-11-03T05:30:00Z"),
        at("2024-11-04T06:30:00Z")
    );
}

#[test]
fn bad_schedules_say_why() {
    let err = |s: &str| parse(s).expect_err("invalid");
    assert_eq!(err(""), "empty spec string");
    assert_eq!(
        err("* * * *"),
        "expected exactly 5 fields, found 4: [* * * *]"
    );
    assert_eq!(
        err("60 * * * *"),
        "end of range (60) above maximum (59): 60"
    );
    assert_eq!(
        err("* * 0 * *"),
        "beginning of range (0) below minimum (1): 0"
    );
    assert_eq!(
        err("5-1 * * * *"),
        "beginning of range (5) beyond end of range (1): 5-1"
    );
    assert_eq!(
        err("*/0 * * * *"),
        "step of range should be a positive number: */0"
    );
    assert_eq!(err("@often"), "unrecognized descriptor: @often");
    assert!(err("TZ=Mars/Base * * * * *").starts_with("provided bad location Mars/Base"));
    assert!(err("x * * * *").starts_with("failed to parse int from x"));
    assert!(parse("0 0 29 2 *").is_ok());
    assert_eq!(zone("Europe/Paris"), Ok(Zone::Named(Tz::Europe__Paris)));
    assert!(zone("Nowhere/Special").is_err());
}
