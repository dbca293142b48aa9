//! Container log rotation, as kubelet's container log manager does it: every 10 s, a
//! running container's log file (`<n>.log`) at or over `container-log-max-size` is renamed
//! to `<n>.log.<YYYYMMDD-hhmmss>` and its shim reopens `<n>.log` (the shim notices the
//! rename; see minik_runtime's logs.rs: no entry is lost). Before that, leftovers of an
//! interrupted compression go, the oldest rotated files go so that at most
//! `container-log-max-files` files remain with the new one, and every rotated file but the
//! newest is gzipped (`.gz`). `kubectl logs` reads `<n>.log`, which is always there.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::policy::LogPolicy;

/// kubelet's timestampFormat, "20060102-150405".
const TIMESTAMP: &str = "%Y%m%d-%H%M%S";
const GZ: &str = ".gz";
const TMP: &str = ".tmp";
/// How long the shim has to reopen the log after it was renamed.
const REOPEN_WAIT: Duration = Duration::from_secs(5);

/// The rotated files of `log` (`<log>.*`), oldest first (by name: the timestamp).
pub fn rotated(log: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Remove the rotated files of `log` (its container is being removed).
pub fn remove_rotated(log: &Path) {
    for f in rotated(log) {
        if let Err(e) = fs::remove_file(&f)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::debug!(file = %f.display(), error = %e, "removing a rotated log");
        }
    }
}

fn has_suffix(p: &Path, suffix: &str) -> bool {
    p.to_str().is_some_and(|s| s.ends_with(suffix))
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// kubelet's filterUnusedLogs: temporary files, and uncompressed files whose compressed
/// copy exists (an interrupted compression), are not in use. (In use, unused.)
pub fn split_unused(logs: &[PathBuf]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    logs.iter().cloned().partition(|l| {
        if has_suffix(l, TMP) {
            return false;
        }
        has_suffix(l, GZ) || !logs.contains(&with_suffix(l, GZ))
    })
}

/// kubelet's removeExcessLogs: of `logs` (oldest first), those to remove so that
/// `max_files - 2` stay (room for the file being rotated and the new one).
pub fn excess(logs: &[PathBuf], max_files: usize) -> usize {
    logs.len().saturating_sub(max_files.saturating_sub(2))
}

/// Gzip `file` into `<file>.gz` (through `<file>.gz.tmp`), then remove it.
fn compress(file: &Path) -> io::Result<()> {
    let gz = with_suffix(file, GZ);
    let tmp = with_suffix(&gz, TMP);
    let write = || -> io::Result<()> {
        let mut input = File::open(file)?;
        let out = BufWriter::new(File::create(&tmp)?);
        let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        io::copy(&mut input, &mut encoder)?;
        encoder
            .finish()?
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        fs::rename(&tmp, &gz)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::remove_file(file)
}

/// Rotate `log` if it is at or over the policy's size; whether it was rotated. Blocking
/// (it waits for the shim to reopen the file).
pub fn rotate_if_needed(log: &Path, policy: &LogPolicy, now: DateTime<Utc>) -> io::Result<bool> {
    let size = match fs::metadata(log) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if size < policy.max_size {
        return Ok(false);
    }
    let (logs, unused) = split_unused(&rotated(log));
    for l in &unused {
        fs::remove_file(l)?;
    }
    let drop = excess(&logs, policy.max_files);
    for l in &logs[..drop] {
        fs::remove_file(l)?;
    }
    for l in logs[drop..].iter().filter(|l| !has_suffix(l, GZ)) {
        compress(l)?;
    }
    let target = with_suffix(log, &format!(".{}", now.format(TIMESTAMP)));
    if target.exists() {
        // Rotated already this second.
        return Ok(false);
    }
    fs::rename(log, &target)?;
    let deadline = Instant::now() + REOPEN_WAIT;
    while !log.exists() {
        if Instant::now() >= deadline {
            // The shim did not reopen (it is gone or predates rotation): put the file back
            // unless it reappeared meanwhile, as kubelet does when a reopen fails.
            // A hard link never replaces a file (renameat2's RENAME_NOREPLACE).
            return match fs::hard_link(&target, log) {
                Ok(()) => {
                    fs::remove_file(&target)?;
                    Err(io::Error::other(format!(
                        "the container's shim did not reopen {}",
                        log.display()
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(true),
                Err(e) => Err(e),
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn names(paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn interrupted_compressions_and_temporary_files_are_unused() {
        let p = |n: &str| PathBuf::from(format!("/l/0.log.{n}"));
        let logs = [p("1.gz"), p("2"), p("2.gz"), p("3.gz.tmp"), p("3"), p("4")];
        let (used, unused) = split_unused(&logs);
        assert_eq!(
            names(&used),
            ["0.log.1.gz", "0.log.2.gz", "0.log.3", "0.log.4"]
        );
        assert_eq!(names(&unused), ["0.log.2", "0.log.3.gz.tmp"]);
        assert_eq!(excess(&used, 5), 1);
        assert_eq!(excess(&used, 2), 4);
        assert_eq!(excess(&used, 10), 0);
    }

    /// Files rotated by hand (no shim: the new file is made by the test as a shim would).
    #[test]
    fn rotation_keeps_at_most_max_files_and_gzips_all_but_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let policy = LogPolicy {
            max_size: 10,
            max_files: 3,
        };
        for i in 0..5u32 {
            fs::write(&log, format!("line {i} of a log\n")).unwrap();
            let now = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, i).unwrap();
            let l = log.clone();
            // The "shim": makes the new file once the old one is renamed.
            let shim = std::thread::spawn(move || {
                while l.exists() {
                    std::thread::sleep(Duration::from_millis(5));
                }
                fs::write(&l, "").unwrap();
            });
            assert!(rotate_if_needed(&log, &policy, now).unwrap());
            shim.join().unwrap();
            let files = rotated(&log);
            assert!(files.len() < 3, "{files:?}");
        }
        let files = rotated(&log);
        assert_eq!(
            names(&files),
            ["0.log.20240102-030403.gz", "0.log.20240102-030404"]
        );
        let mut gz = String::new();
        io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(File::open(&files[0]).unwrap()),
            &mut gz,
        )
        .unwrap();
        assert_eq!(gz, "line 3 of a log\n");
        // Under the size: nothing happens.
        let now = Utc.with_ymd_and_hms(2024, 1, 2, 3, 5, 0).unwrap();
        assert!(!rotate_if_needed(&log, &policy, now).unwrap());
        assert!(!rotate_if_needed(&dir.path().join("none.log"), &policy, now).unwrap());
        remove_rotated(&log);
        assert!(rotated(&log).is_empty() && log.exists());
    }
}
