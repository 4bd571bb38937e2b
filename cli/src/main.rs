//! The `cairn` command: argument parsing, passwords, progress and output.
//! All backup logic lives in `cairn-engine`.

mod args;
mod commands;
mod config;
mod output;
mod password;
mod policy;
mod progress;
mod retention;
mod signals;
mod source_cassandra;
mod source_redis;
mod source_s3;
mod units;

use std::process::ExitCode;

use clap::Parser;

use cairn_engine::ErrorKind;

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_PARTIAL: u8 = 3;
pub const EXIT_NO_REPOSITORY: u8 = 10;
pub const EXIT_LOCKED: u8 = 11;
pub const EXIT_WRONG_PASSWORD: u8 = 12;
pub const EXIT_RETRIEVAL_PENDING: u8 = 14;
/// Standard output was closed before everything was written: 128 + SIGPIPE,
/// what a shell reports for a tool that a closed pipe stopped.
pub const EXIT_OUTPUT_CUT_SHORT: u8 = 141;

/// Maps an error to the documented exit code by the engine's own
/// classification of the first engine error in the chain.
fn exit_code(e: &anyhow::Error) -> u8 {
    match e.chain().find_map(ErrorKind::of) {
        Some(ErrorKind::WrongPassword) => EXIT_WRONG_PASSWORD,
        Some(ErrorKind::NotARepository) => EXIT_NO_REPOSITORY,
        Some(ErrorKind::Locked) => EXIT_LOCKED,
        Some(ErrorKind::RetrievalPending) => EXIT_RETRIEVAL_PENDING,
        Some(ErrorKind::Interrupted) => signals::exit_code(),
        // A failed command's own status is passed on, as a shell would.
        Some(ErrorKind::CommandFailed { code: Some(c) }) => {
            u8::try_from(c).ok().filter(|c| *c != 0).unwrap_or(EXIT_FAILURE)
        }
        _ => EXIT_FAILURE,
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info",
        _ => "debug",
    };
    // fuser warns of requests a read-only mount leaves to the kernel's
    // defaults, and of its own second unmount after `cairn mount`'s.
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},aws_config=error,fuser=error")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

const CUT_SHORT: &str =
    "error: standard output was closed (e.g. by `| head`) before everything was written to it; the output is incomplete";

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let result = commands::run(cli);
    // A closed pipe is a success only if nothing was lost to it: a reader
    // that stops early must not make `cairn dump ... | consumer` look whole.
    let cut_short = output::output_cut_short();
    match result {
        Ok(code) if cut_short => {
            eprintln!("{CUT_SHORT}");
            ExitCode::from(if code == 0 { EXIT_OUTPUT_CUT_SHORT } else { code })
        }
        Ok(code) => ExitCode::from(code),
        Err(e) if cut_short && is_broken_pipe(&e) => {
            eprintln!("{CUT_SHORT}");
            ExitCode::from(EXIT_OUTPUT_CUT_SHORT)
        }
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            if cut_short {
                eprintln!("{CUT_SHORT}");
            }
            ExitCode::from(exit_code(&e))
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
