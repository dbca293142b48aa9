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
        assert_eq!(parse("x"), None);
        assert_eq!(format(500, true), "500m");
        assert_eq!(format(2000, true), "2");
        assert_eq!(format(128 * 1024 * 1024 * 1000, false), "128Mi");
    }
}
