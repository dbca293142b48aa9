//! A container's log as kubelet's containerLogs serves it: the CRI-format file
//! (`<RFC3339Nano time> <stream> <P|F> <content>` per line, P for a partial line) turned
//! back into the container's output, with the PodLogOptions the API passes on: tailLines,
//! sinceSeconds/sinceTime, timestamps, limitBytes, previous and follow.
//!
//! - minik_api::pod_log: the query parameters, checked as the API checks PodLogOptions.
//! - follow.rs: streaming a file (and its successor after a rotation) while the container
//!   runs.
//!
//! As kubelet's, only the run's current file is read: lines rotated away are not served.

mod follow;

use chrono::{DateTime, Utc};

pub use follow::{stream, stream_from};
pub use minik_api::pod_log::Options;

/// One line of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub time: DateTime<Utc>,
    /// "stdout" or "stderr".
    pub stream: &'a str,
    /// A partial line: the next entry continues it.
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parse one line (without its newline); None when it is not in the CRI format.
pub fn parse(line: &[u8]) -> Option<Entry<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or_default();
    let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    Some(Entry {
        time,
        stream,
        partial: tag.first() == Some(&b'P'),
        content,
    })
}

/// A time as Go's RFC3339Nano prints it (trailing zeros of the fraction dropped), which is
/// how kubelet writes `timestamps=true` prefixes.
pub fn rfc3339_nano(t: &DateTime<Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        return format!("{base}Z");
    }
    let fraction = format!("{nanos:09}");
    format!("{base}.{}Z", fraction.trim_end_matches('0'))
}

/// Where the last `n` lines of `data` start (a final line without its newline counts).
pub fn tail_start(data: &[u8], n: u64) -> usize {
    if n == 0 {
        return data.len();
    }
    let mut seen = 0u64;
    // A trailing newline ends the last line; it does not start another.
    let end = if data.last() == Some(&b'\n') {
        data.len() - 1
    } else {
        data.len()
    };
    for i in (0..end).rev() {
        if data[i] == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

/// Renders entries into the container's output, per the options, counting the bytes
/// `limitBytes` allows.
#[derive(Debug)]
pub struct Renderer {
    since: Option<DateTime<Utc>>,
    timestamps: bool,
    /// Bytes still allowed (None: no limit).
    left: Option<u64>,
    /// Only this stream's entries.
    stream: Option<&'static str>,
}

impl Renderer {
    pub fn new(opts: &Options) -> Renderer {
        Renderer {
            since: opts.since,
            timestamps: opts.timestamps,
            left: opts.limit_bytes,
            stream: opts.stream,
        }
    }

    /// Whether limitBytes has been reached.
    pub fn done(&self) -> bool {
        self.left == Some(0)
    }

    /// Render the complete lines of `data` into `out`; the bytes consumed (up to and
    /// including the last newline: a line still being written waits for its end).
    pub fn render(&mut self, data: &[u8], out: &mut Vec<u8>) -> usize {
        let mut consumed = 0;
        while let Some(nl) = data[consumed..].iter().position(|b| *b == b'\n') {
            let line = &data[consumed..consumed + nl];
            consumed += nl + 1;
            if self.done() {
                break;
            }
            let Some(entry) = parse(line) else {
                continue;
            };
            if self.since.is_some_and(|s| entry.time < s)
                || self.stream.is_some_and(|s| s != entry.stream)
            {
                continue;
            }
            let mut piece = Vec::with_capacity(entry.content.len() + 40);
            if self.timestamps {
                piece.extend_from_slice(rfc3339_nano(&entry.time).as_bytes());
                piece.push(b' ');
            }
            piece.extend_from_slice(entry.content);
            if !entry.partial {
                piece.push(b'\n');
            }
            if let Some(left) = self.left.as_mut() {
                let take = piece
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                piece.truncate(take);
                *left -= take as u64;
            }
            out.extend_from_slice(&piece);
        }
        consumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &[u8] = b"2024-01-02T03:04:05.100000000Z stdout F one\n\
2024-01-02T03:04:06.000000000Z stderr P two-\n\
2024-01-02T03:04:06.500000000Z stderr F part\n\
2024-01-02T03:04:07.123456789Z stdout F three\n";

    fn render(opts: &Options, data: &[u8]) -> String {
        let mut out = Vec::new();
        Renderer::new(opts).render(data, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_are_parsed_and_partials_joined() {
        let e = parse(b"2024-01-02T03:04:05.1Z stderr P abc def").unwrap();
        assert_eq!(
            (e.stream, e.partial, e.content),
            ("stderr", true, &b"abc def"[..])
        );
        assert!(parse(b"not a log line").is_none());
        assert!(parse(b"2024-01-02T03:04:05Z stdin F x").is_none());
        assert_eq!(render(&Options::default(), LOG), "one\ntwo-part\nthree\n");
    }

    #[test]
    fn timestamps_since_and_limit_bytes_apply_per_entry() {
        let stamped = Options {
            timestamps: true,
            ..Options::default()
        };
        assert_eq!(
            render(
                &stamped,
                &LOG[..LOG.iter().position(|b| *b == b'\n').unwrap() + 1]
            ),
            "2024-01-02T03:04:05.1Z one\n"
        );
        let since = Options {
            since: Some("2024-01-02T03:04:06.6Z".parse().unwrap()),
            ..Options::default()
        };
        assert_eq!(render(&since, LOG), "three\n");
        let limited = Options {
            limit_bytes: Some(6),
            ..Options::default()
        };
        assert_eq!(render(&limited, LOG), "one\ntw");
        let stderr = Options {
            stream: Some("stderr"),
            ..Options::default()
        };
        assert_eq!(render(&stderr, LOG), "two-part\n");
        let stdout = Options {
            stream: Some("stdout"),
            ..Options::default()
        };
        assert_eq!(render(&stdout, LOG), "one\nthree\n");
    }

    #[test]
    fn an_unfinished_line_waits_for_its_newline() {
        let mut out = Vec::new();
        let data = b"2024-01-02T03:04:05Z stdout F a\n2024-01-02T03:04:05Z std";
        let used = Renderer::new(&Options::default()).render(data, &mut out);
        assert_eq!(used, 32);
        assert_eq!(out, b"a\n");
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        let data = b"a\nb\nc\n";
        assert_eq!(&data[tail_start(data, 2)..], b"b\nc\n");
        assert_eq!(&data[tail_start(data, 5)..], b"a\nb\nc\n");
        assert_eq!(tail_start(data, 0), data.len());
        assert_eq!(&b"a\nb"[tail_start(b"a\nb", 1)..], b"b");
    }

    #[test]
    fn times_print_as_go_rfc3339_nano() {
        let t: DateTime<Utc> = "2024-01-02T03:04:05.120000000Z".parse().unwrap();
        assert_eq!(rfc3339_nano(&t), "2024-01-02T03:04:05.12Z");
        let whole: DateTime<Utc> = "2024-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(rfc3339_nano(&whole), "2024-01-02T03:04:05Z");
    }
}
