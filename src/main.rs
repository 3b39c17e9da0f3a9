//! canhazgpu: exclusive GPU reservations for shared Linux hosts.

/// Everything canhazgpu says on stderr (warnings, progress, errors), one line. Unlike
/// `eprintln!` it never panics: when stderr cannot be written (a closed pipe, as in
/// `2>&1 | head -1`) the message is lost, not the command, which may hold GPUs. Defined
/// before the modules so that all of them can use it; clippy.toml forbids `eprintln!`.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::say(format_args!($($arg)*))
    };
}

mod account;
mod admission;
mod alloc;
mod cli;
mod commands;
mod config;
mod duration;
mod error;
mod gpu;
mod gpu_env;
mod host;
mod lab;
mod liveness;
mod model;
mod output;
mod powers;
mod process;
mod shell;
mod signals;
mod store;
mod views;
mod web;

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
        Err(e) if e.closed_stdout => ExitCode::from(e.exit_code.clamp(0, 255) as u8),
        Err(e) => {
            say!("Error: {e}");
            ExitCode::from(e.exit_code.clamp(1, 255) as u8)
        }
    }
}

/// clap's message, plus the hints people need most: `--wait` takes its timeout after
/// `=`, and `run` wants its command after `--`.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let _ = e.print();
    // args_os: `args` panics on an argument that is not UTF-8, which is exactly what
    // clap has just rejected (say a --note of raw bytes).
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if let Some(hint) = wait_timeout_hint(&args) {
        say!("{hint}");
        return ExitCode::from(e.exit_code().clamp(0, 255) as u8);
    }
    let about_run = args.iter().any(|arg| arg == "run");
    let missing_separator = matches!(
        e.kind(),
        ErrorKind::UnknownArgument | ErrorKind::MissingRequiredArgument
    );
    if about_run && missing_separator {
        say!(
            "hint: put the command to run after '--', \
             e.g. canhazgpu run --gpus 1 -- python train.py"
        );
    }
    ExitCode::from(e.exit_code().clamp(0, 255) as u8)
}

/// `--wait 5s` or `-w5s`: the timeout must follow an `=` (a bare `--wait` waits for ever,
/// so the next word is not its value), which clap's "unexpected argument" does not say.
fn wait_timeout_hint(args: &[std::ffi::OsString]) -> Option<String> {
    let before_command = args.iter().take_while(|arg| *arg != "--");
    let words: Vec<&str> = before_command.filter_map(|arg| arg.to_str()).collect();
    let hint = |flag: &str, value: &str| {
        duration::parse(value).is_ok().then(|| {
            format!(
                "hint: give the timeout with '=': {flag}={value} (a bare {flag} waits for ever)"
            )
        })
    };
    let separate = words.windows(2).find_map(|pair| match pair {
        [flag @ ("--wait" | "-w"), value] => hint(flag, value),
        _ => None,
    });
    separate.or_else(|| {
        words.iter().find_map(|word| {
            let value = word.strip_prefix("-w").filter(|v| !v.starts_with('='))?;
            hint("-w", value)
        })
    })
}

fn dispatch(cli: Cli) -> Result<i32> {
    match &cli.command {
        // These run at shell start and in prompts: they must work with no pool, no
        // configuration and an unreachable store, so they get to the store only if they
        // need it.
        Command::Init(args) => commands::init::init(args),
        Command::Completions(args) => commands::completions::completions(args),
        Command::GenerateMan(args) => commands::man::generate_man(args),
        Command::Prompt(_) => commands::prompt::prompt(|| shell_context(&cli, true)),
        Command::Release(args) if args.inherited => commands::release::inherited(args),
        Command::Admin(args) => commands::admin::admin(&context(&cli)?, args).map(|()| 0),
        Command::Release(args) => {
            let ctx = shell_context(&cli, args.owner_pid.is_some())?;
            commands::release::release(&ctx, args).map(|()| 0)
        }
        Command::Reserve(args) => {
            let ctx = shell_context(&cli, args.owner_pid.is_some())?;
            commands::reserve::reserve(&ctx, args).map(|()| 0)
        }
        Command::Run(args) => commands::run::run(&context(&cli)?, args),
        Command::Status(args) => commands::status::status(&context(&cli)?, args),
        Command::Queue(args) => commands::queue::queue(&context(&cli)?, args),
        Command::Report(args) => commands::report::report(&context(&cli)?, args),
        Command::Web(args) => commands::web::web(context(&cli)?, args).map(|()| 0),
    }
}

fn context(cli: &Cli) -> Result<Context> {
    shell_context(cli, false)
}

/// The context of a command; for the shell function's commands (`for_shell`) the store
/// is the one the shell's reservation is in (`CANHAZGPU_SHELL_STORE`, which
/// `reserve --store` records) unless `--store` names another.
fn shell_context(cli: &Cli, for_shell: bool) -> Result<Context> {
    let mut config = Config::load(cli.config.as_deref())?;
    config.apply_host_env(std::env::var(host::HOST_ENV).ok().as_deref())?;
    let env = std::env::var(config::STORE_ENV).ok();
    // clap fills `store` from the flag or the environment; only the flag is a choice
    // made for this command.
    let flag = cli.store.clone().filter(|url| Some(url) != env.as_ref());
    let layer = for_shell
        .then(|| std::env::var(shell::vars::STORE).ok())
        .flatten()
        .filter(|url| !url.is_empty());
    let store_key = flag.or(layer);
    let chosen = store_key.as_deref().or(env.as_deref());
    let store = config.open_store(chosen)?;
    Ok(Context {
        store,
        store_url: config.store_url(chosen),
        config,
        view: ProcView::new(),
        store_key,
    })
}
