//! `minik server`: flags to `minik_server::Config`, signals to the shutdown token.

use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::cli::ServerArgs;

fn config(args: ServerArgs) -> anyhow::Result<minik_server::Config> {
    let mode = args.write_kubeconfig_mode.trim_start_matches("0o");
    let write_kubeconfig_mode = u32::from_str_radix(mode, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .with_context(|| {
            format!(
                "--write-kubeconfig-mode {:?} is not an octal file mode like 0600",
                args.write_kubeconfig_mode
            )
        })?;
    let service_cidr = args
        .service_cidr
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--service-cidr: {e}"))?;
    Ok(minik_server::Config {
        service_cidr,
        data_dir: args.node.data_dir,
        bind_address: args.bind_address,
        https_listen_port: args.https_listen_port,
        write_kubeconfig: args.write_kubeconfig,
        write_kubeconfig_mode,
        datastore_endpoint: args.datastore_endpoint,
        tls_san: args.tls_san,
    })
}

pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let config = config(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let on_signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            on_signal.cancel();
        });
        minik_server::run(config, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
