//! nftables: scripts go to the kernel through `nft -f -`, so a whole table is replaced in
//! one atomic transaction (a script that fails changes nothing). Behind a trait so the
//! rule makers are tested without root.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// Why nft refused a script.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("running nft: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("nft refused the script: {0}")]
    Refused(String),
}

/// Something that takes nft scripts.
pub trait Nft: Send + Sync {
    /// Apply `script` (nft's input language) in one transaction.
    fn apply(&self, script: &str) -> Result<(), NftError>;
    /// The current ruleset of one table (`nft list table FAMILY NAME`), or None if absent.
    fn list_table(&self, family: &str, name: &str) -> Result<Option<String>, NftError>;
}

/// The real `nft` binary (Debian's nftables).
#[derive(Debug, Clone, Default)]
pub struct NftCommand;

impl Nft for NftCommand {
    fn apply(&self, script: &str) -> Result<(), NftError> {
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(NftError::Spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(NftError::Spawn)?;
        }
        let out = child.wait_with_output().map_err(NftError::Spawn)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(NftError::Refused(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }

    fn list_table(&self, family: &str, name: &str) -> Result<Option<String>, NftError> {
        let out = Command::new("nft")
            .args(["list", "table", family, name])
            .stdin(Stdio::null())
            .output()
            .map_err(NftError::Spawn)?;
        Ok(out
            .status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
    }
}

/// A fake that keeps every script it was given.
#[derive(Debug, Clone, Default)]
pub struct FakeNft {
    pub scripts: Arc<Mutex<Vec<String>>>,
}

impl FakeNft {
    /// The last script applied.
    pub fn last(&self) -> Option<String> {
        self.scripts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .cloned()
    }
}

impl Nft for FakeNft {
    fn apply(&self, script: &str) -> Result<(), NftError> {
        self.scripts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(script.to_string());
        Ok(())
    }

    fn list_table(&self, _family: &str, _name: &str) -> Result<Option<String>, NftError> {
        Ok(self.last())
    }
}
