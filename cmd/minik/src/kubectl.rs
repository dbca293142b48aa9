//! `minik kubectl`: run the `kubectl` on PATH with this cluster's kubeconfig, as k3s does.
//!
//! The kubeconfig: $KUBECONFIG if set; else the one the server writes (/etc/minik/minik.yaml,
//! or $MINIK_KUBECONFIG_OUTPUT as `minik server --write-kubeconfig` reads it) if it exists;
//! else ~/.kube/minik.yaml. kubectl replaces this process, so its exit code is ours.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

/// Where `minik server` writes the admin kubeconfig by default.
const DEFAULT_KUBECONFIG: &str = "/etc/minik/minik.yaml";

pub fn run(args: Vec<String>) -> anyhow::Result<ExitCode> {
    let kubectl = find_program("kubectl").ok_or_else(|| {
        anyhow::anyhow!(
            "kubectl is not installed (not found on PATH): install kubectl \
             (https://kubernetes.io/docs/tasks/tools/) and run `minik kubectl` again"
        )
    })?;
    let mut command = std::process::Command::new(&kubectl);
    command.args(&args);
    if std::env::var_os("KUBECONFIG").is_none() {
        let config = kubeconfig(
            std::env::var_os("MINIK_KUBECONFIG_OUTPUT").map(PathBuf::from),
            std::env::var_os("HOME").map(PathBuf::from),
        )?;
        command.env("KUBECONFIG", config);
    }
    use std::os::unix::process::CommandExt;
    // exec only returns on failure.
    let error = command.exec();
    Err(error).with_context(|| format!("running {}", kubectl.display()))
}

/// The kubeconfig to use when $KUBECONFIG is not set.
fn kubeconfig(output: Option<PathBuf>, home: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let written = output.unwrap_or_else(|| PathBuf::from(DEFAULT_KUBECONFIG));
    let user = home.map(|h| h.join(".kube").join("minik.yaml"));
    [Some(written), user]
        .into_iter()
        .flatten()
        .find(|p| p.exists())
        .ok_or_else(|| {
            anyhow::anyhow!("no kubeconfig: start `minik server` first or set KUBECONFIG")
        })
}

/// An executable file `name` in a directory of $PATH.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_the_written_kubeconfig_then_the_users() {
        let dir = tempfile::tempdir().unwrap();
        let written = dir.path().join("server.yaml");
        let home = dir.path().join("home");
        let user = home.join(".kube").join("minik.yaml");
        let err = kubeconfig(Some(written.clone()), Some(home.clone())).unwrap_err();
        assert!(err.to_string().contains("start `minik server` first"));
        std::fs::create_dir_all(user.parent().unwrap()).unwrap();
        std::fs::write(&user, "").unwrap();
        assert_eq!(
            kubeconfig(Some(written.clone()), Some(home.clone())).unwrap(),
            user
        );
        std::fs::write(&written, "").unwrap();
        assert_eq!(
            kubeconfig(Some(written.clone()), Some(home)).unwrap(),
            written
        );
    }
}
