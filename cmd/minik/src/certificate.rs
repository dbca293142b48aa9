//! `minik certificate check|rotate`: the certificates under `<data-dir>/tls`.

use std::process::ExitCode;

use crate::cli::CertificateCommand;

pub fn run(command: CertificateCommand) -> anyhow::Result<ExitCode> {
    match command {
        CertificateCommand::Check { dir } => {
            let tls = dir.data_dir.join("tls");
            let certs = minik_auth::certs::check(&tls).map_err(|e| {
                anyhow::anyhow!(
                    "no certificates under {} (has the server run?): {e}",
                    tls.display()
                )
            })?;
            println!(
                "{:<26} {:<34} {:<22} {:>9}  STATUS",
                "CERTIFICATE", "SUBJECT", "EXPIRES", "DAYS LEFT"
            );
            let mut expired = false;
            for c in &certs {
                let status = if c.days_left < 0 {
                    expired = true;
                    "EXPIRED"
                } else if c.days_left < minik_auth::certs::RENEW_BEFORE_DAYS
                    && minik_auth::certs::LEAVES.contains(&c.name.as_str())
                {
                    "RENEWS AT NEXT START"
                } else {
                    "OK"
                };
                println!(
                    "{:<26} {:<34} {:<22} {:>9}  {status}",
                    c.name, c.subject, c.not_after, c.days_left
                );
            }
            Ok(if expired {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        CertificateCommand::Rotate { dir, services } => {
            let tls = dir.data_dir.join("tls");
            if !tls.join("server-ca.crt").exists() {
                anyhow::bail!(
                    "no certificates under {} (has the server run?)",
                    tls.display()
                );
            }
            let (backup, sans) = minik_auth::certs::retire(&tls, &services)?;
            let pki = minik_auth::Pki::load_or_create(&tls, &sans)?;
            for c in minik_auth::certs::check(&pki.dir)? {
                if minik_auth::certs::LEAVES.contains(&c.name.as_str()) {
                    println!("{:<26} valid until {}", c.name, c.not_after);
                }
            }
            println!("old certificates are in {}", backup.display());
            println!("restart the server to serve with the new certificates");
            Ok(ExitCode::SUCCESS)
        }
    }
}
