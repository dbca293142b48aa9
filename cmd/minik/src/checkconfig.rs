//! `minik check-config`: whether this kernel has what minik needs, one line per feature and a
//! verdict (exit 1 when a required feature is missing).

use std::process::ExitCode;

use minik_server::kernel::{self, Check};

pub fn run() -> anyhow::Result<ExitCode> {
    let checks = kernel::check_all();
    for check in &checks {
        println!("{}", line(check));
    }
    let missing: Vec<&str> = checks
        .iter()
        .filter(|c| c.required && !c.ok)
        .map(|c| c.name)
        .collect();
    let optional = checks.iter().filter(|c| !c.required && !c.ok).count();
    println!();
    if missing.is_empty() {
        println!(
            "verdict: ok: this host has everything minik needs ({optional} optional feature(s) missing)"
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "verdict: not ready: missing {} (see above)",
            missing.join(", ")
        );
        Ok(ExitCode::FAILURE)
    }
}

/// `name  ok|missing|warn  detail`: a missing optional feature is a warning.
fn line(check: &Check) -> String {
    let status = match (check.ok, check.required) {
        (true, _) => "ok",
        (false, true) => "missing",
        (false, false) => "warn",
    };
    let optional = if check.ok || check.required {
        ""
    } else {
        " (optional)"
    };
    format!(
        "{:<26} {:<8} {}{optional}",
        check.name, status, check.detail
    )
}
