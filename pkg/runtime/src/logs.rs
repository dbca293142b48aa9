//! The CRI container log format, as containerd writes it and the kubelet reads it: one entry
//! per line, `<RFC3339Nano time> <stdout|stderr> <F|P> <content>\n`. A line longer than
//! 16 KiB is split into partial (P) entries ended by a full (F) one; output still without a
//! newline when the stream closes is written as a full entry.
//!
//! Log rotation (the kubelet renames a running container's file to `<file>.<timestamp>`)
//! needs no signal: the shim's `follow_rotation` thread sees the path name another file (or
//! none) and reopens it, under the lock every entry is written with, so each entry lands
//! whole in the renamed file or in the new one and none is lost.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

/// The longest content of one entry; longer lines become partial entries.
pub(crate) const MAX_LINE: usize = 16 * 1024;
/// How often the shim looks whether its log file was rotated away.
const ROTATION_CHECK: Duration = Duration::from_millis(100);

/// Which stream an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A container's log file, shared by its stream readers (each entry is one write).
#[derive(Debug, Clone)]
pub(crate) struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl LogFile {
    /// Open (appending) or create the log file and its parent directories.
    pub(crate) fn open(path: &Path) -> io::Result<LogFile> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Reopen the file at its path once it was renamed away (rotated), from a thread that
    /// looks every `ROTATION_CHECK` for as long as the log is in use.
    pub(crate) fn follow_rotation(&self) -> io::Result<()> {
        let file = Arc::downgrade(&self.file);
        let path = self.path.clone();
        std::thread::Builder::new()
            .name("log-rotation".into())
            .spawn(move || {
                let mut failed = false;
                loop {
                    std::thread::sleep(ROTATION_CHECK);
                    let Some(file) = file.upgrade() else {
                        return;
                    };
                    match reopen_if_moved(&path, &file) {
                        Ok(true) => tracing::debug!(path = %path.display(), "log file reopened"),
                        Ok(false) => {}
                        // Said once: the directory may be gone with its pod.
                        Err(e) if !failed => {
                            failed = true;
                            tracing::warn!(path = %path.display(), error = %e, "reopening the log file");
                        }
                        Err(_) => {}
                    }
                }
            })
            .map(drop)
    }

    fn write_entry(&self, stream: Stream, partial: bool, content: &[u8]) -> io::Result<()> {
        let entry = format_entry(Utc::now(), stream, partial, content);
        let mut file = self
            .file
            .lock()
            .map_err(|_| io::Error::other("log file lock poisoned"))?;
        file.write_all(&entry)
    }

    /// Copy `reader` into the log until it ends. A read error of EIO (a terminal whose
    /// other side closed) counts as the end.
    pub(crate) fn copy(&self, stream: Stream, mut reader: impl Read) -> io::Result<()> {
        let mut pending: Vec<u8> = Vec::with_capacity(MAX_LINE);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
                Err(e) => return Err(e),
            };
            pending.extend_from_slice(&buf[..n]);
            let mut start = 0;
            while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
                let line = &pending[start..start + pos];
                self.write_line(stream, line)?;
                start += pos + 1;
            }
            pending.drain(..start);
            while pending.len() >= MAX_LINE {
                self.write_entry(stream, true, &pending[..MAX_LINE])?;
                pending.drain(..MAX_LINE);
            }
        }
        if !pending.is_empty() {
            self.write_entry(stream, false, &pending)?;
        }
        Ok(())
    }

    /// A complete line (without its newline), split when over the limit.
    fn write_line(&self, stream: Stream, line: &[u8]) -> io::Result<()> {
        // A terminal ends lines with "\r\n"; the entry holds the text only.
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut chunks = line.chunks(MAX_LINE).peekable();
        if chunks.peek().is_none() {
            return self.write_entry(stream, false, b"");
        }
        while let Some(chunk) = chunks.next() {
            self.write_entry(stream, chunks.peek().is_some(), chunk)?;
        }
        Ok(())
    }
}

/// Open `path` anew when it no longer names the open file (renamed or removed); whether
/// it did. The lock is held throughout, so no entry is written meanwhile.
fn reopen_if_moved(path: &Path, file: &Mutex<File>) -> io::Result<bool> {
    let mut file = file
        .lock()
        .map_err(|_| io::Error::other("log file lock poisoned"))?;
    let open = file.metadata()?;
    match std::fs::metadata(path) {
        Ok(m) if m.dev() == open.dev() && m.ino() == open.ino() => return Ok(false),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    *file = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(true)
}

/// One log entry, newline included.
pub(crate) fn format_entry(
    time: DateTime<Utc>,
    stream: Stream,
    partial: bool,
    content: &[u8],
) -> Vec<u8> {
    let mut entry = Vec::with_capacity(content.len() + 48);
    entry.extend_from_slice(rfc3339_nano(time).as_bytes());
    entry.push(b' ');
    entry.extend_from_slice(stream.as_str().as_bytes());
    entry.extend_from_slice(if partial { b" P " } else { b" F " });
    entry.extend_from_slice(content);
    entry.push(b'\n');
    entry
}

/// Go's time.RFC3339Nano: nanoseconds with trailing zeros (and a bare dot) dropped.
pub(crate) fn rfc3339_nano(time: DateTime<Utc>) -> String {
    let full = time.to_rfc3339_opts(SecondsFormat::Nanos, true);
    let Some(body) = full.strip_suffix('Z') else {
        return full;
    };
    let trimmed = body.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn entries(input: &[u8]) -> Vec<(String, String, String)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/0.log");
        let log = LogFile::open(&path).unwrap();
        log.copy(Stream::Stderr, input).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        text.lines()
            .map(|l| {
                let mut parts = l.splitn(4, ' ');
                let time = parts.next().unwrap().to_string();
                assert!(time.ends_with('Z'), "{time}");
                let stream = parts.next().unwrap().to_string();
                let tag = parts.next().unwrap().to_string();
                (stream, tag, parts.next().unwrap_or("").to_string())
            })
            .collect()
    }

    #[test]
    fn a_rotated_file_is_reopened_and_no_entry_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c/0.log");
        let log = LogFile::open(&path).unwrap();
        log.copy(Stream::Stdout, &b"one\n"[..]).unwrap();
        assert!(!reopen_if_moved(&path, &log.file).unwrap());
        let rotated = dir.path().join("c/0.log.20240102-030405");
        std::fs::rename(&path, &rotated).unwrap();
        // Written before the shim noticed: still in the rotated file.
        log.copy(Stream::Stdout, &b"two\n"[..]).unwrap();
        log.follow_rotation().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !path.exists() {
            assert!(std::time::Instant::now() < deadline, "never reopened");
            std::thread::sleep(Duration::from_millis(20));
        }
        log.copy(Stream::Stdout, &b"three\n"[..]).unwrap();
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(old.contains(" stdout F one\n"), "{old}");
        assert!(old.contains(" F two\n") && !old.contains("three"), "{old}");
        assert!(
            new.contains(" F three\n") && new.lines().count() == 1,
            "{new}"
        );
    }

    #[test]
    fn formats_time_as_go_rfc3339nano() {
        let t = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(rfc3339_nano(t), "2024-01-02T03:04:05Z");
        let t = t + chrono::Duration::nanoseconds(120_000_000);
        assert_eq!(rfc3339_nano(t), "2024-01-02T03:04:05.12Z");
        let t = t + chrono::Duration::nanoseconds(7);
        assert_eq!(rfc3339_nano(t), "2024-01-02T03:04:05.120000007Z");
    }

    #[test]
    fn writes_full_lines_and_a_trailing_fragment() {
        let got = entries(b"one\r\n\ntwo\nthree");
        let want = [
            ("stderr", "F", "one"),
            ("stderr", "F", ""),
            ("stderr", "F", "two"),
            ("stderr", "F", "three"),
        ];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0.as_str(), g.1.as_str(), g.2.as_str()), w);
        }
    }

    #[test]
    fn splits_long_lines_into_partial_entries() {
        let mut input = vec![b'x'; MAX_LINE * 2 + 10];
        input.push(b'\n');
        let got = entries(&input);
        let tags: Vec<&str> = got.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(tags, ["P", "P", "F"]);
        assert_eq!(got[0].2.len(), MAX_LINE);
        assert_eq!(got[2].2.len(), 10);
    }
}
