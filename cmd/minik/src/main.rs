//! The `minik` binary: parse the command line, set up logging, run one subcommand.

mod certificate;
mod cli;
mod encrypt;
mod image;
mod server;
mod token;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

/// mimalloc instead of glibc malloc: allocation was a quarter of the server's CPU under load
/// (glibc's per-thread arenas also fragment, raising RSS).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code of a subcommand this build does not have yet.
const EXIT_NOT_BUILT: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A container shim forks, so it runs before anything starts a thread, and it logs to
    // its container's shim.log rather than here.
    if let Command::Shim { args } = &cli.command {
        let code = minik_runtime::shim_main(args);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
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
        Command::Image { command } => return image::run(command),
        other => other,
    };
    // The other subcommands belong to later parts of the build; say so plainly.
    let area = match &command {
        Command::Server(_) => unreachable!("handled above"),
        Command::Agent(_) => "agent join",
        Command::Kubectl { .. } => "the kubectl wrapper",
        Command::Certificate { .. }
        | Command::SecretsEncrypt { .. }
        | Command::Token { .. }
        | Command::Image { .. } => {
            unreachable!("handled above")
        }
        Command::Shim { .. } => unreachable!("handled in main"),
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
