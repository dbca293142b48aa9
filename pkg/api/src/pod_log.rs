//! PodLogOptions (pods/log, and kubelet's containerLogs) as query parameters (`follow`, `previous`, `timestamps`, `tailLines`,
//! `sinceSeconds`, `sinceTime`, `limitBytes`, `container`, `stream`), checked with the API's messages.

use std::collections::HashMap;

use chrono::{DateTime, Duration as ChronoDuration, Utc};

/// What part of a log to serve, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub container: Option<String>,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    /// Entries before this are left out (sinceTime, or now minus sinceSeconds).
    pub since: Option<DateTime<Utc>>,
    pub limit_bytes: Option<u64>,
    /// Only this stream's entries ("stdout" or "stderr"; `stream=Stdout|Stderr`); None: all.
    pub stream: Option<&'static str>,
}

/// Go's strconv.ParseBool.
fn boolean(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{name}: Invalid value: {v:?}: not a boolean")),
    }
}

fn integer(name: &str, v: &str) -> Result<i64, String> {
    v.parse()
        .map_err(|_| format!("{name}: Invalid value: {v:?}: not an integer"))
}

impl Options {
    /// From a request's query parameters, as of `now`.
    pub fn from_query(q: &HashMap<String, String>, now: DateTime<Utc>) -> Result<Options, String> {
        let flag = |name: &str| q.get(name).map_or(Ok(false), |v| boolean(name, v));
        let number = |name: &str| q.get(name).map(|v| integer(name, v)).transpose();
        let mut errors = Vec::new();
        let tail = number("tailLines")?;
        if let Some(t) = tail.filter(|t| *t < 0) {
            errors.push(format!(
                "tailLines: Invalid value: {t}: must be greater than or equal to 0"
            ));
        }
        let limit = number("limitBytes")?;
        if let Some(l) = limit.filter(|l| *l < 1) {
            errors.push(format!(
                "limitBytes: Invalid value: {l}: must be greater than 0"
            ));
        }
        let since_seconds = number("sinceSeconds")?;
        if let Some(s) = since_seconds.filter(|s| *s < 1) {
            errors.push(format!(
                "sinceSeconds: Invalid value: {s}: must be greater than 0"
            ));
        }
        let since_time = match q.get("sinceTime") {
            Some(t) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|_| format!("sinceTime: Invalid value: {t:?}: not an RFC 3339 time"))?
                    .with_timezone(&Utc),
            ),
            None => None,
        };
        let stream = match q.get("stream").map(String::as_str) {
            None | Some("All") => None,
            Some("Stdout") => Some("stdout"),
            Some("Stderr") => Some("stderr"),
            Some(other) => {
                return Err(format!(
                    "stream: Unsupported value: {other:?}: supported values: \"All\", \"Stderr\", \"Stdout\""
                ));
            }
        };
        if stream.is_some() && tail.is_some() {
            errors.push("tailLines: Forbidden: tailLines is not supported when specific stream is requested".into());
        }
        if since_seconds.is_some() && since_time.is_some() {
            errors.push("at most one of `sinceTime` or `sinceSeconds` may be specified".into());
        }
        if !errors.is_empty() {
            return Err(errors.join(", "));
        }
        let since = since_time.or_else(|| {
            since_seconds.map(|s| now - ChronoDuration::seconds(s.min(i64::MAX / 1_000_000_000)))
        });
        Ok(Options {
            container: q.get("container").filter(|c| !c.is_empty()).cloned(),
            follow: flag("follow")?,
            previous: flag("previous")?,
            timestamps: flag("timestamps")?,
            tail_lines: tail.map(|t| t.unsigned_abs()),
            since,
            limit_bytes: limit.map(|l| l.unsigned_abs()),
            stream,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parameters_become_options() {
        let now: DateTime<Utc> = "2024-01-02T03:04:05Z".parse().unwrap();
        let o = Options::from_query(
            &query(&[
                ("follow", "true"),
                ("timestamps", "1"),
                ("tailLines", "10"),
                ("sinceSeconds", "5"),
                ("limitBytes", "100"),
                ("container", "web"),
            ]),
            now,
        )
        .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!(o.tail_lines, Some(10));
        assert_eq!(o.limit_bytes, Some(100));
        assert_eq!(o.container.as_deref(), Some("web"));
        assert_eq!(o.since, Some("2024-01-02T03:04:00Z".parse().unwrap()));
        let t = Options::from_query(&query(&[("sinceTime", "2024-01-01T00:00:00Z")]), now);
        assert_eq!(
            t.unwrap().since,
            Some("2024-01-01T00:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_apis_messages() {
        let now = Utc::now();
        let err = |pairs: &[(&str, &str)]| Options::from_query(&query(pairs), now).unwrap_err();
        assert_eq!(
            err(&[("tailLines", "-1")]),
            "tailLines: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            err(&[("limitBytes", "0")]),
            "limitBytes: Invalid value: 0: must be greater than 0"
        );
        assert!(
            err(&[("sinceSeconds", "5"), ("sinceTime", "2024-01-01T00:00:00Z")])
                .contains("at most one of `sinceTime` or `sinceSeconds`")
        );
        assert!(err(&[("follow", "maybe")]).contains("follow"));
        assert!(err(&[("sinceTime", "yesterday")]).contains("sinceTime"));
    }
}
