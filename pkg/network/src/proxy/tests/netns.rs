//! A throwaway network namespace for root tests (deleted on drop, even when a test fails),
//! and nft inside it.

use std::io::Write;
use std::process::{Command, Stdio};

/// A network namespace `minik-test-*` that lives as long as this value.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("minik-test-{tag}-{}-{}", std::process::id(), uuid_like());
        run("ip", &["netns", "add", &name]);
        Netns { name }
    }

    /// Run `program args` inside the namespace; its output, or its stderr as the error.
    pub fn exec(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, String> {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        let mut child = Command::new("ip")
            .args(&full)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `nft -f -` inside the namespace.
    pub fn nft(&self, script: &str) -> Result<(), String> {
        self.exec("nft", &["-f", "-"], Some(script)).map(|_| ())
    }

    /// `nft list table ip minik-proxy` inside the namespace.
    pub fn list(&self) -> Result<String, String> {
        self.exec("nft", &["list", "table", "ip", "minik-proxy"], None)
    }

    /// `ip ARGS` inside the namespace; panics on failure.
    pub fn ip(&self, args: &[&str]) {
        if let Err(e) = self.exec("ip", args, None) {
            panic!("ip {args:?} in {}: {e}", self.name);
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// A short random-enough suffix (the clock's nanoseconds and a counter).
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{:x}{}", nanos, N.fetch_add(1, Ordering::Relaxed))
}

pub fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?} failed");
}
