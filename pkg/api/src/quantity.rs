//! resource.Quantity: "100m", "1.5", "128Mi", "1G", "1e3", read as thousandths of a unit.

/// Thousandths of a unit; None when `s` is not a quantity.
pub fn parse(s: &str) -> Option<i128> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let (mantissa, exp10, base2): (&str, i32, u32) = match suffix {
        "" => (num, 0, 0),
        "n" => (num, -9, 0),
        "u" => (num, -6, 0),
        "m" => (num, -3, 0),
        "k" => (num, 3, 0),
        "M" => (num, 6, 0),
        "G" => (num, 9, 0),
        "T" => (num, 12, 0),
        "P" => (num, 15, 0),
        "E" => (num, 18, 0),
        "Ki" => (num, 0, 10),
        "Mi" => (num, 0, 20),
        "Gi" => (num, 0, 30),
        "Ti" => (num, 0, 40),
        "Pi" => (num, 0, 50),
        "Ei" => (num, 0, 60),
        e if e.starts_with(['e', 'E']) => (num, e[1..].parse().ok()?, 0),
        _ => return None,
    };
    let value: f64 = mantissa.parse().ok()?;
    let milli = value * 10f64.powi(exp10 + 3) * 2f64.powi(base2 as i32);
    Some(milli.ceil() as i128)
}

/// A quantity as Kubernetes prints it, in the style of `like` (cpu-like: millis).
pub fn format(milli: i128, cpu: bool) -> String {
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let whole = milli / 1000;
    if cpu || whole == 0 {
        return whole.to_string();
    }
    for (suffix, shift) in [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ] {
        let unit = 1i128 << shift;
        if whole % unit == 0 {
            return format!("{}{suffix}", whole / unit);
        }
    }
    whole.to_string()
}

/// `value`×10^`exp10` in canonical decimal SI form, as resource.Quantity prints it
/// (`200000000`×10^-9 is `200m`; 1234×10^-9 is `1234n`).
pub fn decimal_si(mut value: i128, mut exp10: i32) -> String {
    if value == 0 {
        return "0".into();
    }
    while exp10 % 3 != 0 {
        value *= 10;
        exp10 -= 1;
    }
    while value % 1000 == 0 && exp10 < 18 {
        value /= 1000;
        exp10 += 3;
    }
    let suffix = match exp10 {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        _ => "E",
    };
    format!("{value}{suffix}")
}

/// A duration as Go's time.Duration prints it (`15s`, `1m0.5s`, `250ms`).
pub fn go_duration(d: std::time::Duration) -> String {
    fn frac(whole: u128, rem: u128, digits: usize) -> String {
        let f = format!("{rem:0digits$}");
        let f = f.trim_end_matches('0');
        if f.is_empty() {
            whole.to_string()
        } else {
            format!("{whole}.{f}")
        }
    }
    let ns = d.as_nanos();
    match ns {
        0 => "0s".into(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", frac(n / 1_000, n % 1_000, 3)),
        n if n < 1_000_000_000 => format!("{}ms", frac(n / 1_000_000, n % 1_000_000, 6)),
        n => {
            let secs = n / 1_000_000_000;
            let s = frac(secs % 60, n % 1_000_000_000, 9);
            match (secs / 3600, secs / 60 % 60) {
                (0, 0) => format!("{s}s"),
                (0, m) => format!("{m}m{s}s"),
                (h, m) => format!("{h}h{m}m{s}s"),
            }
        }
    }
}

/// A duration as Go's time.ParseDuration reads it (`10.5s`, `1m0s`, `250ms`, `1h2m`, `+5s`,
/// `0`): the one parser of every duration minik takes (flags, kubelet settings, CronJob
/// schedules, HPA windows). None when it is not one (no unit, an unknown unit, empty) or
/// is negative.
pub fn parse_go_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(std::time::Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return None;
    }
    let mut nanos = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        nanos += value * scale;
        rest = &rest[unit_len..];
    }
    let nanos = nanos.round();
    (nanos.is_finite() && nanos < u64::MAX as f64)
        .then(|| std::time::Duration::from_nanos(nanos as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse("100m"), Some(100));
        assert_eq!(parse("2"), Some(2000));
        assert_eq!(parse("1.5"), Some(1500));
        assert_eq!(parse("128Mi"), Some(128 * 1024 * 1024 * 1000));
        assert_eq!(parse("1G"), Some(1_000_000_000_000));
        assert_eq!(parse("1e3"), Some(1_000_000));
        assert_eq!(parse("199999999n"), Some(200));
        assert_eq!(parse("1500u"), Some(2));
        assert_eq!(parse("x"), None);
        assert_eq!(format(500, true), "500m");
        assert_eq!(format(2000, true), "2");
        assert_eq!(format(128 * 1024 * 1024 * 1000, false), "128Mi");
    }

    #[test]
    fn decimal_si_is_canonical() {
        assert_eq!(decimal_si(200_000_000, -9), "200m");
        assert_eq!(decimal_si(1234, -9), "1234n");
        assert_eq!(decimal_si(1_000_000_000, -9), "1");
        assert_eq!(decimal_si(67_108_864_000, -3), "67108864");
        assert_eq!(decimal_si(2_000_000, -3), "2k");
        assert_eq!(decimal_si(0, -3), "0");
        assert_eq!(decimal_si(5, -2), "50m");
    }

    #[test]
    fn go_durations() {
        use std::time::Duration;
        for (d, s) in [
            (Duration::from_secs(15), "15s"),
            (Duration::from_millis(10_500), "10.5s"),
            (Duration::from_millis(60_500), "1m0.5s"),
            (Duration::from_secs(3723), "1h2m3s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(go_duration(d), s);
            assert_eq!(parse_go_duration(s), Some(d));
        }
        for (s, d) in [
            ("1h", Duration::from_secs(3600)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
            ("300ms", Duration::from_millis(300)),
            ("+5s", Duration::from_secs(5)),
            ("2us", Duration::from_micros(2)),
            ("0", Duration::ZERO),
        ] {
            assert_eq!(parse_go_duration(s), Some(d), "{s}");
        }
        for bad in ["", "x", "5", "5d", "1d", "m", "-1s", "1h-5m"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }
}
