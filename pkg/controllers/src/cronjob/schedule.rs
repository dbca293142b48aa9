//! Cron schedules as kube-controller-manager reads them (robfig/cron's `ParseStandard`): five
//! fields (minute, hour, day of month, month, day of week) with lists, ranges, steps and
//! names, the `@yearly`..`@hourly` and `@every <duration>` descriptors, and a `TZ=`/`CRON_TZ=`
//! prefix naming an IANA time zone (without one, the machine's local time).

use chrono::{DateTime, Datelike, Duration, Local, NaiveDate, NaiveDateTime, TimeZone, Timelike};
use chrono::{LocalResult, Offset, Utc};
use chrono_tz::Tz;

/// Where the fields are read: the machine's local time or a named zone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    Local,
    Named(Tz),
}

/// An IANA time zone name as Go's `time.LoadLocation` takes it ("" and "UTC" are UTC).
pub fn zone(name: &str) -> Result<Zone, String> {
    match name {
        "" | "UTC" => Ok(Zone::Named(Tz::UTC)),
        "Local" => Ok(Zone::Local),
        _ => name
            .parse::<Tz>()
            .map(Zone::Named)
            .map_err(|_| format!("unknown time zone {name}")),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Field bitsets; bit 63 marks a field written `*` or `?`.
    Fields {
        minute: u64,
        hour: u64,
        dom: u64,
        month: u64,
        dow: u64,
        zone: Zone,
    },
    /// `@every <duration>`: a fixed delay (whole seconds, at least one).
    Every(Duration),
}

const STAR: u64 = 1 << 63;

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Parse a schedule; errors read as robfig/cron's.
pub fn parse(spec: &str) -> Result<Schedule, String> {
    let mut spec = spec.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    let mut zone = Zone::Local;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let (prefix, rest) = spec.split_once(' ').unwrap_or((spec, ""));
        let name = prefix.split_once('=').map(|(_, n)| n).unwrap_or_default();
        zone = self::zone(name).map_err(|e| format!("provided bad location {name}: {e}"))?;
        spec = rest.trim();
    }
    let text = match spec {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => {
            if let Some(d) = spec.strip_prefix("@every ") {
                let d = go_duration(d.trim())
                    .map_err(|e| format!("failed to parse duration {spec}: {e}"))?;
                let d = d.max(Duration::seconds(1));
                return Ok(Schedule::Every(Duration::seconds(d.num_seconds())));
            }
            if spec.starts_with('@') {
                return Err(format!("unrecognized descriptor: {spec}"));
            }
            spec
        }
    };
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = fields[..] else {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    };
    Ok(Schedule::Fields {
        minute: field(minute, &MINUTE)?,
        hour: field(hour, &HOUR)?,
        dom: field(dom, &DOM)?,
        month: field(month, &MONTH)?,
        dow: field(dow, &DOW)?,
        zone,
    })
}

fn field(text: &str, b: &Bounds) -> Result<u64, String> {
    text.split(',')
        .try_fold(0, |bits, r| Ok(bits | range(r, b)?))
}

fn range(expr: &str, b: &Bounds) -> Result<u64, String> {
    let (span, step) = match expr.split('/').collect::<Vec<_>>()[..] {
        [span] => (span, None),
        [span, step] => (span, Some(number(step)?)),
        _ => return Err(format!("too many slashes: {expr}")),
    };
    let (mut start, mut end, mut extra) = (b.min, b.max, 0);
    if span == "*" || span == "?" {
        extra = STAR;
    } else {
        match span.split('-').collect::<Vec<_>>()[..] {
            [one] => {
                start = int_or_name(one, b)?;
                end = if step.is_some() { b.max } else { start };
            }
            [low, high] => (start, end) = (int_or_name(low, b)?, int_or_name(high, b)?),
            _ => return Err(format!("too many hyphens: {expr}")),
        }
    }
    if step.is_some_and(|s| s > 1) {
        extra = 0;
    }
    let step = step.unwrap_or(1);
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok((start..=end)
        .step_by(step as usize)
        .fold(extra, |bits, i| bits | 1 << i))
}

fn int_or_name(text: &str, b: &Bounds) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    match b.names.iter().position(|n| *n == lower) {
        Some(i) => Ok(b.min + i as u32),
        None => number(text),
    }
}

fn number(text: &str) -> Result<u32, String> {
    let n: i64 = text
        .parse()
        .map_err(|e| format!("failed to parse int from {text}: {e}"))?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {text}"));
    }
    u32::try_from(n).map_err(|e| format!("failed to parse int from {text}: {e}"))
}

/// A Go duration ("1h30m", "90s", "1.5h").
fn go_duration(text: &str) -> Result<Duration, String> {
    minik_api::quantity::parse_go_duration(text)
        .and_then(|d| Duration::from_std(d).ok())
        .ok_or_else(|| format!("time: invalid duration \"{text}\""))
}

impl Schedule {
    /// The first activation strictly after `after` (None if none within five years).
    pub fn next(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(d) => {
                let whole = after.with_nanosecond(0).unwrap_or(after);
                Some(whole + *d)
            }
            Schedule::Fields { zone, .. } => match zone {
                Zone::Local => self.next_in(&Local, after),
                Zone::Named(tz) => self.next_in(tz, after),
            },
        }
    }

    fn next_in<Z: TimeZone>(&self, tz: &Z, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let Schedule::Fields {
            minute,
            hour,
            dom,
            month,
            dow,
            ..
        } = *self
        else {
            return None;
        };
        let has = |bits: u64, v: u32| bits & (1 << v) != 0;
        let start = after.with_timezone(tz).naive_local();
        let mut t = start.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let limit = start.year() + 5;
        while t.year() <= limit {
            if !has(month, t.month()) {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            let (dom_ok, dow_ok) = (
                has(dom, t.day()),
                has(dow, t.weekday().num_days_from_sunday()),
            );
            let day_ok = if dom & STAR != 0 || dow & STAR != 0 {
                dom_ok && dow_ok
            } else {
                dom_ok || dow_ok
            };
            if !day_ok {
                t = t.date().succ_opt()?.and_hms_opt(0, 0, 0)?;
                continue;
            }
            if !has(hour, t.hour()) {
                t = (t + Duration::hours(1)).with_minute(0)?;
                continue;
            }
            if !has(minute, t.minute()) {
                t += Duration::minutes(1);
                continue;
            }
            match resolve(tz, t) {
                Some(at) if at > after => return Some(at),
                _ => t += Duration::minutes(1),
            }
        }
        None
    }
}

/// A wall-clock time in `tz`: the earlier of two in a repeated hour; in a skipped hour, read
/// with the offset from before the gap (as Go's `time.Date`: 02:30 becomes 03:30).
fn resolve<Z: TimeZone>(tz: &Z, t: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&t) {
        LocalResult::Single(d) | LocalResult::Ambiguous(d, _) => Some(d.with_timezone(&Utc)),
        LocalResult::None => {
            let before = tz
                .from_local_datetime(&(t - Duration::hours(3)))
                .earliest()?;
            let offset = before.offset().fix();
            Some((t - Duration::seconds(i64::from(offset.local_minus_utc()))).and_utc())
        }
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
