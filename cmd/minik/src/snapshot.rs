//! `minik snapshot save|restore|ls`: one-file backups of the datastore and the server's
//! identity (CAs, service-account key, encryption keys, tokens), taken online, and their
//! restore into a data directory.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use minik_store::snapshot;

use crate::cli::SnapshotCommand;

/// What a snapshot carries besides the datastore, relative to the data directory: what makes
/// a restored server the same cluster to its clients. Not server/manifests, not agent/.
const IDENTITY: &[&str] = &["tls", "server/cred", "server/token", "server/node-token"];

pub fn run(command: SnapshotCommand) -> anyhow::Result<ExitCode> {
    match command {
        SnapshotCommand::Save {
            dir,
            name,
            snapshot_dir,
        } => save(&dir.data_dir, name, snapshot_dir),
        SnapshotCommand::Restore {
            dir,
            snapshot,
            snapshot_dir,
            force,
        } => restore(&dir.data_dir, &snapshot, snapshot_dir, force),
        SnapshotCommand::Ls { dir, snapshot_dir } => {
            ls(&snapshot_dir.unwrap_or_else(|| default_dir(&dir.data_dir)))
        }
    }?;
    Ok(ExitCode::SUCCESS)
}

fn save(data_dir: &Path, name: Option<String>, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let name = match name {
        Some(n) => check_name(n)?,
        None => format!("on-demand-{}-{}", hostname(), now()),
    };
    let db = minik_store::default_sqlite_path(data_dir);
    if !db.is_file() {
        bail!(
            "no datastore in {} ({} does not exist); has a server run with --data-dir {}?",
            data_dir.display(),
            db.display(),
            data_dir.display()
        );
    }
    let dir = match dir {
        Some(d) => d,
        None => {
            let d = default_dir(data_dir);
            minik_store::private_dir(&d)?;
            d
        }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let files = snapshot::collect_files(data_dir, IDENTITY)?;
    let dest = dir.join(&name);
    let info = runtime()?.block_on(snapshot::save(&db, &dest, &files))?;
    eprintln!(
        "saved revision {} ({} keys) and {} files",
        info.revision, info.keys, info.files
    );
    println!("{}", dest.display());
    Ok(())
}

fn restore(
    data_dir: &Path,
    snapshot: &str,
    dir: Option<PathBuf>,
    force: bool,
) -> anyhow::Result<()> {
    let file = find(data_dir, snapshot, dir)?;
    let runtime = runtime()?;
    // Bad input changes nothing: the snapshot is checked before the data directory is touched.
    runtime.block_on(snapshot::inspect(&file))?;
    let db = minik_store::default_sqlite_path(data_dir);
    let db_dir = db.parent().unwrap_or(data_dir);
    minik_store::private_dir(data_dir)?;
    minik_store::private_dir(db_dir)?;
    // Held to the end: no server starts on the data directory halfway through.
    let _lock = match minik_store::DirLock::acquire(db_dir) {
        Ok(lock) => lock,
        Err(minik_store::Error::Locked { .. }) => bail!(
            "a minik server is running on {}; stop it first",
            data_dir.display()
        ),
        Err(e) => return Err(e.into()),
    };
    let existing = ["", "-wal", "-shm"]
        .iter()
        .any(|s| PathBuf::from(format!("{}{s}", db.display())).exists());
    if existing {
        if !force {
            bail!(
                "{} already has a datastore ({}); restore into a new data directory, or pass \
                 --force to move it aside",
                data_dir.display(),
                db.display()
            );
        }
        let moved = snapshot::move_aside(&db, &format!(".before-restore-{}", now()))?;
        eprintln!("moved the old datastore to {}", moved.display());
    }
    let (info, files) = runtime.block_on(snapshot::restore(&file, &db))?;
    snapshot::write_files(data_dir, &files)?;
    println!(
        "restored revision {} ({} keys) and {} files from {} into {}; start the server with \
         `minik server --data-dir {}`",
        info.revision,
        info.keys,
        files.len(),
        file.display(),
        data_dir.display(),
        data_dir.display()
    );
    Ok(())
}

/// The snapshot named on the command line: a file, or a name in the snapshot directory.
fn find(data_dir: &Path, snapshot: &str, dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let as_path = PathBuf::from(snapshot);
    if as_path.is_file() || snapshot.contains('/') {
        if !as_path.is_file() {
            bail!("snapshot {snapshot} does not exist (or is not a file)");
        }
        return Ok(as_path);
    }
    let dir = dir.unwrap_or_else(|| default_dir(data_dir));
    let named = dir.join(snapshot);
    if !named.is_file() {
        bail!(
            "no snapshot {snapshot:?}: neither a file {} nor {} exists",
            as_path.display(),
            named.display()
        );
    }
    Ok(named)
}

fn ls(dir: &Path) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let meta = entry
                    .metadata()
                    .with_context(|| format!("reading {}", entry.path().display()))?;
                // Dot files are snapshots being written.
                if meta.is_file() && !name.starts_with('.') {
                    let created = meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs());
                    rows.push((created, name, meta.len()));
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    }
    rows.sort();
    let width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(4);
    println!("{:<width$}  {:>12}  CREATED", "NAME", "SIZE");
    for (created, name, size) in rows {
        println!("{name:<width$}  {size:>12}  {}", rfc3339(created));
    }
    Ok(())
}

/// Where snapshots go by default, as in k3s.
fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("db").join("snapshots")
}

/// A snapshot name is a plain file name.
fn check_name(name: String) -> anyhow::Result<String> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        bail!(
            "--name {name:?}: a snapshot name must be a plain file name (not empty, no '/', not \
             starting with '.'); use --dir to choose the directory"
        );
    }
    Ok(name)
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace('/', "-"))
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "minik".into())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Unix seconds as UTC RFC 3339, e.g. 2026-12-01T16:12:21Z.
fn rfc3339(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Days since 1970-01-01 to a civil date (proleptic Gregorian), by 400-year eras.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_039_941), "2026-12-23T15:32:21Z");
    }

    #[test]
    fn names() {
        assert!(check_name("a/b".into()).is_err());
        assert!(check_name(String::new()).is_err());
        assert!(check_name(".hidden".into()).is_err());
        assert_eq!(check_name("nightly-1".into()).unwrap(), "nightly-1");
    }
}
