//! `minik agent`: flags to `minik_agent::AgentOptions`, signals to the shutdown token.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::AgentArgs;

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let server = args.server.context(
        "--server is required: the URL of the server to join, e.g. https://10.0.0.1:6443",
    )?;
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("reading --token-file {}", file.display()))?,
        (None, None) => anyhow::bail!(
            "--token (or --token-file) is required: the server's <data-dir>/server/node-token, \
             or a token from `minik token create`"
        ),
    };
    minik_agent::host_port(server.trim_end_matches('/'))?;
    let node = crate::server::node_config(&args.node)?;
    node.check()?;
    let options = minik_agent::AgentOptions {
        server,
        token,
        data_dir: args.node.data_dir,
        node,
    };
    crate::server::until_signal(|shutdown| minik_agent::run(options, shutdown))??;
    tracing::info!("minik agent stopped");
    Ok(ExitCode::SUCCESS)
}
