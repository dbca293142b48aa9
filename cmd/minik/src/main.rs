//! The `minik` binary: parse the command line, set up logging, run one subcommand.

mod certificate;
mod cli;
mod encrypt;
mod server;
mod token;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

/// Exit code of a subcommand this build does not have yet.
const EXIT_NOT_BUILT: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.debug);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("minik: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colors only for a terminal; logs in files and journals stay plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    let command = match command {
        Command::Server(args) => return server::run(*args),
        Command::Certificate { command } => return certificate::run(command),
        Command::SecretsEncrypt { command } => return encrypt::run(command),
        Command::Token { command } => return token::run(command),
        other => other,
    };
    // The other subcommands belong to later parts of the build; say so plainly.
    let area = match &command {
        Command::Server(_) => unreachable!("handled above"),
        Command::Agent(_) => "agent join",
        Command::Kubectl { .. } => "the kubectl wrapper",
        Command::Image { .. } => "the embedded container runtime",
        Command::Certificate { .. } | Command::SecretsEncrypt { .. } | Command::Token { .. } => {
            unreachable!("handled above")
        }
        Command::Snapshot { .. } => "datastore snapshots",
        Command::CheckConfig => "the kernel check",
    };
    eprintln!(
        "minik: `minik {}` is not built yet in minik {}; it comes with {area}",
        command.name(),
        minik_version::MINIK_VERSION
    );
    Ok(ExitCode::from(EXIT_NOT_BUILT))
}
