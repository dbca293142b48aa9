//! Which scheduled time is due (kube-controller-manager's mostRecentScheduleTime): only the most
//! recent unmet time since the last schedule (or the CronJob's creation) is started, never a
//! backlog; more than 100 missed times is reported.

use chrono::{DateTime, Duration, Utc};

use super::schedule::Schedule;

/// How many scheduled times passed without a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    /// More than 100: event TooManyMissedTimes.
    Many,
}

/// What the schedule says about the times since `earliest`.
#[derive(Debug, Clone, PartialEq)]
pub struct Recent {
    pub earliest: DateTime<Utc>,
    /// The most recent time a Job should have been started, if one has passed.
    pub most_recent: Option<DateTime<Utc>>,
    pub missed: Missed,
}

/// The times a CronJob is judged from.
#[derive(Debug, Clone, Copy)]
pub struct History {
    pub created: DateTime<Utc>,
    pub last_schedule: Option<DateTime<Utc>>,
    pub starting_deadline_seconds: Option<i64>,
}

pub const INVALID: &str = "time difference between two schedules is less than 1 second";

/// The most recent scheduled time at or before `now` since the last schedule; with
/// `with_deadline`, nothing older than startingDeadlineSeconds is looked at.
pub fn most_recent(
    schedule: &Schedule,
    h: &History,
    now: DateTime<Utc>,
    with_deadline: bool,
) -> Result<Recent, String> {
    let mut earliest = h.last_schedule.unwrap_or(h.created);
    if with_deadline && let Some(s) = h.starting_deadline_seconds {
        earliest = earliest.max(now - Duration::seconds(s));
    }
    let none = |missed| Recent {
        earliest,
        most_recent: None,
        missed,
    };
    let Some(t1) = schedule.next(earliest) else {
        return Err(INVALID.into());
    };
    if now < t1 {
        return Ok(none(Missed::None));
    }
    let Some(t2) = schedule.next(t1) else {
        return Err(INVALID.into());
    };
    if now < t2 {
        return Ok(Recent {
            earliest,
            most_recent: Some(t1),
            missed: Missed::Few,
        });
    }
    let between = (t2 - t1).num_milliseconds().saturating_add(500) / 1000;
    if between < 1 {
        return Err(INVALID.into());
    }
    let elapsed = (now - t1).num_seconds();
    let missed_count = elapsed / between + 1;
    // Start one interval before the estimate and walk forward: exact for irregular schedules.
    let mut t = t1 + Duration::seconds((missed_count - 2) * between);
    let mut latest = None;
    while let Some(next) = schedule.next(t).filter(|n| *n <= now) {
        latest = Some(next);
        t = next;
    }
    let missed = if missed_count > 100 {
        Missed::Many
    } else {
        Missed::Few
    };
    Ok(Recent {
        earliest,
        most_recent: latest,
        missed,
    })
}

/// The scheduled time to start a Job for now, if any (and how many were missed).
pub fn next_unmet(
    schedule: &Schedule,
    h: &History,
    now: DateTime<Utc>,
) -> Result<Option<(DateTime<Utc>, Missed)>, String> {
    let r = most_recent(schedule, h, now, true)?;
    Ok(r.most_recent.filter(|t| *t <= now).map(|t| (t, r.missed)))
}

/// How long until the next scheduled time (plus 100 ms so the time has surely come).
pub fn requeue_after(schedule: &Schedule, h: &History, now: DateTime<Utc>) -> std::time::Duration {
    let from = match most_recent(schedule, h, now, false) {
        Err(_) => now,
        Ok(Recent {
            most_recent: Some(t),
            ..
        }) => t,
        Ok(Recent {
            earliest,
            missed: Missed::None,
            ..
        }) => earliest,
        Ok(_) => now,
    };
    let next = schedule.next(from).unwrap_or(now + Duration::hours(1));
    (next + Duration::milliseconds(100) - now)
        .to_std()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cronjob::schedule::parse;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn history(created: &str, last: Option<&str>, deadline: Option<i64>) -> History {
        History {
            created: at(created),
            last_schedule: last.map(at),
            starting_deadline_seconds: deadline,
        }
    }

    #[test]
    fn only_the_most_recent_missed_time_is_due() {
        let s = parse("TZ=UTC 0 * * * *").expect("parse");
        let h = history("2024-01-01T00:30:00Z", None, None);
        // Before the first time: nothing due.
        assert_eq!(next_unmet(&s, &h, at("2024-01-01T00:59:00Z")), Ok(None));
        // Three hours missed: only the last is started.
        let (t, missed) = next_unmet(&s, &h, at("2024-01-01T03:10:00Z"))
            .expect("valid")
            .expect("due");
        assert_eq!(t, at("2024-01-01T03:00:00Z"));
        assert_eq!(missed, Missed::Few);
        // Already started at 03:00: nothing until 04:00.
        let done = history("2024-01-01T00:30:00Z", Some("2024-01-01T03:00:00Z"), None);
        assert_eq!(next_unmet(&s, &done, at("2024-01-01T03:10:00Z")), Ok(None));
        let wait = requeue_after(&s, &done, at("2024-01-01T03:10:00Z"));
        assert_eq!(wait, std::time::Duration::from_millis(50 * 60 * 1000 + 100));
    }

    #[test]
    fn more_than_a_hundred_missed_times_are_many() {
        let s = parse("TZ=UTC * * * * *").expect("parse");
        let h = history("2024-01-01T00:00:00Z", None, None);
        let (t, missed) = next_unmet(&s, &h, at("2024-01-01T05:00:30Z"))
            .expect("valid")
            .expect("due");
        assert_eq!(t, at("2024-01-01T05:00:00Z"));
        assert_eq!(missed, Missed::Many);
    }

    #[test]
    fn the_starting_deadline_limits_how_far_back_to_look() {
        let s = parse("TZ=UTC 0 * * * *").expect("parse");
        let h = history("2024-01-01T00:30:00Z", None, Some(300));
        // 03:10 is 10 minutes past 03:00, beyond the 5 minute deadline.
        assert_eq!(next_unmet(&s, &h, at("2024-01-01T03:10:00Z")), Ok(None));
        let (t, _) = next_unmet(&s, &h, at("2024-01-01T03:04:00Z"))
            .expect("valid")
            .expect("due");
        assert_eq!(t, at("2024-01-01T03:00:00Z"));
    }

    #[test]
    fn an_impossible_date_is_invalid() {
        let s = parse("TZ=UTC 59 23 31 2 *").expect("parse");
        let h = history("2024-01-01T00:00:00Z", None, None);
        assert_eq!(
            next_unmet(&s, &h, at("2024-03-01T00:00:00Z")),
            Err(INVALID.to_string())
        );
    }
}
