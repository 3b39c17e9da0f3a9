//! `canhazgpu generate-man DIR` (hidden): the manual pages, generated from the clap types
//! by clap_mangen: canhazgpu(1) and canhazgpu-SUBCOMMAND(1) for every visible subcommand.
//!
//! The pages are committed under `man/` and shipped in the Debian package; a test fails
//! when they are stale. It is a hidden subcommand because the clap types live in the
//! binary's module tree: a build script or a second binary would have to compile the
//! whole crate again, and one more hidden subcommand costs the start-up nothing
//! measurable (docs/PERFORMANCE.md).
//!
//! clap_mangen renders an `after_help` as filled text under EXTRA, which runs the example
//! lines together; the examples are rendered here instead, one per line.

use std::path::Path;

use clap::{Command, CommandFactory};
use clap_mangen::Man;
use clap_mangen::roff::{Roff, roman};

use crate::cli::{Cli, GenerateManArgs};
use crate::config::DEFAULT_CONFIG_PATH;
use crate::error::{Error, Result};
use crate::store::DEFAULT_STATE_DIR;

pub fn generate_man(args: &GenerateManArgs) -> Result<i32> {
    let pages = pages(Cli::command())
        .map_err(|e| Error::failure(format!("cannot render the manual pages: {e}")))?;
    std::fs::create_dir_all(&args.dir).map_err(|e| cannot_write(&args.dir, &e))?;
    for (name, text) in pages {
        let path = args.dir.join(name);
        std::fs::write(&path, text).map_err(|e| cannot_write(&path, &e))?;
    }
    Ok(0)
}

fn cannot_write(path: &Path, e: &std::io::Error) -> Error {
    Error::failure(format!(
        "cannot write the manual pages to {}: {e}; choose a directory you may write",
        path.display()
    ))
}

/// Every page as (file name, roff source): the command's own, then one per visible
/// subcommand. Hidden subcommands are internal and get no page.
pub fn pages(cli: Command) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut cli = cli.disable_help_subcommand(true);
    cli.build();
    let mut pages = vec![page(&cli, main_page_extras)?];
    for sub in cli.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        pages.push(page(sub, |roff| see_also(roff, cli.get_name()))?);
    }
    Ok(pages)
}

fn page(command: &Command, extras: impl Fn(&mut Roff)) -> std::io::Result<(String, Vec<u8>)> {
    let after_help = command
        .get_after_long_help()
        .or(command.get_after_help())
        .map(ToString::to_string);
    // Left out of clap_mangen's rendering; `examples` renders it.
    let bare = command
        .clone()
        .after_help(None::<&str>)
        .after_long_help(None::<&str>);
    let name = bare
        .get_display_name()
        .unwrap_or(bare.get_name())
        .to_string();
    let man = Man::new(bare)
        .title(name.to_uppercase())
        .source(format!("canhazgpu {}", env!("CARGO_PKG_VERSION")))
        .manual("User Commands");
    let mut out = Vec::new();
    man.render(&mut out)?;
    let mut more = Roff::new();
    if let Some(text) = after_help {
        examples(&mut more, &text);
    }
    extras(&mut more);
    // Each rendering starts with the same preamble; the page needs it once.
    let preamble = Roff::new().render();
    let more = more.render();
    out.extend_from_slice(more.strip_prefix(&preamble).unwrap_or(&more).as_bytes());
    Ok((man.get_filename(), out))
}

/// An `after_help` text as an EXAMPLES section: its lines indented by two spaces are
/// commands, kept one per line; the other lines are prose, paragraphs split at blank
/// lines. A leading "Examples:" is the section's title.
fn examples(roff: &mut Roff, text: &str) {
    roff.control("SH", ["EXAMPLES"]);
    let mut in_commands = false;
    let lines = text.lines().skip_while(|line| line.trim() == "Examples:");
    for line in lines {
        match line.strip_prefix("  ") {
            Some(command) => {
                if !in_commands {
                    roff.control("RS", ["4"]).control("nf", []);
                    in_commands = true;
                }
                roff.text([roman(command)]);
            }
            None => {
                if in_commands {
                    roff.control("fi", []).control("RE", []);
                    in_commands = false;
                }
                if line.trim().is_empty() {
                    roff.control("PP", []);
                } else {
                    roff.text([roman(line)]);
                }
            }
        }
    }
    if in_commands {
        roff.control("fi", []).control("RE", []);
    }
}

/// FILES and SEE ALSO for canhazgpu(1).
fn main_page_extras(roff: &mut Roff) {
    roff.control("SH", ["FILES"]);
    roff.control("TP", []).text([roman(DEFAULT_CONFIG_PATH)]);
    roff.text([roman(
        "The host's configuration (TOML); the Debian package installs one with every key \
         explained. Another file with --config or CANHAZGPU_CONFIG.",
    )]);
    roff.control("TP", []).text([roman(DEFAULT_STATE_DIR)]);
    roff.text([roman(
        "The embedded store: state.json, lock and the usage history, writable by every \
         local user (mode 0777, no sticky bit).",
    )]);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(
        "README.md and docs/shell.md (the shell integration), installed in \
         /usr/share/doc/canhazgpu/ by the Debian package.",
    )]);
}

/// SEE ALSO for a subcommand's page.
fn see_also(roff: &mut Roff, name: &str) {
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(format!("{name}(1)"))]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(text: &str) -> String {
        let mut roff = Roff::new();
        examples(&mut roff, text);
        roff.to_roff()
    }

    #[test]
    fn example_lines_stay_lines_and_prose_is_filled() {
        let text = "Examples:\n  canhazgpu run -- a\n  canhazgpu run -- b   # two\n\n\
                    Prose that\ncontinues.";
        let roff = rendered(text);
        assert!(!roff.contains("Examples:"), "{roff}");
        let nf = roff.find(".nf").expect("no-fill for the commands");
        let fi = roff.find(".fi").expect("filling again after them");
        let first = roff.find("canhazgpu run \\-\\- a").expect("first command");
        let second = roff.find("# two").expect("second command, comment kept");
        assert!(nf < first && first < second && second < fi, "{roff}");
        let prose = roff.find("Prose that").expect("prose");
        assert!(fi < prose && roff[fi..prose].contains(".PP"), "{roff}");
    }

    #[test]
    fn a_text_ending_in_commands_closes_no_fill() {
        let roff = rendered("Setup:\n  eval x");
        assert!(roff.contains("Setup:"), "{roff}");
        assert!(roff.trim_end().ends_with(".RE"), "{roff}");
    }

    #[test]
    fn one_page_per_visible_subcommand_and_none_for_hidden_ones() {
        let pages = pages(Cli::command()).unwrap();
        let names: Vec<&str> = pages.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names[0], "canhazgpu.1");
        assert!(names.contains(&"canhazgpu-reserve.1"), "{names:?}");
        assert!(
            !names.iter().any(|n| n.contains("generate-man")),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");
        let visible = Cli::command()
            .get_subcommands()
            .filter(|sub| !sub.is_hide_set())
            .count();
        assert_eq!(names.len(), visible + 1, "{names:?}");
    }

    #[test]
    fn hidden_flags_stay_out_of_the_pages() {
        let pages = pages(Cli::command()).unwrap();
        let (_, reserve) = pages
            .iter()
            .find(|(name, _)| name == "canhazgpu-reserve.1")
            .unwrap();
        let reserve = String::from_utf8_lossy(reserve);
        assert!(reserve.contains("duration"), "{reserve}");
        assert!(reserve.contains("EXAMPLES"), "{reserve}");
        assert!(!reserve.contains("owner\\-pid"), "{reserve}");
    }
}
