//! canhazgpu: exclusive GPU reservations for shared Linux hosts.

mod admission;
mod alloc;
mod cli;
mod commands;
mod config;
mod duration;
mod error;
mod gpu;
mod liveness;
mod model;
mod shell;
mod store;
mod views;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::Context;
use crate::config::Config;
use crate::error::Result;
use crate::liveness::ProcView;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::from(e.exit_code.clamp(1, 255) as u8)
        }
    }
}

/// clap's message, plus the hint people need most: `run` wants its command after `--`.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let _ = e.print();
    // args_os: `args` panics on an argument that is not UTF-8, which is exactly what
    // clap has just rejected (say a --note of raw bytes).
    let about_run = std::env::args_os().skip(1).any(|arg| arg == "run");
    let missing_separator = matches!(
        e.kind(),
        ErrorKind::UnknownArgument | ErrorKind::MissingRequiredArgument
    );
    if about_run && missing_separator {
        eprintln!(
            "hint: put the command to run after '--', e.g. canhazgpu run --gpus 1 -- python train.py"
        );
    }
    ExitCode::from(e.exit_code().clamp(0, 255) as u8)
}

fn dispatch(cli: Cli) -> Result<i32> {
    match &cli.command {
        // These run at shell start and in prompts: they must work with no pool, no
        // configuration and an unreachable store, so they get to the store only if they
        // need it.
        Command::Init(args) => commands::init::init(args),
        Command::Completions(args) => commands::completions::completions(args),
        Command::Prompt(_) => commands::prompt::prompt(|| context(&cli)),
        Command::Release(args) if args.inherited => commands::release::inherited(args),
        Command::Admin(args) => commands::admin::admin(&context(&cli)?, args).map(|()| 0),
        Command::Release(args) => commands::release::release(&context(&cli)?, args).map(|()| 0),
        Command::Reserve(args) => commands::reserve::reserve(&context(&cli)?, args).map(|()| 0),
        Command::Run(args) => commands::run::run(&context(&cli)?, args),
        Command::Status(args) => commands::status::status(&context(&cli)?, args).map(|()| 0),
        Command::Queue(args) => commands::queue::queue(&context(&cli)?, args).map(|()| 0),
        Command::Report(args) => commands::report::report(&context(&cli)?, args).map(|()| 0),
    }
}

fn context(cli: &Cli) -> Result<Context> {
    let config = Config::load(cli.config.as_deref())?;
    let store = config.open_store(cli.store.as_deref())?;
    Ok(Context {
        store,
        config,
        view: ProcView::new(),
    })
}
