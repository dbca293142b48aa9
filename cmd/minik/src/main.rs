//! The `minik` binary: parse the command line, set up logging, run one subcommand.

mod agent;
mod certificate;
mod checkconfig;
mod cli;
mod configfile;
mod encrypt;
mod image;
mod kubectl;
mod server;
mod snapshot;
mod stop;
mod token;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

/// mimalloc instead of glibc malloc: allocation was a quarter of the server's CPU under load
/// (glibc's per-thread arenas also fragment, raising RSS).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A container shim forks, so it runs before anything starts a thread, and it logs to
    // its container's shim.log rather than here. One starts per container: it goes first,
    // past the config file and the parsing of every other command's flags.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "shim") {
        let Some(args) = args[2..]
            .iter()
            .map(|a| a.clone().into_string().ok())
            .collect::<Option<Vec<String>>>()
        else {
            eprintln!("minik shim: arguments must be UTF-8");
            return ExitCode::from(2);
        };
        return shim(&args);
    }
    // Keys of the config file (/etc/minik/config.yaml and config.yaml.d/) become flags.
    let cli = match configfile::expand(args) {
        Ok(args) => Cli::parse_from(args),
        Err(e) => {
            eprintln!("minik: error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Shim { args } = &cli.command {
        return shim(args);
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
    match command {
        Command::Server(args) => server::run(*args),
        Command::Agent(args) => agent::run(*args),
        Command::Certificate { command } => certificate::run(command),
        Command::SecretsEncrypt { command } => encrypt::run(command),
        Command::Token { command } => token::run(command),
        Command::Image { command } => image::run(command),
        Command::Kubectl { args } => kubectl::run(args),
        Command::Snapshot { command } => snapshot::run(command),
        Command::CheckConfig => checkconfig::run(),
        Command::Stop(args) => stop::run(args),
        Command::Shim { .. } => unreachable!("handled in main"),
    }
}

/// `minik shim ARGS`: run one container (see minik_runtime::shim_main).
fn shim(args: &[String]) -> ExitCode {
    let code = minik_runtime::shim_main(args);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
