//! `canhazgpu completions <shell>`: completion scripts generated from the clap types.
//!
//! The same output is committed under `completions/`, and a test fails when it is stale.

use clap::{Command, CommandFactory};

use crate::cli::{Cli, CompletionsArgs};
use crate::error::{Error, Result};
use crate::output;

pub fn completions(args: &CompletionsArgs) -> Result<i32> {
    let mut command = visible(&Cli::command());
    // Generated into memory: clap_complete panics when its writer fails, and stdout
    // fails whenever the reader has gone.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "canhazgpu", &mut script);
    let script = String::from_utf8(script)
        .map_err(|e| Error::failure(format!("the generated completions are not UTF-8: {e}")))?;
    output::print(&script)?;
    Ok(0)
}

/// The command line without hidden flags and subcommands. clap_complete's generators
/// offer hidden flags too, and the shell function's private flags (`--owner-pid` and
/// friends) have no business being suggested to people.
fn visible(command: &Command) -> Command {
    let mut out = Command::new(command.get_name().to_string());
    if let Some(version) = command.get_version() {
        out = out.version(version.to_string());
    }
    if let Some(about) = command.get_about() {
        out = out.about(about.clone());
    }
    let shown: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|arg| !arg.is_hide_set())
        .collect();
    for arg in &shown {
        out = out.arg((*arg).clone());
    }
    // Groups too (`--free` requires one of `--host`, `--all-hosts`), without hidden members.
    for group in command.get_groups() {
        let members: Vec<clap::Id> = group
            .get_args()
            .filter(|id| shown.iter().any(|arg| arg.get_id() == *id))
            .cloned()
            .collect();
        let mut group = group.clone();
        let multiple = group.is_multiple();
        out = out.group(
            clap::ArgGroup::new(group.get_id().clone())
                .args(members)
                .multiple(multiple)
                .required(group.is_required_set()),
        );
    }
    for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        out = out.subcommand(visible(sub));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_flags_are_not_offered() {
        let mut command = visible(&Cli::command());
        command.build();
        let reserve = command.find_subcommand("reserve").unwrap();
        let names: Vec<_> = reserve
            .get_arguments()
            .filter_map(|a| a.get_long())
            .collect();
        assert!(names.contains(&"duration"), "{names:?}");
        assert!(names.contains(&"store"), "global flags stay: {names:?}");
        assert!(!names.contains(&"owner-pid"), "{names:?}");
        assert!(!names.contains(&"shell"), "{names:?}");
        let release = command.find_subcommand("release").unwrap();
        assert!(release.get_arguments().any(|a| a.get_long() == Some("all")));
        assert!(
            !release
                .get_arguments()
                .any(|a| a.get_long() == Some("sync"))
        );
    }
}
