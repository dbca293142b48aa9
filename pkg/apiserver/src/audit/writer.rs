//! Where audit events go: JSON lines appended to a file (or stdout for "-"), rotated when a
//! write would take it past the size limit, keeping at most so many old files, none older
//! than so many days (kube-apiserver's --audit-log-maxsize, -maxbackup, -maxage).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Rotation limits; 0 means no limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rotation {
    pub max_size_mb: u64,
    pub max_backups: usize,
    pub max_age_days: u64,
}

pub enum Sink {
    Stdout,
    File {
        path: PathBuf,
        file: File,
        size: u64,
        rotation: Rotation,
    },
}

fn open(path: &Path) -> std::io::Result<(File, u64)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok((file, size))
}

impl Sink {
    /// Open the log at `path` ("-": standard output).
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<Sink> {
        if path == Path::new("-") {
            return Ok(Sink::Stdout);
        }
        let (file, size) = open(path)?;
        Ok(Sink::File {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
        })
    }

    /// Append one line.
    pub fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line)?;
                out.write_all(b"\n")
            }
            Sink::File {
                path,
                file,
                size,
                rotation,
            } => {
                let len = line.len() as u64 + 1;
                let limit = rotation.max_size_mb * 1024 * 1024;
                if limit > 0 && *size > 0 && *size + len > limit {
                    rotate(path, *rotation)?;
                    (*file, *size) = open(path)?;
                }
                file.write_all(line)?;
                file.write_all(b"\n")?;
                *size += len;
                Ok(())
            }
        }
    }
}

/// `audit.log` → `audit-2026-11-30T15-55-07.123.log`, then prune old backups.
fn rotate(path: &Path, rotation: Rotation) -> std::io::Result<()> {
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("audit");
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("");
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stamp = chrono::Utc::now().format("%Y-%m-%dT%H-%M-%S%.3f");
    let dot = if ext.is_empty() {
        String::new()
    } else {
        format!(".{ext}")
    };
    std::fs::rename(path, dir.join(format!("{stem}-{stamp}{dot}")))?;
    let prefix = format!("{stem}-");
    let mut backups: Vec<(SystemTime, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(&prefix) && n.ends_with(&dot)
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    backups.sort();
    backups.reverse();
    let max_age = Duration::from_secs(rotation.max_age_days * 86_400);
    for (i, (when, p)) in backups.iter().enumerate() {
        let too_many = rotation.max_backups > 0 && i >= rotation.max_backups;
        let too_old = rotation.max_age_days > 0 && when.elapsed().is_ok_and(|age| age > max_age);
        if too_many || too_old {
            let _ = std::fs::remove_file(p);
        }
    }
    Ok(())
}
