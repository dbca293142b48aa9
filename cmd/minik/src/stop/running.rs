//! Whether a minik server or agent runs on a data directory: its datastore lock
//! (`<data-dir>/db/lock`, held by a running server), else a live `minik server` or
//! `minik agent` process whose data directory (--data-dir, $MINIK_DATA_DIR, or the default)
//! is this one.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// The default data directory of `minik server` and `minik agent`.
const DEFAULT_DATA_DIR: &str = "/var/lib/minik";

/// A minik node process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeProcess {
    pub pid: u32,
    /// "server" or "agent".
    pub kind: String,
}

/// The datastore lock, held while the stop runs so no server starts meanwhile; None when
/// the data dir has no datastore. Err: a server holds it.
pub fn lock_datastore(data_dir: &Path) -> anyhow::Result<Option<minik_store::DirLock>> {
    let db = data_dir.join("db");
    if !db.is_dir() {
        return Ok(None);
    }
    match minik_store::DirLock::acquire(&db) {
        Ok(lock) => Ok(Some(lock)),
        Err(minik_store::Error::Locked { .. }) => {
            let holder = find(data_dir).map(|p| format!(" (pid {})", p.pid));
            anyhow::bail!(
                "a minik server{} is running on {}: stop it first (e.g. `systemctl stop minik`), \
                 then run `minik stop --all` again",
                holder.unwrap_or_default(),
                data_dir.display()
            )
        }
        Err(e) => Err(e.into()),
    }
}

/// A live minik server or agent on `data_dir`.
pub fn find(data_dir: &Path) -> Option<NodeProcess> {
    let own = std::process::id();
    let wanted = normalize(data_dir);
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own)
        .find_map(|pid| {
            let proc = PathBuf::from(format!("/proc/{pid}"));
            let args = split_nul(std::fs::read(proc.join("cmdline")).ok()?);
            let (kind, dir) = node_data_dir(&args, || {
                let environ = split_nul(std::fs::read(proc.join("environ")).ok()?);
                environ.into_iter().find_map(|v| {
                    v.to_str()?
                        .strip_prefix("MINIK_DATA_DIR=")
                        .map(PathBuf::from)
                })
            })?;
            let dir = match dir.is_relative() {
                true => std::fs::read_link(proc.join("cwd")).ok()?.join(dir),
                false => dir,
            };
            (normalize(&dir) == wanted).then_some(NodeProcess { pid, kind })
        })
}

/// For the command line of a `minik server` or `minik agent`: which, and its data
/// directory (`env` gives $MINIK_DATA_DIR of the process).
fn node_data_dir(
    args: &[OsString],
    env: impl FnOnce() -> Option<PathBuf>,
) -> Option<(String, PathBuf)> {
    let program = Path::new(args.first()?).file_name()?.to_str()?;
    if program != "minik" {
        return None;
    }
    let args: Vec<&str> = args[1..].iter().filter_map(|a| a.to_str()).collect();
    let kind = args.iter().find(|a| !a.starts_with('-'))?;
    if !matches!(*kind, "server" | "agent") {
        return None;
    }
    let mut flag = args.iter().enumerate().filter_map(|(i, arg)| match *arg {
        "--data-dir" | "-d" => args.get(i + 1).map(|v| v.to_string()),
        _ => arg
            .strip_prefix("--data-dir=")
            .or_else(|| arg.strip_prefix("-d="))
            .or_else(|| arg.strip_prefix("-d").filter(|v| !v.is_empty()))
            .map(String::from),
    });
    // The last one given wins, as with clap.
    let dir = flag
        .next_back()
        .map(PathBuf::from)
        .or_else(env)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    Some((kind.to_string(), dir))
}

fn split_nul(bytes: Vec<u8>) -> Vec<OsString> {
    bytes
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| OsString::from_vec(part.to_vec()))
        .collect()
}

/// The directory's real path when it exists, else the path as given.
fn normalize(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &[&str], env: Option<&str>) -> Option<(String, PathBuf)> {
        let args: Vec<OsString> = line.iter().map(OsString::from).collect();
        node_data_dir(&args, || env.map(PathBuf::from))
    }

    #[test]
    fn reads_the_data_dir_of_servers_and_agents() {
        let d = |s: &str| Some(("server".to_string(), PathBuf::from(s)));
        assert_eq!(
            parse(&["/usr/bin/minik", "server", "--data-dir", "/a"], None),
            d("/a")
        );
        assert_eq!(
            parse(&["minik", "--debug", "server", "--data-dir=/b"], None),
            d("/b")
        );
        assert_eq!(parse(&["minik", "server", "-d", "/c"], None), d("/c"));
        assert_eq!(parse(&["minik", "server"], Some("/e")), d("/e"));
        assert_eq!(parse(&["minik", "server"], None), d(DEFAULT_DATA_DIR));
        assert_eq!(
            parse(&["minik", "agent", "-d/x"], None),
            Some(("agent".to_string(), PathBuf::from("/x")))
        );
    }

    #[test]
    fn ignores_other_commands_and_programs() {
        assert_eq!(parse(&["minik", "shim", "--dir", "/a"], None), None);
        assert_eq!(parse(&["minik", "stop", "--data-dir", "/a"], None), None);
        assert_eq!(parse(&["k3s", "server"], None), None);
        assert_eq!(parse(&[], None), None);
    }

    #[test]
    fn a_data_dir_without_a_datastore_needs_no_lock() {
        let dir = tempfile::tempdir().unwrap();
        assert!(lock_datastore(dir.path()).unwrap().is_none());
        std::fs::create_dir(dir.path().join("db")).unwrap();
        let held = lock_datastore(dir.path()).unwrap();
        assert!(held.is_some());
    }
}
